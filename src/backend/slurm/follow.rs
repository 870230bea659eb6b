//! Ending a Slurm job and judging its end: `scancel` through the shared step machine of
//! `terminate.rs` (run by the poller for every job it follows), and Slurm's ending turned into
//! the attempt's end; `scontrol release` of jobs submitted held (staged beyond the job limit).

use std::process::{Command, Stdio};
use std::time::Instant;

use super::array::SlurmId;
use super::ending::Ending;
use super::SlurmOptions;
use crate::backend::terminate::Signals;
use crate::job::{AttemptEnd, JobCore};
use crate::record::ResourceUsage;

/// Cancels a submitted Slurm job when dropped armed (a worker unwinding from a panic before it
/// handed the job to the poller).
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

/// TERM and KILL for a Slurm job: `scancel`. `sent` tells whether anything was sent. A job
/// never seen running is not cancelled here but added to `unstarted`, which the poller cancels
/// with a few `scancel` calls for all ([`cancel_all`]): a cancelling shutdown of 10,000 queued
/// jobs is then 20 calls, not 10,000.
pub(super) struct Scancel<'a> {
    pub(super) opts: &'a SlurmOptions,
    pub(super) job: SlurmId,
    pub(super) sent: bool,
    pub(super) unstarted: &'a mut Vec<SlurmId>,
}

impl Signals for Scancel<'_> {
    fn term(&mut self) {
        self.sent = true;
        scancel(self.opts, &["--signal=TERM", "--full"], self.job);
    }

    fn kill(&mut self) {
        self.sent = true;
        cancel(self.opts, self.job, true);
    }

    /// Not seen running: nothing to end gracefully.
    fn cancel_unstarted(&mut self) {
        self.sent = true;
        self.unstarted.push(self.job);
    }

    fn what(&self) -> String {
        format!("Slurm job {}", self.job)
    }
}

/// The attempt's end from Slurm's ending.
pub(super) fn judge(
    core: &JobCore,
    job: SlurmId,
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
pub(super) fn cancel(opts: &SlurmOptions, job: impl Into<SlurmId>, hard: bool) {
    let job = job.into();
    if hard {
        scancel(opts, &["--signal=KILL", "--full", "--batch"], job);
    }
    scancel(opts, &[], job);
}

/// Cancels `jobs` (jobs or array tasks) with one `scancel` per 500 of them. An id Slurm no
/// longer knows makes `scancel` complain (logged) but not skip the others.
pub(super) fn cancel_all(opts: &SlurmOptions, jobs: &[SlurmId]) {
    for chunk in jobs.chunks(500) {
        let out = Command::new(&opts.scancel)
            .args(chunk.iter().map(SlurmId::to_string))
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => log::warn!(
                "scancel of {} jobs failed for some: {}",
                chunk.len(),
                one_line(&o.stderr)
            ),
            Err(e) => log::warn!("cannot run {}: {e}", opts.scancel.display()),
        }
    }
}

/// Lets `jobs` (submitted with `--hold`) run: one `scontrol release` per 500 of them. An id
/// Slurm no longer knows (the job ended or was cancelled meanwhile) makes `scontrol` complain
/// but not skip the others, so that is done too. `Err`: Slurm did not answer (the controller
/// down); the caller asks again later.
pub(super) fn release(opts: &SlurmOptions, jobs: &[SlurmId]) -> Result<(), String> {
    for chunk in jobs.chunks(500) {
        let list = chunk
            .iter()
            .map(SlurmId::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let out = Command::new(&opts.scontrol)
            .args(["release", &list])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", opts.scontrol.display()))?;
        if !out.status.success() {
            let err = one_line(&out.stderr);
            if !err.contains("Invalid job id") {
                return Err(format!("scontrol release failed: {err}"));
            }
            log::debug!("scontrol release: {err}");
        }
    }
    Ok(())
}

fn scancel(opts: &SlurmOptions, flags: &[&str], job: SlurmId) {
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
