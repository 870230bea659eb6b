//! Starting a job's program with glibc's `posix_spawn` (Linux with glibc 2.34 or later, or a
//! static build): the plan, made in the parent ([`SpawnPlan`]), is plain data on every system;
//! elsewhere [`posix_spawn_can`] says no and the caller takes std's path.

use std::os::fd::RawFd;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod clone;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) use clone::spawn_job;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub use clone::{Entry, PlainSpawn};
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) use glibc::{posix_spawn, posix_spawn_can};

/// Without glibc the plan is never made ([`posix_spawn_can`] says no), so this is never
/// called: `ENOSYS`.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn spawn_job(
    _plan: &SpawnPlan,
    _cgroup: Option<&crate::sys::cgroup::JobCgroup>,
) -> std::io::Result<u32> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}

/// One spawn on the `posix_spawn` path (Linux with glibc), prepared in the parent: no hook runs
/// in the child, so glibc starts it with `clone(CLONE_VM | CLONE_VFORK)` whatever the host's
/// signal mask or descriptors (DESIGN.md, "Descriptors").
// Read only by glibc's posix_spawn; elsewhere the plan is never made.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
pub(crate) struct SpawnPlan {
    /// The file to run: a path when it holds a '/', else a name looked up as `lookup` says.
    pub(crate) program: std::ffi::CString,
    /// The argument vector, `argv[0]` included.
    pub(crate) argv: Vec<std::ffi::CString>,
    /// The child's whole environment.
    pub(crate) envp: Envp,
    pub(crate) lookup: Lookup,
    /// The working directory to change to before the program runs.
    pub(crate) cwd: Option<std::ffi::CString>,
    /// The descriptors (all >= 3) for the child's stdin, stdout, stderr; `None`: `/dev/null`.
    pub(crate) stdio: [Option<RawFd>; 3],
    /// Close every descriptor from 3 up in the child.
    pub(crate) close_from_3: bool,
}

/// The child's environment.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
pub(crate) enum Envp {
    /// This process's environment as it is at the spawn, as std's `Command` passes it when the
    /// job changes nothing: its entries are not copied, only the array of pointers to them.
    Host,
    /// This environment, `NAME=value` each.
    Own(Vec<std::ffi::CString>),
}

impl Envp {
    /// The NULL-terminated array of pointers to the entries, valid while `self` is (and, for
    /// [`Envp::Host`], until this process next changes its environment: the caller spawns at
    /// once, as std does).
    pub(crate) fn pointers(&self) -> Vec<*const libc::c_char> {
        match self {
            Envp::Host => crate::sys::unix::host_environment(),
            Envp::Own(v) => v
                .iter()
                .map(|c| c.as_ptr())
                .chain(std::iter::once(std::ptr::null()))
                .collect(),
        }
    }

    /// Adds `entry` (`NAME=value`), copying the host's environment first when it is used.
    pub(crate) fn push(&mut self, entry: std::ffi::CString) {
        if let Envp::Host = self {
            *self = Envp::Own(crate::sys::unix::host_environment_copy());
        }
        if let Envp::Own(v) = self {
            v.push(entry);
        }
    }
}

/// How [`SpawnPlan::program`] is found.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
pub(crate) enum Lookup {
    /// It holds a '/': run it as it is.
    Direct,
    /// Search this process's PATH (`posix_spawnp`), as std does when the job's environment
    /// leaves PATH alone.
    HostPath,
    /// Try these paths in turn, as `execvp` in the child would with the child's PATH (std's
    /// behaviour when the job's environment sets, removes or clears PATH).
    Candidates(Vec<std::ffi::CString>),
}

/// The paths `execvp` tries for `name` in `path` (a PATH value), in order: an empty entry is
/// the current directory.
pub(crate) fn path_candidates<'a>(
    path: &'a [u8],
    name: &'a [u8],
) -> impl Iterator<Item = Vec<u8>> + 'a {
    path.split(|&b| b == b':').map(move |dir| {
        let mut full = if dir.is_empty() {
            b".".to_vec()
        } else {
            dir.to_vec()
        };
        full.push(b'/');
        full.extend_from_slice(name);
        full
    })
}

/// glibc's search path when PATH is unset.
pub(crate) const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// Without glibc's `posix_spawn`: never (the caller takes std's path).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn posix_spawn_can(_chdir: bool, _closefrom: bool) -> bool {
    false
}

/// Without glibc's `posix_spawn`: `ENOSYS` (never called: [`posix_spawn_can`] says no).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn posix_spawn(_plan: &SpawnPlan) -> std::io::Result<u32> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}
