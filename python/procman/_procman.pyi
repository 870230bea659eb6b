"""Type stubs for the native module procman._procman."""

import datetime
import os
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
    final,
)

__version__: str

_Path = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
_Seconds = Union[float, datetime.timedelta]

class StartError(ValueError): ...

@final
class Usage:
    elapsed: float
    cpu: float
    cpu_percent: float
    rss: int
    peak_rss: int
    processes: int
    threads: int
    read_bytes: Optional[int]
    written_bytes: Optional[int]

@final
class UsageSummary:
    samples: int
    peak_rss: int
    mean_rss: int
    peak_cpu_percent: float
    mean_cpu_percent: float
    peak_processes: int
    peak_threads: int
    cpu: float
    read_bytes: Optional[int]
    written_bytes: Optional[int]

@final
class Progress:
    fraction: Optional[float]
    message: Optional[str]
    def __new__(
        cls, fraction: Optional[float] = None, message: Optional[str] = None
    ) -> "Progress": ...

_ProgressResult = Union[None, float, str, Tuple[Optional[float], Optional[str]], Progress]

@final
class Record:
    id: int
    program: str
    args: List[str]
    interpreter: Optional[str]
    status: str
    exit_code: Optional[int]
    exit_status: int
    signal: Optional[int]
    pid: Optional[int]
    array_task: Optional[int]
    queued_at: Optional[float]
    started_at: Optional[float]
    finished_at: Optional[float]
    log_file: Optional[str]
    error_file: Optional[str]
    error: Optional[str]
    attempts: int
    handler_error: Optional[str]
    priority: int
    after: List[int]
    wall_time: Optional[float]
    user_cpu: Optional[float]
    system_cpu: Optional[float]
    peak_memory: Optional[int]
    sampled: Optional[UsageSummary]
    is_final: bool
    is_success: bool
    def describe(self) -> str: ...

@final
class Event:
    kind: Literal["queued", "started", "retrying", "usage", "progress", "finished", "lost", "other"]
    id: Optional[int]
    attempt: Optional[int]
    pid: Optional[int]
    status: Optional[str]
    record: Optional[Record]
    usage: Optional[Usage]
    progress: Optional[Progress]
    lost: Optional[int]

@final
class Events:
    def __iter__(self) -> "Events": ...
    def __next__(self) -> Event: ...
    def pending(self) -> List[Event]: ...

@final
class JobSpec:
    program: _Path
    args: Sequence[Union[_Path, int, float]]
    interpreter: Optional[_Path]
    input_file: Optional[_Path]
    input_bytes: Optional[bytes]
    log_file: Optional[_Path]
    error_file: Optional[_Path]
    merge_stderr: bool
    cwd: Optional[_Path]
    env: Optional[Mapping[str, str]]
    env_update: Optional[Mapping[str, str]]
    timeout: Optional[_Seconds]
    grace: Optional[_Seconds]
    on_finish: Optional[Callable[[Record], Any]]
    observe: Optional[Callable[[int, str, bytes], Any]]
    progress: Optional[Callable[[bytes], _ProgressResult]]
    priority: int
    after: List[int]
    kill_leftovers: Optional[bool]
    memory_limit: Optional[int]
    def __new__(
        cls,
        program: _Path,
        args: Optional[Iterable[Union[_Path, int, float]]] = None,
        *,
        interpreter: Optional[_Path] = None,
        input_file: Optional[_Path] = None,
        input_bytes: Optional[bytes] = None,
        log_file: Optional[_Path] = None,
        error_file: Optional[_Path] = None,
        merge_stderr: bool = False,
        cwd: Optional[_Path] = None,
        env: Optional[Mapping[str, str]] = None,
        env_update: Optional[Mapping[str, str]] = None,
        timeout: Optional[_Seconds] = None,
        grace: Optional[_Seconds] = None,
        on_finish: Optional[Callable[[Record], Any]] = None,
        observe: Optional[Callable[[int, str, bytes], Any]] = None,
        progress: Optional[Callable[[bytes], _ProgressResult]] = None,
        priority: int = 0,
        after: Optional[Sequence[int]] = None,
        kill_leftovers: Optional[bool] = None,
        memory_limit: Optional[int] = None,
    ) -> "JobSpec": ...

@final
class Manager:
    limit: int
    def __new__(
        cls,
        limit: int = 10,
        grace: float = 2.0,
        kill_leftovers: bool = True,
        max_records: Optional[int] = 10000,
        max_age: Optional[_Seconds] = None,
        handler_threads: int = 1,
        sample_interval: Optional[_Seconds] = None,
        containment: Literal["auto", "cgroup", "group", "subreaper"] = "auto",
        slurm: Union[None, bool, str, Dict[str, Any]] = None,
    ) -> "Manager": ...
    @property
    def containment(self) -> Literal["cgroup", "group", "subreaper"]: ...
    def set_retention(
        self, max_records: Optional[int] = 10000, max_age: Optional[_Seconds] = None
    ) -> None: ...
    @property
    def retention(self) -> Tuple[Optional[int], Optional[float]]: ...
    def evicted(self) -> Dict[str, int]: ...
    def start(self, spec: JobSpec) -> int: ...
    def run(self, spec: JobSpec) -> Record: ...
    def wait(self, id: int, timeout: Optional[float] = None) -> Record: ...
    def wait_all(self) -> None: ...
    def events(self, capacity: int = 1024) -> Events: ...
    def usage(self, id: int) -> Optional[Usage]: ...
    def progress(self, id: int) -> Optional[Progress]: ...
    def job(self, id: int) -> Optional[Record]: ...
    def running(self) -> List[int]: ...
    def pending(self) -> List[int]: ...
    def kill(self, id: int) -> Optional[Literal["killing", "cancelled", "already_finished"]]: ...
    def delete(self, id: int) -> bool: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def shutdown(self, cancel: bool = True, timeout: Optional[float] = None) -> None: ...
    def __enter__(self) -> "Manager": ...
    def __exit__(self, *exc: object) -> bool: ...

def global_manager() -> Manager: ...
def statuses() -> List[str]: ...

__all__ = [
    "Manager",
    "JobSpec",
    "Record",
    "Usage",
    "UsageSummary",
    "Progress",
    "Event",
    "Events",
    "global_manager",
    "statuses",
    "StartError",
    "__version__",
]
