//! Worker threads are created as attempts need them, up to the limit (issue 16): a huge limit
//! costs nothing until jobs use it, and concurrency still reaches the limit when they do.
//! Thread counts are process-wide: the tests here take turns.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{kid, TempDir};
use procman::{JobSpec, JobStatus, ProcessManager};

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// This process's threads named `procman-worker-*` (the name is cut to 15 bytes in `comm`).
fn workers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with("procman-worker"))
        .count()
}

#[test]
fn a_huge_limit_builds_at_once_and_one_job_uses_few_threads() {
    let _t = turn();
    let before = workers();
    let t0 = Instant::now();
    let m = ProcessManager::builder().limit(100_000).build().unwrap();
    let built = t0.elapsed();
    let r = m.run(JobSpec::new("/bin/true")).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    let added = workers() - before;
    assert!(added <= 3, "{added} workers for one job");
    assert!(built < Duration::from_secs(2), "build took {built:?}");
    m.shutdown(procman::ShutdownMode::Drain, None);
    assert_eq!(workers(), before, "the workers end with the manager");
}

/// `n` jobs that each wait (up to 30 s) until all `n` have started: they finish "met" only
/// if all ran at once.
fn meeting(m: &ProcessManager, dir: &TempDir, n: usize) -> Vec<procman::JobId> {
    let meet = dir.join("meet");
    std::fs::create_dir_all(&meet).unwrap();
    (0..n)
        .map(|i| {
            m.start_process(
                JobSpec::new(kid())
                    .arg("meet")
                    .arg(&meet)
                    .arg(format!("m{i}"))
                    .arg(n.to_string())
                    .arg("30")
                    .log_file(dir.join(&format!("{i}.log"))),
            )
            .unwrap()
        })
        .collect()
}

fn all_met(m: &ProcessManager, dir: &TempDir, ids: &[procman::JobId]) {
    for (i, &id) in ids.iter().enumerate() {
        let r = m.wait(id).unwrap();
        let out = std::fs::read_to_string(dir.join(&format!("{i}.log"))).unwrap();
        assert_eq!(
            (r.status, out.as_str()),
            (JobStatus::Finished, "met\n"),
            "job {i}"
        );
    }
}

#[test]
fn concurrency_still_reaches_the_limit_when_jobs_need_it() {
    let _t = turn();
    let before = workers();
    let dir = TempDir::new("workers-meet");
    let m = ProcessManager::builder().limit(8).build().unwrap();
    let ids = meeting(&m, &dir, 8);
    all_met(&m, &dir, &ids);
    assert_eq!(workers() - before, 8);
}

#[test]
fn a_raised_limit_gets_its_workers_while_all_are_busy() {
    let _t = turn();
    let dir = TempDir::new("workers-raise");
    let m = ProcessManager::builder().limit(1).build().unwrap();
    // The first holds the only worker until the second runs beside it.
    let ids = meeting(&m, &dir, 2);
    // Raised once the first runs (its marker is there): its worker is busy, no other exists.
    let meet = dir.join("meet");
    assert!(common::eventually(Duration::from_secs(30), || {
        std::fs::read_dir(&meet).map_or(0, |d| d.count()) == 1
    }));
    m.set_limit(2).unwrap();
    all_met(&m, &dir, &ids);
}
