import os
import threading

import pytest

import procman


@pytest.fixture
def pm():
    """CCP4i2's singleton, as its own tests use it."""
    return procman.AsyncProcessManager()


@pytest.fixture
def manager():
    """A manager of the test's own, shut down (jobs killed) at the end."""
    with procman.Manager(limit=4, grace=0.5) as m:
        yield m


class Done:
    """Collects handler calls; ``wait()`` blocks until the first one arrived."""

    def __init__(self):
        self.calls = []
        self.event = threading.Event()
        self.thread = None

    def __call__(self, pid, **kwargs):
        self.thread = threading.current_thread()
        self.calls.append((pid, kwargs))
        self.event.set()

    def wait(self, timeout=10):
        assert self.event.wait(timeout), "the handler was not called"
        return self.calls


@pytest.fixture
def done():
    return Done()


def alive(os_pid):
    """True if the process exists and is not a zombie."""
    try:
        with open(f"/proc/{os_pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def wait_until(predicate, timeout=10, step=0.02):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
