"""Watching jobs from Python (issue 14): the event iterator, live usage samples, progress
parsers, and CCP4i2's getJobData live figures."""

import sys
import threading
import time

import pytest

import procman
from procman import Event, JobSpec, Manager, Progress
from conftest import PATIENCE, gate, wait_until

# Burns about 0.6 s of CPU in a child process of the job, holding about 60 MB.
BURN = (
    "import time\n"
    "x = bytearray(60 * 1024 * 1024)\n"
    "for i in range(0, len(x), 4096): x[i] = 1\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.6: pass\n"
)


def cycles(line):
    words = line.split()
    if b"cycle" in words:
        i = words.index(b"cycle")
        n, m = int(words[i + 1]), int(words[i + 3])
        return (n / m, f"cycle {n} of {m}")
    return None


def refmac_like(m, pause):
    return f"for i in $(seq 1 {m}); do sleep {pause}; echo \"Refinement cycle $i of {m}\"; echo noise; done"


def test_events_iterate_in_order_and_end_on_shutdown(tmp_path):
    m = Manager(limit=2, sample_interval=0.05)
    events = m.events()
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(events))
    reader.start()
    script = f'"$1" -c "$2"; {refmac_like(3, 0.05)}'
    jid = m.start(JobSpec("sh", ["-c", script, "sh", sys.executable, BURN], progress=cycles))
    rec = m.wait(jid)
    assert rec.status == "finished", rec.describe()
    m.shutdown()
    reader.join(PATIENCE)
    assert not reader.is_alive(), "the iteration ends once the manager has shut down"
    kinds = [e.kind for e in seen if e.id == jid]
    assert kinds[0] == "queued" and kinds[1] == "started" and kinds[-1] == "finished"
    assert "usage" in kinds and "progress" in kinds
    assert all(isinstance(e, Event) for e in seen)
    usage = [e.usage for e in seen if e.kind == "usage"]
    assert max(u.peak_rss for u in usage) >= 50 * 1024 * 1024
    assert max(u.cpu for u in usage) >= 0.3
    progress = [e.progress for e in seen if e.kind == "progress"]
    assert progress[-1].fraction == 1.0 and progress[-1].message == "cycle 3 of 3"
    finished = seen[-1] if seen[-1].id == jid else [e for e in seen if e.kind == "finished"][0]
    assert finished.record.id == jid and finished.status == "finished"
    s = rec.sampled
    assert s is not None and s.samples >= 2 and s.peak_rss >= 50 * 1024 * 1024
    assert 0.3 <= s.cpu <= 3.0, s


def test_usage_and_progress_while_running(manager, tmp_path):
    go = tmp_path / "go"
    m = Manager(sample_interval=0.02)
    try:
        jid = m.start(JobSpec("sh", ["-c", f"echo 'cycle 2 of 4'; {gate(go)}"], progress=cycles))
        assert wait_until(lambda: m.usage(jid) is not None and m.progress(jid) is not None)
        u = m.usage(jid)
        assert u.processes >= 1 and u.threads >= 1 and u.rss > 0 and u.elapsed > 0
        p = m.progress(jid)
        assert (p.fraction, p.message) == (0.5, "cycle 2 of 4")
        go.touch()
        rec = m.wait(jid)
        assert m.usage(jid) is None and m.progress(jid) is None
        assert rec.sampled is not None
    finally:
        m.shutdown()
    # A manager that does not sample has no figures.
    rec = manager.run(JobSpec("true"))
    assert rec.sampled is None


def test_progress_parser_results_and_errors(manager):
    results = iter([0.25, "half way", (None, "msg"), Progress(1.0, "done"), "x", None])
    jid = manager.start(JobSpec("sh", ["-c", "for i in 1 2 3 4; do echo $i; sleep 0.05; done"],
                                progress=lambda line: next(results)))
    events = manager.events()
    rec = manager.wait(jid)
    assert rec.status == "finished"
    got = [e.progress for e in events.pending() if e.kind == "progress"]
    # Subscribed late: whatever arrived is in order and well formed.
    for p in got:
        assert p.fraction is None or 0.0 <= p.fraction <= 1.0
    # A parser that raises or returns nonsense leaves the job alone.
    rec = manager.run(JobSpec("echo", ["x"], progress=lambda line: 1 / 0))
    assert rec.status == "finished"
    rec = manager.run(JobSpec("echo", ["x"], progress=lambda line: object()))
    assert rec.status == "finished"
    with pytest.raises(TypeError):
        manager.start(JobSpec("true", progress=42))


def test_pending_never_blocks(manager):
    events = manager.events(capacity=4)
    t = time.monotonic()
    assert events.pending() == []
    assert time.monotonic() - t < 1.0


def test_getjobdata_answers_live_figures(pm, tmp_path):
    go = tmp_path / "go"
    pid = pm.startProcess("sh", ["-c", f"{sys.executable} -c 'x = bytearray(30_000_000); import time; time.sleep(30)' & {gate(go)}; kill $!"])
    # The process-wide manager samples every second unless PROCMAN_SAMPLE_INTERVAL says not.
    assert wait_until(lambda: (pm.getJobData(pid, "memory") or 0) >= 25_000_000)
    for name in ("cpuPercent", "cpuTime", "memory", "peakMemory", "threads", "processes"):
        assert pm.getJobData(pid, name) is not None, name
    assert pm.getJobData(pid, "processes") >= 2
    assert pm.getJobData(pid, "progress") is None
    go.touch()
    pm.waitForJob(pid)
    assert pm.getJobData(pid, "memory") is None
    assert pm.getJobData(pid, "peakMemory") >= 25_000_000
    everything = pm.getJobData(pid, None)
    assert set(everything) == set(procman.ccp4i2.JOB_ATTRIBUTES)


def test_getjobdata_answers_progress(pm, tmp_path):
    go = tmp_path / "go"
    pid = pm.startProcess("sh", ["-c", f"echo 'Refinement cycle 3 of 10'; {gate(go)}"],
                          progress=cycles)
    assert wait_until(lambda: pm.getJobData(pid, "progress") is not None)
    assert pm.getJobData(pid, "progress") == 0.3
    assert pm.getJobData(pid, "progressMessage") == "cycle 3 of 10"
    go.touch()
    pm.waitForJob(pid)
    assert pm.getJobData(pid, "progress") is None
