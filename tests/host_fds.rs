//! A descriptor the host opened without `O_CLOEXEC` never reaches a job (Builder::
//! close_inherited_fds, on by default), also now that procman adds its `pre_exec` (and so forks)
//! only once the host is seen to have such a descriptor. Its own test binary: the inheritable
//! descriptor it opens would otherwise be process-wide state shared with other tests.

mod common;

use std::os::fd::AsRawFd;

use common::{kid, TempDir};
use procman::{JobSpec, JobStatus, ProcessManager};

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
