//! The seam between the engine (queue, records, scheduler, dispatcher, handlers) and where a
//! job's program actually runs. Backends never see the engine: they report through [`Report`],
//! which the engine implements.
//!
//! A backend runs one admitted attempt to its end on the calling worker thread and reports how
//! it ended. Everything else stays common. A backend must:
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
/// `started` and `set_backend_state` take the engine's lock briefly; nothing blocks otherwise,
/// and nothing panics.
pub(crate) trait Report {
    /// The attempt's program started (the local backend: `pid` is its process id; Slurm: the
    /// Slurm job id) at `spawned`; `waker` wakes this worker for a kill. Call once per attempt.
    fn started(&self, id: JobId, pid: u32, attempt: u32, spawned: Instant, waker: Waker);

    /// The job's raw state as the backend sees it (see `JobRecord::backend_state`).
    fn set_backend_state(&self, id: JobId, state: &str);

    /// A sample of the attempt's processes, with the summary of its samples so far (sampling
    /// on: `Config::sample_interval`). Ignored unless `attempt` is the job's running attempt.
    /// Takes the engine's lock briefly.
    fn usage(&self, id: JobId, attempt: u32, usage: Usage, summary: UsageSummary);

    /// The job's progress, as its progress parser read it from its output. Ignored unless
    /// `attempt` is the job's running attempt. Takes the engine's lock briefly.
    fn progress(&self, id: JobId, attempt: u32, progress: Progress);

    /// The manager's settings.
    fn config(&self) -> &Config;

    /// The manager's key, which marks the output reader threads of its jobs
    /// (`output::observing`).
    fn key(&self) -> u64;
}

pub(crate) trait Backend: Send + Sync + 'static {
    /// Runs `work` to its end on the calling worker thread. Never panics on user input.
    fn run_attempt(&self, report: &dyn Report, work: Work, waker: Waker) -> AttemptEnd;

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
