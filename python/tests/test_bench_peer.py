"""python/bench_peer.py keeps the benchmark harness's peer contract (../shared/bench/README.md)
through both APIs: every job's output in LOGDIR/job-<i>.log, stderr merged, the timeout
enforced, exit 0, and the BENCH_SELF line last on stderr."""

import os
import subprocess
import sys

import pytest

from conftest import PATIENCE

PEER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench_peer.py")


def run_peer(api, workload, n, tmp_path):
    logdir = tmp_path / "logs"
    env = dict(os.environ, PROCMAN_PY_API=api)
    proc = subprocess.run([sys.executable, PEER, workload, str(n), "3", str(logdir)],
                          env=env, capture_output=True, text=True, timeout=PATIENCE)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("BENCH_SELF "), proc.stderr
    fields = dict(kv.split("=", 1) for kv in last.split()[1:])
    return proc.returncode, fields, logdir


@pytest.mark.parametrize("api", ["pythonic", "ccp4i2"])
def test_many_short_jobs_each_with_its_log(api, tmp_path):
    code, fields, logdir = run_peer(api, "w1", 40, tmp_path)
    assert code == 0, fields
    assert fields["done"] == "40" and fields["failed"] == "0" and fields["api"] == api
    assert sorted(os.listdir(logdir)) == sorted(f"job-{i}.log" for i in range(40))
    assert 0 < int(fields["maxrss_kb"]) < 64 * 1024
    assert float(fields["wall_s"]) > 0


@pytest.mark.parametrize("api", ["pythonic", "ccp4i2"])
def test_stdout_and_stderr_in_one_log(api, tmp_path, monkeypatch):
    # w2's command, shrunk: 50 MiB + 5 MiB per job would be slow in a unit test; the peer's
    # table is the harness's, so run the same shape through a one-job w2 run.
    code, fields, logdir = run_peer(api, "w2", 1, tmp_path)
    assert code == 0, fields
    assert os.listdir(logdir) == ["job-0.log"], "stderr went to a file of its own"
    assert os.path.getsize(logdir / "job-0.log") == 52428800 + 5242880


@pytest.mark.parametrize("api", ["pythonic", "ccp4i2"])
def test_timeouts_are_enforced(api, tmp_path):
    code, fields, _ = run_peer(api, "w4", 3, tmp_path)
    assert code == 0, fields
    assert fields["timed_out"] == "3"
    assert float(fields["wall_s"]) < 20  # the jobs sleep 30 s: they were ended, not waited for
