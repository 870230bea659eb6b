//! The Slurm backend: each admitted attempt is submitted with `sbatch --parsable` on a worker
//! thread, then handed to one poller thread shared by all of the manager's Slurm jobs, which
//! follows it to its end (queued, running, ended) and ends it with `scancel`. No thread waits
//! for a job in flight: the worker returns as soon as `sbatch` answered.
//!
//! - *submit* ([`SlurmBackend::start_attempt`]): the worker thread writes a small batch script
//!   (`exec` of the program with every word shell-quoted) to `sbatch`'s standard input, with
//!   the log and error files as `--output`/`--error`, the input as `--input`, `--chdir`, the job
//!   name, declared CPUs and memory, partition, account and a whole-minute `--time` backstop.
//!   A refusal ends the attempt as `SpawnFailed` with Slurm's own message. The Slurm job id goes
//!   to [`Report::queued`] (it becomes the record's `pid`; the job reads `Queued`), and the job
//!   to the poller with a [`Later`], through which the poller ends the attempt exactly once.
//!   At most [`SlurmOptions::submit_threads`] workers exist ([`Backend::max_workers`]).
//! - *poll* (`poller.rs`): one `squeue -t all -j id,id,...` per round for every tracked job,
//!   at an interval that drops to the minimum on any change and doubles up to the maximum
//!   while nothing happens. A job seen running is reported [`Report::started`] (`Running`). A
//!   job squeue no longer knows is looked up with `sacct`; if that fails too it has vanished,
//!   and its attempt ends as `Failed` saying so.
//! - *cancel*: between rounds the poller ticks every 100 ms and runs each job's TERM-grace-KILL
//!   step machine (`terminate.rs`) on `JobCore::kill_requested` and the job's timeout (counted
//!   from when the poller first sees the job `RUNNING`): `scancel --signal=TERM --full ID`,
//!   and after the grace `scancel --signal=KILL --full --batch ID` plus `scancel ID`. A job
//!   still pending is just cancelled. A cancelling shutdown sets every job's kill request, so
//!   the poller cancels them all before the manager stops it.
//!
//! See DESIGN.md, "Running jobs on Slurm", for the state mapping table and the measurements.
//!
//! - `options.rs`: [`SlurmOptions`]. `submit.rs`: `sbatch`'s options and the call;
//!   `script.rs`: the batch script.
//! - `poller.rs`: the poller thread. `ending.rs`: reading `squeue`/`sacct`/`scontrol` and
//!   judging Slurm's final state.
//! - `follow.rs`: `scancel`, and the attempt's end from Slurm's ending.
//! - `tail.rs`: live output: the poller reads observed jobs' log files as they grow.
//! - `array.rs`: [`SlurmOptions::array`], first attempts gathered into `sbatch --array`
//!   submissions, and the ids of array tasks the poller follows.

mod array;
mod ending;
mod follow;
mod launch;
mod options;
mod poller;
mod script;
mod steps;
mod submit;
mod tail;
mod usage;

use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{unbounded, SendError, Sender};
use parking_lot::Mutex;

use follow::CancelOnDrop;
pub use options::{SlurmOptions, SlurmWay};
use poller::{Ctl, Handover, Poller, StepHandover};
use steps::{Allocation, Step};
use submit::Submission;
use tail::Tail;

use crate::backend::{spawn_failed, Attempt, Backend, Later, Report};
use crate::job::{AttemptEnd, Work};
use crate::sys::Waker;

/// Runs each attempt as a Slurm batch job. Owns the poller thread (started with the first job,
/// stopped by [`Backend::shutdown`] or when the backend is dropped).
pub(crate) struct SlurmBackend {
    opts: Arc<SlurmOptions>,
    poller: Mutex<Option<(Sender<Ctl>, JoinHandle<()>)>>,
    /// The allocation job steps run in (`steps.rs`), once found or requested.
    alloc: Mutex<Option<Allocation>>,
    /// The first attempts being gathered into an array (`array.rs`).
    gather: array::Gatherer,
}

impl SlurmBackend {
    pub(crate) fn new(opts: SlurmOptions) -> SlurmBackend {
        SlurmBackend {
            opts: Arc::new(opts),
            poller: Mutex::new(None),
            alloc: Mutex::new(None),
            gather: array::Gatherer::default(),
        }
    }

    /// The poller's control channel, starting the poller if needed (again, should it have
    /// ended by a panic that escaped its round's catch).
    /// The attempt's submission files (as a job step or a batch job) and the poller that will
    /// follow it; nothing is left behind on an error.
    fn prepare(
        &self,
        core: &crate::job::JobCore,
        attempt: u32,
        step: bool,
    ) -> Result<(Submission, Sender<Ctl>), String> {
        let sub = Submission::prepare(core, attempt, &self.opts, step)?;
        match self.poller() {
            Ok(tracker) => Ok((sub, tracker)),
            Err(msg) => {
                sub.cleanup();
                Err(msg)
            }
        }
    }

    fn poller(&self) -> Result<Sender<Ctl>, String> {
        let mut p = self.poller.lock();
        if let Some((tx, t)) = &*p {
            if !t.is_finished() {
                return Ok(tx.clone());
            }
            log::error!("internal error: the Slurm poller thread ended; starting another");
        }
        let (tx, rx) = unbounded();
        let poller = Poller::new(self.opts.clone(), rx);
        let t = thread::Builder::new()
            .name("procman-slurm-poll".into())
            .spawn(move || poller.run())
            .map_err(|e| format!("cannot create the Slurm poller thread: {e}"))?;
        *p = Some((tx.clone(), t));
        Ok(tx)
    }
}

impl Backend for SlurmBackend {
    /// Never called: the worker calls [`Backend::start_attempt`], which this backend overrides.
    fn run_attempt(&self, _report: &dyn Report, work: Work, _waker: Waker) -> AttemptEnd {
        AttemptEnd::Internal(format!(
            "internal error: job {}: the Slurm backend was asked to run an attempt on its worker",
            work.core.id
        ))
    }

    /// Submits the attempt on the calling worker, then hands it to the poller and returns: the
    /// worker is free while the job is queued and runs.
    fn start_attempt(
        &self,
        report: &dyn Report,
        engine: &Weak<dyn Report>,
        work: Work,
        _waker: Waker,
    ) -> Attempt {
        let core = &*work.core;
        if self.opts.steps {
            return self.start_step(report, engine, work);
        }
        if self.opts.array > 0 && work.attempt == 1 {
            return self.start_in_array(engine, work);
        }
        let (sub, tracker) = match self.prepare(core, work.attempt, false) {
            Ok(p) => p,
            Err(msg) => return Attempt::Ended(spawn_failed(core, None, msg)),
        };
        let submitted = Instant::now();
        let job = match sub.submit(&self.opts) {
            Ok(j) => j,
            Err(msg) => {
                sub.cleanup();
                return Attempt::Ended(spawn_failed(core, None, msg));
            }
        };
        log::debug!(
            "job {}: Slurm job {job} (attempt {})",
            core.id,
            work.attempt
        );
        // Should this worker unwind from a panic before the poller has the job, the Slurm job
        // is cancelled (the panic rule, DESIGN.md).
        let mut guard = CancelOnDrop {
            opts: &self.opts,
            job,
            armed: true,
        };
        report.queued(core.id, job, None, work.attempt);
        report.set_backend_state(core.id, "PENDING");
        let handover = Handover {
            job: job.into(),
            core: work.core.clone(),
            later: Later::new(engine, core.id, work.attempt),
            submitted_at: submitted,
            stdin_file: sub.stdin_file.clone(),
            missing: sub.missing.clone(),
            tail: Tail::new(core, sub.followed.clone()).map(Box::new),
            held: sub.held,
        };
        let Err(SendError(back)) = tracker.send(Ctl::Track(Box::new(handover))) else {
            guard.armed = false;
            return Attempt::Continues;
        };
        // The poller is gone (a shutdown under way): the job is cancelled (by the guard) and its
        // attempt ends here, once.
        if let Ctl::Track(h) = back {
            h.later.disarm();
        }
        drop(guard);
        sub.cleanup();
        Attempt::Ended(AttemptEnd::Internal(format!(
            "internal error: procman's Slurm poller stopped before following Slurm job {job}; \
             it was cancelled"
        )))
    }

    fn max_workers(&self) -> Option<usize> {
        Some(self.opts.submitters)
    }

    /// Arrays: up to [`array::STAGE`] jobs beyond the limit go into Slurm held (`--hold`), so
    /// that a batch larger than the limit still makes one `sbatch --array` per 1,000 jobs;
    /// the poller releases each (`scontrol release`) when the scheduler gives it a slot.
    fn stage_window(&self) -> usize {
        if self.opts.array > 0 && !self.opts.steps {
            array::STAGE
        } else {
            0
        }
    }

    fn shutdown(&self) {
        if let Some((tx, t)) = self.poller.lock().take() {
            let _ = tx.send(Ctl::Stop);
            let _ = t.join();
        }
        if let Some(a) = self.alloc.lock().take().filter(|a| a.owned) {
            log::info!(
                "releasing the Slurm allocation {} of procman's job steps",
                a.id
            );
            follow::cancel(&self.opts, a.id, false);
        }
    }
}

impl SlurmBackend {
    /// [`SlurmOptions::steps`]: the attempt as a job step, handed to the poller once `srun`
    /// runs.
    fn start_step(&self, report: &dyn Report, engine: &Weak<dyn Report>, work: Work) -> Attempt {
        let core = &*work.core;
        let alloc = match steps::allocation(&mut self.alloc.lock(), &self.opts, core) {
            Ok(Some(a)) => a,
            Ok(None) => return Attempt::Ended(AttemptEnd::NotStarted),
            Err(msg) => return Attempt::Ended(spawn_failed(core, None, msg)),
        };
        let (sub, tracker) = match self.prepare(core, work.attempt, true) {
            Ok(p) => p,
            Err(msg) => return Attempt::Ended(spawn_failed(core, None, msg)),
        };
        let step = match Step::spawn(
            &self.opts,
            alloc,
            core,
            work.attempt,
            sub.args(),
            sub.script().to_vec(),
        ) {
            Ok(s) => s,
            Err(msg) => {
                sub.cleanup();
                return Attempt::Ended(spawn_failed(core, None, msg));
            }
        };
        let at = Instant::now();
        report.started(core.id, step.child.id(), work.attempt, at, Waker::none());
        let handover = StepHandover {
            step,
            core: work.core.clone(),
            later: Later::new(engine, core.id, work.attempt),
            started: at,
            stdin_file: sub.stdin_file.clone(),
            missing: sub.missing.clone(),
            tail: Tail::new(core, sub.followed.clone()),
        };
        let Err(SendError(back)) = tracker.send(Ctl::TrackStep(Box::new(handover))) else {
            return Attempt::Continues;
        };
        // The poller is gone (a shutdown under way): end the step here, once.
        if let Ctl::TrackStep(h) = back {
            let mut h = *h;
            h.later.disarm();
            let child = &mut h.step.child;
            let _ = crate::sys::signal_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            h.step.cleanup();
        }
        sub.cleanup();
        Attempt::Ended(AttemptEnd::Internal(
            "internal error: procman's Slurm poller stopped before following the job step; \
             it was killed"
                .into(),
        ))
    }
}

/// A job's core for the unit tests of the Slurm backend.
#[cfg(test)]
pub(super) fn test_core(
    program: &str,
    args: &[&[u8]],
    env: Vec<crate::spec::EnvEdit>,
) -> crate::job::JobCore {
    use std::os::unix::ffi::OsStringExt;
    let mut core = crate::job::JobCore::for_tests(crate::record::JobId(1000), program);
    core.args = args
        .iter()
        .map(|a| std::ffi::OsString::from_vec(a.to_vec()))
        .collect();
    core.env = env.into();
    core
}
