#!/usr/bin/env python3
"""procman's Python binding as a peer of the job-manager benchmark harness
(../shared/bench/README.md, "Peer contract").

Usage: bench_peer.py WORKLOAD N CONCURRENCY LOGDIR

Runs N jobs of WORKLOAD's command, at most CONCURRENCY at once, job i writing stdout and stderr
into LOGDIR/job-<i>.log, stdin /dev/null, the workload's timeout as an immediate SIGKILL
(grace 0), a trivial completion handler per job; exits 0 once every job is done, 1 if a job
did not end as the workload expects. Last stderr line: ``BENCH_SELF maxrss_kb=<VmHWM>
utime_s= stime_s= wall_s= done= failed= timed_out= api=``.

PROCMAN_PY_API chooses the API the jobs go through:
* ``pythonic`` (default): ``procman.Manager(limit=CONCURRENCY, grace=0,
  handler_threads=$PROCMAN_PY_HANDLER_THREADS or 1)``, one
  ``JobSpec(..., log_file=, merge_stderr=True, timeout=, on_finish=)`` per job, ``wait_all()``;
* ``ccp4i2``: CCP4i2's ``AsyncProcessManager`` (the process-wide manager, its limit set to
  CONCURRENCY), ``startProcess(cmd, args, logFile=, errorFile=<the same file>, timeout=<ms>,
  handler=[handler, {}])`` per job, then ``manager.wait_all()``. CCP4i2's class writes stderr to
  ``<log>_err.txt``; procman's extra keyword ``errorFile`` naming the log file merges it, as
  the contract wants. Its kill is SIGTERM then SIGKILL after the manager's grace (the
  workloads' jobs die on the SIGTERM).

As the Rust peer (``examples/bench_peer.rs``), two switches make the host what servers and GUIs
often are, to show that spawning costs the same there:
* ``PROCMAN_HOST_FD=1``: first open a descriptor a child would inherit (no close-on-exec);
* ``PROCMAN_HOST_BLOCK=1``: first block SIGINT, SIGTERM and SIGHUP in the main thread (the
  manager's threads inherit the mask).

procman starts every job as the leader of its own process group and kills the group, so
``BENCH_KILL=group`` changes nothing here (it is accepted and reported).
"""

import os
import resource
import sys
import threading
import time

WORKLOADS = {
    # name: (argv, per-job timeout in seconds or None); as ../shared/bench/peers/workloads.py
    "w1": (["/bin/true"], None),
    "w2": (["sh", "-c", "head -c 52428800 /dev/zero; head -c 5242880 /dev/zero >&2"], None),
    "w3": (["head", "-c", "1073741824", "/dev/zero"], None),
    "w4": (["sleep", "30.0424242"], 0.2),
    "w5": (["sh", "-c", "sleep 30.0515151 & sleep 30.0525252"], 0.2),
}


def vm_hwm_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def main(argv):
    if len(argv) != 5 or argv[1] not in WORKLOADS:
        sys.stderr.write("usage: %s {%s} N CONCURRENCY LOGDIR\n" % (argv[0], ",".join(WORKLOADS)))
        return 2
    cmd, timeout = WORKLOADS[argv[1]]
    n, conc, logdir = int(argv[2]), int(argv[3]), argv[4]
    os.makedirs(logdir, exist_ok=True)
    api = os.environ.get("PROCMAN_PY_API", "pythonic")
    if api not in ("pythonic", "ccp4i2"):
        sys.stderr.write("PROCMAN_PY_API must be pythonic or ccp4i2\n")
        return 2

    t0 = time.monotonic()
    host_fd = None
    if os.environ.get("PROCMAN_HOST_FD") == "1":
        host_fd = os.open("/dev/null", os.O_RDONLY)
        os.set_inheritable(host_fd, True)
    if os.environ.get("PROCMAN_HOST_BLOCK") == "1":
        import signal

        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    # This file sits next to procman's source folder, which has no native module: import the
    # installed package (the wheel), not that folder.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    import procman

    counts = {"done": 0, "failed": 0, "timed_out": 0}
    lock = threading.Lock()
    expect_timeout = timeout is not None

    def count(status):
        with lock:
            counts["done"] += 1
            if status == "timeout":
                counts["timed_out"] += 1
            elif status != "finished":
                counts["failed"] += 1

    if api == "pythonic":
        threads = int(os.environ.get("PROCMAN_PY_HANDLER_THREADS", "1"))
        manager = procman.Manager(limit=max(conc, 1), grace=0.0, handler_threads=threads)

        def on_finish(record):
            count(record.status)

        program, args = cmd[0], cmd[1:]
        for i in range(n):
            manager.start(procman.JobSpec(
                program, args, log_file=os.path.join(logdir, "job-%d.log" % i),
                merge_stderr=True, timeout=timeout, on_finish=on_finish))
        manager.wait_all()
        manager.shutdown()
    else:
        pm = procman.AsyncProcessManager()
        pm.manager.limit = max(conc, 1)

        def handler(pid):
            count(pm.getJobData(pid, "status"))

        ms = int(timeout * 1000) if timeout else None
        program, args = cmd[0], cmd[1:]
        for i in range(n):
            log = os.path.join(logdir, "job-%d.log" % i)
            pm.startProcess(program, args, logFile=log, errorFile=log, timeout=ms,
                            handler=[handler, {}])
        pm.manager.wait_all()

    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ok = counts["done"] == n and counts["failed"] == 0 and (
        counts["timed_out"] == (n if expect_timeout else 0))
    sys.stderr.write(
        "BENCH_SELF maxrss_kb=%d utime_s=%.3f stime_s=%.3f wall_s=%.3f done=%d failed=%d "
        "timed_out=%d api=%s group=%d\n"
        % (vm_hwm_kb(), ru.ru_utime, ru.ru_stime, wall, counts["done"], counts["failed"],
           counts["timed_out"], api, os.environ.get("BENCH_KILL") == "group"))
    sys.stderr.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
