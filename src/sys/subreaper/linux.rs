//! The Linux side of [`super`].

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys::cgroup::pidfd_send_signal;

/// Sets (`true`) or clears the child-subreaper attribute of this process
/// (`prctl(PR_SET_CHILD_SUBREAPER)`, Linux 3.4+). Never blocks. See the module documentation for
/// what it changes for the host.
pub fn set_child_subreaper(on: bool) -> io::Result<()> {
    // SAFETY: prctl with an integer argument; no memory is passed.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_CHILD_SUBREAPER,
            libc::c_ulong::from(on),
            0,
            0,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether this process is a child subreaper (`PR_GET_CHILD_SUBREAPER`).
pub fn is_child_subreaper() -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    // SAFETY: the kernel writes one int through the pointer, which is valid.
    let r = unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut v as *mut libc::c_int,
            0,
            0,
            0,
        )
    };
    if r == 0 {
        Ok(v != 0)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The marked processes re-parented to this process for one job: found by [`Adopted::scan`],
/// ended by [`Adopted::kill_all`]. Holds a pidfd for each, so a pid is never confused with a
/// later process that reuses it.
#[derive(Debug)]
pub struct Adopted {
    entry: Vec<u8>,
    known: Vec<(u32, OwnedFd)>,
}

impl Adopted {
    /// For the job whose processes carry [`super::marker_entry`]`(token)`.
    pub fn new(token: &str) -> Adopted {
        Adopted {
            entry: super::marker_entry(token).into_bytes(),
            known: Vec::new(),
        }
    }

    /// The pids found so far and not yet reaped.
    pub fn pids(&self) -> Vec<u32> {
        self.known.iter().map(|(p, _)| *p).collect()
    }

    /// One pass over `/proc`: remembers every live process whose parent is this process, that
    /// carries the marker and for which `is_leader` (a job's own leader, which the job's worker
    /// reaps) is false; reaps (by pidfd, without blocking) the remembered ones that have
    /// exited. Returns how many are remembered. Costs one `/proc/<pid>/stat` read per process
    /// on the machine; never blocks.
    pub fn scan(&mut self, is_leader: &dyn Fn(u32) -> bool) -> io::Result<usize> {
        self.reap_exited();
        let me = std::process::id();
        for entry in std::fs::read_dir("/proc")? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if parent_of(pid) != Some(me)
                || is_leader(pid)
                || self.known.iter().any(|(p, _)| *p == pid)
            {
                continue;
            }
            let Ok(fd) = crate::sys::pidfd_open(pid) else {
                continue;
            };
            // Read after the pidfd was taken, then check the process is still alive: the
            // reads were then about the process the pidfd holds, not a later one with its pid.
            let ours = parent_of(pid) == Some(me) && self.has_marker(pid);
            if ours && !exited(&fd) {
                self.known.push((pid, fd));
            }
        }
        Ok(self.known.len())
    }

    fn has_marker(&self, pid: u32) -> bool {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == self.entry.as_slice()))
    }

    /// Reaps the remembered processes that have exited (`waitid(P_PIDFD, WNOHANG)`).
    fn reap_exited(&mut self) {
        self.known.retain(|(_, fd)| !(exited(fd) && reap(fd)));
    }

    /// Scans, SIGKILLs every remembered process, reaps each, and repeats (their own orphans are
    /// re-parented here in turn) until a scan finds none or `timeout` passes (a process in
    /// uninterruptible sleep can outlast it). Returns how many were killed and reaped.
    pub fn kill_all(
        &mut self,
        is_leader: &dyn Fn(u32) -> bool,
        timeout: Duration,
    ) -> io::Result<usize> {
        let deadline = crate::deadline::from_now(timeout);
        let mut ended = 0;
        loop {
            if self.scan(is_leader)? == 0 {
                return Ok(ended);
            }
            for (_, fd) in &self.known {
                let _ = pidfd_send_signal(fd, libc::SIGKILL);
            }
            let before = self.known.len();
            let mut nap = Duration::from_micros(100);
            while !self.known.is_empty() {
                self.reap_exited();
                if crate::deadline::left(deadline, Instant::now()) == Some(Duration::ZERO) {
                    return Ok(ended + before - self.known.len());
                }
                std::thread::sleep(nap);
                nap = nap.saturating_mul(2).min(Duration::from_millis(5));
            }
            ended += before;
        }
    }
}

/// The parent pid in `/proc/<pid>/stat` (the field after the state, which follows the last
/// `)`: the command name may hold anything).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the process behind a pidfd has exited (the pidfd is readable); never blocks.
fn exited(fd: &OwnedFd) -> bool {
    crate::sys::poll_readable(&[fd.as_raw_fd()], Some(Duration::ZERO)).is_ok_and(|r| r[0])
}

/// Reaps the child behind a pidfd (`waitid(P_PIDFD, WNOHANG)`); true once it is reaped or is not ours to
/// reap (ECHILD: the host reaped it first).
fn reap(fd: &OwnedFd) -> bool {
    loop {
        // SAFETY: info is valid writable memory; P_PIDFD names exactly this process.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG;
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                fd.as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if r == 0 {
            // SAFETY: waitid filled in a child-state siginfo (si_pid 0: not exited yet).
            return unsafe { info.si_pid() } != 0;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            _ => return true,
        }
    }
}
