//! What a worker reports while its job runs: the sampler's latest sample of the job's process
//! group and the latest progress its output told, each taken from its slot and handed to
//! `backend::Report` by the worker itself (so an attempt's reports come from one thread, in
//! order). The worker calls [`Watch::deliver`] whenever it wakes: both slots wake it (its
//! eventfd) when they get something new.

use std::sync::Arc;

use super::sample::Sampled;
use crate::backend::Report;
use crate::output::ProgressSlot;
use crate::record::JobId;

/// One attempt's live reports.
pub(super) struct Watch<'a> {
    pub(super) report: &'a dyn Report,
    pub(super) id: JobId,
    pub(super) attempt: u32,
    pub(super) sampled: Option<Sampled>,
    pub(super) progress: Option<Arc<ProgressSlot>>,
}

impl Watch<'_> {
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
