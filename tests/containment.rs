//! Containment (issue 15, phase 1): a job's cgroup holds every process the job starts, `setsid`
//! or double-forked or not, and `kill()` ends them all; its CPU accounting covers the whole
//! tree; a fake or read-only cgroup root makes discovery answer "not available" with a reason;
//! the child-subreaper fallback finds and ends an orphaned grandchild.
//!
//! Real processes, as root (CI runs as root). Every process a test starts carries a unique
//! marker argument and is killed by pid when the test ends, whichever way it ends ([`Marked`]).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{eventually, kid, proc_stat};
use procman::__contain::{Adopted, CgroupRoot, Entry, JobCgroup, PlainSpawn};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A marker argument no other process uses, and the processes carrying it: killed (SIGKILL, by
/// pid) and the leaders reaped when dropped.
struct Marked {
    marker: String,
    leaders: Vec<u32>,
}

impl Marked {
    fn new(tag: &str) -> Marked {
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
    fn live(&self) -> Vec<u32> {
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

    fn reap(&mut self, pid: u32) -> libc::rusage {
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

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a fresh descriptor we own, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process behind `fd` has exited (pidfd readable).
fn exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) == 1 }
}

/// The test's procman parent cgroup, or `None` (the test is skipped) when not root.
fn root() -> Option<CgroupRoot> {
    if !is_root() {
        eprintln!("not root: cgroup containment not tested");
        return None;
    }
    Some(CgroupRoot::discover().expect("as root, cgroup v2 must be usable"))
}

/// Starts `argv` (marked) in a new job cgroup, waits until `want` processes are in it, reaps
/// the leader once it has exited (when `leader_exits`), then checks `kill()` leaves 0
/// survivors, by pid (pidfds taken before the kill) and by marker, and that the cgroup can be
/// removed.
fn contained(
    tag: &str,
    argv: impl Fn(&str) -> Vec<String>,
    want: usize,
    before_kill: impl Fn(&JobCgroup),
) {
    let Some(root) = root() else { return };
    // Dropped after `m` (which kills the marked processes), so it can be removed.
    let mut cg = root.job().expect("job cgroup");
    let mut m = Marked::new(tag);
    let argv = argv(&m.marker);
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let pid = PlainSpawn::new(&args, [None, None, None])
        .unwrap()
        .spawn_in(&cg)
        .expect("spawn in cgroup");
    m.leaders.push(pid);
    assert!(
        eventually(Duration::from_secs(20), || cg.pids().unwrap().len() >= want
            && m.live().len() >= want),
        "{tag}: {} processes in the cgroup, {} marked, want {want}",
        cg.pids().unwrap().len(),
        m.live().len()
    );
    let before: Vec<(u32, OwnedFd)> = cg
        .pids()
        .unwrap()
        .into_iter()
        .filter_map(|p| pidfd(p).map(|fd| (p, fd)))
        .collect();
    assert!(before.len() >= want);
    // Nothing marked is outside the cgroup: the setsid/daemon processes did not escape it.
    let inside = cg.pids().unwrap();
    for p in m.live() {
        assert!(
            inside.contains(&p),
            "{tag}: marked process {p} is outside the job's cgroup"
        );
    }
    before_kill(&cg);
    cg.kill().expect("kill");
    assert!(
        cg.wait_empty(Duration::from_secs(10)).unwrap(),
        "{tag}: cgroup still populated"
    );
    m.reap(pid);
    for (p, fd) in &before {
        assert!(exited(fd), "{tag}: process {p} survived the kill");
    }
    assert_eq!(m.live(), Vec::<u32>::new(), "{tag}: marked survivors");
    let dir = cg.path().to_path_buf();
    cg.remove().expect("remove");
    assert!(!dir.exists(), "{tag}: {} still exists", dir.display());
}

#[test]
fn a_setsid_child_dies_with_its_cgroup() {
    contained(
        "setsid",
        |mark| {
            vec![
                kid().into(),
                "setsid-grandchild".into(),
                "300".into(),
                mark.into(),
            ]
        },
        1,
        |_| {},
    );
}

#[test]
fn a_double_forking_daemon_dies_with_its_cgroup() {
    contained(
        "daemon",
        |mark| {
            let script = format!("( setsid {} sleep 300 {mark} & ) ; exit 0", kid());
            vec!["/bin/sh".into(), "-c".into(), script]
        },
        1,
        |_| {},
    );
}

#[test]
fn a_daemon_ignoring_sigterm_dies_with_its_cgroup() {
    contained(
        "ignore-term",
        |mark| {
            let script = format!("( setsid {} ignore-term 300 {mark} & ) ; exit 0", kid());
            vec!["/bin/sh".into(), "-c".into(), script]
        },
        1,
        |cg| {
            // TERM first, as the job path does: it is ignored, the daemon is still there.
            // Wait until the daemon ignores it (SigIgn in /proc/PID/status has SIGTERM's bit).
            let ignores_term = |p: u32| {
                std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("SigIgn:"))
                        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                        .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
                })
            };
            assert!(eventually(Duration::from_secs(20), || cg
                .pids()
                .unwrap()
                .into_iter()
                .any(ignores_term)));
            let pids = cg.pids().unwrap();
            for &p in &pids {
                // SAFETY: p is in the job's cgroup (frozen state is not needed: it only sleeps).
                unsafe { libc::kill(p as libc::pid_t, libc::SIGTERM) };
            }
            std::thread::sleep(Duration::from_millis(200));
            assert!(cg.populated().unwrap(), "the daemon should ignore SIGTERM");
        },
    );
}

#[test]
fn a_tree_200_wide_dies_with_its_cgroup() {
    contained(
        "tree",
        |mark| {
            vec![
                kid().into(),
                "tree".into(),
                "1".into(),
                "200".into(),
                "300".into(),
                mark.into(),
            ]
        },
        200,
        |_| {},
    );
}

/// The fallback for kernels without `cgroup.kill` (freeze, then SIGKILL by pid until empty).
#[test]
fn the_kill_fallback_without_cgroup_kill_leaves_no_survivor() {
    let Some(root) = root() else { return };
    // Dropped after `m` (which kills the marked processes), so it can be removed.
    let mut cg = root.job().unwrap();
    let mut m = Marked::new("fallback");
    let pid = PlainSpawn::new(
        &[kid(), "tree", "2", "8", "300", &m.marker],
        [None, None, None],
    )
    .unwrap()
    .spawn_in(&cg)
    .unwrap();
    m.leaders.push(pid);
    // 1 + 8 + 64 nodes, the root exits at once.
    assert!(eventually(Duration::from_secs(20), || cg
        .pids()
        .unwrap()
        .len()
        >= 72));
    let before: Vec<OwnedFd> = cg.pids().unwrap().into_iter().filter_map(pidfd).collect();
    assert!(
        cg.kill_by_pids(Duration::from_secs(10)).unwrap(),
        "not emptied"
    );
    m.reap(pid);
    assert!(before.iter().all(exited));
    assert_eq!(m.live(), Vec::<u32>::new());
    cg.remove().unwrap();
}

/// Four burners of 0.5 s of CPU each, started by a shell: the cgroup's `cpu.stat` counts them
/// all (2 s and a little for the shell and the starts), and agrees with the rusage the leader's
/// `wait4` reports for the whole tree (the shell waited for the burners).
#[test]
fn cpu_accounting_covers_the_whole_tree() {
    let Some(root) = root() else { return };
    // Dropped after `m` (which kills the marked processes), so it can be removed.
    let mut cg = root.job().unwrap();
    let mut m = Marked::new("cpu");
    let script = format!(
        "for i in 1 2 3 4; do {} spin-cpu 0.5 {} & done; wait",
        kid(),
        m.marker
    );
    let pid = PlainSpawn::new(&["/bin/sh", "-c", &script], [None, None, None])
        .unwrap()
        .spawn_via(&cg, Entry::Clone3)
        .unwrap();
    m.leaders.push(pid);
    let ru = m.reap(pid);
    assert!(cg.wait_empty(Duration::from_secs(10)).unwrap());
    let usage = cg.usage().unwrap();
    let cpu = usage.cpu.expect("cpu.stat usage_usec");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let rusage = tv(ru.ru_utime) + tv(ru.ru_stime);
    eprintln!(
        "cgroup cpu {cpu:?} (user {:?}, system {:?}), wait4 {rusage:?}",
        usage.user_cpu, usage.system_cpu
    );
    assert!(
        cpu >= Duration::from_millis(2000),
        "cgroup counted {cpu:?} < 2 s"
    );
    assert!(
        cpu <= Duration::from_millis(2600),
        "cgroup counted {cpu:?} > 2.6 s"
    );
    let diff = cpu.abs_diff(rusage);
    assert!(
        diff <= Duration::from_millis(100),
        "cgroup {cpu:?} vs wait4 {rusage:?}"
    );
    let parts = usage.user_cpu.unwrap() + usage.system_cpu.unwrap();
    assert!(
        parts.abs_diff(cpu) <= Duration::from_millis(20),
        "user+system {parts:?} vs {cpu:?}"
    );
    cg.remove().unwrap();
}

/// Children created with the fork entry (the fallback for kernels without CLONE_INTO_CGROUP)
/// are in the cgroup too, and a failed exec is reported as the kernel's error.
#[test]
fn the_fork_entry_and_exec_errors() {
    let Some(root) = root() else { return };
    // Dropped after `m` (which kills the marked processes), so it can be removed.
    let mut cg = root.job().unwrap();
    let mut m = Marked::new("fork");
    let pid = PlainSpawn::new(&[kid(), "sleep", "300", &m.marker], [None, None, None])
        .unwrap()
        .spawn_via(&cg, Entry::Fork)
        .unwrap();
    m.leaders.push(pid);
    assert_eq!(cg.pids().unwrap(), vec![pid]);
    cg.kill().unwrap();
    m.reap(pid);
    assert!(cg.wait_empty(Duration::from_secs(10)).unwrap());
    cg.remove().unwrap();
    // A fresh cgroup: one that was killed is never given new processes (on Linux 6.18 a
    // clone3 into it is SIGKILLed at birth).
    let mut cg = root.job().unwrap();
    for entry in [Entry::Vfork, Entry::Clone3, Entry::Fork] {
        let e = PlainSpawn::new(&["/nonexistent/procman-contain"], [None, None, None])
            .unwrap()
            .spawn_via(&cg, entry)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{entry:?}: {e}");
    }
    cg.remove().unwrap();
}

/// A fake root (a plain directory, with or without fake cgroup files), a missing one and a
/// read-only cgroup2 mount: "not available" with a reason, never an error or a panic, and
/// nothing left behind.
#[test]
fn a_fake_or_read_only_root_is_not_available() {
    let tmp = common::TempDir::new("contain-fake");
    let e = CgroupRoot::under(tmp.path()).unwrap_err();
    assert!(e.reason.contains("not a cgroup v2 directory"), "{e}");
    std::fs::write(tmp.join("cgroup.procs"), "").unwrap();
    std::fs::write(tmp.join("cgroup.controllers"), "cpu memory").unwrap();
    let e = CgroupRoot::under(tmp.path()).unwrap_err();
    assert!(e.reason.contains("not on a cgroup v2 file system"), "{e}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(
        left.len(),
        2,
        "a procman-… directory was left in the fake root"
    );
    let e = CgroupRoot::under(&tmp.join("missing")).unwrap_err();
    assert!(e.reason.contains("not a cgroup v2 directory"), "{e}");
    let e = CgroupRoot::under(std::path::Path::new("/proc/self")).unwrap_err();
    assert!(!e.reason.is_empty());
    if is_root() {
        read_only_mount_is_not_available();
    }
}

/// A read-only bind mount of this process's own cgroup2 directory.
fn read_only_mount_is_not_available() {
    let Ok(real) = CgroupRoot::discover() else {
        panic!("as root, cgroups must be usable")
    };
    let own = real.path().parent().unwrap().to_path_buf();
    drop(real);
    let tmp = common::TempDir::new("contain-ro");
    let at = tmp.join("mnt");
    std::fs::create_dir(&at).unwrap();
    let c = |p: &std::path::Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let (src, dst) = (c(&own), c(&at));
    struct Unmount(std::ffi::CString);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // SAFETY: a NUL-terminated path.
            unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
        }
    }
    // SAFETY: NUL-terminated paths, no data.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "bind mount: {}", std::io::Error::last_os_error());
    let _unmount = Unmount(dst.clone());
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    // SAFETY: as above.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            dst.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    assert_eq!(
        r,
        0,
        "read-only remount: {}",
        std::io::Error::last_os_error()
    );
    let e = CgroupRoot::under(&at).unwrap_err();
    assert!(e.reason.contains("no write access"), "{e}");
    assert!(e.reason.contains("Read-only"), "{e}");
}

/// A job's grandchild that its parent left (setsid, then the parent exits) is re-parented to
/// this process while it is a child subreaper; `Adopted` finds it by the job's marker and ends
/// and reaps it by its pid, and leaves alone a child of the host's own that has no marker.
#[test]
fn the_subreaper_ends_an_orphaned_grandchild() {
    use procman::__contain::{is_child_subreaper, marker_entry, set_child_subreaper, MARKER_VAR};
    use std::io::BufRead;
    let mut m = Marked::new("subreaper");
    let token = m.marker.clone();
    set_child_subreaper(true).unwrap();
    assert!(is_child_subreaper().unwrap());
    assert_eq!(marker_entry("x"), format!("{MARKER_VAR}=x"));
    let mut job = std::process::Command::new(kid())
        .args(["setsid-grandchild", "300", &m.marker])
        .env(MARKER_VAR, &token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    m.leaders.push(job.id());
    let mut line = String::new();
    std::io::BufReader::new(job.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let orphan: u32 = line.trim().parse().unwrap();
    job.wait().unwrap();
    m.leaders.clear();
    // The host's own child, unmarked: never touched.
    let mut own = std::process::Command::new(kid())
        .args(["sleep", "300", &m.marker])
        .spawn()
        .unwrap();
    let me = std::process::id();
    assert!(
        eventually(
            Duration::from_secs(10),
            || matches!(proc_stat(orphan), Some((_, pp, _)) if pp == me)
        ),
        "the orphan was not re-parented to the subreaper"
    );
    let fd = pidfd(orphan).unwrap();
    let mut adopted = Adopted::new(&token);
    assert_eq!(adopted.scan(&|_| false).unwrap(), 1);
    assert_eq!(adopted.pids(), vec![orphan]);
    let ended = adopted
        .kill_all(&|_| false, Duration::from_secs(10))
        .unwrap();
    assert_eq!(ended, 1);
    assert!(exited(&fd));
    assert!(proc_stat(orphan).is_none(), "the orphan was not reaped");
    assert!(common::alive(own.id()), "the host's own child was touched");
    set_child_subreaper(false).unwrap();
    own.kill().unwrap();
    own.wait().unwrap();
}

/// Every entry starts the child as the `posix_spawn` path does: stdin, stdout, stderr as given,
/// the working directory, the environment, leading its own process group, an empty signal
/// mask (the spawning thread blocks SIGTERM here) and SIGPIPE at its default; and inside the
/// job's cgroup.
#[test]
fn every_entry_starts_the_child_as_posix_spawn_does() {
    let Some(root) = root() else { return };
    let tmp = common::TempDir::new("contain-same");
    std::fs::write(tmp.join("in"), "hello\n").unwrap();
    let script = "read x; echo \"in:$x\"; pwd; echo \"env:$PROCMAN_CONTAIN_TEST\"; \
                  set -- $(cut -d' ' -f5 /proc/$$/stat); [ \"$1\" = $$ ] && echo leader; \
                  grep -E '^(SigBlk|SigIgn)' /proc/self/status; echo err >&2; \
                  grep '^0::' /proc/self/cgroup | sed 's|.*/|cg:|'";
    let run = |how: &str| -> String {
        let out = tmp.join(&format!("out-{how}"));
        let open = |p: &std::path::Path, w: bool| {
            let f = std::fs::OpenOptions::new()
                .read(!w)
                .write(w)
                .create(w)
                .truncate(w)
                .open(p)
                .unwrap();
            OwnedFd::from(f)
        };
        let (i, o) = (open(&tmp.join("in"), false), open(&out, true));
        let e = open(&tmp.join(&format!("err-{how}")), true);
        let plain = PlainSpawn::new(
            &["/bin/sh", "-c", script],
            [
                Some(i.as_raw_fd()),
                Some(o.as_raw_fd()),
                Some(e.as_raw_fd()),
            ],
        )
        .unwrap()
        .cwd(tmp.path().to_str().unwrap())
        .unwrap()
        .env("PROCMAN_CONTAIN_TEST=yes")
        .unwrap();
        let cg = root.job().unwrap();
        // Spawn from a thread that blocks SIGTERM, as a host taking signals with sigwait does.
        let pid = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: a local set; only this thread's mask changes.
                unsafe {
                    let mut set: libc::sigset_t = std::mem::zeroed();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGTERM);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                }
                match how {
                    "posix_spawn" => plain.posix_spawn(),
                    "Vfork" => plain.spawn_via(&cg, Entry::Vfork),
                    "Clone3" => plain.spawn_via(&cg, Entry::Clone3),
                    _ => plain.spawn_via(&cg, Entry::Fork),
                }
                .unwrap()
            })
            .join()
            .unwrap()
        });
        let mut status = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        assert_eq!(status, 0, "{how}");
        assert_eq!(
            std::fs::read_to_string(tmp.join(&format!("err-{how}"))).unwrap(),
            "err\n"
        );
        let text = std::fs::read_to_string(&out).unwrap();
        let job = cg.path().file_name().unwrap().to_str().unwrap().to_string();
        // The last line is the cgroup's name: the job's for the cgroup entries.
        let (rest, last) = text.trim_end().rsplit_once('\n').unwrap();
        if how != "posix_spawn" {
            assert_eq!(last, format!("cg:{job}"), "{how}: not in the job's cgroup");
        }
        rest.to_string()
    };
    let want = run("posix_spawn");
    let cwd = std::fs::canonicalize(tmp.path()).unwrap();
    assert!(
        want.starts_with(&format!("in:hello\n{}\nenv:yes\nleader\n", cwd.display())),
        "{want}"
    );
    assert!(want.contains("SigBlk:\t0000000000000000"), "{want}");
    for how in ["Vfork", "Clone3", "Fork"] {
        assert_eq!(run(how), want, "{how}");
    }
}

/// Limits: without the controller (this hybrid host delegates none), a clear `Unsupported`
/// error; with the memory controller (a pure v2 host as root), a job past its `memory.max` is
/// OOM-killed and the kill is counted.
#[test]
fn limits_fail_clearly_without_their_controller_and_oom_kills_are_counted() {
    let Some(root) = root() else { return };
    let mut cg = root.job().unwrap();
    let e = cg.set_cpu_weight(0).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    let has = |c: &str| root.controllers().iter().any(|x| x == c);
    if !has("cpu") {
        let e = cg.set_cpu_weight(200).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
        assert!(
            e.to_string().contains("cpu controller is not enabled"),
            "{e}"
        );
    } else {
        cg.set_cpu_weight(200).unwrap();
    }
    if !has("memory") {
        let e = cg.set_memory_max(16 << 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
        assert!(
            e.to_string().contains("memory controller is not enabled"),
            "{e}"
        );
        assert_eq!(cg.usage().unwrap().oom_kills, None);
        cg.remove().unwrap();
        return;
    }
    cg.set_memory_max(16 << 20).unwrap();
    let mut m = Marked::new("oom");
    let pid = PlainSpawn::new(&[kid(), "alloc", "256", &m.marker], [None, None, None])
        .unwrap()
        .spawn_in(&cg)
        .unwrap();
    m.leaders.push(pid);
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    m.leaders.clear();
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "{status:#x}"
    );
    let usage = cg.usage().unwrap();
    assert!(usage.oom_kills >= Some(1), "{usage:?}");
    assert!(
        usage.memory_peak.is_some_and(|p| p <= 16 << 20),
        "{usage:?}"
    );
    cg.remove().unwrap();
}

/// The vfork entry from many threads at once, while other threads allocate (the child shares
/// the parent's memory until it execs): every child runs, in the cgroup, and exits 0; a long
/// argument vector and environment reach it whole.
#[test]
fn vfork_spawns_from_many_threads_at_once() {
    let Some(root) = root() else { return };
    let cg = root.job().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Stops the allocating thread however the workers end (a failed assertion included).
    struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let long: Vec<String> = (0..2000).map(|i| format!("arg-{i}")).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let v: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096]).collect();
                std::hint::black_box(v);
            }
        });
        let _stop = Stop(&stop);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..50 {
                        let mut argv = vec!["/bin/sh", "-c", "[ $# = 2000 ] && [ \"${2000}\" = arg-1999 ] && [ \"$PROCMAN_BIG\" = \"${PROCMAN_BIG#x}x\" ]", "sh"];
                        argv.extend(long.iter().map(String::as_str).skip(1));
                        argv.push("arg-1999");
                        let pid = PlainSpawn::new(&argv, [None, None, None])
                            .unwrap()
                            .env(&format!("PROCMAN_BIG={}", "x".repeat(100_000)))
                            .unwrap()
                            .spawn_via(&cg, Entry::Vfork)
                            .unwrap();
                        let mut status = 0;
                        // SAFETY: our own child.
                        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
                        assert_eq!(status, 0);
                    }
                })
            })
            .collect();
        let ended: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        drop(_stop);
        for e in ended {
            e.unwrap();
        }
    });
    assert!(!cg.populated().unwrap());
    let usage = cg.usage().unwrap();
    assert!(usage.cpu.is_some_and(|c| !c.is_zero()), "{usage:?}");
}
