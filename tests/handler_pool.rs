//! `Builder::handler_threads(n)`: handlers on a pool of threads (issue #17 item 2), with every
//! guarantee of the single dispatcher kept: exactly once, after the slot is freed, a job's
//! events in order, `wait` returning after the handler, no deadlock for waits inside handlers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use procman::{BuildError, Event, Handle, JobId, JobSpec, JobStatus, ProcessManager};

/// Generous bound for anything that must not hang (a deadlock shows as this timeout).
const PATIENCE: Duration = Duration::from_secs(60);
/// The bound of waits made inside handlers in the deadlock tests: far longer than anything
/// takes when it works; a deadlock shows as these waits timing out.
const HANDLER_PATIENCE: Duration = Duration::from_secs(10);

fn manager(handler_threads: usize) -> ProcessManager {
    ProcessManager::builder()
        .limit(4)
        .handler_threads(handler_threads)
        .build()
        .expect("manager")
}

/// Starts three `true` jobs whose handlers each sleep 1 s; returns how long until all three
/// handlers have returned.
fn three_slow_handlers(handler_threads: usize) -> Duration {
    let pm = manager(handler_threads);
    let t0 = Instant::now();
    let ids: Vec<JobId> = (0..3)
        .map(|_| {
            pm.start_process(
                JobSpec::new("true").on_finish(|_| std::thread::sleep(Duration::from_secs(1))),
            )
            .expect("start")
        })
        .collect();
    for id in ids {
        pm.wait_timeout(id, PATIENCE).expect("job and handler done");
    }
    t0.elapsed()
}

#[test]
fn three_one_second_handlers_overlap_with_three_handler_threads() {
    let took = three_slow_handlers(3);
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn one_handler_thread_keeps_handlers_one_at_a_time() {
    // The default: today's behaviour, one handler after the other.
    let took = three_slow_handlers(1);
    assert!(took >= Duration::from_secs(3), "took {took:?}");
}

#[test]
fn zero_handler_threads_is_refused() {
    let err = ProcessManager::builder().handler_threads(0).build().err();
    assert!(matches!(err, Some(BuildError::ZeroLimit(_))), "{err:?}");
}

#[test]
fn every_handler_runs_exactly_once_and_wait_returns_after_it() {
    let pm = manager(4);
    let calls: Arc<Mutex<HashMap<JobId, usize>>> = Arc::default();
    let mut ids = Vec::new();
    for i in 0..300 {
        let calls = calls.clone();
        let spec = JobSpec::new("true").on_finish(move |r| {
            if i % 7 == 0 {
                std::thread::sleep(Duration::from_millis(20)); // some slow ones
            }
            *calls.lock().unwrap().entry(r.id).or_insert(0) += 1;
        });
        ids.push(pm.start_process(spec).expect("start"));
    }
    for &id in &ids {
        let r = pm.wait_timeout(id, PATIENCE).expect("done");
        assert_eq!(r.status, JobStatus::Finished);
        // wait returned after the handler: its call is already counted.
        assert_eq!(calls.lock().unwrap().get(&id), Some(&1), "job {id}");
    }
    pm.wait_all();
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), ids.len());
    assert!(calls.values().all(|&n| n == 1), "a handler ran twice");
}

#[test]
fn handlers_run_after_the_slot_is_freed_and_events_stay_in_order() {
    // limit 1: the second job can only start once the first one's slot is free; the first
    // one's handler waits (bounded) until the second has started.
    let pm = ProcessManager::builder()
        .limit(1)
        .handler_threads(3)
        .build()
        .expect("manager");
    let events = pm.subscribe(10_000);
    let second_started = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let seen = second_started.clone();
    let saw_it = Arc::new(AtomicUsize::new(0));
    let saw = saw_it.clone();
    let first = pm
        .start_process(JobSpec::new("true").on_finish(move |_| {
            let (lock, cv) = &*seen;
            let started = cv
                .wait_timeout_while(lock.lock().unwrap(), PATIENCE, |s| !*s)
                .unwrap();
            if *started.0 {
                saw.fetch_add(1, Ordering::SeqCst);
            }
        }))
        .expect("start");
    let gate = second_started.clone();
    let second = pm
        .start_process(JobSpec::new("true").on_finish(move |_| {
            let (lock, cv) = &*gate;
            *lock.lock().unwrap() = true;
            cv.notify_all();
        }))
        .expect("start");
    let more: Vec<JobId> = (0..20)
        .map(|_| pm.start_process(JobSpec::new("true")).unwrap())
        .collect();
    pm.wait_timeout(first, PATIENCE).expect("first");
    pm.wait_timeout(second, PATIENCE).expect("second");
    pm.wait_all();
    assert_eq!(
        saw_it.load(Ordering::SeqCst),
        1,
        "the first job's slot was held by its handler"
    );
    // Each job's events: Queued, Started, Finished, in that order.
    let mut order: HashMap<JobId, Vec<&'static str>> = HashMap::new();
    while let Ok(e) = events.try_recv() {
        let (id, what) = match e {
            Event::Queued { id } => (id, "queued"),
            Event::Started { id, .. } => (id, "started"),
            Event::Finished(r) => (r.id, "finished"),
            Event::Retrying { id, .. } => (id, "retrying"),
            Event::Lost(n) => panic!("{n} events lost"),
            other => panic!("unexpected event {other:?}"),
        };
        order.entry(id).or_default().push(what);
    }
    for id in [first, second].into_iter().chain(more) {
        assert_eq!(order[&id], ["queued", "started", "finished"], "job {id}");
    }
}

#[test]
fn a_wait_inside_a_handler_waits_for_the_inner_handler_with_several_threads() {
    for (threads, waits_for_inner) in [(1, false), (2, true)] {
        let pm = manager(threads);
        let handle = pm.handle();
        let inner_done = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(None));
        let (done, seen2) = (inner_done.clone(), seen.clone());
        let outer = pm
            .start_process(JobSpec::new("true").on_finish(move |_| {
                let d = done.clone();
                let inner = handle
                    .start_process(JobSpec::new("true").on_finish(move |_| {
                        std::thread::sleep(Duration::from_millis(200));
                        d.fetch_add(1, Ordering::SeqCst);
                    }))
                    .expect("inner");
                let r = handle.wait(inner).expect("inner wait");
                *seen2.lock().unwrap() = Some((r.status, done.load(Ordering::SeqCst)));
            }))
            .expect("outer");
        pm.wait_timeout(outer, PATIENCE).expect("outer done");
        pm.wait_all();
        let (status, inner_handlers) = seen.lock().unwrap().expect("outer handler ran");
        assert_eq!(status, JobStatus::Finished);
        let expected = usize::from(waits_for_inner);
        assert_eq!(inner_handlers, expected, "{threads} handler thread(s)");
        assert_eq!(inner_done.load(Ordering::SeqCst), 1);
    }
}

/// Starts `n` jobs whose handlers each call `body(handle, own id, ids of all n jobs)`, which
/// returns false on a timed-out wait; returns how many handlers saw every wait succeed.
fn handlers_that_wait(
    threads: usize,
    n: usize,
    body: impl Fn(&Handle, JobId, &[JobId]) -> bool + Send + Sync + 'static,
) -> usize {
    let pm = manager(threads);
    let body = Arc::new(body);
    let ids: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let ok = Arc::new(AtomicUsize::new(0));
    {
        // Held while all are started: no handler reads the list before it is complete.
        let mut list = ids.lock().unwrap();
        for _ in 0..n {
            let (handle, ids, ok, body) = (pm.handle(), ids.clone(), ok.clone(), body.clone());
            let spec = JobSpec::new("true").on_finish(move |r| {
                let all = ids.lock().unwrap().clone();
                if body(&handle, r.id, &all) {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
            });
            list.push(pm.start_process(spec).expect("start"));
        }
    }
    pm.wait_all();
    ok.load(Ordering::SeqCst)
}

/// Waits inside handlers are bounded: a deadlock shows as these timing out (a failed test),
/// not as a hang.
fn waited(pm: &Handle, id: JobId) -> bool {
    pm.wait_timeout(id, HANDLER_PATIENCE).is_ok()
}

#[test]
fn handlers_waiting_for_each_other_do_not_deadlock() {
    // Two jobs whose handlers each wait for the other's: the second wait must not also wait
    // for a handler that is itself waiting.
    for threads in [2, 3, 4] {
        let ok = handlers_that_wait(threads, 2, |pm, me, all| {
            let other = if all[0] == me { all[1] } else { all[0] };
            // Both handlers are running before either waits.
            std::thread::sleep(Duration::from_millis(50));
            waited(pm, other)
        });
        assert_eq!(ok, 2, "{threads} handler threads");
    }
}

#[test]
fn every_handler_thread_waiting_for_a_queued_handler_does_not_deadlock() {
    // As many handlers as threads, each starting a job and waiting for it: the inner jobs'
    // handlers are queued behind them, so one thread must stay free to run those.
    for threads in [2, 3, 4] {
        let ok = handlers_that_wait(threads, threads, |pm, _, _| {
            std::thread::sleep(Duration::from_millis(50));
            let inner = pm
                .start_process(JobSpec::new("true").on_finish(|_| {}))
                .expect("inner");
            waited(pm, inner)
        });
        assert_eq!(ok, threads, "{threads} handler threads");
    }
}

#[test]
fn a_handler_waiting_for_its_own_job_returns() {
    for threads in [1, 2, 4] {
        let ok = handlers_that_wait(threads, 3, |pm, me, _| waited(pm, me));
        assert_eq!(ok, 3, "{threads} handler threads");
    }
}

/// A shutdown started inside one handler while another handler waits for a third job's handler
/// (issue #17 review): the shutdown must not join the waiting handler's thread, or no thread is
/// left to run the handler it waits for.
#[test]
fn shutdown_inside_a_handler_while_another_handler_waits_does_not_deadlock() {
    let dir = std::env::temp_dir().join(format!("procman-hp-shutdown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gate = dir.join("go");
    let pm = manager(2);
    let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
    let (result_tx, result_rx) = std::sync::mpsc::channel();
    // T runs until the test opens the gate.
    let t = pm
        .start_process(JobSpec::new("sh").args([
            "-c",
            "while [ ! -e \"$1\" ]; do sleep 0.01; done",
            "gate",
            gate.to_str().unwrap(),
        ]))
        .unwrap();
    // A's handler waits for T (and T's handler).
    let (h, a_tx) = (pm.handle(), tx.clone());
    pm.start_process(JobSpec::new("true").on_finish(move |_| {
        a_tx.send("a waits").unwrap();
        let _ = result_tx.send(h.wait_timeout(t, HANDLER_PATIENCE).map(|r| r.status));
    }))
    .unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), "a waits");
    // S's handler shuts the manager down.
    let (h, s_tx) = (pm.handle(), tx);
    pm.start_process(JobSpec::new("true").on_finish(move |_| {
        s_tx.send("s shuts down").unwrap();
        h.shutdown(procman::ShutdownMode::Drain, None);
    }))
    .unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), "s shuts down");
    std::fs::write(&gate, b"").unwrap();
    // Broken, A's wait times out after HANDLER_PATIENCE (no thread left for T's handler).
    let waited = result_rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(waited, Ok(JobStatus::Finished));
    let done = Instant::now();
    drop(pm);
    assert!(done.elapsed() < PATIENCE);
    std::fs::remove_dir_all(&dir).ok();
}
