//! The manager's state and scheduler: the table of jobs, the ready queue, admission, and every
//! state transition. Everything here runs under the manager's one lock (`Inner::state`), takes
//! microseconds, and never blocks: no I/O, no waiting, no user code. Sends on channels here are
//! on unbounded channels (work, completions) or `try_send` (events).
//!
//! Admission policy (DESIGN.md, "Scheduling"): strict order, head-of-line blocking, no
//! backfill. The ready queue is ordered by priority (high first), then submission order. Only
//! the head of the queue may start; when it does not fit (job limit, CPUs or memory), nothing
//! behind it starts either, even a job that would fit. A large job therefore waits only for
//! running jobs to end, never behind a stream of later small ones of the same or lower
//! priority (higher priorities go first by definition). The price: while the head waits, free
//! CPUs or memory may stay idle.
//!
//! - A job enters the ready queue when its dependencies have all finished successfully; jobs
//!   released by one completion are all queued before any is started, so they compete by
//!   priority. A retry re-enters with its original submission order (after its backoff).
//! - Declarations of 0 CPUs or 0 bytes are not counted and always fit.
//! - A job that can never fit is refused at submission; a queued job that no longer can after
//!   `set_capacities` lowered them ends as `SpawnFailed` (left queued, it would block the head
//!   of the queue for ever).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Sender;

use crate::deadline;
use crate::engine::sched::record::{LiveRecord, Outcome, Rec};
use crate::engine::sched::retain::{Retainer, Retention};
use crate::error::StartError;
use crate::events::{Event, Subscribers};
use crate::job::{AttemptEnd, JobCore, Work};
use crate::record::{JobId, JobRecord, JobStatus, KillOutcome};
use crate::spec::{Handler, JobSpec, Retry};
use crate::sys::Exit;

mod control;
mod live;
mod queries;
mod record;
pub(crate) mod retain;
#[cfg(test)]
mod tests;

pub(crate) use control::TimerStep;

/// Where a job is, as the scheduler sees it.
enum Phase {
    /// Waiting for this many dependencies to finish successfully.
    Waiting(usize),
    /// In the ready queue.
    Ready,
    /// Between attempts, waiting for its backoff to pass.
    RetryWait,
    /// Given to a worker, not spawned yet. Holds a slot.
    Admitted,
    /// Given to a worker beyond the job limit, for its backend to hold (`Backend::
    /// stage_window`; `JobCore::held` is set): holds no slot, counted in `State::staged`.
    /// Becomes `Admitted` when a slot frees ([`State::pump`]), or `Running` should the
    /// backend report it started all the same (released outside procman).
    Staged,
    /// Spawned. Holds a slot.
    Running {
        spawned: Instant,
        waker: crate::sys::Waker,
    },
    /// Ended; the record is final.
    Final,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KillReason {
    User,
    Shutdown,
}

struct Entry {
    /// The job's record: a small one of its own while the job is live (its identity is held by
    /// `core`), the public `JobRecord` once final (`record.rs`). Read it through
    /// [`Entry::record`].
    rec: Rec,
    /// Dropped when the job becomes final, so nothing the job captured outlives it.
    core: Option<Arc<JobCore>>,
    handler: Option<Handler>,
    phase: Phase,
    kill: Option<KillReason>,
    handler_done: bool,
    deleted: bool,
    dependents: Vec<JobId>,
    seq: u64,
    retry: Retry,
    /// The latest sample and progress (`live.rs`), once a worker reported one.
    live: Option<Box<live::Live>>,
}

impl Entry {
    /// The CPUs the job declares (kept once, in its core; a final job holds none).
    fn cpus(&self) -> u32 {
        self.core.as_ref().map_or(0, |c| c.cpus)
    }

    /// The memory (bytes) the job declares (kept once, in its core).
    fn memory(&self) -> u64 {
        self.core.as_ref().map_or(0, |c| c.memory)
    }
}

fn fill_identity(r: &mut JobRecord, core: &JobCore) {
    r.program = core.program.to_os_string();
    r.args = core.args.to_vec();
    r.interpreter = core.interpreter.as_deref().map(OsStr::to_os_string);
    r.log_file = core.log_file.as_deref().map(Path::to_path_buf);
    r.error_file = core.error_path().map(std::path::Path::to_path_buf);
}

pub(crate) enum WorkMsg {
    Job(Work),
    Stop,
}

/// A completion, handed to the dispatcher.
pub(crate) struct Done {
    pub(crate) id: JobId,
    pub(crate) handler: Option<Handler>,
    pub(crate) record: JobRecord,
}

// Boxing `Done` would cost an allocation per job; the channel holds few messages.
#[allow(clippy::large_enum_variant)]
pub(crate) enum DispatchMsg {
    Done(Done),
    Stop,
}

#[derive(PartialEq, Eq)]
struct ReadyKey {
    priority: i32,
    seq: Reverse<u64>,
    id: JobId,
}

impl Ord for ReadyKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, self.seq).cmp(&(other.priority, other.seq))
    }
}

impl PartialOrd for ReadyKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The job table. Entries are boxed: a table slot is then 16 bytes instead of ~480, so the
/// table's spare capacity (up to half of it right after it grows) costs little; and ids are
/// hashed with one multiplication instead of SipHash (they are sequential and never chosen by an
/// attacker). Measured in docs/performance.md (memory per pending job).
type JobTable = HashMap<JobId, Box<Entry>, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a job id: spreads sequential ids over both the low bits (the bucket)
/// and the high bits (hashbrown's tag byte).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A dependency that ended otherwise than successfully: its id, and its status (`None` when
/// only its evicted outcome is known).
type FailedDependency = (JobId, Option<JobStatus>);

/// The scheduler's settings from the builder.
pub(crate) struct Settings {
    pub(crate) limit: usize,
    /// How many jobs beyond `limit` may be staged (`Backend::stage_window`).
    pub(crate) stage: usize,
    pub(crate) cpu_capacity: u32,
    pub(crate) memory_capacity: u64,
    /// The grace between SIGTERM and SIGKILL for jobs that set none.
    pub(crate) grace: Duration,
    /// Whether jobs that set nothing kill their group's leftovers after the leader exits.
    pub(crate) kill_leftovers: bool,
    pub(crate) retention: Retention,
}

pub(crate) struct State {
    jobs: JobTable,
    ready: BinaryHeap<ReadyKey>,
    next_id: u64,
    next_seq: u64,
    limit: usize,
    /// How many jobs may be staged at once (0: none; see [`Phase::Staged`]).
    stage: usize,
    /// Jobs staged now.
    staged: usize,
    /// The staged jobs in the order they were staged (ids no longer staged are skipped).
    stage_order: std::collections::VecDeque<JobId>,
    cpu_capacity: u32,
    memory_capacity: u64,
    /// Jobs holding a slot (admitted or running).
    running: usize,
    used_cpus: u32,
    used_memory: u64,
    paused: bool,
    /// No new jobs are accepted.
    closed: bool,
    /// A cancelling shutdown is under way: no retries.
    cancelling: bool,
    /// Jobs not final yet.
    live: usize,
    /// Final jobs whose handler has not returned yet.
    handlers_pending: usize,
    events: Subscribers,
    work: Sender<WorkMsg>,
    done: Sender<DispatchMsg>,
    /// Retries waiting for their backoff: (when, job).
    timers: BinaryHeap<Reverse<(Instant, JobId)>>,
    default_grace: Duration,
    default_kill_leftovers: bool,
    /// Which finished records are kept (`retain.rs`).
    retain: Retainer,
}

impl State {
    pub(crate) fn new(
        settings: Settings,
        work: Sender<WorkMsg>,
        done: Sender<DispatchMsg>,
    ) -> State {
        let Settings {
            limit,
            stage,
            cpu_capacity,
            memory_capacity,
            grace: default_grace,
            kill_leftovers: default_kill_leftovers,
            retention,
        } = settings;
        State {
            jobs: JobTable::default(),
            ready: BinaryHeap::new(),
            next_id: 1000,
            next_seq: 0,
            limit,
            stage,
            staged: 0,
            stage_order: std::collections::VecDeque::new(),
            cpu_capacity,
            memory_capacity,
            running: 0,
            used_cpus: 0,
            used_memory: 0,
            paused: false,
            closed: false,
            cancelling: false,
            live: 0,
            handlers_pending: 0,
            events: Subscribers::default(),
            work,
            done,
            timers: BinaryHeap::new(),
            default_grace,
            default_kill_leftovers,
            retain: Retainer::new(retention),
        }
    }

    /// A visible (not deleted) job.
    fn get(&self, id: JobId) -> Option<&Entry> {
        self.jobs.get(&id).map(|e| &**e).filter(|e| !e.deleted)
    }

    /// Accepts a validated spec. Never blocks.
    pub(crate) fn submit(&mut self, spec: JobSpec) -> Result<JobId, StartError> {
        if self.closed {
            return Err(StartError::ShutDown);
        }
        if spec.cpus > self.cpu_capacity || spec.declared_memory() > self.memory_capacity {
            return Err(StartError::NeverFits {
                asked: format!(
                    "{} CPUs and {} bytes of memory",
                    spec.cpus,
                    spec.declared_memory()
                ),
                capacity: format!(
                    "{} CPUs and {} bytes of memory",
                    self.cpu_capacity, self.memory_capacity
                ),
            });
        }
        // Records past their age go now (lazily: no thread of its own); cheap otherwise.
        self.retain.evict(&mut self.jobs);
        let (waiting_on, failed_dep) = self.dependencies(&spec.after)?;
        let id = JobId(self.next_id);
        self.next_id += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        let phase = if waiting_on > 0 && failed_dep.is_none() {
            for dep in &spec.after {
                if let Some(e) = self.jobs.get_mut(dep) {
                    if !e.status().is_final() {
                        e.dependents.push(id);
                    }
                }
            }
            Phase::Waiting(waiting_on)
        } else {
            Phase::Ready
        };
        let entry = self.new_entry(id, seq, phase, spec);
        self.jobs.insert(id, Box::new(entry));
        self.live += 1;
        self.events.emit(|| Event::Queued { id });
        if let Some((dep, status)) = failed_dep {
            self.finalize(id, |r| {
                r.status = JobStatus::DependencyFailed;
                r.error = Some(match status {
                    Some(status) => format!("job {dep}, which it runs after, ended as {status}"),
                    None => format!(
                        "job {dep}, which it runs after, did not finish successfully \
                         (its record was evicted, see Retention)"
                    ),
                });
            });
        } else if waiting_on == 0 {
            self.make_ready(id);
        }
        Ok(id)
    }

    /// A new job's table entry: its pending record and its core (the job's identity lives in
    /// the core while the job is live, and moves to the record when it ends).
    fn new_entry(&self, id: JobId, seq: u64, phase: Phase, spec: JobSpec) -> Entry {
        let error_file = spec.resolved_error_file();
        let merge_error = spec.merges_error();
        let memory = spec.declared_memory();
        // The job's identity (program, arguments, paths) lives in its core while the job is
        // live, and moves to the record when it ends: one copy per pending job (`Entry::record`).
        let record = LiveRecord::new(id, spec.priority, &spec.after);
        let core = Arc::new(JobCore {
            id,
            program: spec.program.into(),
            args: spec.args.into(),
            interpreter: spec.interpreter.map(OsString::into_boxed_os_str),
            input: spec.input,
            log_file: spec.log_file.map(PathBuf::into_boxed_path),
            merge_error,
            error_file: error_file
                .filter(|_| !merge_error)
                .map(PathBuf::into_boxed_path),
            cwd: spec.cwd.map(PathBuf::into_boxed_path),
            env: spec.env.into(),
            timeout: spec.timeout,
            grace: spec.grace.unwrap_or(self.default_grace),
            observer: spec.observer,
            progress: spec.progress,
            kill_leftovers: spec.kill_leftovers.unwrap_or(self.default_kill_leftovers),
            cpus: spec.cpus,
            memory,
            memory_limit: spec.memory_limit,
            cpu_weight: spec.cpu_weight,
            kill_requested: AtomicBool::new(false),
            held: AtomicBool::new(false),
        });
        Entry {
            rec: Rec::Live(Box::new(record)),
            core: Some(core),
            handler: spec.handler,
            phase,
            kill: None,
            handler_done: false,
            deleted: false,
            dependents: Vec::new(),
            seq,
            retry: spec.retry,
            live: None,
        }
    }

    /// How many of `after` are still to finish, and the first that ended otherwise than
    /// successfully (with its status, or `None` when only its evicted outcome is known).
    ///
    /// # Errors
    /// [`StartError::UnknownDependency`] for an id never given out, deleted, or evicted with
    /// no outcome kept.
    fn dependencies(
        &self,
        after: &[JobId],
    ) -> Result<(usize, Option<FailedDependency>), StartError> {
        let mut waiting_on = 0;
        let mut failed_dep = None;
        for &dep in after {
            match self.get(dep) {
                // An evicted job still answers whether it succeeded (`retain.rs`).
                None => match self.retain.outcome(dep) {
                    None => return Err(StartError::UnknownDependency(dep)),
                    Some(true) => {}
                    Some(false) => {
                        failed_dep.get_or_insert((dep, None));
                    }
                },
                Some(e) if e.status().is_success() => {}
                Some(e) if e.status().is_final() => {
                    failed_dep.get_or_insert((dep, Some(e.status())));
                }
                Some(_) => waiting_on += 1,
            }
        }
        Ok((waiting_on, failed_dep))
    }

    fn make_ready(&mut self, id: JobId) {
        self.enqueue(id);
        self.pump();
    }

    /// Puts the job in the ready queue without starting anything: callers that release several
    /// jobs at once enqueue them all, then pump once, so they compete by priority.
    fn enqueue(&mut self, id: JobId) {
        if let Some(e) = self.jobs.get_mut(&id) {
            e.phase = Phase::Ready;
            let priority = match &e.rec {
                Rec::Live(l) => l.priority,
                Rec::Final(r) => r.priority,
            };
            self.ready.push(ReadyKey {
                priority,
                seq: Reverse(e.seq),
                id,
            });
        }
    }

    /// Starts as many jobs as fit: staged jobs first (they get the free slots, in the order
    /// they were staged), then the head of the ready queue in strict order, staged instead of
    /// started while the limit is reached and the backend takes more to hold.
    fn pump(&mut self) {
        while !self.paused && self.running < self.limit {
            let Some(id) = self.stage_order.pop_front() else {
                break;
            };
            let Some(e) = self.jobs.get_mut(&id) else {
                continue;
            };
            if !matches!(e.phase, Phase::Staged) {
                continue;
            }
            e.phase = Phase::Admitted;
            self.staged -= 1;
            self.running += 1;
            if let Some(core) = &e.core {
                core.held.store(false, AtomicOrdering::SeqCst);
            }
        }
        while !self.paused {
            let Some(top) = self.ready.peek() else { return };
            let id = top.id;
            let Some(e) = self
                .jobs
                .get(&id)
                .filter(|e| matches!(e.phase, Phase::Ready))
            else {
                self.ready.pop();
                continue;
            };
            // `used` may exceed a capacity that was lowered; a declaration of 0 always fits.
            // A free slot here means no job is staged: the loop above gave them every one.
            let slot = self.running < self.limit;
            let fits = (slot || self.staged < self.stage)
                && e.cpus() <= self.cpu_capacity.saturating_sub(self.used_cpus)
                && e.memory() <= self.memory_capacity.saturating_sub(self.used_memory);
            if !fits {
                return;
            }
            self.ready.pop();
            let e = self.jobs.get_mut(&id).expect("checked above");
            let core = e.core.as_ref().expect("a live job has its core");
            if slot {
                e.phase = Phase::Admitted;
                self.running += 1;
                core.held.store(false, AtomicOrdering::SeqCst);
            } else {
                e.phase = Phase::Staged;
                self.staged += 1;
                self.stage_order.push_back(id);
                core.held.store(true, AtomicOrdering::SeqCst);
            }
            self.used_cpus += e.cpus();
            self.used_memory += e.memory();
            let work = Work {
                core: e.core.clone().expect("a live job has its core"),
                attempt: e.attempts() + 1,
            };
            // The receiver lives as long as the manager's workers; a failed send means the
            // manager is being torn down, and the job is then cancelled by the shutdown.
            let _ = self.work.send(WorkMsg::Job(work));
        }
    }

    /// The worker spawned the job's program.
    pub(crate) fn started(
        &mut self,
        id: JobId,
        pid: u32,
        attempt: u32,
        spawned: Instant,
        waker: crate::sys::Waker,
    ) {
        if let Some(e) = self.jobs.get_mut(&id) {
            if matches!(e.phase, Phase::Staged) {
                // Released outside procman (`scontrol release`): it runs, so it holds a slot,
                // even beyond the limit.
                self.staged -= 1;
                self.running += 1;
                if let Some(core) = &e.core {
                    core.held.store(false, AtomicOrdering::SeqCst);
                }
                log::warn!("job {id} started while procman held it back for the job limit");
            }
            e.phase = Phase::Running { spawned, waker };
            if let Some(r) = e.live_record() {
                r.status = JobStatus::Running;
                r.pid = Some(pid);
                r.started_at = Some(SystemTime::now());
                r.attempts = attempt;
                r.sampled = None;
            }
            if let Some(live) = &mut e.live {
                live.restart();
            }
            self.events.emit(|| Event::Started { id, pid, attempt });
        }
    }

    /// The backend submitted the attempt to a cluster's queue as `cluster_id` (Slurm): the job
    /// is `Queued`, still in its `Admitted` phase (it holds its slot; a kill sets its flag,
    /// which the backend reads), until [`State::started`] makes it `Running`.
    pub(crate) fn queued(&mut self, id: JobId, cluster_id: u32, task: Option<u32>, attempt: u32) {
        if let Some(e) = self.jobs.get_mut(&id) {
            if !matches!(e.phase, Phase::Admitted | Phase::Staged) {
                return;
            }
            if let Some(r) = e.live_record() {
                r.status = JobStatus::Queued;
                r.pid = Some(cluster_id);
                r.array_task = task;
                r.attempts = attempt;
            }
            self.events.emit(|| Event::Submitted {
                id,
                cluster_id,
                task,
                attempt,
            });
        }
    }

    /// The backend reports the job's raw state (see [`JobRecord::backend_state`]).
    pub(crate) fn set_backend_state(&mut self, id: JobId, state: &str) {
        if let Some(r) = self.jobs.get_mut(&id).and_then(|e| e.live_record()) {
            if !r.status.is_final() && r.backend_state.as_deref() != Some(state) {
                r.backend_state = Some(state.to_owned());
            }
        }
    }

    /// The worker is done with an attempt: release its slot, then retry or finalize.
    /// Returns when the retry should be re-queued, if it waits for a backoff.
    pub(crate) fn end_attempt(
        &mut self,
        id: JobId,
        attempt: u32,
        end: AttemptEnd,
    ) -> Option<Instant> {
        let e = self.jobs.get_mut(&id)?;
        match e.phase {
            Phase::Admitted | Phase::Running { .. } => self.running -= 1,
            Phase::Staged => {
                self.staged -= 1;
                if let Some(core) = &e.core {
                    core.held.store(false, AtomicOrdering::SeqCst);
                }
            }
            _ => return None,
        }
        self.used_cpus -= e.cpus();
        self.used_memory -= e.memory();
        // Holds no slot from here on (the phase is set again below); should this panic before
        // then, `abandon` does not release the slot twice.
        e.phase = Phase::RetryWait;
        #[cfg(test)]
        if let Some(core) = &e.core {
            crate::fault::hit(&core.args, crate::fault::SCHEDULER);
        }
        let killed = e.kill.is_some();
        // Live: its phase was checked above.
        let r = e.live_record()?;
        // An attempt counts once it was tried (spawned, or its spawn failed); one cancelled
        // before its spawn does not.
        if !matches!(end, AttemptEnd::NotStarted) {
            r.attempts = r.attempts.max(attempt);
        }
        let mut outcome = r.outcome.take().map(|o| *o).unwrap_or_default();
        let status = record_end(&mut outcome, &mut r.attempts, attempt, end, killed);
        let retry = e.retry;
        let retryable = match status {
            JobStatus::SpawnFailed => retry.on.spawn_failure,
            JobStatus::Failed => retry.on.nonzero_exit,
            JobStatus::Crashed => retry.on.crash,
            JobStatus::TimedOut => retry.on.timeout,
            _ => false,
        };
        if retryable && !killed && !self.cancelling && attempt <= retry.count {
            if let Some(r) = e.live_record() {
                r.status = JobStatus::Pending;
                r.outcome = Some(Box::new(outcome));
            }
            e.phase = Phase::RetryWait;
            self.events.emit(|| Event::Retrying {
                id,
                attempt,
                status,
            });
            log::info!("job {id}: attempt {attempt} ended as {status}; retrying");
            if retry.backoff.is_zero() {
                self.make_ready(id);
                return None;
            }
            // A backoff too long for the clock: the retry is never due, and the job waits
            // until it is killed or a cancelling shutdown ends it.
            let at = deadline::from_now(retry.backoff);
            if let Some(at) = at {
                self.timers.push(Reverse((at, id)));
            }
            self.pump();
            return at;
        }
        self.finalize(id, |r| {
            r.status = status;
            outcome.apply(r);
        });
        self.pump();
        None
    }

    /// After `end_attempt` panicked (a bug; the panic rule, DESIGN.md): releases the job's
    /// slot if it still holds one and, unless it became final, ends it as `InternalError`
    /// with its handler run once as on every path.
    pub(crate) fn abandon(&mut self, id: JobId, msg: String) {
        let Some(e) = self.jobs.get_mut(&id) else {
            return;
        };
        match e.phase {
            Phase::Admitted | Phase::Running { .. } | Phase::Staged => {
                if matches!(e.phase, Phase::Staged) {
                    self.staged -= 1;
                } else {
                    self.running -= 1;
                }
                self.used_cpus -= e.cpus();
                self.used_memory -= e.memory();
            }
            Phase::Final => return,
            _ => {}
        }
        self.finalize(id, |r| {
            r.status = JobStatus::InternalError;
            r.error = Some(msg);
        });
        self.pump();
    }

    /// A retry's backoff passed.
    fn retry_due(&mut self, id: JobId) {
        if matches!(self.jobs.get(&id).map(|e| &e.phase), Some(Phase::RetryWait)) {
            self.make_ready(id);
        }
    }

    /// After the timer thread panicked: a job waiting for its backoff with no timer left for it
    /// (the panic came between taking its timer and queueing it) is queued now, so no retry
    /// is lost. Others keep their timers.
    pub(crate) fn requeue_orphaned_retries(&mut self) {
        let timed: std::collections::HashSet<JobId> =
            self.timers.iter().map(|Reverse((_, id))| *id).collect();
        let orphans: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(id, e)| matches!(e.phase, Phase::RetryWait) && !timed.contains(id))
            .map(|(&id, _)| id)
            .collect();
        for id in orphans {
            log::error!("job {id}: its retry timer was lost in a panic; retrying now");
            self.make_ready(id);
        }
    }

    /// Makes the job final, hands its completion to the dispatcher, and settles the jobs that
    /// run after it (cascading failures down the graph).
    fn finalize(&mut self, id: JobId, set: impl FnOnce(&mut JobRecord)) {
        let mut stack = vec![];
        let mut released = false;
        if let Some(e) = self.jobs.get_mut(&id) {
            e.set_final(set);
            stack.extend(self.finish_one(id));
        }
        while let Some((dep, parent, failed, status)) = stack.pop() {
            if failed {
                let Some(e) = self.jobs.get_mut(&dep) else {
                    continue;
                };
                if !matches!(e.phase, Phase::Waiting(_)) {
                    continue;
                }
                e.set_final(|r| {
                    r.status = JobStatus::DependencyFailed;
                    r.error = Some(format!(
                        "job {parent}, which it runs after, ended as {status}"
                    ));
                });
                stack.extend(self.finish_one(dep));
            } else if let Some(e) = self.jobs.get_mut(&dep) {
                if let Phase::Waiting(n) = &mut e.phase {
                    *n -= 1;
                    if *n == 0 {
                        self.enqueue(dep);
                        released = true;
                    }
                }
            }
        }
        // Only after every released job is queued: they start by priority, not release order.
        if released {
            self.pump();
        }
    }

    /// Finalizes one job whose status is set; returns its dependents to settle:
    /// (dependent, this job, whether this job failed, this job's status).
    fn finish_one(&mut self, id: JobId) -> Vec<(JobId, JobId, bool, JobStatus)> {
        let e = self.jobs.get_mut(&id).expect("finalizing a known job");
        debug_assert!(e.status().is_final());
        e.phase = Phase::Final;
        e.live = None;
        // Its core was dropped, its identity moved to the record, as it became final
        // (`Entry::set_final`, called by `finalize` before this).
        let now = SystemTime::now();
        e.set_final(|r| r.finished_at = Some(now));
        self.live -= 1;
        self.handlers_pending += 1;
        let record = e.record();
        let status = record.status;
        let handler = e.handler.take();
        let deps = std::mem::take(&mut e.dependents);
        if !self.events.is_empty() {
            let r = record.clone();
            self.events.emit(move || Event::Finished(Box::new(r)));
        }
        // Success at debug; any other end (a failure, a crash, a timeout, a kill) at info.
        let level = if status.is_success() {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        let line = log::log_enabled!(level).then(|| record.describe_end());
        let _ = self.done.send(DispatchMsg::Done(Done {
            id,
            handler,
            record,
        }));
        // The host's logger runs only once the completion is on its way, and a logger that
        // panics is contained here: it can neither keep the handler from running nor cut off
        // the dependants' settling that follows (the panic rule).
        if let Some(end) = line {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                log::log!(level, "job {id} ended: {end}");
            }));
        }
        let failed = !status.is_success();
        deps.into_iter().map(|d| (d, id, failed, status)).collect()
    }

    /// `kill_process`: see [`KillOutcome`].
    fn kill(&mut self, id: JobId, reason: KillReason) -> Option<KillOutcome> {
        let e = self.jobs.get_mut(&id)?;
        match &e.phase {
            Phase::Waiting(_) | Phase::Ready | Phase::RetryWait => {
                e.kill = Some(reason);
                self.finalize(id, |r| r.status = JobStatus::Cancelled);
                Some(KillOutcome::Cancelled)
            }
            Phase::Admitted | Phase::Staged | Phase::Running { .. } if e.kill.is_none() => {
                e.kill = Some(reason);
                if let Some(core) = &e.core {
                    core.kill_requested.store(true, AtomicOrdering::SeqCst);
                }
                if let Phase::Running { waker, .. } = &e.phase {
                    waker.wake();
                }
                log::info!("job {id}: kill requested ({reason:?})");
                Some(KillOutcome::Killing)
            }
            _ => Some(KillOutcome::AlreadyFinished),
        }
    }

    /// The dispatcher is done with the job's handler.
    pub(crate) fn handler_returned(&mut self, id: JobId, panic: Option<String>) {
        self.handlers_pending -= 1;
        if let Some(e) = self.jobs.get_mut(&id) {
            e.handler_done = true;
            if let Rec::Final(r) = &mut e.rec {
                r.handler_error = panic;
            }
            if e.deleted {
                self.jobs.remove(&id);
            } else {
                self.retain.evictable(id, &mut self.jobs);
            }
        }
    }

    /// Queued jobs that no longer fit the capacities fail (used when capacities shrink).
    fn fail_unfittable(&mut self) {
        let (cpu, mem) = (self.cpu_capacity, self.memory_capacity);
        let victims: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, e)| {
                matches!(e.phase, Phase::Waiting(_) | Phase::Ready | Phase::RetryWait)
                    && (e.cpus() > cpu || e.memory() > mem)
            })
            .map(|(&id, _)| id)
            .collect();
        for id in victims {
            self.finalize(id, |r| {
                r.status = JobStatus::SpawnFailed;
                r.error = Some(format!(
                    "the manager's capacity was lowered to {cpu} CPUs and {mem} bytes, below what the job declares"
                ));
            });
        }
    }

    /// Cancels every job not started yet and asks every running one to die.
    fn cancel_all(&mut self) {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, e)| !matches!(e.phase, Phase::Final))
            .map(|(&id, _)| id)
            .collect();
        for id in ids {
            self.kill(id, KillReason::Shutdown);
        }
    }
}

/// Writes how an attempt ended into the job's record; returns the status it ended with
/// (before any retry). `killed`: a kill was requested, which wins over how the program ended.
fn record_end(
    r: &mut Outcome,
    attempts: &mut u32,
    attempt: u32,
    end: AttemptEnd,
    killed: bool,
) -> JobStatus {
    match end {
        AttemptEnd::NotStarted => {
            r.error = None;
            JobStatus::Cancelled
        }
        AttemptEnd::SpawnFailed(msg) => {
            *attempts = attempt;
            r.error = Some(msg);
            r.exit_code = None;
            r.signal = None;
            r.usage = None;
            JobStatus::SpawnFailed
        }
        AttemptEnd::Internal(msg) => {
            r.error = Some(msg);
            r.exit_code = None;
            r.signal = None;
            r.usage = None;
            JobStatus::InternalError
        }
        AttemptEnd::Exited {
            exit,
            usage,
            timed_out,
            error,
        } => {
            r.exit_code = exit.and_then(|x| x.code);
            r.signal = exit.and_then(|x| x.signal);
            r.usage = Some(usage);
            r.error = error;
            if killed {
                JobStatus::Killed
            } else if timed_out {
                JobStatus::TimedOut
            } else {
                match exit {
                    Some(Exit { code: Some(0), .. }) => JobStatus::Finished,
                    Some(Exit { code: Some(_), .. }) => JobStatus::Failed,
                    Some(Exit {
                        signal: Some(_), ..
                    }) => JobStatus::Crashed,
                    // The exit status was lost (reported in `error`).
                    _ => JobStatus::Failed,
                }
            }
        }
    }
}
