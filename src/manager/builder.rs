//! [`Builder`]: a manager's settings, checked and turned into a running engine by `build`.

use std::sync::Arc;
use std::thread::{self};
use std::time::Duration;

use crate::backend::local::Local;
use crate::backend::Backend;
use crate::config::{Config, Containment, ObserveMode, WaitMode};
use crate::engine::sched::retain::Retention;
use crate::engine::sched::Settings;
use crate::engine::Inner;
use crate::error::BuildError;
use crate::sys;

use super::{Handle, ProcessManager};

/// Builds a [`ProcessManager`] with non-default settings.
///
/// ```
/// use std::time::Duration;
/// let manager = procman::ProcessManager::builder()
///     .limit(4)
///     .grace(Duration::from_secs(5))
///     .build()
///     .expect("a limit of 4 is valid");
/// # drop(manager);
/// ```
#[derive(Clone)]
pub struct Builder {
    limit: usize,
    cpu_capacity: Option<u32>,
    memory_capacity: Option<u64>,
    grace: Duration,
    kill_leftovers: bool,
    wait_mode: WaitMode,
    observe_mode: ObserveMode,
    drain_bound: Duration,
    close_inherited_fds: bool,
    retention: Retention,
    handler_threads: usize,
    sample_interval: Option<Duration>,
    containment: Containment,
    /// Test hook: the cgroup directory to create procman's cgroups under instead of the own one.
    cgroup_base: Option<std::path::PathBuf>,
    backend: Option<Arc<dyn Backend>>,
    /// Set by [`Builder::slurm`]: each manager built gets a Slurm backend (and poller) of its own.
    slurm: Option<crate::backend::slurm::SlurmOptions>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("limit", &self.limit)
            .field("cpu_capacity", &self.cpu_capacity)
            .field("memory_capacity", &self.memory_capacity)
            .field("grace", &self.grace)
            .field("kill_leftovers", &self.kill_leftovers)
            .field("wait_mode", &self.wait_mode)
            .field("observe_mode", &self.observe_mode)
            .field("drain_bound", &self.drain_bound)
            .field("close_inherited_fds", &self.close_inherited_fds)
            .field("retention", &self.retention)
            .field("handler_threads", &self.handler_threads)
            .field("sample_interval", &self.sample_interval)
            .field("containment", &self.containment)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            limit: 10,
            cpu_capacity: None,
            memory_capacity: None,
            grace: Duration::from_secs(2),
            kill_leftovers: true,
            wait_mode: WaitMode::default(),
            observe_mode: ObserveMode::default(),
            drain_bound: Duration::from_millis(200),
            close_inherited_fds: true,
            retention: Retention::default(),
            handler_threads: 1,
            sample_interval: None,
            containment: Containment::Auto,
            cgroup_base: None,
            backend: None,
            slurm: None,
        }
    }
}

impl Builder {
    /// At most this many jobs run at once (default 10). Zero is an error at `build`. Under
    /// Slurm a job counts from its submission (queued in Slurm or running), except with
    /// [`SlurmOptions::array`](crate::slurm::SlurmOptions::array), where up to 10,000 more
    /// wait in Slurm held (`Queued`) and count from their release.
    pub fn limit(mut self, limit: usize) -> Builder {
        self.limit = limit;
        self
    }

    /// How many threads call completion handlers (default 1; zero is an error at `build`).
    /// With one, handlers run one at a time in completion order (a slow handler delays the
    /// next ones). With more, they take completions from one queue in completion order and run
    /// at once, so one slow handler holds back only its own thread; each handler is still
    /// called exactly once, after its job's slot was freed, and `wait` still returns after it.
    /// Inside a handler, `wait` for another job then also waits for that job's handler when
    /// this cannot deadlock (see [`Handle::wait`](crate::Handle::wait)).
    pub fn handler_threads(mut self, threads: usize) -> Builder {
        self.handler_threads = threads;
        self
    }

    /// Samples every running job's resource use this often (default: never; zero is an error
    /// at `build`): CPU time and CPU %, current and peak resident memory, processes, threads,
    /// bytes read and written, of every process of the job's process group. Samples reach
    /// [`Handle::snapshot`](crate::Handle::snapshot) ([`Snapshot::live`](crate::Snapshot::live)),
    /// subscribers as [`Event::Usage`](crate::Event::Usage), and the final record as
    /// [`JobRecord::sampled`](crate::JobRecord::sampled) (peaks and means).
    ///
    /// One thread (`procman-sample`, started with the first job) reads `/proc` once per
    /// interval for all running jobs together and wakes each job's worker, which reports the
    /// sample. Never set, sampling costs nothing: no thread, no read of `/proc`. Linux only
    /// (elsewhere, and for jobs run by the Slurm backend, jobs are not sampled).
    pub fn sample_interval(mut self, interval: Duration) -> Builder {
        self.sample_interval = Some(interval);
        self
    }

    /// How local jobs' processes are kept together (default [`Containment::Auto`]: a cgroup
    /// per job where this process may create cgroups, else the process group). Resolved once
    /// by `build`, which fails ([`BuildError::Containment`]) when `Cgroup` or `Subreaper` is
    /// not available; [`Handle::containment`](crate::Handle::containment) tells the result.
    /// Never blocks.
    pub fn containment(mut self, mode: Containment) -> Builder {
        self.containment = mode;
        self
    }

    /// Tests only, no stability promise: look for cgroups under `dir` (as if it were this
    /// process's own cgroup) instead of discovering them, to see the fallback from a missing
    /// or read-only cgroup root.
    #[doc(hidden)]
    pub fn cgroup_base_for_tests(mut self, dir: impl Into<std::path::PathBuf>) -> Builder {
        self.cgroup_base = Some(dir.into());
        self
    }

    /// CPUs available to jobs that declare [`JobSpec::cpus`](crate::JobSpec::cpus) (default: the machine's).
    pub fn cpu_capacity(mut self, cpus: u32) -> Builder {
        self.cpu_capacity = Some(cpus);
        self
    }

    /// Memory in bytes available to jobs that declare [`JobSpec::memory`](crate::JobSpec::memory)
    /// (default: the machine's physical memory).
    pub fn memory_capacity(mut self, bytes: u64) -> Builder {
        self.memory_capacity = Some(bytes);
        self
    }

    /// Default time between SIGTERM and SIGKILL for timeouts and kills (default 2 s). As
    /// [`JobSpec::grace`](crate::JobSpec::grace): one too long for the clock never sends SIGKILL.
    pub fn grace(mut self, grace: Duration) -> Builder {
        self.grace = grace;
        self
    }

    /// Whether processes left in a job's process group when its program exits are killed
    /// (default true; see DESIGN.md, "Leftover processes"). In cgroup containment this means
    /// every process left in the job's cgroup; with `false` the cgroup is left in place with
    /// them (and the manager's parent cgroup with it).
    pub fn kill_leftovers(mut self, yes: bool) -> Builder {
        self.kill_leftovers = yes;
        self
    }

    /// How workers wait for their child (default: [`WaitMode::Pidfd`] on Linux).
    pub fn wait_mode(mut self, mode: WaitMode) -> Builder {
        self.wait_mode = mode;
        self
    }

    /// How observed output reaches observers (default: [`ObserveMode::Files`] on Linux).
    /// Never blocks; never fails (`Files` falls back to pipes job by job where it cannot apply).
    pub fn observe_mode(mut self, mode: ObserveMode) -> Builder {
        self.observe_mode = mode;
        self
    }

    /// How long a job's completion waits for its observed output to reach EOF after the program
    /// was reaped (default 200 ms). Only matters when a process outside the job's process group
    /// (for example one that called `setsid`) still holds the output pipes. A bound too long for
    /// the clock (`Duration::MAX`) is no bound.
    pub fn output_drain_bound(mut self, bound: Duration) -> Builder {
        self.drain_bound = bound;
        self
    }

    /// Whether each child gets only stdin, stdout and stderr (default true). procman's own
    /// descriptors are always close-on-exec; this also keeps descriptors the *host* opened
    /// without `O_CLOEXEC` out of jobs. On Linux with glibc 2.34 or later (in `WaitMode::Pidfd`)
    /// the child closes them itself (`posix_spawn` with a `closefrom` file action): no fork, no
    /// scan, no race. Elsewhere std's spawn takes a `pre_exec` step, which makes it fork, added
    /// once the host is seen to have such a descriptor (a scan of `/proc/self/fd` before each
    /// spawn until then); see DESIGN.md, "Descriptors". `false`: no closing at all.
    pub fn close_inherited_fds(mut self, yes: bool) -> Builder {
        self.close_inherited_fds = yes;
        self
    }

    /// Which finished records the manager keeps (default [`Retention::default`]: the newest
    /// 10,000 whose handler has returned, no age limit; [`Retention::keep_all`] keeps every
    /// record until [`delete_job`](Handle::delete_job)). An evicted job's id then reads
    /// as unknown everywhere ([`job_data`](Handle::job_data),
    /// [`wait`](Handle::wait), [`kill_process`](Handle::kill_process),
    /// [`delete_job`](Handle::delete_job)), except that a wait already in progress
    /// still gets the record and [`JobSpec::after`](crate::JobSpec::after) still sees whether it succeeded. Never
    /// fails; can be changed later with [`set_retention`](Handle::set_retention).
    pub fn retention(mut self, retention: Retention) -> Builder {
        self.retention = retention;
        self
    }

    /// Runs every job on a Slurm cluster instead of this machine: submitted with `sbatch`,
    /// tracked by one poller thread, killed with `scancel` (see [`crate::slurm`] and DESIGN.md,
    /// "Running jobs on Slurm"). `limit` then bounds how many jobs are submitted to Slurm at
    /// once. Unless set, the CPU and memory capacities become unbounded: Slurm decides what fits, and a job
    /// it refuses ends as [`JobStatus::SpawnFailed`](crate::JobStatus::SpawnFailed) with Slurm's message.
    pub fn slurm(mut self, options: crate::backend::slurm::SlurmOptions) -> Builder {
        // Half the range: the scheduler's sums of declared CPUs and memory cannot overflow.
        self.cpu_capacity.get_or_insert(u32::MAX / 2);
        self.memory_capacity.get_or_insert(u64::MAX / 2);
        self.slurm = Some(options);
        self
    }

    /// Runs jobs through another backend than the local one (see `backend/mod.rs`).
    #[allow(dead_code)]
    pub(crate) fn backend(mut self, backend: Arc<dyn Backend>) -> Builder {
        self.backend = Some(backend);
        self
    }

    /// Creates the manager and starts its threads: the handler threads and one worker (more
    /// are created as jobs need them, up to `limit`; a large limit costs nothing until used).
    ///
    /// # Errors
    /// [`BuildError::ZeroLimit`] for a zero limit, capacity or number of handler threads;
    /// [`BuildError::Containment`] when the containment asked for is not available;
    /// [`BuildError::Thread`] when the OS refuses a handler thread or the first worker. A worker
    /// refused later is not an error: it caps how many jobs run at once, with a warning
    /// (DESIGN.md, "Thread model").
    pub fn build(self) -> Result<ProcessManager, BuildError> {
        if self.limit == 0 {
            return Err(BuildError::ZeroLimit("the job limit"));
        }
        if self.handler_threads == 0 {
            return Err(BuildError::ZeroLimit("the number of handler threads"));
        }
        if self.sample_interval == Some(Duration::ZERO) {
            return Err(BuildError::ZeroLimit("the sample interval"));
        }
        let cpu_capacity = self
            .cpu_capacity
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get() as u32));
        if cpu_capacity == 0 {
            return Err(BuildError::ZeroLimit("the CPU capacity"));
        }
        let memory_capacity = self
            .memory_capacity
            .or_else(sys::physical_memory)
            .unwrap_or(u64::MAX);
        if memory_capacity == 0 {
            return Err(BuildError::ZeroLimit("the memory capacity"));
        }
        let remote = self.backend.is_some() || self.slurm.is_some();
        let (containment, cgroups) =
            super::contain::resolve(self.containment, self.cgroup_base.as_deref(), remote)?;
        let backend: Arc<dyn Backend> = match (self.backend, self.slurm) {
            (Some(b), _) => b,
            (None, Some(o)) => Arc::new(crate::backend::slurm::SlurmBackend::new(o)),
            (None, None) => Arc::new(Local::default()),
        };
        let settings = Settings {
            limit: self.limit,
            stage: backend.stage_window(),
            cpu_capacity,
            memory_capacity,
            grace: self.grace,
            kill_leftovers: self.kill_leftovers,
            retention: self.retention,
        };
        let config = Config {
            wait_mode: self.wait_mode,
            observe_mode: self.observe_mode,
            drain_bound: self.drain_bound,
            close_inherited_fds: self.close_inherited_fds,
            handler_threads: self.handler_threads,
            sample_interval: self.sample_interval,
            containment,
            cgroups,
        };
        let inner = Inner::start(settings, config, backend).map_err(BuildError::Thread)?;
        Ok(ProcessManager {
            handle: Handle::new(inner),
        })
    }
}
