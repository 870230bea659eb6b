//! The seam between the engine (queue, records, scheduler, dispatcher, handlers) and where a
//! job's program actually runs. Backends never see the engine: they report through [`Report`],
//! which the engine implements.
//!
//! A backend runs one admitted attempt to its end on the calling worker thread and reports how
//! it ended, or (Slurm) hands it to its own thread and ends it later through a [`Later`], so
//! that no worker thread waits for a job in flight. Everything else stays common. A backend
//! must:
//! - *submit*: start the program, then call [`Report::started`] once with an id for it;
//! - *poll*: find out when it ended and how (exit code, signal, usage);
//! - *cancel*: end it when `JobCore::kill_requested` becomes true (the worker's `Waker` is woken
//!   then) or its timeout passes: SIGTERM, then SIGKILL after `JobCore::grace`, with the step
//!   machine of `terminate.rs`.
//!
//! A backend may also report the job's raw state with [`Report::set_backend_state`].
//!
//! - `local/`: the default backend ([`local::Local`]): the program runs here, as a process-group
//!   leader (`spawn.rs` builds the spawn, `attempt.rs` runs and waits for it).
//! - `slurm/`: [`slurm::SlurmBackend`] runs jobs on a Slurm cluster.
//! - `terminate.rs`: TERM, grace, KILL, shared by both.
//!
//! A cluster engine is one more folder that implements [`Backend`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Arc, Weak};
use std::time::Instant;

pub(crate) mod local;
pub(crate) mod slurm;
mod terminate;

use crate::config::Config;
use crate::job::{AttemptEnd, JobCore, Work};
use crate::output::FileId;
use crate::record::JobId;
use crate::spec::Input;
use crate::sys::Waker;
use crate::watch::{Progress, Usage, UsageSummary};

/// What a backend tells the engine about the attempt it runs, and the settings it reads.
/// `started`, `queued`, `set_backend_state` take the engine's lock briefly; `end_attempt` takes
/// it too and may wake threads; nothing blocks otherwise, and nothing panics.
pub(crate) trait Report: Send + Sync {
    /// The attempt's program started (the local backend: `pid` is its process id; Slurm: the
    /// Slurm job id) at `spawned`; `waker` wakes this worker for a kill. Call once per attempt.
    fn started(&self, id: JobId, pid: u32, attempt: u32, spawned: Instant, waker: Waker);

    /// The attempt waits in a cluster's queue as `cluster_id` (the Slurm job id): the job reads
    /// `Queued` until [`Report::started`]. At most once per attempt, before `started`.
    fn queued(&self, id: JobId, cluster_id: u32, task: Option<u32>, attempt: u32);

    /// The job's raw state as the backend sees it (see `JobRecord::backend_state`).
    fn set_backend_state(&self, id: JobId, state: &str);

    /// A sample of the attempt's processes, with the summary of its samples so far (sampling
    /// on: `Config::sample_interval`). Ignored unless `attempt` is the job's running attempt.
    /// Takes the engine's lock briefly.
    fn usage(&self, id: JobId, attempt: u32, usage: Usage, summary: UsageSummary);

    /// The job's progress, as its progress parser read it from its output. Ignored unless
    /// `attempt` is the job's running attempt. Takes the engine's lock briefly.
    fn progress(&self, id: JobId, attempt: u32, progress: Progress);

    /// Ends an attempt whose [`Backend::start_attempt`] returned [`Attempt::Continues`]. Only
    /// through [`Later`], which makes it exactly once.
    fn end_attempt(self: Arc<Self>, id: JobId, attempt: u32, end: AttemptEnd);

    /// The manager's settings.
    fn config(&self) -> &Config;

    /// The manager's key, which marks the output reader threads of its jobs
    /// (`output::observing`).
    fn key(&self) -> u64;
}

/// What [`Backend::start_attempt`] did with the attempt.
pub(crate) enum Attempt {
    /// It ended (the local backend: always, on the calling worker thread).
    Ended(AttemptEnd),
    /// It goes on without the worker thread: the backend ends it later, exactly once, through
    /// the [`Later`] it made for it.
    Continues,
}

/// The promise to end one attempt that continues asynchronously: [`Later::end`] reports its
/// end to the engine. Dropped without `end` (a bug, a panic unwinding through the backend's
/// thread), it ends the attempt as an internal error, so the job never stays live for ever.
/// Holds the engine weakly: once the manager is gone, ending is a no-op.
pub(crate) struct Later {
    engine: Weak<dyn Report>,
    id: JobId,
    attempt: u32,
    ended: bool,
}

impl Later {
    /// Made by the backend when it takes the attempt over from the worker (just before
    /// returning [`Attempt::Continues`]: nothing may fail between the two).
    pub(crate) fn new(engine: &Weak<dyn Report>, id: JobId, attempt: u32) -> Later {
        Later {
            engine: engine.clone(),
            id,
            attempt,
            ended: false,
        }
    }

    /// The engine, if the manager still exists (for `queued`, `started`, `set_backend_state`).
    pub(crate) fn report(&self) -> Option<Arc<dyn Report>> {
        self.engine.upgrade()
    }

    /// The attempt's number.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Gives the promise up without ending the attempt: its caller ends it another way (the
    /// worker that made it, when the hand-over failed).
    pub(crate) fn disarm(mut self) {
        self.ended = true;
    }

    /// Ends the attempt. Takes the engine's lock; never blocks otherwise.
    pub(crate) fn end(mut self, end: AttemptEnd) {
        self.ended = true;
        if let Some(r) = self.engine.upgrade() {
            r.end_attempt(self.id, self.attempt, end);
        }
    }
}

impl Drop for Later {
    fn drop(&mut self) {
        if !self.ended {
            self.ended = true;
            if let Some(r) = self.engine.upgrade() {
                let msg = "internal error: the backend lost the attempt before its end was known";
                log::error!("job {}: {msg}", self.id);
                r.end_attempt(self.id, self.attempt, AttemptEnd::Internal(msg.into()));
            }
        }
    }
}

pub(crate) trait Backend: Send + Sync + 'static {
    /// Runs `work` to its end on the calling worker thread. Never panics on user input.
    fn run_attempt(&self, report: &dyn Report, work: Work, waker: Waker) -> AttemptEnd;

    /// Starts `work`: either runs it to its end here ([`Attempt::Ended`]; the default, through
    /// [`Backend::run_attempt`]) or hands it to the backend's own threads and returns at once
    /// ([`Attempt::Continues`]; the backend then ends it through a [`Later`] made from
    /// `engine`). A kill then reaches the backend through `JobCore::kill_requested`, which it
    /// must watch; its timeout is the backend's to enforce. Never panics on user input.
    fn start_attempt(
        &self,
        report: &dyn Report,
        _engine: &Weak<dyn Report>,
        work: Work,
        waker: Waker,
    ) -> Attempt {
        Attempt::Ended(self.run_attempt(report, work, waker))
    }

    /// At most this many worker threads are useful (a backend whose attempts continue
    /// asynchronously needs a few for its submissions, not one per job in flight). `None`: up
    /// to the job limit.
    fn max_workers(&self) -> Option<usize> {
        None
    }

    /// How many attempts beyond the job limit the scheduler may give this backend to hold
    /// (default 0: none). A staged attempt has `JobCore::held` set: the backend submits it
    /// held and lets it run only once the flag clears, which the scheduler does when a slot
    /// frees (staged jobs first, in the order they were staged). Slurm arrays use it to put a
    /// whole batch into a few `sbatch --array --hold` calls while at most `limit` run.
    fn stage_window(&self) -> usize {
        0
    }

    /// Called once by shutdown, after every job has ended: stop the backend's own threads.
    fn shutdown(&self) {}
}

/// Ends an attempt that could not start: writes `msg` where the user looks first, and returns
/// the attempt's end. The place is `file` (the job's error file or log, as opened for this
/// attempt), else the error file's path, appended to; never a file that is the job's input
/// file (a refused alias of it must be left as it was).
pub(crate) fn spawn_failed(core: &JobCore, file: Option<File>, msg: String) -> AttemptEnd {
    let input = match &core.input {
        Input::File(p) => FileId::at(p),
        _ => None,
    };
    let file = file.or_else(|| {
        let f = core
            .error_path()
            .and_then(|p| OpenOptions::new().append(true).create(true).open(p).ok())?;
        (input.is_none() || FileId::of(&f) != input).then_some(f)
    });
    if let Some(mut f) = file {
        let _ = writeln!(f, "procman: job {} could not start: {msg}", core.id);
    }
    AttemptEnd::SpawnFailed(msg)
}
