"""A drop-in engine for CCP4i2's ``AsyncProcessManager`` (``core/async_process_manager.py``).

``AsyncProcessManager()`` is a singleton (every call returns the same object, whichever thread
makes the first one) and ``ASYNC_PROCESSMANAGER()`` is its accessor. Jobs run on procman's
process-wide manager (limit 10): no asyncio event loop or loop thread is needed, and handlers
run on procman's 4 handler threads (as many as the original's ``ThreadPoolExecutor``), taken
in completion order, so one slow handler does not hold back the others. Inside a handler,
``startProcess(..., ifAsync=False)`` waits for the inner job's handler too, as the original
does, unless that could deadlock (procman's rule: not while the other handler threads but one
are in such waits, nor for a handler that is itself waiting); it then returns once the inner
job has ended.

A job started from a running asyncio loop (``await _startProcess_async(...)``, or
``startProcess`` called inside a loop) completes in that loop's terms: once its handler has
returned, the loop is woken (``loop.call_soon_threadsafe``), so a handler that sets an
``asyncio.Event`` wakes the coroutine awaiting it at once; ``await waitForJobAsync(pid)`` is the
awaitable form of ``waitForJob``.

Logging goes to the logger of CCP4i2's own module, ``ccp4i2.core.async_process_manager``
(``LOGGER_NAME``), so a host that configures CCP4i2's logging configures this too.

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

from __future__ import annotations

import operator
import os
import sys
import threading

# asyncio (about 40 ms to import), inspect and typing are not imported at run time unless
# used: a host without an event loop starts faster; annotations are never evaluated.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    import logging
    from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ._procman import JobSpec, Manager, Progress, Record, Usage
from ._runtime import global_manager

#: The logger everything here logs to: CCP4i2's own module's, so the host's configuration of
#: CCP4i2's logging applies (its level, its handlers).
LOGGER_NAME = "ccp4i2.core.async_process_manager"
#: ``logger`` (this module's attribute) is that logger. The logging package is imported on first
#: need only (about 7 ms, most of a script's start-up here); CCP4i2 itself has always imported it.
_logger: Optional[logging.Logger] = None
_DEBUG, _INFO = 10, 20  # logging.DEBUG, logging.INFO


def _log() -> logging.Logger:
    global _logger
    if _logger is None:
        import logging

        _logger = logging.getLogger(LOGGER_NAME)
    return _logger


def _enabled(level: int) -> bool:
    """logger.isEnabledFor(level). Where nothing imported logging yet, nothing can have
    configured a level or handler: the root logger's default (WARNING) applies, so DEBUG and
    INFO are off, and logging is not imported to say so."""
    if _logger is None and "logging" not in sys.modules:
        return level >= 30
    return _log().isEnabledFor(level)


def __getattr__(name: str) -> Any:
    if name == "logger":
        return _log()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    # procman's live figures (README.md, "Live figures"): while the job runs, from the latest
    # sample of its whole process group and its progress parser; once it ended, the summary of
    # its samples where there is one.
    "cpuPercent", "cpuTime", "memory", "peakMemory", "threads", "processes", "readBytes",
    "writtenBytes", "progress", "progressMessage",
)

_MAX_ID = 2**64 - 1

if TYPE_CHECKING:
    #: What CCP4i2 accepts as a handler: ``[callable, kwargs]``, ``[callable]`` or a callable.
    _Handler = Union[Callable[..., Any], Sequence[Any], None]


def _job_id(pid: Any) -> Optional[int]:
    """The job id ``pid`` can name, or None when no job can have it (None, a string, a negative
    or too large number, a float with a fraction): CCP4i2 looked ids up in a dict, so such ids
    found nothing; here they find nothing too, instead of raising."""
    try:
        n = operator.index(pid)
    except TypeError:
        if isinstance(pid, float) and pid.is_integer():
            n = int(pid)
        else:
            return None
    return n if 0 <= n <= _MAX_ID else None


def _exit_code(record: Record) -> Optional[int]:
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


def _split_handler(handler: _Handler) -> Tuple[Optional[Callable[..., Any]], Dict[str, Any]]:
    """CCP4i2's handler forms: ``[callable, kwargs]`` (or a tuple), ``[callable]``, or a bare
    callable. Anything else is refused at once (CCP4i2 failed later, when calling it)."""
    if handler is None:
        return None, {}
    if isinstance(handler, (list, tuple)):
        if not handler:
            return None, {}
        callback = handler[0]
        kwargs = handler[1] if len(handler) > 1 and handler[1] else {}
    else:
        callback, kwargs = handler, {}
    if not callable(callback):
        raise TypeError(f"handler must be a callable or [callable, kwargs], not {handler!r}")
    if not isinstance(kwargs, dict):
        raise TypeError(f"the handler's keyword arguments must be a dict, not {kwargs!r}")
    return callback, dict(kwargs)


def _arg(a: Any) -> Any:
    # CCP4i2 passes str (sometimes pathlib.Path); numbers are turned into their text.
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return str(a)
    return os.fspath(a) if isinstance(a, os.PathLike) else a


class _Job:
    """What the drop-in keeps per job: what startProcess was given, and its completion (the
    final record once the handler returned; the asyncio futures waiting for that)."""

    __slots__ = ("info", "done", "record", "ending", "waiters", "handler_error")

    def __init__(self, info: Dict[str, Any]) -> None:
        self.info = info
        self.done = False
        self.record: Optional[Record] = None
        # The final record handed to the handler, while the handler runs (the job cannot be
        # forgotten then): getJobData reads it instead of asking the manager for a copy.
        self.ending: Optional[Record] = None
        self.waiters: List[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[Record]"]] = []
        self.handler_error: Optional[str] = None


class AsyncProcessManager:
    """CCP4i2's process manager, on procman. See the module's documentation."""

    _instance: Optional["AsyncProcessManager"] = None
    _instance_lock = threading.Lock()
    _PRUNE_MIN = 1024

    def __new__(cls, *args: Any, **kwargs: Any) -> "AsyncProcessManager":
        instance = cls.__dict__.get("_instance")
        if instance is None:
            with cls._instance_lock:
                instance = cls.__dict__.get("_instance")
                if instance is None:
                    instance = super().__new__(cls)
                    instance._setup()
                    cls._instance = instance
        return instance

    def __init__(self, *args: Any, max_records: Any = _UNSET, max_age: Any = _UNSET,
                 **kwargs: Any) -> None:
        # All the state is made once, in __new__; calling the class again changes nothing but
        # the retention, when asked (see the module's documentation).
        if max_records is not _UNSET or max_age is not _UNSET:
            self.setRetention(max_records, max_age)

    def setRetention(self, max_records: Any = _UNSET, max_age: Any = _UNSET) -> None:
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

    def _setup(self) -> None:
        self._manager = global_manager()
        self._lock = threading.RLock()
        self._jobs: Dict[int, _Job] = {}
        # _jobs is swept of forgotten jobs when it doubles: O(1) amortised per job.
        self._prune_at = self._PRUNE_MIN
        if _enabled(_DEBUG):
            _log().debug("AsyncProcessManager initialized on procman")

    @property
    def manager(self) -> Manager:
        """The procman Manager underneath (the process-wide one)."""
        return self._manager

    # ---- starting jobs ---------------------------------------------------------------------

    def startProcess(self, command: Any = None, args: Optional[Sequence[Any]] = None,
                     inputFile: Any = None, logFile: Any = None, interpreter: Any = None,
                     cwd: Any = None, env: Optional[Mapping[str, str]] = None,
                     handler: _Handler = None, timeout: Optional[float] = None,
                     ifAsync: bool = True, *, errorFile: Any = None, **kwargs: Any) -> int:
        """Starts ``[interpreter] command *args`` and returns its id (from 1000 up).

        timeout is in milliseconds (None, 0 or negative: none); stdin comes from inputFile;
        stdout goes to logFile and stderr to ``<logFile without suffix>_err.txt``; a non-empty
        env replaces the whole environment; handler is ``[callable, kwargs]`` or a callable,
        called as ``callable(pid, **kwargs)`` on one of procman's handler threads once the job
        has ended. Called inside a running asyncio loop, that loop is woken once the handler
        has returned. ifAsync=False blocks until the job has ended and its handler returned,
        with no time cap (Ctrl-C interrupts the wait and kills the job; inside a handler, see
        the module's documentation). Unknown keyword arguments are logged and ignored.
        procman's extra keyword errorFile puts stderr there instead (the logFile itself: stderr
        merged into the log); its extra keyword progress takes a progress parser (see JobSpec),
        whose latest result getJobData's 'progress' and 'progressMessage' give. Raises TypeError for a missing command or a malformed handler,
        procman.StartError (a ValueError) for a job procman refuses."""
        pid = self._start(command, args, inputFile, logFile, interpreter, cwd, env, handler,
                          timeout, ifAsync, errorFile, kwargs, _running_loop())
        if not ifAsync:
            self._wait(pid, kill_on_interrupt=True)
        return pid

    async def _startProcess_async(self, command: Any = None,
                                  args: Optional[Sequence[Any]] = None, inputFile: Any = None,
                                  logFile: Any = None, interpreter: Any = None, cwd: Any = None,
                                  env: Optional[Mapping[str, str]] = None,
                                  handler: _Handler = None, timeout: Optional[float] = None,
                                  ifAsync: bool = True, *, errorFile: Any = None,
                                  **kwargs: Any) -> int:
        """The coroutine form of startProcess, for any running event loop on any thread.
        Starting never blocks the loop; the loop is woken once the job's handler has returned;
        with ifAsync=False this awaits that moment (cancelling the await leaves the job
        running)."""
        import asyncio

        loop = asyncio.get_running_loop()
        pid = self._start(command, args, inputFile, logFile, interpreter, cwd, env, handler,
                          timeout, ifAsync, errorFile, kwargs, loop)
        if not ifAsync:
            await self.waitForJobAsync(pid)
        return pid

    def _start(self, command: Any, args: Optional[Sequence[Any]], inputFile: Any, logFile: Any,
               interpreter: Any, cwd: Any, env: Optional[Mapping[str, str]], handler: _Handler,
               timeout: Optional[float], ifAsync: bool, errorFile: Any, extra: Dict[str, Any],
               loop: Optional[asyncio.AbstractEventLoop]) -> int:
        # procman's extra keyword: a progress parser (JobSpec's), for getJobData's 'progress'.
        progress = extra.pop("progress", None)
        if extra:
            _log().warning("startProcess(%r): ignoring unknown keyword argument(s): %s",
                           command, ", ".join(sorted(extra)))
        if command is None:
            raise TypeError("startProcess needs a command")
        callback, cb_kwargs = _split_handler(handler)
        job = _Job({
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
        })
        spec = JobSpec(
            command,
            [_arg(a) for a in (args or [])],
            interpreter=interpreter or None,
            input_file=inputFile or None,
            log_file=logFile or None,
            error_file=errorFile or None,
            cwd=cwd or None,
            # CCP4i2: ``env or os.environ.copy()``: an empty mapping inherits.
            env=dict(env) if env else None,
            timeout=timeout / 1000.0 if timeout is not None and timeout > 0 else None,
            on_finish=self._on_finish(job, callback, cb_kwargs, loop),
            progress=progress,
        )
        # Held across start and insertion so a handler that runs at once finds its job.
        with self._lock:
            pid = self._manager.start(spec)
            self._jobs[pid] = job
            if len(self._jobs) >= self._prune_at:
                self._prune()
        if _enabled(_INFO):
            _log().info("Started process %d: %s %s", pid, command,
                        " ".join(str(a) for a in (args or [])))
        return pid

    def _prune(self) -> None:
        """Drops what startProcess was given for jobs the manager has forgotten (evicted or
        deleted). Called with the lock held."""
        manager = self._manager
        for pid in [pid for pid in self._jobs if manager.job(pid) is None]:
            del self._jobs[pid]
        self._prune_at = max(2 * len(self._jobs), self._PRUNE_MIN)

    def _wait(self, pid: int, kill_on_interrupt: bool = False) -> None:
        try:
            self._manager.wait(pid)
        except KeyError:
            pass  # deleted meanwhile
        except BaseException:
            if kill_on_interrupt:
                self._manager.kill(pid)
            raise

    # ---- completion ------------------------------------------------------------------------

    def _on_finish(self, job: _Job, callback: Optional[Callable[..., Any]],
                   kwargs: Dict[str, Any],
                   loop: Optional[asyncio.AbstractEventLoop]) -> Callable[[Record], None]:
        """procman's handler for a job: ``callback(pid, **kwargs)``, then the completion (the
        job's awaiters resolved, its loop woken). A coroutine function is run on the loop the
        job was started from (the completion follows it there), or to completion on the
        handler thread when there was none."""

        def on_finish(record: Record) -> None:
            job.ending = record
            if _enabled(_INFO):
                _log().info("Process %d ended: %s", record.id, record.describe())
            try:
                if callback is not None:
                    if _is_coroutine_function(callback):
                        import asyncio

                        coro = callback(record.id, **kwargs)
                        if loop is not None and not loop.is_closed():
                            try:
                                asyncio.run_coroutine_threadsafe(
                                    self._finish_on_loop(job, record, coro), loop)
                                return  # _finish_on_loop completes the job
                            except RuntimeError:
                                pass  # the loop closed meanwhile: run it here
                        asyncio.run(coro)
                    else:
                        callback(record.id, **kwargs)
            except BaseException as e:
                job.handler_error = f"{type(e).__name__}: {e}"
                _log().error("Error calling handler for process %d: %s", record.id, e,
                             exc_info=True)
                try:
                    e._procman_logged = True  # type: ignore[attr-defined]
                except AttributeError:
                    pass
                self._complete(job, record, loop)
                raise
            self._complete(job, record, loop)

        return on_finish

    async def _finish_on_loop(self, job: _Job, record: Record, coro: Any) -> None:
        try:
            await coro
        except Exception as e:
            job.handler_error = f"{type(e).__name__}: {e}"
            _log().error("Error calling handler for process %d: %s", record.id, e,
                         exc_info=True)
        finally:
            self._complete(job, record, None)

    def _complete(self, job: _Job, record: Record,
                  loop: Optional[asyncio.AbstractEventLoop]) -> None:
        with self._lock:
            job.ending = None
            job.done = True
            job.record = record
            waiters, job.waiters = job.waiters, []
        for wloop, future in waiters:
            _call_soon(wloop, _resolve, future, record)
        if loop is not None:
            # Wake the loop the job was started from: what the handler did to loop objects from
            # this thread (an asyncio.Event set, a future resolved) is seen now, not at the
            # loop's next timeout.
            _call_soon(loop, _nothing)

    async def waitForJobAsync(self, pid: Any, timeout: Optional[float] = None) -> Record:
        """procman's extra, the awaitable form of waitForJob for a job started through this
        class, from any running loop: its final record once its handler has returned (the
        await does not block the loop). KeyError if the id names no such job (or it was
        deleted), asyncio.TimeoutError if ``timeout`` seconds pass first (the job goes on)."""
        jid = _job_id(pid)
        with self._lock:
            job = self._jobs.get(jid) if jid is not None else None
            if job is None:
                raise KeyError(f"unknown job {pid!r}")
            if job.done:
                assert job.record is not None
                return job.record
            import asyncio

            loop = asyncio.get_running_loop()
            future: asyncio.Future[Record] = loop.create_future()
            job.waiters.append((loop, future))
        return await asyncio.wait_for(future, timeout)

    # ---- queries and control ---------------------------------------------------------------

    def getJobData(self, pid: Any, attribute: Optional[str] = "exitStatus") -> Any:
        """One attribute of the job (see JOB_ATTRIBUTES), or all of them as a dict when
        attribute is None. None for an unknown, deleted or forgotten id (see the module's
        documentation on retention), an id no job can have, or an unknown attribute. Never
        blocks."""
        jid = _job_id(pid)
        if jid is None:
            return None
        job = self._jobs.get(jid)  # one dict read: atomic under the GIL
        # Inside the job's own handler (CCP4i2's handlers read their job's status and exit
        # code): the record the handler was given, the same as the manager's until the handler
        # returns; a deleteJob has removed the job from _jobs, so it reads as unknown as before.
        record = job.ending if job is not None else None
        if record is None:
            record = self._manager.job(jid)
            if record is None:
                with self._lock:
                    self._jobs.pop(jid, None)
                return None
        if attribute is None:
            return {name: get(record, job) for name, get in _GETTERS.items()}
        get = _GETTERS.get(attribute)
        return get(record, job) if get is not None else None

    def deleteJob(self, pid: Any) -> Optional[bool]:
        """Forgets the job: getJobData then returns None. A live job is killed first, and its
        handler still runs once. Returns True, or False for an unknown id, None for an id no job
        can have (CCP4i2 always returned None). Never blocks."""
        jid = _job_id(pid)
        if jid is None:
            return None
        deleted = self._manager.delete(jid)
        with self._lock:
            self._jobs.pop(jid, None)
        return deleted

    def getRunningProcesses(self) -> List[int]:
        """The ids of the running jobs (spawned and not yet ended), in id order."""
        return self._manager.running()

    def getPendingProcesses(self) -> List[int]:
        """procman's extra: the ids of the jobs waiting for a slot."""
        return self._manager.pending()

    def killProcess(self, pid: Any) -> Optional[str]:
        """Kills the job's whole process group (SIGTERM, SIGKILL after 2 s); a pending job is
        cancelled and never starts. Returns 'killing', 'cancelled' or 'already_finished'
        (CCP4i2 returned None); None, with a warning, for an unknown id or one no job can have.
        Never blocks."""
        jid = _job_id(pid)
        outcome = self._manager.kill(jid) if jid is not None else None
        if outcome is None:
            _log().warning("Process %s not found or not running", pid)
        return outcome

    def waitForJob(self, pid: int, timeout: Optional[float] = None) -> Record:
        """procman's extra: blocks (GIL released; timeout in seconds) until the job has ended
        and its handler returned; returns its final record (KeyError if unknown, TimeoutError
        if the time runs out; the job goes on)."""
        return self._manager.wait(pid, timeout)


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    # No loop can run in a process that never imported asyncio.
    aio = sys.modules.get("asyncio")
    if aio is None:
        return None
    try:
        return aio.get_running_loop()  # type: ignore[no-any-return]
    except RuntimeError:
        return None


_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE


def _is_coroutine_function(f: Any) -> bool:
    """inspect.iscoroutinefunction, without importing inspect for plain functions and bound
    methods when nothing imported it yet."""
    if "inspect" not in sys.modules:
        code = getattr(getattr(f, "__func__", f), "__code__", None)
        if code is not None and not hasattr(f, "_is_coroutine_marker"):
            return bool(code.co_flags & _CO_COROUTINE)
    import inspect

    return inspect.iscoroutinefunction(f)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass  # the loop is closed: nobody waits on it any more


def _resolve(future: "asyncio.Future[Record]", record: Record) -> None:
    if not future.done():
        future.set_result(record)


def _nothing() -> None:
    pass


def _info(job: Optional[_Job]) -> Dict[str, Any]:
    return job.info if job is not None else {}


def _start_time(record: Record) -> Optional[float]:
    return record.started_at if record.started_at is not None else record.queued_at


def _env(record: Record, job: Optional[_Job]) -> Any:
    # CCP4i2 kept ``env or os.environ.copy()``: the inherited environment is a dict too.
    env = _info(job).get("env")
    return env if env else dict(os.environ)


def _handler_error(record: Record, job: Optional[_Job]) -> Optional[str]:
    return record.handler_error or (job.handler_error if job is not None else None)


def _usage(record: Record) -> Optional[Usage]:
    return None if record.is_final else global_manager().usage(record.id)


def _progress(record: Record) -> Optional[Progress]:
    return None if record.is_final else global_manager().progress(record.id)


def _cpu_time(record: Record) -> Optional[float]:
    usage = _usage(record)
    if usage is not None:
        return usage.cpu
    if record.sampled is not None:
        return record.sampled.cpu
    if record.user_cpu is not None and record.system_cpu is not None:
        return record.user_cpu + record.system_cpu
    return None


def _peak_memory(record: Record) -> Optional[int]:
    usage = _usage(record)
    if usage is not None:
        return usage.peak_rss
    if record.sampled is not None:
        return record.sampled.peak_rss
    return record.peak_memory


def _io(record: Record, written: bool) -> Optional[int]:
    usage = _usage(record)
    if usage is not None:
        return usage.written_bytes if written else usage.read_bytes
    if record.sampled is not None:
        return record.sampled.written_bytes if written else record.sampled.read_bytes
    return None


def _progress_field(record: Record, message: bool) -> Any:
    p = _progress(record)
    if p is None:
        return None
    return p.message if message else p.fraction


#: attribute -> how to read it from (record, job); each is computed only when asked for.
_GETTERS: Dict[str, Callable[[Record, Optional[_Job]], Any]] = {
    "pid": lambda r, j: r.id,
    "command": lambda r, j: _info(j).get("command", r.program),
    "args": lambda r, j: list(_info(j).get("args", r.args)),
    "interpreter": lambda r, j: _info(j).get("interpreter", r.interpreter),
    "inputFile": lambda r, j: _info(j).get("inputFile"),
    "logFile": lambda r, j: _info(j).get("logFile", r.log_file),
    "cwd": lambda r, j: _info(j).get("cwd"),
    "env": _env,
    "handler": lambda r, j: _info(j).get("handler"),
    "timeout": lambda r, j: _info(j).get("timeout"),
    "ifAsync": lambda r, j: _info(j).get("ifAsync", True),
    "startTime": lambda r, j: _start_time(r),
    "finishTime": lambda r, j: r.finished_at,
    # CCP4i2 knows "pending" for a job not started yet: a job waiting in Slurm's queue is one.
    "status": lambda r, j: "pending" if r.status == "queued" else r.status,
    "exitCode": lambda r, j: _exit_code(r),
    "exitStatus": lambda r, j: r.exit_status if r.is_final else None,
    "error": lambda r, j: r.error,
    "errorReport": lambda r, j: r.error,
    "process": lambda r, j: None,
    "stdout_file": lambda r, j: None,
    "stderr_file": lambda r, j: None,
    "errFile": lambda r, j: r.error_file,
    "osPid": lambda r, j: r.pid,
    "signal": lambda r, j: r.signal,
    "attempts": lambda r, j: r.attempts,
    "queueTime": lambda r, j: r.queued_at,
    "handlerError": _handler_error,
    "description": lambda r, j: r.describe(),
    "cpuPercent": lambda r, j: getattr(_usage(r), "cpu_percent", None),
    "cpuTime": lambda r, j: _cpu_time(r),
    "memory": lambda r, j: getattr(_usage(r), "rss", None),
    "peakMemory": lambda r, j: _peak_memory(r),
    "threads": lambda r, j: getattr(_usage(r), "threads", None),
    "processes": lambda r, j: getattr(_usage(r), "processes", None),
    "readBytes": lambda r, j: _io(r, False),
    "writtenBytes": lambda r, j: _io(r, True),
    "progress": lambda r, j: _progress_field(r, False),
    "progressMessage": lambda r, j: _progress_field(r, True),
}
assert tuple(_GETTERS) == JOB_ATTRIBUTES


def ASYNC_PROCESSMANAGER() -> AsyncProcessManager:
    """The singleton AsyncProcessManager (CCP4Modules.ASYNC_PROCESSMANAGER)."""
    return AsyncProcessManager()
