//! [`Pipeline`]: child plugins chained through their `finished` signals, ending with a status
//! of its own.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::wait::wait_for_end;
use super::{FinishStatus, Plugin, PluginInfo, PluginStatus, PluginWaitError, Task};
use crate::deadline;
use crate::signal::{ConnectionId, Signal};
use crate::Handle;

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

/// A connection from a child's `finished` to a pipeline handler.
struct Step<T: Task> {
    pipeline: Weak<Pipeline>,
    child: Weak<Plugin<T>>,
}

impl<T: Task> Step<T> {
    /// The pipeline and the child, when the handler should run for this end (see
    /// [`Pipeline::step_ok`]); `None` also when either is gone.
    fn next(&self, status: &FinishStatus) -> Option<(Arc<Pipeline>, Arc<Plugin<T>>)> {
        let (pipeline, child) = (self.pipeline.upgrade()?, self.child.upgrade()?);
        pipeline.step_ok(status).then_some((pipeline, child))
    }
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
/// **A running pipeline lives on without its caller.** Each started child holds the pipeline
/// from its start until its `finished` emit has returned (and the job's completion handler
/// holds the child), so dropping your `Arc` mid-run loses no step and no `finished` emit; the
/// pipeline is freed after its own `finished` emit, once no child holds it. Children not yet
/// started and connections refer to it weakly: a pipeline nobody holds and none of whose
/// children runs is freed (and emits nothing if it never reported a status).
///
/// # Threads
///
/// Handlers run on the thread that emitted the child's `finished`: the manager's dispatcher
/// thread for a child started with [`Plugin::process`] (see [`Plugin`], "Threads"). A pipeline
/// creates no thread, except one watchdog per [`set_timeout`](Self::set_timeout).
///
/// # Example: a two-step pipeline
///
/// ```
/// use procman::{Pipeline, PluginInfo, PluginStatus, ProcessManager, ProgramTask};
///
/// let manager = ProcessManager::new();
/// let dir = std::env::temp_dir().join(format!("procman-pipeline-doc-{}", std::process::id()));
/// let pipeline = Pipeline::new(&manager, PluginInfo::new("demo", "1", &dir));
///
/// let first = pipeline
///     .make_plugin_object(ProgramTask::new("echo").arg("step one").output_file("log.txt"))
///     .unwrap();
/// pipeline.connect_signal(&first, |pipeline, _first, _status| {
///     // Runs on the dispatcher thread once `first` has ended and was checked.
///     let Ok(second) = pipeline.make_plugin_object(ProgramTask::new("echo").arg("step two"))
///     else { return };
///     pipeline.connect_signal(&second, |pipeline, _, _| {
///         pipeline.report_status(PluginStatus::Succeeded, "both steps ran");
///     });
///     second.process().unwrap();
/// });
/// first.process().unwrap();
///
/// let end = pipeline.wait().unwrap();
/// assert_eq!(end.finish_status, PluginStatus::Succeeded);
/// assert_eq!(pipeline.child_count(), 2);
/// assert_eq!(std::fs::read_to_string(dir.join("job_2/log.txt")).unwrap(), "step two\n");
/// # std::fs::remove_dir_all(&dir).ok();
/// ```
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
    /// [`handle`](crate::ProcessManager::handle)). It is `Running` until it reports a status.
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
    /// the pipeline and the child weakly (no reference cycle). Never blocks; the id disconnects
    /// it from `child.finished()`. For a handler that must consume what it captures, see
    /// [`connect_signal_once`](Self::connect_signal_once).
    pub fn connect_signal<T, F>(&self, child: &Arc<Plugin<T>>, handler: F) -> ConnectionId
    where
        T: Task,
        F: Fn(&Pipeline, &Plugin<T>, &FinishStatus) + Send + Sync + 'static,
    {
        let step = self.step_of(child);
        child.finished().connect(move |status| {
            if let Some((pipeline, child)) = step.next(status) {
                handler(&pipeline, &child, status);
            }
        })
    }

    /// [`connect_signal`](Self::connect_signal) with a handler that runs at most once
    /// (`FnOnce`: it may move what it captures, such as the next step's plugin): the first
    /// `finished` emit to reach the connection claims it and disconnects it, even when several
    /// threads emit at once; the handler then runs if that emit says the child succeeded, and
    /// never later. Never blocks.
    pub fn connect_signal_once<T, F>(&self, child: &Arc<Plugin<T>>, handler: F) -> ConnectionId
    where
        T: Task,
        F: FnOnce(&Pipeline, &Plugin<T>, &FinishStatus) + Send + 'static,
    {
        let step = self.step_of(child);
        child.finished().connect_once(move |status| {
            if let Some((pipeline, child)) = step.next(status) {
                handler(&pipeline, &child, status);
            }
        })
    }

    /// What a connection to `child`'s `finished` holds: both weakly.
    fn step_of<T: Task>(&self, child: &Arc<Plugin<T>>) -> Step<T> {
        Step {
            pipeline: self.me.clone(),
            child: Arc::downgrade(child),
        }
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
            child.finished().connect(move |status| {
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
        wait_for_end(&self.state, &self.done, &self.manager, deadline, |s| {
            s.verdict.clone().filter(|_| s.done)
        })
    }

    /// A child is starting: counted as running unless the pipeline has a status.
    pub(super) fn child_started(&self) -> bool {
        let mut s = self.state.lock();
        if s.verdict.is_some() {
            return false;
        }
        s.running += 1;
        true
    }

    /// A counted child's `finished` emit has returned.
    pub(super) fn child_finished(&self) {
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
