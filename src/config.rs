//! The manager's settings that the engine and the backends read: how workers wait and how
//! observed output is read (both public), and the fixed configuration built from the builder.

use std::time::Duration;

/// How workers wait for their child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitMode {
    /// Linux: `poll` on a pidfd and an eventfd, then `wait4`. Installs no signal handler, wakes
    /// at once on exit or kill, and yields CPU time and peak memory. Without a pidfd or an
    /// eventfd (a kernel before 5.3, or no descriptor left) a job is polled with
    /// `waitid(WNOWAIT)` in 10 ms slices instead: still no signal handler.
    Pidfd,
    /// Any Unix: the `wait-timeout` crate in 10 ms slices. It installs a SIGCHLD handler in the
    /// host process; no CPU or memory figures; leftover group members are not killed.
    Portable,
}

impl Default for WaitMode {
    fn default() -> WaitMode {
        if crate::sys::HANDLER_FREE_WAIT {
            WaitMode::Pidfd
        } else {
            WaitMode::Portable
        }
    }
}

/// How observed output reaches the observer (see [`JobSpec::observe`](crate::JobSpec::observe)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObserveMode {
    /// Linux: the program writes its log and error files itself, exactly as when unobserved,
    /// and one reader thread per job follows the files (inotify) and hands their lines to the
    /// observer. The program is never slowed or blocked by the observer, and a merged log is
    /// observed in the order the program wrote it (all as [`Stream::Stdout`](crate::Stream)).
    /// A stream with no regular file behind it (no log file, `/dev/null`, a FIFO), or a job for
    /// which no inotify instance is left (`max_user_instances`), goes through a pipe as in
    /// [`Pipes`](ObserveMode::Pipes). Output written after the job's processes were reaped (by
    /// a process that left the group) is in the file but not observed.
    Files,
    /// Any Unix: stdout and stderr are pipes; one reader thread per stream copies each chunk to
    /// its file and hands its lines to the observer. A slow observer slows the program (the
    /// pipe fills); completion waits for the pipes' EOF at most the drain bound
    /// ([`Builder::output_drain_bound`](crate::Builder::output_drain_bound)).
    Pipes,
}

impl Default for ObserveMode {
    fn default() -> ObserveMode {
        if crate::sys::FOLLOW_FILES {
            ObserveMode::Files
        } else {
            ObserveMode::Pipes
        }
    }
}

/// How a manager keeps each local job's processes together, to end them all and account for
/// them (chosen with [`Builder::containment`](crate::Builder::containment), resolved once when
/// the manager is built; [`Handle::containment`](crate::Handle::containment) tells which).
/// See DESIGN.md, "Containment", for what each mode catches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Containment {
    /// [`Cgroup`](Containment::Cgroup) where this process may create cgroups (Linux, cgroup v2
    /// mounted, root or a delegated subtree), else [`ProcessGroup`](Containment::ProcessGroup)
    /// (the reason is logged at info level). Never [`Subreaper`](Containment::Subreaper): that
    /// changes the host process and is opt-in.
    #[default]
    Auto,
    /// One cgroup v2 per attempt: the program is placed in it before it execs, every process
    /// it starts stays in it (`setsid` or not), timeouts and kills end with `cgroup.kill`, and
    /// the record's CPU time (and peak memory, with the memory controller) covers the whole
    /// tree. Where cgroups are not available, `build` fails
    /// ([`BuildError::Containment`](crate::BuildError::Containment)).
    Cgroup,
    /// The job's program leads a new process group; timeouts and kills signal the group. A
    /// process that leaves the group (`setsid`, a double-forking daemon) escapes: it survives
    /// the job's end and is not in its accounting.
    ProcessGroup,
    /// The process group, plus `PR_SET_CHILD_SUBREAPER` on the host process (Linux): a job's
    /// descendant orphaned by its parent is re-parented to the host, recognised by a marker in
    /// its environment (`PROCMAN_CONTAIN`), and killed and reaped when its job ends. Changes
    /// the host: every orphaned descendant of the host process is re-parented to it (see
    /// DESIGN.md, "Containment"). `build` fails where the attribute cannot be set.
    Subreaper,
}

#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) wait_mode: WaitMode,
    pub(crate) observe_mode: ObserveMode,
    /// How long completion waits for observed output's EOF after the program was reaped.
    pub(crate) drain_bound: Duration,
    /// Mark the host's inheritable descriptors close-on-exec in each child.
    pub(crate) close_inherited_fds: bool,
    /// How many threads call handlers.
    pub(crate) handler_threads: usize,
    /// How often running jobs are sampled (`/proc`); `None`: never (no thread, no reads).
    pub(crate) sample_interval: Option<std::time::Duration>,
    /// The resolved containment: never `Auto`.
    pub(crate) containment: Containment,
    /// The procman parent cgroup, in `Containment::Cgroup` (removed when the last clone of the
    /// configuration is dropped).
    pub(crate) cgroups: Option<std::sync::Arc<crate::sys::cgroup::CgroupRoot>>,
}

/// How [`Handle::shutdown`](crate::Handle::shutdown) treats the work still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Let queued and running jobs finish (until the timeout, if one is given; then cancel).
    /// A paused queue is resumed.
    Drain,
    /// Cancel pending jobs and kill running ones at once (SIGTERM, grace, SIGKILL).
    Cancel,
}
