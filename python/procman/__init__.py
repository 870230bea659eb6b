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

See python/README.md.
"""

from __future__ import annotations

from ._procman import (  # noqa: F401
    __version__,
    Event,
    Events,
    JobSpec,
    Manager,
    Progress,
    Record,
    StartError,
    Usage,
    UsageSummary,
    statuses,
)
from ._runtime import global_manager  # noqa: F401

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any

    from .ccp4i2 import ASYNC_PROCESSMANAGER, AsyncProcessManager  # noqa: F401


def __getattr__(name: str) -> Any:
    # The CCP4i2 drop-in (and asyncio, which it imports) is loaded on first use only, so the
    # Pythonic API starts without them.
    if name in ("ASYNC_PROCESSMANAGER", "AsyncProcessManager"):
        from . import ccp4i2

        return getattr(ccp4i2, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Every status a job can have ('pending', 'running', 'finished', 'failed', 'crashed',
#: 'timeout', 'killed', 'cancelled', 'spawn_failed', 'dependency_failed', 'internal_error',
#: 'queued': waiting in Slurm's queue).
STATUSES = tuple(statuses())

__all__ = [
    "__version__",
    "ASYNC_PROCESSMANAGER",
    "AsyncProcessManager",
    "Event",
    "Events",
    "JobSpec",
    "Manager",
    "Progress",
    "Record",
    "STATUSES",
    "StartError",
    "Usage",
    "UsageSummary",
    "global_manager",
]
