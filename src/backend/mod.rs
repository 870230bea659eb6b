//! The seam between the common engine (queue, records, scheduler, dispatcher, handlers) and
//! where a job's program actually runs.
//!
//! A backend runs one admitted attempt to its end on the calling worker thread and reports how
//! it ended. Everything else stays common. A backend must:
//! - *submit*: start the program, then call [`Inner::started`] once with an id for it;
//! - *poll*: find out when it ended and how (exit code, signal, usage);
//! - *cancel*: end it when `JobCore::kill_requested` becomes true (the worker's `Waker` is woken
//!   then) or its timeout passes (SIGTERM, then SIGKILL after `JobCore::grace`).
//!
//! A backend may also report the job's raw state with [`Inner::set_backend_state`].
//!
//! The local backend (`pool::Local`) is the default; `slurm::SlurmBackend` runs jobs on a Slurm
//! cluster. A cluster engine is one more file that implements [`Backend`].

use std::sync::Arc;

pub(crate) mod local;
pub(crate) mod slurm;

use crate::engine::Inner;
use crate::job::{AttemptEnd, Work};

/// Wakes a worker blocked on its job (a kill request, or shutdown).
#[cfg(target_os = "linux")]
pub(crate) type WorkerWaker = Option<Arc<crate::sys::Waker>>;
/// Wakes a worker blocked on its job (no waker off Linux: workers wait in slices).
#[cfg(not(target_os = "linux"))]
pub(crate) type WorkerWaker = Option<Arc<()>>;

pub(crate) trait Backend: Send + Sync + 'static {
    /// Runs `work` to its end on the calling worker thread. Never panics on user input.
    fn run_attempt(&self, inner: &Inner, work: Work, waker: WorkerWaker) -> AttemptEnd;

    /// Called once by shutdown, after every job has ended: stop the backend's own threads.
    fn shutdown(&self) {}
}
