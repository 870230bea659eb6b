//! [`RecordHold`]: keeps one job's record readable whatever the retention policy, and the
//! waits that go through it (every `wait*` of the API does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deadline;
use crate::engine::Inner;
use crate::error::{UnknownJob, WaitError, WaitTimeoutError};
use crate::record::{JobId, JobRecord};

/// Keeps one job's record readable through this handle while it lives, whatever the retention
/// policy (see [`Retention`](crate::Retention)), from [`Handle::hold`](crate::Handle::hold) or [`Handle::start_held`](crate::Handle::start_held).
/// The job may still be evicted from the manager meanwhile (other callers then find its id
/// unknown), but its final record is handed to the hold first: waits through it never find the
/// job unknown unless it was deleted. Dropping it releases that copy. It refers to the
/// manager's shared state, not the manager: it does not keep an owned manager from shutting
/// down.
pub struct RecordHold {
    inner: Arc<Inner>,
    id: JobId,
    /// Inside a handler, with more than one handler thread: whether waits through this hold
    /// also wait for the job's handler. Decided at the first wait and kept until the hold is
    /// dropped (a wait made in slices keeps its answer): `UNDECIDED`, or the handler's job id
    /// + 1 for a reservation (`Inner::reserve_handler_wait`), or `REFUSED`.
    reservation: AtomicU64,
}

const UNDECIDED: u64 = 0;
const REFUSED: u64 = u64::MAX;

impl RecordHold {
    pub(super) fn new(inner: Arc<Inner>, id: JobId) -> RecordHold {
        RecordHold {
            inner,
            id,
            reservation: AtomicU64::new(UNDECIDED),
        }
    }

    /// Inside a handler: whether this wait also waits for the job's handler (see
    /// [`Handle::wait`](crate::Handle::wait)).
    fn waits_for_handler_in_handler(&self) -> bool {
        match self.reservation.load(Ordering::SeqCst) {
            UNDECIDED => {}
            REFUSED => return false,
            _ => return true,
        }
        let inner = &self.inner;
        let decided = match crate::engine::dispatch::current_handler_job(inner.key) {
            Some(me) if inner.reserve_handler_wait(self.id) => me.0.saturating_add(1),
            _ => REFUSED,
        };
        match self.reservation.compare_exchange(
            UNDECIDED,
            decided,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => decided != REFUSED,
            Err(other) => {
                // Another thread decided first: give this reservation back, keep that answer.
                if decided != REFUSED {
                    inner.release_handler_wait(JobId(decided - 1));
                }
                other != REFUSED
            }
        }
    }

    /// The job held.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// A snapshot of the job's record. Never blocks.
    ///
    /// # Errors
    /// [`UnknownJob`] if the job was deleted.
    pub fn record(&self) -> Result<JobRecord, UnknownJob> {
        self.inner
            .lock()
            .held_record(self.id)
            .ok_or(UnknownJob(self.id))
    }

    /// As [`Handle::wait`](crate::Handle::wait) (blocks until the job has ended and its handler returned).
    ///
    /// # Errors
    /// [`WaitError::UnknownJob`] if the job was deleted; [`WaitError::WouldDeadlock`] at once
    /// from the job's own output observer.
    pub fn wait(&self) -> Result<JobRecord, WaitError> {
        match self.wait_until(None) {
            Ok(r) => Ok(r),
            Err(WaitTimeoutError::WouldDeadlock(id)) => Err(WaitError::WouldDeadlock(id)),
            Err(_) => Err(WaitError::UnknownJob(self.id)),
        }
    }

    /// As [`Handle::wait_timeout`](crate::Handle::wait_timeout); the job goes on if the time runs out.
    ///
    /// # Errors
    /// [`WaitTimeoutError::Timeout`]; [`WaitTimeoutError::UnknownJob`] if the job was deleted;
    /// [`WaitTimeoutError::WouldDeadlock`] at once from the job's own output observer.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<JobRecord, WaitTimeoutError> {
        self.wait_until(deadline::from_now(timeout))
    }

    pub(super) fn wait_until(
        &self,
        deadline: Option<Instant>,
    ) -> Result<JobRecord, WaitTimeoutError> {
        let (id, inner) = (self.id, &self.inner);
        if inner.observed_here() == Some(id) {
            return Err(WaitTimeoutError::WouldDeadlock(id));
        }
        // Inside a handler the job's own handler is waited for only when that cannot deadlock.
        let final_is_enough = inner.on_dispatcher() && !self.waits_for_handler_in_handler();
        let mut result = Err(WaitTimeoutError::Timeout);
        inner.wait_for(&inner.changed, deadline, |s| {
            match s.wait_result(id, final_is_enough) {
                Some(r) => {
                    result = r;
                    true
                }
                None => false,
            }
        });
        result
    }
}

impl Drop for RecordHold {
    fn drop(&mut self) {
        match self.reservation.load(Ordering::SeqCst) {
            UNDECIDED | REFUSED => {}
            me => self.inner.release_handler_wait(JobId(me - 1)),
        }
        self.inner.lock().release(self.id);
    }
}

impl std::fmt::Debug for RecordHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordHold").field("id", &self.id).finish()
    }
}
