//! Record retention: which finished records a manager keeps, so that a host running jobs for
//! weeks does not grow for ever (DESIGN.md, "Retention").
//!
//! A record becomes *evictable* when its job is final and its handler has returned (before
//! that, the job still owes its handler call). Evictable records are queued in the order their
//! handlers returned (which is completion order: one dispatcher calls handlers in that order),
//! with the instant it happened. Under the manager's lock, whenever a handler returns, a job is
//! submitted, or the policy is changed, records are evicted from the front of that queue while
//! more than `max_records` are held or the front one has been evictable for `max_age` or more.
//! Each record is queued once and popped once: O(1) amortised per job.
//!
//! What is kept of an evicted job: its final status's class (2 bits per job id, so that
//! `after(id)` still answers), and one more count in the per-status totals
//! ([`Snapshot::evicted`](crate::Snapshot::evicted)). A wait in progress on a job that is
//! evicted gets the record handed over before it is dropped.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

use super::{IdHasher, JobTable, Phase};
use crate::record::{JobId, JobRecord, JobStatus};

/// Which finished records a manager keeps: see [`Builder::retention`](crate::Builder::retention).
///
/// A record can be evicted only once its job is final **and** its handler has returned; a
/// pending or running job, or one whose handler has not run yet, is never evicted. Evicted are,
/// oldest first (in the order their handlers returned), the records beyond the newest
/// `max_records`, and the records whose handler returned `max_age` or longer ago. Eviction is
/// done when a handler returns, when a job is submitted and when the policy is changed (no
/// thread of its own), so a record past `max_age` may be read until the next of these.
///
/// An evicted id reads as unknown, exactly like a deleted one:
/// [`job_data`](crate::Handle::job_data), [`wait`](crate::Handle::wait),
/// [`kill_process`](crate::Handle::kill_process) and
/// [`delete_job`](crate::Handle::delete_job) answer as for an id never given out. Two
/// exceptions: a `wait` (or `run`) already in progress when its job is evicted still returns the
/// record; and [`JobSpec::after`](crate::JobSpec::after) an evicted id still works: the new job
/// runs if the evicted one finished successfully and ends as
/// [`DependencyFailed`](JobStatus::DependencyFailed) otherwise (2 bits per evicted job are kept
/// for this). [`Snapshot::evicted`](crate::Snapshot::evicted) counts evicted jobs by status.
///
/// The default keeps the newest [`DEFAULT_MAX_RECORDS`](Self::DEFAULT_MAX_RECORDS) (10,000)
/// finished records and has no age limit: about 12 MB at ~1.2 KB per record, and a record
/// stays readable until 10,000 later jobs have ended, however long that takes (a CCP4i2 server
/// asks `getJobData` about recent jobs, and may ask hours later about a job nobody ran others
/// after). [`keep_all`](Self::keep_all) keeps every record until `delete_job`, as before
/// retention existed.
///
/// ```
/// use std::time::Duration;
/// use procman::{ProcessManager, Retention};
///
/// let manager = ProcessManager::builder()
///     .retention(Retention::default().max_records(Some(1000)).max_age(Some(Duration::from_secs(3600))))
///     .build()
///     .unwrap();
/// assert_eq!(manager.retention().records_limit(), Some(1000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    max_records: Option<usize>,
    max_age: Option<Duration>,
}

impl Default for Retention {
    /// At most [`DEFAULT_MAX_RECORDS`](Self::DEFAULT_MAX_RECORDS) evictable records; no age limit.
    fn default() -> Retention {
        Retention {
            max_records: Some(Retention::DEFAULT_MAX_RECORDS),
            max_age: None,
        }
    }
}

impl Retention {
    /// How many evictable records the default policy keeps.
    pub const DEFAULT_MAX_RECORDS: usize = 10_000;

    /// Keeps every record until [`delete_job`](crate::Handle::delete_job): the manager's
    /// memory grows by about a record (~1.2 KB) per job for as long as it lives.
    pub fn keep_all() -> Retention {
        Retention {
            max_records: None,
            max_age: None,
        }
    }

    /// Keeps at most `n` records whose handler has returned (`None`: no count limit). `Some(0)`
    /// evicts each record as soon as its handler returns (a [`run`](crate::Handle::run)
    /// or a wait in progress still gets it).
    pub fn max_records(mut self, n: Option<usize>) -> Retention {
        self.max_records = n;
        self
    }

    /// Evicts records whose handler returned `age` or longer ago (`None`: no age limit). Any
    /// duration is accepted (`Duration::MAX` never expires).
    pub fn max_age(mut self, age: Option<Duration>) -> Retention {
        self.max_age = age;
        self
    }

    /// The count limit (`None`: none).
    pub fn records_limit(&self) -> Option<usize> {
        self.max_records
    }

    /// The age limit (`None`: none).
    pub fn age_limit(&self) -> Option<Duration> {
        self.max_age
    }
}

/// The first id the manager gives out (`State::next_id` starts here).
const FIRST_ID: u64 = 1000;
const EVICTED_SUCCESS: u64 = 0b01;
const EVICTED_FAILURE: u64 = 0b10;

/// A wait in progress on a job: how many, and the record if the job was evicted meanwhile.
struct Waiters {
    count: u32,
    handed: Option<JobRecord>,
}

/// The retention bookkeeping, part of the manager's `State` (under its lock).
pub(super) struct Retainer {
    policy: Retention,
    /// Evictable records in the order their handlers returned, with that instant. May hold ids
    /// deleted since (skipped when popped; compacted when they are more than half).
    order: VecDeque<(Instant, JobId)>,
    /// How many ids in `order` are still in the table.
    held: usize,
    waiters: HashMap<JobId, Waiters, BuildHasherDefault<IdHasher>>,
    /// 2 bits per job id from `FIRST_ID`: evicted after success, evicted after failure, or
    /// neither (live, held, deleted or never given out).
    outcomes: Vec<u64>,
    /// Evicted jobs by final status.
    evicted: Vec<(JobStatus, usize)>,
}

impl Retainer {
    pub(super) fn new(policy: Retention) -> Retainer {
        Retainer {
            policy,
            order: VecDeque::new(),
            held: 0,
            waiters: HashMap::default(),
            outcomes: Vec::new(),
            evicted: Vec::new(),
        }
    }

    pub(super) fn policy(&self) -> Retention {
        self.policy
    }

    pub(super) fn set_policy(&mut self, policy: Retention, jobs: &mut JobTable) {
        self.policy = policy;
        self.evict(jobs);
    }

    /// The job's record became evictable (final, handler returned, not deleted).
    pub(super) fn evictable(&mut self, id: JobId, jobs: &mut JobTable) {
        self.order.push_back((Instant::now(), id));
        self.held += 1;
        self.evict(jobs);
    }

    /// An evictable record was removed from the table by `delete_job`.
    pub(super) fn deleted(&mut self, jobs: &JobTable) {
        self.held -= 1;
        // Deleted ids stay in `order` until popped; drop them once they are the majority, so a
        // host that deletes every job keeps `order` bounded (amortised O(1) per deletion).
        if self.order.len() > 2 * self.held + 64 {
            self.order.retain(|(_, id)| evictable(jobs, *id));
        }
    }

    /// Evicts what the policy no longer keeps. Cheap when there is nothing to do: one look at
    /// the front of the queue.
    pub(super) fn evict(&mut self, jobs: &mut JobTable) {
        let Retention {
            max_records,
            max_age,
        } = self.policy;
        if max_records.is_none() && max_age.is_none() {
            return;
        }
        let now = max_age.map(|_| Instant::now());
        while let Some(&(at, id)) = self.order.front() {
            let over_count = max_records.is_some_and(|n| self.held > n);
            let too_old = match (max_age, now) {
                (Some(age), Some(now)) => now.saturating_duration_since(at) >= age,
                _ => false,
            };
            if !over_count && !too_old {
                break;
            }
            self.order.pop_front();
            if !evictable(jobs, id) {
                continue; // deleted since it was queued
            }
            let Some(entry) = jobs.remove(&id) else {
                continue;
            };
            self.held -= 1;
            // Evictable: final (`evictable`).
            let Some(record) = (*entry).into_final_record() else {
                continue;
            };
            let status = record.status;
            self.set_outcome(id, status.is_success());
            match self.evicted.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => self.evicted.push((status, 1)),
            }
            if let Some(w) = self.waiters.get_mut(&id) {
                w.handed = Some(record);
            }
        }
    }

    fn set_outcome(&mut self, id: JobId, success: bool) {
        let Some(i) = id.0.checked_sub(FIRST_ID) else {
            return;
        };
        let Ok(i) = usize::try_from(i) else { return };
        let (word, shift) = (i / 32, (i % 32) * 2);
        if self.outcomes.len() <= word {
            self.outcomes.resize(word + 1, 0);
        }
        let bits = if success {
            EVICTED_SUCCESS
        } else {
            EVICTED_FAILURE
        };
        self.outcomes[word] |= bits << shift;
    }

    /// For an id not in the table: `Some(true)` if it was evicted after finishing successfully,
    /// `Some(false)` if evicted after any other end, `None` if it was never evicted.
    pub(super) fn outcome(&self, id: JobId) -> Option<bool> {
        let i = usize::try_from(id.0.checked_sub(FIRST_ID)?).ok()?;
        let bits = (self.outcomes.get(i / 32)? >> ((i % 32) * 2)) & 0b11;
        match bits {
            EVICTED_SUCCESS => Some(true),
            EVICTED_FAILURE => Some(false),
            _ => None,
        }
    }

    /// Evicted jobs by final status.
    pub(super) fn evicted_counts(&self) -> Vec<(JobStatus, usize)> {
        self.evicted.clone()
    }

    /// A wait on `id` begins: if the job is evicted before it ends, its record is handed over.
    pub(super) fn add_waiter(&mut self, id: JobId) {
        self.waiters
            .entry(id)
            .or_insert(Waiters {
                count: 0,
                handed: None,
            })
            .count += 1;
    }

    /// A wait on `id` ends (whatever its result).
    pub(super) fn remove_waiter(&mut self, id: JobId) {
        if let Some(w) = self.waiters.get_mut(&id) {
            w.count -= 1;
            if w.count == 0 {
                self.waiters.remove(&id);
            }
        }
    }

    /// The record of a job evicted while someone waited for it.
    pub(super) fn handed(&self, id: JobId) -> Option<&JobRecord> {
        self.waiters.get(&id).and_then(|w| w.handed.as_ref())
    }
}

/// The job is in the table, final, its handler returned, and not deleted.
fn evictable(jobs: &JobTable, id: JobId) -> bool {
    jobs.get(&id)
        .is_some_and(|e| !e.deleted && e.handler_done && matches!(e.phase, Phase::Final))
}
