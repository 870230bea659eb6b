//! [`ProcessManager`]: the public API, its builder, the process-wide instance, and shutdown.
//!
//! Threads (DESIGN.md, "Thread model"): `limit` workers (more are added when the limit is
//! raised), one dispatcher, and a timer thread created on the first retry with a backoff.
//! Locking rule: one `parking_lot::Mutex<State>` guards every job's record and the scheduler;
//! it is held for microseconds, never across I/O, a wait, or user code (handlers, observers).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::backend::Backend;
use crate::dispatch::dispatcher_loop;
use crate::error::{BuildError, StartError, UnknownJob, WaitTimeoutError};
use crate::events::{Event, Snapshot};
use crate::pool::{worker_loop, Local};
use crate::record::{JobId, JobRecord, JobStatus, KillOutcome};
use crate::sched::{AttemptEnd, DispatchMsg, KillReason, Phase, State, WorkMsg};
use crate::spec::{EnvEdit, ErrorOutput, Input, JobSpec};
use crate::sys;

/// How workers wait for their child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Linux: `poll` on a pidfd and an eventfd, then `wait4`. Installs no signal handler, wakes
    /// at once on exit or kill, and yields CPU time and peak memory. Without a pidfd or an
    /// eventfd (a kernel before 5.3, or no descriptor left) a job is polled with
    /// `waitid(WNOWAIT)` in 10 ms slices instead: still no signal handler.
    Pidfd,
    /// Any Unix: the `wait-timeout` crate in 10 ms slices. It installs a SIGCHLD handler in the
    /// host process; no CPU or memory figures; leftover group members are not killed.
    Portable,
}

impl Default for WaitMode {
    fn default() -> WaitMode {
        if cfg!(target_os = "linux") {
            WaitMode::Pidfd
        } else {
            WaitMode::Portable
        }
    }
}

/// How observed output reaches the observer (see [`JobSpec::observe`](crate::JobSpec::observe)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObserveMode {
    /// Linux: the program writes its log and error files itself, exactly as when unobserved,
    /// and one reader thread per job follows the files (inotify) and hands their lines to the
    /// observer. The program is never slowed or blocked by the observer, and a merged log is
    /// observed in the order the program wrote it (all as [`Stream::Stdout`](crate::Stream)).
    /// A stream with no regular file behind it (no log file, `/dev/null`, a FIFO), or a job for
    /// which no inotify instance is left (`max_user_instances`), goes through a pipe as in
    /// [`Pipes`](ObserveMode::Pipes). Output written after the job's processes were reaped (by
    /// a process that left the group) is in the file but not observed.
    Files,
    /// Any Unix: stdout and stderr are pipes; one reader thread per stream copies each chunk to
    /// its file and hands its lines to the observer. A slow observer slows the program (the
    /// pipe fills); completion waits for the pipes' EOF at most the drain bound
    /// ([`Builder::output_drain_bound`]).
    Pipes,
}

impl Default for ObserveMode {
    fn default() -> ObserveMode {
        if cfg!(target_os = "linux") {
            ObserveMode::Files
        } else {
            ObserveMode::Pipes
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) wait_mode: WaitMode,
    pub(crate) observe_mode: ObserveMode,
    /// How long completion waits for observed output's EOF after the program was reaped.
    pub(crate) drain_bound: Duration,
    /// Mark the host's inheritable descriptors close-on-exec in each child.
    pub(crate) close_inherited_fds: bool,
}

#[derive(Default)]
struct Threads {
    workers: Vec<JoinHandle<()>>,
    dispatcher: Option<JoinHandle<()>>,
    timer: Option<JoinHandle<()>>,
}

/// Shared by the public handles and the manager's threads.
pub(crate) struct Inner {
    state: Mutex<State>,
    /// Notified whenever a job becomes final or its handler returns.
    changed: Condvar,
    /// Notified when an update leaves no live job: `wait_all` and `shutdown` wait on this one,
    /// so they are not woken twice per job to find that jobs are still running.
    idle: Condvar,
    /// Notified when a retry timer is added or the manager stops.
    timer_cv: Condvar,
    pub(crate) config: Config,
    pub(crate) backend: Arc<dyn Backend>,
    work_rx: Receiver<WorkMsg>,
    work_tx: Sender<WorkMsg>,
    done_tx: Sender<DispatchMsg>,
    threads: Mutex<Threads>,
    dispatcher_id: OnceLock<ThreadId>,
    stopped: AtomicBool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn on_dispatcher(&self) -> bool {
        self.dispatcher_id.get() == Some(&thread::current().id())
    }

    /// Runs `f` under the lock, then wakes waiters (`f` may have made jobs final).
    fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (r, idle) = {
            let mut s = self.lock();
            let r = f(&mut s);
            (r, s.live == 0)
        };
        self.changed.notify_all();
        if idle {
            self.idle.notify_all();
        }
        r
    }

    pub(crate) fn started(
        &self,
        id: JobId,
        pid: u32,
        attempt: u32,
        spawned: Instant,
        #[cfg(target_os = "linux")] waker: Option<Arc<sys::Waker>>,
    ) {
        self.lock().started(
            id,
            pid,
            attempt,
            spawned,
            #[cfg(target_os = "linux")]
            waker,
        );
    }

    /// The backend reports the job's raw state (see [`JobRecord::backend_state`]).
    pub(crate) fn set_backend_state(&self, id: JobId, state: &str) {
        self.lock().set_backend_state(id, state);
    }

    pub(crate) fn end_attempt(self: &Arc<Self>, id: JobId, attempt: u32, end: AttemptEnd) {
        if self.update(|s| s.end_attempt(id, attempt, end)).is_some() {
            self.ensure_timer();
            self.timer_cv.notify_all();
        }
    }

    /// See [`State::abandon`].
    pub(crate) fn abandon(&self, id: JobId, msg: String) {
        self.update(|s| s.abandon(id, msg));
    }

    pub(crate) fn handler_returned(&self, id: JobId, panic: Option<String>) {
        self.update(|s| s.handler_returned(id, panic));
    }

    fn spawn_workers(self: &Arc<Self>, want: usize) -> Result<(), BuildError> {
        let mut threads = self.threads.lock();
        while threads.workers.len() < want {
            let inner = self.clone();
            let rx = self.work_rx.clone();
            let n = threads.workers.len();
            let t = thread::Builder::new()
                .name(format!("procman-worker-{n}"))
                .spawn(move || worker_loop(inner, rx))
                .map_err(BuildError::Thread)?;
            threads.workers.push(t);
        }
        Ok(())
    }

    fn ensure_timer(self: &Arc<Self>) {
        let mut threads = self.threads.lock();
        if threads.timer.is_some() || self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let inner = self.clone();
        match thread::Builder::new()
            .name("procman-timer".into())
            .spawn(move || inner.timer_loop())
        {
            Ok(t) => threads.timer = Some(t),
            Err(e) => {
                // Without a timer the retries would wait forever: requeue them now instead.
                log::error!("cannot create the retry timer thread ({e}); retrying without backoff");
                self.update(|s| {
                    while let Some(std::cmp::Reverse((_, id))) = s.timers.pop() {
                        s.retry_due(id);
                    }
                });
            }
        }
    }

    /// The retry timer's body. A panic in it (the panic rule, DESIGN.md) is caught: retries
    /// that lost their timer in it are queued at once, and the timer goes on.
    fn timer_loop(&self) {
        while let Err(p) = catch_unwind(AssertUnwindSafe(|| self.timer_rounds())) {
            log::error!(
                "internal error: the retry timer thread panicked: {}; it goes on",
                crate::dispatch::panic_message(&*p)
            );
            self.update(|s| s.requeue_orphaned_retries());
        }
    }

    fn timer_rounds(&self) {
        let mut s = self.lock();
        while !self.stopped.load(Ordering::SeqCst) {
            let now = Instant::now();
            match s.timers.peek().copied() {
                Some(std::cmp::Reverse((at, id))) if at <= now => {
                    s.timers.pop();
                    #[cfg(test)]
                    if let Some(core) = s.get(id).and_then(|e| e.core.clone()) {
                        crate::fault::hit(&core.args, crate::fault::TIMER);
                    }
                    s.retry_due(id);
                }
                Some(std::cmp::Reverse((at, _))) => {
                    self.timer_cv.wait_until(&mut s, at);
                }
                None => self.timer_cv.wait(&mut s),
            }
        }
    }

    /// Blocks until `done(state)` holds or the deadline passes; true if it holds.
    /// `cv` is `changed`, or `idle` when `done` can only hold once no job is live.
    fn wait_for(
        &self,
        cv: &Condvar,
        deadline: Option<Instant>,
        mut done: impl FnMut(&State) -> bool,
    ) -> bool {
        let mut s = self.lock();
        loop {
            if done(&s) {
                return true;
            }
            match deadline {
                Some(d) => {
                    if cv.wait_until(&mut s, d).timed_out() {
                        return done(&s);
                    }
                }
                None => cv.wait(&mut s),
            }
        }
    }
}

/// Builds a [`ProcessManager`] with non-default settings.
///
/// ```
/// use std::time::Duration;
/// let manager = procman::ProcessManager::builder()
///     .limit(4)
///     .grace(Duration::from_secs(5))
///     .build()
///     .expect("a limit of 4 is valid");
/// # drop(manager);
/// ```
#[derive(Clone)]
pub struct Builder {
    limit: usize,
    cpu_capacity: Option<u32>,
    memory_capacity: Option<u64>,
    grace: Duration,
    kill_leftovers: bool,
    wait_mode: WaitMode,
    observe_mode: ObserveMode,
    drain_bound: Duration,
    close_inherited_fds: bool,
    backend: Option<Arc<dyn Backend>>,
    /// Set by [`Builder::slurm`]: each manager built gets a Slurm backend (and poller) of its own.
    slurm: Option<crate::slurm::SlurmOptions>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("limit", &self.limit)
            .field("cpu_capacity", &self.cpu_capacity)
            .field("memory_capacity", &self.memory_capacity)
            .field("grace", &self.grace)
            .field("kill_leftovers", &self.kill_leftovers)
            .field("wait_mode", &self.wait_mode)
            .field("observe_mode", &self.observe_mode)
            .field("drain_bound", &self.drain_bound)
            .field("close_inherited_fds", &self.close_inherited_fds)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            limit: 10,
            cpu_capacity: None,
            memory_capacity: None,
            grace: Duration::from_secs(2),
            kill_leftovers: true,
            wait_mode: WaitMode::default(),
            observe_mode: ObserveMode::default(),
            drain_bound: Duration::from_millis(200),
            close_inherited_fds: true,
            backend: None,
            slurm: None,
        }
    }
}

impl Builder {
    /// At most this many jobs run at once (default 10). Zero is an error at `build`.
    pub fn limit(mut self, limit: usize) -> Builder {
        self.limit = limit;
        self
    }

    /// CPUs available to jobs that declare [`JobSpec::cpus`] (default: the machine's).
    pub fn cpu_capacity(mut self, cpus: u32) -> Builder {
        self.cpu_capacity = Some(cpus);
        self
    }

    /// Memory in bytes available to jobs that declare [`JobSpec::memory`]
    /// (default: the machine's physical memory).
    pub fn memory_capacity(mut self, bytes: u64) -> Builder {
        self.memory_capacity = Some(bytes);
        self
    }

    /// Default time between SIGTERM and SIGKILL for timeouts and kills (default 2 s).
    pub fn grace(mut self, grace: Duration) -> Builder {
        self.grace = grace;
        self
    }

    /// Whether processes left in a job's process group when its program exits are killed
    /// (default true; see DESIGN.md, "Leftover processes").
    pub fn kill_leftovers(mut self, yes: bool) -> Builder {
        self.kill_leftovers = yes;
        self
    }

    /// How workers wait for their child (default: [`WaitMode::Pidfd`] on Linux).
    pub fn wait_mode(mut self, mode: WaitMode) -> Builder {
        self.wait_mode = mode;
        self
    }

    /// How observed output reaches observers (default: [`ObserveMode::Files`] on Linux).
    /// Never blocks; never fails (`Files` falls back to pipes job by job where it cannot apply).
    pub fn observe_mode(mut self, mode: ObserveMode) -> Builder {
        self.observe_mode = mode;
        self
    }

    /// How long a job's completion waits for its observed output to reach EOF after the program
    /// was reaped (default 200 ms). Only matters when a process outside the job's process group
    /// (for example one that called `setsid`) still holds the output pipes.
    pub fn output_drain_bound(mut self, bound: Duration) -> Builder {
        self.drain_bound = bound;
        self
    }

    /// Whether each child gets only stdin, stdout and stderr (default true). procman's own
    /// descriptors are always close-on-exec; this also keeps descriptors the *host* opened
    /// without `O_CLOEXEC` out of jobs. That takes a `pre_exec` step, which makes std fork
    /// instead of using `posix_spawn` (about twice the cost of a spawn), so procman adds it only
    /// once the host is seen to have such a descriptor (a cheap scan of `/proc/self/fd` before
    /// each spawn until then). A descriptor another host thread opens without `O_CLOEXEC` while
    /// a spawn is under way, before any was ever seen, can reach that one job: see DESIGN.md,
    /// "Descriptors".
    pub fn close_inherited_fds(mut self, yes: bool) -> Builder {
        self.close_inherited_fds = yes;
        self
    }

    /// Runs every job on a Slurm cluster instead of this machine: submitted with `sbatch`,
    /// tracked by one poller thread, killed with `scancel` (see [`crate::slurm`] and
    /// docs-slurm.md). `limit` then bounds how many jobs are submitted to Slurm at once. Unless
    /// set, the CPU and memory capacities become unbounded: Slurm decides what fits, and a job
    /// it refuses ends as [`JobStatus::SpawnFailed`] with Slurm's message.
    pub fn slurm(mut self, options: crate::slurm::SlurmOptions) -> Builder {
        // Half the range: the scheduler's sums of declared CPUs and memory cannot overflow.
        self.cpu_capacity.get_or_insert(u32::MAX / 2);
        self.memory_capacity.get_or_insert(u64::MAX / 2);
        self.slurm = Some(options);
        self
    }

    /// Runs jobs through another backend than the local one (see `backend/mod.rs`).
    #[allow(dead_code)]
    pub(crate) fn backend(mut self, backend: Arc<dyn Backend>) -> Builder {
        self.backend = Some(backend);
        self
    }

    /// Creates the manager and starts its threads (`limit` workers and the dispatcher).
    ///
    /// # Errors
    /// [`BuildError::ZeroLimit`] for a zero limit or capacity; [`BuildError::Thread`] when the
    /// OS refuses a thread.
    pub fn build(self) -> Result<ProcessManager, BuildError> {
        if self.limit == 0 {
            return Err(BuildError::ZeroLimit("the job limit"));
        }
        let cpu_capacity = self
            .cpu_capacity
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get() as u32));
        if cpu_capacity == 0 {
            return Err(BuildError::ZeroLimit("the CPU capacity"));
        }
        let memory_capacity = self
            .memory_capacity
            .or_else(sys::physical_memory)
            .unwrap_or(u64::MAX);
        if memory_capacity == 0 {
            return Err(BuildError::ZeroLimit("the memory capacity"));
        }
        let (work_tx, work_rx) = unbounded();
        let (done_tx, done_rx) = unbounded();
        let inner = Arc::new(Inner {
            state: Mutex::new(State::new(
                self.limit,
                cpu_capacity,
                memory_capacity,
                work_tx.clone(),
                done_tx.clone(),
                self.grace,
                self.kill_leftovers,
            )),
            changed: Condvar::new(),
            idle: Condvar::new(),
            timer_cv: Condvar::new(),
            config: Config {
                wait_mode: self.wait_mode,
                observe_mode: self.observe_mode,
                drain_bound: self.drain_bound,
                close_inherited_fds: self.close_inherited_fds,
            },
            backend: match (self.backend, self.slurm) {
                (Some(b), _) => b,
                (None, Some(o)) => Arc::new(crate::backend::slurm::SlurmBackend::new(o)),
                (None, None) => Arc::new(Local),
            },
            work_rx,
            work_tx,
            done_tx,
            threads: Mutex::new(Threads::default()),
            dispatcher_id: OnceLock::new(),
            stopped: AtomicBool::new(false),
        });
        let manager = ProcessManager {
            inner: inner.clone(),
            owner: true,
        };
        let d = inner.clone();
        let dispatcher = thread::Builder::new()
            .name("procman-dispatch".into())
            .spawn(move || dispatcher_loop(d, done_rx))
            .map_err(BuildError::Thread)?;
        let _ = inner.dispatcher_id.set(dispatcher.thread().id());
        inner.threads.lock().dispatcher = Some(dispatcher);
        inner.spawn_workers(self.limit)?;
        Ok(manager)
    }
}

/// How [`ProcessManager::shutdown`] treats the work still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Let queued and running jobs finish (until the timeout, if one is given; then cancel).
    /// A paused queue is resumed.
    Drain,
    /// Cancel pending jobs and kill running ones at once (SIGTERM, grace, SIGKILL).
    Cancel,
}

/// Runs programs as jobs: a fixed pool of worker threads, one dispatcher thread for handlers.
///
/// Every method may be called from any thread, including from inside a handler or an observer.
/// Methods that block say so; the others take the manager's lock for microseconds only.
///
/// Dropping an owned manager is [`shutdown(ShutdownMode::Cancel, None)`](Self::shutdown): no
/// job, zombie or thread is left. Handles from [`handle`](Self::handle) do not own the manager.
pub struct ProcessManager {
    inner: Arc<Inner>,
    owner: bool,
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
    /// [`shutdown`](Self::shutdown) to end its jobs before the process exits.
    ///
    /// # Panics
    /// Only if the OS refuses to create the manager's threads.
    pub fn global() -> &'static ProcessManager {
        GLOBAL.get_or_init(ProcessManager::new)
    }

    /// A handle to this manager that does not own it: it can be moved into handlers and
    /// observers (for pipelines that start the next job from a handler). Dropping a handle does
    /// nothing; once the owner is shut down, the handle's calls fail with
    /// [`StartError::ShutDown`] or find no jobs to act on.
    pub fn handle(&self) -> ProcessManager {
        ProcessManager {
            inner: self.inner.clone(),
            owner: false,
        }
    }

    /// True on this manager's dispatcher thread, that is inside a handler (used by the plugin
    /// layer to refuse waits that could only deadlock there).
    pub(crate) fn on_dispatcher_thread(&self) -> bool {
        self.inner.on_dispatcher()
    }

    /// Submits a job and returns its id at once. Never blocks on the job.
    ///
    /// # Errors
    /// A [`StartError`] for an empty program, a NUL byte, a bad environment name, an unknown
    /// dependency, a job that can never fit, or a manager that is shut down. Problems found when
    /// spawning (a missing program or input file, an unwritable log) do not fail here: the job
    /// ends as [`JobStatus::SpawnFailed`] and its handler runs.
    pub fn start_process(&self, spec: JobSpec) -> Result<JobId, StartError> {
        validate(&spec)?;
        self.inner.update(|s| s.submit(spec))
    }

    /// Runs a job and blocks until it has ended and its handler has returned; no time cap of
    /// its own (give the spec a timeout). Inside a handler it returns once the record is final
    /// (the job's own handler then runs after the current one).
    ///
    /// # Errors
    /// As [`start_process`](Self::start_process).
    pub fn run(&self, spec: JobSpec) -> Result<JobRecord, StartError> {
        let id = self.start_process(spec)?;
        // The job cannot be unknown unless someone deleted it meanwhile.
        self.wait(id).map_err(|_| StartError::ShutDown)
    }

    /// Blocks until the job has ended and its handler has returned, and gives its final record.
    /// Called from a handler (on the dispatcher thread), it returns as soon as the record is
    /// final, since the job's own handler can only run after the current one: waiting inside a
    /// handler never deadlocks.
    ///
    /// # Errors
    /// [`UnknownJob`] when the id was never given out or the job was deleted.
    pub fn wait(&self, id: JobId) -> Result<JobRecord, UnknownJob> {
        match self.wait_until(id, None) {
            Ok(r) => Ok(r),
            Err(_) => Err(UnknownJob(id)),
        }
    }

    /// [`wait`](Self::wait) with a time limit; the job goes on if the time runs out.
    ///
    /// # Errors
    /// [`WaitTimeoutError::Timeout`] or [`WaitTimeoutError::UnknownJob`].
    pub fn wait_timeout(
        &self,
        id: JobId,
        timeout: Duration,
    ) -> Result<JobRecord, WaitTimeoutError> {
        self.wait_until(id, Some(Instant::now() + timeout))
    }

    /// [`wait`](Self::wait) until a deadline; the job goes on if it passes.
    ///
    /// # Errors
    /// [`WaitTimeoutError::Timeout`] or [`WaitTimeoutError::UnknownJob`].
    pub fn wait_deadline(
        &self,
        id: JobId,
        deadline: Instant,
    ) -> Result<JobRecord, WaitTimeoutError> {
        self.wait_until(id, Some(deadline))
    }

    fn wait_until(
        &self,
        id: JobId,
        deadline: Option<Instant>,
    ) -> Result<JobRecord, WaitTimeoutError> {
        let in_handler = self.inner.on_dispatcher();
        let mut result = Err(WaitTimeoutError::Timeout);
        let inner = &self.inner;
        inner.wait_for(&inner.changed, deadline, |s| match s.get(id) {
            None => {
                result = Err(WaitTimeoutError::UnknownJob(id));
                true
            }
            Some(e) if e.record.status.is_final() && (e.handler_done || in_handler) => {
                result = Ok(e.record());
                true
            }
            Some(_) => false,
        });
        result
    }

    /// Blocks until no job is pending or running and every handler has returned (inside a
    /// handler: until no job is pending or running). Jobs submitted meanwhile are waited for too.
    pub fn wait_all(&self) {
        let in_handler = self.inner.on_dispatcher();
        self.inner.wait_for(&self.inner.idle, None, |s| {
            s.live == 0 && (in_handler || s.handlers_pending == 0)
        });
    }

    /// A snapshot of the job's record; `None` for an unknown or deleted id. Never blocks.
    pub fn job_data(&self, id: JobId) -> Option<JobRecord> {
        self.inner.lock().get(id).map(|e| e.record())
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
        let s = self.inner.lock();
        let mut v: Vec<JobId> = s
            .jobs
            .iter()
            .filter(|(_, e)| !e.deleted && e.record.status == JobStatus::Pending)
            .map(|(&id, _)| id)
            .collect();
        v.sort();
        v
    }

    /// Kills a job: a pending job is cancelled and never starts; a running job's process group
    /// gets SIGTERM, then SIGKILL after the grace period (this call does not wait for that);
    /// a finished job is left alone. `None` for an unknown id.
    pub fn kill_process(&self, id: JobId) -> Option<KillOutcome> {
        self.inner.update(|s| {
            s.get(id)?;
            s.kill(id, KillReason::User)
        })
    }

    /// Forgets a job: its record is removed at once from every query. A live job is killed
    /// first (as by [`kill_process`](Self::kill_process)) and its handler still runs exactly
    /// once. Returns false for an unknown id. Never blocks.
    pub fn delete_job(&self, id: JobId) -> bool {
        self.inner.update(|s| {
            if s.get(id).is_none() {
                return false;
            }
            s.kill(id, KillReason::User);
            let e = s.jobs.get_mut(&id).expect("checked above");
            if matches!(e.phase, Phase::Final) && e.handler_done {
                s.jobs.remove(&id);
            } else {
                e.deleted = true;
            }
            true
        })
    }

    /// The current limit on running jobs.
    pub fn limit(&self) -> usize {
        self.inner.lock().limit
    }

    /// Changes the limit on running jobs. Raising it starts waiting jobs at once (and adds
    /// workers); lowering it lets running jobs finish and starts no new one until fewer run.
    ///
    /// # Errors
    /// [`BuildError::ZeroLimit`] for zero (the limit is unchanged); [`BuildError::Thread`] when
    /// a worker could not be added.
    pub fn set_limit(&self, limit: usize) -> Result<(), BuildError> {
        if limit == 0 {
            return Err(BuildError::ZeroLimit("the job limit"));
        }
        self.inner.spawn_workers(limit)?;
        self.inner.update(|s| {
            s.limit = limit;
            s.pump();
        });
        Ok(())
    }

    /// Changes the CPU and memory capacities. Queued jobs that no longer fit end as
    /// `SpawnFailed`; running jobs are not touched.
    ///
    /// # Errors
    /// [`BuildError::ZeroLimit`] for a zero capacity (nothing is changed).
    pub fn set_capacities(&self, cpus: u32, memory: u64) -> Result<(), BuildError> {
        if cpus == 0 || memory == 0 {
            return Err(BuildError::ZeroLimit("a capacity"));
        }
        self.inner.update(|s| {
            s.cpu_capacity = cpus;
            s.memory_capacity = memory;
            s.fail_unfittable();
            s.pump();
        });
        Ok(())
    }

    /// Stops starting new jobs; running jobs go on, submissions are still accepted.
    pub fn pause(&self) {
        self.inner.lock().paused = true;
    }

    /// Starts jobs again after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.inner.update(|s| {
            s.paused = false;
            s.pump();
        });
    }

    /// Follows the manager without polling: a channel of [`Event`]s holding at most `capacity`
    /// undelivered events. A full channel never blocks the manager: events are dropped and
    /// counted, and an [`Event::Lost`] tells how many before the next one. Dropping the receiver
    /// unsubscribes.
    pub fn subscribe(&self, capacity: usize) -> Receiver<Event> {
        let (tx, rx) = bounded(capacity.max(1));
        self.inner.lock().events.add(tx);
        rx
    }

    /// Counts by status and the running jobs with their elapsed time. Never blocks.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.inner.lock();
        let mut counts: Vec<(JobStatus, usize)> = Vec::new();
        for e in s.jobs.values().filter(|e| !e.deleted) {
            match counts.iter_mut().find(|(st, _)| *st == e.record.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.record.status, 1)),
            }
        }
        Snapshot {
            counts,
            running: s.running_since(),
            paused: s.paused,
            limit: s.limit,
        }
    }

    /// Stops the manager. `Drain` resumes a paused queue and lets queued and running jobs
    /// finish (until `timeout`, then it cancels); `Cancel` cancels pending jobs and kills
    /// running ones at once. New submissions fail with [`StartError::ShutDown`] from the start.
    /// Blocks until every job has ended, every handler has returned and the manager's threads
    /// have exited (a handler that never returns blocks this). Called from a handler, it does
    /// not wait for handlers still queued behind it; calling it again (or dropping the owner)
    /// outside a handler then waits for them and joins the dispatcher. Otherwise calling it
    /// again does nothing more.
    pub fn shutdown(&self, mode: ShutdownMode, timeout: Option<Duration>) {
        let inner = &self.inner;
        if inner.stopped.load(Ordering::SeqCst) {
            // An earlier shutdown may have run inside a handler: it could neither wait for the
            // handlers queued behind it nor join its own thread. Outside a handler, finish that.
            if !inner.on_dispatcher() {
                inner.wait_for(&inner.idle, None, |s| {
                    s.live == 0 && s.handlers_pending == 0
                });
                let left = std::mem::take(&mut *inner.threads.lock());
                for t in left.workers.into_iter().chain(left.dispatcher) {
                    let _ = t.join();
                }
            }
            return;
        }
        let in_handler = inner.on_dispatcher();
        let settled = |s: &State| s.live == 0 && (in_handler || s.handlers_pending == 0);
        inner.update(|s| s.closed = true);
        if mode == ShutdownMode::Drain {
            // Draining a paused queue would wait for ever (or until the timeout): resume it.
            inner.update(|s| {
                s.paused = false;
                s.pump();
            });
            let deadline = timeout.map(|t| Instant::now() + t);
            if !inner.wait_for(&inner.idle, deadline, settled) {
                log::info!("shutdown: drain timed out; cancelling the rest");
            }
        }
        inner.update(|s| {
            s.cancelling = true;
            s.cancel_all();
        });
        inner.wait_for(&inner.idle, None, settled);
        inner.stopped.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut *inner.threads.lock());
        for _ in &threads.workers {
            let _ = inner.work_tx.send(WorkMsg::Stop);
        }
        let _ = inner.done_tx.send(DispatchMsg::Stop);
        {
            let _guard = inner.lock();
            inner.timer_cv.notify_all();
        }
        inner.backend.shutdown();
        let me = thread::current().id();
        let all = threads
            .workers
            .into_iter()
            .chain(threads.dispatcher)
            .chain(threads.timer);
        for t in all {
            if t.thread().id() != me {
                let _ = t.join();
            } else {
                // Inside a handler: a later shutdown or drop joins the dispatcher.
                inner.threads.lock().dispatcher = Some(t);
            }
        }
    }
}

impl Default for ProcessManager {
    fn default() -> ProcessManager {
        ProcessManager::new()
    }
}

impl Drop for ProcessManager {
    fn drop(&mut self) {
        if self.owner {
            self.shutdown(ShutdownMode::Cancel, None);
        }
    }
}

impl std::fmt::Debug for ProcessManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.lock();
        f.debug_struct("ProcessManager")
            .field("limit", &s.limit)
            .field("jobs", &s.jobs.len())
            .field("running", &s.running)
            .field("owner", &self.owner)
            .finish()
    }
}

/// Checks what can be checked without the file system.
fn validate(spec: &JobSpec) -> Result<(), StartError> {
    use std::os::unix::ffi::OsStrExt;
    if spec.program.is_empty() {
        return Err(StartError::EmptyProgram);
    }
    // The name is built only for an error: no allocation per argument on the way in.
    let nul = |what: &dyn Fn() -> String, s: &std::ffi::OsStr| {
        if s.as_bytes().contains(&0) {
            Err(StartError::NulByte(what()))
        } else {
            Ok(())
        }
    };
    nul(&|| "the program".into(), &spec.program)?;
    if let Some(i) = &spec.interpreter {
        nul(&|| "the interpreter".into(), i)?;
    }
    for (n, a) in spec.args.iter().enumerate() {
        nul(&|| format!("argument {}", n + 1), a)?;
    }
    for (what, p) in [
        ("the log file path", spec.log_file.as_deref()),
        ("the working directory", spec.cwd.as_deref()),
    ] {
        if let Some(p) = p {
            nul(&|| what.into(), p.as_os_str())?;
        }
    }
    if let Input::File(p) = &spec.input {
        nul(&|| "the input file path".into(), p.as_os_str())?;
    }
    if let ErrorOutput::File(p) = &spec.error_output {
        nul(&|| "the error file path".into(), p.as_os_str())?;
    }
    for edit in &spec.env {
        let (k, v) = match edit {
            EnvEdit::Set(k, v) => (k, Some(v)),
            EnvEdit::Remove(k) => (k, None),
            EnvEdit::Clear => continue,
        };
        if k.is_empty() || k.as_bytes().contains(&b'=') {
            return Err(StartError::BadEnvName(k.to_string_lossy().into_owned()));
        }
        nul(
            &|| format!("environment variable {}", k.to_string_lossy()),
            k,
        )?;
        if let Some(v) = v {
            nul(&|| format!("the value of {}", k.to_string_lossy()), v)?;
        }
    }
    Ok(())
}
