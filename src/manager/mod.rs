//! The public API: [`ProcessManager`] (owns a manager; dropping it shuts it down) and
//! [`Handle`] (every call on jobs), the process-wide instance, and shutdown. The builder is in
//! `builder.rs`, [`RecordHold`] in `hold.rs`, the checks made at submission in `validate.rs`.
//! Below this layer, the engine (`crate::engine`) owns the lock, the threads and the scheduler.

mod builder;
mod contain;
mod hold;
mod validate;

pub use builder::Builder;
pub use hold::RecordHold;
use validate::validate;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

use crate::config::ShutdownMode;
use crate::deadline;
use crate::engine::sched::retain::Retention;
use crate::engine::Inner;
use crate::error::{BuildError, ShutDown, StartError, UnknownJob, WaitError, WaitTimeoutError};
use crate::events::{Event, Snapshot};
use crate::record::{JobId, JobRecord, KillOutcome};
use crate::spec::JobSpec;
/// Owns a manager: a pool of worker threads (created as jobs need them) and handler threads
/// (one by default). Every call on jobs is a method of [`Handle`], reached through `Deref`:
/// `manager.start_process(spec)` works on either. [`handle`](Self::handle) gives cheap
/// [`Handle`]s that can be moved into handlers, observers and other threads.
///
/// Dropping it is [`shutdown(ShutdownMode::Cancel, None)`](Handle::shutdown): no job, zombie or
/// thread is left. Dropping a [`Handle`] does nothing.
pub struct ProcessManager {
    handle: Handle,
}

/// A reference to a manager, cheap to clone, that does not own it: every call on jobs lives
/// here ([`ProcessManager`] derefs to it). Dropping a handle does nothing.
///
/// # After the shutdown
/// Once the owner is shut down (dropped, or [`shutdown`](Self::shutdown)), no job runs and no
/// manager thread is left. Through a handle, [`start_process`](Self::start_process) and
/// [`run`](Self::run) fail with [`StartError::ShutDown`], [`set_limit`](Self::set_limit),
/// [`set_capacities`](Self::set_capacities), [`pause`](Self::pause) and
/// [`resume`](Self::resume) fail too, [`subscribe`](Self::subscribe) gives a channel that is
/// already ended, and [`shutdown`](Self::shutdown) returns at once. The records still held
/// (see [`Retention`]) still answer [`job_data`](Self::job_data), [`wait`](Self::wait),
/// [`records`](Self::records) and [`snapshot`](Self::snapshot), and
/// [`kill_process`](Self::kill_process) reports them finished. That state (records, at most
/// the retention policy's worth) stays in memory until the last handle is dropped, including
/// handles held by plugins, pipelines and handlers.
///
/// Every method may be called from any thread, including from inside a handler or an observer.
/// Methods that block say so; the others take the manager's lock for microseconds only.
///
/// # Unknown ids
/// An id is unknown to a manager when that manager never gave it out (ids of different
/// managers are not related) or when the job was deleted ([`delete_job`](Self::delete_job)),
/// even while it still runs. Every call that takes an id reads an unknown one the same way: an
/// `Err` naming the id — [`UnknownJob`] from [`kill_process`](Self::kill_process),
/// [`delete_job`](Self::delete_job) and [`job_data`](Self::job_data),
/// [`WaitError::UnknownJob`] from [`wait`](Self::wait),
/// [`WaitTimeoutError::UnknownJob`] from [`wait_timeout`](Self::wait_timeout) and
/// [`wait_deadline`](Self::wait_deadline), and [`StartError::Deleted`] from [`run`](Self::run)
/// when another thread deletes the job it waits for. A job deleted while a `wait` blocks on it
/// ends that wait with the same error. The lists ([`running_processes`](Self::running_processes),
/// [`pending_processes`](Self::pending_processes), [`snapshot`](Self::snapshot)) leave
/// deleted jobs out.
///
/// # Inside handlers and observers
/// Handlers run on the manager's handler threads (one by default), observers on the job's
/// reader threads.
/// From a handler, `wait*` never deadlock: with one handler thread they return once the record
/// is final (the job's own handler can only run after the current one); with more, they also
/// wait for the job's handler where that is safe (see [`wait`](Self::wait)). From an observer, a wait on the observer's
/// *own* job could never end (the job ends only after its observer returns): `wait`,
/// `wait_timeout` and `wait_deadline` refuse it at once with `WouldDeadlock`
/// ([`WaitError::WouldDeadlock`], [`WaitTimeoutError::WouldDeadlock`]), [`wait_all`](Self::wait_all)
/// returns at once, and [`shutdown`](Self::shutdown) starts the shutdown without waiting.
/// Waiting for *another* job from an observer works, but the observed job holds its slot
/// meanwhile: a job that waits for a free slot (with `limit(1)`, any other job) cannot start
/// until the observer returns.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

static GLOBAL: OnceLock<ProcessManager> = OnceLock::new();

impl ProcessManager {
    /// A manager with the default settings (limit 10). See [`builder`](Self::builder).
    ///
    /// # Panics
    /// Only if the OS refuses to create the manager's threads.
    pub fn new() -> ProcessManager {
        Builder::default()
            .build()
            .expect("the OS refused to create procman's threads")
    }

    /// A builder for a manager with other settings.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The process-wide manager (limit 10), created on first use by whichever thread touches it
    /// first; every call returns the same instance. It is never dropped: call
    /// [`shutdown`](Handle::shutdown) to end its jobs before the process exits.
    ///
    /// # Panics
    /// Only if the OS refuses to create the manager's threads.
    pub fn global() -> &'static ProcessManager {
        GLOBAL.get_or_init(ProcessManager::new)
    }

    /// A handle to this manager that does not own it: it can be moved into handlers and
    /// observers (for pipelines that start the next job from a handler). Never blocks.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl std::ops::Deref for ProcessManager {
    type Target = Handle;

    fn deref(&self) -> &Handle {
        &self.handle
    }
}

impl Handle {
    fn new(inner: Arc<Inner>) -> Handle {
        Handle { inner }
    }

    /// True on any of this manager's handler threads, that is inside a handler (used by the plugin
    /// layer to refuse waits that could only deadlock there).
    pub(crate) fn on_dispatcher_thread(&self) -> bool {
        self.inner.on_dispatcher()
    }

    /// Submits a job and returns its id at once. Never blocks on the job.
    ///
    /// # Errors
    /// A [`StartError`] for an empty program, a NUL byte, a bad environment name, an unknown
    /// dependency, a job that can never fit, an input file whose path is also the log's or the
    /// error file's, or a manager that is shut down. Problems found when spawning (a missing
    /// program or input file, an unwritable log, an input that is an output through a link) do
    /// not fail here: the job ends as [`JobStatus::SpawnFailed`](crate::JobStatus::SpawnFailed) and its handler runs.
    pub fn start_process(&self, spec: JobSpec) -> Result<JobId, StartError> {
        self.validate(&spec)?;
        self.inner.update(|s| s.submit(spec))
    }

    /// The checks made at submission: the spec's own, and whether this manager can apply its
    /// limits.
    fn validate(&self, spec: &JobSpec) -> Result<(), StartError> {
        validate(spec)?;
        let config = &self.inner.config;
        contain::check_limits(spec, config.containment, config.cgroups.as_deref())
    }

    /// How this manager contains its local jobs: the mode chosen with
    /// [`Builder::containment`](crate::Builder::containment) as resolved at `build` (never
    /// [`Containment::Auto`](crate::Containment::Auto): `Cgroup` or `ProcessGroup` in its place).
    /// Never blocks.
    pub fn containment(&self) -> crate::config::Containment {
        self.inner.config.containment
    }

    /// Runs a job and blocks until it has ended and its handler has returned; no time cap of
    /// its own (give the spec a timeout). Inside a handler it returns as [`wait`](Self::wait)
    /// does there (with one handler thread: once the record is final). It returns only after the
    /// handler (outside a handler), so the record it gives is the one the handler saw.
    ///
    /// # Errors
    /// As [`start_process`](Self::start_process), and [`StartError::Deleted`] when another
    /// thread deleted the job before `run` saw its final record (see "Unknown ids" above).
    pub fn run(&self, spec: JobSpec) -> Result<JobRecord, StartError> {
        // The record is held from the submission on: it cannot be evicted before it is read.
        let hold = self.start_held(spec)?;
        // A new job is never the one this thread observes: no `WouldDeadlock` here, and the
        // job cannot be unknown unless another thread deleted it meanwhile.
        hold.wait().map_err(|_| StartError::Deleted(hold.id()))
    }

    /// [`start_process`](Self::start_process), holding the job's record from the submission on:
    /// it stays readable through the returned [`RecordHold`] whatever the retention policy (see
    /// [`Retention`]), so a wait on it cannot find the job unknown unless it is deleted. Never
    /// blocks on the job.
    ///
    /// # Errors
    /// As [`start_process`](Self::start_process).
    pub fn start_held(&self, spec: JobSpec) -> Result<RecordHold, StartError> {
        self.validate(&spec)?;
        let id = self.inner.update(|s| {
            let id = s.submit(spec)?;
            s.hold(id);
            Ok::<_, StartError>(id)
        })?;
        Ok(RecordHold::new(self.inner.clone(), id))
    }

    /// Holds a known job's record: it stays readable through the returned [`RecordHold`]
    /// whatever the retention policy (see [`Retention`]). Never blocks.
    ///
    /// # Errors
    /// [`UnknownJob`] when the id was never given out, or the job was deleted or evicted.
    pub fn hold(&self, id: JobId) -> Result<RecordHold, UnknownJob> {
        self.inner.lock().hold_known(id)?;
        Ok(RecordHold::new(self.inner.clone(), id))
    }

    /// Blocks until the job has ended and its handler has returned, and gives its final record.
    /// Called from a handler, it never deadlocks: with one handler thread it returns as soon as
    /// the record is final (the job's own handler can only run after the current one). With
    /// more ([`Builder::handler_threads`]) it also waits for the job's handler, unless that
    /// could deadlock, and then returns once the record is final: when the job is the calling
    /// handler's own, when every other handler thread but one is already in such a wait (one
    /// stays free to run the handlers waited for), or when the job's handler is itself in such
    /// a wait (handlers waiting for each other).
    ///
    /// # Errors
    /// [`WaitError::UnknownJob`] when the id is unknown ("Unknown ids" above), or the job was
    /// deleted or its record evicted (see [`Retention`]) before this call; a record evicted while
    /// this call waits is still returned. [`WaitError::WouldDeadlock`] at once when called from
    /// the job's own output observer ("Inside handlers and observers" above).
    pub fn wait(&self, id: JobId) -> Result<JobRecord, WaitError> {
        match self.wait_until(id, None) {
            Ok(r) => Ok(r),
            Err(WaitTimeoutError::WouldDeadlock(id)) => Err(WaitError::WouldDeadlock(id)),
            Err(_) => Err(WaitError::UnknownJob(id)),
        }
    }

    /// [`wait`](Self::wait) with a time limit; the job goes on if the time runs out. A limit
    /// too long for the clock (`Duration::MAX`) waits like `wait`.
    ///
    /// # Errors
    /// [`WaitTimeoutError::Timeout`]; [`WaitTimeoutError::UnknownJob`] as in
    /// [`wait`](Self::wait) ("Unknown ids" above); [`WaitTimeoutError::WouldDeadlock`] at once
    /// from the job's own observer.
    pub fn wait_timeout(
        &self,
        id: JobId,
        timeout: Duration,
    ) -> Result<JobRecord, WaitTimeoutError> {
        self.wait_until(id, deadline::from_now(timeout))
    }

    /// [`wait`](Self::wait) until a deadline; the job goes on if it passes.
    ///
    /// # Errors
    /// As [`wait_timeout`](Self::wait_timeout).
    pub fn wait_deadline(
        &self,
        id: JobId,
        deadline: Instant,
    ) -> Result<JobRecord, WaitTimeoutError> {
        self.wait_until(id, Some(deadline))
    }

    /// Refuses a wait on the job whose observer runs on this thread (see `RecordHold::wait_until`).
    fn wait_until(
        &self,
        id: JobId,
        deadline: Option<Instant>,
    ) -> Result<JobRecord, WaitTimeoutError> {
        // Held while waiting: a record evicted meanwhile is handed over.
        self.inner.lock().hold(id);
        let hold = RecordHold::new(self.inner.clone(), id);
        hold.wait_until(deadline)
    }

    /// Blocks until no job is pending or running and every handler has returned (inside a
    /// handler: until no job is pending or running). Jobs submitted meanwhile are waited for too.
    /// Inside an observer it returns at once, since the observer's own job cannot end while it
    /// waits (see "Inside handlers and observers" above).
    pub fn wait_all(&self) {
        if let Some(id) = self.inner.observed_here() {
            log::warn!("wait_all called from the output observer of job {id}: returning at once");
            return;
        }
        let in_handler = self.inner.on_dispatcher();
        self.inner
            .wait_for(&self.inner.idle, None, |s| s.settled(in_handler));
    }

    /// A snapshot of the job's record. Never blocks.
    ///
    /// # Errors
    /// [`UnknownJob`] for an unknown or deleted id, or one whose record was evicted (see
    /// "Unknown ids" above and [`Retention`]).
    pub fn job_data(&self, id: JobId) -> Result<JobRecord, UnknownJob> {
        self.inner.lock().record(id).ok_or(UnknownJob(id))
    }

    /// The ids of the running jobs (spawned and not yet reaped), in id order.
    pub fn running_processes(&self) -> Vec<JobId> {
        self.inner
            .lock()
            .running_since()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }

    /// The ids of the pending jobs (queued, waiting for dependencies or for a retry), in id order.
    pub fn pending_processes(&self) -> Vec<JobId> {
        self.inner.lock().pending_ids()
    }

    /// Kills a job: a pending job is cancelled and never starts; a running job's process group
    /// gets SIGTERM, then SIGKILL after the grace period (this call does not wait for that);
    /// a finished job is left alone. Never blocks.
    ///
    /// # Errors
    /// [`UnknownJob`] for an unknown or deleted id, or one whose record was evicted (see
    /// "Unknown ids" above).
    pub fn kill_process(&self, id: JobId) -> Result<KillOutcome, UnknownJob> {
        self.inner.update(|s| s.kill_job(id))
    }

    /// Forgets a job: its record is removed at once from every query. A live job is killed
    /// first (as by [`kill_process`](Self::kill_process)) and its handler still runs exactly
    /// once. Never blocks.
    ///
    /// # Errors
    /// [`UnknownJob`] for an unknown id, one deleted already, or one whose record was evicted
    /// (see "Unknown ids" above).
    pub fn delete_job(&self, id: JobId) -> Result<(), UnknownJob> {
        self.inner.update(|s| s.delete(id))
    }

    /// The current limit on running jobs.
    pub fn limit(&self) -> usize {
        self.inner.lock().limit()
    }

    /// Changes the limit on running jobs. Raising it starts waiting jobs at once (adding the
    /// workers they need; blocks only for those thread creations); lowering it lets running
    /// jobs finish and starts no new one until fewer run. Never blocks on a job. A worker the
    /// system refuses caps how many jobs run at once, with a warning, and is not an error.
    ///
    /// # Errors
    /// [`BuildError::ZeroLimit`] for zero (the limit is unchanged); [`BuildError::ShutDown`] once
    /// [`shutdown`](Self::shutdown) began, including a shutdown running on another thread
    /// (nothing changed, no worker added).
    pub fn set_limit(&self, limit: usize) -> Result<(), BuildError> {
        if limit == 0 {
            return Err(BuildError::ZeroLimit("the job limit"));
        }
        self.inner.update(|s| s.set_limit(limit))?;
        // The attempts just admitted need workers; a refused thread only caps concurrency.
        self.inner.grow_workers();
        Ok(())
    }

    /// Changes the CPU and memory capacities. Queued jobs that no longer fit end as
    /// `SpawnFailed`; running jobs are not touched. Never blocks.
    ///
    /// # Errors
    /// [`BuildError::ZeroLimit`] for a zero capacity, [`BuildError::ShutDown`] once
    /// [`shutdown`](Self::shutdown) began (nothing is changed either way).
    pub fn set_capacities(&self, cpus: u32, memory: u64) -> Result<(), BuildError> {
        if cpus == 0 || memory == 0 {
            return Err(BuildError::ZeroLimit("a capacity"));
        }
        self.inner.update(|s| s.set_capacities(cpus, memory))
    }

    /// Stops starting new jobs; running jobs go on, submissions are still accepted. Never
    /// blocks.
    ///
    /// # Errors
    /// [`ShutDown`] once [`shutdown`](Self::shutdown) began (a paused drain would never end).
    pub fn pause(&self) -> Result<(), ShutDown> {
        self.inner.lock().pause()
    }

    /// Starts jobs again after [`pause`](Self::pause). Never blocks.
    ///
    /// # Errors
    /// [`ShutDown`] once [`shutdown`](Self::shutdown) began (nothing is changed).
    pub fn resume(&self) -> Result<(), ShutDown> {
        self.inner.update(|s| s.resume())
    }

    /// Follows the manager without polling: a channel of [`Event`]s holding at most `capacity`
    /// undelivered events. A full channel never blocks the manager: events are dropped and
    /// counted, and an [`Event::Lost`] tells how many before the next one. Dropping the receiver
    /// unsubscribes. The channel ends (receivers see it disconnected, a `for` loop over it
    /// returns) once the manager is shut down, after its last event; subscribed after that,
    /// it is ended from the start. Never blocks.
    pub fn subscribe(&self, capacity: usize) -> Receiver<Event> {
        let (tx, rx) = bounded(capacity.max(1));
        self.inner.lock().subscribe(tx);
        rx
    }

    /// Which finished records the manager keeps (see [`Builder::retention`]).
    pub fn retention(&self) -> Retention {
        self.inner.lock().retention()
    }

    /// Changes which finished records the manager keeps; records the new policy does not keep
    /// are evicted at once (under the lock: O(number evicted)). Never blocks, never fails.
    pub fn set_retention(&self, retention: Retention) {
        self.inner.lock().set_retention(retention);
    }

    /// Counts by status (known jobs in `counts`, evicted ones in `evicted`) and the running
    /// jobs with their elapsed time. Never blocks.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.lock().snapshot()
    }

    /// Every known record (pending, running and final; not deleted or evicted, see
    /// [`Retention`]) in id order: a copy of each, taken under the manager's lock (O(jobs):
    /// with many records held, this stalls the manager's threads for that long), sorted after.
    /// Never blocks on jobs.
    pub fn records(&self) -> Vec<JobRecord> {
        sorted(self.inner.lock().records(false))
    }

    /// The records of the jobs that ended and whose handler returned (so `handler_error` is
    /// final), still known (not deleted or evicted, see [`Retention`]), in id order. Costs as
    /// [`records`](Self::records). Never blocks on jobs.
    pub fn finished_records(&self) -> Vec<JobRecord> {
        sorted(self.inner.lock().records(true))
    }

    /// Stops the manager. `Drain` resumes a paused queue and lets queued and running jobs
    /// finish (until `timeout`, then it cancels); `Cancel` cancels pending jobs and kills
    /// running ones at once. New submissions fail with [`StartError::ShutDown`] from the start.
    /// Blocks until every job has ended, every handler has returned and the manager's threads
    /// have exited (a handler that never returns blocks this). Called from a handler, it does
    /// not wait for handlers still queued behind it; calling it again (or dropping the owner)
    /// outside a handler then waits for them and joins the handler threads. Otherwise calling it
    /// again does nothing more. A `Drain` timeout too long for the clock (`Duration::MAX`) is
    /// the same as `None`.
    ///
    /// Called from an output observer of this manager's jobs, it cannot wait (the observer's
    /// own job ends only after the observer returns): it refuses new jobs and limit changes,
    /// then `Drain` resumes a paused queue (the timeout is not applied) and `Cancel` cancels
    /// and kills every job, the observer's own too, and it returns at once. A later shutdown
    /// or the owner's drop, outside the observer, waits and joins the threads.
    pub fn shutdown(&self, mode: ShutdownMode, timeout: Option<Duration>) {
        self.inner.shutdown(mode, timeout);
    }
}

impl Default for ProcessManager {
    fn default() -> ProcessManager {
        ProcessManager::new()
    }
}

impl Drop for ProcessManager {
    fn drop(&mut self) {
        self.handle.shutdown(ShutdownMode::Cancel, None);
    }
}

impl std::fmt::Debug for ProcessManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProcessManager").field(&self.handle).finish()
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (limit, jobs, running) = self.inner.lock().sizes();
        f.debug_struct("Handle")
            .field("limit", &limit)
            .field("jobs", &jobs)
            .field("running", &running)
            .finish()
    }
}

/// Records in id order.
fn sorted(mut records: Vec<JobRecord>) -> Vec<JobRecord> {
    records.sort_unstable_by_key(|r| r.id);
    records
}
