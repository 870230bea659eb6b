//! What a job is and what it ended as: [`JobId`], [`JobStatus`], [`JobRecord`].
//!
//! The state machine (DESIGN.md, "Job state machine"):
//!
//! ```text
//!            +--------------------------- kill / shutdown --------------------+
//!            |                                                                v
//! submit -> Pending --admit--> Running --reaped--> Finished | Failed | Crashed | TimedOut | Killed
//!            |   ^                |                          (or back to Pending for a retry)
//!            |   +----retry-------+
//!            +--> Cancelled (killed before it started)
//!            +--> DependencyFailed (a job it runs after did not finish successfully)
//!            +--> SpawnFailed (bad program, input file, log file, working directory, ...)
//!
//! On Slurm: admit --sbatch--> Queued (in Slurm's queue) --Slurm runs it--> Running --> ...
//! ```
//!
//! A record is final once its status is final; it never changes after that,
//! except for the handler's outcome, which is filled in when the handler returns.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A job's identifier, unique within one [`ProcessManager`](crate::ProcessManager).
///
/// Identifiers start at 1000 (the CCP4i2 convention) and are never reused by a manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a job is in its life, or how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobStatus {
    /// Queued: waiting for a slot, for resources, for its dependencies, or for a retry.
    Pending,
    /// The program is running (it has an OS pid; on Slurm, the Slurm job id).
    Running,
    /// The program exited with code 0.
    Finished,
    /// The program exited with a non-zero code.
    Failed,
    /// The program was ended by a signal that procman did not send (for example SIGSEGV).
    Crashed,
    /// The job ran past its timeout and procman ended its process group.
    TimedOut,
    /// The job was killed while running, by [`kill_process`](crate::Handle::kill_process),
    /// [`delete_job`](crate::Handle::delete_job) or a cancelling shutdown.
    Killed,
    /// The job was killed before it started; it never ran (again).
    Cancelled,
    /// The job could not be started: missing or non-executable program, bad working directory,
    /// unreadable input file, unwritable log file. [`JobRecord::error`] says why.
    SpawnFailed,
    /// A job it runs after did not finish successfully, so it never started.
    DependencyFailed,
    /// procman itself failed while handling the job: a thread serving it (its worker, its
    /// output reader, the Slurm poller) panicked. The job's processes were killed and reaped
    /// (a Slurm job was cancelled), the handler runs once as for any other end, and
    /// [`JobRecord::error`] starts with `internal error:` and names the thread and the panic.
    /// Never retried. See DESIGN.md, "The panic rule".
    InternalError,
    /// Submitted to a cluster's queue (Slurm) and waiting there: it holds one of the manager's
    /// slots and has the cluster's job id in [`JobRecord::pid`], but its program has not
    /// started. Becomes `Running` once the cluster reports it running. The local backend never
    /// reports it. Not listed by [`running_processes`](crate::Handle::running_processes).
    Queued,
}

impl JobStatus {
    /// True once the job has ended (every status but `Pending`, `Queued` and `Running`).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            JobStatus::Pending | JobStatus::Queued | JobStatus::Running
        )
    }

    /// True only for `Finished` (the program ran and exited with code 0).
    pub fn is_success(self) -> bool {
        self == JobStatus::Finished
    }

    /// The lower-case name used by CCP4i2's `getJobData(pid, 'status')`:
    /// `pending`, `running`, `finished`, `failed`, `timeout`, and for procman's extra statuses
    /// `crashed`, `killed`, `cancelled`, `spawn_failed`, `dependency_failed`, `internal_error`,
    /// `queued`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Finished => "finished",
            JobStatus::Failed => "failed",
            JobStatus::Crashed => "crashed",
            JobStatus::TimedOut => "timeout",
            JobStatus::Killed => "killed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::SpawnFailed => "spawn_failed",
            JobStatus::DependencyFailed => "dependency_failed",
            JobStatus::InternalError => "internal_error",
            JobStatus::Queued => "queued",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one job cost, measured by the kernel for the job's direct child and the descendants it
/// waited for (Linux `wait4`). See DESIGN.md, "Resource usage", for what the figures mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ResourceUsage {
    /// Wall-clock time from spawn to reaping.
    pub wall: Duration,
    /// User CPU time, `None` where the platform path cannot tell. In cgroup containment, of
    /// every process of the job's cgroup (`cpu.stat`); else of the program and the children it
    /// waited for (`wait4`).
    pub user_cpu: Option<Duration>,
    /// System CPU time, `None` where the platform path cannot tell (counted as `user_cpu`).
    pub system_cpu: Option<Duration>,
    /// Peak resident set size in bytes (`ru_maxrss`, of the largest process), `None` where
    /// unknown; in cgroup containment with the memory controller, the cgroup's `memory.peak`
    /// (the whole tree together).
    pub peak_memory: Option<u64>,
}

/// A snapshot of one job, returned by [`job_data`](crate::Handle::job_data) and given to
/// the job's handler. Once the status is final, the record no longer changes (but for
/// [`handler_error`](Self::handler_error)).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct JobRecord {
    /// The job's identifier.
    pub id: JobId,
    /// The program, as given to [`JobSpec::new`](crate::JobSpec::new).
    pub program: OsString,
    /// The arguments, as given.
    pub args: Vec<OsString>,
    /// The interpreter, if the job has one (argv = interpreter, program, args).
    pub interpreter: Option<OsString>,
    /// Current status.
    pub status: JobStatus,
    /// Exit code, when the program exited normally.
    pub exit_code: Option<i32>,
    /// The signal that ended the program, when one did.
    pub signal: Option<i32>,
    /// The OS process id of the last attempt (also the id of its process group). Under the
    /// Slurm backend ([`Builder::slurm`](crate::Builder::slurm)) it is the Slurm job id.
    pub pid: Option<u32>,
    /// Under Slurm arrays ([`SlurmOptions::array`](crate::slurm::SlurmOptions::array)): the
    /// last attempt's task in the array whose job id is [`pid`](Self::pid), so Slurm's
    /// commands name it `PID_TASK` (`scancel 4242_7`, `sacct -j 4242_7`). `None` for jobs
    /// that are not array tasks (a retry is a job of its own).
    pub array_task: Option<u32>,
    /// When the job was submitted.
    pub queued_at: SystemTime,
    /// When the last attempt was spawned.
    pub started_at: Option<SystemTime>,
    /// When the job became final.
    pub finished_at: Option<SystemTime>,
    /// The log file (stdout), if any.
    pub log_file: Option<PathBuf>,
    /// The error file (stderr), if any.
    pub error_file: Option<PathBuf>,
    /// Why the job failed to start, or another error procman met (for example a full disk while
    /// copying observed output). `None` when all went well.
    pub error: Option<String>,
    /// How many attempts were made: spawned, or failed to spawn (0 if none was; more than 1
    /// with retries). An attempt cancelled before it was spawned does not count.
    pub attempts: u32,
    /// What the last attempt cost; `None` until it ended or when it never started.
    pub usage: Option<ResourceUsage>,
    /// The summary of the last attempt's live samples of its whole process group (peaks and
    /// means; with [`Builder::sample_interval`](crate::Builder::sample_interval)): so far while
    /// it runs, final with the record. `None` when sampling is off or no sample was taken.
    /// Boxed: a pending job's record stays small.
    pub sampled: Option<Box<crate::watch::UsageSummary>>,
    /// The panic message of the job's handler, if it panicked, or a message starting with
    /// `internal error:` if the dispatcher thread itself panicked while delivering the job's
    /// completion (the handler still ran exactly once). Filled in after the handler returns, so
    /// the handler itself always sees `None`.
    pub handler_error: Option<String>,
    /// The job's priority (higher starts first).
    pub priority: i32,
    /// The jobs this one runs after.
    pub after: Vec<JobId>,
    /// The job's raw state as its backend reports it, for backends that have one: under the
    /// Slurm backend, Slurm's own state (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`,
    /// `TIMEOUT`, `CANCELLED`, `NODE_FAIL`, `OUT_OF_MEMORY`, ...) of the last attempt, final
    /// once the record is. `None` for the local backend.
    pub backend_state: Option<String>,
}

impl JobRecord {
    /// A pending record of job `id` running `program`, queued now, every other field empty:
    /// for code outside procman that needs a record of its own (a test of a handler or of a
    /// plugin's `process_output_files`, say). Set the public fields as needed. Records of real
    /// jobs come from the manager.
    ///
    /// ```
    /// use procman::{JobId, JobRecord, JobStatus};
    ///
    /// let mut record = JobRecord::new(JobId(7), "refmac5");
    /// record.status = JobStatus::Failed;
    /// record.exit_code = Some(2);
    /// assert_eq!(record.ccp4i2_exit_status(), 1);
    /// ```
    pub fn new(id: JobId, program: impl Into<OsString>) -> JobRecord {
        JobRecord {
            id,
            program: program.into(),
            args: Vec::new(),
            interpreter: None,
            status: JobStatus::Pending,
            exit_code: None,
            signal: None,
            pid: None,
            array_task: None,
            queued_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
            log_file: None,
            error_file: None,
            error: None,
            attempts: 0,
            usage: None,
            sampled: None,
            handler_error: None,
            priority: 0,
            after: Vec::new(),
            backend_state: None,
        }
    }

    /// CCP4i2's success flag (its `getJobData(pid, 'exitStatus')`): 0 when the job finished
    /// successfully ([`JobStatus::Finished`]), 1 otherwise, also while it is still pending or
    /// running. Not the program's exit code: that is [`exit_code`](Self::exit_code).
    pub fn ccp4i2_exit_status(&self) -> i32 {
        if self.status.is_success() {
            0
        } else {
            1
        }
    }

    /// A sentence describing how the job ended: "exited with code 3",
    /// "terminated by SIGSEGV (signal 11)", "timed out", "never started: ...".
    pub fn describe_end(&self) -> String {
        let signal = self.signal.map(describe_signal);
        match (self.status, self.exit_code, signal) {
            (JobStatus::Pending, ..) => "pending".into(),
            (JobStatus::Running, ..) => "running".into(),
            (JobStatus::Queued, ..) => "queued in the cluster".into(),
            (JobStatus::TimedOut, _, Some(s)) => format!("timed out, {s}"),
            (JobStatus::TimedOut, ..) => "timed out".into(),
            (JobStatus::Killed, _, Some(s)) => format!("killed, {s}"),
            (JobStatus::Killed, ..) => "killed".into(),
            (JobStatus::Cancelled, ..) => "cancelled before it started".into(),
            (JobStatus::InternalError, ..) => self
                .error
                .clone()
                .unwrap_or_else(|| "internal error".into()),
            (JobStatus::SpawnFailed | JobStatus::DependencyFailed, ..) => format!(
                "never started: {}",
                self.error.as_deref().unwrap_or("unknown cause")
            ),
            (_, Some(code), _) => format!("exited with code {code}"),
            (_, None, Some(s)) => s,
            (_, None, None) => self.status.to_string(),
        }
    }
}

/// Names a signal the way a user reads it: `terminated by SIGSEGV (signal 11)`.
pub fn describe_signal(signal: i32) -> String {
    match signal_name(signal) {
        Some(name) => format!("terminated by {name} (signal {signal})"),
        None => format!("terminated by signal {signal}"),
    }
}

/// The conventional name of a signal number on this system, such as `SIGTERM` for 15
/// (numbered as this system numbers them: `SIGUSR1` is 10 on Linux, 30 on macOS).
pub fn signal_name(signal: i32) -> Option<&'static str> {
    crate::sys::signal_name(signal)
}

/// What [`kill_process`](crate::Handle::kill_process) did.
// Exhaustive on purpose: the three cases split a job's life (pending, running, over), and
// callers match on them to know what the kill did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillOutcome {
    /// The job was pending; it is now `Cancelled` and will never start.
    Cancelled,
    /// The job was running (or handed to a worker): its process group gets SIGTERM, then SIGKILL
    /// after the grace period if it is still alive. It ends as `Killed`, or as `Cancelled` if the
    /// worker saw the kill before spawning it.
    Killing,
    /// The job had already ended (or a kill was already under way): nothing was done.
    AlreadyFinished,
}
