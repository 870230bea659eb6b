//! One small error type per operation.

use std::fmt;

use crate::record::JobId;

/// Why [`start_process`](crate::Handle::start_process) refused a job. Nothing was queued
/// and no handler will be called: the spec (with its handler) is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartError {
    /// The program name is empty.
    EmptyProgram,
    /// A NUL byte in the program, an argument, the interpreter, a path or the environment;
    /// names which one (for example `argument 2`).
    NulByte(String),
    /// An environment variable name that is empty or contains `=`.
    BadEnvName(String),
    /// The job runs after a job this manager does not know (never submitted, or deleted).
    UnknownDependency(JobId),
    /// The job declares more CPUs or memory than the manager will ever have.
    NeverFits {
        /// What the job asked for, as a sentence.
        asked: String,
        /// The manager's capacity, as a sentence.
        capacity: String,
    },
    /// The input file is also the job's log or error file (the same path, up to `.`
    /// components), and a regular file or none yet: opening the output would truncate the
    /// input (`/dev/null`, a terminal or a FIFO may be both). Aliases that only the file
    /// system can tell (a symbolic or hard link, `../dir/file`) are refused when the job is
    /// spawned instead ([`JobStatus::SpawnFailed`](crate::JobStatus::SpawnFailed)).
    InputIsOutput {
        /// The input file's path.
        path: std::path::PathBuf,
        /// Which output it is: `"log file"` or `"error file"`.
        output: &'static str,
    },
    /// The job asks for a memory limit or CPU weight
    /// ([`JobSpec::memory_limit`](crate::JobSpec::memory_limit),
    /// [`JobSpec::cpu_weight`](crate::JobSpec::cpu_weight)) that this manager can never apply:
    /// its containment is not [`Containment::Cgroup`](crate::Containment::Cgroup), or the
    /// host does not delegate the controller needed. Says which and why.
    LimitUnavailable(String),
    /// The manager is shutting down or was shut down.
    ShutDown,
    /// [`run`](crate::Handle::run) only: another thread deleted the job (with
    /// [`delete_job`](crate::Handle::delete_job)) before it ended and its handler
    /// returned. The job was killed; its handler still runs once.
    Deleted(JobId),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::EmptyProgram => f.write_str("the program name is empty"),
            StartError::NulByte(what) => write!(f, "{what} contains a NUL byte"),
            StartError::BadEnvName(name) => {
                write!(
                    f,
                    "bad environment variable name {name:?} (empty or contains '=')"
                )
            }
            StartError::UnknownDependency(id) => {
                write!(
                    f,
                    "the job runs after job {id}, which this manager does not know"
                )
            }
            StartError::LimitUnavailable(why) => {
                write!(f, "the job's resource limit cannot be applied: {why}")
            }
            StartError::NeverFits { asked, capacity } => write!(
                f,
                "the job can never start: it declares {asked}, but the manager has {capacity}"
            ),
            StartError::InputIsOutput { path, output } => write!(
                f,
                "the input file {} is also the job's {output}: writing the {output} would \
                 destroy the input",
                path.display()
            ),
            StartError::ShutDown => f.write_str("the process manager is shut down"),
            StartError::Deleted(id) => write!(f, "job {id} was deleted before it ended"),
        }
    }
}

impl std::error::Error for StartError {}

/// Why [`ProcessManager::builder`](crate::ProcessManager::builder)'s `build` or a limit change
/// ([`set_limit`](crate::Handle::set_limit),
/// [`set_capacities`](crate::Handle::set_capacities)) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// A limit or capacity of zero: no job could ever start.
    ZeroLimit(&'static str),
    /// A thread could not be created.
    Thread(std::io::Error),
    /// The containment asked for ([`Containment::Cgroup`](crate::Containment::Cgroup) or
    /// [`Containment::Subreaper`](crate::Containment::Subreaper)) is not available here; the
    /// text says why.
    Containment(String),
    /// A limit change after [`shutdown`](crate::Handle::shutdown) began: nothing was
    /// changed and no thread was started.
    ShutDown,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroLimit(what) => write!(f, "{what} must be at least 1"),
            BuildError::Thread(e) => write!(f, "cannot create a manager thread: {e}"),
            BuildError::Containment(why) => write!(f, "containment not available: {why}"),
            BuildError::ShutDown => f.write_str("the process manager is shut down"),
        }
    }
}

impl std::error::Error for BuildError {}

/// The manager does not know the id: it was never given out by this manager, or the job was
/// deleted (see [`ProcessManager`](crate::ProcessManager), "Unknown ids"). Returned by
/// [`kill_process`](crate::Handle::kill_process),
/// [`delete_job`](crate::Handle::delete_job) and
/// [`job_data`](crate::Handle::job_data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownJob(pub JobId);

impl fmt::Display for UnknownJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown job {}", self.0)
    }
}

impl std::error::Error for UnknownJob {}

/// Why [`wait`](crate::Handle::wait) returned without a final record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitError {
    /// The id is unknown (never given out, or the job was deleted before or while waiting).
    UnknownJob(JobId),
    /// Called from the job's own output observer: the job cannot end before its observer
    /// returns, so the wait would never end. Refused at once; the job goes on.
    WouldDeadlock(JobId),
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::UnknownJob(id) => write!(f, "unknown job {id}"),
            WaitError::WouldDeadlock(id) => write!(
                f,
                "job {id} cannot be waited for from its own output observer (it would never end)"
            ),
        }
    }
}

impl std::error::Error for WaitError {}

/// [`pause`](crate::Handle::pause) or [`resume`](crate::Handle::resume) after
/// [`shutdown`](crate::Handle::shutdown) began: nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutDown;

impl fmt::Display for ShutDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the process manager is shut down")
    }
}

impl std::error::Error for ShutDown {}

/// Why [`wait_timeout`](crate::Handle::wait_timeout) or
/// [`wait_deadline`](crate::Handle::wait_deadline) returned without a final record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitTimeoutError {
    /// The deadline passed first; the job goes on.
    Timeout,
    /// The id is unknown (never submitted, or deleted).
    UnknownJob(JobId),
    /// Called from the job's own output observer: refused at once, as
    /// [`WaitError::WouldDeadlock`].
    WouldDeadlock(JobId),
}

impl fmt::Display for WaitTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitTimeoutError::Timeout => f.write_str("timed out waiting for the job"),
            WaitTimeoutError::UnknownJob(id) => write!(f, "unknown job {id}"),
            WaitTimeoutError::WouldDeadlock(id) => WaitError::WouldDeadlock(*id).fmt(f),
        }
    }
}

impl std::error::Error for WaitTimeoutError {}

/// The text of a panic payload (`&str` or `String`), or a placeholder saying it is not a
/// string. Used wherever a caught panic is reported (workers, readers, handlers, the Slurm
/// poller, the retry timer, plugins, signal slots).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<panic payload is not a string>".to_owned()
    }
}
