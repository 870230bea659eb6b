//! Lifecycle misuse gets an error, never a hang (issue 19, section 3): limit changes, pause and
//! resume after shutdown; `run` of a job another thread deleted; unknown ids read one way; an
//! observer that waits on its own job. Tests that count threads run in a process of their own
//! (`isolated`); every test that could hang on a regression runs under a watchdog.

mod common;
#[path = "common/isolate.rs"]
mod isolate;

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{kid, live_with_argv, marker_secs, TempDir};
use isolate::isolated;
use procman::{
    BuildError, Event, JobId, JobSpec, JobStatus, KillOutcome, ObserveMode, ProcessManager,
    ShutDown, ShutdownMode, StartError, UnknownJob, WaitError, WaitTimeoutError,
};

/// Runs `body` on a thread of its own and fails the test if it has not returned after `limit`
/// (the hung thread is left behind: the test has failed anyway).
fn watchdog<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)));
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("hung: no return within {limit:?}"),
    }
}

fn manager(limit: usize) -> ProcessManager {
    ProcessManager::builder()
        .limit(limit)
        .grace(Duration::from_millis(200))
        .build()
        .unwrap()
}

/// Threads whose name starts with `procman-` (read from /proc: includes detached ones).
fn procman_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with("procman-"))
        })
        .count()
}

// ---- limit changes, pause and resume after shutdown ----

#[test]
fn limit_changes_pause_and_resume_after_shutdown_are_refused_and_start_nothing() {
    isolated(
        "limit_changes_pause_and_resume_after_shutdown_are_refused_and_start_nothing",
        Duration::from_secs(60),
        || {
            let before = procman_threads();
            assert_eq!(before, 0);
            let m = manager(1);
            let h = m.handle();
            m.shutdown(ShutdownMode::Cancel, None);
            // A joined thread may linger in /proc for a moment: poll.
            assert!(
                common::eventually(Duration::from_secs(10), || procman_threads() == before),
                "shutdown joined every thread"
            );
            assert!(matches!(h.set_limit(8), Err(BuildError::ShutDown)));
            assert_eq!(
                procman_threads(),
                before,
                "set_limit after shutdown started threads"
            );
            assert_eq!(h.limit(), 1, "the limit is unchanged");
            assert!(matches!(
                h.set_capacities(4, 1 << 30),
                Err(BuildError::ShutDown)
            ));
            assert_eq!(h.pause(), Err(ShutDown));
            assert_eq!(h.resume(), Err(ShutDown));
            assert!(!h.snapshot().paused);
            // The owner's drop used to wait for ever for the workers set_limit had started.
            watchdog(Duration::from_secs(20), move || drop(m));
            assert!(
                common::eventually(Duration::from_secs(10), || procman_threads() == before),
                "threads left after drop"
            );
            // A zero limit is still refused as such.
            assert!(matches!(h.set_limit(0), Err(BuildError::ZeroLimit(_))));
        },
    );
}

#[test]
fn pause_during_a_drain_is_refused_so_the_drain_ends() {
    let m = manager(1);
    let h = m.handle();
    let marker = marker_secs();
    let id = m
        .start_process(
            JobSpec::new("sleep")
                .arg(&marker)
                .timeout(Duration::from_secs(1)),
        )
        .unwrap();
    let queued = m.start_process(JobSpec::new("true")).unwrap();
    let drain = std::thread::spawn(move || m.shutdown(ShutdownMode::Drain, None));
    // The drain closes the manager at once; wait until it has (a refused start says so).
    let t0 = Instant::now();
    while h.start_process(JobSpec::new("true")).is_ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the drain never began"
        );
        std::thread::yield_now();
    }
    // A pause here used to stop the drain from admitting `queued`: it waited for ever.
    assert_eq!(h.pause(), Err(ShutDown));
    watchdog(Duration::from_secs(30), move || drain.join().unwrap());
    assert!(live_with_argv(&["sleep", &marker]).is_empty());
    let _ = (id, queued);
}

#[test]
fn set_limit_racing_shutdown_never_leaves_a_worker_behind() {
    isolated(
        "set_limit_racing_shutdown_never_leaves_a_worker_behind",
        Duration::from_secs(120),
        || {
            let before = procman_threads();
            assert_eq!(before, 0);
            for round in 0..200 {
                let m = manager(1);
                let h = m.handle();
                let go = Arc::new(Barrier::new(2));
                let g = go.clone();
                let raiser = std::thread::spawn(move || {
                    g.wait();
                    let mut refused = false;
                    for limit in 2..40 {
                        match h.set_limit(limit) {
                            Ok(()) => {}
                            Err(BuildError::ShutDown) => refused = true,
                            Err(e) => panic!("round {round}: {e}"),
                        }
                    }
                    refused
                });
                go.wait();
                m.shutdown(ShutdownMode::Cancel, None);
                let _ = raiser.join().unwrap();
                // Every procman thread of this manager was joined by the shutdown (no observer,
                // so no detached follower). A joined thread can linger in /proc for a moment
                // (the kernel wakes the joiner before it removes the task): poll briefly; a
                // leaked worker stays for ever.
                let gone = common::eventually(Duration::from_secs(10), || procman_threads() == 0);
                let left = procman_threads();
                if !gone {
                    // Make the failure visible rather than hang in the drop.
                    std::mem::forget(m);
                    panic!("round {round}: {left} procman threads left after shutdown");
                }
                drop(m);
            }
        },
    );
}

// ---- run of a deleted job ----

#[test]
fn run_of_a_job_another_thread_deleted_says_deleted() {
    let m = manager(2);
    let h = m.handle();
    let events = m.subscribe(64);
    let marker = marker_secs();
    let spec = JobSpec::new("sleep").arg(&marker);
    let runner = std::thread::spawn(move || h.run(spec));
    let id = loop {
        match events
            .recv_timeout(Duration::from_secs(20))
            .expect("events")
        {
            Event::Started { id, .. } => break id,
            _ => continue,
        }
    };
    m.delete_job(id).unwrap();
    let got = watchdog(Duration::from_secs(20), move || runner.join().unwrap());
    assert_eq!(got.unwrap_err(), StartError::Deleted(id));
    assert_eq!(m.job_data(id).unwrap_err(), UnknownJob(id));
    m.wait_all();
    assert!(live_with_argv(&["sleep", &marker]).is_empty());
}

// ---- unknown ids read one way ----

#[test]
fn unknown_and_deleted_ids_are_an_err_naming_the_id_everywhere() {
    let m = manager(2);
    let other = manager(1);
    // An id another manager gave out means nothing here.
    let foreign = other.start_process(JobSpec::new("true")).unwrap();
    other.wait(foreign).unwrap();
    let never = JobId(foreign.0 + 1_000_000);
    let done = m.start_process(JobSpec::new("true")).unwrap();
    m.wait(done).unwrap();
    let marker = marker_secs();
    let live = m.start_process(JobSpec::new("sleep").arg(&marker)).unwrap();
    m.delete_job(done).unwrap();
    m.delete_job(live).unwrap();
    for id in [never, done, live] {
        assert_eq!(m.kill_process(id), Err(UnknownJob(id)));
        assert_eq!(m.job_data(id).unwrap_err(), UnknownJob(id));
        assert_eq!(m.delete_job(id), Err(UnknownJob(id)));
        assert_eq!(m.wait(id).unwrap_err(), WaitError::UnknownJob(id));
        assert_eq!(
            m.wait_timeout(id, Duration::ZERO).unwrap_err(),
            WaitTimeoutError::UnknownJob(id)
        );
        assert_eq!(
            m.wait_deadline(id, Instant::now()).unwrap_err(),
            WaitTimeoutError::UnknownJob(id)
        );
    }
    // Known ids: Ok.
    let known = m.start_process(JobSpec::new("true")).unwrap();
    m.wait(known).unwrap();
    assert_eq!(m.kill_process(known), Ok(KillOutcome::AlreadyFinished));
    assert_eq!(m.job_data(known).unwrap().status, JobStatus::Finished);
    assert_eq!(m.delete_job(known), Ok(()));
    m.wait_all();
    assert!(live_with_argv(&["sleep", &marker]).is_empty());
}

// ---- observers that wait ----

/// What an observer saw when it called the manager on its first line.
#[derive(Debug)]
struct FromObserver {
    own: JobId,
    wait: Result<JobStatus, WaitError>,
    wait_timeout: Result<JobStatus, WaitTimeoutError>,
    wait_deadline: Result<JobStatus, WaitTimeoutError>,
    wait_all_returned: bool,
    other: Result<JobStatus, WaitError>,
    took: Duration,
}

fn observer_waits(mode: ObserveMode) {
    let dir = TempDir::new("observer-waits");
    let m = ProcessManager::builder()
        .limit(2)
        .observe_mode(mode)
        .build()
        .unwrap();
    let other = m.start_process(JobSpec::new("true")).unwrap();
    let (tx, rx) = mpsc::sync_channel::<FromObserver>(1);
    let h = m.handle();
    let spec = JobSpec::new(kid())
        .args(["lines", "3"])
        .log_file(dir.join("log.txt"))
        .observer(Arc::new(move |id, _, _| {
            let t0 = Instant::now();
            let far = Duration::from_secs(3600);
            let seen = FromObserver {
                own: id,
                wait: h.wait(id).map(|r| r.status),
                wait_timeout: h.wait_timeout(id, far).map(|r| r.status),
                wait_deadline: h.wait_deadline(id, Instant::now() + far).map(|r| r.status),
                wait_all_returned: {
                    h.wait_all();
                    true
                },
                // Waiting on another job from an observer still works.
                other: h.wait(other).map(|r| r.status),
                took: t0.elapsed(),
            };
            let _ = tx.try_send(seen);
        }));
    let id = m.start_process(spec).unwrap();
    let Ok(seen) = rx.recv_timeout(Duration::from_secs(30)) else {
        // The job is wedged: dropping the manager would hang too.
        std::mem::forget(m);
        panic!("the observer did not return (it used to hang in wait)");
    };
    assert_eq!(seen.own, id);
    assert_eq!(seen.wait, Err(WaitError::WouldDeadlock(id)));
    assert_eq!(seen.wait_timeout, Err(WaitTimeoutError::WouldDeadlock(id)));
    assert_eq!(seen.wait_deadline, Err(WaitTimeoutError::WouldDeadlock(id)));
    assert!(seen.wait_all_returned);
    assert_eq!(seen.other, Ok(JobStatus::Finished));
    assert!(seen.took < Duration::from_secs(10), "{:?}", seen.took);
    let r = watchdog(Duration::from_secs(30), move || {
        let r = m.wait(id);
        drop(m);
        r
    });
    assert_eq!(r.unwrap().status, JobStatus::Finished);
}

#[test]
fn an_observer_waiting_on_its_own_job_is_refused_at_once_files() {
    observer_waits(ObserveMode::Files);
}

#[test]
fn an_observer_waiting_on_its_own_job_is_refused_at_once_pipes() {
    observer_waits(ObserveMode::Pipes);
}

/// Another manager's job with the same id is not the observer's own job.
#[test]
fn an_observer_may_wait_on_the_same_id_of_another_manager() {
    let dir = TempDir::new("observer-other-manager");
    let a = manager(1);
    let b = manager(1);
    let (tx, rx) = mpsc::sync_channel(1);
    let hb = b.handle();
    let id = a
        .start_process(
            JobSpec::new(kid())
                .args(["lines", "1"])
                .log_file(dir.join("log.txt"))
                .observer(Arc::new(move |id, _, _| {
                    let _ = tx.try_send(hb.wait(id).map(|r| r.status));
                })),
        )
        .unwrap();
    // Ids start at the same number in every manager.
    let twin = b.start_process(JobSpec::new("true")).unwrap();
    assert_eq!(twin, id);
    let got = rx.recv_timeout(Duration::from_secs(30)).expect("observer");
    assert_eq!(got, Ok(JobStatus::Finished));
    a.wait(id).unwrap();
}

#[test]
fn shutdown_from_an_observer_does_not_wait_and_the_owner_finishes_it() {
    for mode in [ObserveMode::Files, ObserveMode::Pipes] {
        let dir = TempDir::new("observer-shutdown");
        let m = ProcessManager::builder()
            .limit(2)
            .observe_mode(mode)
            .grace(Duration::from_millis(200))
            .build()
            .unwrap();
        let marker = marker_secs();
        let bystander = m.start_process(JobSpec::new("sleep").arg(&marker)).unwrap();
        let (tx, rx) = mpsc::sync_channel(1);
        let h = m.handle();
        // Prints a line, then sleeps: the observer's shutdown must kill it.
        let id = m
            .start_process(
                JobSpec::new("sh")
                    .args(["-c", &format!("echo go; exec sleep {marker}")])
                    .log_file(dir.join("log.txt"))
                    .observer(Arc::new(move |_, _, _| {
                        h.shutdown(ShutdownMode::Cancel, None);
                        let _ = tx.try_send(h.start_process(JobSpec::new("true")).is_err());
                    })),
            )
            .unwrap();
        let Ok(refused) = rx.recv_timeout(Duration::from_secs(30)) else {
            // The job is wedged: dropping the manager would hang too.
            std::mem::forget(m);
            panic!("shutdown in an observer did not return");
        };
        assert!(
            refused,
            "the manager is closed after the observer's shutdown"
        );
        let (own, by) = watchdog(Duration::from_secs(30), move || {
            let own = m.wait(id).map(|r| r.status);
            let by = m.wait(bystander).map(|r| r.status);
            drop(m);
            (own, by)
        });
        assert_eq!(own, Ok(JobStatus::Killed), "{mode:?}");
        assert!(matches!(by, Ok(JobStatus::Killed | JobStatus::Cancelled)));
        assert!(live_with_argv(&["sleep", &marker]).is_empty());
    }
}
