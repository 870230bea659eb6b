//! What a job inherits from its host, and how it is started: a descriptor the host opened
//! without `O_CLOEXEC` never reaches a job (Builder::close_inherited_fds, on by default), the
//! host's blocked signals and ignored SIGPIPE/SIGXFSZ neither, no host setting makes a spawn
//! fork, and a bare program name is looked up in the PATH std would use. Its own test binary:
//! the descriptors and dispositions it sets are process-wide state.

mod common;

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use common::{kid, TempDir};
use procman::{JobRecord, JobSpec, JobStatus, ProcessManager};

fn fds_seen(m: &ProcessManager, dir: &TempDir, name: &str) -> String {
    let log = dir.join(name);
    let r = m
        .run(JobSpec::new(kid()).arg("fds").log_file(&log))
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    std::fs::read_to_string(&log).unwrap()
}

/// Descriptors >= 3 of this process that a child would inherit.
fn inheritable_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd: &i32| {
            // SAFETY: F_GETFD only reads flags.
            fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC == 0
        })
        .collect()
}

#[test]
fn an_inheritable_host_descriptor_opened_after_the_manager_is_not_inherited() {
    // The test runner may itself have inherited such descriptors (from a shell), which would
    // put procman on the exact path from the first spawn and leave the switch untested: run the
    // body in a copy of this test process started without them.
    if std::env::var_os("PROCMAN_HOST_FDS_CLEAN").is_none() {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "an_inheritable_host_descriptor_opened_after_the_manager_is_not_inherited",
            "--test-threads=1",
        ])
        .env("PROCMAN_HOST_FDS_CLEAN", "1");
        // SAFETY: only async-signal-safe fcntl calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                for fd in 3..1024 {
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    assert_eq!(inheritable_fds(), Vec::<i32>::new());
    let dir = TempDir::new("hostfds");
    let m = ProcessManager::builder().limit(2).build().unwrap();
    // Before: whatever the test harness holds, the job sees only 0, 1, 2.
    assert_eq!(fds_seen(&m, &dir, "before.log"), "0\n1\n2\n");
    // The host opens a descriptor a child would inherit (std opens with O_CLOEXEC: clear it).
    let f = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: F_SETFD on a descriptor we own.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0) };
    for i in 0..3 {
        assert_eq!(fds_seen(&m, &dir, &format!("after{i}.log")), "0\n1\n2\n");
    }
    // Closing it does not bring the leak back (the exact path stays on).
    drop(f);
    let g = std::fs::File::open("/dev/null").unwrap();
    unsafe { libc::fcntl(g.as_raw_fd(), libc::F_SETFD, 0) };
    assert_eq!(fds_seen(&m, &dir, "again.log"), "0\n1\n2\n");
    // Switched off, the host's descriptor does reach the job (what the option prevents).
    let off = ProcessManager::builder()
        .close_inherited_fds(false)
        .build()
        .unwrap();
    let seen = fds_seen(&off, &dir, "off.log");
    assert!(
        seen.lines().any(|l| l == g.as_raw_fd().to_string()),
        "{seen}"
    );
}

/// Blocks `sigs` in the calling thread (the manager's threads, created from it, inherit it).
fn block(sigs: &[i32]) {
    // SAFETY: a local set, filled and installed as this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
    }
}

/// Sets `sig` to SIG_IGN in this whole process.
fn ignore(sig: i32) {
    // SAFETY: SIG_IGN needs no handler code.
    unsafe { libc::signal(sig, libc::SIG_IGN) };
}

/// An inheritable descriptor on /dev/null, as a server or a GUI holds them.
fn inheritable_devnull() -> std::fs::File {
    let f = std::fs::File::open("/dev/null").unwrap();
    // SAFETY: F_SETFD on a descriptor we own.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0) };
    f
}

/// A `/proc/self/status` mask field of the job, as a number.
fn mask(status: &str, field: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    u64::from_str_radix(line[field.len()..].trim(), 16).unwrap()
}

#[test]
fn a_job_starts_clean_whatever_the_host_blocks_ignores_or_leaves_open() {
    let dir = TempDir::new("hostclean");
    block(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1]);
    ignore(libc::SIGPIPE);
    ignore(libc::SIGXFSZ);
    ignore(libc::SIGUSR2);
    let leak = inheritable_devnull();
    let m = ProcessManager::builder().limit(2).build().unwrap();
    // grep reads its own status: it is the job's process, exec'd by procman's spawn.
    let log = dir.join("status.log");
    let r = m
        .run(
            JobSpec::new("grep")
                .args(["-E", "^(Pid|NSpgid|SigBlk|SigIgn):", "/proc/self/status"])
                .log_file(&log),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{:?}", r.error);
    let status = std::fs::read_to_string(&log).unwrap();
    assert_eq!(mask(&status, "SigBlk:"), 0, "{status}");
    let ign = mask(&status, "SigIgn:");
    let bit = |s: i32| 1u64 << (s - 1);
    // SIGPIPE and SIGXFSZ back to their default (what Rust's and Python's runtimes ignore for
    // themselves); another ignored signal stays ignored, as a child of `nohup` expects.
    assert_eq!(
        ign & (bit(libc::SIGPIPE) | bit(libc::SIGXFSZ)),
        0,
        "{status}"
    );
    assert_ne!(ign & bit(libc::SIGUSR2), 0, "{status}");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    assert_eq!(
        field("Pid:"),
        field("NSpgid:"),
        "not its group's leader: {status}"
    );
    // And no descriptor but 0, 1, 2.
    assert_eq!(fds_seen(&m, &dir, "fds.log"), "0\n1\n2\n");
    drop(leak);
}

/// Every spawn of a host that blocks signals and holds an inheritable descriptor is a
/// `CLONE_VFORK` clone (no fork, whose cost grows with the host's memory), seen by strace.
#[test]
fn no_host_setting_makes_a_spawn_fork() {
    const JOBS: usize = 20;
    if std::env::var_os("PROCMAN_STRACE_INNER").is_some() {
        block(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP]);
        let _leak = inheritable_devnull();
        let m = ProcessManager::builder().limit(2).build().unwrap();
        for _ in 0..JOBS {
            let r = m.run(JobSpec::new("/bin/true")).unwrap();
            assert_eq!(r.status, JobStatus::Finished);
        }
        return;
    }
    let have_strace = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_strace {
        eprintln!("skipped: strace is not installed");
        return;
    }
    let dir = TempDir::new("strace");
    let trace = dir.join("trace.txt");
    let out = std::process::Command::new("strace")
        .args(["-f", "-e", "trace=clone,clone3,vfork,fork", "-o"])
        .arg(&trace)
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "no_host_setting_makes_a_spawn_fork",
            "--test-threads=1",
        ])
        .env("PROCMAN_STRACE_INNER", "1")
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    if !out.status.success() && text.is_empty() {
        eprintln!(
            "skipped: strace cannot trace here: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Process creations: every clone that makes no thread (a thread shares the signal
    // handlers and its parent's thread group).
    let creations: Vec<&str> = text
        .lines()
        .filter(|l| {
            (l.contains("clone(")
                || l.contains("clone3(")
                || l.contains("vfork(")
                || l.contains("fork("))
                && !l.contains("CLONE_THREAD")
                && !l.contains("resumed>")
        })
        .collect();
    assert_eq!(creations.len(), JOBS, "{text}");
    for c in &creations {
        assert!(
            c.contains("CLONE_VFORK") || c.contains("vfork("),
            "a fork: {c}"
        );
    }
}

/// An executable script `TAG-PID` holding `body`, in a `bin` folder of its own under `dir`:
/// its folder, its name and its path.
fn script_in_bin(dir: &TempDir, tag: &str, body: &str) -> (PathBuf, String, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let name = format!("{tag}-{}", std::process::id());
    let script = bin.join(&name);
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (bin, name, script)
}

/// Runs `spec` with its log in `dir/log`: the record and what the log holds.
fn run_logged(m: &ProcessManager, dir: &TempDir, spec: JobSpec, log: &str) -> (JobRecord, String) {
    let log = dir.join(log);
    let r = m.run(spec.log_file(&log)).unwrap();
    (r, std::fs::read_to_string(&log).unwrap_or_default())
}

/// PATH as std's Command reads it: the host's unless the job's environment sets, removes or
/// clears it; then the child's (glibc's default `/bin:/usr/bin` when it has none).
#[test]
fn a_bare_program_name_is_looked_up_in_the_path_std_would_use() {
    let dir = TempDir::new("pathlookup");
    let (bin, name, _) = script_in_bin(&dir, "procman-pathprobe", "#!/bin/sh\necho found \"$@\"\n");
    let m = ProcessManager::builder().limit(2).build().unwrap();
    let run = |spec: JobSpec, log: &str| run_logged(&m, &dir, spec, log);
    // Found in the PATH the job sets (not the host's).
    let path = format!("/nonexistent-procman:{}", bin.display());
    let (r, out) = run(JobSpec::new(&name).arg("x").env("PATH", &path), "set.log");
    assert_eq!(
        (r.status, out.as_str()),
        (JobStatus::Finished, "found x\n"),
        "{:?}",
        r.error
    );
    // Not found in the host's PATH...
    let (r, _) = run(JobSpec::new(&name), "host.log");
    assert_eq!(r.status, JobStatus::SpawnFailed);
    assert!(r.error.unwrap().contains("No such file"));
    // ...and a program the host's PATH has is not found in a PATH the job sets without it.
    let (r, _) = run(
        JobSpec::new("true").env("PATH", "/nonexistent-procman"),
        "nopath.log",
    );
    assert_eq!(r.status, JobStatus::SpawnFailed, "{:?}", r.error);
    // Cleared or removed: glibc's default path still finds `sh`.
    let (r, out) = run(
        JobSpec::new("sh").args(["-c", "echo ok"]).env_clear(),
        "clear.log",
    );
    assert_eq!(
        (r.status, out.as_str()),
        (JobStatus::Finished, "ok\n"),
        "{:?}",
        r.error
    );
    let (r, out) = run(
        JobSpec::new("sh")
            .args(["-c", "echo ok"])
            .env_remove("PATH"),
        "rm.log",
    );
    assert_eq!(
        (r.status, out.as_str()),
        (JobStatus::Finished, "ok\n"),
        "{:?}",
        r.error
    );
    // An entry without the name is passed over, as execvp does; the name found later runs.
    let locked = dir.join("locked");
    std::fs::create_dir(&locked).unwrap();
    let path = format!("{}:{}", locked.display(), bin.display());
    let (r, out) = run(JobSpec::new(&name).env("PATH", &path), "locked.log");
    assert_eq!(
        (r.status, out.as_str()),
        (JobStatus::Finished, "found\n"),
        "{:?}",
        r.error
    );
    // The environment the job asked for is what it gets (set after a clear, one removed).
    let (r, out) = run(
        JobSpec::new("/usr/bin/env")
            .env("A_BEFORE", "1")
            .env_clear()
            .env("PROCMAN_X", "1")
            .env("PROCMAN_Y", "2")
            .env_remove("PROCMAN_Y"),
        "env.log",
    );
    assert_eq!(
        (r.status, out.as_str()),
        (JobStatus::Finished, "PROCMAN_X=1\n"),
        "{:?}",
        r.error
    );
}

/// A script without a `#!` line runs as a shell script, as `execvp` (and std's fork path) run
/// it: by its path, and found in a PATH the job sets. glibc's `posix_spawn` gives ENOEXEC for
/// it; procman retries it as `/bin/sh FILE ARGS...` (review finding on the posix_spawn path).
#[test]
fn a_script_without_a_shebang_line_runs_as_a_shell_script() {
    let dir = TempDir::new("noshebang");
    let (bin, name, script) = script_in_bin(&dir, "procman-noshebang", "echo plain \"$@\"\n");
    let m = ProcessManager::builder().limit(2).build().unwrap();
    let run = |spec: JobSpec, log: &str| run_logged(&m, &dir, spec, log);
    let (r, out) = run(JobSpec::new(&script).args(["a", "b"]), "path.log");
    assert_eq!(
        (r.status, out.as_str()),
        (JobStatus::Finished, "plain a b\n"),
        "{:?}",
        r.error
    );
    let path = format!("/usr/bin:/bin:{}", bin.display());
    let (r, out) = run(JobSpec::new(&name).arg("c").env("PATH", &path), "set.log");
    assert_eq!(
        (r.status, out.as_str()),
        (JobStatus::Finished, "plain c\n"),
        "{:?}",
        r.error
    );
}
