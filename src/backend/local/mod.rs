//! The default backend: the job's program runs on this machine, as the leader of a new
//! process group, on the worker thread that took the attempt.
//!
//! - `spawn.rs`: the spawn (glibc's `posix_spawn` plan, else std's `Command`).
//! - `attempt.rs`: one attempt from spawn to reaping (the waits, the `Reaper`).
//! - `contain.rs`: the attempt's cgroup or subreaper marker (issue 15), ended with the job.
//! - `sample.rs`: live usage sampling, one thread for all jobs (`Builder::sample_interval`).
//! - `watch.rs`: what a worker reports while its job runs (samples, progress).

mod attempt;
mod contain;
mod sample;
mod spawn;
mod watch;

use std::sync::{Arc, OnceLock};

use crate::backend::{Backend, Report};
use crate::job::{AttemptEnd, Work};
use crate::sys::Waker;

use sample::Sampler;

/// The default backend: the job's program runs on this machine, as a process-group leader.
#[derive(Default)]
pub(crate) struct Local {
    /// Made with the first attempt, from the manager's settings: `None` when sampling is off.
    sampler: OnceLock<Option<Arc<Sampler>>>,
}

impl Backend for Local {
    fn run_attempt(&self, report: &dyn Report, work: Work, waker: Waker) -> AttemptEnd {
        let sampler = self
            .sampler
            .get_or_init(|| report.config().sample_interval.map(Sampler::new));
        attempt::run_attempt(report, work, waker, sampler.as_ref())
    }

    fn shutdown(&self) {
        if let Some(Some(sampler)) = self.sampler.get() {
            sampler.stop();
        }
    }
}
