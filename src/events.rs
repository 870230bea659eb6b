//! Events for user interfaces that follow a manager without polling, and snapshots.
//!
//! Policy for slow or absent consumers: each subscriber has a bounded channel. Events are sent
//! with `try_send` under the manager's lock (so every job's events are in order); when a
//! subscriber's channel is full, the event is dropped for that subscriber and counted, and the
//! count is delivered as [`Event::Lost`] before its next event that fits. A subscriber whose
//! receiver was dropped is removed. The manager never blocks on a consumer, and the memory held
//! for one is at most its channel's capacity.

use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};

use crate::record::{JobId, JobRecord, JobStatus};
use crate::watch::{Progress, Usage};

/// Something that happened to a job.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// The job was accepted and is pending.
    Queued {
        /// The job.
        id: JobId,
    },
    /// An attempt of the job was spawned.
    Started {
        /// The job.
        id: JobId,
        /// Its OS process id (also its process group id).
        pid: u32,
        /// 1 for the first attempt, more for retries.
        attempt: u32,
    },
    /// An attempt was submitted to a cluster's queue (Slurm) and waits there: the job's status
    /// is now [`JobStatus::Queued`]. [`Event::Started`] follows when the cluster runs it.
    Submitted {
        /// The job.
        id: JobId,
        /// The cluster's id for it (the Slurm job id; an array's id for its tasks).
        cluster_id: u32,
        /// Its task in the array `cluster_id` (Slurm arrays), else `None`.
        task: Option<u32>,
        /// 1 for the first attempt, more for retries.
        attempt: u32,
    },
    /// An attempt ended and the job will be tried again after its backoff.
    Retrying {
        /// The job.
        id: JobId,
        /// The attempt that ended.
        attempt: u32,
        /// How it ended.
        status: JobStatus,
    },
    /// A sample of a running job's processes (with
    /// [`Builder::sample_interval`](crate::Builder::sample_interval)), one per interval.
    Usage {
        /// The job.
        id: JobId,
        /// The attempt sampled.
        attempt: u32,
        /// The figures.
        usage: Usage,
    },
    /// A running job's progress changed (see [`JobSpec::progress`](crate::JobSpec::progress)).
    Progress {
        /// The job.
        id: JobId,
        /// The attempt whose output told it.
        attempt: u32,
        /// The latest progress.
        progress: Progress,
    },
    /// The job reached a final status; the record is final. Sent before its handler runs.
    Finished(Box<JobRecord>),
    /// This many events were dropped because the subscriber's channel was full.
    Lost(u64),
}

pub(crate) struct Subscriber {
    tx: Sender<Event>,
    lost: u64,
}

#[derive(Default)]
pub(crate) struct Subscribers {
    list: Vec<Subscriber>,
    /// The manager was shut down: no event can come any more.
    ended: bool,
}

impl Subscribers {
    /// A new subscriber; once ended, `tx` is dropped at once (its receiver is disconnected).
    pub(crate) fn add(&mut self, tx: Sender<Event>) {
        if !self.ended {
            self.list.push(Subscriber { tx, lost: 0 });
        }
    }

    /// Shutdown finished: every subscriber's channel is disconnected (after the events still
    /// in it), so a receiver's iteration ends.
    pub(crate) fn end(&mut self) {
        self.ended = true;
        self.list.clear();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Offers the event to every subscriber without blocking. `make` is only called when there
    /// is at least one subscriber, so the unobserved path builds no event.
    pub(crate) fn emit(&mut self, make: impl FnOnce() -> Event) {
        if self.list.is_empty() {
            return;
        }
        let event = make();
        self.list.retain_mut(|s| {
            if s.lost > 0 {
                match s.tx.try_send(Event::Lost(s.lost)) {
                    Ok(()) => s.lost = 0,
                    Err(TrySendError::Full(_)) => {
                        s.lost += 1;
                        return true;
                    }
                    Err(TrySendError::Disconnected(_)) => return false,
                }
            }
            match s.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    s.lost += 1;
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
    }
}

/// A manager's state at one instant, from [`snapshot`](crate::Handle::snapshot).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// How many known jobs have each status (statuses with no job are left out). Known jobs
    /// are those whose record can be read: neither deleted nor evicted.
    pub counts: Vec<(JobStatus, usize)>,
    /// How many jobs with each final status were evicted (see [`Retention`](crate::Retention));
    /// with `counts`, the totals since the manager was built, deleted jobs apart.
    pub evicted: Vec<(JobStatus, usize)>,
    /// The running jobs: id, OS pid, time since the current attempt was spawned.
    pub running: Vec<(JobId, u32, Duration)>,
    /// The running jobs again (the same, in the same order), with their latest sample and
    /// progress.
    pub live: Vec<LiveJob>,
    /// Whether starting new jobs is paused.
    pub paused: bool,
    /// The current limit on running jobs.
    pub limit: usize,
}

impl Snapshot {
    /// How many known jobs have `status`.
    pub fn count(&self, status: JobStatus) -> usize {
        self.counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// How many jobs ended as `status` and were evicted (see [`Retention`](crate::Retention)).
    pub fn evicted(&self, status: JobStatus) -> usize {
        self.evicted
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    }

    /// Known and evicted jobs with `status`: a total that keeps counting while records are
    /// evicted (deleted jobs are in neither).
    pub fn total(&self, status: JobStatus) -> usize {
        self.count(status) + self.evicted(status)
    }
}

/// A running job as [`Snapshot::live`](Snapshot::live) shows it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LiveJob {
    /// The job.
    pub id: JobId,
    /// Its attempt now running (1 for the first).
    pub attempt: u32,
    /// Its latest sample, `None` before the first (or when sampling is off).
    pub usage: Option<Usage>,
    /// Its latest progress, `None` before its parser found any (or when it has none). Kept
    /// across retries: a retried job shows where the previous attempt got until the new one
    /// tells more.
    pub progress: Option<Progress>,
}
