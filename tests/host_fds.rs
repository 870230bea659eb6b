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

#[test]
fn an_inheritable_host_descriptor_opened_after_the_manager_is_not_inherited() {
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
