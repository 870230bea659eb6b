//! Containment (issue 15): through `ProcessManager`, a job in cgroup mode leaves no survivor
//! after its timeout or a kill (`setsid`, double-forked, TERM-ignoring, 200 wide), where the
//! process-group mode lets a `setsid` child escape; the record's CPU time covers the whole
//! tree; limits are refused where they cannot apply; `Auto` falls back from a missing, fake or
//! read-only cgroup root. Below the API (`procman::__contain`): the kill fallback without
//! `cgroup.kill`, the spawn entries, the limits' errors. The subreaper mode, which changes the
//! whole test process, is in tests/contain_subreaper.rs.
//!
//! Real processes, as root (CI runs as root). Every process a test starts carries a unique
//! marker argument and is killed by pid when the test ends, whichever way it ends ([`Marked`]).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;
#[path = "common/marked.rs"]
mod marked;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{eventually, kid};
use marked::{exited, pidfd, Marked};
use procman::__contain::{CgroupRoot, Entry, PlainSpawn};
use procman::{BuildError, Containment, JobSpec, JobStatus, ProcessManager, StartError};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The test's procman parent cgroup, or `None` (the test is skipped) when not root.
fn root() -> Option<CgroupRoot> {
    if !is_root() {
        eprintln!("not root: cgroup containment not tested");
        return None;
    }
    Some(CgroupRoot::discover().expect("as root, cgroup v2 must be usable"))
}

/// A manager in `mode` with a short grace, or `None` (skipped) for cgroups when not root.
fn manager(mode: Containment) -> Option<ProcessManager> {
    if mode == Containment::Cgroup && !is_root() {
        eprintln!("not root: cgroup containment not tested");
        return None;
    }
    let pm = ProcessManager::builder()
        .containment(mode)
        .grace(Duration::from_millis(300))
        .build()
        .expect("as root, cgroup v2 must be usable");
    assert_eq!(pm.containment(), mode);
    Some(pm)
}

/// How the test ends the job.
#[derive(Clone, Copy, Debug)]
enum End {
    Timeout,
    Kill,
}

/// Runs `sh -c script` (its `{k}` replaced by the test kid, `{m}` by the marker) as a job in
/// `pm`, waits until `want` marked processes are up, ends the job (its timeout, or
/// `kill_process`), and returns the marked processes that are still alive once the record is
/// final (pidfds taken before the end must all have exited when this is empty). The job's
/// leader ignores SIGTERM in every script, so the end goes through the grace and SIGKILL.
fn survivors(pm: &ProcessManager, m: &Marked, script: &str, want: usize, end: End) -> Vec<u32> {
    let script = script.replace("{k}", kid()).replace("{m}", &m.marker);
    let mut spec = JobSpec::new("/bin/sh").args(["-c", &script]);
    if let End::Timeout = end {
        spec = spec.timeout(Duration::from_secs(8));
    }
    let id = pm.start_process(spec).unwrap();
    assert!(
        eventually(Duration::from_secs(8), || m.live().len() >= want),
        "{}: {} marked processes up, want {want}",
        m.marker,
        m.live().len()
    );
    let before: Vec<(u32, OwnedFd)> = m
        .live()
        .into_iter()
        .filter_map(|p| pidfd(p).map(|fd| (p, fd)))
        .collect();
    let cgroup = (pm.containment() == Containment::Cgroup)
        .then(|| cgroup_of(before[0].0).expect("the job's cgroup"));
    if let End::Kill = end {
        pm.kill_process(id).unwrap();
    }
    let rec = pm.wait(id).unwrap();
    let want_status = match end {
        End::Timeout => JobStatus::TimedOut,
        End::Kill => JobStatus::Killed,
    };
    assert_eq!(rec.status, want_status, "{}: {rec:?}", m.marker);
    let live = m.live();
    if live.is_empty() {
        for (p, fd) in &before {
            assert!(exited(fd), "{}: process {p} survived", m.marker);
        }
    }
    if let Some(dir) = cgroup {
        assert!(dir.starts_with("/sys/fs/cgroup"), "{dir:?}");
        assert!(dir.to_string_lossy().contains("/job-"), "{dir:?}");
        assert!(!dir.exists(), "the job's cgroup {dir:?} was not removed");
    }
    live
}

/// In cgroup mode: 0 survivors after the timeout and after a kill.
fn no_survivors(tag: &str, script: &str, want: usize) {
    let Some(pm) = manager(Containment::Cgroup) else {
        return;
    };
    std::thread::scope(|s| {
        for end in [End::Timeout, End::Kill] {
            let pm = &pm;
            s.spawn(move || {
                let m = Marked::new(&format!("{tag}-{end:?}"));
                let left = survivors(pm, &m, script, want, end);
                assert_eq!(left, Vec::<u32>::new(), "{tag}, {end:?}: survivors");
            });
        }
    });
}

/// The directory of the cgroup v2 that process `pid` is in.
fn cgroup_of(pid: u32) -> Option<std::path::PathBuf> {
    let v2 = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("0::").map(String::from))
    };
    let theirs = v2(std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)?;
    let mine = v2(std::fs::read_to_string("/proc/self/cgroup").ok()?)?;
    let real = CgroupRoot::discover().ok()?;
    let own_dir = real.path().parent()?.to_str()?.to_owned();
    let mount = own_dir.strip_suffix(mine.trim_end_matches('/'))?.to_owned();
    Some(std::path::PathBuf::from(format!("{mount}{theirs}")))
}

const SETSID: &str = "{k} setsid-grandchild 300 {m} >/dev/null; exec {k} ignore-term 300 {m}";
const DAEMON: &str = "( setsid {k} sleep 300 {m} & ) ; exec {k} ignore-term 300 {m}";
const IGNORING: &str = "( setsid {k} ignore-term 300 {m} & ) ; exec {k} ignore-term 300 {m}";
const TREE: &str = "{k} tree 1 200 300 {m} >/dev/null & exec {k} ignore-term 300 {m}";

#[test]
fn a_setsid_child_does_not_survive_its_job() {
    no_survivors("setsid", SETSID, 2);
}

#[test]
fn a_double_forking_daemon_does_not_survive_its_job() {
    no_survivors("daemon", DAEMON, 2);
}

#[test]
fn a_daemon_ignoring_sigterm_does_not_survive_its_job() {
    no_survivors("ignore-term", IGNORING, 2);
}

#[test]
fn a_tree_200_wide_does_not_survive_its_job() {
    no_survivors("tree", TREE, 201);
}

/// The documented limit of the process-group mode: a `setsid` child leaves the group and
/// survives the kill (then killed here by pid).
#[test]
fn in_process_group_mode_a_setsid_child_escapes() {
    let pm = manager(Containment::ProcessGroup).unwrap();
    let m = Marked::new("group-escape");
    let left = survivors(&pm, &m, SETSID, 2, End::Kill);
    assert_eq!(
        left.len(),
        1,
        "the setsid grandchild should have escaped: {left:?}"
    );
}

/// When the leader exits, what it left in its cgroup (a setsid daemon) is killed before the
/// record is final, and the cgroup is removed.
#[test]
fn a_daemon_left_by_an_exited_leader_is_killed() {
    let Some(pm) = manager(Containment::Cgroup) else {
        return;
    };
    let m = Marked::new("left");
    let script = format!("( setsid {} sleep 300 {} & ) ; sleep 0.5", kid(), m.marker);
    let rec = pm
        .run(JobSpec::new("/bin/sh").args(["-c", &script]))
        .unwrap();
    assert_eq!(rec.status, JobStatus::Finished, "{rec:?}");
    assert_eq!(m.live(), Vec::<u32>::new());
}

/// Four burners of 0.5 s of CPU each in processes the job's shell never waits for
/// (`orphan-burn`): the record's CPU time covers them all in cgroup mode (from `cpu.stat`),
/// where the leader's `wait4` would count only the shell. After a job of 1 s of CPU whose
/// cgroup it reuses (that job ended with its cgroup empty, never killed): it counts only its own.
#[test]
fn the_record_counts_the_cpu_of_the_whole_tree() {
    let Some(pm) = manager(Containment::Cgroup) else {
        return;
    };
    let m = Marked::new("cpu");
    let first = pm
        .run(JobSpec::new(kid()).args(["spin-cpu", "1.0", &m.marker]))
        .unwrap();
    let u = first.usage.expect("usage");
    let cpu = u.user_cpu.unwrap() + u.system_cpu.unwrap();
    assert!(
        (1000..1300).contains(&cpu.as_millis()),
        "the first job: {cpu:?}"
    );
    let one = format!("{} orphan-burn 0.5 0 {} >/dev/null", kid(), m.marker);
    let script = format!("{one} & {one} & {one} & {one} & wait");
    for run in 0..2 {
        let rec = pm
            .run(JobSpec::new("/bin/sh").args(["-c", &script]))
            .unwrap();
        assert_eq!(rec.status, JobStatus::Finished, "{rec:?}");
        let u = rec.usage.expect("usage");
        let cpu = u.user_cpu.unwrap() + u.system_cpu.unwrap();
        eprintln!("run {run}: record cpu {cpu:?} ({u:?})");
        assert!(cpu >= Duration::from_millis(2000), "{run}: {cpu:?} < 2 s");
        assert!(cpu <= Duration::from_millis(2600), "{run}: {cpu:?} > 2.6 s");
    }
}

/// Limits need cgroup containment and their controller: refused at submission otherwise, with
/// the reason (this hybrid host delegates neither memory nor cpu).
#[test]
fn limits_are_refused_where_they_cannot_apply() {
    let pm = manager(Containment::ProcessGroup).unwrap();
    let e = pm
        .start_process(JobSpec::new("true").memory_limit(1 << 20))
        .unwrap_err();
    assert!(
        matches!(&e, StartError::LimitUnavailable(w) if w.contains("cgroup containment")),
        "{e}"
    );
    let Some(pm) = manager(Containment::Cgroup) else {
        return;
    };
    let root = CgroupRoot::discover().unwrap();
    for (spec, controller) in [
        (JobSpec::new("true").memory_limit(1 << 20), "memory"),
        (JobSpec::new("true").cpu_weight(200), "cpu"),
    ] {
        if root.controllers().iter().any(|c| c == controller) {
            let rec = pm.run(spec).unwrap();
            assert_eq!(rec.status, JobStatus::Finished, "{rec:?}");
        } else {
            let e = pm.start_process(spec).unwrap_err();
            assert!(
                matches!(&e, StartError::LimitUnavailable(w) if w.contains(controller)),
                "{e}"
            );
        }
    }
    let e = pm
        .start_process(JobSpec::new("true").cpu_weight(0))
        .unwrap_err();
    assert!(matches!(e, StartError::LimitUnavailable(_)), "{e}");
}

/// The cgroups a process left when it exited without dropping its manager (`exit()`, a
/// process-wide manager) are removed by the next manager made under the same cgroup; a live
/// process's are not.
#[test]
fn a_new_manager_removes_the_cgroups_of_gone_processes() {
    if !is_root() {
        return;
    }
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    let real = CgroupRoot::discover().unwrap();
    let own = real.path().parent().unwrap().to_path_buf();
    drop(real);
    let stale = own.join(format!("procman-{gone}-7"));
    std::fs::create_dir(&stale).unwrap();
    std::fs::create_dir(stale.join("job-3")).unwrap();
    // This process's own (pid 1 is alive): left alone, then removed here.
    let live = own.join("procman-1-999999");
    std::fs::create_dir(&live).unwrap();
    let pm = manager(Containment::Cgroup).unwrap();
    let left = (stale.exists(), live.exists());
    std::fs::remove_dir(&live).unwrap();
    assert_eq!(left, (false, true), "stale removed, live kept");
    drop(pm);
}

/// Auto falls back to the process group when the cgroup root is missing or not a cgroup file
/// system (and as root, read-only); Cgroup then fails at build with the reason.
#[test]
fn auto_falls_back_without_a_usable_cgroup_root() {
    let tmp = common::TempDir::new("contain-auto");
    let fake = tmp.join("fake");
    std::fs::create_dir(&fake).unwrap();
    std::fs::write(fake.join("cgroup.procs"), "").unwrap();
    std::fs::write(fake.join("cgroup.controllers"), "cpu memory").unwrap();
    let mut roots = vec![tmp.join("missing"), fake];
    let _ro = is_root().then(|| ReadOnly::mount(tmp.path()));
    if let Some(ro) = &_ro {
        roots.push(ro.at.clone());
    }
    for base in roots {
        let pm = ProcessManager::builder()
            .cgroup_base_for_tests(&base)
            .build()
            .unwrap();
        assert_eq!(pm.containment(), Containment::ProcessGroup, "{base:?}");
        let rec = pm.run(JobSpec::new("true")).unwrap();
        assert_eq!(rec.status, JobStatus::Finished);
        let e = ProcessManager::builder()
            .cgroup_base_for_tests(&base)
            .containment(Containment::Cgroup)
            .build()
            .unwrap_err();
        assert!(
            matches!(&e, BuildError::Containment(w) if !w.is_empty()),
            "{e}"
        );
        eprintln!("{}: {e}", base.display());
    }
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
    let tmp = common::TempDir::new("contain-ro");
    let ro = ReadOnly::mount(tmp.path());
    let e = CgroupRoot::under(&ro.at).unwrap_err();
    assert!(e.reason.contains("no write access"), "{e}");
    assert!(e.reason.contains("Read-only"), "{e}");
}

/// A read-only bind mount of this process's own cgroup2 directory at `<dir>/mnt`, unmounted
/// when dropped.
struct ReadOnly {
    at: std::path::PathBuf,
    dst: std::ffi::CString,
}

impl ReadOnly {
    fn mount(dir: &std::path::Path) -> ReadOnly {
        let Ok(real) = CgroupRoot::discover() else {
            panic!("as root, cgroups must be usable")
        };
        let own = real.path().parent().unwrap().to_path_buf();
        drop(real);
        let at = dir.join("mnt");
        std::fs::create_dir(&at).unwrap();
        let c = |p: &std::path::Path| std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        let (src, dst) = (c(&own), c(&at));
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
        let ro = ReadOnly { at, dst };
        let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
        // SAFETY: as above.
        let r = unsafe {
            libc::mount(
                std::ptr::null(),
                ro.dst.as_ptr(),
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
        ro
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        // SAFETY: a NUL-terminated path.
        unsafe { libc::umount2(self.dst.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The process-group path's spawn (procman's `clone3` child without a cgroup on x86_64) reports
/// what failed before the exec as the kernel's error, and reaps the failed child: a missing
/// program, one without execute permission, a missing working directory; twice each, from one
/// thread, so a failure does not disturb the next spawn (the thread's reused child stack).
#[test]
fn the_plain_spawn_reports_exec_and_chdir_errors() {
    let tmp = common::TempDir::new("plain-errors");
    let not_exec = tmp.join("not-exec");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let not_exec = not_exec.to_str().unwrap().to_string();
    let missing_dir = tmp.join("gone").to_str().unwrap().to_string();
    for _ in 0..2 {
        let cases: [(PlainSpawn, i32); 3] = [
            (
                PlainSpawn::new(&["/nonexistent/procman-plain"], [None, None, None]).unwrap(),
                libc::ENOENT,
            ),
            (
                PlainSpawn::new(&[&not_exec], [None, None, None]).unwrap(),
                libc::EACCES,
            ),
            (
                PlainSpawn::new(&["/bin/true"], [None, None, None])
                    .unwrap()
                    .cwd(&missing_dir)
                    .unwrap(),
                libc::ENOENT,
            ),
        ];
        for (plan, errno) in cases {
            let e = plan.spawn().unwrap_err();
            assert_eq!(e.raw_os_error(), Some(errno), "{e}");
        }
        let pid = PlainSpawn::new(&["/bin/true"], [None, None, None])
            .unwrap()
            .spawn()
            .unwrap();
        let mut status = -1;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        assert_eq!(status, 0);
    }
    // Every failed child was reaped by the spawn: this thread has no child left, not even a
    // zombie.
    let children = std::fs::read_to_string("/proc/thread-self/children").unwrap();
    assert_eq!(children.trim(), "", "unreaped children of this thread");
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
                    "plain" => plain.spawn(),
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
        if how != "posix_spawn" && how != "plain" {
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
    for how in ["plain", "Vfork", "Clone3", "Fork"] {
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

/// The vfork entry, into a cgroup and without one, from many threads at once, while other
/// threads allocate (the child shares the parent's memory until it execs, on the thread's
/// reused stack): every child runs and exits 0; a long argument vector and environment reach it
/// whole.
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
                        let plan = PlainSpawn::new(&argv, [None, None, None])
                            .unwrap()
                            .env(&format!("PROCMAN_BIG={}", "x".repeat(100_000)))
                            .unwrap();
                        // In the cgroup, and without one (the process-group path).
                        let pid = plan.spawn_via(&cg, Entry::Vfork).unwrap();
                        let mut status = 0;
                        // SAFETY: our own child.
                        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
                        assert_eq!(status, 0);
                        let pid = plan.spawn().unwrap();
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
