"""Where procman's AsyncProcessManager must behave better than CCP4i2's asyncio one."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import procman
from conftest import PATIENCE, Done, alive, wait_until


def test_grandchild_is_killed_on_timeout(pm, done, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    pid = pm.startProcess("sh", ["-c", f"sleep 60 & echo $! > {pidfile}; wait"],
                          timeout=300, handler=done)
    done.wait()
    assert pm.getJobData(pid, "status") == "timeout"
    grandchild = int(pidfile.read_text())
    assert wait_until(lambda: not alive(grandchild)), "the grandchild outlived the job"


def test_synchronous_run_longer_than_5_seconds(pm, done):
    # CCP4i2 waited for the id with future.result(timeout=5.0): a 6 s synchronous job failed.
    t0 = time.monotonic()
    pid = pm.startProcess("sleep", ["5.5"], handler=done, ifAsync=False)
    assert time.monotonic() - t0 >= 5.5
    assert done.calls == [(pid, {})]  # the handler has run before startProcess returns
    assert pm.getJobData(pid, "status") == "finished"


def test_deleting_a_running_job_still_calls_its_handler(pm, done):
    pid = pm.startProcess("sleep", ["30"], handler=done)
    assert wait_until(lambda: pid in pm.getRunningProcesses())
    assert pm.deleteJob(pid) is True
    assert pm.getJobData(pid) is None
    assert done.wait() == [(pid, {})]
    assert pid not in pm.getRunningProcesses()


def test_killing_a_pending_job_means_it_never_starts(pm, tmp_path):
    limit = pm.manager.limit
    blockers = [pm.startProcess("sleep", ["30"]) for _ in range(limit)]
    marker = tmp_path / "ran"
    done = Done()
    pid = pm.startProcess("touch", [str(marker)], handler=done)
    # Queued behind the cancelled job: admission is in submission order (DESIGN.md), so once
    # this one has run, the cancelled one would have been started before it.
    after = pm.startProcess("true")
    try:
        assert pm.getJobData(pid, "status") == "pending"
        assert pid in pm.getPendingProcesses()
        assert pm.killProcess(pid) == "cancelled"
        done.wait()
        assert pm.getJobData(pid, "status") == "cancelled"
        assert pm.getJobData(pid, "exitStatus") == 1
    finally:
        for b in blockers:
            pm.killProcess(b)
    for b in blockers:
        pm.waitForJob(b, PATIENCE)
    assert pm.waitForJob(after, PATIENCE).status == "finished"
    rec = pm.waitForJob(pid, PATIENCE)
    assert rec.status == "cancelled"
    assert rec.started_at is None and rec.pid is None, "the cancelled job was started"
    assert not marker.exists(), "the cancelled job ran"


def test_handler_calling_back_into_the_manager_does_not_deadlock(pm, tmp_path):
    results = {}
    finished = threading.Event()

    def outer(pid):
        results["outer_status"] = pm.getJobData(pid, "status")
        # A synchronous job started from inside a handler: with procman's 4 handler threads it
        # returns after the inner job's handler too, as CCP4i2's original does.
        inner_pid = pm.startProcess("echo", ["inner"], logFile=str(tmp_path / "inner.log"),
                                    handler=[inner, {}], ifAsync=False)
        results["inner_handler_before_return"] = "inner_handler" in results
        results["inner_status"] = pm.getJobData(inner_pid, "status")
        results["running"] = pm.getRunningProcesses()
        pm.deleteJob(pid)
        finished.set()

    def inner(pid):
        results["inner_handler"] = pid

    outer_pid = pm.startProcess("true", handler=outer)
    assert finished.wait(PATIENCE), "deadlock: the outer handler never returned"
    assert results["outer_status"] == "finished"
    assert results["inner_status"] == "finished"
    assert results["inner_handler_before_return"], "startProcess returned before the handler"
    assert pm.getJobData(outer_pid) is None


def test_ctrl_c_interrupts_a_synchronous_start(tmp_path):
    # The job writes its process id once it runs: then the child is inside startProcess.
    job_pid = tmp_path / "job.pid"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(os.path.dirname(procman.__file__))!r})
        import procman
        pm = procman.AsyncProcessManager()
        t0 = time.monotonic()
        try:
            pm.startProcess("sh", ["-c", "echo $$ > {job_pid}.tmp; mv {job_pid}.tmp {job_pid};"
                                         " exec sleep 1000"], ifAsync=False)
        except KeyboardInterrupt:
            pid = 1000
            rec = pm.waitForJob(pid, {PATIENCE})
            print("interrupted", round(time.monotonic() - t0, 1), rec.status, flush=True)
            sys.exit(3)
        print("not interrupted", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until(job_pid.exists), "the job never started"
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=PATIENCE)
    finally:
        child.kill()
    assert child.returncode == 3, out
    words = out.split()
    # Far less than the job's 1000 s: the interrupt ended the wait (upper bound only).
    assert words[0] == "interrupted" and float(words[1]) < PATIENCE
    assert words[2] in ("killed", "cancelled")
    assert wait_until(lambda: not alive(int(job_pid.read_text()))), "the job outlived Ctrl-C"


def test_handler_exception_is_logged_and_recorded(pm, caplog):
    def bad(pid):
        raise RuntimeError("boom")

    with caplog.at_level("ERROR", logger="ccp4i2.core.async_process_manager"):
        pid = pm.startProcess("true", handler=bad, ifAsync=False)
        rec = pm.waitForJob(pid)
    assert "RuntimeError: boom" in rec.handler_error
    assert "boom" in caplog.text
    assert pm.getJobData(pid, "handlerError") == rec.handler_error
    # the dispatcher goes on
    done = Done()
    pm.startProcess("true", handler=done)
    done.wait()


def test_handlers_run_on_the_dispatcher_thread_with_other_threads_free(pm, done):
    pid = pm.startProcess("true", handler=done, ifAsync=False)
    assert done.thread is not threading.main_thread()
    assert done.thread.name != threading.current_thread().name
    assert pm.getJobData(pid, "status") == "finished"


def test_coroutine_handler_runs(pm):
    import asyncio

    seen = []

    async def handler(pid, tag):
        await asyncio.sleep(0)
        seen.append((pid, tag))

    pid = pm.startProcess("true", handler=[handler, {"tag": "x"}], ifAsync=False)
    assert seen == [(pid, "x")]  # started outside a loop: run on the dispatcher thread

    async def main():
        p = await pm._startProcess_async("true", handler=[handler, {"tag": "y"}])
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            if (p, "y") in seen:
                return p
            await asyncio.sleep(0.01)
        raise AssertionError("the coroutine handler never ran on the loop")

    asyncio.run(main())


def test_handler_threads_keep_their_python_thread_state(pm):
    # As on the original's ThreadPoolExecutor threads, a handler thread is one Python thread for
    # its whole life: its threading.local() data is still there for its next handler (and
    # attaching it costs no new thread state each time: the speed of w1's CCP4i2 peer).
    local = threading.local()
    lock = threading.Lock()
    counts = []

    def handler(pid):
        local.n = getattr(local, "n", 0) + 1
        with lock:
            counts.append(local.n)

    # More jobs than the 4 handler threads: some thread runs at least two handlers.
    pids = [pm.startProcess("true", handler=[handler, {}]) for _ in range(12)]
    for pid in pids:
        pm.waitForJob(pid, PATIENCE)
    assert len(counts) == 12
    assert max(counts) >= 2, "every handler ran in a fresh Python thread state"
    assert sum(1 for c in counts if c == 1) <= 4  # one first call per handler thread
