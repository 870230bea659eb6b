//! The plugin / pipeline layer: CCP4i2's `CPluginScript` in Rust form.
//!
//! A [`Task`] says what one step does (CCP4i2's overridable methods:
//! [`check_input_data`](Task::check_input_data),
//! [`make_command_and_script`](Task::make_command_and_script),
//! [`process_output_files`](Task::process_output_files)). A [`Plugin`] runs a task once through a
//! [`ProcessManager`] and announces the end on its [`finished`](Plugin::finished) signal. A
//! [`Pipeline`] makes child plugins ([`make_plugin_object`](Pipeline::make_plugin_object)),
//! chains them through their `finished` signals ([`connect_signal`](Pipeline::connect_signal),
//! [`connect_all`](Pipeline::connect_all)) and ends with a status of its own.
//! [`ProgramTask`] is the common task: a program fed a keyword script on stdin, with required
//! input files and expected output files.
//!
//! # When `finished` is emitted
//!
//! Exactly once per run, and only after the program has ended (the manager's record is final)
//! and post-processing has returned. CCP4i2's plugin base emitted it twice, once too early; here
//! the run is a small state machine (`Idle → Starting → Running → Finishing → Done`) and only the
//! path that wins `Finishing` emits. A run that never starts (bad input, a command that cannot be
//! built or submitted, a kill before the start) still emits `finished`, once, with `FAILED` or
//! `INTERRUPTED`; that emit happens on the thread that called [`Plugin::process`], before it
//! returns.
//!
//! # Threads
//!
//! [`Plugin::process`] returns at once; the job's completion handler post-processes and emits
//! `finished` **on the manager's dispatcher thread**, so slots (and the pipeline handlers they
//! call) run there too and must not block for long: starting the next child is fine, waiting for
//! it is not ([`Plugin::wait`] refuses there with [`PluginWaitError::InHandler`]).
//! [`Plugin::process_sync`] does everything on the calling thread. A pipeline creates no thread,
//! except one watchdog per [`Pipeline::set_timeout`].
//!
//! # Example: a two-step pipeline
//!
//! ```
//! use procman::{Pipeline, PluginInfo, PluginStatus, ProcessManager, ProgramTask};
//!
//! let manager = ProcessManager::new();
//! let dir = std::env::temp_dir().join(format!("procman-plugin-doc-{}", std::process::id()));
//! let pipeline = Pipeline::new(&manager, PluginInfo::new("demo", "1", &dir));
//!
//! let first = pipeline
//!     .make_plugin_object(ProgramTask::new("echo").arg("step one").output_file("log.txt"))
//!     .unwrap();
//! pipeline.connect_signal(&first, |pipeline, _first, _status| {
//!     // Runs on the dispatcher thread once `first` has ended and was checked.
//!     let Ok(second) = pipeline.make_plugin_object(ProgramTask::new("echo").arg("step two"))
//!     else { return };
//!     pipeline.connect_signal(&second, |pipeline, _, _| {
//!         pipeline.report_status(PluginStatus::Succeeded, "both steps ran");
//!     });
//!     second.process().unwrap();
//! });
//! first.process().unwrap();
//!
//! let end = pipeline.wait().unwrap();
//! assert_eq!(end.finish_status, PluginStatus::Succeeded);
//! assert_eq!(pipeline.child_count(), 2);
//! assert_eq!(std::fs::read_to_string(dir.join("job_2/log.txt")).unwrap(), "step two\n");
//! # std::fs::remove_dir_all(&dir).ok();
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::ops::DerefMut;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::deadline;
use crate::engine::dispatch::panic_message;
use crate::record::{JobId, JobRecord, JobStatus, KillOutcome};
use crate::signal::{ConnectionId, Signal};
use crate::spec::JobSpec;
use crate::Handle;

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
/// | `Interrupted` | 4 | it was killed ([`Plugin::kill`], a pipeline's terminate or failure) |
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
    /// `Interrupted`; `Pending` and `Running` → `Running`; every other end → `Failed`.
    pub fn from_job_status(status: JobStatus) -> PluginStatus {
        match status {
            JobStatus::Finished => PluginStatus::Succeeded,
            JobStatus::Killed | JobStatus::Cancelled => PluginStatus::Interrupted,
            JobStatus::Pending | JobStatus::Running => PluginStatus::Running,
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishStatus {
    /// How the run ended (never `Running`).
    pub finish_status: PluginStatus,
    /// The plugin's job id: its job number, such as `1.2` (see [`PluginInfo::job_number`]).
    pub job_id: String,
    /// The plugin's name, such as `prosmart_refmac_2`.
    pub name: String,
    /// The manager's id for the plugin's job (CCP4i2's `pid` is the process manager's id, not
    /// the OS pid); `None` when no job was submitted, and always for a pipeline.
    pub pid: Option<JobId>,
    /// Why it ended so, for a person: the job's [`JobRecord::describe_end`] ("exited with code
    /// 1", "terminated by SIGSEGV (signal 11)") or the reason a check gave.
    pub message: String,
}

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
/// [`Plugin::process`] or [`Plugin::process_sync`]; `process_output_files` on the manager's
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

/// A second [`Plugin::process`] or [`Plugin::process_sync`]: a plugin runs once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlreadyStarted;

impl fmt::Display for AlreadyStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the plugin was already started; a plugin runs once")
    }
}

impl std::error::Error for AlreadyStarted {}

/// [`Pipeline::make_plugin_object`] after the pipeline has ended (or is ending): its chain is
/// over, so no child is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineFinished;

impl fmt::Display for PipelineFinished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pipeline has finished; it makes no more children")
    }
}

impl std::error::Error for PipelineFinished {}

/// Why a plugin's or pipeline's `wait` returned without a [`FinishStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginWaitError {
    /// The time ran out first; the run goes on.
    Timeout,
    /// Called on the manager's dispatcher thread (inside a handler or a `finished` slot) for a
    /// run that has not finished: its end can only be handled by that same thread, so the wait
    /// could never return.
    InHandler,
}

impl fmt::Display for PluginWaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginWaitError::Timeout => f.write_str("timed out waiting for the plugin"),
            PluginWaitError::InHandler => {
                f.write_str("cannot wait for a plugin inside a handler: it would wait for itself")
            }
        }
    }
}

impl std::error::Error for PluginWaitError {}

/// Runs `f`, turning a panic into `Err("<what> panicked: <message>")` (logged).
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = format!("{what} panicked: {}", panic_message(&*payload));
        log::error!("{message}");
        message
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Starting,
    Running,
    /// Claimed by the one path that will emit `finished`.
    Finishing,
    Done,
}

struct Run {
    phase: Phase,
    kill_requested: bool,
    job: Option<JobId>,
    /// Whether the parent pipeline counts this run as running.
    counted: bool,
    record: Option<JobRecord>,
    finish: Option<FinishStatus>,
}

/// A step run once as a managed job: CCP4i2's `CPluginScript` for one program.
///
/// Create it with [`Plugin::new`] (or [`Pipeline::make_plugin_object`]), connect to
/// [`finished`](Self::finished), then [`process`](Self::process) (returns at once) or
/// [`process_sync`](Self::process_sync) (blocks). See the [module docs](self) for when
/// `finished` is emitted and on which thread.
///
/// While a run is under way the manager's completion handler holds the plugin, so dropping
/// your `Arc` does not stop the run or lose the `finished` emit.
pub struct Plugin<T: Task> {
    info: PluginInfo,
    manager: Handle,
    task: Mutex<T>,
    finished: Signal<FinishStatus>,
    run: Mutex<Run>,
    done: Condvar,
    parent: Option<Weak<Pipeline>>,
}

impl<T: Task> fmt::Debug for Plugin<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let run = self.run.lock();
        f.debug_struct("Plugin")
            .field("info", &self.info)
            .field("phase", &run.phase)
            .field("job", &run.job)
            .field("finish", &run.finish)
            .finish_non_exhaustive()
    }
}

impl<T: Task> Plugin<T> {
    /// A plugin that will run `task` through `manager` (it keeps a non-owning
    /// [`handle`](ProcessManager::handle)). Nothing runs until [`process`](Self::process).
    pub fn new(manager: &Handle, info: PluginInfo, task: T) -> Arc<Plugin<T>> {
        Arc::new(Plugin::build(manager, info, task, None))
    }

    fn build(
        manager: &Handle,
        info: PluginInfo,
        task: T,
        parent: Option<Weak<Pipeline>>,
    ) -> Plugin<T> {
        Plugin {
            info,
            manager: manager.clone(),
            task: Mutex::new(task),
            finished: Signal::new(),
            run: Mutex::new(Run {
                phase: Phase::Idle,
                kill_requested: false,
                job: None,
                counted: false,
                record: None,
                finish: None,
            }),
            done: Condvar::new(),
            parent,
        }
    }

    /// The plugin's name, job number and work directory.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Emitted exactly once per run, after the program has ended and post-processing has
    /// returned (see the [module docs](self)). Inside a slot, [`finish_status`](Self::finish_status)
    /// and [`record`](Self::record) already hold this run's end.
    pub fn finished(&self) -> &Signal<FinishStatus> {
        &self.finished
    }

    /// The task, locked: read what post-processing parsed, or configure it before the run.
    /// Blocks while a task method runs (post-processing, for instance).
    pub fn task(&self) -> impl DerefMut<Target = T> + '_ {
        self.task.lock()
    }

    /// Starts the run and returns at once (CCP4i2's asynchronous `process`): checks the
    /// inputs, builds the command and submits the job. Returns `Running` once the job is
    /// submitted (or its end status, if it has already ended), or `Failed`/`Interrupted` when
    /// the run ended before a job could run — `finished` has then already been emitted, on
    /// this thread. Post-processing and the `finished` emit happen on the manager's dispatcher
    /// thread when the job ends.
    ///
    /// # Errors
    /// [`AlreadyStarted`] if the plugin was started before (nothing is done).
    pub fn process(self: &Arc<Self>) -> Result<PluginStatus, AlreadyStarted> {
        self.begin()?;
        match self.prepare() {
            Err((status, message)) => self.finish_unstarted(status, message),
            Ok(spec) => {
                let me = Arc::clone(self);
                self.submit(spec.on_finish(move |record| me.complete(record.clone())));
            }
        }
        Ok(self.status())
    }

    /// Runs the plugin on this thread (CCP4i2's synchronous mode): checks, runs the program,
    /// waits for it, post-processes, emits `finished` (here, before returning) and returns
    /// what it carried. Blocks until the program has ended; give the command a timeout to cap
    /// that. Inside a handler it works too (the manager's `wait` returns there once the job is
    /// final).
    ///
    /// # Errors
    /// [`AlreadyStarted`] if the plugin was started before (nothing is done).
    pub fn process_sync(&self) -> Result<FinishStatus, AlreadyStarted> {
        self.begin()?;
        match self.prepare() {
            Err((status, message)) => self.finish_unstarted(status, message),
            Ok(spec) => {
                if let Some(id) = self.submit(spec) {
                    match self.manager.wait(id) {
                        Ok(record) => self.complete(record),
                        Err(e) => self.finish_unstarted(
                            PluginStatus::Failed,
                            format!("the job vanished while running: {e}"),
                        ),
                    }
                }
            }
        }
        Ok(self
            .finish_status()
            .expect("a synchronous run has finished when it returns"))
    }

    /// Kills the run: a running job's process group gets SIGTERM, then SIGKILL after the grace
    /// period (this call does not wait); a run not started yet, or being started, will not
    /// start a program. Either way it ends as `Interrupted` (unless it ends otherwise first).
    /// Returns false when the run has already ended. Never blocks.
    pub fn kill(&self) -> bool {
        let job = {
            let mut run = self.run.lock();
            match run.phase {
                Phase::Finishing | Phase::Done => return false,
                Phase::Idle | Phase::Starting => {
                    run.kill_requested = true;
                    return true;
                }
                Phase::Running => {
                    run.kill_requested = true;
                    run.job
                }
            }
        };
        job.and_then(|id| self.manager.kill_process(id).ok())
            .is_some_and(|k| k != KillOutcome::AlreadyFinished)
    }

    /// `Running` from [`process`](Self::process) until `finished` has been emitted, then the
    /// end status. Before the first `process` it is also `Running` (CCP4i2 has no "not
    /// started"): use [`finish_status`](Self::finish_status) to tell ended runs apart.
    pub fn status(&self) -> PluginStatus {
        let run = self.run.lock();
        match (&run.finish, run.phase) {
            (Some(f), Phase::Done) => f.finish_status,
            _ => PluginStatus::Running,
        }
    }

    /// What `finished` carried (or is carrying: it is set just before the emit); `None` before.
    pub fn finish_status(&self) -> Option<FinishStatus> {
        self.run.lock().finish.clone()
    }

    /// The job's final record, once the run has ended; `None` if no job ran.
    pub fn record(&self) -> Option<JobRecord> {
        self.run.lock().record.clone()
    }

    /// The manager's id for the job, once it was submitted.
    pub fn job(&self) -> Option<JobId> {
        self.run.lock().job
    }

    /// Blocks until `finished` has been emitted and its slots have returned, and gives what it
    /// carried. No time cap (see [`wait_timeout`](Self::wait_timeout)); on a plugin nobody
    /// starts it waits forever.
    ///
    /// # Errors
    /// [`PluginWaitError::InHandler`] when called on the manager's dispatcher thread before the
    /// run has ended.
    pub fn wait(&self) -> Result<FinishStatus, PluginWaitError> {
        self.wait_until(None)
    }

    /// [`wait`](Self::wait) with a time limit; the run goes on if it passes. A limit too long
    /// for the clock (`Duration::MAX`) waits like `wait`.
    ///
    /// # Errors
    /// [`PluginWaitError::Timeout`] or [`PluginWaitError::InHandler`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<FinishStatus, PluginWaitError> {
        self.wait_until(deadline::from_now(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<FinishStatus, PluginWaitError> {
        let mut run = self.run.lock();
        loop {
            if run.phase == Phase::Done {
                return Ok(run.finish.clone().expect("set before Done"));
            }
            if self.manager.on_dispatcher_thread() {
                return Err(PluginWaitError::InHandler);
            }
            match deadline {
                None => self.done.wait(&mut run),
                Some(d) => {
                    if self.done.wait_until(&mut run, d).timed_out() && run.phase != Phase::Done {
                        return Err(PluginWaitError::Timeout);
                    }
                }
            }
        }
    }

    /// `Idle → Starting`, or `AlreadyStarted`.
    fn begin(&self) -> Result<(), AlreadyStarted> {
        let mut run = self.run.lock();
        if run.phase != Phase::Idle {
            return Err(AlreadyStarted);
        }
        run.phase = Phase::Starting;
        Ok(())
    }

    /// Everything before the submit; `Err` ends the run without a job.
    fn prepare(&self) -> Result<JobSpec, (PluginStatus, String)> {
        if self.run.lock().kill_requested {
            return Err((PluginStatus::Interrupted, "killed before it started".into()));
        }
        if let Some(parent) = self.parent.as_ref().and_then(Weak::upgrade) {
            if !parent.child_started() {
                return Err((
                    PluginStatus::Interrupted,
                    "not started: its pipeline has finished".into(),
                ));
            }
            self.run.lock().counted = true;
        }
        let failed = |message: String| (PluginStatus::Failed, message);
        std::fs::create_dir_all(&self.info.work_dir).map_err(|e| {
            failed(format!(
                "cannot create the work directory {}: {e}",
                self.info.work_dir.display()
            ))
        })?;
        let mut task = self.task.lock();
        guarded("check_input_data", || task.check_input_data(&self.info))
            .and_then(|r| r)
            .map_err(failed)?;
        let mut spec = guarded("make_command_and_script", || {
            task.make_command_and_script(&self.info)
        })
        .and_then(|r| r)
        .map_err(failed)?;
        drop(task);
        if spec.handler.is_some() {
            return Err(failed(
                "make_command_and_script set an on_finish handler; the plugin owns it".into(),
            ));
        }
        if spec.log_file.is_none() {
            spec = spec.log_file(self.info.log_file());
        }
        if spec.cwd.is_none() {
            spec = spec.cwd(&self.info.work_dir);
        }
        Ok(spec)
    }

    /// Submits the job; on refusal, ends the run as `FAILED`. Kills at once when a kill came
    /// in meanwhile.
    fn submit(&self, spec: JobSpec) -> Option<JobId> {
        match self.manager.start_process(spec) {
            Err(e) => {
                self.finish_unstarted(PluginStatus::Failed, format!("the job was refused: {e}"));
                None
            }
            Ok(id) => {
                let kill = {
                    let mut run = self.run.lock();
                    run.job = Some(id);
                    if run.phase == Phase::Starting {
                        run.phase = Phase::Running;
                    }
                    run.kill_requested
                };
                if kill {
                    // The job was just submitted and is never deleted here: it is known.
                    let _ = self.manager.kill_process(id);
                }
                Some(id)
            }
        }
    }

    /// `Starting | Running → Finishing`; false if another path already claimed the end.
    fn claim(&self) -> bool {
        let mut run = self.run.lock();
        match run.phase {
            Phase::Starting | Phase::Running => {
                run.phase = Phase::Finishing;
                true
            }
            Phase::Idle | Phase::Finishing | Phase::Done => false,
        }
    }

    fn finish_unstarted(&self, status: PluginStatus, message: String) {
        if self.claim() {
            self.emit(status, message, None);
        }
    }

    /// The job has ended: post-process, then emit. Runs once per run (the claim).
    fn complete(&self, record: JobRecord) {
        if !self.claim() {
            return;
        }
        let (status, message) = self.post_process(&record);
        self.emit(status, message, Some(record));
    }

    fn post_process(&self, record: &JobRecord) -> (PluginStatus, String) {
        let status = PluginStatus::from_job_status(record.status);
        if status != PluginStatus::Succeeded {
            let status = if status == PluginStatus::Running {
                PluginStatus::Failed // a non-final record cannot reach here
            } else {
                status
            };
            return (status, record.describe_end());
        }
        let mut task = self.task.lock();
        match guarded("process_output_files", || {
            task.process_output_files(&self.info, record)
        }) {
            Ok(Ok(PluginStatus::Running)) => (
                PluginStatus::Failed,
                "process_output_files returned RUNNING, which is not an end status".into(),
            ),
            Ok(Ok(status)) => (status, record.describe_end()),
            Ok(Err(message)) | Err(message) => (PluginStatus::Failed, message),
        }
    }

    /// Stores the end, emits `finished`, tells the parent, then marks the run done.
    fn emit(&self, status: PluginStatus, message: String, record: Option<JobRecord>) {
        let (finish, counted) = {
            let mut run = self.run.lock();
            let finish = FinishStatus {
                finish_status: status,
                job_id: self.info.job_number.clone(),
                name: self.info.name.clone(),
                pid: record.as_ref().map(|r| r.id).or(run.job),
                message,
            };
            run.record = record;
            run.finish = Some(finish.clone());
            (finish, run.counted)
        };
        // Slot panics are caught and logged by the signal itself.
        self.finished.emit(&finish);
        if counted {
            if let Some(parent) = self.parent.as_ref().and_then(Weak::upgrade) {
                parent.child_finished();
            }
        }
        self.run.lock().phase = Phase::Done;
        self.done.notify_all();
    }
}

/// What a pipeline needs of its children, whatever their task type.
trait Child: Send + Sync {
    fn kill(&self) -> bool;
}

impl<T: Task> Child for Plugin<T> {
    fn kill(&self) -> bool {
        Plugin::kill(self)
    }
}

struct PipeState {
    made: u32,
    children: Vec<Arc<dyn Child>>,
    /// Children started and not yet through their `finished` emit.
    running: usize,
    /// The end reported (set once); emitted when no child is running any more.
    verdict: Option<FinishStatus>,
    /// The emit was claimed.
    emitting: bool,
    /// The emit has returned.
    done: bool,
}

/// A chain of child plugins: CCP4i2's pipeline `CPluginScript`.
///
/// Make children with [`make_plugin_object`](Self::make_plugin_object), chain them with
/// [`connect_signal`](Self::connect_signal) or [`connect_all`](Self::connect_all), start the
/// first with [`Plugin::process`], and end the pipeline with
/// [`report_status`](Self::report_status) from the last handler. The rules:
///
/// * **A failure stops the chain.** A child connected with `connect_signal`/`connect_all` that
///   ends `FAILED` or `INTERRUPTED` ends the pipeline with that status (its handler is not
///   called); once the pipeline has a status, `make_plugin_object` refuses and no handler runs,
///   so later children are never created. (Connect to `child.finished()` directly to tolerate
///   failures.)
/// * **Ending kills the rest.** When the pipeline gets its status (reported, a child's failure,
///   [`terminate`](Self::terminate), [`set_timeout`](Self::set_timeout)), it kills every child
///   still running, and emits its own [`finished`](Self::finished) once, after the last running
///   child's `finished` emit has returned: when the pipeline's `finished` fires, none of its
///   jobs is running.
///
/// Keep the `Arc` until the pipeline has finished: its children refer to it weakly, so
/// dropping the last `Arc` silently ends the chain at the next step.
pub struct Pipeline {
    info: PluginInfo,
    manager: Handle,
    finished: Signal<FinishStatus>,
    state: Mutex<PipeState>,
    done: Condvar,
    me: Weak<Pipeline>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.state.lock();
        f.debug_struct("Pipeline")
            .field("info", &self.info)
            .field("children", &s.made)
            .field("running", &s.running)
            .field("verdict", &s.verdict)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline whose children run through `manager` (it keeps a non-owning
    /// [`handle`](ProcessManager::handle)). It is `Running` until it reports a status.
    pub fn new(manager: &Handle, info: PluginInfo) -> Arc<Pipeline> {
        Arc::new_cyclic(|me| Pipeline {
            info,
            manager: manager.clone(),
            finished: Signal::new(),
            state: Mutex::new(PipeState {
                made: 0,
                children: Vec::new(),
                running: 0,
                verdict: None,
                emitting: false,
                done: false,
            }),
            done: Condvar::new(),
            me: me.clone(),
        })
    }

    /// The pipeline's name, job number and work directory.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Emitted exactly once, after the pipeline has a status and none of its children is
    /// running. It carries `pid: None`.
    pub fn finished(&self) -> &Signal<FinishStatus> {
        &self.finished
    }

    /// Makes child number N (1, 2, ...): work directory `<work_dir>/job_N`, name `<name>_N`, job
    /// number `<job_number>.N`, running through the pipeline's manager. It does not start it.
    ///
    /// # Errors
    /// [`PipelineFinished`] once the pipeline has a status: the chain is over.
    pub fn make_plugin_object<T: Task>(&self, task: T) -> Result<Arc<Plugin<T>>, PipelineFinished> {
        let mut s = self.state.lock();
        if s.verdict.is_some() {
            return Err(PipelineFinished);
        }
        s.made += 1;
        let info = self.info.child(s.made);
        let child = Arc::new(Plugin::build(
            &self.manager,
            info,
            task,
            Some(self.me.clone()),
        ));
        s.children.push(child.clone());
        Ok(child)
    }

    /// Connects `handler` to `child`'s `finished` (CCP4i2's `connectSignal`). It is called
    /// with the pipeline, the child and what `finished` carried, on the emitting thread, when
    /// the child ended `SUCCEEDED` or `UNSATISFACTORY` and the pipeline has no status yet. A
    /// child that ended otherwise ends the pipeline (see [`Pipeline`]). The connection holds
    /// the pipeline and the child weakly (no reference cycle).
    pub fn connect_signal<T, F>(&self, child: &Arc<Plugin<T>>, handler: F) -> ConnectionId
    where
        T: Task,
        F: Fn(&Pipeline, &Plugin<T>, &FinishStatus) + Send + Sync + 'static,
    {
        let pipeline = self.me.clone();
        let weak_child = Arc::downgrade(child);
        child.finished.connect(move |status| {
            let (Some(pipeline), Some(child)) = (pipeline.upgrade(), weak_child.upgrade()) else {
                return;
            };
            if pipeline.step_ok(status) {
                handler(&pipeline, &child, status);
            }
        })
    }

    /// Joins parallel children: `handler` is called once, with the pipeline and the children
    /// (in the order given), when every one of them has ended `SUCCEEDED` or `UNSATISFACTORY`,
    /// on the thread of the last `finished` emit. The first child that ends otherwise ends the
    /// pipeline, which kills the others (see [`Pipeline`]). With no children the handler runs at
    /// once, here. Connect before starting the children. The handler gets the children as an
    /// argument: it should not capture them (it is stored in their `finished` signals, so that
    /// would be a reference cycle until it runs).
    pub fn connect_all<T, F>(&self, children: &[Arc<Plugin<T>>], handler: F)
    where
        T: Task,
        F: FnOnce(&Pipeline, &[Arc<Plugin<T>>]) + Send + 'static,
    {
        if children.is_empty() {
            if let Some(me) = self.me.upgrade() {
                handler(&me, &[]);
            }
            return;
        }
        let remaining = Arc::new(AtomicUsize::new(children.len()));
        let handler = Arc::new(Mutex::new(Some(handler)));
        let all: Arc<Vec<Weak<Plugin<T>>>> =
            Arc::new(children.iter().map(Arc::downgrade).collect());
        for child in children {
            let (pipeline, remaining, handler, all) = (
                self.me.clone(),
                remaining.clone(),
                handler.clone(),
                all.clone(),
            );
            child.finished.connect(move |status| {
                let Some(pipeline) = pipeline.upgrade() else {
                    return;
                };
                if !pipeline.step_ok(status) || remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
                    return;
                }
                let Some(handler) = handler.lock().take() else {
                    return;
                };
                let children: Option<Vec<_>> = all.iter().map(Weak::upgrade).collect();
                if let Some(children) = children {
                    handler(&pipeline, &children);
                }
            });
        }
    }

    /// Whether a connected handler should run for this child's end; ends the pipeline for a
    /// child that failed or was interrupted.
    fn step_ok(&self, status: &FinishStatus) -> bool {
        if self.state.lock().verdict.is_some() {
            return false;
        }
        if status.finish_status.is_success() {
            return true;
        }
        let end = if status.finish_status == PluginStatus::Interrupted {
            PluginStatus::Interrupted
        } else {
            PluginStatus::Failed
        };
        self.report_status(
            end,
            format!(
                "step {} ({}) {}: {}",
                status.name,
                status.job_id,
                status.finish_status.as_str().to_lowercase(),
                status.message
            ),
        );
        false
    }

    /// Ends the pipeline with `status` (CCP4i2's `reportStatus`): no more children are made,
    /// no more handlers run, children still running are killed, and `finished` is emitted once
    /// none of them runs (here, on this thread, when none does). Returns false, doing nothing,
    /// when the pipeline already has a status or `status` is `Running`. Never blocks.
    pub fn report_status(&self, status: PluginStatus, message: impl Into<String>) -> bool {
        if status == PluginStatus::Running {
            return false;
        }
        let children = {
            let mut s = self.state.lock();
            if s.verdict.is_some() {
                return false;
            }
            s.verdict = Some(FinishStatus {
                finish_status: status,
                job_id: self.info.job_number.clone(),
                name: self.info.name.clone(),
                pid: None,
                message: message.into(),
            });
            s.children.clone()
        };
        self.done.notify_all(); // a timeout watchdog can stop waiting
        for child in children {
            child.kill();
        }
        self.finish_if_idle();
        true
    }

    /// Ends the pipeline as `INTERRUPTED` ("terminated"), killing its running children; see
    /// [`report_status`](Self::report_status). False if it already had a status.
    pub fn terminate(&self) -> bool {
        self.report_status(PluginStatus::Interrupted, "terminated")
    }

    /// Ends the pipeline as `FAILED` ("timed out after ...") if it has no status `timeout` from
    /// now, killing its running children. Runs a watchdog thread that exits as soon as the
    /// pipeline has finished (and holds the pipeline until then). A timeout too long for the
    /// clock (`Duration::MAX`) never fires.
    ///
    /// # Errors
    /// The OS refused the thread; no timeout is set.
    pub fn set_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        let Some(me) = self.me.upgrade() else {
            return Ok(());
        };
        // A timeout too long for the clock: the watchdog only waits for the end.
        let deadline = deadline::from_now(timeout);
        thread::Builder::new()
            .name("procman-pipeline-timeout".into())
            .spawn(move || {
                let mut s = me.state.lock();
                while !s.done && s.verdict.is_none() {
                    let Some(deadline) = deadline else {
                        me.done.wait(&mut s);
                        continue;
                    };
                    if me.done.wait_until(&mut s, deadline).timed_out() {
                        let ended = s.done || s.verdict.is_some();
                        drop(s);
                        if !ended {
                            me.report_status(
                                PluginStatus::Failed,
                                format!("timed out after {timeout:?}"),
                            );
                        }
                        return;
                    }
                }
            })
            .map(drop)
    }

    /// `Running` until `finished` has been emitted, then the end status.
    pub fn status(&self) -> PluginStatus {
        let s = self.state.lock();
        match (&s.verdict, s.done) {
            (Some(v), true) => v.finish_status,
            _ => PluginStatus::Running,
        }
    }

    /// What `finished` carried (or is carrying); `None` before the emit.
    pub fn finish_status(&self) -> Option<FinishStatus> {
        let s = self.state.lock();
        s.verdict.clone().filter(|_| s.emitting)
    }

    /// How many children [`make_plugin_object`](Self::make_plugin_object) has made.
    pub fn child_count(&self) -> usize {
        self.state.lock().made as usize
    }

    /// How many children are started and not yet through their `finished` emit.
    pub fn running_children(&self) -> usize {
        self.state.lock().running
    }

    /// Blocks until `finished` has been emitted and its slots have returned, and gives what it
    /// carried. No time cap: a pipeline that never reports a status is waited for forever (see
    /// [`wait_timeout`](Self::wait_timeout), [`set_timeout`](Self::set_timeout)).
    ///
    /// # Errors
    /// [`PluginWaitError::InHandler`] when called on the manager's dispatcher thread before the
    /// pipeline has finished.
    pub fn wait(&self) -> Result<FinishStatus, PluginWaitError> {
        self.wait_until(None)
    }

    /// [`wait`](Self::wait) with a time limit; the pipeline goes on if it passes. A limit too
    /// long for the clock (`Duration::MAX`) waits like `wait`.
    ///
    /// # Errors
    /// [`PluginWaitError::Timeout`] or [`PluginWaitError::InHandler`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<FinishStatus, PluginWaitError> {
        self.wait_until(deadline::from_now(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<FinishStatus, PluginWaitError> {
        let mut s = self.state.lock();
        loop {
            if s.done {
                return Ok(s.verdict.clone().expect("set before done"));
            }
            if self.manager.on_dispatcher_thread() {
                return Err(PluginWaitError::InHandler);
            }
            match deadline {
                None => self.done.wait(&mut s),
                Some(d) => {
                    if self.done.wait_until(&mut s, d).timed_out() && !s.done {
                        return Err(PluginWaitError::Timeout);
                    }
                }
            }
        }
    }

    /// A child is starting: counted as running unless the pipeline has a status.
    fn child_started(&self) -> bool {
        let mut s = self.state.lock();
        if s.verdict.is_some() {
            return false;
        }
        s.running += 1;
        true
    }

    /// A counted child's `finished` emit has returned.
    fn child_finished(&self) {
        {
            let mut s = self.state.lock();
            s.running = s.running.saturating_sub(1);
        }
        self.finish_if_idle();
    }

    /// Emits `finished` once the pipeline has a status and no running child.
    fn finish_if_idle(&self) {
        let finish = {
            let mut s = self.state.lock();
            if s.emitting || s.running > 0 {
                return;
            }
            let Some(v) = s.verdict.clone() else {
                return;
            };
            s.emitting = true;
            v
        };
        self.finished.emit(&finish);
        self.state.lock().done = true;
        self.done.notify_all();
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
    fn child_identity_follows_make_plugin_object() {
        let parent = PluginInfo::new("prosmart_refmac", "7", "/p/job_7");
        let child = parent.child(3);
        assert_eq!(child.name, "prosmart_refmac_3");
        assert_eq!(child.job_number, "7.3");
        assert_eq!(child.work_dir, Path::new("/p/job_7/job_3"));
        assert_eq!(child.child(1).job_number, "7.3.1");
        assert_eq!(child.log_file(), Path::new("/p/job_7/job_3/log.txt"));
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
