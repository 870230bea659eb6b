"""procman on Slurm from Python (issue 13): the Pythonic ``Manager(slurm=...)`` and the CCP4i2
drop-in switched by ``PROCMAN_SLURM``, against a real Slurm (``bash .ci/start-slurm.sh``).

Skipped when no Slurm answers, unless ``PROCMAN_TEST_SLURM=1`` (as ``.ci/run`` sets after
starting one): then a missing Slurm fails."""

import os
import subprocess
import sys
import threading
import time

import pytest

import procman
from conftest import PATIENCE


def _slurm_answers():
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.strip() != b""


if not _slurm_answers():
    if os.environ.get("PROCMAN_TEST_SLURM") == "1":
        raise RuntimeError("PROCMAN_TEST_SLURM=1 but no Slurm answers (bash .ci/start-slurm.sh)")
    pytest.skip("needs Slurm: bash .ci/start-slurm.sh", allow_module_level=True)


def _until(cond, what):
    deadline = time.monotonic() + PATIENCE
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_manager_on_slurm_reads_queued_then_finished(tmp_path):
    log = tmp_path / "out.log"
    # --begin keeps the job in Slurm's queue for a few seconds whatever the cluster's load.
    with procman.Manager(limit=2, slurm={"sbatch_arg": ["--begin=now+2"]}) as m:
        spec = procman.JobSpec("sh", ["-c", "echo on-slurm"], log_file=str(log))
        jid = m.start(spec)
        _until(lambda: m.job(jid).status != "pending", "never submitted")
        r = m.job(jid)
        assert r.status == "queued" and r.pid is not None, r
        assert m.running() == []
        r = m.wait(jid, timeout=PATIENCE)
        assert r.status == "finished", r
        assert log.read_text() == "on-slurm\n"
    assert "queued" in procman.STATUSES


def test_manager_job_steps_in_an_allocation_it_requests():
    with procman.Manager(limit=2, slurm="steps=2") as m:
        ids = [m.start(procman.JobSpec("sh", ["-c", f"exit {i % 2}"])) for i in range(6)]
        records = [m.wait(i, timeout=PATIENCE) for i in ids]
        assert [r.status for r in records] == ["finished", "failed"] * 3


def test_manager_arrays_under_a_limit_hold_and_release(tmp_path):
    # limit 1: the first job goes with its slot, the other three wait in Slurm held and run
    # one at a time; each keeps its own log, and its array and task in the record.
    with procman.Manager(limit=1, slurm="array=yes") as m:
        logs = [tmp_path / f"{i}.log" for i in range(4)]
        ids = [
            m.start(procman.JobSpec("sh", ["-c", f"echo job {i}"], log_file=str(log)))
            for i, log in enumerate(logs)
        ]
        _until(lambda: all(m.job(j).pid is not None for j in ids), "never submitted")
        queued = [m.job(j) for j in ids]
        assert all(r.status in ("queued", "running", "finished") for r in queued), queued
        assert all(r.array_task is not None for r in queued), queued
        assert len({(r.pid, r.array_task) for r in queued}) == 4, queued
        records = [m.wait(j, timeout=PATIENCE) for j in ids]
        assert [r.status for r in records] == ["finished"] * 4, records
        assert [log.read_text() for log in logs] == [f"job {i}\n" for i in range(4)]


def test_bad_slurm_options_are_refused():
    with pytest.raises(ValueError, match="colour"):
        procman.Manager(slurm="colour=blue")
    with pytest.raises(TypeError):
        procman.Manager(slurm=3.5)


DROP_IN = r"""
import sys, time, procman
pm = procman.AsyncProcessManager()
seen = []
t0 = time.monotonic()
pid = pm.startProcess("sh", ["-c", "echo drop-in"], logFile=sys.argv[1])
deadline = time.monotonic() + 60
while pm.getJobData(pid, "status") not in ("finished", "failed"):
    seen.append(pm.getJobData(pid, "status"))
    assert time.monotonic() < deadline
    time.sleep(0.02)
took = time.monotonic() - t0
print(sorted(set(seen)), pm.getJobData(pid, "status"), pm.getJobData(pid, "exitCode"), took)
"""


def test_ccp4i2_drop_in_runs_on_slurm_when_procman_slurm_is_set(tmp_path):
    log = tmp_path / "drop-in.log"
    env = dict(os.environ, PROCMAN_SLURM="sbatch_arg=--begin=now+2")
    out = subprocess.run([sys.executable, "-c", DROP_IN, str(log)], env=env,
                         capture_output=True, text=True, timeout=PATIENCE * 2)
    assert out.returncode == 0, out.stderr
    # A job in Slurm's queue reads 'pending' to CCP4i2, then it runs and finishes.
    status, code, took = out.stdout.split("] ")[1].split()
    assert (status, code) == ("finished", "0"), out.stdout
    assert "'pending'" in out.stdout and "'queued'" not in out.stdout, out.stdout
    # It waited for --begin in Slurm's queue: it ran on Slurm, not here.
    assert float(took) > 1.5, out.stdout
    assert log.read_text() == "drop-in\n"


def test_observer_and_progress_of_a_slurm_job_come_while_it_runs(tmp_path):
    """Issue 13: ``observe=`` is called and ``progress`` events come (through ``events()``)
    while a Slurm job runs: the job waits for a file the test creates only once the observer
    had its first line; its last line has no newline."""
    go = tmp_path / "go"
    log = tmp_path / "out.log"
    lines = []
    first = threading.Event()

    def observe(jid, stream, line):
        lines.append((stream, line))
        first.set()

    def parse(line):
        return (0.5, "half") if line == b"half way" else None

    script = 'echo "half way"; echo err >&2; while [ ! -e "$1" ]; do sleep 0.05; done; printf end'
    with procman.Manager(limit=2, slurm="yes") as m:
        events = m.events()
        jid = m.start(procman.JobSpec("sh", ["-c", script, "sh", str(go)], log_file=str(log),
                                      observe=observe, progress=parse))
        assert first.wait(PATIENCE * 5), "no line while the job ran"
        assert m.job(jid).status in ("queued", "running")
        go.write_text("")
        r = m.wait(jid, timeout=PATIENCE * 5)
        assert r.status == "finished", r
        assert sorted(lines) == [("stderr", b"err"), ("stdout", b"end"), ("stdout", b"half way")]
        progress = [e for e in events.pending() if e.kind == "progress" and e.id == jid]
        assert progress and progress[0].progress.fraction == 0.5, progress
