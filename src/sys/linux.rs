//! Linux only: pidfds, eventfds, inotify, `waitid(WNOWAIT)`, `/proc`. `elsewhere.rs` has the
//! same items for other systems, where each one is unavailable.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::unix::cvt;

/// Workers can wait for their child without a signal handler (pidfd, eventfd, `waitid`).
pub(crate) const HANDLER_FREE_WAIT: bool = true;
/// Observed output can be read back from the files the program writes (inotify, `/proc`).
pub(crate) const FOLLOW_FILES: bool = true;

/// Linux: a pidfd for a child, readable once the child has exited (before it is reaped).
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; the result is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor (pidfds are always close-on-exec).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Linux: an eventfd used to wake a worker blocked in `poll` (kill requests, shutdown).
pub(crate) struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd returns a fresh descriptor that we own.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        Ok(EventFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64. A full counter (EAGAIN) still wakes.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(crate) fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; EAGAIN when there was nothing.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Linux: an inotify instance told of every write to the files it watches (`IN_MODIFY`), so a
/// reader can follow a log file the program writes directly. Readable while events are queued.
pub(crate) struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    /// Fails with EMFILE once the user's `max_user_instances` (often 128) are in use.
    pub(crate) fn new() -> io::Result<Inotify> {
        // SAFETY: inotify_init1 returns a fresh descriptor that we own.
        let fd = cvt(unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) })?;
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches the file behind `file` (through `/proc/self/fd`, so a rename or an unlink of
    /// its path changes nothing) for its next write only (`IN_ONESHOT`): while no watch is
    /// armed, the program's writes cost it nothing. Arming an armed watch changes nothing.
    pub(crate) fn watch_once(&self, file: &File) -> io::Result<()> {
        let path = proc_fd_path(file)?;
        let mask = libc::IN_MODIFY | libc::IN_ONESHOT;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        cvt(unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) })?;
        Ok(())
    }

    /// Discards the queued events; never blocks.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads into a valid buffer of its length; EAGAIN once the queue is empty.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return;
            }
        }
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn proc_fd_path(file: &File) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io::Error::other)
}

/// Linux: a second, read-only open of the regular file behind `file` (its own offset, at 0), or
/// an error when `file` is not a regular file or `/proc` is not mounted.
pub(crate) fn reopen_regular_for_reading(file: &File) -> io::Result<File> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "not a regular file",
        ));
    }
    let path = proc_fd_path(file)?;
    // SAFETY: a NUL-terminated path; the result is a fresh descriptor that we own.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    let reader = unsafe { File::from_raw_fd(fd) };
    let again = reader.metadata()?;
    if (again.dev(), again.ino()) != (meta.dev(), meta.ino()) {
        return Err(io::Error::other("/proc/self/fd led to another file"));
    }
    Ok(reader)
}

/// Linux: true once the child `pid` has exited, leaving it unreaped (`WNOWAIT`), so its
/// process group id stays ours. Never blocks.
pub(crate) fn has_exited(pid: u32) -> io::Result<bool> {
    loop {
        // SAFETY: info points to valid, writable memory; WNOHANG | WNOWAIT only reports.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            // SAFETY: waitid filled in a child-state siginfo (si_pid 0: not exited yet).
            return Ok(unsafe { info.si_pid() } != 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// About how many more threads this process can create before the system refuses one, when
/// it tells (Linux): each of procman's threads takes about four memory mappings (stack and
/// guard page, alternate signal stack and guard page) out of `vm.max_map_count`, with room
/// left for the rest of the process (a fifth of what is free is counted), and one task out of
/// `kernel.threads-max`. A thread std cannot give its alternate signal stack aborts the
/// process, so the pool stops short of these limits rather than finding them. `RLIMIT_NPROC`
/// is not counted (the user's other processes are unknown here; root is exempt).
pub(crate) fn thread_room() -> Option<usize> {
    let read_num =
        |path: &str| -> Option<usize> { std::fs::read_to_string(path).ok()?.trim().parse().ok() };
    let maps_room = (|| {
        let max = read_num("/proc/sys/vm/max_map_count")?;
        let used = std::fs::read("/proc/self/maps")
            .ok()?
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Some(max.saturating_sub(used) / 5)
    })();
    let tasks_room = (|| {
        let max = read_num("/proc/sys/kernel/threads-max")?;
        // /proc/loadavg: "1.0 2.0 3.0 running/total last_pid"
        let load = std::fs::read_to_string("/proc/loadavg").ok()?;
        let total: usize = load
            .split_whitespace()
            .nth(3)?
            .split('/')
            .nth(1)?
            .parse()
            .ok()?;
        Some(max.saturating_sub(total) * 9 / 10)
    })();
    match (maps_room, tasks_room) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
