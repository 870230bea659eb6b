"""A drop-in engine for CCP4i2's ``AsyncProcessManager`` (``core/async_process_manager.py``).

``AsyncProcessManager()`` is a singleton (every call returns the same object, whichever thread
makes the first one) and ``ASYNC_PROCESSMANAGER()`` is its accessor. Jobs run on procman's
process-wide manager (limit 10): no asyncio event loop or loop thread is needed, and handlers
run on procman's dispatcher thread, one at a time, in completion order.

What ``getJobData(pid, attribute)`` answers is listed in ``JOB_ATTRIBUTES`` (README.md has the
table); ``getJobData(pid, None)`` returns all of them as a new dict; an unknown id gives None,
an unknown attribute gives None (as CCP4i2's ``getattr(info, name, None)`` does).

Retention: a server that runs jobs for weeks must not keep every job for ever. The newest
10,000 finished jobs (whose handler has returned) are kept, with no age limit, so getJobData
answers about recent jobs as before; older ones are forgotten and read as unknown (None), as
after deleteJob. ``AsyncProcessManager(max_records=..., max_age=...)`` changes that for the
process-wide manager (max_age in seconds; None: no limit; both None keep everything, CCP4i2's
behaviour). What startProcess was given is forgotten with the job.
"""

import asyncio
import inspect
import logging
import os
import threading

from ._procman import JobSpec
from ._runtime import global_manager

logger = logging.getLogger("procman")

_UNSET = object()

#: The attributes getJobData answers. The first group is CCP4i2's, with its meanings; the
#: second group is procman's extras. 'process', 'stdout_file' and 'stderr_file' (CCP4i2's
#: asyncio objects) are always None.
JOB_ATTRIBUTES = (
    "pid", "command", "args", "interpreter", "inputFile", "logFile", "cwd", "env", "handler",
    "timeout", "ifAsync", "startTime", "finishTime", "status", "exitCode", "exitStatus",
    "error", "errorReport", "process", "stdout_file", "stderr_file",
    # procman's extras
    "errFile", "osPid", "signal", "attempts", "queueTime", "handlerError", "description",
)


def _exit_code(record):
    """CCP4i2's exitCode: the program's exit code; -1 for a timeout (as CCP4i2 sets it) or a
    job that never ran; minus the signal number for a job ended by a signal (asyncio's
    returncode convention); None while the job is pending or running."""
    if not record.is_final:
        return None
    if record.exit_code is not None:
        return record.exit_code
    if record.status == "timeout":
        return -1
    if record.signal is not None:
        return -record.signal
    return -1


def _split_handler(handler):
    """CCP4i2's handler forms: ``[callable, kwargs]`` (or a tuple), ``[callable]``, or a bare
    callable. Anything else is refused at once (CCP4i2 failed later, when calling it)."""
    if handler is None:
        return None, None
    if isinstance(handler, (list, tuple)):
        if not handler:
            return None, None
        callback = handler[0]
        kwargs = handler[1] if len(handler) > 1 and handler[1] else {}
    else:
        callback, kwargs = handler, {}
    if not callable(callback):
        raise TypeError(f"handler must be a callable or [callable, kwargs], not {handler!r}")
    if not isinstance(kwargs, dict):
        raise TypeError(f"the handler's keyword arguments must be a dict, not {kwargs!r}")
    return callback, dict(kwargs)


def _arg(a):
    # CCP4i2 passes str (sometimes pathlib.Path); numbers are turned into their text.
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return str(a)
    return os.fspath(a) if isinstance(a, os.PathLike) else a


class AsyncProcessManager:
    """CCP4i2's process manager, on procman. See the module's documentation."""

    _instance = None
    _instance_lock = threading.Lock()
    _PRUNE_MIN = 1024

    def __new__(cls, *args, **kwargs):
        instance = cls.__dict__.get("_instance")
        if instance is None:
            with cls._instance_lock:
                instance = cls.__dict__.get("_instance")
                if instance is None:
                    instance = super().__new__(cls)
                    instance._setup()
                    cls._instance = instance
        return instance

    def __init__(self, *args, max_records=_UNSET, max_age=_UNSET, **kwargs):
        # All the state is made once, in __new__; calling the class again changes nothing but
        # the retention, when asked (see the module's documentation).
        if max_records is not _UNSET or max_age is not _UNSET:
            self.setRetention(max_records, max_age)

    def setRetention(self, max_records=_UNSET, max_age=_UNSET):
        """procman's extra: keep at most max_records finished jobs (None: no count limit) and
        forget those whose handler returned max_age seconds ago or more (None: no age limit).
        An argument left out keeps its current value. Jobs no longer kept are forgotten at
        once; getJobData then gives None for them."""
        current_records, current_age = self._manager.retention
        self._manager.set_retention(
            current_records if max_records is _UNSET else max_records,
            current_age if max_age is _UNSET else max_age,
        )
        with self._lock:
            self._prune()

    def _setup(self):
        self._manager = global_manager()
        self._lock = threading.RLock()
        self._jobs = {}  # job id -> what startProcess was given
        # _jobs is swept of forgotten jobs when it doubles: O(1) amortised per job.
        self._prune_at = self._PRUNE_MIN
        logger.debug("AsyncProcessManager initialized on procman")

    @property
    def manager(self):
        """The procman Manager underneath (the process-wide one)."""
        return self._manager

    # ---- starting jobs ---------------------------------------------------------------------

    def startProcess(self, command=None, args=None, inputFile=None, logFile=None,
                     interpreter=None, cwd=None, env=None, handler=None, timeout=None,
                     ifAsync=True, **kwargs):
        """Starts ``[interpreter] command *args`` and returns its id (from 1000 up).

        timeout is in milliseconds (None, 0 or negative: none); stdin comes from inputFile;
        stdout goes to logFile and stderr to ``<logFile without suffix>_err.txt``; a non-empty
        env replaces the whole environment; handler is ``[callable, kwargs]`` or a callable,
        called as ``callable(pid, **kwargs)`` on procman's dispatcher thread once the job has
        ended. ifAsync=False waits for the job and its handler, with no time cap (Ctrl-C
        interrupts the wait and kills the job). Unknown keyword arguments are logged and
        ignored."""
        pid = self._start(command, args, inputFile, logFile, interpreter, cwd, env, handler,
                          timeout, ifAsync, kwargs, _running_loop())
        if not ifAsync:
            self._wait(pid, kill_on_interrupt=True)
        return pid

    async def _startProcess_async(self, command=None, args=None, inputFile=None, logFile=None,
                                  interpreter=None, cwd=None, env=None, handler=None,
                                  timeout=None, ifAsync=True, **kwargs):
        """The coroutine form of startProcess, for any running event loop on any thread.
        Starting never blocks the loop; with ifAsync=False the job and its handler are waited
        for on the loop's default executor."""
        loop = asyncio.get_running_loop()
        pid = self._start(command, args, inputFile, logFile, interpreter, cwd, env, handler,
                          timeout, ifAsync, kwargs, loop)
        if not ifAsync:
            await loop.run_in_executor(None, self._wait, pid)
        return pid

    def _start(self, command, args, inputFile, logFile, interpreter, cwd, env, handler,
               timeout, ifAsync, extra, loop):
        if extra:
            logger.warning("startProcess(%r): ignoring unknown keyword argument(s): %s",
                           command, ", ".join(sorted(extra)))
        if command is None:
            raise TypeError("startProcess needs a command")
        callback, cb_kwargs = _split_handler(handler)
        spec = JobSpec(
            command,
            [_arg(a) for a in (args or [])],
            interpreter=interpreter or None,
            input_file=inputFile or None,
            log_file=logFile or None,
            cwd=cwd or None,
            # CCP4i2: ``env or os.environ.copy()``: an empty mapping inherits.
            env=dict(env) if env else None,
            timeout=timeout / 1000.0 if timeout is not None and timeout > 0 else None,
            on_finish=_on_finish(callback, cb_kwargs, loop) if callback else None,
        )
        info = {
            "command": command,
            "args": list(args or []),
            "interpreter": interpreter,
            "inputFile": inputFile,
            "logFile": logFile,
            "cwd": cwd,
            "env": env,
            "handler": handler,
            "timeout": timeout,
            "ifAsync": ifAsync,
        }
        # Held across start and insertion so a handler that runs at once finds its info.
        with self._lock:
            pid = self._manager.start(spec)
            self._jobs[pid] = info
            if len(self._jobs) >= self._prune_at:
                self._prune()
        logger.info("Started process %d: %s %s", pid, command,
                    " ".join(str(a) for a in (args or [])))
        return pid

    def _prune(self):
        """Drops what startProcess was given for jobs the manager has forgotten (evicted or
        deleted). Called with the lock held."""
        manager = self._manager
        for pid in [pid for pid in self._jobs if manager.job(pid) is None]:
            del self._jobs[pid]
        self._prune_at = max(2 * len(self._jobs), self._PRUNE_MIN)

    def _wait(self, pid, kill_on_interrupt=False):
        try:
            self._manager.wait(pid)
        except KeyError:
            pass  # deleted meanwhile
        except BaseException:
            if kill_on_interrupt:
                self._manager.kill(pid)
            raise

    # ---- queries and control ---------------------------------------------------------------

    def getJobData(self, pid, attribute="exitStatus"):
        """One attribute of the job (see JOB_ATTRIBUTES), or all of them as a dict when
        attribute is None. None for an unknown, deleted or forgotten id (see the module's
        documentation on retention), or an unknown attribute."""
        record = self._manager.job(pid)
        if record is None:
            with self._lock:
                self._jobs.pop(pid, None)
            return None
        with self._lock:
            info = self._jobs.get(pid, {})
        data = _job_dict(record, info)
        if attribute is None:
            return data
        return data.get(attribute)

    def deleteJob(self, pid):
        """Forgets the job: getJobData then returns None. A live job is killed first, and its
        handler still runs once. Returns False for an unknown id (CCP4i2 returned None)."""
        deleted = self._manager.delete(pid)
        with self._lock:
            self._jobs.pop(pid, None)
        return deleted

    def getRunningProcesses(self):
        """The ids of the running jobs (spawned and not yet ended), in id order."""
        return self._manager.running()

    def getPendingProcesses(self):
        """procman's extra: the ids of the jobs waiting for a slot."""
        return self._manager.pending()

    def killProcess(self, pid):
        """Kills the job's whole process group (SIGTERM, SIGKILL after 2 s); a pending job is
        cancelled and never starts. Returns 'killing', 'cancelled' or 'already_finished'
        (CCP4i2 returned None); None, with a warning, for an unknown id."""
        outcome = self._manager.kill(pid)
        if outcome is None:
            logger.warning("Process %s not found or not running", pid)
        return outcome

    def waitForJob(self, pid, timeout=None):
        """procman's extra: waits (timeout in seconds) for the job and its handler; returns its
        final record (KeyError if unknown, TimeoutError if the time runs out)."""
        return self._manager.wait(pid, timeout)


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _on_finish(callback, kwargs, loop):
    """procman's handler for a CCP4i2 handler: ``callback(pid, **kwargs)``. A coroutine
    function is scheduled on the loop the job was started from (without waiting for it), or
    run to completion on the dispatcher thread when there was none."""

    def on_finish(record):
        if inspect.iscoroutinefunction(callback):
            coro = callback(record.id, **kwargs)
            if loop is not None and not loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(coro, loop)
                future.add_done_callback(_log_coroutine_failure(record.id))
            else:
                asyncio.run(coro)
        else:
            callback(record.id, **kwargs)

    return on_finish


def _log_coroutine_failure(pid):
    def done(future):
        if not future.cancelled() and future.exception() is not None:
            logger.error("job %d: the completion handler raised", pid,
                         exc_info=future.exception())

    return done


def _job_dict(record, info):
    final = record.is_final
    start = record.started_at if record.started_at is not None else record.queued_at
    return {
        "pid": record.id,
        "command": info.get("command", record.program),
        "args": list(info.get("args", record.args)),
        "interpreter": info.get("interpreter", record.interpreter),
        "inputFile": info.get("inputFile"),
        "logFile": info.get("logFile", record.log_file),
        "cwd": info.get("cwd"),
        "env": info.get("env"),
        "handler": info.get("handler"),
        "timeout": info.get("timeout"),
        "ifAsync": info.get("ifAsync", True),
        "startTime": start,
        "finishTime": record.finished_at,
        "status": record.status,
        "exitCode": _exit_code(record),
        "exitStatus": record.exit_status if final else None,
        "error": record.error,
        "errorReport": record.error,
        "process": None,
        "stdout_file": None,
        "stderr_file": None,
        "errFile": record.error_file,
        "osPid": record.pid,
        "signal": record.signal,
        "attempts": record.attempts,
        "queueTime": record.queued_at,
        "handlerError": record.handler_error,
        "description": record.describe(),
    }


def ASYNC_PROCESSMANAGER():
    """The singleton AsyncProcessManager (CCP4Modules.ASYNC_PROCESSMANAGER)."""
    return AsyncProcessManager()
