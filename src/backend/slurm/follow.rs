//! The worker's side of a Slurm job: it waits for the poller's reports on its job, ends the job
//! on a kill request or at its timeout (`scancel`, through the shared step machine of
//! `terminate.rs`), and turns Slurm's ending into the attempt's end.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::ending::{has_started, Ending};
use super::poller::{Ctl, Update};
use super::SlurmOptions;
use crate::backend::terminate::{Signals, Termination};
use crate::backend::Report;
use crate::deadline;
use crate::job::{AttemptEnd, JobCore};
use crate::record::ResourceUsage;

/// Cancels a submitted Slurm job when dropped armed (a worker unwinding from a panic).
pub(super) struct CancelOnDrop<'a> {
    pub(super) opts: &'a SlurmOptions,
    pub(super) job: u32,
    pub(super) armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            cancel(self.opts, self.job, true);
        }
    }
}

/// TERM and KILL for a Slurm job: `scancel`, then a nudge to the poller to look soon.
struct Scancel<'a> {
    opts: &'a SlurmOptions,
    job: u32,
    tracker: &'a Sender<Ctl>,
}

impl Signals for Scancel<'_> {
    fn term(&mut self) {
        scancel(self.opts, &["--signal=TERM", "--full"], self.job);
        let _ = self.tracker.send(Ctl::Nudge);
    }

    fn kill(&mut self) {
        cancel(self.opts, self.job, true);
        let _ = self.tracker.send(Ctl::Nudge);
    }

    /// Not seen running: nothing to end gracefully.
    fn cancel_unstarted(&mut self) {
        cancel(self.opts, self.job, false);
        let _ = self.tracker.send(Ctl::Nudge);
    }

    fn what(&self) -> String {
        format!("Slurm job {}", self.job)
    }
}

/// The job's channel to its poller, and what the worker knows of the job.
pub(super) struct Followed<'a> {
    pub(super) core: &'a JobCore,
    pub(super) job: u32,
    pub(super) rx: &'a Receiver<Update>,
    pub(super) tracker: &'a Sender<Ctl>,
    pub(super) opts: &'a SlurmOptions,
    pub(super) submitted_at: Instant,
}

/// Waits for the job's end, ending it on a kill request or at its timeout (counted from when
/// the poller first reports it running).
pub(super) fn follow(report: &dyn Report, f: Followed) -> AttemptEnd {
    const SLICE: Duration = Duration::from_millis(100);
    let (core, job, opts) = (f.core, f.job, f.opts);
    let mut term = Termination::new(core);
    let mut signals = Scancel {
        opts,
        job,
        tracker: f.tracker,
    };
    let mut run_start: Option<Instant> = None;
    let mut state = String::from("PENDING");
    let ending = loop {
        let wait = term
            .step(core, &mut signals)
            .map_or(SLICE, |w| w.min(SLICE));
        // A confirmation time too long for the clock is never over.
        let confirm_over = term
            .killed_at()
            .and_then(|c| deadline::after(c, opts.confirm));
        if confirm_over.is_some_and(|c| Instant::now() >= c) {
            break Ending::lost(
                &state,
                format!(
                    "Slurm did not report the end of job {job} within {:?} of its cancellation",
                    opts.confirm
                ),
            );
        }
        match f.rx.recv_timeout(wait) {
            Ok(Update::State(s)) => {
                report.set_backend_state(core.id, &s);
                if run_start.is_none() && has_started(&s) {
                    let at = Instant::now();
                    run_start = Some(at);
                    term.start_clock(core, at);
                }
                state = s;
            }
            Ok(Update::End(e)) => break e,
            Ok(Update::Internal(msg)) => {
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
    report.set_backend_state(core.id, &ending.state);
    judge(
        core,
        job,
        ending,
        run_start,
        f.submitted_at,
        term.timed_out(),
    )
}

/// The attempt's end from Slurm's ending.
fn judge(
    core: &JobCore,
    job: u32,
    ending: Ending,
    run_start: Option<Instant>,
    submitted: Instant,
    timed_out: bool,
) -> AttemptEnd {
    let killed = core
        .kill_requested
        .load(std::sync::atomic::Ordering::SeqCst);
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

/// Ends the job: `hard` sends SIGKILL to every process of the job first (`scancel` alone gives
/// SIGTERM and waits Slurm's `KillWait` before SIGKILL). `--batch` is what makes the SIGKILL a
/// signal: without it Slurm 22.05 turns `--signal=KILL` into a plain cancel (SIGTERM, then
/// SIGKILL only after `KillWait`); with `--batch` alone the batch shell's children survive.
pub(super) fn cancel(opts: &SlurmOptions, job: u32, hard: bool) {
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
pub(super) fn one_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
