//! The operating-system layer: process groups, signals, waiting and reaping, rusage.
//!
//! Everything `unsafe` in procman lives here, each call wrapped in a function that returns
//! `io::Result`. Nothing here installs a signal handler; the only one procman can cause is the
//! `wait-timeout` crate's SIGCHLD handler on the portable wait path (see DESIGN.md).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::record::ResourceUsage;

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

    fn from_wait_status(status: libc::c_int) -> Exit {
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

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
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

/// Linux: a pidfd for a child, readable once the child has exited (before it is reaped).
#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
pub(crate) struct Waker {
    fd: OwnedFd,
}

#[cfg(target_os = "linux")]
impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        // SAFETY: eventfd returns a fresh descriptor that we own.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        Ok(Waker {
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
#[cfg(target_os = "linux")]
pub(crate) struct Inotify {
    fd: OwnedFd,
}

#[cfg(target_os = "linux")]
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

#[cfg(target_os = "linux")]
fn proc_fd_path(file: &File) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io::Error::other)
}

/// Linux: a second, read-only open of the regular file behind `file` (its own offset, at 0), or
/// an error when `file` is not a regular file or `/proc` is not mounted.
#[cfg(target_os = "linux")]
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
#[cfg(target_os = "linux")]
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

/// Reaps `pid` (which must have exited, or this blocks until it does) and returns how it ended
/// with the kernel's resource figures for it. Only the worker that spawned `pid` calls this,
/// exactly once.
pub(crate) fn wait4(pid: u32) -> io::Result<(Exit, ResourceUsage)> {
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
        ResourceUsage {
            wall: Duration::ZERO,
            user_cpu: Some(tv(ru.ru_utime)),
            system_cpu: Some(tv(ru.ru_stime)),
            peak_memory: Some(peak),
        },
    ))
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

/// One spawn on the `posix_spawn` path (Linux with glibc), prepared in the parent: no hook runs
/// in the child, so glibc starts it with `clone(CLONE_VM | CLONE_VFORK)` whatever the host's
/// signal mask or descriptors (DESIGN.md, "Descriptors").
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) struct SpawnPlan {
    /// The file to run: a path when it holds a '/', else a name looked up as `lookup` says.
    pub(crate) program: std::ffi::CString,
    /// The argument vector, `argv[0]` included.
    pub(crate) argv: Vec<std::ffi::CString>,
    /// The child's whole environment, `NAME=value` each.
    pub(crate) envp: Vec<std::ffi::CString>,
    pub(crate) lookup: Lookup,
    /// The working directory to change to before the program runs.
    pub(crate) cwd: Option<std::ffi::CString>,
    /// The descriptors (all >= 3) for the child's stdin, stdout, stderr; `None`: `/dev/null`.
    pub(crate) stdio: [Option<RawFd>; 3],
    /// Close every descriptor from 3 up in the child.
    pub(crate) close_from_3: bool,
}

/// How [`SpawnPlan::program`] is found.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
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

#[cfg(all(target_os = "linux", target_env = "gnu"))]
type AddClosefrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
type AddChdir =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const libc::c_char) -> libc::c_int;

/// The glibc extensions the path needs, when this glibc has them.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
struct SpawnFns {
    /// glibc 2.34+.
    closefrom: Option<AddClosefrom>,
    /// glibc 2.29+.
    chdir: Option<AddChdir>,
}

/// Looked up once, at run time (a dynamically linked program must still load where glibc is
/// older than 2.34; it then takes std's path); a static build links them from its own glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn spawn_fns() -> &'static SpawnFns {
    static FNS: std::sync::OnceLock<SpawnFns> = std::sync::OnceLock::new();
    FNS.get_or_init(|| {
        #[cfg(target_feature = "crt-static")]
        {
            SpawnFns {
                closefrom: Some(libc::posix_spawn_file_actions_addclosefrom_np as AddClosefrom),
                chdir: Some(libc::posix_spawn_file_actions_addchdir_np as AddChdir),
            }
        }
        #[cfg(not(target_feature = "crt-static"))]
        {
            // SAFETY: dlsym with RTLD_DEFAULT (null) and a NUL-terminated name only looks up;
            // a non-null answer is the glibc function of that name, whose C signature the
            // types above spell.
            unsafe {
                let closefrom = libc::dlsym(
                    std::ptr::null_mut(),
                    c"posix_spawn_file_actions_addclosefrom_np".as_ptr(),
                );
                let chdir = libc::dlsym(
                    std::ptr::null_mut(),
                    c"posix_spawn_file_actions_addchdir_np".as_ptr(),
                );
                SpawnFns {
                    closefrom: (!closefrom.is_null())
                        .then(|| std::mem::transmute::<*mut libc::c_void, AddClosefrom>(closefrom)),
                    chdir: (!chdir.is_null())
                        .then(|| std::mem::transmute::<*mut libc::c_void, AddChdir>(chdir)),
                }
            }
        }
    })
}

/// Whether [`posix_spawn`] can do a spawn that needs a working directory (`chdir`) and closing
/// the inherited descriptors (`closefrom`) with this glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn posix_spawn_can(chdir: bool, closefrom: bool) -> bool {
    let f = spawn_fns();
    (!chdir || f.chdir.is_some()) && (!closefrom || f.closefrom.is_some())
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn check_spawn(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// Owns initialised file actions; destroys them when dropped. Never moved after `init`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
struct FileActions(libc::posix_spawn_file_actions_t);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: only built by `posix_spawn` after a successful init.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// Owns initialised spawn attributes; destroys them when dropped.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
struct SpawnAttr(libc::posix_spawnattr_t);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: only built by `posix_spawn` after a successful init.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// Starts `plan` with glibc's `posix_spawn`: the child leads a new process group, has an empty
/// signal mask, SIGPIPE and SIGXFSZ at their default action (runtimes such as Rust's and
/// Python's ignore them for themselves; other dispositions are inherited as with std), its
/// stdio as planned, and (when asked) no other descriptor. The caller has checked
/// [`posix_spawn_can`]; without the functions it needs this fails with `ENOSYS`. Returns the
/// child's pid; the errors are the kernel's for the `chdir` or `exec` that failed, as std's.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn posix_spawn(plan: &SpawnPlan) -> io::Result<u32> {
    let fns = spawn_fns();
    let nosys = || io::Error::from_raw_os_error(libc::ENOSYS);
    let ptrs = |v: &[std::ffi::CString]| -> Vec<*mut libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr() as *mut libc::c_char)
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect()
    };
    let argv = ptrs(&plan.argv);
    let envp = ptrs(&plan.envp);
    // SAFETY: every pointer handed to the posix_spawn family points to initialised memory
    // that outlives the call (the plan's C strings, the local vectors and structures); the
    // file actions and attributes are initialised before use and destroyed once (Drop).
    unsafe {
        let mut fa = FileActions(std::mem::zeroed());
        check_spawn(libc::posix_spawn_file_actions_init(&mut fa.0))?;
        let mut attr = SpawnAttr(std::mem::zeroed());
        check_spawn(libc::posix_spawnattr_init(&mut attr.0))?;

        if let Some(dir) = &plan.cwd {
            let chdir = fns.chdir.ok_or_else(nosys)?;
            check_spawn(chdir(&mut fa.0, dir.as_ptr()))?;
        }
        for (target, fd) in plan.stdio.iter().enumerate() {
            let target = target as libc::c_int;
            match fd {
                Some(fd) => check_spawn(libc::posix_spawn_file_actions_adddup2(
                    &mut fa.0, *fd, target,
                ))?,
                None => check_spawn(libc::posix_spawn_file_actions_addopen(
                    &mut fa.0,
                    target,
                    c"/dev/null".as_ptr(),
                    if target == 0 {
                        libc::O_RDONLY
                    } else {
                        libc::O_WRONLY
                    },
                    0,
                ))?,
            }
        }
        if plan.close_from_3 {
            let closefrom = fns.closefrom.ok_or_else(nosys)?;
            check_spawn(closefrom(&mut fa.0, 3))?;
        }

        let flags = libc::POSIX_SPAWN_SETPGROUP
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF;
        check_spawn(libc::posix_spawnattr_setflags(&mut attr.0, flags as _))?;
        check_spawn(libc::posix_spawnattr_setpgroup(&mut attr.0, 0))?;
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        check_spawn(libc::posix_spawnattr_setsigmask(&mut attr.0, &set))?;
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::sigaddset(&mut set, libc::SIGXFSZ);
        check_spawn(libc::posix_spawnattr_setsigdefault(&mut attr.0, &set))?;

        let mut pid: libc::pid_t = 0;
        let spawn_with = |pid: &mut libc::pid_t,
                          path: &std::ffi::CStr,
                          search: bool,
                          argv: &[*mut libc::c_char]| {
            let f = if search {
                libc::posix_spawnp
            } else {
                libc::posix_spawn
            };
            check_spawn(f(
                pid,
                path.as_ptr(),
                &fa.0,
                &attr.0,
                argv.as_ptr(),
                envp.as_ptr(),
            ))
        };
        // As execvp (and std's fork path): a file the kernel will not execute (ENOEXEC: a
        // script without a `#!` line) runs as `/bin/sh FILE ARGS...`. glibc's posix_spawn no
        // longer does this itself.
        let spawn_at = |pid: &mut libc::pid_t, path: &std::ffi::CStr, search: bool| match spawn_with(
            pid, path, search, &argv,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
                let found = if search {
                    search_host_path(path)
                } else {
                    Some(path.to_owned())
                };
                let Some(found) = found else { return Err(e) };
                let sh: Vec<*mut libc::c_char> = [c"/bin/sh".as_ptr(), found.as_ptr()]
                    .into_iter()
                    .chain(plan.argv.iter().skip(1).map(|a| a.as_ptr()))
                    .map(|p| p as *mut libc::c_char)
                    .chain(std::iter::once(std::ptr::null_mut()))
                    .collect();
                spawn_with(pid, c"/bin/sh", false, &sh)
            }
            r => r,
        };
        match &plan.lookup {
            Lookup::Direct => spawn_at(&mut pid, &plan.program, false)?,
            Lookup::HostPath => spawn_at(&mut pid, &plan.program, true)?,
            Lookup::Candidates(paths) => {
                // As execvp: a name not found, or not a directory on the way, goes on to the
                // next entry; EACCES too, but it is what is reported when nothing ran.
                let mut denied = false;
                let mut started = false;
                for path in paths {
                    match spawn_at(&mut pid, path, false) {
                        Ok(()) => {
                            started = true;
                            break;
                        }
                        Err(e) => match e.raw_os_error() {
                            Some(libc::EACCES) => denied = true,
                            Some(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV) => {}
                            _ => return Err(e),
                        },
                    }
                }
                if !started {
                    return Err(io::Error::from_raw_os_error(if denied {
                        libc::EACCES
                    } else {
                        libc::ENOENT
                    }));
                }
            }
        }
        Ok(pid as u32)
    }
}

/// The paths `execvp` tries for `name` in `path` (a PATH value), in order: an empty entry is
/// the current directory.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
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
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// The first executable regular file named `name` in this process's PATH (glibc's default
/// when there is none), as `posix_spawnp` found it: only for the rare ENOEXEC retry.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn search_host_path(name: &std::ffi::CStr) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let host = std::env::var_os("PATH");
    let path = host.as_ref().map_or(DEFAULT_PATH, |p| p.as_bytes());
    let found = path_candidates(path, name.to_bytes()).find(|full| {
        std::fs::metadata(std::ffi::OsStr::from_bytes(full))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    found.and_then(|full| std::ffi::CString::new(full).ok())
}

/// About how many more threads this process can create before the system refuses one, when
/// it tells (Linux): each of procman's threads takes about four memory mappings (stack and
/// guard page, alternate signal stack and guard page) out of `vm.max_map_count`, with room
/// left for the rest of the process (a fifth of what is free is counted), and one task out of
/// `kernel.threads-max`. A thread std cannot give its alternate signal stack aborts the
/// process, so the pool stops short of these limits rather than finding them. `RLIMIT_NPROC`
/// is not counted (the user's other processes are unknown here; root is exempt).
#[cfg(target_os = "linux")]
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

/// Elsewhere: not known.
#[cfg(not(target_os = "linux"))]
pub(crate) fn thread_room() -> Option<usize> {
    None
}
