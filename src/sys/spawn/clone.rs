//! Starting a job's program with procman's own `clone3`: the usual path on x86_64 Linux, and
//! the only one that puts a child in its cgroup with no moment at which it runs outside it.
//!
//! - **Into a cgroup.** glibc's `posix_spawn` can place the child in a cgroup only from glibc
//!   2.39 (`posix_spawnattr_setcgroup_np`); moving the child after `posix_spawn` returns leaves
//!   a window in which it may already have forked. So this path creates the child with
//!   `clone3(CLONE_INTO_CGROUP)` (Linux 5.7+): the kernel places it in the job's cgroup as it
//!   creates it. Where `clone3` or `CLONE_INTO_CGROUP` is missing (ENOSYS, E2BIG: before Linux
//!   5.7, or a seccomp filter), it forks and the child writes `0` into the cgroup's
//!   `cgroup.procs` before anything else.
//! - **Without one** (process-group and subreaper containment), on x86_64: the same child,
//!   without the cgroup, because it costs less than glibc's `posix_spawn` (whose child here
//!   sets every one of the 64 signal actions, and which maps a stack per spawn): no extra
//!   system call per signal whose action is already the default, one stack per thread reused,
//!   the child's errno passed in the shared memory. On w1 of `../shared/bench` this took the
//!   process-group path from 1.03x to 0.98x of a raw `std::process` loop (docs/performance.md).
//!   Where `clone3` is refused (an old kernel or a seccomp filter), glibc's `posix_spawn`
//!   takes over for good.
//!
//! On x86_64 the child shares the parent's memory and runs on a stack of its own until it
//! execs (`CLONE_VM | CLONE_VFORK`, as glibc's `posix_spawn` does; a few lines of assembly
//! start it on that stack): its cost does not grow with the host's memory, where a fork's does
//! (examples/spawn_cost.rs: with 500 MiB resident in the parent, a fork-semantics spawn took
//! ~11 ms of the parent's CPU here, this one ~0.05 ms, as `posix_spawn`). Elsewhere the cgroup
//! child is a copy of the parent (fork semantics), and a job without a cgroup takes glibc's
//! `posix_spawn`.
//!
//! The same [`SpawnPlan`] as the `posix_spawn` path drives it, so the child gets the same
//! stdio, working directory, environment, program lookup (with the ENOEXEC `/bin/sh` retry),
//! process group (it leads a new one), signal mask (empty), SIGPIPE/SIGXFSZ (default) and
//! glibc's two internal signals (ignored, as glibc's `posix_spawn` leaves them).

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use crate::sys::cgroup::JobCgroup;
use crate::sys::{Envp, Lookup, SpawnPlan};

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// How the child is created and put in its cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// x86_64: `clone3` with `CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP`, the child on a stack
    /// of its own until it execs: no copy of the parent's page tables, so its cost does not
    /// grow with the parent's memory (what glibc's `posix_spawn` does, plus the cgroup).
    /// Elsewhere the same as [`Entry::Clone3`].
    Vfork,
    /// `clone3` with `CLONE_INTO_CGROUP` and fork semantics: the kernel creates the child in
    /// the cgroup.
    Clone3,
    /// `fork`, then the child writes `0` into the cgroup's `cgroup.procs`.
    Fork,
}

/// 0: not tried yet, 1: clone3 works, 2: it does not (old kernel): fork.
static CLONE3: AtomicU8 = AtomicU8::new(0);

/// Whether `clone3` without a cgroup was refused once (then glibc's `posix_spawn` is used).
static PLAIN_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts `plan`: in `cgroup` when there is one ([`spawn_in_cgroup`]), else with this
/// module's `clone3` child on x86_64 and glibc's `posix_spawn` elsewhere or where `clone3` is
/// refused. Blocks until the child has exec'd or failed to. Returns the child's pid (to be
/// reaped by the caller); the errors are the kernel's for the `chdir` or `exec` that failed
/// (a failed child is reaped here), or for the creation of the child.
pub(crate) fn spawn_job(plan: &SpawnPlan, cgroup: Option<&JobCgroup>) -> io::Result<u32> {
    if let Some(cg) = cgroup {
        return spawn_in_cgroup(plan, cg);
    }
    if cfg!(target_arch = "x86_64") && !PLAIN_REFUSED.load(Ordering::Relaxed) {
        match spawn_into(plan, None, Entry::Vfork) {
            // Not a lack of resources (EAGAIN, ENOMEM: posix_spawn would fail alike): clone3
            // or its flags are refused here.
            Err(Failed::Create(e))
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::E2BIG | libc::EPERM | libc::EINVAL)
                ) =>
            {
                log::debug!("clone3 refused ({e}); jobs start with posix_spawn");
                PLAIN_REFUSED.store(true, Ordering::Relaxed);
            }
            r => return r.map_err(Failed::into_error),
        }
    }
    crate::sys::posix_spawn(plan)
}

/// Starts `plan` as [`crate::sys::posix_spawn`] would, but inside `cgroup` from its first
/// instruction: with `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)` ([`Entry::Vfork`]),
/// or by a fork whose child enters the cgroup first where the kernel lacks `clone3` (before
/// 5.7). Blocks until the child has exec'd or failed to, like `posix_spawn`. Returns the
/// child's pid (to be reaped by the caller); the errors are the kernel's for the
/// `clone3`/`fork`, the cgroup entry, the `chdir` or the `exec` that failed (a failed child is
/// reaped here).
pub(crate) fn spawn_in_cgroup(plan: &SpawnPlan, cgroup: &JobCgroup) -> io::Result<u32> {
    if CLONE3.load(Ordering::Relaxed) != 2 {
        match spawn_into(plan, Some(cgroup), Entry::Vfork) {
            Err(Failed::Create(e))
                if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::E2BIG)) =>
            {
                CLONE3.store(2, Ordering::Relaxed);
            }
            r => {
                CLONE3.store(1, Ordering::Relaxed);
                return r.map_err(Failed::into_error);
            }
        }
    }
    spawn_via(plan, cgroup, Entry::Fork)
}

/// Everything the child needs, made in the parent: between fork and exec the child only makes
/// system calls on this (no allocation, no lock).
struct Prepared<'a> {
    candidates: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// `/bin/sh`, the file (filled in by the child), the arguments after `argv[0]`.
    sh_argv: Vec<*const libc::c_char>,
    plan: &'a SpawnPlan,
    err: ErrTo,
    procs_fd: Option<RawFd>,
}

/// [`spawn_in_cgroup`] with the entry chosen (for tests and measurements).
pub(crate) fn spawn_via(plan: &SpawnPlan, cgroup: &JobCgroup, entry: Entry) -> io::Result<u32> {
    spawn_into(plan, Some(cgroup), entry).map_err(Failed::into_error)
}

/// Why a spawn failed: the child could not be created, or it failed before its exec.
enum Failed {
    Create(io::Error),
    Child(io::Error),
}

impl Failed {
    fn into_error(self) -> io::Error {
        match self {
            Failed::Create(e) | Failed::Child(e) => e,
        }
    }
}

/// Starts `plan` with `entry`, in `cgroup` when there is one.
fn spawn_into(plan: &SpawnPlan, cgroup: Option<&JobCgroup>, entry: Entry) -> Result<u32, Failed> {
    let candidates = candidates(plan).map_err(Failed::Child)?;
    let ptrs = |v: &mut dyn Iterator<Item = *const libc::c_char>| -> Vec<*const libc::c_char> {
        v.chain(std::iter::once(std::ptr::null())).collect()
    };
    let argv = ptrs(&mut plan.argv.iter().map(|c| c.as_ptr()));
    let envp = plan.envp.pointers();
    let sh_argv = ptrs(
        &mut [c"/bin/sh".as_ptr(), std::ptr::null()]
            .into_iter()
            .chain(plan.argv.iter().skip(1).map(|c| c.as_ptr())),
    );
    // The vfork child shares this memory: it stores its errno here (as glibc's posix_spawn
    // does), and this thread reads it once the child has exec'd or exited. A child with memory
    // of its own writes it to a close-on-exec pipe instead.
    let shared = cfg!(target_arch = "x86_64") && entry == Entry::Vfork;
    let slot = AtomicI32::new(0);
    let pipe = if shared {
        None
    } else {
        let (r, w) = crate::sys::pipe().map_err(Failed::Create)?;
        // The child dup2()s over 0..=2: the error pipe must not be one of them.
        Some((r, above_stdio(OwnedFd::from(w)).map_err(Failed::Create)?))
    };
    let mut prep = Prepared {
        candidates,
        argv,
        envp,
        sh_argv,
        plan,
        err: match &pipe {
            Some((_, w)) => ErrTo::Pipe(w.as_raw_fd()),
            None => ErrTo::Shared(&slot),
        },
        procs_fd: cgroup
            .filter(|_| entry == Entry::Fork)
            .map(|cg| cg.procs_fd()),
    };
    let pid =
        start_child(&mut prep, cgroup.map(|cg| cg.dir_fd()), entry).map_err(Failed::Create)?;
    let failed = match pipe {
        None => match slot.load(Ordering::SeqCst) {
            0 => None,
            e => Some(e),
        },
        Some((r, w)) => {
            drop(w);
            match read_errno(r) {
                Ok(e) => e,
                Err(e) => {
                    reap(pid);
                    return Err(Failed::Child(e));
                }
            }
        }
    };
    match failed {
        None => Ok(pid),
        Some(e) => {
            reap(pid);
            Err(Failed::Child(io::Error::from_raw_os_error(e)))
        }
    }
}

/// The child's errno from the error pipe: `None` when it closed the pipe by exec'ing.
fn read_errno(mut r: std::fs::File) -> io::Result<Option<i32>> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(match got {
        0 => None,
        4 => Some(i32::from_ne_bytes(buf)),
        _ => Some(libc::EIO),
    })
}

/// Where the child reports the errno of what failed before its exec.
enum ErrTo {
    /// The write end of a close-on-exec pipe (a child with memory of its own).
    Pipe(RawFd),
    /// The parent's memory, which the vfork child shares.
    Shared(*const AtomicI32),
}

/// The paths the child tries in turn, as the `posix_spawn` path's lookup does.
fn candidates(plan: &SpawnPlan) -> io::Result<Vec<CString>> {
    use std::os::unix::ffi::OsStrExt;
    Ok(match &plan.lookup {
        Lookup::Direct => vec![plan.program.clone()],
        Lookup::Candidates(paths) => paths.clone(),
        Lookup::HostPath => {
            let name = plan.program.to_bytes();
            if name.is_empty() {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            let host = std::env::var_os("PATH");
            let path = host
                .as_ref()
                .map_or(crate::sys::DEFAULT_PATH, |p| p.as_bytes());
            crate::sys::path_candidates(path, name)
                .filter_map(|p| CString::new(p).ok())
                .collect()
        }
    })
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a fresh descriptor (>= 3) that we own.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: waits for our own child `pid` only; status is valid memory.
    while unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) } == -1
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

/// Creates the child with every signal blocked (so no host handler runs in it before it resets
/// them) and runs [`child`] in it; returns its pid in the parent.
fn start_child(prep: &mut Prepared<'_>, cgroup: Option<RawFd>, entry: Entry) -> io::Result<u32> {
    let (into, cgroup_fd) = match cgroup {
        Some(fd) => (CLONE_INTO_CGROUP, fd as u64),
        None => (0, 0),
    };
    // SAFETY: the sets are local; the mask is restored in the parent before returning.
    // In the child, `child` runs only async-signal-safe system calls on `prep` (made above) and
    // never returns. Fork entries: the child has its own copy of memory. Vfork: it shares the
    // parent's memory, but the parent thread is suspended until it execs or exits, the other
    // threads never see `prep`, and it runs on a stack of its own (`clone3_vfork`).
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = match entry {
            #[cfg(target_arch = "x86_64")]
            Entry::Vfork => match ChildStack::take() {
                Ok(stack) => {
                    let args = CloneArgs {
                        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | into,
                        exit_signal: libc::SIGCHLD as u64,
                        stack: stack.base as u64,
                        stack_size: stack.len as u64,
                        cgroup: cgroup_fd,
                        ..CloneArgs::default()
                    };
                    let r = clone3_vfork(&args, prep);
                    // The child has exec'd or exited: the stack is free for this thread's next.
                    stack.put_back();
                    if r < 0 {
                        *libc::__errno_location() = -r as libc::c_int;
                        -1
                    } else {
                        r as libc::pid_t
                    }
                }
                Err(e) => {
                    libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                    return Err(e);
                }
            },
            #[cfg(not(target_arch = "x86_64"))]
            Entry::Vfork => {
                return {
                    libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                    start_child(prep, cgroup, Entry::Clone3)
                }
            }
            Entry::Clone3 => {
                let args = CloneArgs {
                    flags: into,
                    exit_signal: libc::SIGCHLD as u64,
                    cgroup: cgroup_fd,
                    ..CloneArgs::default()
                };
                libc::syscall(
                    libc::SYS_clone3,
                    &args as *const CloneArgs,
                    std::mem::size_of::<CloneArgs>(),
                ) as libc::pid_t
            }
            Entry::Fork => libc::fork(),
        };
        if pid == 0 {
            child(prep);
        }
        let e = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if pid < 0 {
            return Err(e);
        }
        Ok(pid as u32)
    }
}

/// The vfork child's stack: 256 KiB of anonymous memory (touched only as far as the child
/// uses it) above a guard page, unmapped when dropped (after the child has exec'd or exited:
/// `CLONE_VFORK` holds the parent until then).
#[cfg(target_arch = "x86_64")]
struct ChildStack {
    map: *mut libc::c_void,
    /// The usable part, above the guard page; its top is page-aligned, so 16-byte aligned.
    base: *mut libc::c_void,
    len: usize,
}

#[cfg(target_arch = "x86_64")]
impl ChildStack {
    const SIZE: usize = 256 << 10;
    const GUARD: usize = 4096;

    fn new() -> io::Result<ChildStack> {
        // SAFETY: a fresh private anonymous mapping, owned by the value; the guard page below
        // the stack is made inaccessible so an overflow faults instead of writing elsewhere.
        unsafe {
            let map = libc::mmap(
                std::ptr::null_mut(),
                Self::SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            );
            if map == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            let stack = ChildStack {
                map,
                base: map.cast::<u8>().add(Self::GUARD).cast(),
                len: Self::SIZE - Self::GUARD,
            };
            if libc::mprotect(map, Self::GUARD, libc::PROT_NONE) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(stack)
        }
    }
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// This thread's spare child stack: a thread starts one child at a time and is suspended
    /// while it runs on it, so one stack per thread serves every spawn (no map and unmap each
    /// time; its pages stay as the children left them, and a child writes before it reads).
    static SPARE_STACK: std::cell::Cell<Option<ChildStack>> = const { std::cell::Cell::new(None) };
}

#[cfg(target_arch = "x86_64")]
impl ChildStack {
    /// This thread's spare stack, or a new one.
    fn take() -> io::Result<ChildStack> {
        match SPARE_STACK.try_with(|s| s.take()) {
            Ok(Some(stack)) => Ok(stack),
            _ => ChildStack::new(),
        }
    }

    /// Keeps the stack for this thread's next spawn (unmapped if the thread is ending).
    fn put_back(self) {
        let _ = SPARE_STACK.try_with(|s| s.set(Some(self)));
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used (the child has exec'd or exited).
        unsafe { libc::munmap(self.map, Self::SIZE) };
    }
}

/// `clone3` whose child starts on the stack `args` names and runs [`vfork_child`]`(prep)`,
/// which never returns. Returns the raw result in the parent: the child's pid, or `-errno`.
///
/// # Safety
/// `args` has `CLONE_VM | CLONE_VFORK` and a valid stack that no one else uses; `prep` is fully
/// built and stays put until this returns (the parent thread is suspended meanwhile); every
/// signal is blocked in the calling thread.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_vfork(args: &CloneArgs, prep: &mut Prepared<'_>) -> libc::c_long {
    let ret: libc::c_long;
    let prep: *mut Prepared<'_> = prep;
    // The parent continues after the syscall (rax: the pid or -errno). The child (rax 0) is on
    // the new stack, 16-byte aligned at its top, and calls vfork_child(prep) there; that never
    // returns (it execs or _exits), so nothing after the call runs in the child.
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "mov rdi, r12",
        "call r13",
        "ud2",
        "2:",
        inlateout("rax") libc::SYS_clone3 => ret,
        in("rdi") args as *const CloneArgs,
        in("rsi") std::mem::size_of::<CloneArgs>(),
        in("r12") prep.cast::<libc::c_void>(),
        in("r13") vfork_child as *const () as usize,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    ret
}

/// The vfork child's first Rust frame, on its own stack.
///
/// # Safety
/// Only as [`clone3_vfork`] calls it.
#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn vfork_child(prep: *mut libc::c_void) -> ! {
    child(&mut *prep.cast::<Prepared<'_>>())
}

/// The child between its creation and exec: enter the cgroup (fork entry), lead a new process
/// group, default signal actions, stdio, working directory, descriptors, empty signal mask,
/// exec. On failure it writes the errno to the error pipe and exits with 127.
///
/// It cannot panic (a panic here would run the parent's hooks and, in the vfork child, signal
/// the parent's thread), allocate or take a lock: only system calls, on `prep` and the stack.
///
/// # Safety
/// Only in a freshly created child, with every signal blocked, whose parent thread is
/// suspended (vfork) or whose memory is its own (fork); `prep` was fully built before.
unsafe fn child(prep: &mut Prepared<'_>) -> ! {
    let err_w = &prep.err;
    if let Some(fd) = prep.procs_fd {
        if crate::sys::cgroup::enter_from_child(fd).is_err() {
            fail(err_w, errno());
        }
    }
    if libc::setpgid(0, 0) != 0 {
        fail(err_w, errno());
    }
    // A handled signal goes back to its default action (exec would do that anyway; a host
    // handler must not run in the child meanwhile), and so do SIGPIPE and SIGXFSZ (runtimes
    // ignore them for themselves). Other ignored signals stay ignored, as with posix_spawn.
    let mut sa: libc::sigaction = std::mem::zeroed();
    for sig in 1..65 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        if libc::sigaction(sig, std::ptr::null(), &mut sa) != 0 {
            continue;
        }
        let reset = sa.sa_sigaction != libc::SIG_DFL
            && (sa.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE || sig == libc::SIGXFSZ);
        if reset {
            sa.sa_sigaction = libc::SIG_DFL;
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    // glibc's posix_spawn leaves its two internal signals (32, 33: thread cancellation and
    // setxid) ignored in the child, and exec keeps that; do the same. The glibc wrapper
    // refuses them, so the raw call (the kernel's struct starts with the handler; the rest is
    // zero: no flags, no restorer, an empty mask).
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    for sig in [32, 33] {
        let ksa: [u64; 4] = [libc::SIG_IGN as u64, 0, 0, 0];
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            ksa.as_ptr(),
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
    let plan = prep.plan;
    if let Some(dir) = &plan.cwd {
        if libc::chdir(dir.as_ptr()) != 0 {
            fail(err_w, errno());
        }
    }
    for (target, fd) in plan.stdio.iter().enumerate() {
        let target = target as libc::c_int;
        let src = match fd {
            Some(fd) => *fd,
            None => {
                let flags = if target == 0 {
                    libc::O_RDONLY
                } else {
                    libc::O_WRONLY
                };
                let n = libc::open(c"/dev/null".as_ptr(), flags);
                if n < 0 {
                    fail(err_w, errno());
                }
                n
            }
        };
        if src != target {
            if libc::dup2(src, target) < 0 {
                fail(err_w, errno());
            }
            if fd.is_none() {
                libc::close(src);
            }
        }
    }
    if plan.close_from_3 {
        crate::sys::cloexec_from(3);
    }
    crate::sys::unblock_all_signals();
    exec(prep)
}

/// The calling thread's errno.
fn errno() -> libc::c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Reports `e` to the parent through the error pipe and exits (async-signal-safe).
unsafe fn fail(err: &ErrTo, e: libc::c_int) -> ! {
    match *err {
        ErrTo::Pipe(fd) => {
            let b = e.to_ne_bytes();
            libc::write(fd, b.as_ptr().cast(), 4);
        }
        ErrTo::Shared(slot) => (*slot).store(e, Ordering::SeqCst),
    }
    libc::_exit(127)
}

/// As execvp over the candidates: a name not found there goes on to the next one; EACCES too,
/// but it is reported when nothing ran; ENOEXEC runs the file with `/bin/sh`.
unsafe fn exec(prep: &mut Prepared<'_>) -> ! {
    let err_w = &prep.err;
    let mut denied = false;
    for path in &prep.candidates {
        libc::execve(path.as_ptr(), prep.argv.as_ptr(), prep.envp.as_ptr());
        match errno() {
            libc::ENOEXEC => {
                if let Some(slot) = prep.sh_argv.get_mut(1) {
                    *slot = path.as_ptr();
                }
                libc::execve(
                    c"/bin/sh".as_ptr(),
                    prep.sh_argv.as_ptr(),
                    prep.envp.as_ptr(),
                );
                fail(err_w, errno());
            }
            libc::EACCES => denied = true,
            libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV => {}
            e => fail(err_w, e),
        }
    }
    fail(err_w, if denied { libc::EACCES } else { libc::ENOENT })
}

/// A spawn of `argv` (host environment, `/dev/null` or the given stdio, no working directory
/// change) for the tests and the spawn-cost example, which cannot build a [`SpawnPlan`].
#[doc(hidden)]
pub struct PlainSpawn(SpawnPlan);

impl PlainSpawn {
    /// `argv[0]` is run as a path when it holds a '/', else looked up in this process's PATH.
    /// `stdio` descriptors must be >= 3 (`None`: `/dev/null`). Fails on a NUL byte.
    pub fn new(argv: &[&str], stdio: [Option<RawFd>; 3]) -> io::Result<PlainSpawn> {
        let c = |s: &str| CString::new(s).map_err(io::Error::other);
        let program = c(argv.first().copied().unwrap_or(""))?;
        let lookup = if program.to_bytes().contains(&b'/') {
            Lookup::Direct
        } else {
            Lookup::HostPath
        };
        Ok(PlainSpawn(SpawnPlan {
            program,
            argv: argv.iter().map(|a| c(a)).collect::<io::Result<_>>()?,
            envp: Envp::Host,
            lookup,
            cwd: None,
            stdio,
            close_from_3: true,
        }))
    }

    /// Runs the program in `dir`. Fails on a NUL byte.
    pub fn cwd(mut self, dir: &str) -> io::Result<PlainSpawn> {
        self.0.cwd = Some(CString::new(dir).map_err(io::Error::other)?);
        Ok(self)
    }

    /// Adds `NAME=value` to the child's environment. Fails on a NUL byte.
    pub fn env(mut self, entry: &str) -> io::Result<PlainSpawn> {
        (self.0.envp).push(CString::new(entry).map_err(io::Error::other)?);
        Ok(self)
    }

    /// With glibc's `posix_spawn` (the process-group path, no cgroup).
    pub fn posix_spawn(&self) -> io::Result<u32> {
        crate::sys::posix_spawn(&self.0)
    }

    /// Into `cgroup`, as the job path does ([`spawn_in_cgroup`]).
    pub fn spawn_in(&self, cgroup: &JobCgroup) -> io::Result<u32> {
        spawn_in_cgroup(&self.0, cgroup)
    }

    /// Into `cgroup` with the entry chosen.
    pub fn spawn_via(&self, cgroup: &JobCgroup, entry: Entry) -> io::Result<u32> {
        spawn_via(&self.0, cgroup, entry)
    }

    /// Without a cgroup, as the process-group path does (this module's `clone3` child on
    /// x86_64, else `posix_spawn`).
    pub fn spawn(&self) -> io::Result<u32> {
        spawn_job(&self.0, None)
    }
}
