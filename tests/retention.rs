//! Record retention (issue 19 §5): finished records whose handler returned are evicted by count
//! and by age; an evicted id reads as unknown, except to a wait already in progress and to
//! `after`. The memory soak is in tests/soak.rs (`memory_stays_flat_…`).

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{eventually, kid};
use procman::{JobId, JobSpec, JobStatus, ProcessManager, Retention, StartError, UnknownJob};

fn manager(retention: Retention) -> ProcessManager {
    ProcessManager::builder()
        .limit(4)
        .retention(retention)
        .build()
        .unwrap()
}

fn keep(n: usize) -> Retention {
    Retention::keep_all().max_records(Some(n))
}

fn run_true(m: &ProcessManager) -> JobId {
    let r = m.run(JobSpec::new("true")).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    r.id
}

/// The job's record can be read (`job_data` answers for it).
fn known(m: &ProcessManager, id: JobId) -> bool {
    m.job_data(id).is_ok()
}

/// The thread named `name` is asleep (blocked in a wait), per /proc/self/task/*/stat.
fn thread_asleep(name: &str) -> bool {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return false;
    };
    tasks.flatten().any(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // The state follows the command name in parentheses.
        let state = stat.rsplit(") ").next().and_then(|s| s.chars().next());
        comm.trim() == name && state == Some('S')
    })
}

#[test]
fn the_default_keeps_the_newest_10000_records_and_no_age_limit() {
    let r = Retention::default();
    assert_eq!(r.records_limit(), Some(Retention::DEFAULT_MAX_RECORDS));
    assert_eq!(Retention::DEFAULT_MAX_RECORDS, 10_000);
    assert_eq!(r.age_limit(), None);
    let m = ProcessManager::builder().build().unwrap();
    assert_eq!(m.retention(), r);
    let all = Retention::keep_all();
    assert_eq!((all.records_limit(), all.age_limit()), (None, None));
}

#[test]
fn records_beyond_the_newest_n_are_evicted_oldest_first_and_read_as_unknown() {
    let m = manager(keep(3));
    let ids: Vec<JobId> = (0..6).map(|_| run_true(&m)).collect();
    for &old in &ids[..3] {
        assert!(!known(&m, old), "{old} still kept");
        assert!(m.wait(old).is_err());
        assert!(m.wait_timeout(old, Duration::from_secs(1)).is_err());
        assert_eq!(m.kill_process(old), Err(UnknownJob(old)));
        assert_eq!(m.delete_job(old), Err(UnknownJob(old)));
    }
    for &new in &ids[3..] {
        assert_eq!(m.job_data(new).unwrap().status, JobStatus::Finished);
        assert_eq!(m.wait(new).unwrap().status, JobStatus::Finished);
    }
    let snap = m.snapshot();
    assert_eq!(snap.count(JobStatus::Finished), 3);
    assert_eq!(snap.evicted(JobStatus::Finished), 3);
    assert_eq!(snap.total(JobStatus::Finished), 6);
    // A failure is counted under its own status.
    let failed = m.run(JobSpec::new("false")).unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    run_true(&m);
    run_true(&m);
    run_true(&m);
    let snap = m.snapshot();
    assert_eq!(snap.evicted(JobStatus::Failed), 1);
    assert_eq!(snap.total(JobStatus::Finished), 9);
    assert!(!known(&m, failed.id));
}

#[test]
fn a_record_is_kept_until_its_handler_returned_and_a_wait_in_progress_gets_it() {
    let m = manager(keep(0));
    let (entered_tx, entered) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let id = m
        .start_process(JobSpec::new("true").on_finish(move |_| {
            entered_tx.send(()).unwrap();
            release.recv().unwrap();
        }))
        .unwrap();
    entered.recv_timeout(Duration::from_secs(60)).unwrap();
    // Final, handler running: not evictable.
    assert_eq!(m.job_data(id).unwrap().status, JobStatus::Finished);
    let h = m.handle();
    let waiter = std::thread::Builder::new()
        .name("ret-waiter".into())
        .spawn(move || h.wait(id))
        .unwrap();
    assert!(
        eventually(Duration::from_secs(30), || thread_asleep("ret-waiter")),
        "the waiter never blocked"
    );
    assert!(known(&m, id));
    // The handler returns: the record is evicted at once (max 0), but the waiter gets it.
    release_tx.send(()).unwrap();
    let got = waiter
        .join()
        .unwrap()
        .expect("the waiter gets the evicted record");
    assert_eq!((got.id, got.status), (id, JobStatus::Finished));
    assert!(!known(&m, id));
    assert!(m.wait(id).is_err());
}

#[test]
fn run_returns_its_record_even_when_it_is_evicted_at_once() {
    let m = manager(keep(0));
    for _ in 0..20 {
        let ok = m.run(JobSpec::new("true")).expect("run gets its record");
        assert_eq!(ok.status, JobStatus::Finished);
        assert!(!known(&m, ok.id));
        let bad = m.run(JobSpec::new("false")).expect("run gets its record");
        assert_eq!((bad.status, bad.exit_code), (JobStatus::Failed, Some(1)));
    }
    assert_eq!(m.snapshot().total(JobStatus::Finished), 20);
    assert_eq!(m.snapshot().counts, vec![]);
}

#[test]
fn after_an_evicted_job_still_knows_whether_it_succeeded() {
    let m = manager(keep(0));
    let good = run_true(&m);
    let bad = m.run(JobSpec::new("false")).unwrap().id;
    assert!(!known(&m, good) && !known(&m, bad));
    let r = m.run(JobSpec::new("true").after(good)).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    let r = m.run(JobSpec::new("true").after(bad)).unwrap();
    assert_eq!(r.status, JobStatus::DependencyFailed);
    let error = r.error.unwrap();
    assert!(error.contains(&bad.to_string()), "{error}");
    assert!(error.contains("evicted"), "{error}");
    // Deleted and never-given ids stay unknown.
    let deleted = m
        .start_process(JobSpec::new(kid()).args(["sleep", "30"]))
        .unwrap();
    assert_eq!(m.delete_job(deleted), Ok(()));
    assert!(matches!(
        m.start_process(JobSpec::new("true").after(deleted)),
        Err(StartError::UnknownDependency(d)) if d == deleted
    ));
    let never = JobId(u64::MAX - 5);
    assert!(matches!(
        m.start_process(JobSpec::new("true").after(never)),
        Err(StartError::UnknownDependency(d)) if d == never
    ));
    assert!(matches!(
        m.start_process(JobSpec::new("true").after(JobId(3))),
        Err(StartError::UnknownDependency(_))
    ));
}

#[test]
fn jobs_waiting_on_a_job_are_settled_before_it_can_be_evicted() {
    let m = manager(keep(0));
    let first = m
        .start_process(JobSpec::new(kid()).args(["sleep", "0.2"]))
        .unwrap();
    let then = m
        .start_process(JobSpec::new(kid()).args(["sleep", "0.1"]).after(first))
        .unwrap();
    let failing = m
        .start_process(JobSpec::new("sh").args(["-c", "sleep 0.2; exit 3"]))
        .unwrap();
    // `run` registers its wait with the submission: the record cannot go before it is read.
    let h = m.handle();
    let never = std::thread::spawn(move || h.run(JobSpec::new("true").after(failing)));
    assert_eq!(m.wait(then).unwrap().status, JobStatus::Finished);
    let never = never.join().unwrap().unwrap();
    assert_eq!(never.status, JobStatus::DependencyFailed);
    assert!(never.error.unwrap().contains("ended as failed"));
    assert!(!known(&m, first) && !known(&m, failing));
}

#[test]
fn records_older_than_max_age_are_evicted_on_the_next_handler_return_or_submission() {
    let age = Duration::from_secs(1);
    let m = manager(Retention::keep_all().max_age(Some(age)));
    let old = run_true(&m);
    let since = Instant::now();
    assert!(known(&m, old));
    let mut young = None;
    assert!(
        eventually(Duration::from_secs(60), || {
            // A submission is one of the occasions eviction happens on.
            young = Some(run_true(&m));
            !known(&m, old)
        }),
        "a record older than {age:?} was never evicted"
    );
    let gone_after = since.elapsed();
    assert!(
        gone_after >= age - Duration::from_millis(100),
        "{gone_after:?}"
    );
    assert!(known(&m, young.unwrap()), "a young record went too");
    assert!(m.snapshot().evicted(JobStatus::Finished) >= 1);
    // Duration::MAX never expires and never overflows.
    m.set_retention(Retention::keep_all().max_age(Some(Duration::MAX)));
    let kept = run_true(&m);
    run_true(&m);
    assert!(known(&m, kept));
}

#[test]
fn a_deleted_record_leaves_its_place_to_another() {
    let m = manager(keep(3));
    let a = run_true(&m);
    let b = run_true(&m);
    let c = run_true(&m);
    assert_eq!(m.delete_job(b), Ok(()));
    let d = run_true(&m);
    assert!(known(&m, a), "a was evicted although only a, c, d are kept");
    assert!(known(&m, c) && known(&m, d));
    // A host that deletes each job after reading it: the survivors stay (the eviction queue
    // holds the deleted ids until they are dropped in bulk).
    for _ in 0..300 {
        let id = run_true(&m);
        assert!(!known(&m, a), "{a} kept beyond the newest 3");
        assert_eq!(m.delete_job(id), Ok(()));
        assert!(known(&m, c) && known(&m, d));
    }
    let e = run_true(&m);
    let f = run_true(&m);
    assert!(!known(&m, c));
    assert!([d, e, f].iter().all(|&id| known(&m, id)));
    assert_eq!(m.snapshot().evicted(JobStatus::Finished), 2);
}

#[test]
fn set_retention_evicts_at_once_what_the_new_policy_does_not_keep() {
    let m = manager(Retention::keep_all());
    let ids: Vec<JobId> = (0..5).map(|_| run_true(&m)).collect();
    assert!(ids.iter().all(|&id| known(&m, id)));
    m.set_retention(keep(2));
    assert_eq!(m.retention(), keep(2));
    assert!(ids[..3].iter().all(|&id| !known(&m, id)));
    assert!(ids[3..].iter().all(|&id| known(&m, id)));
    // A live job is never evicted, whatever the policy.
    let live = m
        .start_process(JobSpec::new(kid()).args(["sleep", "30"]))
        .unwrap();
    m.set_retention(keep(0));
    assert!(known(&m, live));
    assert!(ids.iter().all(|&id| !known(&m, id)));
    assert!(m.kill_process(live).is_ok());
    // Once its handler has run (none here) it goes, unread.
    assert!(eventually(Duration::from_secs(60), || !known(&m, live)));
    let snap = m.snapshot();
    assert_eq!(
        snap.evicted(JobStatus::Killed) + snap.evicted(JobStatus::Cancelled),
        1
    );
}

#[test]
fn a_hold_keeps_a_record_readable_through_it_after_it_left_the_manager() {
    let m = manager(keep(0));
    let held = m.start_held(JobSpec::new("true")).unwrap();
    let id = held.id();
    // Slices, as the Python binding waits: the record stays held between them.
    let record = loop {
        match held.wait_timeout(Duration::from_millis(1)) {
            Ok(r) => break r,
            Err(procman::WaitTimeoutError::Timeout) => continue,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!((record.id, record.status), (id, JobStatus::Finished));
    // Evicted from the manager (max 0), readable through the hold.
    assert!(eventually(Duration::from_secs(60), || !known(&m, id)));
    assert_eq!(held.record().unwrap().status, JobStatus::Finished);
    assert_eq!(held.wait().unwrap().id, id);
    drop(held);
    assert!(m.wait(id).is_err());
    assert!(m.hold(id).is_err());
    // A hold on a known job, then a delete: unknown through the hold too.
    let live = m
        .start_process(JobSpec::new(kid()).args(["sleep", "30"]))
        .unwrap();
    let held = m.hold(live).unwrap();
    assert_eq!(m.delete_job(live), Ok(()));
    assert!(held.wait().is_err());
    assert!(held.record().is_err());
}
