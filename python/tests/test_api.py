"""The Pythonic API: Manager, JobSpec, Record."""

import datetime
import gc
import shlex
import threading
import time

import pytest

import procman
from procman import JobSpec, Manager, StartError
from conftest import PATIENCE, alive, gate, wait_until


def test_run_gives_a_final_record(manager, tmp_path):
    log = tmp_path / "echo.txt"
    rec = manager.run(JobSpec("echo", ["hello", 42], log_file=log))
    assert rec.id >= 1000
    assert (rec.status, rec.exit_code, rec.exit_status) == ("finished", 0, 0)
    assert rec.is_final and rec.is_success
    assert rec.program == "echo" and rec.args == ["hello", "42"]
    assert rec.log_file == str(log) and rec.error_file == str(tmp_path / "echo_err.txt")
    assert log.read_text() == "hello 42\n"
    assert rec.pid > 0 and rec.attempts == 1
    assert rec.finished_at >= rec.started_at >= rec.queued_at
    assert rec.wall_time is not None and rec.describe() == "exited with code 0"
    assert "status='finished'" in repr(rec)


def test_start_wait_and_job(manager):
    jid = manager.start(JobSpec("sh", ["-c", "exit 3"]))
    rec = manager.wait(jid)
    assert (rec.status, rec.exit_code, rec.exit_status) == ("failed", 3, 1)
    assert manager.job(jid).status == "failed"
    assert manager.job(123_456) is None
    with pytest.raises(KeyError):
        manager.wait(123_456)


def test_wait_timeout_leaves_the_job_running(manager):
    jid = manager.start(JobSpec("sleep", ["30"]))
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        manager.wait(jid, timeout=0.3)
    # Not before the timeout; the upper bound only catches a wait that ignores its timeout.
    assert 0.29 <= time.monotonic() - t0 < PATIENCE
    assert manager.job(jid).status in ("pending", "running")
    assert manager.kill(jid) in ("killing", "cancelled")
    assert manager.wait(jid, PATIENCE).status in ("killed", "cancelled")
    assert manager.kill(jid) == "already_finished"
    assert manager.kill(999_999) is None


def test_on_finish_gets_the_record_on_the_one_dispatcher_thread(manager):
    got = []
    ids = [manager.start(JobSpec("true", on_finish=lambda r: got.append(
        (r.id, r.status, threading.get_native_id())))) for _ in range(3)]
    for jid in ids:
        manager.wait(jid)
    assert sorted(g[:2] for g in got) == [(jid, "finished") for jid in ids]
    threads = {g[2] for g in got}
    assert len(threads) == 1 and threading.get_native_id() not in threads


def test_handler_may_run_jobs_and_wait_inside(manager):
    got = {}

    def handler(rec):
        got["nested"] = manager.run(JobSpec("echo", ["nested"])).status
        got["all"] = manager.wait(rec.id).status

    jid = manager.start(JobSpec("true", on_finish=handler))
    manager.wait(jid, 10)
    assert got == {"nested": "finished", "all": "finished"}


def test_gil_is_released_while_waiting(manager, tmp_path):
    # The job says it started, then waits for a Python thread to answer. The job is started
    # only inside run(), so the answer can come only while the main thread waits in run(): if
    # run() held the GIL, no answer would come and the job would end by its timeout.
    started, answer = tmp_path / "started", tmp_path / "answer"
    stop = threading.Event()

    def answerer():
        while not stop.is_set():
            if started.exists():
                answer.touch()
                return
            time.sleep(0.005)

    t = threading.Thread(target=answerer)
    t.start()
    try:
        rec = manager.run(JobSpec("sh", ["-c", f"touch {shlex.quote(str(started))}; {gate(answer)}"],
                                  timeout=PATIENCE))
    finally:
        stop.set()
        t.join()
    assert rec.status == "finished", "another Python thread could not run during the wait"


def test_timeout_kills_the_whole_group(manager, tmp_path):
    pidfile = tmp_path / "gc.pid"
    rec = manager.run(JobSpec("sh", ["-c", f"sleep 60 & echo $! > {pidfile}; wait"],
                              timeout=datetime.timedelta(milliseconds=300), grace=0.2))
    assert rec.status == "timeout" and rec.exit_status == 1
    assert wait_until(lambda: not alive(int(pidfile.read_text())))


def test_environment_input_and_stderr_options(manager, tmp_path):
    rec = manager.run(JobSpec("sh", ["-c", 'cat; echo "$A$B" >&2'], input_bytes=b"in\n",
                              env={"A": "a", "PATH": "/usr/bin:/bin"}, env_update={"B": "b"},
                              log_file=tmp_path / "log", merge_stderr=True))
    assert rec.status == "finished"
    assert (tmp_path / "log").read_text() == "in\nab\n"
    assert not (tmp_path / "log_err.txt").exists()


def test_observer_sees_lines(manager):
    lines = []
    manager.run(JobSpec("sh", ["-c", "echo one; echo two >&2"],
                        observe=lambda jid, stream, line: lines.append((stream, line))))
    assert sorted(lines) == [("stderr", b"two"), ("stdout", b"one")]


def test_dependencies(manager):
    first = manager.start(JobSpec("false"))
    second = manager.start(JobSpec("true", after=[first]))
    assert manager.wait(second).status == "dependency_failed"


def test_pending_jobs_limit_pause_and_resume(manager):
    manager.pause()
    jid = manager.start(JobSpec("true"))
    assert manager.pending() == [jid] and manager.running() == []
    manager.resume()
    assert manager.wait(jid, 10).status == "finished"
    manager.limit = 2
    assert manager.limit == 2
    with pytest.raises(ValueError):
        manager.limit = 0


def test_bad_specs_are_refused(manager):
    with pytest.raises(StartError):
        manager.start(JobSpec("echo", ["a\0b"]))
    with pytest.raises(StartError):
        manager.start(JobSpec(""))
    with pytest.raises(TypeError):
        manager.start(JobSpec("echo", "not a list"))
    with pytest.raises(TypeError):
        manager.start(JobSpec("true", on_finish=3))
    with pytest.raises(ValueError):
        manager.start(JobSpec("true", timeout=-1))
    with pytest.raises(StartError):
        manager.start(JobSpec("true", after=[999_999]))


def test_delete_keeps_the_handler(manager):
    called = threading.Event()
    jid = manager.start(JobSpec("sleep", ["30"], on_finish=lambda r: called.set()))
    assert wait_until(lambda: jid in manager.running())
    assert manager.delete(jid)
    assert manager.job(jid) is None and not manager.delete(jid)
    assert called.wait(PATIENCE)


def test_wait_all(manager):
    ids = [manager.start(JobSpec("sleep", ["0.2"])) for _ in range(3)]
    manager.wait_all()
    assert all(manager.job(i).status == "finished" for i in ids)


def test_shutdown_kills_jobs_and_refuses_new_ones():
    m = Manager(limit=2, grace=0.2)
    called = threading.Event()
    jid = m.start(JobSpec("sleep", ["300"], on_finish=lambda r: called.set()))
    t0 = time.monotonic()
    m.shutdown()
    # Far less than the job's 300 s: shutdown kills, it does not wait for the job to end.
    assert time.monotonic() - t0 < PATIENCE
    assert called.is_set()
    assert m.job(jid).status in ("killed", "cancelled")
    with pytest.raises(StartError):
        m.start(JobSpec("true"))


def test_dropping_a_manager_with_live_jobs_and_handlers_does_not_hang():
    m = Manager(limit=1, grace=0.2)
    called = threading.Event()
    m.start(JobSpec("sleep", ["300"], on_finish=lambda r: called.set()))
    m.start(JobSpec("sleep", ["300"], on_finish=lambda r: called.set()))
    t0 = time.monotonic()
    del m
    gc.collect()
    # Far less than the jobs' 300 s: dropping kills them and runs their handlers.
    assert called.wait(PATIENCE) and time.monotonic() - t0 < PATIENCE


def test_global_manager_is_one_object():
    assert procman.global_manager() is procman.global_manager()
    assert procman.AsyncProcessManager().manager is procman.global_manager()


def test_durations_too_long_for_the_clock_mean_no_limit():
    """Issue 19: 1e19 s does not fit in the clock; as a wait, timeout, grace or drain limit it
    means no limit (before, the wait raised a panic and the others hung the manager)."""
    with procman.Manager(limit=1, grace=1e19) as m:
        jid = m.start(JobSpec("sh", ["-c", "exit 0"], timeout=1e19, grace=1e19))
        assert m.wait(jid, timeout=1e19).status == "finished"
        jid = m.start(JobSpec("sleep", ["30"]))
        assert wait_until(lambda: m.job(jid).status == "running")
        assert m.kill(jid) == "killing"
        rec = m.wait(jid, timeout=1e19)
        assert (rec.status, rec.signal) == ("killed", 15)
        jid = m.start(JobSpec("sleep", ["0.2"]))
        m.shutdown(cancel=False, timeout=1e19)
        assert m.job(jid).status == "finished"
