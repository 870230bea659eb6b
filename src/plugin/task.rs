//! What one step does ([`Task`], CCP4i2's overridable methods), who it is ([`PluginInfo`]) and
//! the common task, a program fed a keyword script ([`ProgramTask`]).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::PluginStatus;
use crate::record::JobRecord;
use crate::spec::JobSpec;

/// A plugin's identity: name, job number and work directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// The name, such as `prosmart_refmac` or, for its second child, `prosmart_refmac_2`.
    pub name: String,
    /// The job number, such as `7` or, for its second child, `7.2`.
    pub job_number: String,
    /// The work directory; the job runs there and its log is `log.txt` in it. Created when the
    /// plugin runs.
    pub work_dir: PathBuf,
}

impl PluginInfo {
    /// An identity from its parts.
    pub fn new(
        name: impl Into<String>,
        job_number: impl Into<String>,
        work_dir: impl AsRef<Path>,
    ) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            job_number: job_number.into(),
            work_dir: work_dir.as_ref().to_owned(),
        }
    }

    /// The identity of child `n` (CCP4i2's `makePluginObject` convention): work directory
    /// `<work_dir>/job_<n>`, name `<name>_<n>`, job number `<job_number>.<n>`.
    pub fn child(&self, n: u32) -> PluginInfo {
        PluginInfo {
            name: format!("{}_{n}", self.name),
            job_number: format!("{}.{n}", self.job_number),
            work_dir: self.work_dir.join(format!("job_{n}")),
        }
    }

    /// `<work_dir>/log.txt`, where a plugin's program writes its standard output (unless its
    /// command names another log file); standard error goes to `log_err.txt` beside it.
    pub fn log_file(&self) -> PathBuf {
        self.work_dir.join("log.txt")
    }

    /// A path in the work directory (CCP4i2's `makeFileName`); an absolute `file` is returned
    /// unchanged.
    pub fn path(&self, file: impl AsRef<Path>) -> PathBuf {
        self.work_dir.join(file)
    }
}

/// What one step does: CCP4i2's overridable `CPluginScript` methods.
///
/// The methods run one after the other, each at most once per run, with the task locked:
/// `check_input_data` and `make_command_and_script` on the thread that calls
/// [`Plugin::process`](crate::Plugin::process) or [`Plugin::process_sync`](crate::Plugin::process_sync); `process_output_files` on the manager's
/// dispatcher thread (async) or the calling thread (sync), and only when the program exited
/// with code 0. A panic in any of them is caught and makes the run `FAILED`.
pub trait Task: Send + 'static {
    /// Checks the inputs before anything runs. `Err(reason)` ends the run as `FAILED` without
    /// starting a program. The work directory already exists. Default: nothing to check.
    fn check_input_data(&mut self, info: &PluginInfo) -> Result<(), String> {
        let _ = info;
        Ok(())
    }

    /// Builds the job: program, arguments, stdin (the keyword script), timeout. Unless the spec
    /// says otherwise, the plugin sets the working directory to `info.work_dir` and the log file
    /// to `info.log_file()`. The spec must not have an `on_finish` handler (the plugin owns it;
    /// one makes the run `FAILED`). `Err(reason)` ends the run as `FAILED`.
    fn make_command_and_script(&mut self, info: &PluginInfo) -> Result<JobSpec, String>;

    /// Post-processing after the program exited with code 0: check and read the outputs.
    /// `Ok(status)` ends the run with that status (`Running` is not an end and counts as
    /// `FAILED`); `Err(reason)` ends it as `FAILED` with that reason. Default: `Succeeded`.
    fn process_output_files(
        &mut self,
        info: &PluginInfo,
        record: &JobRecord,
    ) -> Result<PluginStatus, String> {
        let _ = (info, record);
        Ok(PluginStatus::Succeeded)
    }
}

/// The common task: one program, a keyword script on its stdin, input files that must exist
/// before it runs and output files it must write (CCP4i2's typical wrapper).
///
/// Relative paths are taken in the plugin's work directory. The script is written to
/// `com.txt` there (CCP4i2's command file) and fed to the program's stdin.
///
/// ```
/// use procman::{Plugin, PluginInfo, PluginStatus, ProcessManager, ProgramTask};
///
/// let manager = ProcessManager::new();
/// let dir = std::env::temp_dir().join(format!("procman-task-doc-{}", std::process::id()));
/// let task = ProgramTask::new("sh")
///     .args(["-c", "while read k v; do echo \"$k=$v\"; done > out.txt"])
///     .script_line("NCYCLES 5")
///     .script_line("WEIGHT 0.3")
///     .output_file("out.txt");
/// let plugin = Plugin::new(&manager, PluginInfo::new("demo", "1", &dir), task);
/// let end = plugin.process_sync().unwrap();
/// assert_eq!(end.finish_status, PluginStatus::Succeeded);
/// assert_eq!(std::fs::read_to_string(dir.join("out.txt")).unwrap(), "NCYCLES=5\nWEIGHT=0.3\n");
/// # std::fs::remove_dir_all(&dir).ok();
/// ```
#[derive(Clone, Debug)]
pub struct ProgramTask {
    program: OsString,
    args: Vec<OsString>,
    interpreter: Option<OsString>,
    script: Vec<String>,
    inputs: Vec<PathBuf>,
    outputs: Vec<PathBuf>,
    timeout: Option<Duration>,
}

impl ProgramTask {
    /// Runs `program` (looked up in `PATH` when it has no `/`) with no arguments, an empty
    /// script, no required inputs or expected outputs, no timeout.
    pub fn new(program: impl AsRef<OsStr>) -> ProgramTask {
        ProgramTask {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            interpreter: None,
            script: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            timeout: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> ProgramTask {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> ProgramTask
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Runs the program through an interpreter (`sh script.sh`, `python3 script.py`).
    pub fn interpreter(mut self, interpreter: impl AsRef<OsStr>) -> ProgramTask {
        self.interpreter = Some(interpreter.as_ref().to_owned());
        self
    }

    /// Appends one line (a keyword such as `NCYCLES 5`) to the script fed on stdin.
    pub fn script_line(mut self, line: impl Into<String>) -> ProgramTask {
        self.script.push(line.into());
        self
    }

    /// A file that must exist before the program runs; a missing one ends the run as `FAILED`
    /// ("input file ... does not exist") without starting it.
    pub fn input_file(mut self, path: impl AsRef<Path>) -> ProgramTask {
        self.inputs.push(path.as_ref().to_owned());
        self
    }

    /// A file the program must write: after it exits with 0, a missing or empty file ends the
    /// run as `FAILED` ("output file ... was not written").
    pub fn output_file(mut self, path: impl AsRef<Path>) -> ProgramTask {
        self.outputs.push(path.as_ref().to_owned());
        self
    }

    /// Ends the program's process group when it runs longer than `timeout` (the run ends as
    /// `FAILED`, "timed out").
    pub fn timeout(mut self, timeout: Duration) -> ProgramTask {
        self.timeout = Some(timeout);
        self
    }
}

impl Task for ProgramTask {
    fn check_input_data(&mut self, info: &PluginInfo) -> Result<(), String> {
        for input in &self.inputs {
            let path = info.path(input);
            if !path.exists() {
                return Err(format!("input file {} does not exist", path.display()));
            }
        }
        Ok(())
    }

    fn make_command_and_script(&mut self, info: &PluginInfo) -> Result<JobSpec, String> {
        let com = info.path("com.txt");
        let mut text = self.script.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&com, text)
            .map_err(|e| format!("cannot write the command file {}: {e}", com.display()))?;
        let mut spec = JobSpec::new(&self.program).args(&self.args).input_file(com);
        if let Some(i) = &self.interpreter {
            spec = spec.interpreter(i);
        }
        if let Some(t) = self.timeout {
            spec = spec.timeout(t);
        }
        Ok(spec)
    }

    fn process_output_files(
        &mut self,
        info: &PluginInfo,
        _record: &JobRecord,
    ) -> Result<PluginStatus, String> {
        for output in &self.outputs {
            let path = info.path(output);
            match std::fs::metadata(&path) {
                Ok(m) if m.len() > 0 => {}
                _ => return Err(format!("output file {} was not written", path.display())),
            }
        }
        Ok(PluginStatus::Succeeded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_identity_follows_make_plugin_object() {
        let parent = PluginInfo::new("prosmart_refmac", "7", "/p/job_7");
        let child = parent.child(3);
        assert_eq!(child.name, "prosmart_refmac_3");
        assert_eq!(child.job_number, "7.3");
        assert_eq!(child.work_dir, Path::new("/p/job_7/job_3"));
        assert_eq!(child.child(1).job_number, "7.3.1");
        assert_eq!(child.log_file(), Path::new("/p/job_7/job_3/log.txt"));
    }
}
