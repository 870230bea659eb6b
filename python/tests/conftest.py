import os
import shlex
import threading
import time

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


# Generous upper bound (seconds) for anything the tests wait for: a machine under load may be
# slow, and a test must never depend on how fast it is. Nothing waits this long when it works.
PATIENCE = 60


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

    def wait(self, timeout=PATIENCE):
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


def wait_until(predicate, timeout=PATIENCE, step=0.02):
    """Polls predicate until it holds (True) or the generous bound passes (its last answer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def gate(path):
    """A shell command that blocks until the file at path exists: a job that must stay alive
    until the test (or another job) says so. Bounded only by the job's own timeout."""
    return f"while [ ! -e {shlex.quote(str(path))} ]; do sleep 0.01; done"
