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
