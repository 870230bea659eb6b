//! What a worker reports while its job runs: the sampler's latest sample of the job's process
//! group and the latest progress its output told, each taken from its slot and handed to
//! `backend::Report` by the worker itself (so an attempt's reports come from one thread, in
//! order). The worker calls [`Watch::deliver`] whenever it wakes: both slots wake it (its
//! eventfd) when they get something new.

use std::sync::Arc;
use std::time::Instant;

use super::sample::{Sampled, Sampler};
use crate::backend::Report;
use crate::config::WaitMode;
use crate::job::Work;
use crate::output::ProgressSlot;
use crate::record::JobId;
use crate::sys::Waker;

/// One attempt's live reports.
pub(super) struct Watch<'a> {
    report: &'a dyn Report,
    id: JobId,
    attempt: u32,
    sampled: Option<Sampled>,
    progress: Option<Arc<ProgressSlot>>,
}

impl<'a> Watch<'a> {
    /// The reports of the attempt whose group leader `pid` was spawned at `spawned`: its
    /// samples (with a sampler, registered here) and its progress (with a slot). Sampling needs
    /// the leader unreaped until the slot is closed: not in the portable wait mode, where
    /// `wait-timeout` reaps.
    pub(super) fn start(
        report: &'a dyn Report,
        work: &Work,
        (pid, spawned): (u32, Instant),
        waker: &Waker,
        sampler: Option<&Arc<Sampler>>,
        progress: Option<Arc<ProgressSlot>>,
    ) -> Watch<'a> {
        let sampled = sampler
            .filter(|_| report.config().wait_mode == WaitMode::Pidfd)
            .and_then(|s| s.register(pid, spawned, waker.clone()));
        Watch {
            report,
            id: work.core.id,
            attempt: work.attempt,
            sampled,
            progress,
        }
    }

    /// Reports what is new since the last call. Takes two small locks, then the engine's
    /// briefly for each report; never blocks otherwise.
    pub(super) fn deliver(&self) {
        if let Some((usage, summary)) = self.sampled.as_ref().and_then(Sampled::take) {
            self.report.usage(self.id, self.attempt, usage, summary);
        }
        if let Some(p) = self.progress.as_ref().and_then(|p| p.take()) {
            self.report.progress(self.id, self.attempt, p);
        }
    }

    /// No more samples of the group: call before its leader is reaped (its id may be reused
    /// after). The last sample taken is delivered.
    pub(super) fn close(&self) {
        if let Some(s) = &self.sampled {
            s.close();
        }
        self.deliver();
    }
}
