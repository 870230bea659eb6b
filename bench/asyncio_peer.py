#!/usr/bin/env python3
"""A Python asyncio job manager of the design procman replaces, as a benchmark peer.

    python3 bench/asyncio_peer.py w1 N CONCURRENCY LOGDIR

The design of the asyncio managers in Python workflow applications (CCP4i2's before procman):
one event loop running in a background thread; the caller's thread submits each job to it
(`run_coroutine_threadsafe`); a job waits for an `asyncio.Semaphore(CONCURRENCY)`, starts the
program with `asyncio.create_subprocess_exec`, stdout and stderr on pipes, collects them with
`communicate()` (the whole output in memory), writes it to `LOGDIR/job-<i>.log` once the job
has ended, and runs its completion handler on a thread pool. Same arguments as
examples/bench_peer.rs and examples/bench_raw.rs; only the workload `w1` (`/bin/true`) is
known. Exits 0 when every job exited 0, 1 otherwise.
"""

import asyncio
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

WORKLOADS = {"w1": ["/bin/true"]}


class Manager:
    """Runs jobs on an event loop of its own, at most `limit` at once."""

    def __init__(self, limit):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.handlers = ThreadPoolExecutor(max_workers=1)
        self.limit = asyncio.run_coroutine_threadsafe(self._semaphore(limit), self.loop).result()

    @staticmethod
    async def _semaphore(limit):
        return asyncio.Semaphore(limit)

    async def _job(self, argv, log_path, on_finish):
        async with self.limit:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            output, _ = await proc.communicate()
        with open(log_path, "wb") as log:
            log.write(output)
        self.loop.run_in_executor(self.handlers, on_finish, proc.returncode)
        return proc.returncode

    def start(self, argv, log_path, on_finish):
        """Submits one job from any thread; returns a concurrent.futures.Future."""
        return asyncio.run_coroutine_threadsafe(self._job(argv, log_path, on_finish), self.loop)

    def close(self):
        self.handlers.shutdown(wait=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in WORKLOADS:
        print(f"usage: {sys.argv[0]} w1 N CONCURRENCY LOGDIR", file=sys.stderr)
        return 2
    argv = WORKLOADS[sys.argv[1]]
    n, limit, logdir = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    os.makedirs(logdir, exist_ok=True)
    t0 = time.monotonic()
    counts = {"done": 0, "failed": 0}
    lock = threading.Lock()

    def on_finish(code):
        with lock:
            counts["done"] += 1
            counts["failed"] += code != 0

    manager = Manager(max(limit, 1))
    futures = [
        manager.start(argv, os.path.join(logdir, f"job-{i}.log"), on_finish) for i in range(n)
    ]
    for f in futures:
        f.result()
    manager.close()
    print(
        f"BENCH_SELF wall_s={time.monotonic() - t0:.3f} done={counts['done']} "
        f"failed={counts['failed']}",
        file=sys.stderr,
    )
    return 1 if counts["failed"] or counts["done"] != n else 0


if __name__ == "__main__":
    sys.exit(main())
