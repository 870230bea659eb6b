//! Load, races and shutdown (issue 6). The soak's length comes from `PROCMAN_SOAK_SECS`
//! (default 5 s; minutes for a real soak). Each test runs in a process of its own
//! (tests/common/isolate.rs), because each ends by checking that the process's fd, thread and
//! child counts are back to where they were before the manager existed.

mod common;
#[path = "common/isolate.rs"]
mod isolate;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::{children, eventually, fd_count, kid, live_in_group, thread_count};
use isolate::isolated;
use procman::{
    Event, JobId, JobRecord, JobSpec, JobStatus, ProcessManager, ShutdownMode, StartError,
};

const LONG: Duration = Duration::from_secs(60);

/// The process's own resources, to compare before and after.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Counts {
    fds: usize,
    threads: usize,
    children: usize,
}

fn counts() -> Counts {
    Counts {
        fds: fd_count(),
        threads: thread_count(),
        children: children().len(),
    }
}

/// Threads end just after `join` returns, and /proc may list them a moment longer.
fn assert_back_to(baseline: Counts) {
    assert!(
        eventually(Duration::from_secs(10), || counts() == baseline),
        "resources not back: before {baseline:?}, after {:?}",
        counts()
    );
}

/// Every handler call, by job id.
#[derive(Default)]
struct Ledger {
    calls: Mutex<HashMap<JobId, Vec<JobStatus>>>,
    accepted: Mutex<HashSet<JobId>>,
}

impl Ledger {
    fn handler(self: &Arc<Self>) -> impl FnOnce(&JobRecord) + Send + 'static {
        let me = self.clone();
        move |r| {
            assert!(r.status.is_final());
            me.calls
                .lock()
                .unwrap()
                .entry(r.id)
                .or_default()
                .push(r.status);
        }
    }

    fn accepted(&self, id: JobId) {
        assert!(
            self.accepted.lock().unwrap().insert(id),
            "id {id} given twice"
        );
    }

    /// Every accepted job had exactly one handler call, and no other id had any.
    fn check_exactly_once(&self) -> usize {
        let calls = self.calls.lock().unwrap();
        let accepted = self.accepted.lock().unwrap();
        for (id, seen) in calls.iter() {
            assert!(accepted.contains(id), "handler for unknown job {id}");
            assert_eq!(seen.len(), 1, "job {id}: {seen:?}");
        }
        let missing: Vec<_> = accepted
            .iter()
            .filter(|id| !calls.contains_key(id))
            .collect();
        assert!(missing.is_empty(), "no handler call for {missing:?}");
        accepted.len()
    }
}

fn soak_secs() -> f64 {
    std::env::var("PROCMAN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0)
}

/// A small xorshift generator: each thread its own, seeded differently.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One short job of a random kind.
fn short_job(rng: &mut Rng) -> JobSpec {
    match rng.below(10) {
        0..=2 => JobSpec::new("true"),
        3 => JobSpec::new("false"),
        4 => JobSpec::new(kid()).args(["sleep", "0.02"]),
        5 => JobSpec::new(kid()).arg("segv"),
        6 => JobSpec::new(kid())
            .args(["sleep", "5"])
            .timeout(Duration::from_millis(10))
            .grace(Duration::ZERO),
        7 => JobSpec::new(kid())
            .args(["lines", "50"])
            .observe(|_, _, _| {}),
        8 => JobSpec::new("/no/such/program"),
        _ => JobSpec::new(kid())
            .args(["ignore-term", "5"])
            .timeout(Duration::from_millis(20)),
    }
}

#[test]
fn soak_many_short_jobs_with_killers_deleters_and_handlers_that_start_jobs() {
    isolated(
        "soak_many_short_jobs_with_killers_deleters_and_handlers_that_start_jobs",
        Duration::from_secs_f64(soak_secs() * 4.0 + 120.0),
        soak,
    );
}

fn soak() {
    let secs = soak_secs();
    let baseline = counts();
    let m = Arc::new(
        ProcessManager::builder()
            .limit(8)
            .grace(Duration::from_millis(50))
            .build()
            .unwrap(),
    );
    let ledger = Arc::new(Ledger::default());
    let ids: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let from_handlers = Arc::new(AtomicUsize::new(0));
    let kills = Arc::new(AtomicU64::new(0));
    let deletes = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();

    // Submitters; one job in eight has a handler that starts another job.
    for t in 0..4u64 {
        let (m, ledger, ids, stop, fh) = (
            m.clone(),
            ledger.clone(),
            ids.clone(),
            stop.clone(),
            from_handlers.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
            while !stop.load(Ordering::Relaxed) {
                let inner = ledger.handler();
                let spec = if rng.below(8) == 0 {
                    let (h, ledger, ids, fh) =
                        (m.handle(), ledger.clone(), ids.clone(), fh.clone());
                    short_job(&mut rng).on_finish(move |r| {
                        inner(r);
                        // Starting from a handler may meet the shutdown: then it is refused.
                        match h.start_process(JobSpec::new("true").on_finish(ledger.handler())) {
                            Ok(id) => {
                                ledger.accepted(id);
                                ids.lock().unwrap().push(id);
                                fh.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(StartError::ShutDown) => {}
                            Err(e) => panic!("start from a handler: {e}"),
                        }
                    })
                } else {
                    short_job(&mut rng).on_finish(inner)
                };
                let id = m.start_process(spec).expect("accepted while running");
                ledger.accepted(id);
                ids.lock().unwrap().push(id);
                // Keep the queue from growing without bound.
                while m.pending_processes().len() > 200 && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }));
    }
    // Killers and deleters pick random known jobs.
    for t in 0..3u64 {
        let (m, ids, stop, kills, deletes) = (
            m.clone(),
            ids.clone(),
            stop.clone(),
            kills.clone(),
            deletes.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (t + 7));
            while !stop.load(Ordering::Relaxed) {
                let pick = {
                    let ids = ids.lock().unwrap();
                    (!ids.is_empty()).then(|| ids[ids.len() - 1 - rng.below(ids.len().min(50))])
                };
                if let Some(id) = pick {
                    if t == 2 {
                        // Another thread may have deleted it already.
                        let _ = m.delete_job(id);
                        deletes.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let _ = m.kill_process(id);
                        kills.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(1 + rng.below(3) as u64));
            }
        }));
    }
    // A waiter and a watcher: waits on random jobs, reads snapshots and events.
    {
        let (m, ids, stop) = (m.clone(), ids.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(42);
            let events = m.subscribe(64);
            while !stop.load(Ordering::Relaxed) {
                let pick = {
                    let ids = ids.lock().unwrap();
                    (!ids.is_empty()).then(|| ids[rng.below(ids.len())])
                };
                if let Some(id) = pick {
                    if let Ok(r) = m.wait_timeout(id, Duration::from_millis(50)) {
                        assert!(r.status.is_final());
                    }
                }
                let _ = m.snapshot();
                let _ = events.try_iter().count();
            }
        }));
    }
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    m.wait_all();
    m.shutdown(ShutdownMode::Drain, None);
    let n = ledger.check_exactly_once();
    let m = Arc::into_inner(m).expect("every other owner was joined");
    drop(m);
    println!(
        "soak: {secs} s, {n} jobs ({} from handlers), {} kills, {} deletes",
        from_handlers.load(Ordering::Relaxed),
        kills.load(Ordering::Relaxed),
        deletes.load(Ordering::Relaxed)
    );
    assert!(n >= 100, "only {n} jobs in {secs} s");
    assert_back_to(baseline);
}

#[test]
fn shutdown_while_jobs_run_and_a_handler_runs_waits_for_the_handler_and_ends_every_job() {
    isolated(
        "shutdown_while_jobs_run_and_a_handler_runs_waits_for_the_handler_and_ends_every_job",
        LONG * 2,
        || {
            let baseline = counts();
            let m = Arc::new(
                ProcessManager::builder()
                    .limit(4)
                    .grace(Duration::from_millis(100))
                    .build()
                    .unwrap(),
            );
            let ledger = Arc::new(Ledger::default());
            let events = m.subscribe(1000);
            // A handler that blocks until released; it is running when shutdown starts.
            let (entered_tx, entered) = mpsc::channel();
            let release = Arc::new(Barrier::new(2));
            let returned = Arc::new(AtomicBool::new(false));
            let (r2, ret2, inner) = (release.clone(), returned.clone(), ledger.handler());
            let slow = m
                .start_process(JobSpec::new("true").on_finish(move |r| {
                    inner(r);
                    entered_tx.send(()).unwrap();
                    r2.wait();
                    std::thread::sleep(Duration::from_millis(200));
                    ret2.store(true, Ordering::SeqCst);
                }))
                .unwrap();
            ledger.accepted(slow);
            entered.recv_timeout(LONG).unwrap();
            // Running jobs (some ignore TERM) and queued ones.
            for i in 0..12 {
                let mode = if i % 2 == 0 { "ignore-term" } else { "sleep" };
                let id = m
                    .start_process(
                        JobSpec::new(kid())
                            .args([mode, "30"])
                            .on_finish(ledger.handler()),
                    )
                    .unwrap();
                ledger.accepted(id);
            }
            let mut started = 0;
            while started < 4 {
                if let Event::Started { .. } = events.recv_timeout(LONG).unwrap() {
                    started += 1;
                }
            }
            let pgids: Vec<u32> = m
                .snapshot()
                .running
                .iter()
                .map(|&(_, pid, _)| pid)
                .collect();
            let (done_tx, done) = mpsc::channel();
            let m2 = m.clone();
            let t = Instant::now();
            let shutter = std::thread::spawn(move || {
                m2.shutdown(ShutdownMode::Cancel, None);
                done_tx.send(()).unwrap();
            });
            // Shutdown cannot finish while the handler runs.
            assert!(done.recv_timeout(Duration::from_millis(300)).is_err());
            release.wait();
            done.recv_timeout(LONG).expect("shutdown returns");
            assert!(
                returned.load(Ordering::SeqCst),
                "shutdown returned before the handler"
            );
            assert!(t.elapsed() < Duration::from_secs(30));
            shutter.join().unwrap();
            assert_eq!(ledger.check_exactly_once(), 13);
            for pgid in pgids {
                assert!(live_in_group(pgid).is_empty());
            }
            drop(events);
            drop(Arc::into_inner(m).unwrap());
            assert_back_to(baseline);
        },
    );
}

#[test]
fn shutdown_from_inside_a_handler_returns_and_every_handler_still_runs_once() {
    isolated(
        "shutdown_from_inside_a_handler_returns_and_every_handler_still_runs_once",
        LONG * 2,
        || {
            let baseline = counts();
            let m = ProcessManager::builder().limit(2).build().unwrap();
            let ledger = Arc::new(Ledger::default());
            let (tx, rx) = mpsc::channel();
            let (h, inner) = (m.handle(), ledger.handler());
            let first = m
                .start_process(JobSpec::new("true").on_finish(move |r| {
                    inner(r);
                    h.shutdown(ShutdownMode::Cancel, None);
                    tx.send(()).unwrap();
                    // The owner is dropped while this handler still runs: the drop must wait
                    // for the handlers queued behind this one (regression).
                    std::thread::sleep(Duration::from_millis(200));
                }))
                .unwrap();
            ledger.accepted(first);
            for _ in 0..10 {
                match m.start_process(
                    JobSpec::new(kid())
                        .args(["sleep", "30"])
                        .on_finish(ledger.handler()),
                ) {
                    Ok(id) => ledger.accepted(id),
                    Err(StartError::ShutDown) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            rx.recv_timeout(LONG)
                .expect("shutdown inside a handler returns");
            drop(m);
            ledger.check_exactly_once();
            assert_back_to(baseline);
        },
    );
}

#[test]
fn dropping_a_manager_with_queued_work_ends_everything_and_leaks_nothing() {
    isolated(
        "dropping_a_manager_with_queued_work_ends_everything_and_leaks_nothing",
        LONG * 2,
        || {
            let baseline = counts();
            let ledger = Arc::new(Ledger::default());
            let events;
            {
                let m = ProcessManager::builder()
                    .limit(3)
                    .grace(Duration::from_millis(100))
                    .build()
                    .unwrap();
                events = m.subscribe(10_000);
                for i in 0..60 {
                    let spec = match i % 4 {
                        0 => JobSpec::new(kid()).args(["ignore-term", "30"]),
                        1 => JobSpec::new(kid()).args(["tree", "2", "2", "30"]),
                        2 => JobSpec::new(kid())
                            .args(["lines", "5"])
                            .observe(|_, _, _| {}),
                        _ => JobSpec::new("true"),
                    };
                    let id = m.start_process(spec.on_finish(ledger.handler())).unwrap();
                    ledger.accepted(id);
                }
                // Dropped with jobs running and most still queued.
            }
            assert_eq!(ledger.check_exactly_once(), 60);
            let pgids: Vec<u32> = events
                .try_iter()
                .filter_map(|e| match e {
                    Event::Started { pid, .. } => Some(pid),
                    _ => None,
                })
                .collect();
            for pgid in pgids {
                assert!(
                    eventually(Duration::from_secs(10), || live_in_group(pgid).is_empty()),
                    "group {pgid} left alive"
                );
            }
            drop(events);
            assert_back_to(baseline);
        },
    );
}

/// How many jobs the flat-memory soak runs: `PROCMAN_SOAK_JOBS` (default 20,000; docs give the
/// figure for 1,000,000).
fn soak_jobs() -> usize {
    std::env::var("PROCMAN_SOAK_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

/// (current, peak) resident set size of this process, in bytes (/proc/self/status).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("a VmRSS/VmHWM line")
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn memory_stays_flat_over_many_short_jobs_with_the_default_retention() {
    let jobs = soak_jobs() as u64;
    isolated(
        "memory_stays_flat_over_many_short_jobs_with_the_default_retention",
        Duration::from_secs(300 + jobs / 20),
        flat_memory,
    );
}

/// Issue 19 §5: a host that runs jobs for weeks. With the default retention, after a warm-up
/// that fills the retained window (10,000 records) and a little more, RSS stays within 5 MiB
/// however many jobs follow. Each job looks like a CCP4i2 job (a few path arguments, a log and
/// an error file), so a kept record is ~1 KB: without eviction the 8,000 jobs after the
/// warm-up of the short run add ~8 MiB.
fn flat_memory() {
    const MIB: f64 = 1024.0 * 1024.0;
    const IN_FLIGHT: usize = 32;
    let jobs = soak_jobs();
    let warmup = procman::Retention::DEFAULT_MAX_RECORDS + 2_000;
    assert!(jobs > warmup, "PROCMAN_SOAK_JOBS must be above {warmup}");
    let dir = common::TempDir::new("flat");
    let log = dir.join("job_1/log.txt");
    let m = ProcessManager::builder().limit(4).build().unwrap();
    assert_eq!(m.retention(), procman::Retention::default());
    let (tx, rx) = mpsc::channel::<JobStatus>();
    let started = Instant::now();
    let mut finished = 0usize;
    let wait_one = |finished: &mut usize| {
        let status = rx.recv().expect("a handler call");
        assert_eq!(status, JobStatus::Finished);
        *finished += 1;
    };
    let (mut warm, mut peak_after_warm) = (0u64, 0u64);
    for i in 0..jobs {
        if i >= IN_FLIGHT {
            wait_one(&mut finished);
        }
        if i == warmup {
            warm = rss().0;
            println!(
                "flat memory: warm-up {warmup} jobs in {:.1} s, RSS {:.2} MiB",
                started.elapsed().as_secs_f64(),
                warm as f64 / MIB
            );
        }
        if i > warmup && i % 1000 == 0 {
            peak_after_warm = peak_after_warm.max(rss().0);
        }
        if i > 0 && i % 100_000 == 0 {
            println!(
                "flat memory: {i} jobs, {:.0} s, RSS {:.2} MiB",
                started.elapsed().as_secs_f64(),
                rss().0 as f64 / MIB
            );
        }
        let tx = tx.clone();
        let spec = JobSpec::new("true")
            .args([
                "HKLIN",
                "/home/user/ccp4i2_projects/lysozyme/CCP4_JOBS/job_12/hklin.mtz",
                "HKLOUT",
                "/home/user/ccp4i2_projects/lysozyme/CCP4_JOBS/job_12/hklout.mtz",
                "XYZIN",
                "/home/user/ccp4i2_projects/lysozyme/CCP4_JOBS/job_11/XYZOUT.pdb",
            ])
            .log_file(&log)
            .on_finish(move |r| {
                let _ = tx.send(r.status);
            });
        m.start_process(spec).expect("accepted");
    }
    while finished < jobs {
        wait_one(&mut finished);
    }
    m.wait_all();
    let (end, hwm) = rss();
    peak_after_warm = peak_after_warm.max(end);
    let snap = m.snapshot();
    let known: usize = snap.counts.iter().map(|(_, n)| n).sum();
    println!(
        "flat memory: {jobs} jobs in {:.1} s; RSS at warm-up {:.2} MiB, at end {:.2} MiB, \
         max after warm-up {:.2} MiB (+{:.2} MiB), process peak {:.2} MiB; {known} records kept",
        started.elapsed().as_secs_f64(),
        warm as f64 / MIB,
        end as f64 / MIB,
        peak_after_warm as f64 / MIB,
        (peak_after_warm.saturating_sub(warm)) as f64 / MIB,
        hwm as f64 / MIB,
    );
    // Totals keep counting what eviction removed.
    assert_eq!(snap.total(JobStatus::Finished), jobs);
    assert!(
        known <= procman::Retention::DEFAULT_MAX_RECORDS,
        "{known} records kept"
    );
    assert!(
        peak_after_warm <= warm + 5 * 1024 * 1024,
        "RSS grew from {:.2} MiB at warm-up to {:.2} MiB",
        warm as f64 / MIB,
        peak_after_warm as f64 / MIB
    );
    drop(m);
}
