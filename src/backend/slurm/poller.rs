//! The poller: one thread per manager follows every Slurm job of the manager in flight, queued
//! or running, without a worker thread per job. One `squeue` per round asks about all of them
//! (at an interval that drops to the minimum on any change and doubles up to the maximum while
//! nothing happens); between rounds it ticks every [`TICK`] to run each job's TERM-grace-KILL
//! step machine (kill requests, timeouts). It reports each job's states to the engine and ends
//! each attempt exactly once, through the job's [`Later`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::array::SlurmId;
use super::ending::{
    exit_from_pair, has_started, is_final, kept_state, nodes_given, parse_squeue, Ending, Row,
    SQUEUE_FORMAT, SQUEUE_LEGACY_FORMAT,
};
use super::follow::{cancel, cancel_all, judge, one_line, release, Scancel};
use super::steps::{reaped, Step, StepSignals};
use super::submit::MissingNote;
use super::tail::Tail;
use super::usage;
use super::SlurmOptions;
use crate::backend::terminate::Termination;
use crate::backend::Later;
use crate::deadline;
use crate::error::panic_message;
use crate::job::{AttemptEnd, JobCore};
use crate::record::ResourceUsage;
use crate::sys::{Exit, Waker};

/// How often the accounting is asked again about ended jobs it did not know yet (they wait up
/// to [`SlurmOptions::accounting_wait`]).
const ACCOUNT_RETRY: Duration = Duration::from_millis(300);

/// How often the poller looks at its jobs' kill requests and timeouts between `squeue` rounds:
/// a kill is acted on within this.
const TICK: Duration = Duration::from_millis(100);

pub(super) enum Ctl {
    /// Follow this submitted job (handed over by the worker that submitted it).
    Track(Box<Handover>),
    /// Follow this job step (its `srun` runs).
    TrackStep(Box<StepHandover>),
    Stop,
}

/// A job step a worker started, handed to the poller.
pub(super) struct StepHandover {
    pub(super) step: Step,
    pub(super) core: Arc<JobCore>,
    pub(super) later: Later,
    pub(super) started: Instant,
    /// The input bytes' file, removed when the attempt ends.
    pub(super) stdin_file: Option<PathBuf>,
    /// Where the script notes a program missing on the node.
    pub(super) missing: MissingNote,
    /// The follower of its output, when it is observed.
    pub(super) tail: Option<Tail>,
}

/// A job step the poller follows.
struct StepTracked {
    h: StepHandover,
    term: Termination,
}

/// How often the poller looks for the end of its job steps' `srun`s (a `waitpid` each).
const STEP_TICK: Duration = Duration::from_millis(1);

/// A job a worker submitted, handed to the poller.
pub(super) struct Handover {
    /// The Slurm job, or the array task.
    pub(super) job: SlurmId,
    pub(super) core: Arc<JobCore>,
    pub(super) later: Later,
    pub(super) submitted_at: Instant,
    /// The input bytes' file, removed when the attempt ends.
    pub(super) stdin_file: Option<PathBuf>,
    /// Where the batch script notes a program missing on the node.
    pub(super) missing: MissingNote,
    /// The follower of its output, when it is observed (boxed: most jobs have none, and
    /// every job in flight holds this field).
    pub(super) tail: Option<Box<Tail>>,
    /// Submitted with `--hold` (`Submission::held`): released when `JobCore::held` clears.
    pub(super) held: bool,
}

/// An ended job waiting for the accounting's figures: its id, its attempt's end, the follower
/// of its output, and when it ended.
type Unaccounted = (SlurmId, Later, AttemptEnd, Option<Tail>, Instant);

/// An attempt whose end is known, waiting for the last of its observed output (`tail.rs`).
struct Draining {
    tail: Tail,
    later: Later,
    end: AttemptEnd,
}

impl Tracked {
    /// The job runs (squeue says so, or it wrote output): it reads `Running` and its timeout
    /// counts from now. Once.
    fn started(&mut self, job: SlurmId) {
        if self.run_start.is_some() {
            return;
        }
        let at = Instant::now();
        self.run_start = Some(at);
        self.term.start_clock(&self.h.core, at);
        if let Some(report) = self.h.later.report() {
            report.started(
                self.h.core.id,
                job.job,
                self.h.later.attempt(),
                at,
                Waker::none(),
            );
        }
    }
}

/// A job the poller follows (boxed in [`Poller::jobs`]: a 10,000-job array in flight should
/// cost little memory per job, and a map of large values keeps its spare slots as large).
struct Tracked {
    h: Handover,
    /// Slurm's last state seen (no allocation for the states Slurm has: [`kept_state`]).
    state: Cow<'static, str>,
    term: Termination,
    /// When the poller first saw it running.
    run_start: Option<Instant>,
}

pub(super) struct Poller {
    opts: Arc<SlurmOptions>,
    rx: Receiver<Ctl>,
    jobs: HashMap<SlurmId, Box<Tracked>>,
    steps: Vec<StepTracked>,
    /// Ended steps waiting for their CPU times and peak memory (`usage.rs`).
    step_usage: usage::StepUsage,
    /// Jobs that ended in this round, ended together by [`Poller::flush_ended`].
    ended: Vec<(SlurmId, Later, AttemptEnd, Option<Tail>)>,
    /// Ended attempts whose observers still get their last output.
    draining: Vec<Draining>,
    /// The buffer the followers of observed jobs read into (allocated with the first).
    buf: Vec<u8>,
    /// Ended jobs whose figures the accounting did not have yet, with when they ended: asked
    /// again every [`ACCOUNT_RETRY`], ended without figures after [`SlurmOptions::accounting_wait`].
    unaccounted: Vec<Unaccounted>,
    unaccounted_asked: Option<Instant>,
    /// Slurm's accounting answers (false once `sacct` said it is disabled).
    accounting: bool,
    legacy: bool,
    last_warning: Option<Instant>,
    /// Jobs submitted with `--hold` and not released yet ([`Poller::release_due`]).
    held: Vec<SlurmId>,
    /// After a failed `scontrol release`: not before this again.
    release_after: Option<Instant>,
}

impl Poller {
    /// A poller of `opts`'s cluster, told what to follow through `rx`; see [`Poller::run`].
    pub(super) fn new(opts: Arc<SlurmOptions>, rx: Receiver<Ctl>) -> Poller {
        Poller {
            opts,
            rx,
            jobs: HashMap::new(),
            steps: Vec::new(),
            step_usage: usage::StepUsage::default(),
            ended: Vec::new(),
            draining: Vec::new(),
            buf: Vec::new(),
            unaccounted: Vec::new(),
            unaccounted_asked: None,
            accounting: true,
            legacy: false,
            last_warning: None,
            held: Vec::new(),
            release_after: None,
        }
    }

    /// The poller thread's body: runs until told to stop (or every sender is gone). Jobs still
    /// followed then (none after a shutdown, which waits for every job) are cancelled and end
    /// as internal errors.
    pub(super) fn run(mut self) {
        let (min, max) = (self.opts.poll_min, self.opts.poll_max);
        let mut interval = min;
        let mut next_poll: Option<Instant> = None;
        loop {
            let tick = if !self.steps.is_empty() || self.step_usage.busy() {
                deadline::from_now(STEP_TICK)
            } else if !self.jobs.is_empty() || !self.unaccounted.is_empty() {
                deadline::from_now(TICK)
            } else {
                None
            };
            // Ended jobs waiting for their last output are looked at when due.
            let tick = self
                .draining
                .iter()
                .map(|d| d.tail.next())
                .min()
                .map_or(tick, |at| deadline::earliest(tick, Some(at)));
            let wake = deadline::earliest(next_poll, tick);
            let msg = match wake {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self
                    .rx
                    .recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            // An interval too long for the clock: no poll is due ("never").
            let soon = deadline::from_now(min);
            match msg {
                Ok(Ctl::Track(h)) => {
                    let term = Termination::new();
                    let t = Box::new(Tracked {
                        h: *h,
                        state: Cow::Borrowed("PENDING"),
                        term,
                        run_start: None,
                    });
                    if t.h.held {
                        self.held.push(t.h.job);
                    }
                    self.jobs.insert(t.h.job, t);
                    interval = min;
                    next_poll = deadline::earliest(next_poll, soon);
                    continue;
                }
                Ok(Ctl::TrackStep(h)) => {
                    let term = Termination::running_since(&h.core, h.started);
                    self.steps.push(StepTracked { h: *h, term });
                    continue;
                }
                Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let (sent, changed) = match catch_unwind(AssertUnwindSafe(|| {
                self.follow_steps();
                self.step_usage.step(&self.opts, &mut self.accounting);
                for (later, end, tail) in self.step_usage.take_done() {
                    self.end_attempt(later, end, tail);
                }
                self.follow_output();
                let sent = self.terminate_due();
                let due = next_poll.is_some_and(|at| Instant::now() >= at);
                let changed = due && self.round();
                self.flush_ended();
                // After the ends: the slots they freed go to held jobs in this tick.
                let sent = self.release_due() | sent;
                (sent, changed)
            })) {
                Ok(r) => r,
                Err(p) => {
                    self.panicked(&*p);
                    (false, true)
                }
            };
            if sent || changed {
                interval = min;
            } else if next_poll.is_some_and(|at| Instant::now() >= at) {
                interval = interval.saturating_mul(2).min(max);
            } else {
                continue;
            }
            next_poll = if self.jobs.is_empty() && self.steps.is_empty() {
                None
            } else {
                deadline::from_now(interval)
            };
        }
        self.abandon_all("internal error: procman's Slurm poller stopped while following it");
    }

    /// The panic rule (DESIGN.md): a round that panics ends every job it followed as an
    /// internal error (each is cancelled); retrying the round could panic for ever. The poller
    /// goes on with the jobs handed to it after.
    fn panicked(&mut self, p: &(dyn std::any::Any + Send)) {
        let msg = format!(
            "internal error: the Slurm poller thread panicked: {}",
            panic_message(p)
        );
        log::error!(
            "{msg}; ending the {} jobs it followed",
            self.jobs.len() + self.steps.len()
        );
        self.abandon_all(&msg);
    }

    /// Cancels every followed job and ends it as an internal error saying `msg`.
    fn abandon_all(&mut self, msg: &str) {
        // Those whose end is known end with it.
        for (_, later, end, _) in self.ended.drain(..) {
            later.end(end);
        }
        for d in self.draining.drain(..) {
            d.later.end(d.end);
        }
        for (_, later, end, _, _) in self.unaccounted.drain(..) {
            later.end(end);
        }
        self.step_usage.abandon();
        for (job, t) in self.jobs.drain() {
            cancel(&self.opts, job, true);
            cleanup(&t.h);
            t.h.later.end(AttemptEnd::Internal(msg.to_owned()));
        }
        for mut t in self.steps.drain(..) {
            let child = &mut t.h.step.child;
            let _ = crate::sys::signal_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            t.h.step.cleanup();
            if let Some(p) = &t.h.stdin_file {
                let _ = std::fs::remove_file(p);
            }
            t.h.missing.remove();
            t.h.later.end(AttemptEnd::Internal(msg.to_owned()));
        }
    }

    /// Runs every step's TERM-grace-KILL machine, and ends the steps whose `srun` exited.
    fn follow_steps(&mut self) {
        let mut i = 0;
        while i < self.steps.len() {
            let t = &mut self.steps[i];
            let Some((status, at)) = reaped(&mut t.h.step) else {
                let mut signals = StepSignals {
                    opts: &self.opts,
                    step: &t.h.step,
                };
                let _ = t.term.step(&t.h.core, &mut signals);
                i += 1;
                continue;
            };
            let t = self.steps.swap_remove(i);
            let e = t.h.step.ended(status);
            if let Some(p) = &t.h.stdin_file {
                let _ = std::fs::remove_file(p);
            }
            let wall = at.saturating_duration_since(t.h.started);
            let end = match e.cannot_start {
                Some(why) => AttemptEnd::SpawnFailed(why),
                None => AttemptEnd::Exited {
                    exit: e.exit,
                    usage: ResourceUsage {
                        wall,
                        ..ResourceUsage::default()
                    },
                    timed_out: t.term.timed_out(),
                    error: e.error,
                },
            };
            let what = format!("job step {}", t.h.step.name);
            let end = missing_program(end, &t.h.missing.path(), &t.h.core, &what);
            match e.step_id {
                // Long enough to wait for one sacct (usage.rs).
                Some(id) if self.accounting && self.step_usage.worth(wall) => {
                    self.step_usage
                        .wait(&self.opts, id, t.h.later, end, t.h.tail);
                }
                _ => self.end_attempt(t.h.later, end, t.h.tail),
            }
        }
    }

    /// Ends the attempt, once its observers have had the last of its output (`tail.rs`).
    fn end_attempt(&mut self, later: Later, end: AttemptEnd, tail: Option<Tail>) {
        match tail {
            Some(mut tail) => {
                tail.ended(self.opts.output_lag);
                self.draining.push(Draining { tail, later, end });
            }
            None => later.end(end),
        }
    }

    /// Reads the observed jobs' files when due (`tail.rs`), and ends the ended attempts whose
    /// last output was handed on.
    fn follow_output(&mut self) {
        let now = Instant::now();
        let buf = &mut self.buf;
        for (&job, t) in &mut self.jobs {
            let Some(tail) = t.h.tail.as_mut().filter(|tail| tail.due(now)) else {
                continue;
            };
            // Output before squeue said RUNNING: it runs (its progress counts, as a running
            // job's only does).
            if tail.look(&t.h.later, buffer(buf)) {
                t.started(job);
            }
            if let Some(tail) = &t.h.tail {
                tail.report_progress(&t.h.later);
            }
        }
        for t in &mut self.steps {
            if let Some(tail) = t.h.tail.as_mut().filter(|tail| tail.due(now)) {
                tail.look(&t.h.later, buffer(buf));
                tail.report_progress(&t.h.later);
            }
        }
        let mut i = 0;
        while i < self.draining.len() {
            let d = &mut self.draining[i];
            if !d.tail.due(now) || !d.tail.drained(&d.later, buffer(buf)) {
                i += 1;
                continue;
            }
            let d = self.draining.swap_remove(i);
            d.later.end(d.tail.into_end(d.end));
        }
    }

    /// Runs every job's step machine: TERM, KILL or the cancel of a pending job when due.
    /// Ends a job whose cancellation Slurm did not confirm in time. True if anything was sent.
    fn terminate_due(&mut self) -> bool {
        let now = Instant::now();
        let mut sent = false;
        let mut unconfirmed = Vec::new();
        let mut unstarted = Vec::new();
        for (&job, t) in &mut self.jobs {
            let mut signals = Scancel {
                opts: &self.opts,
                job,
                sent: false,
                unstarted: &mut unstarted,
            };
            let _ = t.term.step(&t.h.core, &mut signals);
            sent |= signals.sent;
            // A confirmation time too long for the clock is never over.
            let over = t
                .term
                .killed_at()
                .and_then(|c| deadline::after(c, self.opts.confirm));
            if over.is_some_and(|c| now >= c) {
                unconfirmed.push(job);
            }
        }
        cancel_all(&self.opts, &unstarted);
        for job in unconfirmed {
            let state = self
                .jobs
                .get(&job)
                .map_or(Cow::Borrowed(""), |t| t.state.clone());
            let why = format!(
                "Slurm did not report the end of job {job} within {:?} of its cancellation",
                self.opts.confirm
            );
            self.end(job, Ending::lost(&state, why));
        }
        sent
    }

    /// One query for every tracked job; true if anything changed.
    fn round(&mut self) -> bool {
        let mut ids: Vec<SlurmId> = self.jobs.keys().copied().collect();
        ids.sort_unstable();
        let mut changed = false;
        for chunk in ids.chunks(200) {
            let rows = match self.query(chunk) {
                Ok(r) => r,
                Err(e) => {
                    // The controller may be restarting: keep the jobs and try again later.
                    self.warn(&format!("cannot ask Slurm about procman's jobs: {e}"));
                    continue;
                }
            };
            for &job in chunk {
                match rows.get(&job) {
                    Some(row) => changed |= self.update(job, row),
                    None => {
                        let ending = self.gone(job);
                        self.end(job, ending);
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    fn update(&mut self, job: SlurmId, row: &Row) -> bool {
        #[cfg(test)]
        crate::fault::hit_slurm_state(&row.state);
        if is_final(&row.state) {
            let exit = match row.exit {
                Some(x) => Some(x),
                None => self.scontrol_exit(job),
            };
            self.end(
                job,
                Ending {
                    state: row.state.clone(),
                    reason: row.reason.clone(),
                    exit,
                    ran: nodes_given(&row.nodes),
                    lost: None,
                },
            );
            return true;
        }
        let Some(t) = self.jobs.get_mut(&job) else {
            return false;
        };
        if t.state == row.state {
            return false;
        }
        t.state = kept_state(&row.state);
        let Some(report) = t.h.later.report() else {
            return true;
        };
        report.set_backend_state(t.h.core.id, &row.state);
        if has_started(&row.state) {
            t.started(job);
        }
        true
    }

    /// Ends the job's attempt with Slurm's ending, and forgets the job.
    fn end(&mut self, job: SlurmId, ending: Ending) {
        let Some(t) = self.jobs.remove(&job) else {
            return;
        };
        let id = t.h.core.id;
        if let Some(report) = t.h.later.report() {
            // A job that ran between two rounds was never seen running: it started.
            if t.run_start.is_none() && ending.ran {
                let at = Instant::now();
                report.started(id, job.job, t.h.later.attempt(), at, Waker::none());
            }
            report.set_backend_state(id, &ending.state);
        }
        let end = judge(
            &t.h.core,
            job,
            ending,
            t.run_start,
            t.h.submitted_at,
            t.term.timed_out(),
        );
        let end = missing_program(
            end,
            &t.h.missing.path(),
            &t.h.core,
            &format!("Slurm job {job}"),
        );
        cleanup(&t.h);
        // Ended with the others of this round, after one question to the accounting.
        self.ended
            .push((job, t.h.later, end, t.h.tail.map(|tail| *tail)));
    }

    /// Logs a warning about Slurm not answering, at most once a minute.
    fn warn(&mut self, msg: &str) {
        let now = Instant::now();
        if self.last_warning.map_or(true, |t| {
            now.saturating_duration_since(t) > Duration::from_secs(60)
        }) {
            log::warn!("{msg}");
            self.last_warning = Some(now);
        }
    }

    /// Releases the held jobs (submitted with `--hold`: staged by the scheduler beyond the job
    /// limit) whose slot came (`JobCore::held` cleared): one `scontrol release` for all of
    /// them. A failure (the controller down) is logged and tried again a second later. True
    /// when some were released.
    fn release_due(&mut self) -> bool {
        if self.held.is_empty()
            || self
                .release_after
                .is_some_and(|after| Instant::now() < after)
        {
            return false;
        }
        let jobs = &self.jobs;
        // Those that ended (or were never handed over) leave the list.
        self.held.retain(|id| jobs.contains_key(id));
        let (due, still): (Vec<SlurmId>, Vec<SlurmId>) = self.held.iter().partition(|id| {
            jobs.get(id)
                .is_some_and(|t| !t.h.core.held.load(std::sync::atomic::Ordering::SeqCst))
        });
        if due.is_empty() {
            return false;
        }
        match release(&self.opts, &due) {
            Ok(()) => {
                log::debug!("released {} held Slurm jobs", due.len());
                self.held = still;
                self.release_after = None;
                true
            }
            Err(msg) => {
                self.warn(&format!("{msg}; trying again"));
                self.release_after = deadline::from_now(Duration::from_secs(1));
                false
            }
        }
    }

    /// Ends the attempts that ended in this round, with CPU times and peak memory from
    /// Slurm's accounting when there is one (one `sacct` for all of them). A job the accounting
    /// does not know yet (it records a job's start and end a moment after the controller, an
    /// array task's own record first of all), or that a failing `sacct` could not tell, waits
    /// for it, up to [`SlurmOptions::accounting_wait`].
    fn flush_ended(&mut self) {
        let now = Instant::now();
        let mut ended: Vec<Unaccounted> = self
            .ended
            .drain(..)
            .map(|(j, l, e, t)| (j, l, e, t, now))
            .collect();
        let retry = self
            .unaccounted_asked
            .map_or(true, |t| now.saturating_duration_since(t) >= ACCOUNT_RETRY);
        if retry {
            ended.append(&mut self.unaccounted);
        }
        if ended.is_empty() {
            return;
        }
        let ran: Vec<SlurmId> = ended
            .iter()
            .filter(|(_, _, e, _, _)| matches!(e, AttemptEnd::Exited { .. }))
            .map(|(job, _, _, _, _)| *job)
            .collect();
        let mut accounted = HashMap::new();
        let mut asked = false;
        if self.accounting && !ran.is_empty() {
            self.unaccounted_asked = Some(now);
            match usage::query(&self.opts, &ran) {
                Ok(a) => {
                    accounted = a;
                    asked = true;
                }
                // A failure that may pass (slurmdbd restarting): asked again within the wait.
                Err(false) => asked = true,
                Err(true) => self.accounting = false,
            }
        }
        for (job, later, mut end, tail, since) in ended {
            let exited = matches!(end, AttemptEnd::Exited { .. });
            let waited = now.saturating_duration_since(since) >= self.opts.accounting_wait;
            match (&mut end, accounted.get(&job)) {
                // A line without CPU times: the accounting has the job's start, not its end yet.
                (AttemptEnd::Exited { usage, .. }, Some(a)) if a.user.is_some() || waited => {
                    a.fill(usage)
                }
                _ if asked && exited && !waited => {
                    self.unaccounted.push((job, later, end, tail, since));
                    continue;
                }
                _ => {}
            }
            self.end_attempt(later, end, tail);
        }
    }

    /// Runs squeue for these jobs. Jobs it does not list are missing from the map.
    fn query(&mut self, jobs: &[SlurmId]) -> Result<HashMap<SlurmId, Row>, String> {
        let list = jobs
            .iter()
            .map(SlurmId::to_string)
            .collect::<Vec<_>>()
            .join(",");
        loop {
            let (flag, format) = if self.legacy {
                ("-o", SQUEUE_LEGACY_FORMAT)
            } else {
                ("-O", SQUEUE_FORMAT)
            };
            let out = Command::new(&self.opts.squeue)
                // -r: an array's pending tasks one per line, as ARRAYID_TASK.
                .args(["-h", "-t", "all", "-j", &list, flag, format, "-r"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", self.opts.squeue.display()))?;
            if out.status.success() {
                return Ok(parse_squeue(&out.stdout, self.legacy));
            }
            let err = one_line(&out.stderr);
            if err.contains("Invalid job id") {
                // Every one of them is unknown (squeue lists the known ones otherwise).
                return Ok(HashMap::new());
            }
            if self.legacy || !err.to_ascii_lowercase().contains("format") {
                return Err(format!("squeue failed: {err}"));
            }
            log::info!("squeue cannot print exit codes ({err}); asking scontrol instead");
            self.legacy = true;
        }
    }

    /// Legacy squeue: the exit code of a finished job from `scontrol show job`.
    fn scontrol_exit(&self, job: SlurmId) -> Option<Exit> {
        let out = Command::new(&self.opts.scontrol)
            .args(["-o", "show", "job", &job.to_string()])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("ExitCode="))
            .and_then(exit_from_pair)
    }

    /// squeue no longer knows the job (purged after `MinJobAge`, or lost): ask accounting.
    fn gone(&self, job: SlurmId) -> Ending {
        // A pending array task procman cancelled: Slurm drops it from its queue without a
        // record of its own (sacct has none either).
        if let Some(t) = self.jobs.get(&job).filter(|_| job.task.is_some()) {
            if t.run_start.is_none() && !has_started(&t.state) && t.term.killed_at().is_some() {
                return Ending::cancelled_pending();
            }
        }
        let last = self
            .jobs
            .get(&job)
            .map_or(Cow::Borrowed("PENDING"), |t| t.state.clone());
        let out = Command::new(&self.opts.sacct)
            .args(["-n", "-P", "-X", "-o", "State,ExitCode,NodeList", "-j"])
            .arg(job.to_string())
            .stdin(Stdio::null())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let mut f = text.lines().next().unwrap_or("").split('|');
                // "CANCELLED by 0" -> CANCELLED
                let state = f.next().and_then(|s| s.split_whitespace().next());
                match state {
                    Some(s) if is_final(s) => {
                        return Ending {
                            state: s.to_owned(),
                            reason: String::new(),
                            exit: f.next().and_then(exit_from_pair),
                            ran: f.next().is_some_and(nodes_given),
                            lost: None,
                        }
                    }
                    Some(s) => format!("sacct reports it as {s}"),
                    None => "sacct does not know it either".to_owned(),
                }
            }
            Ok(o) => format!("sacct: {}", one_line(&o.stderr)),
            Err(e) => format!("cannot run {}: {e}", self.opts.sacct.display()),
        };
        // A pending array task cancelled outside procman: Slurm drops it the same way, and it
        // is the one way a task that never ran leaves the queue without a record.
        let pending_task = job.task.is_some()
            && self
                .jobs
                .get(&job)
                .is_some_and(|t| t.run_start.is_none() && !has_started(&t.state));
        if pending_task {
            log::info!(
                "Slurm array task {job} left the queue while pending, with no record ({why}): \
                 taken as cancelled outside procman"
            );
            return Ending::cancelled_pending();
        }
        Ending::lost(
            &last,
            format!(
                "Slurm job {job} vanished from Slurm's view (squeue: Invalid job id; {why}); \
                 how it ended is unknown"
            ),
        )
    }
}

/// The followers' read buffer, allocated when first needed (never, without observed jobs).
fn buffer(buf: &mut Vec<u8>) -> &mut [u8] {
    if buf.is_empty() {
        buf.resize(64 * 1024, 0);
    }
    buf
}

/// Removes the attempt's input bytes' file and its missing-program note.
fn cleanup(h: &Handover) {
    if let Some(p) = &h.stdin_file {
        let _ = std::fs::remove_file(p);
    }
    h.missing.remove();
}

/// An exit with code 127 whose script noted the program missing on the node (`script.rs`) is
/// a failure to start, not the program's failure: `SpawnFailed`, naming the node.
fn missing_program(
    end: AttemptEnd,
    marker: &std::path::Path,
    core: &JobCore,
    what: &str,
) -> AttemptEnd {
    let Ok(node) = std::fs::read_to_string(marker) else {
        return end;
    };
    let _ = std::fs::remove_file(marker);
    match end {
        AttemptEnd::Exited {
            exit: Some(Exit {
                code: Some(127), ..
            }),
            ..
        } => AttemptEnd::SpawnFailed(format!(
            "cannot run {} on node {}: not found ({what})",
            std::path::Path::new(core.interpreter.as_ref().unwrap_or(&core.program)).display(),
            node.trim()
        )),
        other => other,
    }
}
