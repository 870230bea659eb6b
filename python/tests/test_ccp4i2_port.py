"""Ports of CCP4i2's own process-manager tests, run against procman's AsyncProcessManager.

CCP4i2's tests await ``_startProcess_async`` from an asyncio loop; each case here does the
same, and the synchronous ``startProcess`` is covered beside it.
"""

import asyncio
import shlex
import threading

import procman
from conftest import PATIENCE, Done, gate, wait_until


def test_singleton_identity():
    a = procman.AsyncProcessManager()
    b = procman.AsyncProcessManager()
    assert a is b
    assert procman.ASYNC_PROCESSMANAGER() is a


def test_singleton_identity_across_threads():
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(procman.AsyncProcessManager()))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(x is procman.ASYNC_PROCESSMANAGER() for x in seen)


def test_ids_start_at_1000(pm, done):
    pid = pm.startProcess("true", handler=done)
    assert isinstance(pid, int) and pid >= 1000
    done.wait()


def test_echo_finishes_with_code_0_and_status_finished_inside_its_handler(pm, tmp_path):
    seen = {}
    finished = threading.Event()

    def handler(pid):
        seen["exitCode"] = pm.getJobData(pid, "exitCode")
        seen["status"] = pm.getJobData(pid, "status")
        seen["exitStatus"] = pm.getJobData(pid)
        finished.set()

    async def main():
        return await pm._startProcess_async(
            command="echo", args=["hello"], logFile=str(tmp_path / "echo.log"),
            handler=[handler, {}])

    asyncio.run(main())
    assert finished.wait(10)
    assert seen == {"exitCode": 0, "status": "finished", "exitStatus": 0}


def test_handler_receives_its_pid_and_kwargs(pm, done):
    async def main():
        return await pm._startProcess_async("echo", ["x"], handler=[done, {"tag": "a"}])

    pid = asyncio.run(main())
    assert done.wait() == [(pid, {"tag": "a"})]


def test_bare_callable_handler(pm, done):
    pid = pm.startProcess("true", handler=done)
    assert done.wait() == [(pid, {})]


def test_log_file_holds_the_output(pm, tmp_path):
    log = tmp_path / "sub" / "job.log"
    pm.startProcess("sh", ["-c", "echo to-out; echo to-err >&2"], logFile=str(log),
                    ifAsync=False)
    assert log.read_text() == "to-out\n"
    assert (tmp_path / "sub" / "job_err.txt").read_text() == "to-err\n"


def test_false_gives_exit_code_1_and_exit_status_1(pm, done):
    async def main():
        return await pm._startProcess_async("false", handler=[done, {}])

    pid = asyncio.run(main())
    done.wait()
    assert pm.getJobData(pid, "exitCode") == 1
    assert pm.getJobData(pid, "exitStatus") == 1
    assert pm.getJobData(pid, "status") == "failed"


def test_get_job_data_answers_command_exit_code_exit_status_status(pm, tmp_path):
    pid = pm.startProcess("echo", ["data"], logFile=str(tmp_path / "l.log"), ifAsync=False)
    assert pm.getJobData(pid, "command") == "echo"
    assert pm.getJobData(pid, "exitCode") == 0
    assert pm.getJobData(pid, "exitStatus") == 0
    assert pm.getJobData(pid, "status") == "finished"
    assert pm.getJobData(pid) == 0  # the default attribute is exitStatus
    assert pm.getJobData(pid, "args") == ["data"]
    assert pm.getJobData(pid, "logFile") == str(tmp_path / "l.log")
    assert pm.getJobData(pid, "pid") == pid
    assert pm.getJobData(pid, "finishTime") >= pm.getJobData(pid, "startTime") > 0
    assert pm.getJobData(pid, "noSuchAttribute") is None
    everything = pm.getJobData(pid, None)
    assert set(everything) == set(procman.ccp4i2.JOB_ATTRIBUTES)
    assert everything["status"] == "finished"


def test_three_concurrent_jobs(pm, tmp_path):
    # Each job marks that it runs, then waits for the test's go, which comes only once all
    # three are listed as running: run one after another, they would end by their timeout.
    handlers = [Done() for _ in range(3)]
    go = tmp_path / "go"
    markers = [tmp_path / f"running{i}" for i in range(3)]

    async def main():
        return await asyncio.gather(*[
            pm._startProcess_async("sh", ["-c", f"touch {shlex.quote(str(m))}; {gate(go)}"],
                                   handler=[h, {}], timeout=PATIENCE * 1000)
            for h, m in zip(handlers, markers)])

    pids = asyncio.run(main())
    assert len(set(pids)) == 3
    assert wait_until(lambda: all(m.exists() for m in markers)), \
        "the three jobs did not run at the same time"
    assert set(pids) <= set(pm.getRunningProcesses())
    go.touch()
    for h, pid in zip(handlers, pids):
        assert h.wait() == [(pid, {})]
        assert pm.getJobData(pid, "status") == "finished"


def test_delete_job_makes_get_job_data_return_none(pm):
    pid = pm.startProcess("true", ifAsync=False)
    assert pm.getJobData(pid, "status") == "finished"
    pm.deleteJob(pid)
    assert pm.getJobData(pid) is None
    assert pm.getJobData(pid, "status") is None
    assert pm.getJobData(999_999) is None


def test_running_job_is_listed_then_gone(pm, done, tmp_path):
    # The job runs until the test lets it end, so "running" is seen however slow the machine.
    go = tmp_path / "go"
    pid = pm.startProcess("sh", ["-c", gate(go)], handler=done, timeout=PATIENCE * 1000)
    assert wait_until(lambda: pid in pm.getRunningProcesses())
    assert pm.getJobData(pid, "status") == "running"
    assert pm.getJobData(pid, "exitStatus") is None  # as CCP4i2: not known yet
    go.touch()
    done.wait()
    assert pm.getJobData(pid, "status") == "finished"
    assert pid not in pm.getRunningProcesses()


def test_start_process_async_works_on_a_loop_in_another_thread(pm, done):
    result = {}

    def thread_main():
        async def main():
            return await pm._startProcess_async("echo", ["t"], handler=[done, {}],
                                                ifAsync=False)
        result["pid"] = asyncio.run(main())

    t = threading.Thread(target=thread_main)
    t.start()
    t.join(PATIENCE)
    assert done.calls == [(result["pid"], {})]  # ifAsync=False: the handler already ran


def test_start_process_async_with_if_async_false_keeps_the_loop_free(pm, done, tmp_path):
    # The job says it started and then waits for an answer from a task on the same loop: if
    # awaiting the job blocked the loop, no answer would come and the job would time out.
    started, answer = tmp_path / "started", tmp_path / "answer"

    async def answerer():
        while not started.exists():
            await asyncio.sleep(0.005)
        answer.touch()

    async def main():
        task = asyncio.create_task(answerer())
        pid = await pm._startProcess_async(
            "sh", ["-c", f"touch {shlex.quote(str(started))}; {gate(answer)}"],
            handler=[done, {}], ifAsync=False, timeout=PATIENCE * 1000)
        task.cancel()
        return pid

    pid = asyncio.run(main())
    assert done.calls == [(pid, {})]
    assert pm.getJobData(pid, "status") == "finished", "the loop was blocked while the job ran"


def test_timeout_in_milliseconds(pm, done):
    # 300 ms; read as seconds, the 1000 s sleep would outlast the handler wait.
    pid = pm.startProcess("sleep", ["1000"], timeout=300, handler=done)
    done.wait()
    assert pm.getJobData(pid, "status") == "timeout"
    assert pm.getJobData(pid, "exitCode") == -1
    assert pm.getJobData(pid, "exitStatus") == 1


def test_zero_and_negative_timeouts_mean_none(pm):
    for timeout in (0, -1, None):
        pid = pm.startProcess("sleep", ["0.2"], timeout=timeout, ifAsync=False)
        assert pm.getJobData(pid, "status") == "finished"


def test_input_file_interpreter_cwd_and_env(pm, tmp_path):
    (tmp_path / "in.txt").write_text("keywords\n")
    (tmp_path / "script.sh").write_text('cat; pwd; echo "$ONLY:${HOME:-unset}"\n')
    log = tmp_path / "out.log"
    pid = pm.startProcess("script.sh", inputFile=str(tmp_path / "in.txt"), logFile=str(log),
                          interpreter="/bin/sh", cwd=str(tmp_path), env={"ONLY": "1"},
                          ifAsync=False)
    assert pm.getJobData(pid, "status") == "finished"
    assert log.read_text() == f"keywords\n{tmp_path}\n1:unset\n"


def test_unknown_keyword_arguments_are_logged(pm, caplog):
    with caplog.at_level("WARNING", logger="ccp4i2.core.async_process_manager"):
        pid = pm.startProcess("true", ifAsync=False, jobId=7, priority="high")
    assert pm.getJobData(pid, "status") == "finished"
    assert "jobId, priority" in caplog.text


def test_missing_program_is_spawn_failed(pm, done):
    pid = pm.startProcess("/no/such/program", handler=done)
    done.wait()
    assert pm.getJobData(pid, "status") == "spawn_failed"
    assert pm.getJobData(pid, "exitStatus") == 1
    assert pm.getJobData(pid, "exitCode") == -1
    assert "/no/such/program" in pm.getJobData(pid, "error")


def test_kill_process(pm, done):
    pid = pm.startProcess("sleep", ["30"], handler=done)
    assert wait_until(lambda: pid in pm.getRunningProcesses())
    assert pm.killProcess(pid) == "killing"
    done.wait()
    assert pm.getJobData(pid, "status") == "killed"
    assert pm.getJobData(pid, "exitCode") == -15
    assert pm.killProcess(999_999) is None
