//! The default backend: the job's program runs on this machine, as the leader of a new
//! process group, on the worker thread that took the attempt.
//!
//! - `spawn.rs`: the spawn (glibc's `posix_spawn` plan, else std's `Command`).
//! - `attempt.rs`: one attempt from spawn to reaping (the waits, the `Reaper`).

mod attempt;
mod spawn;

use crate::backend::{Backend, Report};
use crate::job::{AttemptEnd, Work};
use crate::sys::Waker;

/// The default backend: the job's program runs on this machine, as a process-group leader.
pub(crate) struct Local;

impl Backend for Local {
    fn run_attempt(&self, report: &dyn Report, work: Work, waker: Waker) -> AttemptEnd {
        attempt::run_attempt(report, work, waker)
    }
}
