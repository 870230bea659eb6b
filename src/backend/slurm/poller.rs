//! The poller: one thread per manager follows every Slurm job of the manager in flight, queued
//! or running, without a worker thread per job. One `squeue` per round asks about all of them
//! (at an interval that drops to the minimum on any change and doubles up to the maximum while
//! nothing happens); between rounds it ticks every [`TICK`] to run each job's TERM-grace-KILL
//! step machine (kill requests, timeouts). It reports each job's states to the engine and ends
//! each attempt exactly once, through the job's [`Later`].

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::ending::{
    exit_from_pair, has_started, is_final, nodes_given, parse_squeue, Ending, Row, SQUEUE_FORMAT,
    SQUEUE_LEGACY_FORMAT,
};
use super::follow::{cancel, judge, one_line, Scancel};
use super::steps::{reaped, Step, StepSignals};
use super::usage;
use super::SlurmOptions;
use crate::backend::terminate::Termination;
use crate::backend::Later;
use crate::deadline;
use crate::error::panic_message;
use crate::job::{AttemptEnd, JobCore};
use crate::record::ResourceUsage;
use crate::sys::{Exit, Waker};

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
    pub(super) missing: PathBuf,
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
    pub(super) job: u32,
    pub(super) core: Arc<JobCore>,
    pub(super) later: Later,
    pub(super) submitted_at: Instant,
    /// The input bytes' file, removed when the attempt ends.
    pub(super) stdin_file: Option<PathBuf>,
    /// Where the batch script notes a program missing on the node.
    pub(super) missing: PathBuf,
}

/// A job the poller follows.
struct Tracked {
    h: Handover,
    /// Slurm's last state seen.
    state: String,
    term: Termination,
    /// When the poller first saw it running.
    run_start: Option<Instant>,
}

pub(super) struct Poller {
    opts: Arc<SlurmOptions>,
    rx: Receiver<Ctl>,
    jobs: HashMap<u32, Tracked>,
    steps: Vec<StepTracked>,
    /// Ended steps waiting for their CPU times and peak memory (`usage.rs`).
    step_usage: usage::StepUsage,
    /// Jobs that ended in this round, ended together by [`Poller::flush_ended`].
    ended: Vec<(u32, Later, AttemptEnd)>,
    /// Slurm's accounting answers (false once `sacct` said it is disabled).
    accounting: bool,
    legacy: bool,
    last_warning: Option<Instant>,
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
            accounting: true,
            legacy: false,
            last_warning: None,
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
            } else if !self.jobs.is_empty() {
                deadline::from_now(TICK)
            } else {
                None
            };
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
                    let term = Termination::new(&h.core);
                    let t = Tracked {
                        h: *h,
                        state: "PENDING".into(),
                        term,
                        run_start: None,
                    };
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
                let sent = self.terminate_due();
                let due = next_poll.is_some_and(|at| Instant::now() >= at);
                let changed = due && self.round();
                self.flush_ended();
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
        for (_, later, end) in self.ended.drain(..) {
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
            let _ = std::fs::remove_file(&t.h.missing);
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
            let end = missing_program(end, &t.h.missing, &t.h.core, &what);
            match e.step_id {
                // Long enough to wait for one sacct (usage.rs).
                Some(id) if self.accounting && self.step_usage.worth(wall) => {
                    self.step_usage.wait(id, t.h.later, end);
                }
                _ => t.h.later.end(end),
            }
        }
    }

    /// Runs every job's step machine: TERM, KILL or the cancel of a pending job when due.
    /// Ends a job whose cancellation Slurm did not confirm in time. True if anything was sent.
    fn terminate_due(&mut self) -> bool {
        let now = Instant::now();
        let mut sent = false;
        let mut unconfirmed = Vec::new();
        for (&job, t) in &mut self.jobs {
            let mut signals = Scancel {
                opts: &self.opts,
                job,
                sent: false,
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
        for job in unconfirmed {
            let state = self
                .jobs
                .get(&job)
                .map_or(String::new(), |t| t.state.clone());
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
        let mut ids: Vec<u32> = self.jobs.keys().copied().collect();
        ids.sort_unstable();
        let mut changed = false;
        for chunk in ids.chunks(200) {
            let rows = match self.query(chunk) {
                Ok(r) => r,
                Err(e) => {
                    // The controller may be restarting: keep the jobs and try again later.
                    let now = Instant::now();
                    if self
                        .last_warning
                        .map_or(true, |t| now - t > Duration::from_secs(60))
                    {
                        log::warn!("cannot ask Slurm about procman's jobs: {e}");
                        self.last_warning = Some(now);
                    }
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

    fn update(&mut self, job: u32, row: &Row) -> bool {
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
        t.state = row.state.clone();
        let Some(report) = t.h.later.report() else {
            return true;
        };
        let id = t.h.core.id;
        report.set_backend_state(id, &row.state);
        if t.run_start.is_none() && has_started(&row.state) {
            let at = Instant::now();
            t.run_start = Some(at);
            t.term.start_clock(&t.h.core, at);
            report.started(id, job, t.h.later.attempt(), at, Waker::none());
        }
        true
    }

    /// Ends the job's attempt with Slurm's ending, and forgets the job.
    fn end(&mut self, job: u32, ending: Ending) {
        let Some(t) = self.jobs.remove(&job) else {
            return;
        };
        let id = t.h.core.id;
        if let Some(report) = t.h.later.report() {
            // A job that ran between two rounds was never seen running: it started.
            if t.run_start.is_none() && ending.ran {
                report.started(id, job, t.h.later.attempt(), Instant::now(), Waker::none());
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
        let end = missing_program(end, &t.h.missing, &t.h.core, &format!("Slurm job {job}"));
        cleanup(&t.h);
        // Ended with the others of this round, after one question to the accounting.
        self.ended.push((job, t.h.later, end));
    }

    /// Ends the attempts that ended in this round, with CPU times and peak memory from
    /// Slurm's accounting when there is one (one `sacct` for all of them).
    fn flush_ended(&mut self) {
        if self.ended.is_empty() {
            return;
        }
        let ended = std::mem::take(&mut self.ended);
        let ran: Vec<u32> = ended
            .iter()
            .filter(|(_, _, e)| matches!(e, AttemptEnd::Exited { .. }))
            .map(|(job, _, _)| *job)
            .collect();
        let mut accounted = HashMap::new();
        if self.accounting && !ran.is_empty() {
            match usage::query(&self.opts, &ran) {
                Ok(a) => accounted = a,
                Err(gone) => self.accounting = !gone,
            }
        }
        for (job, later, mut end) in ended {
            if let (AttemptEnd::Exited { usage, .. }, Some(a)) = (&mut end, accounted.get(&job)) {
                a.fill(usage);
            }
            later.end(end);
        }
    }

    /// Runs squeue for these jobs. Jobs it does not list are missing from the map.
    fn query(&mut self, jobs: &[u32]) -> Result<HashMap<u32, Row>, String> {
        let list = jobs
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        loop {
            let (flag, format) = if self.legacy {
                ("-o", SQUEUE_LEGACY_FORMAT)
            } else {
                ("-O", SQUEUE_FORMAT)
            };
            let out = Command::new(&self.opts.squeue)
                .args(["-h", "-t", "all", "-j", &list, flag, format])
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
    fn scontrol_exit(&self, job: u32) -> Option<Exit> {
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
    fn gone(&self, job: u32) -> Ending {
        let last = self
            .jobs
            .get(&job)
            .map_or("PENDING".to_owned(), |t| t.state.clone());
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
        Ending::lost(
            &last,
            format!(
                "Slurm job {job} vanished from Slurm's view (squeue: Invalid job id; {why}); \
                 how it ended is unknown"
            ),
        )
    }
}

/// Removes the attempt's input bytes' file and its missing-program note.
fn cleanup(h: &Handover) {
    if let Some(p) = &h.stdin_file {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_file(&h.missing);
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
