//! Platform code. procman supports Unix; Linux gets the handler-free pidfd wait path and
//! follows observed output in its files; glibc gets the `posix_spawn` path.
//!
//! Every `unsafe` block and every platform `cfg` of the library is in this folder: the layers
//! above see one interface on every Unix, where an item a system lacks is a constant that says
//! so ([`HANDLER_FREE_WAIT`], [`FOLLOW_FILES`]), an error, or a no-op ([`Waker`]).
//! `sys` uses nothing of the crate but `deadline`.
//!
//! - `unix.rs`: any Unix: signals, pipes, polling, reaping, descriptors, the child's set-up.
//! - `linux.rs` (Linux) or `elsewhere.rs` (the rest): pidfds, eventfds, inotify, `/proc`.
//! - `proc.rs`: reading processes' figures from `/proc` (Linux; unavailable elsewhere).
//! - `spawn/`: the `posix_spawn` plan, and glibc's `posix_spawn` (`spawn/glibc.rs`).
//! - `cgroup.rs`, `cgroup/`: a cgroup v2 per job and the spawn into it (issue 15; Linux).
//! - `subreaper.rs`, `subreaper/`: the child-subreaper fallback (issue 15; Linux).

#[cfg(not(unix))]
compile_error!("procman supports Unix (Linux, macOS, the BSDs) only");

pub(crate) mod cgroup;
#[cfg(not(target_os = "linux"))]
mod elsewhere;
#[cfg(target_os = "linux")]
mod linux;
mod proc;
pub(crate) mod spawn;
pub(crate) mod subreaper;
mod unix;

#[cfg(not(target_os = "linux"))]
pub(crate) use elsewhere::*;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;
pub(crate) use proc::*;
pub(crate) use spawn::*;
pub(crate) use unix::*;

use std::os::fd::RawFd;
use std::sync::Arc;

/// Wakes a worker blocked on its job (a kill request, shutdown, a reader that panicked). An
/// eventfd on Linux in `WaitMode::Pidfd`; else none, and waking does nothing (the worker then
/// waits in slices and notices within one). Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Waker(Option<Arc<EventFd>>);

impl Waker {
    /// A waker that does nothing.
    pub(crate) fn none() -> Waker {
        Waker(None)
    }

    /// Linux: a new eventfd. Elsewhere: the no-op waker. Fails when no eventfd can be made
    /// (no descriptor left).
    pub(crate) fn new() -> std::io::Result<Waker> {
        if !HANDLER_FREE_WAIT {
            return Ok(Waker::none());
        }
        EventFd::new().map(|e| Waker(Some(Arc::new(e))))
    }

    /// Wakes the worker polling [`Waker::fd`]; never blocks.
    pub(crate) fn wake(&self) {
        if let Some(e) = &self.0 {
            e.wake();
        }
    }

    /// Consumes the wake-ups so far; never blocks.
    pub(crate) fn drain(&self) {
        if let Some(e) = &self.0 {
            e.drain();
        }
    }

    /// The descriptor to poll, readable once woken; `None` for the no-op waker.
    pub(crate) fn fd(&self) -> Option<RawFd> {
        self.0.as_ref().map(|e| e.raw())
    }
}
