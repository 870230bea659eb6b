//! Any Unix: process groups, signals, pipes, polling, waiting and reaping, rusage, descriptors,
//! the child's set-up between fork and exec, signal names.
//!
//! Like the rest of `sys`, each `unsafe` call is wrapped in a function that returns
//! `io::Result` (or cannot fail). Nothing here installs a signal handler; the only one procman can cause is the
//! `wait-timeout` crate's SIGCHLD handler on the portable wait path (see DESIGN.md).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::Duration;

/// How a reaped process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exit {
    pub(crate) code: Option<i32>,
    pub(crate) signal: Option<i32>,
}

impl Exit {
    pub(crate) fn from_std(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        Exit {
            code: status.code(),
            signal: status.signal(),
        }
    }

    /// Decodes a wait status (`waitpid`'s, or one a Slurm node reported: the same encoding).
    /// A status that is neither an exit nor a signal (stopped, continued) gives neither.
    pub(crate) fn from_wait_status(status: libc::c_int) -> Exit {
        if libc::WIFEXITED(status) {
            Exit {
                code: Some(libc::WEXITSTATUS(status)),
                signal: None,
            }
        } else if libc::WIFSIGNALED(status) {
            Exit {
                code: None,
                signal: Some(libc::WTERMSIG(status)),
            }
        } else {
            Exit {
                code: None,
                signal: None,
            }
        }
    }
}

pub(super) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Sends `signal` to every process of the group `pgid`. A group that no longer exists is not an
/// error (ESRCH is ignored). The caller guarantees that the group leader has not been reaped, so
/// the id cannot have been reused.
pub(crate) fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: killpg has no memory-safety preconditions.
    match cvt(unsafe { libc::killpg(pgid as libc::pid_t, signal) }) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// True when the host process ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT): the kernel then reaps
/// children itself and their exit statuses are lost.
pub(crate) fn sigchld_ignored() -> bool {
    // SAFETY: a null new action only queries the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) != 0 {
            return false;
        }
        old.sa_sigaction == libc::SIG_IGN || old.sa_flags & libc::SA_NOCLDWAIT != 0
    }
}

/// A file holding `bytes`, positioned at its start, to be handed to a child as stdin: a memfd on
/// Linux, an unlinked temporary file elsewhere. No pipe, so no writer thread and no SIGPIPE.
pub(crate) fn bytes_file(bytes: &[u8]) -> io::Result<File> {
    use std::io::{Seek, SeekFrom, Write};
    #[cfg(target_os = "linux")]
    let mut file = {
        // SAFETY: the name is a valid C string; the returned fd is owned by the File.
        let fd = cvt(unsafe { libc::memfd_create(c"procman-input".as_ptr(), libc::MFD_CLOEXEC) })?;
        unsafe { File::from_raw_fd(fd) }
    };
    #[cfg(not(target_os = "linux"))]
    let mut file = {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "procman-input-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let _ = std::fs::remove_file(&path);
        f
    };
    file.write_all(bytes)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// A close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    #[cfg(target_os = "linux")]
    // SAFETY: fds has room for two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    #[cfg(not(target_os = "linux"))]
    // SAFETY: as above; then mark both ends close-on-exec.
    unsafe {
        cvt(libc::pipe(fds.as_mut_ptr()))?;
        for fd in fds {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

/// How many bytes a pipe holds unread (`FIONREAD`).
pub(crate) fn unread_bytes(pipe: &File) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid.
    cvt(unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut n) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Waits until one of `fds` is readable or `timeout` passes (`None`: no limit). Returns which
/// were readable (or hung up). EINTR is retried with the time that is left.
/// No allocation: the descriptors and the answer are arrays.
pub(crate) fn poll_readable<const N: usize>(
    fds: &[RawFd; N],
    timeout: Option<Duration>,
) -> io::Result<[bool; N]> {
    // A timeout too long for the clock: no limit.
    let deadline = timeout.and_then(crate::deadline::from_now);
    let mut pfds: [libc::pollfd; N] = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        let left = crate::deadline::left(deadline, std::time::Instant::now());
        #[cfg(target_os = "linux")]
        let r = {
            // ppoll: the deadline to the nanosecond (poll's milliseconds, rounded up so a wait
            // never ends early, made each timeout up to 1 ms late).
            let ts = left.map(|l| libc::timespec {
                tv_sec: l.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
                tv_nsec: l.subsec_nanos() as _,
            });
            let tsp = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: pfds is a valid array of pollfd for its length; tsp is null or points to
            // a timespec that outlives the call; no signal mask is given.
            unsafe {
                libc::ppoll(
                    pfds.as_mut_ptr(),
                    pfds.len() as libc::nfds_t,
                    tsp,
                    std::ptr::null(),
                )
            }
        };
        #[cfg(not(target_os = "linux"))]
        let r = {
            // Round up so a wait never ends a little before its deadline.
            let ms = left.map_or(-1, |l| {
                l.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            });
            // SAFETY: pfds is a valid array of pollfd for its length.
            unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) }
        };
        if r >= 0 {
            return Ok(pfds.map(|p| p.revents != 0));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reaps `pid` (which must have exited, or this blocks until it does) and returns how it ended
/// with the kernel's resource figures for it. Only the worker that spawned `pid` calls this,
/// exactly once.
pub(crate) fn wait4(pid: u32) -> io::Result<(Exit, Rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: status and rusage point to valid, writable memory.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
        if r >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    // ru_maxrss is in KiB on Linux, bytes on macOS.
    #[cfg(target_os = "macos")]
    let peak = ru.ru_maxrss as u64;
    #[cfg(not(target_os = "macos"))]
    let peak = ru.ru_maxrss as u64 * 1024;
    Ok((
        Exit::from_wait_status(status),
        Rusage {
            user_cpu: tv(ru.ru_utime),
            system_cpu: tv(ru.ru_stime),
            peak_memory: peak,
        },
    ))
}

/// The kernel's resource figures for a reaped child ([`wait4`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rusage {
    pub(crate) user_cpu: Duration,
    pub(crate) system_cpu: Duration,
    /// Peak resident memory in bytes.
    pub(crate) peak_memory: u64,
}

/// Physical memory of the machine in bytes, if the platform tells.
pub(crate) fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| pages as u64 * size as u64)
}

/// Marks every descriptor from `low` up close-on-exec. Runs in the child between fork and exec,
/// so it only makes async-signal-safe calls: `close_range(CLOSE_RANGE_CLOEXEC)` on Linux 5.11+,
/// else `fcntl` on each descriptor below the soft `RLIMIT_NOFILE` (at most 65536).
/// Marking rather than closing keeps std's exec-error pipe working.
pub(crate) fn cloexec_from(low: libc::c_int) {
    #[cfg(target_os = "linux")]
    {
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 4;
        // SAFETY: close_range only changes descriptor flags.
        let r = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                low as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            )
        };
        if r == 0 {
            return;
        }
    }
    // SAFETY: getrlimit and fcntl are async-signal-safe and touch only this process.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 {
            (rl.rlim_cur as u64).min(65536) as libc::c_int
        } else {
            4096
        };
        for fd in low..max {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags != -1 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Set once a descriptor a child would inherit was seen; never cleared (see
/// [`host_may_leak_fds`]).
static INHERITABLE_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process has (or once had) a descriptor >= 3 without `FD_CLOEXEC`, that is one a
/// child would inherit. Decides whether a spawn needs the `pre_exec` that marks such descriptors
/// close-on-exec in the child (which makes std fork instead of using `posix_spawn`).
///
/// Linux: one pass over `/proc/self/fd` (open, getdents64, one `fcntl(F_GETFD)` per descriptor,
/// close; no allocation), about 10 µs with 40 descriptors, against ~0.4 ms of CPU for a fork of
/// a multi-threaded process. Sticky: once a descriptor is seen, every later call says true
/// without scanning, so a host that ever opens inheritable descriptors stays on the exact path.
/// The check is not atomic with the spawn: a descriptor another host thread creates *without*
/// `O_CLOEXEC` between this scan and the spawn, while no such descriptor was ever seen before,
/// would reach that one child (DESIGN.md, "Descriptors"). Elsewhere, or when `/proc` cannot be
/// read: always true (the exact path).
pub(crate) fn host_may_leak_fds() -> bool {
    use std::sync::atomic::Ordering;
    if INHERITABLE_SEEN.load(Ordering::Relaxed) {
        return true;
    }
    let found = scan_inheritable_fds().unwrap_or(true);
    if found {
        INHERITABLE_SEEN.store(true, Ordering::Relaxed);
    }
    found
}

#[cfg(target_os = "linux")]
fn scan_inheritable_fds() -> Option<bool> {
    // SAFETY: a NUL-terminated path; the descriptor is ours and closed below.
    let dir = unsafe {
        libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return None;
    }
    let mut buf = [0u8; 4096];
    let mut found = Some(false);
    'read: loop {
        // SAFETY: the kernel writes at most buf.len() bytes of dirent64 records into buf.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir,
                buf.as_mut_ptr(),
                buf.len() as libc::c_uint,
            )
        };
        if n < 0 {
            found = None;
            break;
        }
        if n == 0 {
            break;
        }
        let mut off = 0usize;
        while off < n as usize {
            // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            let name = &buf[off + 19..off + reclen];
            let mut fd: libc::c_int = 0;
            let mut digits = 0;
            for &b in name.iter().take_while(|&&b| b != 0) {
                if !b.is_ascii_digit() {
                    digits = 0;
                    break;
                }
                fd = fd
                    .saturating_mul(10)
                    .saturating_add((b - b'0') as libc::c_int);
                digits += 1;
            }
            off += reclen;
            if digits == 0 || fd < 3 || fd == dir {
                continue;
            }
            // SAFETY: F_GETFD only reads the descriptor's flags; a closed one gives -1.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            if flags != -1 && flags & libc::FD_CLOEXEC == 0 {
                found = Some(true);
                break 'read;
            }
        }
    }
    // SAFETY: closing the descriptor opened above.
    unsafe { libc::close(dir) };
    found
}

#[cfg(not(target_os = "linux"))]
fn scan_inheritable_fds() -> Option<bool> {
    None
}

/// Whether the calling thread blocks any signal. A child inherits its parent thread's mask
/// across `fork` and `exec`, and std does not reset it: a job started from a thread that
/// blocks SIGTERM (a host that takes signals with `sigwait`, such as the procman tool) would
/// ignore procman's SIGTERM and always wait for the SIGKILL after the grace period.
pub(crate) fn signals_blocked() -> bool {
    // SAFETY: querying the mask into a local set; a null new set changes nothing.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut set) != 0 {
            return false;
        }
        (1..32).any(|s| libc::sigismember(&set, s) == 1)
    }
}

/// Unblocks every signal. Runs in the child between fork and exec (async-signal-safe).
pub(crate) fn unblock_all_signals() {
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe; the set is local.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Clears the file status flags of `file` (`F_SETFL` 0), for a file opened with `O_NONBLOCK`
/// only so that `open` would not block: afterwards reads and writes block as usual.
pub(crate) fn clear_status_flags(file: &File) -> io::Result<()> {
    // SAFETY: F_SETFL on a descriptor the caller owns.
    cvt(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) }).map(drop)
}

/// Makes reads of `file` non-blocking (`O_NONBLOCK` added to its status flags). A failure is
/// ignored: the caller's reads then block, which its `poll` makes harmless.
pub(crate) fn set_nonblocking(file: &File) {
    // SAFETY: F_GETFL/F_SETFL on a descriptor the caller owns.
    unsafe {
        let fl = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// The first `byte` in `data`: libc's `memchr` (vectorised), not a byte-at-a-time loop, which
/// cost ~0.4 s of CPU per GiB of observed output (docs/performance.md).
pub(crate) fn find_byte(data: &[u8], byte: u8) -> Option<usize> {
    // SAFETY: memchr reads at most data.len() bytes from data's start; a non-null result
    // points into data.
    let p = unsafe { libc::memchr(data.as_ptr().cast(), libc::c_int::from(byte), data.len()) };
    (!p.is_null()).then(|| p as usize - data.as_ptr() as usize)
}

/// Has `cmd`'s child, between fork and exec, mark the inherited descriptors from 3 up
/// close-on-exec (`close_inherited_fds`) and unblock every signal (`unblock`). With neither,
/// nothing is added (a `pre_exec` hook makes std fork instead of using `posix_spawn`).
pub(crate) fn child_setup(
    cmd: &mut std::process::Command,
    close_inherited_fds: bool,
    unblock: bool,
) {
    use std::os::unix::process::CommandExt;
    if !close_inherited_fds && !unblock {
        return;
    }
    // SAFETY: the closure only calls async-signal-safe functions (see `cloexec_from` and
    // `unblock_all_signals`).
    unsafe {
        cmd.pre_exec(move || {
            if close_inherited_fds {
                cloexec_from(3);
            }
            if unblock {
                unblock_all_signals();
            }
            Ok(())
        });
    }
}

/// The conventional name of a signal number on this system (libc's numbering, so SIGUSR1 is
/// 10 on Linux and 30 on macOS), for the signals a job is commonly ended by.
pub(crate) fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: [(libc::c_int, &str); 17] = [
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGBUS, "SIGBUS"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGKILL, "SIGKILL"),
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGXFSZ, "SIGXFSZ"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == signal)
        .map(|&(_, name)| name)
}

extern "C" {
    /// The C library's environment: a NULL-terminated array of `NAME=value` strings.
    static environ: *const *const libc::c_char;
}

/// A NULL-terminated copy of the array of pointers to this process's environment entries (the
/// entries themselves are not copied), for a spawn made at once: what std's `Command` passes
/// when a child's environment is not changed. The entries stay valid until this process next
/// changes its environment, and glibc's `setenv`/`putenv` leave the old entries allocated, so
/// only the short copy of the array races with another thread's change, as std's own read does
/// (changing the environment while other threads read it is the caller's hazard in Rust, whose
/// `set_var` is `unsafe` for that reason).
pub(crate) fn host_environment() -> Vec<*const libc::c_char> {
    let mut v = Vec::with_capacity(64);
    // SAFETY: `environ` is NULL or a NULL-terminated array of C strings kept by the C library;
    // reading it is what getenv does.
    unsafe {
        let mut p = environ;
        while !p.is_null() && !(*p).is_null() {
            v.push(*p);
            p = p.add(1);
        }
    }
    v.push(std::ptr::null());
    v
}

/// This process's environment, each entry copied (the strings [`host_environment`] points to).
pub(crate) fn host_environment_copy() -> Vec<std::ffi::CString> {
    let pointers = host_environment();
    pointers
        .iter()
        .take_while(|p| !p.is_null())
        // SAFETY: each pointer is a C string of the environment, read at once as `getenv` would.
        .map(|&p| unsafe { std::ffi::CStr::from_ptr(p) }.to_owned())
        .collect()
}
