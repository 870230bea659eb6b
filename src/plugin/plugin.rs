//! [`Plugin`]: one task run once as a managed job, with its `finished` signal and the run's
//! state machine (`Idle → Starting → Running → Finishing → Done`).

use std::fmt;
use std::ops::DerefMut;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::wait::wait_for_end;
use super::{FinishStatus, Pipeline, PluginInfo, PluginStatus, PluginWaitError, Task};
use crate::deadline;
use crate::error::panic_message;
use crate::record::{JobId, JobRecord, KillOutcome};
use crate::signal::Signal;
use crate::spec::JobSpec;
use crate::Handle;

/// A second [`Plugin::process`] or [`Plugin::process_sync`]: a plugin runs once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlreadyStarted;

impl fmt::Display for AlreadyStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the plugin was already started; a plugin runs once")
    }
}

impl std::error::Error for AlreadyStarted {}

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
    /// The parent pipeline, while it counts this run as running: from the start until this
    /// run's `finished` emit has returned. Holding it keeps a pipeline whose caller dropped it
    /// alive while one of its steps runs (the job's completion handler holds this plugin).
    counted_by: Option<Arc<Pipeline>>,
    record: Option<JobRecord>,
    finish: Option<FinishStatus>,
}

/// A step run once as a managed job: CCP4i2's `CPluginScript` for one program.
///
/// Create it with [`Plugin::new`] (or [`Pipeline::make_plugin_object`]), connect to
/// [`finished`](Self::finished), then [`process`](Self::process) (returns at once) or
/// [`process_sync`](Self::process_sync) (blocks).
///
/// While a run is under way the manager's completion handler holds the plugin, so dropping
/// your `Arc` does not stop the run or lose the `finished` emit.
///
/// # When `finished` is emitted
///
/// Exactly once per run, and only after the program has ended (the manager's record is final)
/// and post-processing has returned. CCP4i2's plugin base emitted it twice, once too early; here
/// the run is a small state machine (`Idle → Starting → Running → Finishing → Done`) and only the
/// path that wins `Finishing` emits. A run that never starts (bad input, a command that cannot be
/// built or submitted, a kill before the start) still emits `finished`, once, with `FAILED` or
/// `INTERRUPTED`; that emit happens on the thread that called [`process`](Self::process), before
/// it returns.
///
/// # Threads
///
/// [`process`](Self::process) returns at once; the job's completion handler post-processes and
/// emits `finished` **on the manager's dispatcher thread**, so slots (and the pipeline handlers
/// they call) run there too and must not block for long: starting the next child is fine,
/// waiting for it is not ([`wait`](Self::wait) refuses there with
/// [`PluginWaitError::InHandler`]). [`process_sync`](Self::process_sync) does everything on the
/// calling thread. A plugin creates no thread.
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
    /// [`handle`](crate::ProcessManager::handle)). Nothing runs until [`process`](Self::process).
    pub fn new(manager: &Handle, info: PluginInfo, task: T) -> Arc<Plugin<T>> {
        Arc::new(Plugin::build(manager, info, task, None))
    }

    pub(super) fn build(
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
                counted_by: None,
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
    /// returned (see [When `finished` is emitted](Plugin#when-finished-is-emitted)). Inside a slot, [`finish_status`](Self::finish_status)
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
        wait_for_end(&self.run, &self.done, &self.manager, deadline, |run| {
            run.finish.clone().filter(|_| run.phase == Phase::Done)
        })
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
            self.run.lock().counted_by = Some(parent);
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
        let spec = guarded("make_command_and_script", || {
            task.make_command_and_script(&self.info)
        })
        .and_then(|r| r)
        .map_err(failed)?;
        drop(task);
        if spec.has_handler() {
            return Err(failed(
                "make_command_and_script set an on_finish handler; the plugin owns it".into(),
            ));
        }
        Ok(spec.or_log_file_and_cwd(&self.info.log_file(), &self.info.work_dir))
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
        let (finish, counted_by) = {
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
            (finish, run.counted_by.take())
        };
        // Slot panics are caught and logged by the signal itself.
        self.finished.emit(&finish);
        if let Some(parent) = &counted_by {
            parent.child_finished();
        }
        self.run.lock().phase = Phase::Done;
        self.done.notify_all();
        // Last: this may be the pipeline's last strong reference (its caller dropped it), so
        // it is freed here, after its `finished` emit, outside every lock.
        drop(counted_by);
    }
}
