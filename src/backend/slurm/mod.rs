//! The Slurm backend: each admitted attempt is submitted with `sbatch --parsable`, followed by
//! one poller thread shared by all of the manager's Slurm jobs, and ended with `scancel`.
//!
//! - *submit* ([`SlurmBackend::run_attempt`]): the worker thread writes a small batch script
//!   (`exec` of the program with every word shell-quoted) to `sbatch`'s standard input, with
//!   the log and error files as `--output`/`--error`, the input as `--input`, `--chdir`, the job
//!   name, declared CPUs and memory, partition, account and a whole-minute `--time` backstop.
//!   A refusal ends the attempt as `SpawnFailed` with Slurm's own message. The Slurm job id goes
//!   to [`Report::started`] (it becomes the record's `pid`).
//! - *poll* (`poller.rs`): one `squeue -t all -j id,id,...` per round for every tracked job,
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
//!
//! - `options.rs`: [`SlurmOptions`]. `submit.rs`: `sbatch`'s options and the call;
//!   `script.rs`: the batch script.
//! - `poller.rs`: the poller thread. `ending.rs`: reading `squeue`/`sacct`/`scontrol` and
//!   judging Slurm's final state.
//! - `follow.rs`: the worker's wait for its job, and `scancel`.

mod ending;
mod follow;
mod options;
mod poller;
mod script;
mod submit;

use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use crossbeam_channel::{unbounded, Sender};
use parking_lot::Mutex;

use follow::{follow, CancelOnDrop, Followed};
pub use options::SlurmOptions;
use poller::{Ctl, Poller};
use submit::Submission;

use crate::backend::{spawn_failed, Backend, Report};
use crate::job::{AttemptEnd, Work};
use crate::sys::Waker;

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
    fn run_attempt(&self, report: &dyn Report, work: Work, waker: Waker) -> AttemptEnd {
        let core = &*work.core;
        if core.observer.is_some() {
            log::warn!(
                "job {}: output observers are not called for Slurm jobs; the output goes to the log files only",
                core.id
            );
        }
        let sub = match Submission::prepare(core, work.attempt, &self.opts) {
            Ok(s) => s,
            Err(msg) => return spawn_failed(core, None, msg),
        };
        let tracker = match self.poller() {
            Ok(t) => t,
            Err(msg) => {
                sub.cleanup();
                return spawn_failed(core, None, msg);
            }
        };
        let submitted = Instant::now();
        let job = match sub.submit(&self.opts) {
            Ok(j) => j,
            Err(msg) => {
                sub.cleanup();
                return spawn_failed(core, None, msg);
            }
        };
        log::debug!(
            "job {}: Slurm job {job} (attempt {})",
            core.id,
            work.attempt
        );
        report.started(core.id, job, work.attempt, submitted, waker);
        // Should this worker unwind from a panic before the job's end is known, the Slurm job
        // is cancelled (the panic rule, DESIGN.md).
        let mut guard = CancelOnDrop {
            opts: &self.opts,
            job,
            armed: true,
        };
        report.set_backend_state(core.id, "PENDING");
        let (tx, rx) = unbounded();
        // If the poller is gone, `rx` reports a disconnect and `follow` handles it.
        let _ = tracker.send(Ctl::Track(job, tx));
        let end = follow(
            report,
            Followed {
                core,
                job,
                rx: &rx,
                tracker: &tracker,
                opts: &self.opts,
                submitted_at: submitted,
            },
        );
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

/// A job's core for the unit tests of the Slurm backend.
#[cfg(test)]
pub(super) fn test_core(
    program: &str,
    args: &[&[u8]],
    env: Vec<crate::spec::EnvEdit>,
) -> crate::job::JobCore {
    use std::os::unix::ffi::OsStringExt;
    crate::job::JobCore {
        id: crate::record::JobId(1000),
        program: program.into(),
        args: args
            .iter()
            .map(|a| std::ffi::OsString::from_vec(a.to_vec()))
            .collect(),
        interpreter: None,
        input: crate::spec::Input::Null,
        log_file: None,
        merge_error: false,
        error_file: None,
        cwd: None,
        env,
        timeout: None,
        grace: std::time::Duration::from_secs(2),
        observer: None,
        progress: None,
        kill_leftovers: true,
        cpus: 0,
        memory: 0,
        memory_limit: None,
        cpu_weight: None,
        kill_requested: std::sync::atomic::AtomicBool::new(false),
    }
}
