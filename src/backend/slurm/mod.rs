//! The Slurm backend: each admitted attempt is submitted with `sbatch --parsable`, followed by
//! one poller thread shared by all of the manager's Slurm jobs, and ended with `scancel`.
//!
//! - *submit* ([`SlurmBackend::run_attempt`]): the worker thread writes a small batch script
//!   (`exec` of the program with every word shell-quoted) to `sbatch`'s standard input, with
//!   the log and error files as `--output`/`--error`, the input as `--input`, `--chdir`, the job
//!   name, declared CPUs and memory, partition, account and a whole-minute `--time` backstop.
//!   A refusal ends the attempt as `SpawnFailed` with Slurm's own message. The Slurm job id goes
//!   to [`Inner::started`] (it becomes the record's `pid`).
//! - *poll* ([`Poller`]): one `squeue -t all -j id,id,...` per round for every tracked job,
//!   at an interval that drops to the minimum on any change and doubles up to the maximum
//!   while nothing happens. A job squeue no longer knows is looked up with `sacct`; if that
//!   fails too it has vanished, and its attempt ends as `Failed` saying so.
//! - *cancel*: the worker waits for its job's reports in short slices, checking
//!   `JobCore::kill_requested` and the job's timeout (counted from when the poller first sees
//!   the job `RUNNING`). Then `scancel --signal=TERM --full ID`, and after the grace
//!   `scancel --signal=KILL --full --batch ID` plus `scancel ID`. A job still pending is just
//!   cancelled.
//!
//! See DESIGN.md, "Running jobs on Slurm", for the state mapping table and the measurements.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::{Backend, WorkerWaker};
use crate::backend::local::report_spawn_failure;
use crate::deadline;
use crate::engine::dispatch::panic_message;
use crate::engine::Inner;
use crate::job::{AttemptEnd, JobCore, Work};
use crate::output::{create_output_unless, FileId, Output};
use crate::record::ResourceUsage;
use crate::spec::{EnvEdit, Input};
use crate::sys::Exit;

/// How procman submits to and follows a Slurm cluster (see
/// [`Builder::slurm`](crate::Builder::slurm)).
///
/// ```
/// use procman::slurm::SlurmOptions;
/// use std::time::Duration;
///
/// let options = SlurmOptions::new()
///     .partition("short")
///     .account("ccp4")
///     .sbatch_arg("--qos=normal")
///     .poll_interval(Duration::from_millis(100), Duration::from_secs(2));
/// # drop(options);
/// ```
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    partition: Option<OsString>,
    account: Option<OsString>,
    extra: Vec<OsString>,
    poll_min: Duration,
    poll_max: Duration,
    confirm: Duration,
    sbatch: PathBuf,
    squeue: PathBuf,
    scancel: PathBuf,
    scontrol: PathBuf,
    sacct: PathBuf,
}

impl Default for SlurmOptions {
    fn default() -> SlurmOptions {
        SlurmOptions {
            partition: None,
            account: None,
            extra: Vec::new(),
            poll_min: Duration::from_millis(100),
            poll_max: Duration::from_secs(2),
            confirm: Duration::from_secs(60),
            sbatch: "sbatch".into(),
            squeue: "squeue".into(),
            scancel: "scancel".into(),
            scontrol: "scontrol".into(),
            sacct: "sacct".into(),
        }
    }
}

impl SlurmOptions {
    /// The defaults: Slurm's default partition and account, no extra `sbatch` arguments, a poll
    /// interval between 100 ms and 2 s, and the Slurm commands found in `PATH`.
    pub fn new() -> SlurmOptions {
        SlurmOptions::default()
    }

    /// Submits to this partition (`--partition`).
    pub fn partition(mut self, partition: impl AsRef<OsStr>) -> SlurmOptions {
        self.partition = Some(partition.as_ref().to_owned());
        self
    }

    /// Charges this account (`--account`).
    pub fn account(mut self, account: impl AsRef<OsStr>) -> SlurmOptions {
        self.account = Some(account.as_ref().to_owned());
        self
    }

    /// Appends one argument to every `sbatch` command line (for example `--qos=low`,
    /// `--constraint=avx2`, `--begin=now+60`). They come after procman's own options, so they
    /// override them.
    pub fn sbatch_arg(mut self, arg: impl AsRef<OsStr>) -> SlurmOptions {
        self.extra.push(arg.as_ref().to_owned());
        self
    }

    /// The bounds of the poller's adaptive interval (default 100 ms to 2 s): after any change
    /// it polls at `min`, and the interval doubles up to `max` while nothing changes. A job's
    /// timeout starts when the poller sees it running, so it can start up to `max` late.
    /// Both are kept between 10 ms and one hour: a longer interval would leave a
    /// job's end (and so its handler, and the manager's shutdown) unseen for that long.
    pub fn poll_interval(mut self, min: Duration, max: Duration) -> SlurmOptions {
        self.poll_min = min.clamp(Duration::from_millis(10), POLL_CAP);
        self.poll_max = max.clamp(self.poll_min, POLL_CAP);
        self
    }

    /// How long a worker waits for Slurm to report the end of a job it cancelled before it
    /// gives up and ends the attempt with an error (default 60 s; the job may then linger in
    /// Slurm). A time too long for the clock (`Duration::MAX`) never gives up.
    pub fn cancel_confirm_timeout(mut self, timeout: Duration) -> SlurmOptions {
        self.confirm = timeout;
        self
    }

    /// The `sbatch` program (default `sbatch`, looked up in `PATH`).
    pub fn sbatch_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.sbatch = path.as_ref().to_owned();
        self
    }

    /// The `squeue` program (default `squeue`).
    pub fn squeue_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.squeue = path.as_ref().to_owned();
        self
    }

    /// The `scancel` program (default `scancel`).
    pub fn scancel_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.scancel = path.as_ref().to_owned();
        self
    }

    /// The `scontrol` program (default `scontrol`; used only when `squeue` cannot print exit
    /// codes, before Slurm 20.11).
    pub fn scontrol_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.scontrol = path.as_ref().to_owned();
        self
    }

    /// The `sacct` program (default `sacct`; asked about jobs that `squeue` no longer knows).
    pub fn sacct_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.sacct = path.as_ref().to_owned();
        self
    }
}

// ---------------------------------------------------------------- the backend

/// Runs each attempt as a Slurm batch job. Owns the poller thread (started with the first job,
/// stopped by [`Backend::shutdown`] or when the backend is dropped).
pub(crate) struct SlurmBackend {
    opts: Arc<SlurmOptions>,
    poller: Mutex<Option<(Sender<Ctl>, JoinHandle<()>)>>,
}

impl SlurmBackend {
    pub(crate) fn new(opts: SlurmOptions) -> SlurmBackend {
        SlurmBackend {
            opts: Arc::new(opts),
            poller: Mutex::new(None),
        }
    }

    /// The poller's control channel, starting the poller if needed (again, should it have
    /// ended by a panic that escaped its round's catch).
    fn poller(&self) -> Result<Sender<Ctl>, String> {
        let mut p = self.poller.lock();
        if let Some((tx, t)) = &*p {
            if !t.is_finished() {
                return Ok(tx.clone());
            }
            log::error!("internal error: the Slurm poller thread ended; starting another");
        }
        let (tx, rx) = unbounded();
        let poller = Poller {
            opts: self.opts.clone(),
            rx,
            jobs: HashMap::new(),
            legacy: false,
            last_warning: None,
        };
        let t = thread::Builder::new()
            .name("procman-slurm-poll".into())
            .spawn(move || poller.run())
            .map_err(|e| format!("cannot create the Slurm poller thread: {e}"))?;
        *p = Some((tx.clone(), t));
        Ok(tx)
    }
}

impl Backend for SlurmBackend {
    fn run_attempt(&self, inner: &Inner, work: Work, waker: WorkerWaker) -> AttemptEnd {
        let core = &*work.core;
        if core.observer.is_some() {
            log::warn!(
                "job {}: output observers are not called for Slurm jobs; the output goes to the log files only",
                core.id
            );
        }
        let sub = match Submission::prepare(core, work.attempt, &self.opts) {
            Ok(s) => s,
            Err(msg) => {
                report_spawn_failure(core, None, &msg);
                return AttemptEnd::SpawnFailed(msg);
            }
        };
        let tracker = match self.poller() {
            Ok(t) => t,
            Err(msg) => {
                sub.cleanup();
                report_spawn_failure(core, None, &msg);
                return AttemptEnd::SpawnFailed(msg);
            }
        };
        let submitted = Instant::now();
        let job = match sub.submit(&self.opts) {
            Ok(j) => j,
            Err(msg) => {
                sub.cleanup();
                report_spawn_failure(core, None, &msg);
                return AttemptEnd::SpawnFailed(msg);
            }
        };
        log::debug!(
            "job {}: Slurm job {job} (attempt {})",
            core.id,
            work.attempt
        );
        inner.started(
            core.id,
            job,
            work.attempt,
            submitted,
            #[cfg(target_os = "linux")]
            waker,
        );
        #[cfg(not(target_os = "linux"))]
        let _ = waker;
        // Should this worker unwind from a panic before the job's end is known, the Slurm job
        // is cancelled (the panic rule, DESIGN.md).
        let mut guard = CancelOnDrop {
            opts: &self.opts,
            job,
            armed: true,
        };
        inner.set_backend_state(core.id, "PENDING");
        let (tx, rx) = unbounded();
        // If the poller is gone, `rx` reports a disconnect and `follow` handles it.
        let _ = tracker.send(Ctl::Track(job, tx));
        let end = follow(inner, core, job, &rx, &tracker, &self.opts, submitted);
        guard.armed = false;
        sub.cleanup();
        end
    }

    fn shutdown(&self) {
        if let Some((tx, t)) = self.poller.lock().take() {
            let _ = tx.send(Ctl::Stop);
            let _ = t.join();
        }
    }
}

/// Cancels a submitted Slurm job when dropped armed (a worker unwinding from a panic).
struct CancelOnDrop<'a> {
    opts: &'a SlurmOptions,
    job: u32,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            cancel(self.opts, self.job, true);
        }
    }
}

/// Waits for the job's end, ending it on a kill request or at its timeout.
fn follow(
    inner: &Inner,
    core: &JobCore,
    job: u32,
    rx: &Receiver<Report>,
    tracker: &Sender<Ctl>,
    opts: &SlurmOptions,
    submitted: Instant,
) -> AttemptEnd {
    const SLICE: Duration = Duration::from_millis(100);
    let mut run_start: Option<Instant> = None;
    let mut timeout_at: Option<Instant> = None;
    let mut timed_out = false;
    let mut term_at: Option<Instant> = None;
    let mut cancel_at: Option<Instant> = None;
    let mut state = String::from("PENDING");
    let ending = loop {
        let now = Instant::now();
        if term_at.is_none() && cancel_at.is_none() {
            let kill = core.kill_requested.load(Ordering::SeqCst);
            if !kill && timeout_at.is_some_and(|d| now >= d) {
                timed_out = true;
                log::info!("job {}: timed out; ending Slurm job {job}", core.id);
            }
            if kill || timed_out {
                if run_start.is_none() && !timed_out {
                    // Not seen running: nothing to end gracefully.
                    cancel(opts, job, false);
                    cancel_at = Some(now);
                } else if core.grace.is_zero() {
                    cancel(opts, job, true);
                    cancel_at = Some(now);
                } else {
                    scancel(opts, &["--signal=TERM", "--full"], job);
                    term_at = Some(now);
                }
                let _ = tracker.send(Ctl::Nudge);
            }
        }
        // A grace (or confirmation time) too long for the clock is never over.
        let grace_over = term_at.and_then(|t| deadline::after(t, core.grace));
        if let (Some(g), None) = (grace_over, cancel_at) {
            if now >= g {
                log::info!(
                    "job {}: still running after the grace period; cancelling Slurm job {job}",
                    core.id
                );
                cancel(opts, job, true);
                cancel_at = Some(now);
                let _ = tracker.send(Ctl::Nudge);
            }
        }
        let confirm_over = cancel_at.and_then(|c| deadline::after(c, opts.confirm));
        if confirm_over.is_some_and(|c| now >= c) {
            break Ending::lost(
                &state,
                format!(
                    "Slurm did not report the end of job {job} within {:?} of its cancellation",
                    opts.confirm
                ),
            );
        }
        let mut wait = SLICE;
        if let (Some(d), None, None) = (timeout_at, term_at, cancel_at) {
            wait = wait.min(d.saturating_duration_since(now));
        }
        if let (Some(g), None) = (grace_over, cancel_at) {
            wait = wait.min(g.saturating_duration_since(now));
        }
        match rx.recv_timeout(wait) {
            Ok(Report::State(s)) => {
                inner.set_backend_state(core.id, &s);
                if run_start.is_none() && has_started(&s) {
                    let at = Instant::now();
                    run_start = Some(at);
                    timeout_at = core.timeout.and_then(|t| deadline::after(at, t));
                }
                state = s;
            }
            Ok(Report::End(e)) => break e,
            Ok(Report::Internal(msg)) => {
                cancel(opts, job, true);
                return AttemptEnd::Internal(msg);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // The poller ends only at shutdown (after every job) or by a panic.
                cancel(opts, job, true);
                return AttemptEnd::Internal(format!(
                    "internal error: procman's Slurm poller stopped while following Slurm job \
                     {job}; it was cancelled"
                ));
            }
        }
    };
    inner.set_backend_state(core.id, &ending.state);
    let killed = core.kill_requested.load(Ordering::SeqCst);
    let ran = run_start.is_some() || ending.ran;
    // Cancelled before it started, by procman or by anyone else: it never ran.
    if !ran && (killed || (ending.state == "CANCELLED" && ending.lost.is_none())) {
        return AttemptEnd::NotStarted;
    }
    let usage = ResourceUsage {
        wall: run_start.unwrap_or(submitted).elapsed(),
        ..ResourceUsage::default()
    };
    let (exit, timed_out, error) = ending.judge(job, killed || timed_out, timed_out);
    AttemptEnd::Exited {
        exit,
        usage,
        timed_out,
        error,
    }
}

/// States in which the job's program has started (for the timeout and for kill vs cancel).
fn has_started(state: &str) -> bool {
    matches!(
        state,
        "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
    )
}

/// Slurm's final job states.
fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "TIMEOUT"
            | "CANCELLED"
            | "NODE_FAIL"
            | "BOOT_FAIL"
            | "OUT_OF_MEMORY"
            | "PREEMPTED"
            | "DEADLINE"
            | "REVOKED"
    )
}

/// Ends the job: `hard` sends SIGKILL to every process of the job first (`scancel` alone gives
/// SIGTERM and waits Slurm's `KillWait` before SIGKILL). `--batch` is what makes the SIGKILL a
/// signal: without it Slurm 22.05 turns `--signal=KILL` into a plain cancel (SIGTERM, then
/// SIGKILL only after `KillWait`); with `--batch` alone the batch shell's children survive.
fn cancel(opts: &SlurmOptions, job: u32, hard: bool) {
    if hard {
        scancel(opts, &["--signal=KILL", "--full", "--batch"], job);
    }
    scancel(opts, &[], job);
}

fn scancel(opts: &SlurmOptions, flags: &[&str], job: u32) {
    let out = Command::new(&opts.scancel)
        .args(flags)
        .arg(job.to_string())
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => log::warn!(
            "scancel {} {job} failed: {}",
            flags.join(" "),
            one_line(&o.stderr)
        ),
        Err(e) => log::warn!("cannot run {}: {e}", opts.scancel.display()),
    }
}

/// A command's error output as one line.
fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------- how a job ended

/// How Slurm says a job ended, as the poller found it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ending {
    /// Slurm's state (the last one known, for a job that vanished).
    state: String,
    /// Slurm's reason field.
    reason: String,
    exit: Option<Exit>,
    /// The job was given nodes (it started).
    ran: bool,
    /// Set when Slurm could not tell how the job ended: why.
    lost: Option<String>,
}

impl Ending {
    fn lost(state: &str, why: String) -> Ending {
        Ending {
            state: state.to_owned(),
            reason: String::new(),
            exit: None,
            ran: has_started(state),
            lost: Some(why),
        }
    }

    /// (exit, timed out, error) for the attempt. `ended_by_procman`: procman cancelled or
    /// signalled the job (the scheduler then makes it `Killed` or `TimedOut`).
    fn judge(
        self,
        job: u32,
        ended_by_procman: bool,
        timed_out: bool,
    ) -> (Option<Exit>, bool, Option<String>) {
        if let Some(why) = self.lost {
            return (None, timed_out, Some(why));
        }
        let reason = if self.reason.is_empty() || self.reason == "None" {
            String::new()
        } else {
            format!(", reason {}", self.reason)
        };
        let plain = |e: &str| {
            Some(format!(
                "Slurm job {job} ended as {}{reason}: {e}",
                self.state
            ))
        };
        match self.state.as_str() {
            "COMPLETED" => (self.exit, timed_out, None),
            "FAILED" => match self.exit {
                Some(Exit { code: Some(0), .. }) | None => (
                    None,
                    timed_out,
                    plain("Slurm gave no exit status (the batch job failed to launch?)"),
                ),
                x => (x, timed_out, None),
            },
            "TIMEOUT" if !timed_out => (
                self.exit,
                true,
                plain("Slurm's own time limit (--time) ended it"),
            ),
            "TIMEOUT" => (self.exit, true, None),
            "CANCELLED" if ended_by_procman => (self.exit, timed_out, None),
            "CANCELLED" => (
                not_success(self.exit),
                timed_out,
                plain("cancelled outside procman (scancel by a user or an administrator)"),
            ),
            "OUT_OF_MEMORY" => (
                not_success(self.exit),
                timed_out,
                plain("it used more memory than it was given (--mem)"),
            ),
            "NODE_FAIL" | "BOOT_FAIL" => (None, timed_out, plain("its node failed")),
            "PREEMPTED" => (None, timed_out, plain("Slurm preempted it")),
            "DEADLINE" => (None, timed_out, plain("it reached its --deadline")),
            _ => (None, timed_out, plain("not a state procman knows")),
        }
    }
}

/// An exit status for a job that did not succeed: a reported code 0 (which would make the
/// job `Finished`) is dropped, so the job ends as `Failed` with its error.
fn not_success(exit: Option<Exit>) -> Option<Exit> {
    exit.filter(|x| x.code != Some(0))
}

/// Decodes squeue's `exit_code` (a wait status: code << 8 | signal).
fn exit_from_wait_status(status: i64) -> Exit {
    let signal = (status & 0x7f) as i32;
    if signal != 0 {
        Exit {
            code: None,
            signal: Some(signal),
        }
    } else {
        Exit {
            code: Some(((status >> 8) & 0xff) as i32),
            signal: None,
        }
    }
}

/// Decodes `scontrol`'s and `sacct`'s `ExitCode=code:signal`.
fn exit_from_pair(s: &str) -> Option<Exit> {
    let (code, signal) = s.trim().split_once(':')?;
    let (code, signal): (i32, i32) = (code.parse().ok()?, signal.parse().ok()?);
    Some(if signal != 0 {
        Exit {
            code: None,
            signal: Some(signal),
        }
    } else {
        Exit {
            code: Some(code),
            signal: None,
        }
    })
}

fn nodes_given(nodes: &str) -> bool {
    let n = nodes.trim();
    !n.is_empty() && n != "(null)" && n != "None assigned"
}

// ---------------------------------------------------------------- the poller

enum Ctl {
    /// Follow this Slurm job and report to this channel.
    Track(u32, Sender<Report>),
    /// Something was cancelled: poll soon.
    Nudge,
    Stop,
}

enum Report {
    /// The job's raw state changed (not final).
    State(String),
    /// The job ended. The last report.
    End(Ending),
    /// The poller panicked in a round that followed this job ("internal error: ..."); it
    /// follows the job no longer. The last report: the worker cancels the job.
    Internal(String),
}

struct Tracked {
    tx: Sender<Report>,
    state: String,
}

/// One row of `squeue` output.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    state: String,
    exit: Option<Exit>,
    nodes: String,
    reason: String,
}

/// The longest poll interval [`SlurmOptions::poll_interval`] accepts.
const POLL_CAP: Duration = Duration::from_secs(3600);

/// `squeue -O` fields (Slurm 20.11 and later print `exit_code`, a wait status).
const SQUEUE_FORMAT: &str = "JobID:|,State:|,exit_code:|,NodeList:|,Reason:|";
/// Older `squeue`: no exit code; `scontrol` is asked for finished jobs.
const SQUEUE_LEGACY_FORMAT: &str = "%i|%T|%N|%r";

struct Poller {
    opts: Arc<SlurmOptions>,
    rx: Receiver<Ctl>,
    jobs: HashMap<u32, Tracked>,
    legacy: bool,
    last_warning: Option<Instant>,
}

impl Poller {
    fn run(mut self) {
        let (min, max) = (self.opts.poll_min, self.opts.poll_max);
        let mut interval = min;
        let mut next: Option<Instant> = None;
        loop {
            let msg = match next {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self
                    .rx
                    .recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            // An interval too long for the clock: no poll is due ("never").
            let soon = deadline::from_now(min);
            match msg {
                Ok(Ctl::Track(job, tx)) => {
                    self.jobs.insert(
                        job,
                        Tracked {
                            tx,
                            state: "PENDING".into(),
                        },
                    );
                    interval = min;
                    next = deadline::earliest(next, soon);
                    continue;
                }
                Ok(Ctl::Nudge) => {
                    interval = min;
                    next = deadline::earliest(next, soon);
                    continue;
                }
                Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // The panic rule (DESIGN.md): a round that panics ends every job it followed as an
            // internal error (their workers cancel them); retrying the round could panic for
            // ever. The poller goes on with the jobs tracked after it.
            let changed = match catch_unwind(AssertUnwindSafe(|| self.round())) {
                Ok(changed) => changed,
                Err(p) => {
                    let msg = format!(
                        "internal error: the Slurm poller thread panicked: {}",
                        panic_message(&*p)
                    );
                    log::error!("{msg}; ending the {} jobs it followed", self.jobs.len());
                    for (_, t) in self.jobs.drain() {
                        let _ = t.tx.send(Report::Internal(msg.clone()));
                    }
                    true
                }
            };
            interval = if changed {
                min
            } else {
                interval.saturating_mul(2).min(max)
            };
            next = if self.jobs.is_empty() {
                None
            } else {
                deadline::from_now(interval)
            };
        }
        // Dropping the senders tells any worker still waiting (none after a shutdown).
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
        if t.tx.send(Report::State(row.state.clone())).is_err() {
            self.jobs.remove(&job);
        }
        true
    }

    fn end(&mut self, job: u32, ending: Ending) {
        if let Some(t) = self.jobs.remove(&job) {
            let _ = t.tx.send(Report::End(ending));
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

/// Parses `squeue -h` output in procman's formats into rows by job id.
fn parse_squeue(out: &[u8], legacy: bool) -> HashMap<u32, Row> {
    let text = String::from_utf8_lossy(out);
    let mut rows = HashMap::new();
    for line in text.lines() {
        let mut f = line.splitn(if legacy { 4 } else { 5 }, '|').map(str::trim);
        let (Some(id), Some(state)) = (f.next(), f.next()) else {
            continue;
        };
        let Ok(id) = id.parse::<u32>() else { continue };
        let exit = if legacy {
            None
        } else {
            f.next()
                .and_then(|s| s.parse::<i64>().ok())
                .map(exit_from_wait_status)
        };
        let nodes = f.next().unwrap_or("").to_owned();
        let reason = f
            .next()
            .unwrap_or("")
            .trim_end_matches('|')
            .trim()
            .to_owned();
        // squeue prints e.g. "CANCELLED by 0" in some versions: keep the state word.
        let state = state.split_whitespace().next().unwrap_or("").to_owned();
        rows.insert(
            id,
            Row {
                state,
                exit,
                nodes,
                reason,
            },
        );
    }
    rows
}

// ---------------------------------------------------------------- submission

/// One attempt's `sbatch` command line and batch script.
struct Submission {
    args: Vec<OsString>,
    script: Vec<u8>,
    /// Input bytes written for `--input`; removed when the attempt ends.
    stdin_file: Option<PathBuf>,
}

impl Submission {
    fn prepare(core: &JobCore, attempt: u32, opts: &SlurmOptions) -> Result<Submission, String> {
        let here = std::env::current_dir()
            .map_err(|e| format!("cannot find procman's current directory: {e}"))?;
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                here.join(p)
            }
        };
        let cwd = core.cwd.as_deref().map_or_else(|| here.clone(), abs);
        if !cwd.is_dir() {
            return Err(format!(
                "working directory {} is not usable (not a directory)",
                cwd.display()
            ));
        }
        let mut args: Vec<OsString> = vec!["--parsable".into(), "--no-requeue".into()];
        let mut opt = |name: &str, value: &OsStr| {
            let mut a = OsString::from(format!("--{name}="));
            a.push(value);
            args.push(a);
        };
        opt("job-name", OsStr::new(&job_name(core)));
        opt("chdir", cwd.as_os_str());
        // Outputs are compared with the input, and with each other, by device and inode
        // before anything is truncated (as for local jobs: `output::open_streams`).
        let input_id = match &core.input {
            Input::File(p) if abs(p).is_file() => FileId::at(&abs(p)),
            _ => None,
        };
        let is_input = |what: &str, p: &Path| {
            format!(
                "the {what} {} is the job's input file: refused, as writing it would destroy \
                 the input (the file is left as it was)",
                p.display()
            )
        };
        let log = core.log_file.as_deref().map(abs);
        let mut log_id = None;
        match &log {
            Some(p) => match create_output_unless(p, &[input_id]) {
                Ok(Output::New(f)) => {
                    log_id = FileId::of(&f);
                    opt("output", &slurm_path(p)?);
                }
                Ok(Output::Known(_)) => return Err(is_input("log file", p)),
                Err(e) => return Err(format!("cannot open log file {}: {e}", p.display())),
            },
            None => opt("output", OsStr::new("/dev/null")),
        }
        let err = core.error_file.as_deref().map(abs);
        match (core.merge_error, &err) {
            // Without --error, Slurm writes stderr into --output.
            (true, _) if log.is_some() => {}
            (_, Some(p)) => match create_output_unless(p, &[input_id, log_id]) {
                Ok(Output::New(_)) => opt("error", &slurm_path(p)?),
                Ok(Output::Known(0)) => return Err(is_input("error file", p)),
                // The log's file under another name: into --output, as merged.
                Ok(Output::Known(_)) => {}
                Err(e) => return Err(format!("cannot open error file {}: {e}", p.display())),
            },
            (_, None) => opt("error", OsStr::new("/dev/null")),
        }
        let mut stdin_file = None;
        match &core.input {
            Input::Null => opt("input", OsStr::new("/dev/null")),
            Input::File(p) => {
                let p = abs(p);
                std::fs::File::open(&p)
                    .map_err(|e| format!("cannot open input file {}: {e}", p.display()))?;
                opt("input", &slurm_path(&p)?);
            }
            Input::Bytes(b) => {
                let dir = log
                    .as_deref()
                    .and_then(Path::parent)
                    .map_or_else(|| cwd.clone(), Path::to_owned);
                let p = dir.join(format!(
                    ".procman-{}-{}-{attempt}.stdin",
                    std::process::id(),
                    core.id
                ));
                std::fs::write(&p, b)
                    .map_err(|e| format!("cannot write the input bytes to {}: {e}", p.display()))?;
                let arg = slurm_path(&p);
                stdin_file = Some(p);
                match arg {
                    Ok(a) => opt("input", &a),
                    Err(e) => {
                        let _ = std::fs::remove_file(stdin_file.as_ref().expect("just set"));
                        return Err(e);
                    }
                }
            }
        }
        if core.cpus > 0 {
            opt("cpus-per-task", OsStr::new(&core.cpus.to_string()));
        }
        if core.memory > 0 {
            opt("mem", OsStr::new(&format!("{}M", mebibytes(core.memory))));
        }
        // A timeout too long for Slurm's limit is no timeout: no backstop either.
        if let Some(minutes) = core
            .timeout
            .and_then(|t| time_limit_minutes(t, core.grace, opts.poll_max))
        {
            opt("time", OsStr::new(&minutes.to_string()));
        }
        if let Some(p) = &opts.partition {
            opt("partition", p);
        }
        if let Some(a) = &opts.account {
            opt("account", a);
        }
        args.extend(opts.extra.iter().cloned());
        Ok(Submission {
            args,
            script: batch_script(core),
            stdin_file,
        })
    }

    /// Runs `sbatch`; the Slurm job id, or Slurm's message.
    fn submit(&self, opts: &SlurmOptions) -> Result<u32, String> {
        let mut child = Command::new(&opts.sbatch)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", opts.sbatch.display()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A refusal may come before sbatch reads the script (a broken pipe): its message
            // below says why.
            let _ = stdin.write_all(&self.script);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("cannot wait for {}: {e}", opts.sbatch.display()))?;
        if !out.status.success() {
            let msg = one_line(&out.stderr);
            return Err(if msg.is_empty() {
                format!("sbatch refused the job ({})", out.status)
            } else {
                format!("sbatch refused the job: {msg}")
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        // --parsable prints "jobid" or "jobid;cluster".
        text.lines()
            .next()
            .and_then(|l| l.split(';').next())
            .and_then(|id| id.trim().parse::<u32>().ok())
            .ok_or_else(|| format!("sbatch printed no job id: {:?}", text.trim()))
    }

    fn cleanup(&self) {
        if let Some(p) = &self.stdin_file {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `refmac5.1003`: the program's file name and procman's job id, printable bytes only.
fn job_name(core: &JobCore) -> String {
    let base = Path::new(&core.program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
        .take(40)
        .collect();
    if clean.is_empty() {
        format!("procman.{}", core.id)
    } else {
        format!("{clean}.{}", core.id)
    }
}

/// Bytes in whole MiB, rounded up (`--mem` takes MiB).
fn mebibytes(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Slurm's `--time` backstop in whole minutes, rounded up: procman's timeout plus the grace,
/// plus one poll interval (the timeout starts when procman sees the job running) and one more
/// minute, so that procman's own, precise timeout always comes first. `None` when that is more
/// than Slurm's largest finite limit ([`SLURM_MAX_MINUTES`]): the job gets no `--time`.
fn time_limit_minutes(timeout: Duration, grace: Duration, poll_max: Duration) -> Option<u64> {
    let total = timeout
        .saturating_add(grace)
        .saturating_add(poll_max)
        .saturating_add(Duration::from_secs(60));
    let secs = total
        .as_secs()
        .saturating_add(u64::from(total.subsec_nanos() > 0));
    Some(secs.div_ceil(60)).filter(|&m| m <= SLURM_MAX_MINUTES)
}

/// Slurm keeps time limits in minutes as a `u32`, with `0xffffffff` for INFINITE and
/// `0xfffffffe` for "no value": the largest finite limit is one below.
const SLURM_MAX_MINUTES: u64 = 0xffff_fffd;

/// A path for `--output`/`--error`/`--input`, where Slurm expands `%` patterns: `%` becomes
/// `%%`. Slurm deletes backslashes from these names, so a path with one cannot be given.
fn slurm_path(p: &Path) -> Result<OsString, String> {
    let bytes = p.as_os_str().as_bytes();
    if bytes.contains(&b'\\') {
        return Err(format!(
            "Slurm cannot use the file name {} (it contains a backslash)",
            p.display()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'%' {
            out.push(b'%');
        }
        out.push(b);
    }
    Ok(OsString::from_vec(out))
}

/// The name of the shell variable that holds a carriage return in the batch script.
const CR_VAR: &[u8] = b"procman_cr";

/// Quotes one word for `/bin/sh`: single quotes, with `'` as `'\''`. A carriage return is
/// written as `"$procman_cr"` (set by the script), because sbatch refuses scripts that contain
/// a DOS line break. Any other byte (but NUL, which a word cannot hold) stands for itself.
fn shell_quote(word: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(word.len() + 2);
    out.push(b'\'');
    for &b in word {
        match b {
            b'\'' => out.extend_from_slice(b"'\\''"),
            b'\r' => {
                out.extend_from_slice(b"'\"$");
                out.extend_from_slice(CR_VAR);
                out.extend_from_slice(b"\"'");
            }
            _ => out.push(b),
        }
    }
    out.push(b'\'');
    out
}

/// The batch script: `exec` of the job's command line, through `env` when the job edits its
/// environment. Slurm starts it in `--chdir` with the submitting process's environment.
fn batch_script(core: &JobCore) -> Vec<u8> {
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut command: Vec<&OsStr> = Vec::new();
    if let Some(i) = &core.interpreter {
        command.push(i);
    }
    command.push(&core.program);
    command.extend(core.args.iter().map(OsString::as_os_str));

    // The environment edits, in order, reduced to: start empty or not, unset these, set these.
    let mut clear = false;
    let mut edits: Vec<(&OsStr, Option<&OsStr>)> = Vec::new();
    for edit in &core.env {
        match edit {
            EnvEdit::Clear => {
                clear = true;
                edits.clear();
            }
            EnvEdit::Set(k, v) => {
                edits.retain(|(name, _)| name != k);
                edits.push((k, Some(v)));
            }
            EnvEdit::Remove(k) => {
                edits.retain(|(name, _)| name != k);
                if !clear {
                    edits.push((k, None));
                }
            }
        }
    }
    let first = command[0].as_bytes();
    let use_env = clear || !edits.is_empty() || first.starts_with(b"-");
    if use_env {
        words.push(b"/usr/bin/env".to_vec());
        if clear {
            words.push(b"-i".to_vec());
        }
        for (k, v) in &edits {
            if v.is_none() {
                words.push(b"-u".to_vec());
                words.push(k.as_bytes().to_vec());
            }
        }
        words.push(b"--".to_vec());
        for (k, v) in &edits {
            if let Some(v) = v {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                words.push(kv);
            }
        }
        if first.contains(&b'=') {
            // env would take it for an assignment: let a shell run it.
            words.push(b"/bin/sh".to_vec());
            words.push(b"-c".to_vec());
            words.push(b"exec \"$0\" \"$@\"".to_vec());
        }
    }
    words.extend(command.iter().map(|w| w.as_bytes().to_vec()));

    let mut script = format!(
        "#!/bin/sh\n# procman job {}: the program replaces this shell\n",
        core.id
    )
    .into_bytes();
    if words.iter().any(|w| w.contains(&b'\r')) {
        script.extend_from_slice(CR_VAR);
        script.extend_from_slice(b"=$(printf '\\015')\n");
    }
    script.extend_from_slice(b"exec");
    for w in &words {
        script.push(b' ');
        script.extend_from_slice(&shell_quote(w));
    }
    script.push(b'\n');
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::AtomicBool;

    fn core(program: &str, args: &[&[u8]], env: Vec<EnvEdit>) -> JobCore {
        JobCore {
            id: crate::record::JobId(1000),
            program: program.into(),
            args: args
                .iter()
                .map(|a| OsString::from_vec(a.to_vec()))
                .collect(),
            interpreter: None,
            input: Input::Null,
            log_file: None,
            merge_error: false,
            error_file: None,
            cwd: None,
            env,
            timeout: None,
            grace: Duration::from_secs(2),
            observer: None,
            kill_leftovers: true,
            cpus: 0,
            memory: 0,
            kill_requested: AtomicBool::new(false),
        }
    }

    /// Runs a batch script with /bin/sh (no Slurm) and returns its standard output.
    fn run_script(script: &[u8]) -> Vec<u8> {
        let mut child = Command::new("/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/bin/sh runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script)
            .expect("the script is written");
        let out = child.wait_with_output().unwrap();
        // (printf with no argument after the format still prints it once: tests pass one.)
        assert!(out.status.success(), "script failed: {out:?}");
        out.stdout
    }

    /// argv as the program sees it: printf prints each argument followed by a NUL.
    fn argv_of(script: &[u8]) -> Vec<Vec<u8>> {
        run_script(script)
            .split(|&b| b == 0)
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, rest)| rest.to_vec())
            .unwrap_or_default()
    }

    fn printf_core(args: &[&[u8]]) -> JobCore {
        let mut all: Vec<&[u8]> = vec![b"%s\\0"];
        all.extend_from_slice(args);
        core("printf", &all, vec![])
    }

    #[test]
    fn an_error_file_aliasing_the_log_is_merged_and_an_aliased_input_refused() {
        let dir = std::env::temp_dir().join(format!("procman-slurm-alias-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (log, link, input) = (dir.join("a.log"), dir.join("link"), dir.join("in.txt"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&log, &link).unwrap();
        std::fs::write(&input, "keywords\n").unwrap();
        let mut c = core("true", &[], vec![]);
        c.log_file = Some(log.clone());
        c.error_file = Some(link.clone());
        let sub = Submission::prepare(&c, 1, &SlurmOptions::default()).unwrap();
        let args: Vec<String> = sub
            .args
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert!(
            args.contains(&format!("--output={}", log.display())),
            "{args:?}"
        );
        // Without --error, Slurm writes stderr into --output: one file, one offset.
        assert!(!args.iter().any(|a| a.starts_with("--error=")), "{args:?}");
        c.input = Input::File(input.clone());
        c.log_file = Some(dir.join("other.log"));
        c.error_file = Some(dir.join("in.txt"));
        let e = Submission::prepare(&c, 1, &SlurmOptions::default())
            .err()
            .unwrap();
        assert!(e.contains("is the job's input file"), "{e}");
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "keywords\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn odd_bytes_reach_the_program_unchanged() {
        let odd: Vec<&[u8]> = vec![
            b"",
            b" ",
            b"'",
            b"''\\''",
            b"\"$HOME\" `id` $(id) ${x:-y} \\ \\n",
            b"a\nb\r\nc\rd",
            b"\xff\xfe non-UTF-8 \x80",
            b"*?[a] ~ # ; & | < > ( ) { }",
            b"-n",
            b"#SBATCH --mem=1",
            b"\x01\x1b[31m\x7f",
        ];
        let script = batch_script(&printf_core(&odd));
        assert!(
            !script.windows(2).any(|w| w == b"\r\n"),
            "no DOS line break"
        );
        let got = argv_of(&script);
        let want: Vec<Vec<u8>> = odd.iter().map(|a| a.to_vec()).collect();
        assert_eq!(got, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn any_bytes_but_nul_survive_quoting(
            args in proptest::collection::vec(
                proptest::collection::vec(1u8..=255, 0..24), 1..4)
        ) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let script = batch_script(&printf_core(&refs));
            prop_assert!(!script.windows(2).any(|w| w == b"\r\n"));
            prop_assert_eq!(argv_of(&script), args);
        }
    }

    #[test]
    fn environment_edits_apply_in_order() {
        let env = vec![
            EnvEdit::Set("A".into(), "1 '2'".into()),
            EnvEdit::Set("GONE".into(), "x".into()),
            EnvEdit::Remove("GONE".into()),
            EnvEdit::Remove("HOME".into()),
        ];
        let c = core(
            "sh",
            &[
                b"-c",
                b"printf '%s|%s|%s' \"$A\" \"${GONE-unset}\" \"${HOME-unset}\"",
            ],
            env,
        );
        assert_eq!(run_script(&batch_script(&c)), b"1 '2'|unset|unset");
        let env = vec![
            EnvEdit::Set("LOST".into(), "x".into()),
            EnvEdit::Clear,
            EnvEdit::Set("ONLY".into(), "y".into()),
        ];
        let c = core("/usr/bin/env", &[], env);
        assert_eq!(run_script(&batch_script(&c)), b"ONLY=y\n");
    }

    #[test]
    fn a_program_name_with_an_equals_sign_still_runs() {
        let dir = std::env::temp_dir().join(format!("procman-slurm-eq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prog = dir.join("a=b");
        std::fs::write(&prog, "#!/bin/sh\necho \"ran $X\"\n").unwrap();
        std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let c = core(
            prog.to_str().unwrap(),
            &[],
            vec![EnvEdit::Set("X".into(), "yes".into())],
        );
        assert_eq!(run_script(&batch_script(&c)), b"ran yes\n");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn squeue_rows_are_parsed() {
        let out = b"5|RUNNING|0|vm|None|\n6|FAILED|768|vm|NonZeroExitCode|\n\
                    7|CANCELLED|0||BeginTime|\n8|TIMEOUT|15|vm|TimeLimit|\nbad line\n";
        let rows = parse_squeue(out, false);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[&5].state, "RUNNING");
        assert_eq!(
            rows[&6].exit,
            Some(Exit {
                code: Some(3),
                signal: None
            })
        );
        assert_eq!(rows[&6].reason, "NonZeroExitCode");
        assert!(!nodes_given(&rows[&7].nodes));
        assert!(nodes_given(&rows[&8].nodes));
        assert_eq!(
            rows[&8].exit,
            Some(Exit {
                code: None,
                signal: Some(15)
            })
        );
        let legacy = parse_squeue(b"9|PENDING|(null)|Priority\n", true);
        assert_eq!(legacy[&9].state, "PENDING");
        assert_eq!(legacy[&9].exit, None);
        assert_eq!(legacy[&9].reason, "Priority");
        assert_eq!(
            exit_from_pair("0:15"),
            Some(Exit {
                code: None,
                signal: Some(15)
            })
        );
        assert_eq!(
            exit_from_pair("3:0"),
            Some(Exit {
                code: Some(3),
                signal: None
            })
        );
    }

    #[test]
    fn poll_intervals_stay_between_10_ms_and_an_hour() {
        let o = SlurmOptions::new().poll_interval(Duration::MAX, Duration::MAX);
        assert_eq!((o.poll_min, o.poll_max), (POLL_CAP, POLL_CAP));
        let o = SlurmOptions::new().poll_interval(Duration::ZERO, Duration::ZERO);
        let ten = Duration::from_millis(10);
        assert_eq!((o.poll_min, o.poll_max), (ten, ten));
        let o = SlurmOptions::new().poll_interval(Duration::from_secs(1), Duration::MAX);
        assert_eq!((o.poll_min, o.poll_max), (Duration::from_secs(1), POLL_CAP));
    }

    #[test]
    fn slurm_paths_and_limits() {
        assert_eq!(
            slurm_path(Path::new("/a/100%/log%j.txt")).unwrap(),
            OsString::from("/a/100%%/log%%j.txt")
        );
        assert!(slurm_path(Path::new("/a\\b")).is_err());
        assert_eq!(mebibytes(1), 1);
        assert_eq!(mebibytes(1 << 20), 1);
        assert_eq!(mebibytes((1 << 20) + 1), 2);
        let s = Duration::from_secs;
        // 1 s + 2 s grace + 2 s poll + 60 s = 65 s -> 2 minutes
        assert_eq!(time_limit_minutes(s(1), s(2), s(2)), Some(2));
        // exactly 120 s -> 2 minutes
        assert_eq!(time_limit_minutes(s(56), s(2), s(2)), Some(2));
        assert_eq!(
            time_limit_minutes(s(56), s(2), s(2) + Duration::from_millis(1)),
            Some(3)
        );
        assert_eq!(time_limit_minutes(s(3600), s(0), s(0)), Some(61));
        // Any Duration: past Slurm's largest limit (or past Duration::MAX in the sum) there is
        // no --time; just under it, the limit itself.
        let max = Duration::MAX;
        assert_eq!(time_limit_minutes(max, s(2), s(2)), None);
        assert_eq!(time_limit_minutes(s(1), max, s(2)), None);
        assert_eq!(time_limit_minutes(s(1), s(2), max), None);
        assert_eq!(time_limit_minutes(max, max, max), None);
        let last = s(SLURM_MAX_MINUTES * 60 - 60);
        assert_eq!(
            time_limit_minutes(last, s(0), s(0)),
            Some(SLURM_MAX_MINUTES)
        );
        assert_eq!(time_limit_minutes(last + s(1), s(0), s(0)), None);
    }

    #[test]
    fn endings_map_onto_statuses() {
        let e = |state: &str, exit: Option<Exit>, ran: bool| Ending {
            state: state.into(),
            reason: "None".into(),
            exit,
            ran,
            lost: None,
        };
        let code = |c| {
            Some(Exit {
                code: Some(c),
                signal: None,
            })
        };
        let sig = |s| {
            Some(Exit {
                code: None,
                signal: Some(s),
            })
        };
        assert_eq!(
            e("COMPLETED", code(0), true).judge(1, false, false),
            (code(0), false, None)
        );
        assert_eq!(
            e("FAILED", code(3), true).judge(1, false, false),
            (code(3), false, None)
        );
        let (x, _, err) = e("FAILED", code(0), true).judge(1, false, false);
        assert!(x.is_none() && err.unwrap().contains("no exit status"));
        let (x, t, err) = e("TIMEOUT", sig(15), true).judge(1, false, false);
        assert!(t && x == sig(15) && err.unwrap().contains("--time"));
        assert_eq!(
            e("CANCELLED", sig(15), true).judge(1, true, false),
            (sig(15), false, None)
        );
        let (x, _, err) = e("CANCELLED", sig(15), true).judge(1, false, false);
        assert!(x == sig(15) && err.unwrap().contains("outside procman"));
        // Cancelled outside procman while pending: 0:0 must not read as success.
        let (x, _, err) = e("CANCELLED", code(0), false).judge(1, false, false);
        assert!(x.is_none() && err.is_some());
        let (x, _, _) = e("OUT_OF_MEMORY", code(0), true).judge(1, false, false);
        assert!(x.is_none());
        let (x, _, err) = e("NODE_FAIL", code(0), true).judge(1, false, false);
        assert!(x.is_none() && err.unwrap().contains("node failed"));
        let (_, _, err) = e("OUT_OF_MEMORY", sig(9), true).judge(1, false, false);
        assert!(err.unwrap().contains("memory"));
        let lost = Ending::lost("RUNNING", "gone".into());
        assert!(lost.ran);
        assert_eq!(
            lost.judge(1, false, false),
            (None, false, Some("gone".into()))
        );
    }
}
