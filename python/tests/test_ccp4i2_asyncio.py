"""Issue #17, items 1 and 3: jobs started from an asyncio loop complete in that loop's terms,
and the drop-in answers odd ids, logs and 'env' as CCP4i2's original does.

Every test runs real processes on real event loops (asyncio.run)."""

import asyncio
import logging
import os
import threading
import time

import pytest

import procman
from procman.ccp4i2 import LOGGER_NAME
from conftest import PATIENCE, Done, gate

# How long the loop would sleep if nothing woke it: the wait_for timeout of the tests below.
# A handler that runs within milliseconds must wake the loop long before this.
LOOP_TIMEOUT = 30
# Generous bound for "promptly" on a loaded machine: well below LOOP_TIMEOUT.
PROMPT = 10


def test_handler_setting_an_asyncio_event_wakes_the_loop(pm):
    # CCP4i2's test_simple_command_async: the handler sets an asyncio.Event from procman's
    # dispatcher thread; the loop must not sleep until the wait_for timeout.
    async def main():
        completed = asyncio.Event()
        seen = {}

        def handler(pid):
            seen["status"] = pm.getJobData(pid, "status")
            completed.set()

        t0 = time.monotonic()
        await pm._startProcess_async("echo", ["hi"], handler=[handler, {}])
        await asyncio.wait_for(completed.wait(), timeout=LOOP_TIMEOUT)
        return time.monotonic() - t0, seen

    took, seen = asyncio.run(main())
    assert seen == {"status": "finished"}
    assert took < PROMPT, f"the loop was not woken: {took:.1f} s"


def test_sync_start_inside_a_running_loop_wakes_that_loop(pm):
    async def main():
        completed = asyncio.Event()
        t0 = time.monotonic()
        pm.startProcess("true", handler=lambda pid: completed.set())
        await asyncio.wait_for(completed.wait(), timeout=LOOP_TIMEOUT)
        return time.monotonic() - t0

    took = asyncio.run(main())
    assert took < PROMPT, f"the loop was not woken: {took:.1f} s"


def test_a_loop_on_another_thread_is_woken_too(pm):
    result = {}

    def thread_main():
        async def main():
            completed = asyncio.Event()
            t0 = time.monotonic()
            await pm._startProcess_async("true", handler=lambda pid: completed.set())
            await asyncio.wait_for(completed.wait(), timeout=LOOP_TIMEOUT)
            return time.monotonic() - t0
        result["took"] = asyncio.run(main())

    t = threading.Thread(target=thread_main)
    t.start()
    t.join(PATIENCE)
    assert result["took"] < PROMPT


def test_wait_for_job_async_completes_after_the_handler_without_blocking_the_loop(pm, tmp_path):
    go = tmp_path / "go"
    done = Done()

    async def opener():
        # A task on the same loop lets the job end: it can only run if the await below
        # leaves the loop free.
        await asyncio.sleep(0.05)
        go.touch()

    async def main():
        pid = pm.startProcess("sh", ["-c", gate(go)], handler=done, timeout=PATIENCE * 1000)
        task = asyncio.create_task(opener())
        t0 = time.monotonic()
        record = await pm.waitForJobAsync(pid, timeout=LOOP_TIMEOUT)
        await task
        return pid, record, time.monotonic() - t0

    pid, record, took = asyncio.run(main())
    assert done.calls == [(pid, {})], "the awaitable completed before the handler ran"
    assert record.id == pid and record.status == "finished"
    assert took < PROMPT


def test_wait_for_job_async_of_an_ended_job_unknown_id_and_timeout(pm, tmp_path):
    pid = pm.startProcess("true", ifAsync=False)
    go = tmp_path / "go"
    slow = pm.startProcess("sh", ["-c", gate(go)], timeout=PATIENCE * 1000)

    async def main():
        ended = await pm.waitForJobAsync(pid)
        with pytest.raises(KeyError):
            await pm.waitForJobAsync(999_999_999)
        with pytest.raises(KeyError):
            await pm.waitForJobAsync(None)
        with pytest.raises(asyncio.TimeoutError):
            await pm.waitForJobAsync(slow, timeout=0.2)
        return ended

    try:
        assert asyncio.run(main()).status == "finished"
    finally:
        go.touch()
    assert pm.waitForJob(slow, PATIENCE).status == "finished"  # the timed-out await left it


def test_start_process_async_if_async_false_returns_after_the_handler(pm):
    calls = []

    def handler(pid):
        time.sleep(0.2)  # a handler that takes a while: the await must include it
        calls.append(pid)

    async def main():
        return await pm._startProcess_async("true", handler=handler, ifAsync=False)

    pid = asyncio.run(main())
    assert calls == [pid]


def test_coroutine_handler_runs_on_the_loop_and_the_awaitable_follows_it(pm):
    async def main():
        loop = asyncio.get_running_loop()
        seen = []

        async def handler(pid, tag):
            await asyncio.sleep(0.05)
            seen.append((pid, tag, asyncio.get_running_loop() is loop))

        pid = await pm._startProcess_async("true", handler=[handler, {"tag": "t"}])
        await pm.waitForJobAsync(pid, timeout=LOOP_TIMEOUT)
        return pid, seen

    pid, seen = asyncio.run(main())
    assert seen == [(pid, "t", True)]


def test_a_closed_loop_does_not_break_the_job(pm, caplog):
    # The job outlives the loop it was started from: its handler runs, nothing raises.
    done = Done()

    async def main():
        return await pm._startProcess_async("sleep", ["0.2"], handler=done)

    with caplog.at_level(logging.ERROR):
        pid = asyncio.run(main())
        assert done.wait() == [(pid, {})]
        rec = pm.waitForJob(pid, PATIENCE)
    assert rec.status == "finished" and rec.handler_error is None
    assert pm.getJobData(pid, "handlerError") is None
    assert not caplog.records


# ---- item 3: parity where callers can notice ---------------------------------------------

BAD_IDS = [None, -1, -1000, "1000", b"1000", 2**64, 2**70, 1000.5, object(), [1000]]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
def test_ids_no_job_can_have_give_none(pm, bad):
    pid = pm.startProcess("true", ifAsync=False)
    assert pm.getJobData(bad) is None
    assert pm.getJobData(bad, "status") is None
    assert pm.getJobData(bad, None) is None
    assert pm.killProcess(bad) is None
    assert pm.deleteJob(bad) is None
    assert pm.getJobData(pid, "status") == "finished"  # nothing else was touched


def test_an_integral_float_or_index_names_the_job(pm):
    # CCP4i2 looked ids up in a dict, where 1000.0 and 1000 are the same key.
    pid = pm.startProcess("true", ifAsync=False)
    assert pm.getJobData(float(pid), "status") == "finished"
    assert pm.getJobData(True) is None  # id 1: no job has it


def test_logging_goes_to_ccp4i2s_own_logger(pm, caplog):
    def bad(pid):
        raise RuntimeError("boom-17")

    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        pid = pm.startProcess("true", handler=bad, ifAsync=False)
        pm.killProcess(999_999_999)
    assert LOGGER_NAME == "ccp4i2.core.async_process_manager"
    mine = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert any(f"Started process {pid}" in r.getMessage() for r in mine)
    errors = [r for r in caplog.records if "boom-17" in r.getMessage()
              or (r.exc_info and "boom-17" in str(r.exc_info[1]))]
    # logged once, to CCP4i2's logger, with the traceback; not again to procman's own logger
    assert len(errors) == 1 and errors[0].name == LOGGER_NAME and errors[0].exc_info
    assert any("999999999" in r.getMessage() and r.levelno == logging.WARNING for r in mine)
    assert "RuntimeError: boom-17" in pm.getJobData(pid, "handlerError")


def test_a_host_configured_parent_logger_sees_the_records(pm):
    # A host that configures CCP4i2's logging (the 'ccp4i2' logger) receives procman's records.
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    parent = logging.getLogger("ccp4i2")
    handler = Collect(level=logging.INFO)
    old_level, old_propagate = parent.level, parent.propagate
    parent.addHandler(handler)
    parent.setLevel(logging.INFO)
    try:
        pid = pm.startProcess("true", ifAsync=False)
    finally:
        parent.removeHandler(handler)
        parent.setLevel(old_level)
        parent.propagate = old_propagate
    assert any(f"Started process {pid}" in r.getMessage() for r in records)


def test_env_is_a_dict_as_in_ccp4i2(pm):
    inherited = pm.startProcess("true", ifAsync=False)
    env = pm.getJobData(inherited, "env")
    assert isinstance(env, dict) and env == dict(os.environ)
    env["PROCMAN_TEST_CHANGE"] = "1"  # a copy: changing it changes nothing
    assert "PROCMAN_TEST_CHANGE" not in pm.getJobData(inherited, "env")
    assert pm.getJobData(inherited, None)["env"] == dict(os.environ)
    given = pm.startProcess("true", env={"ONLY": "1"}, ifAsync=False)
    assert pm.getJobData(given, "env") == {"ONLY": "1"}


def test_version_and_typed_marker():
    import importlib.metadata
    import pathlib

    assert procman.__version__ == importlib.metadata.version("procman")
    assert (pathlib.Path(procman.__file__).parent / "py.typed").exists()


def test_error_file_extra_merges_or_redirects_stderr(pm, tmp_path):
    log = tmp_path / "job.log"
    pm.startProcess("sh", ["-c", "echo out; echo err >&2"], logFile=str(log),
                    errorFile=str(log), ifAsync=False)
    assert sorted(log.read_text().split()) == ["err", "out"]
    assert not (tmp_path / "job_err.txt").exists()
    other = tmp_path / "other.txt"
    pid = pm.startProcess("sh", ["-c", "echo err2 >&2"], logFile=str(tmp_path / "b.log"),
                          errorFile=str(other), ifAsync=False)
    assert other.read_text() == "err2\n"
    assert pm.getJobData(pid, "errFile") == str(other)


def test_no_asyncio_import_without_a_loop(tmp_path):
    # asyncio costs ~40 ms to import: a host without a loop does not pay for it, and a job
    # started and awaited there (handler included) still works.
    import subprocess
    import sys

    script = (
        "import sys, procman\n"
        "pm = procman.AsyncProcessManager()\n"
        "seen = []\n"
        "pid = pm.startProcess('true', handler=lambda pid: seen.append(pid), ifAsync=False)\n"
        "assert seen == [pid], seen\n"
        "print(sorted(m for m in ('asyncio', 'inspect') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=tmp_path, timeout=PATIENCE)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- issue #17 item 2: handlers on a pool of threads --------------------------------------

def test_slow_handlers_do_not_hold_back_each_other(pm):
    # CCP4i2's handlers post-process (parse XML, write to the database): three that take 1 s
    # each finish in about 1 s on the original's 4-thread executor, and here.
    t0 = time.monotonic()
    dones = [Done() for _ in range(3)]

    def slow(done):
        def handler(pid):
            time.sleep(1)
            done(pid)
        return handler

    for d in dones:
        pm.startProcess("true", handler=slow(d))
    for d in dones:
        d.wait()
    took = time.monotonic() - t0
    assert took < 2.5, f"the handlers ran one after the other: {took:.1f} s"
    assert len({d.thread.name for d in dones}) == 3


def test_a_synchronous_start_inside_a_handler_waits_for_the_inner_handler(pm):
    order = []
    finished = threading.Event()

    def inner(pid):
        time.sleep(0.2)
        order.append("inner handler")

    def outer(pid):
        pm.startProcess("true", handler=inner, ifAsync=False)
        order.append("startProcess returned")
        finished.set()

    pm.startProcess("true", handler=outer)
    assert finished.wait(PATIENCE)
    assert order == ["inner handler", "startProcess returned"]


def test_pythonic_manager_handler_threads(tmp_path):
    for threads, sequential in ((1, True), (3, False)):
        with procman.Manager(handler_threads=threads) as m:
            t0 = time.monotonic()
            ids = [m.start(procman.JobSpec("true", on_finish=lambda r: time.sleep(0.5)))
                   for _ in range(3)]
            for i in ids:
                m.wait(i, PATIENCE)
            took = time.monotonic() - t0
        if sequential:
            assert took >= 1.5, took
        else:
            assert took < 1.4, took
    with pytest.raises(ValueError):
        procman.Manager(handler_threads=0)
