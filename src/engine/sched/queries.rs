//! What the API layer reads from the scheduler's state: records, lists, counts, and the
//! conditions waits sleep on. Each runs under the manager's lock, takes microseconds (the lists
//! and `records` are O(jobs)) and never blocks.

use std::time::Duration;

use super::{Phase, State};
use crate::error::WaitTimeoutError;
use crate::events::Snapshot;
use crate::record::{JobId, JobRecord, JobStatus};

impl State {
    /// No job is pending or running.
    pub(crate) fn no_live_jobs(&self) -> bool {
        self.live == 0
    }

    /// No job is pending or running and, unless `in_handler` (a handler cannot wait for the
    /// handlers queued behind it), every handler has returned.
    pub(crate) fn settled(&self, in_handler: bool) -> bool {
        self.live == 0 && (in_handler || self.handlers_pending == 0)
    }

    /// The record of a known job (not deleted, not evicted).
    pub(crate) fn record(&self, id: JobId) -> Option<JobRecord> {
        self.get(id).map(|e| e.record())
    }

    /// The record of a held job: known, or evicted while held.
    pub(crate) fn held_record(&self, id: JobId) -> Option<JobRecord> {
        self.record(id).or_else(|| self.retain.handed(id).cloned())
    }

    /// What a wait on `id` returns now, or `None` while it must go on waiting: the final
    /// record once the job's handler returned (or, with `final_is_enough`, once it is final),
    /// the record handed over if the job was evicted while held, or `UnknownJob`.
    pub(crate) fn wait_result(
        &self,
        id: JobId,
        final_is_enough: bool,
    ) -> Option<Result<JobRecord, WaitTimeoutError>> {
        match self.get(id) {
            None => Some(
                self.retain
                    .handed(id)
                    .cloned()
                    .ok_or(WaitTimeoutError::UnknownJob(id)),
            ),
            Some(e) if e.status().is_final() && (e.handler_done || final_is_enough) => {
                Some(Ok(e.record()))
            }
            Some(_) => None,
        }
    }

    /// The ids of the pending jobs (queued, waiting for dependencies or a retry), in id order.
    pub(crate) fn pending_ids(&self) -> Vec<JobId> {
        let mut v: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, e)| !e.deleted && e.status() == JobStatus::Pending)
            .map(|(&id, _)| id)
            .collect();
        v.sort();
        v
    }

    /// The running jobs (spawned, not reaped) with their pid and elapsed time, in id order.
    pub(crate) fn running_since(&self) -> Vec<(JobId, u32, Duration)> {
        let mut v: Vec<_> = self
            .jobs
            .iter()
            .filter(|(_, e)| !e.deleted)
            .filter_map(|(&id, e)| match e.phase {
                Phase::Running { spawned, .. } => {
                    Some((id, e.pid().unwrap_or(0), spawned.elapsed()))
                }
                _ => None,
            })
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }

    /// Every known record (not deleted, not evicted), or with `finished_only` those that are
    /// final and whose handler returned; in no particular order (the caller sorts, outside
    /// the lock).
    pub(crate) fn records(&self, finished_only: bool) -> Vec<JobRecord> {
        self.jobs
            .values()
            .filter(|e| !e.deleted)
            .filter(|e| !finished_only || (e.status().is_final() && e.handler_done))
            .map(|e| e.record())
            .collect()
    }

    /// Counts by status, evicted counts, the running jobs, pause and limit.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut counts: Vec<(JobStatus, usize)> = Vec::new();
        for e in self.jobs.values().filter(|e| !e.deleted) {
            match counts.iter_mut().find(|(st, _)| *st == e.status()) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.status(), 1)),
            }
        }
        Snapshot {
            counts,
            evicted: self.retain.evicted_counts(),
            running: self.running_since(),
            live: self.live_jobs(),
            paused: self.paused,
            limit: self.limit,
        }
    }

    /// The job limit.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// For `Debug`: the limit, the size of the job table, the jobs holding a slot.
    pub(crate) fn sizes(&self) -> (usize, usize, usize) {
        (self.limit, self.jobs.len(), self.running)
    }
}
