"""The process-wide manager, and its shutdown when the interpreter exits."""

import atexit
import threading

from . import _procman

_lock = threading.Lock()
_used = False


def global_manager() -> _procman.Manager:
    """The process-wide manager (limit 10), created on first use by whichever thread asks
    first; every call returns the same object. Its jobs are killed when the interpreter exits."""
    global _used
    with _lock:
        _used = True
    return _procman.global_manager()


@atexit.register
def _shutdown_at_exit() -> None:
    # Kill what is still running while Python can still run the handlers; without this, the
    # jobs' processes would outlive the interpreter and their handlers would never run.
    with _lock:
        used = _used
    if used:
        _procman.global_manager().shutdown(cancel=True)
