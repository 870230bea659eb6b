//! What running jobs are doing now, as their workers report it: the latest sample of each
//! job's processes and its latest progress. Commands (`record_usage`, `record_progress`) take
//! the reports; `live_jobs` is what `snapshot` shows. Everything runs under the manager's lock,
//! in microseconds, and never blocks (events are offered with `try_send`).

use super::{Phase, State};
use crate::events::{Event, LiveJob};
use crate::record::JobId;
use crate::watch::{Progress, Usage, UsageSummary};

/// A live job's latest figures (boxed in its entry, only once it has some).
#[derive(Default)]
pub(super) struct Live {
    usage: Option<Usage>,
    progress: Option<Progress>,
}

impl Live {
    /// A new attempt started: its samples start over, its progress stays until it tells more.
    pub(super) fn restart(&mut self) {
        self.usage = None;
    }
}

impl State {
    /// The running attempt's entry: reports about another attempt (late, or a stale worker's)
    /// are dropped.
    fn running_attempt(&mut self, id: JobId, attempt: u32) -> Option<&mut super::Entry> {
        self.jobs
            .get_mut(&id)
            .map(|e| &mut **e)
            .filter(|e| matches!(e.phase, Phase::Running { .. }) && e.attempts() == attempt)
    }

    /// A sample of the job's processes: kept as its latest, its summary so far goes into its
    /// record (`JobRecord::sampled`), and subscribers get [`Event::Usage`].
    pub(crate) fn record_usage(
        &mut self,
        id: JobId,
        attempt: u32,
        usage: Usage,
        summary: UsageSummary,
    ) {
        let Some(e) = self.running_attempt(id, attempt) else {
            return;
        };
        if let Some(r) = e.live_record() {
            r.sampled = Some(Box::new(summary));
        }
        let live = e.live.get_or_insert_with(Box::default);
        live.usage = Some(usage.clone());
        self.events
            .emit(move || Event::Usage { id, attempt, usage });
    }

    /// The job's progress: kept as its latest, and subscribers get [`Event::Progress`].
    pub(crate) fn record_progress(&mut self, id: JobId, attempt: u32, progress: Progress) {
        let Some(e) = self.running_attempt(id, attempt) else {
            return;
        };
        let live = e.live.get_or_insert_with(Box::default);
        if live.progress.as_ref() == Some(&progress) {
            return;
        }
        live.progress = Some(progress.clone());
        self.events.emit(move || Event::Progress {
            id,
            attempt,
            progress,
        });
    }

    /// The running jobs with their latest figures, in id order (the order of
    /// `running_since`).
    pub(crate) fn live_jobs(&self) -> Vec<LiveJob> {
        let mut v: Vec<LiveJob> = self
            .jobs
            .iter()
            .filter(|(_, e)| !e.deleted && matches!(e.phase, Phase::Running { .. }))
            .map(|(&id, e)| {
                let live = e.live.as_deref();
                LiveJob {
                    id,
                    attempt: e.attempts(),
                    usage: live.and_then(|l| l.usage.clone()),
                    progress: live.and_then(|l| l.progress.clone()),
                }
            })
            .collect();
        v.sort_by_key(|j| j.id);
        v
    }
}
