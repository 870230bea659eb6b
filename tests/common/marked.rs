//! Processes marked by a unique argument, for the containment tests: found in `/proc`, and
//! killed by pid when the test ends.
#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::proc_stat;

/// A marker argument no other process uses, and the processes carrying it: killed (SIGKILL, by
/// pid) and the leaders reaped when dropped.
pub struct Marked {
    pub marker: String,
    pub leaders: Vec<u32>,
}

impl Marked {
    pub fn new(tag: &str) -> Marked {
        static N: AtomicU64 = AtomicU64::new(0);
        Marked {
            marker: format!(
                "procman-contain-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            leaders: Vec::new(),
        }
    }

    /// Live (not zombie) processes with the marker among their arguments.
    pub fn live(&self) -> Vec<u32> {
        let want = self.marker.as_bytes();
        all_pids()
            .into_iter()
            .filter(|&p| matches!(proc_stat(p), Some((s, _, _)) if s != 'Z' && s != 'X'))
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).any(|a| a == want))
            })
            .collect()
    }

    pub fn reap(&mut self, pid: u32) -> libc::rusage {
        self.leaders.retain(|&p| p != pid);
        let mut status = 0;
        // SAFETY: valid pointers; waits for our own child only.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
        assert_eq!(r, pid as libc::pid_t, "wait4({pid})");
        ru
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        for pid in self.live() {
            // SAFETY: kill has no memory preconditions; the pid was just seen with our marker.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        for &pid in &self.leaders {
            // SAFETY: as above; then reap our own child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
                libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            }
        }
    }
}

pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a fresh descriptor we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind `fd` has exited (pidfd readable).
pub fn exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}
