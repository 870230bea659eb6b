"""procman: run external programs as managed jobs (threads only, no asyncio needed).

Pythonic API::

    from procman import Manager, JobSpec

    with Manager(limit=4) as manager:
        record = manager.run(JobSpec("echo", ["hello"], log_file="job/log.txt"))
        assert record.status == "finished" and record.exit_code == 0

CCP4i2 drop-in::

    from procman import AsyncProcessManager, ASYNC_PROCESSMANAGER
    pm = ASYNC_PROCESSMANAGER()          # the same object as AsyncProcessManager()
    pid = pm.startProcess("echo", ["hi"], logFile="log.txt", handler=[done, {}])

See README.md and docs-python.md.
"""

from ._procman import (  # noqa: F401
    JobSpec,
    Manager,
    Record,
    StartError,
    statuses,
)
from ._runtime import global_manager  # noqa: F401
from .ccp4i2 import ASYNC_PROCESSMANAGER, AsyncProcessManager  # noqa: F401

#: Every status a job can have ('pending', 'running', 'finished', 'failed', 'crashed',
#: 'timeout', 'killed', 'cancelled', 'spawn_failed', 'dependency_failed', 'internal_error').
STATUSES = tuple(statuses())

__all__ = [
    "ASYNC_PROCESSMANAGER",
    "AsyncProcessManager",
    "JobSpec",
    "Manager",
    "Record",
    "STATUSES",
    "StartError",
    "global_manager",
]
