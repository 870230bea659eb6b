//! An admitted attempt as a backend sees it: the job's fixed description ([`JobCore`]), the
//! attempt handed to a worker ([`Work`]), and how the attempt ended ([`AttemptEnd`]). Plain
//! data: the engine makes these, backends read them and report back.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::record::{JobId, ResourceUsage};
use crate::spec::{EnvEdit, Input, Observer};
use crate::sys::Exit;
use crate::watch::ProgressParser;

/// What a worker needs to run a job: fixed when the job is submitted. Its strings and lists
/// are boxed (no spare capacity, 16 bytes each instead of 24): every job in flight holds one,
/// and a 10,000-job Slurm array in flight should cost at most 1 KiB per job (issue 13).
pub(crate) struct JobCore {
    pub(crate) id: JobId,
    pub(crate) program: Box<OsStr>,
    pub(crate) args: Box<[OsString]>,
    pub(crate) interpreter: Option<Box<OsStr>>,
    pub(crate) input: Input,
    pub(crate) log_file: Option<Box<Path>>,
    /// Stderr goes into the log file (`merge_error_into_log`).
    pub(crate) merge_error: bool,
    /// Stderr's own file; `None` when merged into the log (no second copy of the log's path)
    /// or discarded. See [`JobCore::error_path`].
    pub(crate) error_file: Option<Box<Path>>,
    pub(crate) cwd: Option<Box<Path>>,
    pub(crate) env: Box<[EnvEdit]>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) grace: Duration,
    pub(crate) observer: Option<Observer>,
    /// `JobSpec::progress`: makes the job observed (`output::with_progress`).
    pub(crate) progress: Option<ProgressParser>,
    pub(crate) kill_leftovers: bool,
    /// Declared CPUs and memory (bytes), for backends that pass them on (Slurm).
    pub(crate) cpus: u32,
    pub(crate) memory: u64,
    /// `memory.max` and `cpu.weight` of the job's cgroup (checked at submission).
    pub(crate) memory_limit: Option<u64>,
    pub(crate) cpu_weight: Option<u32>,
    /// Set (with the lock held) by `kill`; read by the worker without the lock.
    pub(crate) kill_requested: AtomicBool,
    /// True while the scheduler has the job staged (given to a backend beyond the job limit,
    /// to be held there: Slurm arrays; `Backend::stage_window`), false once it holds a slot.
    /// Set with the engine's lock held; read by the backend without it.
    pub(crate) held: AtomicBool,
}

impl JobCore {
    /// The file stderr is written to: its own file, or the log when merged.
    pub(crate) fn error_path(&self) -> Option<&Path> {
        if self.merge_error {
            self.log_file.as_deref()
        } else {
            self.error_file.as_deref()
        }
    }

    /// For unit tests: job `id` running `program` with no arguments, no files, no timeout,
    /// a 2 s grace and nothing declared; tests set the fields they need.
    #[cfg(test)]
    pub(crate) fn for_tests(id: JobId, program: &str) -> JobCore {
        JobCore {
            id,
            program: OsStr::new(program).into(),
            args: Box::default(),
            interpreter: None,
            input: Input::Null,
            log_file: None,
            merge_error: false,
            error_file: None,
            cwd: None,
            env: Box::default(),
            timeout: None,
            grace: Duration::from_secs(2),
            observer: None,
            progress: None,
            kill_leftovers: true,
            cpus: 0,
            memory: 0,
            memory_limit: None,
            cpu_weight: None,
            kill_requested: AtomicBool::new(false),
            held: AtomicBool::new(false),
        }
    }
}

/// One attempt, handed to a worker.
pub(crate) struct Work {
    pub(crate) core: Arc<JobCore>,
    pub(crate) attempt: u32,
}

/// How an attempt ended, reported by its worker.
pub(crate) enum AttemptEnd {
    /// A kill arrived before the program was spawned.
    NotStarted,
    SpawnFailed(String),
    /// A panic on a thread serving the attempt (its worker, an output reader, the Slurm
    /// poller) ended it; the job's processes were killed and reaped. The text starts with
    /// "internal error:". Ends the job as `InternalError`, never retried.
    Internal(String),
    Exited {
        exit: Option<Exit>,
        usage: ResourceUsage,
        timed_out: bool,
        error: Option<String>,
    },
}
