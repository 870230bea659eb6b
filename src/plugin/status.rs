//! How a plugin or pipeline ended: [`PluginStatus`] (CCP4i2's numbered constants) and
//! [`FinishStatus`] (what `finished` carries).

use std::fmt;

use crate::record::{JobId, JobStatus};

/// How a plugin or pipeline ended (CCP4i2's `finishStatus`), or `Running`.
///
/// The numbers ([`code`](Self::code)) follow CCP4i2's `CPluginScript` constants where they are
/// stable across its versions: `SUCCEEDED = 0` and `FAILED = 1` everywhere. `RUNNING = 2` and
/// `UNSATISFACTORY = 3` are the values of the current `core/CCP4PluginScript.py`; older CCP4i2
/// releases numbered `INTERRUPTED` and `MARK_TO_DELETE` differently, so procman gives
/// `Interrupted` a number of its own, 4, and has no `MARK_TO_DELETE` (a database instruction,
/// not a way for a process to end). Never compare codes across systems without this table.
///
/// | variant | code | a plugin ends so when |
/// |---|---|---|
/// | `Succeeded` | 0 | the program exited with 0 and its outputs passed the checks |
/// | `Failed` | 1 | bad input, a command that could not be built or started, a non-zero exit, a crash, a timeout, failed output checks |
/// | `Running` | 2 | (never an end status: the run is under way) |
/// | `Unsatisfactory` | 3 | the program ran, but post-processing judged the result poor |
/// | `Interrupted` | 4 | it was killed ([`Plugin::kill`](crate::Plugin::kill), a pipeline's terminate or failure) |
// Exhaustive on purpose: CCP4i2's fixed, numbered constants (see the table), which ported
// CCP4i2 code switches on; a new one would be a deliberate, breaking change of that table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum PluginStatus {
    /// CCP4i2 `SUCCEEDED` (0).
    Succeeded = 0,
    /// CCP4i2 `FAILED` (1).
    Failed = 1,
    /// CCP4i2 `RUNNING` (2): started and not yet finished.
    Running = 2,
    /// CCP4i2 `UNSATISFACTORY` (3): finished, with poor results. Pipelines treat it as success.
    Unsatisfactory = 3,
    /// CCP4i2 `INTERRUPTED` (procman: 4): killed before or while running.
    Interrupted = 4,
}

impl PluginStatus {
    /// The numeric code (see the table on [`PluginStatus`]).
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The status with this numeric code, `None` for an unknown code.
    pub fn from_code(code: i32) -> Option<PluginStatus> {
        Some(match code {
            0 => PluginStatus::Succeeded,
            1 => PluginStatus::Failed,
            2 => PluginStatus::Running,
            3 => PluginStatus::Unsatisfactory,
            4 => PluginStatus::Interrupted,
            _ => return None,
        })
    }

    /// True for every status but `Running`.
    pub fn is_final(self) -> bool {
        self != PluginStatus::Running
    }

    /// True for `Succeeded` and `Unsatisfactory`: the step produced its outputs, so a pipeline
    /// may go on.
    pub fn is_success(self) -> bool {
        matches!(self, PluginStatus::Succeeded | PluginStatus::Unsatisfactory)
    }

    /// The CCP4i2 constant's name: `SUCCEEDED`, `FAILED`, `RUNNING`, `UNSATISFACTORY`,
    /// `INTERRUPTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginStatus::Succeeded => "SUCCEEDED",
            PluginStatus::Failed => "FAILED",
            PluginStatus::Running => "RUNNING",
            PluginStatus::Unsatisfactory => "UNSATISFACTORY",
            PluginStatus::Interrupted => "INTERRUPTED",
        }
    }

    /// How a job's end maps before post-processing: `Finished` → `Succeeded` (output checks may
    /// still turn it into `Failed` or `Unsatisfactory`); `Killed` and `Cancelled` →
    /// `Interrupted`; `Pending`, `Queued` and `Running` → `Running`; every other end → `Failed`.
    pub fn from_job_status(status: JobStatus) -> PluginStatus {
        match status {
            JobStatus::Finished => PluginStatus::Succeeded,
            JobStatus::Killed | JobStatus::Cancelled => PluginStatus::Interrupted,
            JobStatus::Pending | JobStatus::Queued | JobStatus::Running => PluginStatus::Running,
            JobStatus::Failed
            | JobStatus::Crashed
            | JobStatus::TimedOut
            | JobStatus::SpawnFailed
            | JobStatus::DependencyFailed
            | JobStatus::InternalError => PluginStatus::Failed,
        }
    }
}

impl fmt::Display for PluginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `finished` carries (CCP4i2's `{finishStatus, jobId, pid}` plus a name and a reason).
// Exhaustive on purpose: callers build one to emit on a child's `finished` by hand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishStatus {
    /// How the run ended (never `Running`).
    pub finish_status: PluginStatus,
    /// The plugin's job id: its job number, such as `1.2` (see [`PluginInfo::job_number`](crate::PluginInfo::job_number)).
    pub job_id: String,
    /// The plugin's name, such as `prosmart_refmac_2`.
    pub name: String,
    /// The manager's id for the plugin's job (CCP4i2's `pid` is the process manager's id, not
    /// the OS pid); `None` when no job was submitted, and always for a pipeline.
    pub pid: Option<JobId>,
    /// Why it ended so, for a person: the job's [`JobRecord::describe_end`](crate::JobRecord::describe_end) ("exited with code
    /// 1", "terminated by SIGSEGV (signal 11)") or the reason a check gave.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_keep_the_stable_ccp4i2_numbers() {
        assert_eq!(PluginStatus::Succeeded.code(), 0);
        assert_eq!(PluginStatus::Failed.code(), 1);
        for code in 0..5 {
            assert_eq!(PluginStatus::from_code(code).unwrap().code(), code);
        }
        assert_eq!(PluginStatus::from_code(5), None);
        assert_eq!(PluginStatus::from_code(-1), None);
    }

    #[test]
    fn job_ends_map_to_plugin_statuses() {
        use JobStatus::*;
        for (job, plugin) in [
            (Finished, PluginStatus::Succeeded),
            (Failed, PluginStatus::Failed),
            (Crashed, PluginStatus::Failed),
            (TimedOut, PluginStatus::Failed),
            (SpawnFailed, PluginStatus::Failed),
            (DependencyFailed, PluginStatus::Failed),
            (Killed, PluginStatus::Interrupted),
            (Cancelled, PluginStatus::Interrupted),
            (Running, PluginStatus::Running),
        ] {
            assert_eq!(PluginStatus::from_job_status(job), plugin, "{job}");
        }
    }
}
