//! procman runs external programs as managed jobs: start a program with arguments, feed it an
//! input file, write its output to log files, enforce a timeout, call a handler when it ends,
//! cap how many run at once, query and kill jobs. Threads only: a pool of workers (created as
//! jobs need them), one dispatcher thread for handlers, no async runtime.
//!
//! # Run a job and wait for it
//!
//! ```
//! use procman::{JobSpec, JobStatus, ProcessManager};
//!
//! let manager = ProcessManager::new();
//! let dir = std::env::temp_dir().join(format!("procman-doc-{}", std::process::id()));
//! let record = manager
//!     .run(JobSpec::new("echo").arg("hello").log_file(dir.join("echo.log")))
//!     .expect("a valid spec");
//! assert_eq!(record.status, JobStatus::Finished);
//! assert_eq!(record.exit_code, Some(0));
//! assert_eq!(std::fs::read_to_string(dir.join("echo.log")).unwrap(), "hello\n");
//! # std::fs::remove_dir_all(&dir).ok();
//! ```
//!
//! # Start jobs with handlers, a timeout and a kill
//!
//! ```
//! use procman::{JobSpec, JobStatus, KillOutcome, ProcessManager};
//! use std::sync::mpsc;
//! use std::time::Duration;
//!
//! let manager = ProcessManager::builder().limit(4).build().unwrap();
//! let (tx, rx) = mpsc::channel();
//!
//! let slow = manager
//!     .start_process(
//!         JobSpec::new("sh")
//!             .args(["-c", "sleep 30 & sleep 30"]) // a grandchild too: the whole group ends
//!             .timeout(Duration::from_millis(200))
//!             .on_finish({ let tx = tx.clone(); move |r| tx.send((r.id, r.status)).unwrap() }),
//!     )
//!     .unwrap();
//! let other = manager.start_process(JobSpec::new("sleep").arg("30")).unwrap();
//! assert_eq!(manager.kill_process(other), Ok(KillOutcome::Killing));
//!
//! assert_eq!(rx.recv().unwrap(), (slow, JobStatus::TimedOut));
//! // Killed once running; Cancelled if the kill came before its worker spawned it.
//! let status = manager.wait(other).unwrap().status;
//! assert!(matches!(status, JobStatus::Killed | JobStatus::Cancelled));
//! ```
//!
//! # Handles: one owner, many cheap references
//!
//! A [`ProcessManager`] owns the threads and jobs: dropping it shuts the manager down (running
//! jobs are killed, pending ones cancelled). Every call on jobs is a method of [`Handle`], which
//! `ProcessManager` derefs to; [`handle`](crate::ProcessManager::handle) gives a `Handle` to move into
//! handlers, observers and other threads. A handle does not own: dropping one does nothing, and
//! once the owner is gone its calls fail ([`StartError::ShutDown`]) instead of keeping the
//! manager alive.
//!
//! ```
//! use procman::{Handle, JobSpec, JobStatus, ProcessManager};
//! use std::sync::mpsc;
//!
//! let manager = ProcessManager::new();
//! let (tx, rx) = mpsc::channel();
//! let handle: Handle = manager.handle();
//! // A handler that starts a follow-up job: it holds a Handle, not the manager.
//! manager
//!     .start_process(JobSpec::new("true").on_finish(move |first| {
//!         let next = JobSpec::new("echo").arg(format!("after job {}", first.id));
//!         tx.send(handle.start_process(next)).unwrap();
//!     }))
//!     .unwrap();
//! let second = rx.recv().unwrap().expect("the manager is running");
//! assert_eq!(manager.wait(second).unwrap().status, JobStatus::Finished);
//!
//! let orphan = manager.handle();
//! drop(manager); // shuts down: the handle no longer starts jobs
//! assert!(orphan.start_process(JobSpec::new("true")).is_err());
//! ```
//!
//! # Containment: where a job's processes are
//!
//! By default ([`Containment::Auto`]) each local job runs in a cgroup v2 of its own where this
//! process may create cgroups (Linux as root, or in a delegated subtree such as a systemd user
//! session; hybrid hosts too): every process the job starts stays in it, `setsid` or
//! double-forked or not, a timeout or kill ends them all (`cgroup.kill` after SIGTERM and the
//! grace), and the record's CPU time covers the whole tree. Elsewhere a job is its process group,
//! which a `setsid` child leaves and outlives. [`Builder::containment`] asks for a mode (the
//! opt-in [`Containment::Subreaper`] makes the host process adopt and end a job's orphans), and
//! [`Handle::containment`] tells the resolved one. Limits ([`JobSpec::memory_limit`],
//! [`JobSpec::cpu_weight`]) need a cgroup with the controller; see DESIGN.md and
//! docs/design-details.md, "Containment".
//!
//! ```
//! use procman::{Containment, ProcessManager};
//!
//! let manager = ProcessManager::builder()
//!     .containment(Containment::ProcessGroup)
//!     .build()
//!     .unwrap();
//! assert_eq!(manager.containment(), Containment::ProcessGroup);
//! let auto = ProcessManager::new();
//! assert!(matches!(auto.containment(), Containment::Cgroup | Containment::ProcessGroup));
//! ```
//!
//! # Bad input never panics
//!
//! ```
//! use procman::{JobSpec, JobStatus, ProcessManager, StartError};
//!
//! let manager = ProcessManager::new();
//! assert_eq!(
//!     manager.start_process(JobSpec::new("echo").arg("a\0b")).unwrap_err(),
//!     StartError::NulByte("argument 1".into())
//! );
//! let record = manager.run(JobSpec::new("/no/such/program")).unwrap();
//! assert_eq!(record.status, JobStatus::SpawnFailed);
//! assert!(record.error.unwrap().contains("/no/such/program"));
//! ```
//!
//! # Pipelines: dependencies, priorities, retries
//!
//! ```
//! use procman::{JobSpec, JobStatus, ProcessManager};
//!
//! let manager = ProcessManager::new();
//! let first = manager.start_process(JobSpec::new("false")).unwrap();
//! let second = manager.start_process(JobSpec::new("true").after(first)).unwrap();
//! assert_eq!(manager.wait(second).unwrap().status, JobStatus::DependencyFailed);
//! ```
//!
//! # Plugins and pipelines (CCP4i2's `CPluginScript`)
//!
//! A [`Task`] says what one step does; a [`Plugin`] runs it once as a job and announces the
//! end, exactly once, on its `finished` [`Signal`]; a [`Pipeline`] chains child plugins through
//! those signals and ends with a status of its own ([`PluginStatus`], CCP4i2's numbers). See
//! [`Pipeline`] for a two-step example and [`Plugin`] for when and on which thread `finished`
//! is emitted.
//!
//! ```
//! use procman::{Plugin, PluginInfo, PluginStatus, ProcessManager, ProgramTask};
//!
//! let manager = ProcessManager::new();
//! let dir = std::env::temp_dir().join(format!("procman-lib-doc-{}", std::process::id()));
//! let task = ProgramTask::new("echo").arg("refined").output_file("log.txt");
//! let plugin = Plugin::new(&manager, PluginInfo::new("refine", "1", &dir), task);
//! let end = plugin.process_sync().unwrap(); // or process(), then finished() / wait()
//! assert_eq!(end.finish_status, PluginStatus::Succeeded);
//! # std::fs::remove_dir_all(&dir).ok();
//! ```
//!
//! # One path per item
//!
//! Every public item is at the crate root (`procman::JobSpec`, `procman::Pipeline`,
//! `procman::Signal`), except the Slurm backend's options, [`slurm::SlurmOptions`]: what only
//! that backend needs stays in its own module.
//!
//! See DESIGN.md for the thread model, the job state machine and the guarantees, each with the
//! test that pins it.

#![deny(missing_docs)]
// `Instant - Duration` panics like `Instant + Duration`; additions are kept out by
// tests/no_raw_deadlines.rs (clippy cannot see the `+` operator), subtractions by this lint.
#![deny(clippy::unchecked_time_subtraction)]

mod backend;
mod config;
mod deadline;
mod engine;
mod error;
mod events;
#[cfg(test)]
mod fault;
mod job;
mod manager;
mod output;
mod plugin;
mod record;
mod signal;
mod spec;
mod watch;

/// Running jobs on a Slurm cluster behind the same API: see [`Builder::slurm`] and
/// DESIGN.md, "Running jobs on Slurm" (submission, state mapping, the poller, timeouts and kills).
///
/// ```no_run
/// use procman::{slurm::SlurmOptions, JobSpec, ProcessManager};
///
/// let manager = ProcessManager::builder()
///     .limit(50) // at most 50 jobs submitted to Slurm at once
///     .slurm(SlurmOptions::new().partition("short").account("ccp4"))
///     .build()
///     .unwrap();
/// let record = manager
///     .run(JobSpec::new("refmac5").input_file("keywords.txt").log_file("job_1/log.txt").cpus(4))
///     .unwrap();
/// println!("Slurm job {:?} ended as {:?}", record.pid, record.backend_state);
/// ```
pub mod slurm {
    pub use crate::backend::slurm::{SlurmOptions, SlurmWay};
}
mod sys;

/// Containment internals (issue 15) for the sys-level tests (`tests/containment.rs`: the kill
/// fallback, the spawn entries, the limits' errors; `tests/contain_subreaper.rs`) and
/// `examples/spawn_cost.rs`; jobs use [`Builder::containment`]. Not part of the API: no
/// stability promise.
#[doc(hidden)]
#[cfg(target_os = "linux")]
pub mod __contain {
    pub use crate::sys::cgroup::{
        enter_from_child, CgroupRoot, CgroupUsage, JobCgroup, Unavailable,
    };
    #[cfg(target_env = "gnu")]
    pub use crate::sys::spawn::{Entry, PlainSpawn};
    pub use crate::sys::subreaper::{
        is_child_subreaper, marker_entry, set_child_subreaper, Adopted, MARKER_VAR,
    };
}

pub use config::{Containment, ObserveMode, ShutdownMode, WaitMode};
pub use engine::sched::retain::Retention;
pub use error::{BuildError, ShutDown, StartError, UnknownJob, WaitError, WaitTimeoutError};
pub use events::{Event, LiveJob, Snapshot};
pub use manager::{Builder, Handle, ProcessManager, RecordHold};
pub use plugin::{
    AlreadyStarted, FinishStatus, Pipeline, PipelineFinished, Plugin, PluginInfo, PluginStatus,
    PluginWaitError, ProgramTask, Task,
};
pub use record::{
    describe_signal, signal_name, JobId, JobRecord, JobStatus, KillOutcome, ResourceUsage,
};
pub use signal::{ConnectionId, EmitReport, Signal, SlotPanic};
pub use spec::{Handler, JobSpec, Observer, RetryOn, Stream, OBSERVER_LINE_CAP};
pub use watch::{Progress, ProgressParser, Usage, UsageSummary};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{JobSpec, ProcessManager};

    fn sampler_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|name| name.trim() == "procman-sample")
                    .count()
            })
            .unwrap_or(0)
    }

    /// Sampling off: no sampling thread, no read of /proc; on: both.
    #[cfg(target_os = "linux")]
    #[test]
    fn sampling_costs_nothing_when_off() {
        let _one = crate::sys::SCAN_TEST_LOCK.lock();
        let before = crate::sys::proc_scans();
        let m = ProcessManager::new();
        let r = m.run(JobSpec::new("sleep").arg("0.3")).unwrap();
        assert!(r.status.is_success() && r.sampled.is_none());
        assert_eq!(sampler_threads(), 0);
        assert_eq!(crate::sys::proc_scans(), before, "sampling off read /proc");
        drop(m);

        let m = ProcessManager::builder()
            .sample_interval(Duration::from_millis(20))
            .build()
            .unwrap();
        let r = m.run(JobSpec::new("sleep").arg("0.3")).unwrap();
        assert!(
            r.sampled.as_ref().is_some_and(|s| s.samples >= 3),
            "{:?}",
            r.sampled
        );
        assert_eq!(sampler_threads(), 1);
        assert!(crate::sys::proc_scans() > before + 2);
        drop(m);
        assert_eq!(sampler_threads(), 0, "shutdown joins the sampling thread");
    }
}
