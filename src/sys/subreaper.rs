//! The child-subreaper fallback (issue 15) for hosts where procman cannot create cgroups.
//!
//! With `PR_SET_CHILD_SUBREAPER` set on the manager's process, a job's descendant whose parent
//! dies (a double-forking daemon, a `setsid` child whose launcher exited) is re-parented to the
//! manager instead of to init, so procman can still find and end it when its job ends. procman
//! recognises such an orphan by the job's marker, an environment entry its job's processes
//! inherit (`PROCMAN_CONTAIN=<token>`, read from `/proc/<pid>/environ`), and signals and reaps
//! it through a pidfd, by its pid only: never `waitpid(-1)`, which would take the host's and
//! the other jobs' exit statuses.
//!
//! Effect on a host that waits for its own children: the attribute is per process, so while it
//! is set EVERY orphaned descendant of the host process (of its own children too, not only
//! procman's jobs) is re-parented to it. A host that reaps with `wait()`/`waitpid(-1)` (or a
//! SIGCHLD handler doing so) then also reaps such adopted orphans, which is harmless to procman
//! (its reaps go through pidfds, which fail cleanly once someone else reaped), but a host that
//! waits "until no children are left" (`wait()` until ECHILD) waits for those orphans too, and
//! a host that ignores SIGCHLD lets the kernel reap them. procman only ever reaps processes that
//! carry one of its markers and are not a job's leader. Limits: an orphan that clears its
//! environment (or execs with a new one) is not recognised; an orphan that exits before procman
//! first sees it alive cannot be recognised any more (a zombie's environment is gone), and
//! stays a zombie until the host reaps it; [`Adopted::scan`] called often keeps that window
//! short.

// Off Linux only the "unsupported" answer is compiled.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

/// The environment variable that marks a job's processes for [`Adopted`].
pub const MARKER_VAR: &str = "PROCMAN_CONTAIN";

/// The environment entry (`PROCMAN_CONTAIN=<token>`) to give a job's program so its orphans
/// are recognised; `token` must be unique per job among the manager's live jobs.
pub fn marker_entry(token: &str) -> String {
    format!("{MARKER_VAR}={token}")
}

#[cfg(not(target_os = "linux"))]
mod stub {
    use std::io;

    /// Not Linux: never made (the subreaper mode cannot be chosen, `set_child_subreaper`
    /// fails); finds nothing.
    #[derive(Debug)]
    pub struct Adopted;

    impl Adopted {
        /// A scanner that finds nothing.
        pub fn new(_token: &str) -> Adopted {
            Adopted
        }

        /// Nothing to kill: `Ok(0)`.
        pub fn kill_all(
            &mut self,
            _is_leader: &dyn Fn(u32) -> bool,
            _timeout: std::time::Duration,
        ) -> io::Result<usize> {
            Ok(0)
        }
    }

    /// Not Linux: there is no child subreaper; always fails with `Unsupported`.
    pub fn set_child_subreaper(_on: bool) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "PR_SET_CHILD_SUBREAPER is a Linux feature",
        ))
    }
}
#[cfg(not(target_os = "linux"))]
pub use stub::*;
