//! Scheduling (issue 4): priorities, dependencies, retries, resource-aware admission and queue
//! control, each on real processes. The order of events is the manager's own (they are emitted
//! under its lock), so the tests read it instead of sleeping; where a test must know that a
//! queued job was *not* admitted, it asks `kill_process`, which answers `Cancelled` only for a
//! job that no worker has been given.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{kid, TempDir};
use procman::{
    Event, JobId, JobSpec, JobStatus, KillOutcome, ProcessManager, RetryOn, ShutdownMode,
    StartError,
};

const LONG: Duration = Duration::from_secs(30);

fn builder(limit: usize) -> procman::Builder {
    ProcessManager::builder()
        .limit(limit)
        .grace(Duration::from_millis(200))
}

fn manager(limit: usize) -> ProcessManager {
    builder(limit).build().unwrap()
}

fn sleeper() -> JobSpec {
    JobSpec::new(kid()).args(["sleep", "30"])
}

/// Every event received so far, and a way to wait for the next one of a kind.
struct Watch {
    rx: crossbeam_channel::Receiver<Event>,
    seen: Vec<Event>,
}

impl Watch {
    fn new(m: &ProcessManager) -> Watch {
        Watch {
            rx: m.subscribe(100_000),
            seen: Vec::new(),
        }
    }

    /// Receives until `pred` holds for an event; returns it.
    fn until(&mut self, mut pred: impl FnMut(&Event) -> bool) -> Event {
        loop {
            let e = self.rx.recv_timeout(LONG).expect("an event within 30 s");
            assert!(!matches!(e, Event::Lost(_)), "events were lost");
            self.seen.push(e.clone());
            if pred(&e) {
                return e;
            }
        }
    }

    /// The first event seen so far for which `pred` holds, else the next one received.
    fn find(&mut self, pred: impl Fn(&Event) -> bool) -> Event {
        match self.seen.iter().find(|e| pred(e)) {
            Some(e) => e.clone(),
            None => self.until(pred),
        }
    }

    /// Waits for the job's first Started event (events of other jobs may come in any order).
    fn started(&mut self, id: JobId) {
        self.find(|e| matches!(e, Event::Started { id: i, .. } if *i == id));
    }

    fn finished(&mut self, id: JobId) -> procman::JobRecord {
        match self.find(|e| is_finished(e, id)) {
            Event::Finished(r) => *r,
            _ => unreachable!(),
        }
    }

    /// Receives until every job in `ids` has a Finished event.
    fn all_finished(&mut self, ids: &[JobId]) {
        for &id in ids {
            self.finished(id);
        }
    }

    /// Ids of the Started events so far, with their attempt, in order.
    fn starts(&self) -> Vec<(JobId, u32)> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                Event::Started { id, attempt, .. } => Some((*id, *attempt)),
                _ => None,
            })
            .collect()
    }

    fn index(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.seen.iter().position(pred).expect("the event was seen")
    }
}

fn is_finished(e: &Event, id: JobId) -> bool {
    matches!(e, Event::Finished(r) if r.id == id)
}

fn is_started(e: &Event, id: JobId, attempt: u32) -> bool {
    matches!(e, Event::Started { id: i, attempt: a, .. } if *i == id && *a == attempt)
}

/// A handler that counts its calls.
fn counted(spec: JobSpec, calls: &Arc<AtomicUsize>) -> JobSpec {
    let c = calls.clone();
    spec.on_finish(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    })
}

// ---- Priorities ----

#[test]
fn higher_priorities_start_first_and_equal_ones_in_submission_order() {
    let m = manager(1);
    let mut w = Watch::new(&m);
    m.pause().unwrap();
    let prios = [0, 5, 0, 5, -1, 5, 2, -1];
    let ids: Vec<JobId> = prios
        .iter()
        .map(|&p| m.start_process(JobSpec::new("true").priority(p)).unwrap())
        .collect();
    m.resume().unwrap();
    w.all_finished(&ids);
    let mut want: Vec<(i32, usize)> = prios.iter().copied().zip(0..).collect();
    want.sort_by_key(|&(p, n)| (std::cmp::Reverse(p), n));
    let want: Vec<(JobId, u32)> = want.into_iter().map(|(_, n)| (ids[n], 1)).collect();
    assert_eq!(w.starts(), want);
}

#[test]
fn dependants_released_by_one_completion_start_by_priority() {
    // One completion readies several jobs at once: they are all waiting at the same moment,
    // so the highest priority must start first, whatever order they were released in.
    let m = manager(1);
    let mut w = Watch::new(&m);
    m.pause().unwrap();
    let d = m.start_process(JobSpec::new("true")).unwrap();
    let low = m.start_process(JobSpec::new("true").after(d)).unwrap();
    let high = m
        .start_process(JobSpec::new("true").after(d).priority(5))
        .unwrap();
    let mid = m
        .start_process(JobSpec::new("true").after(d).priority(1))
        .unwrap();
    let low2 = m.start_process(JobSpec::new("true").after(d)).unwrap();
    m.resume().unwrap();
    w.all_finished(&[d, low, high, mid, low2]);
    let order: Vec<JobId> = w.starts().into_iter().map(|s| s.0).collect();
    assert_eq!(order, vec![d, high, mid, low, low2]);
}

// ---- Dependencies ----

#[test]
fn a_job_starts_only_after_all_its_dependencies_finished_successfully() {
    let m = manager(4);
    let mut w = Watch::new(&m);
    let a = m
        .start_process(JobSpec::new(kid()).args(["sleep", "0.05"]))
        .unwrap();
    let b = m
        .start_process(JobSpec::new(kid()).args(["sleep", "0.02"]))
        .unwrap();
    let c = m
        .start_process(JobSpec::new("true").after(a).after(b))
        .unwrap();
    let d = m.start_process(JobSpec::new("true").after(c)).unwrap();
    w.all_finished(&[a, b, c, d]);
    let c_start = w.index(|e| is_started(e, c, 1));
    assert!(w.index(|e| is_finished(e, a)) < c_start);
    assert!(w.index(|e| is_finished(e, b)) < c_start);
    assert!(w.index(|e| is_finished(e, c)) < w.index(|e| is_started(e, d, 1)));
    for id in [a, b, c, d] {
        assert_eq!(m.wait(id).unwrap().status, JobStatus::Finished);
    }
    assert_eq!(m.job_data(c).unwrap().after, vec![a, b]);
}

#[test]
fn a_failure_cascades_down_the_graph_and_each_dependant_handler_runs_once() {
    let m = manager(2);
    let mut w = Watch::new(&m);
    let calls = Arc::new(AtomicUsize::new(0));
    let a = m
        .start_process(counted(JobSpec::new("false"), &calls))
        .unwrap();
    let ok = m
        .start_process(counted(JobSpec::new("true"), &calls))
        .unwrap();
    let b = m
        .start_process(counted(JobSpec::new("true").after(a), &calls))
        .unwrap();
    let c = m
        .start_process(counted(JobSpec::new("true").after(b).after(ok), &calls))
        .unwrap();
    let d = m
        .start_process(counted(JobSpec::new("true").after(ok).after(c), &calls))
        .unwrap();
    let free = m
        .start_process(counted(JobSpec::new("true").after(ok), &calls))
        .unwrap();
    let ids = [a, ok, b, c, d, free];
    w.all_finished(&ids);
    m.wait_all();
    assert_eq!(calls.load(Ordering::SeqCst), ids.len());
    assert_eq!(m.job_data(a).unwrap().status, JobStatus::Failed);
    assert_eq!(m.job_data(free).unwrap().status, JobStatus::Finished);
    for (id, parent) in [(b, a), (c, b), (d, c)] {
        let r = m.job_data(id).unwrap();
        assert_eq!(r.status, JobStatus::DependencyFailed, "job {id}");
        assert_eq!(r.attempts, 0);
        assert!(r.started_at.is_none() && r.pid.is_none());
        let why = r.error.unwrap();
        assert!(why.contains(&parent.to_string()), "{why}");
        assert!(!w.starts().iter().any(|s| s.0 == id));
    }
    assert_eq!(
        m.job_data(b).unwrap().describe_end(),
        format!("never started: job {a}, which it runs after, ended as failed")
    );
}

#[test]
fn cancelling_a_job_others_wait_on_fails_a_chain_of_three() {
    let m = manager(1);
    let calls = Arc::new(AtomicUsize::new(0));
    m.pause().unwrap();
    let a = m
        .start_process(counted(JobSpec::new("true"), &calls))
        .unwrap();
    let b = m
        .start_process(counted(JobSpec::new("true").after(a), &calls))
        .unwrap();
    let c = m
        .start_process(counted(JobSpec::new("true").after(b), &calls))
        .unwrap();
    let d = m
        .start_process(counted(JobSpec::new("true").after(c), &calls))
        .unwrap();
    assert_eq!(m.kill_process(a), Ok(KillOutcome::Cancelled));
    // The cascade is immediate: every record is final before the queue even resumes.
    assert_eq!(m.job_data(a).unwrap().status, JobStatus::Cancelled);
    for id in [b, c, d] {
        assert_eq!(m.job_data(id).unwrap().status, JobStatus::DependencyFailed);
    }
    m.resume().unwrap();
    m.wait_all();
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[test]
fn killing_a_running_job_others_wait_on_cascades() {
    let m = manager(2);
    let mut w = Watch::new(&m);
    let a = m.start_process(sleeper()).unwrap();
    let b = m.start_process(JobSpec::new("true").after(a)).unwrap();
    let c = m.start_process(JobSpec::new("true").after(b)).unwrap();
    w.started(a);
    assert_eq!(m.kill_process(a), Ok(KillOutcome::Killing));
    w.all_finished(&[a, b, c]);
    assert_eq!(m.wait(a).unwrap().status, JobStatus::Killed);
    assert_eq!(m.wait(b).unwrap().status, JobStatus::DependencyFailed);
    assert_eq!(m.wait(c).unwrap().status, JobStatus::DependencyFailed);
    assert_eq!(w.starts(), vec![(a, 1)]);
}

#[test]
fn a_dependency_on_a_job_that_already_failed_fails_at_once() {
    let m = manager(2);
    let failed = m.run(JobSpec::new("false")).unwrap().id;
    let done = m.run(JobSpec::new("true")).unwrap().id;
    let calls = Arc::new(AtomicUsize::new(0));
    let id = m
        .start_process(counted(
            JobSpec::new("true").after(done).after(failed),
            &calls,
        ))
        .unwrap();
    // Final on return from start_process: nothing was queued.
    let r = m.job_data(id).unwrap();
    assert_eq!(r.status, JobStatus::DependencyFailed);
    assert!(r.error.unwrap().contains(&failed.to_string()));
    m.wait_all();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A dependency that already finished successfully is satisfied at once.
    let r = m.run(JobSpec::new("true").after(done)).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
}

#[test]
fn unknown_or_deleted_dependencies_are_rejected_and_nothing_is_queued() {
    let m = manager(1);
    let calls = Arc::new(AtomicUsize::new(0));
    let known = m.run(JobSpec::new("true")).unwrap().id;
    let gone = m.run(JobSpec::new("true")).unwrap().id;
    m.delete_job(gone).unwrap();
    for bad in [JobId(999_999), gone] {
        let err = m
            .start_process(counted(
                JobSpec::new("true").after(known).after(bad),
                &calls,
            ))
            .unwrap_err();
        assert_eq!(err, StartError::UnknownDependency(bad));
        assert!(err.to_string().contains(&bad.to_string()));
    }
    m.wait_all();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(m.pending_processes().is_empty());
}

// ---- Retries ----

/// Counts its runs in file `$1`, prints the run number on stdout and stderr, and succeeds from
/// run `$2` on.
const FLAKY: &str = r#"n=$(cat "$1" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$1"
echo "out $n"; echo "err $n" >&2; [ "$n" -ge "$2" ]"#;

fn flaky(dir: &TempDir, succeed_at: u32) -> JobSpec {
    JobSpec::new("sh")
        .args(["-c", FLAKY, "sh"])
        .arg(dir.join("count"))
        .arg(succeed_at.to_string())
        .log_file(dir.join("log.txt"))
}

fn read(p: std::path::PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn retries_without_backoff_keep_each_attempts_output_and_call_the_handler_once() {
    let m = manager(1);
    let mut w = Watch::new(&m);
    let dir = TempDir::new("retry0");
    let calls = Arc::new(AtomicUsize::new(0));
    let id = m
        .start_process(counted(
            flaky(&dir, 99).retries(2, Duration::ZERO, RetryOn::default()),
            &calls,
        ))
        .unwrap();
    let r = w.finished(id);
    assert_eq!(r.status, JobStatus::Failed);
    assert_eq!(r.exit_code, Some(1));
    assert_eq!(r.attempts, 3);
    m.wait_all();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The last attempt's output under the job's own names, the earlier ones rotated.
    assert_eq!(read(dir.join("log.txt")), "out 3\n");
    assert_eq!(read(dir.join("log_err.txt")), "err 3\n");
    for n in 1..=2 {
        assert_eq!(
            read(dir.join(&format!("log.txt.attempt{n}"))),
            format!("out {n}\n")
        );
        assert_eq!(
            read(dir.join(&format!("log_err.txt.attempt{n}"))),
            format!("err {n}\n")
        );
    }
    assert!(!dir.join("log.txt.attempt3").exists());
    assert_eq!(w.starts(), vec![(id, 1), (id, 2), (id, 3)]);
    let retrying: Vec<(u32, JobStatus)> = w
        .seen
        .iter()
        .filter_map(|e| match e {
            Event::Retrying {
                attempt, status, ..
            } => Some((*attempt, *status)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retrying,
        vec![(1, JobStatus::Failed), (2, JobStatus::Failed)]
    );
}

#[test]
fn a_backoff_holds_no_slot_and_a_later_attempt_can_succeed() {
    let m = manager(1);
    let mut w = Watch::new(&m);
    let dir = TempDir::new("retry-backoff");
    let backoff = Duration::from_millis(100);
    m.pause().unwrap();
    let begun = Instant::now();
    let id = m
        .start_process(flaky(&dir, 3).retries(5, backoff, RetryOn::default()))
        .unwrap();
    let other = m.start_process(JobSpec::new("true")).unwrap();
    m.resume().unwrap();
    w.all_finished(&[id, other]);
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert_eq!(r.attempts, 3);
    assert!(begun.elapsed() >= 2 * backoff);
    assert_eq!(read(dir.join("log.txt")), "out 3\n");
    assert_eq!(read(dir.join("log.txt.attempt1")), "out 1\n");
    assert_eq!(read(dir.join("log.txt.attempt2")), "out 2\n");
    // With a limit of 1, the other job ran in the slot the first attempt gave back.
    assert_eq!(w.starts(), vec![(id, 1), (other, 1), (id, 2), (id, 3)]);
}

#[test]
fn only_the_chosen_outcomes_are_retried() {
    let m = manager(4);
    let none = RetryOn {
        spawn_failure: false,
        nonzero_exit: false,
        crash: false,
        timeout: false,
    };
    let z = Duration::ZERO;
    let cases = [
        // (spec, retried on, expected status, expected attempts)
        (
            JobSpec::new("false").retries(
                2,
                z,
                RetryOn {
                    crash: true,
                    ..RetryOn::default()
                },
            ),
            JobStatus::Failed,
            3,
        ),
        (
            JobSpec::new("false").retries(
                2,
                z,
                RetryOn {
                    nonzero_exit: false,
                    ..RetryOn::default()
                },
            ),
            JobStatus::Failed,
            1,
        ),
        (
            JobSpec::new(kid()).arg("segv").retries(
                1,
                z,
                RetryOn {
                    crash: true,
                    ..none
                },
            ),
            JobStatus::Crashed,
            2,
        ),
        (
            JobSpec::new(kid())
                .args(["sleep", "30"])
                .timeout(Duration::from_millis(50))
                .retries(
                    1,
                    z,
                    RetryOn {
                        timeout: true,
                        ..none
                    },
                ),
            JobStatus::TimedOut,
            2,
        ),
        (
            JobSpec::new("/nonexistent/procman-sched").retries(
                2,
                z,
                RetryOn {
                    spawn_failure: true,
                    ..none
                },
            ),
            JobStatus::SpawnFailed,
            3,
        ),
        (
            JobSpec::new("/nonexistent/procman-sched").retries(2, z, none),
            JobStatus::SpawnFailed,
            1,
        ),
        (
            JobSpec::new("true").retries(3, z, RetryOn::default()),
            JobStatus::Finished,
            1,
        ),
    ];
    let ids: Vec<(JobId, JobStatus, u32)> = cases
        .into_iter()
        .map(|(spec, st, n)| (m.start_process(spec).unwrap(), st, n))
        .collect();
    for (id, status, attempts) in ids {
        let r = m.wait(id).unwrap();
        assert_eq!(
            (r.status, r.attempts),
            (status, attempts),
            "job {id}: {r:?}"
        );
    }
}

#[test]
fn a_kill_by_the_user_is_never_retried() {
    let m = manager(2);
    let mut w = Watch::new(&m);
    let calls = Arc::new(AtomicUsize::new(0));
    let running = m
        .start_process(counted(
            sleeper().retries(5, Duration::ZERO, RetryOn::default()),
            &calls,
        ))
        .unwrap();
    w.started(running);
    assert_eq!(m.kill_process(running), Ok(KillOutcome::Killing));
    let r = w.finished(running);
    assert_eq!((r.status, r.attempts), (JobStatus::Killed, 1));

    // Killed while waiting for its backoff: cancelled at once, not after the hour.
    let waiting = m
        .start_process(counted(
            JobSpec::new("false").retries(3, Duration::from_secs(3600), RetryOn::default()),
            &calls,
        ))
        .unwrap();
    w.find(|e| matches!(e, Event::Retrying { id, .. } if *id == waiting));
    assert_eq!(m.kill_process(waiting), Ok(KillOutcome::Cancelled));
    let r = w.finished(waiting);
    assert_eq!(r.status, JobStatus::Cancelled);
    assert_eq!(r.attempts, 1);
    assert_eq!(
        r.exit_code,
        Some(1),
        "the record keeps the last attempt's outcome"
    );
    m.wait_all();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(!w
        .seen
        .iter()
        .any(|e| matches!(e, Event::Retrying { id, .. } if *id == running)));
}

// ---- Resource-aware admission ----

#[test]
fn a_job_that_can_never_fit_is_rejected_with_a_clear_error() {
    let m = builder(2)
        .cpu_capacity(4)
        .memory_capacity(1000)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let err = m
        .start_process(counted(JobSpec::new("true").cpus(5), &calls))
        .unwrap_err();
    assert!(matches!(err, StartError::NeverFits { .. }));
    assert_eq!(
        err.to_string(),
        "the job can never start: it declares 5 CPUs and 0 bytes of memory, \
         but the manager has 4 CPUs and 1000 bytes of memory"
    );
    let err = m
        .start_process(counted(JobSpec::new("true").memory(1001), &calls))
        .unwrap_err();
    assert!(matches!(err, StartError::NeverFits { .. }));
    // Exactly the capacity fits.
    let r = m.run(JobSpec::new("true").cpus(4).memory(1000)).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    m.wait_all();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A meeting's name and its number of members.
type Meeting = Option<(&'static str, usize)>;

#[test]
fn declared_cpus_and_memory_bound_what_runs_at_once() {
    let m = builder(10)
        .cpu_capacity(4)
        .memory_capacity(100)
        .build()
        .unwrap();
    let mut w = Watch::new(&m);
    let dir = TempDir::new("fit");
    // In submission order (cpus, memory, meeting): the jobs of a meeting fit together exactly
    // (4 CPUs, 100 bytes). Each one ends only when its meeting's directory holds a marker from
    // every member and the test's `go`, written once all members have started (it fails after
    // 20 s): they succeed only if they are admitted together. The others are short jobs queued
    // behind a full meeting, each held back by one resource only (the first by memory, the
    // next by CPUs), so both capacities are reached and tested.
    let specs: Vec<(u32, u64, Meeting)> = vec![
        (2, 40, Some(("a", 3))),
        (1, 30, Some(("a", 3))),
        (1, 30, Some(("a", 3))),
        (0, 50, None),
        (1, 0, None),
        (3, 10, None),
        (3, 50, Some(("b", 2))),
        (1, 50, Some(("b", 2))),
        (2, 30, None),
        (4, 0, None),
    ];
    let ids: Vec<JobId> = specs
        .iter()
        .enumerate()
        .map(|(i, &(c, mem, meeting))| {
            let spec = match meeting {
                Some((name, n)) => {
                    let place = dir.join(name);
                    std::fs::create_dir_all(&place).unwrap();
                    JobSpec::new(kid()).arg("meet").arg(&place).args([
                        i.to_string(),
                        (n + 1).to_string(),
                        "20".into(),
                    ])
                }
                None => JobSpec::new(kid()).args(["sleep", "0.02"]),
            };
            m.start_process(spec.cpus(c).memory(mem)).unwrap()
        })
        .collect();
    for meeting in ["a", "b"] {
        for (&id, spec) in ids.iter().zip(&specs) {
            if spec.2.is_some_and(|(name, _)| name == meeting) {
                w.started(id);
            }
        }
        std::fs::write(dir.join(meeting).join("go"), b"").unwrap();
    }
    w.all_finished(&ids);
    for (&id, spec) in ids.iter().zip(&specs) {
        let r = m.job_data(id).unwrap();
        assert_eq!(r.status, JobStatus::Finished, "{spec:?}: {:?}", r.exit_code);
    }
    // Replay the events (emitted in the manager's order): what ran at each instant.
    let need = |id: JobId| specs[ids.iter().position(|&i| i == id).unwrap()];
    let (mut cpus, mut mem, mut jobs) = (0, 0, 0);
    let (mut max_cpus, mut max_mem, mut max_jobs) = (0, 0, 0);
    for e in &w.seen {
        match e {
            Event::Started { id, .. } => {
                cpus += need(*id).0;
                mem += need(*id).1;
                jobs += 1;
                max_cpus = max_cpus.max(cpus);
                max_mem = max_mem.max(mem);
                max_jobs = max_jobs.max(jobs);
            }
            Event::Finished(r) => {
                cpus -= need(r.id).0;
                mem -= need(r.id).1;
                jobs -= 1;
            }
            _ => {}
        }
    }
    // Never above a capacity, and each reached (the meetings fill them).
    assert_eq!(
        (max_cpus, max_mem),
        (4, 100),
        "CPUs and bytes at most at once"
    );
    // Meeting "a" ran its three jobs at once, and no four of these jobs fit together.
    assert_eq!(max_jobs, 3);
}

#[test]
fn a_job_that_declares_nothing_is_not_held_back_by_resources() {
    let m = builder(2).cpu_capacity(1).build().unwrap();
    let mut w = Watch::new(&m);
    let big = m.start_process(sleeper().cpus(1)).unwrap();
    w.started(big);
    let small = m.start_process(JobSpec::new("true")).unwrap();
    assert_eq!(w.finished(small).status, JobStatus::Finished);
    m.kill_process(big).unwrap();
}

#[test]
fn huge_declarations_do_not_overflow_the_accounting() {
    let m = builder(2).memory_capacity(u64::MAX).build().unwrap();
    let mut w = Watch::new(&m);
    let half = 1u64 << 63;
    let a = m.start_process(sleeper().memory(half)).unwrap();
    w.started(a);
    let b = m.start_process(JobSpec::new("true").memory(half)).unwrap();
    // 2^63 + 2^63 does not fit in u64::MAX: b waits for a.
    assert_eq!(m.kill_process(b), Ok(KillOutcome::Cancelled));
    let c = m
        .start_process(JobSpec::new("true").memory(half - 1))
        .unwrap();
    assert_eq!(w.finished(c).status, JobStatus::Finished);
    m.kill_process(a).unwrap();
}

/// The anti-starvation policy: strict order, no backfill. A large job at the head of the queue
/// waits only for running jobs to end; small jobs queued after it never overtake it, even when
/// they would fit in what is free.
#[test]
fn a_large_job_is_not_starved_by_a_stream_of_small_ones() {
    let m = builder(8).memory_capacity(100).build().unwrap();
    let mut w = Watch::new(&m);
    m.pause().unwrap();
    let running = m.start_process(sleeper().memory(40)).unwrap();
    let large = m.start_process(JobSpec::new("true").memory(100)).unwrap();
    let mut small: Vec<JobId> = (0..3)
        .map(|_| m.start_process(JobSpec::new("true").memory(10)).unwrap())
        .collect();
    m.resume().unwrap();
    w.started(running);
    // 60 is free and the small jobs need 10 each, yet none was admitted past the large job:
    // they are still cancellable (no worker has them). More small jobs keep arriving.
    small.extend((0..3).map(|_| m.start_process(JobSpec::new("true").memory(10)).unwrap()));
    let probe = small.pop().unwrap();
    assert_eq!(m.kill_process(probe), Ok(KillOutcome::Cancelled));
    assert_eq!(m.kill_process(running), Ok(KillOutcome::Killing));
    w.all_finished(&small);
    w.all_finished(&[large]);
    let first_small = small
        .iter()
        .map(|&s| w.index(|e| is_started(e, s, 1)))
        .min()
        .unwrap();
    assert!(w.index(|e| is_finished(e, running)) < w.index(|e| is_started(e, large, 1)));
    assert!(w.index(|e| is_started(e, large, 1)) < first_small);
    // The large job used the whole capacity: the small ones started after it ended.
    assert!(w.index(|e| is_finished(e, large)) < first_small);
}

#[test]
fn a_priority_stream_is_the_documented_exception() {
    // Higher-priority jobs go first by definition: a large low-priority job waits while
    // higher-priority jobs keep arriving. Equal or lower priorities never overtake it.
    let m = builder(8).memory_capacity(100).build().unwrap();
    let mut w = Watch::new(&m);
    m.pause().unwrap();
    let large = m.start_process(JobSpec::new("true").memory(100)).unwrap();
    let urgent = m
        .start_process(JobSpec::new("true").memory(10).priority(1))
        .unwrap();
    let same = m.start_process(JobSpec::new("true").memory(10)).unwrap();
    m.resume().unwrap();
    w.all_finished(&[large, urgent, same]);
    assert_eq!(w.starts(), vec![(urgent, 1), (large, 1), (same, 1)]);
}

#[test]
fn lowering_capacities_below_a_queued_jobs_needs_ends_it_and_its_dependants() {
    let m = builder(4).cpu_capacity(4).build().unwrap();
    let mut w = Watch::new(&m);
    let calls = Arc::new(AtomicUsize::new(0));
    let running = m.start_process(counted(sleeper().cpus(2), &calls)).unwrap();
    w.started(running);
    let big = m
        .start_process(counted(JobSpec::new("true").cpus(4), &calls))
        .unwrap();
    let after_big = m
        .start_process(counted(JobSpec::new("true").after(big), &calls))
        .unwrap();
    let small = m
        .start_process(counted(JobSpec::new("true").cpus(1), &calls))
        .unwrap();
    // Left queued, `big` would block the head of the queue for ever: it ends instead.
    m.set_capacities(2, u64::MAX).unwrap();
    let r = m.job_data(big).unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed);
    assert!(r.error.unwrap().contains("capacity was lowered"));
    assert_eq!(
        m.job_data(after_big).unwrap().status,
        JobStatus::DependencyFailed
    );
    // The running job is not touched; `small` (1 CPU) waits for it (2 of 2 in use).
    assert_eq!(m.kill_process(small), Ok(KillOutcome::Cancelled));
    assert_eq!(m.job_data(running).unwrap().status, JobStatus::Running);
    // Raising the capacities starts what now fits.
    let next = m
        .start_process(counted(JobSpec::new("true").cpus(2), &calls))
        .unwrap();
    m.set_capacities(4, u64::MAX).unwrap();
    assert_eq!(w.finished(next).status, JobStatus::Finished);
    m.kill_process(running).unwrap();
    m.wait_all();
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert!(m.set_capacities(0, 1).is_err());
}

// ---- Queue control ----

#[test]
fn pause_stops_new_starts_and_resume_restarts_them() {
    let m = manager(1);
    let mut w = Watch::new(&m);
    let running = m
        .start_process(JobSpec::new(kid()).args(["sleep", "0.05"]))
        .unwrap();
    w.started(running);
    m.pause().unwrap();
    assert!(m.snapshot().paused);
    let queued: Vec<JobId> = (0..3)
        .map(|_| m.start_process(JobSpec::new("true")).unwrap())
        .collect();
    // The running job goes on to its end; nothing starts meanwhile.
    assert_eq!(w.finished(running).status, JobStatus::Finished);
    assert_eq!(m.kill_process(queued[0]), Ok(KillOutcome::Cancelled));
    assert_eq!(m.pending_processes(), queued[1..].to_vec());
    m.resume().unwrap();
    assert!(!m.snapshot().paused);
    w.all_finished(&queued);
    assert_eq!(
        w.starts(),
        vec![(running, 1), (queued[1], 1), (queued[2], 1)]
    );
}

#[test]
fn raising_the_limit_at_run_time_starts_waiting_jobs_at_once() {
    let m = manager(1);
    let mut w = Watch::new(&m);
    let ids: Vec<JobId> = (0..4)
        .map(|_| m.start_process(sleeper()).unwrap())
        .collect();
    w.started(ids[0]);
    m.set_limit(3).unwrap();
    assert_eq!(m.limit(), 3);
    w.started(ids[1]);
    w.started(ids[2]);
    assert_eq!(m.kill_process(ids[3]), Ok(KillOutcome::Cancelled));
    for &id in &ids[..3] {
        m.kill_process(id).unwrap();
    }
    m.wait_all();
}

#[test]
fn lowering_the_limit_at_run_time_lets_running_jobs_finish_and_starts_none_until_below() {
    let m = manager(3);
    let mut w = Watch::new(&m);
    let ids: Vec<JobId> = (0..6)
        .map(|_| m.start_process(sleeper()).unwrap())
        .collect();
    for &id in &ids[..3] {
        w.started(id);
    }
    m.set_limit(1).unwrap();
    assert!(m.set_limit(0).is_err());
    assert_eq!(m.limit(), 1);
    // Two of three running jobs end: one still runs, so nothing is admitted.
    for &id in &ids[..2] {
        assert_eq!(m.kill_process(id), Ok(KillOutcome::Killing));
        w.finished(id);
    }
    assert_eq!(m.kill_process(ids[3]), Ok(KillOutcome::Cancelled));
    assert_eq!(m.job_data(ids[2]).unwrap().status, JobStatus::Running);
    // The last one ends: exactly one job takes its place.
    m.kill_process(ids[2]).unwrap();
    w.finished(ids[2]);
    w.started(ids[4]);
    assert_eq!(m.kill_process(ids[5]), Ok(KillOutcome::Cancelled));
    m.kill_process(ids[4]).unwrap();
    m.wait_all();
}

#[test]
fn a_draining_shutdown_runs_a_paused_queue() {
    let m = manager(2);
    m.pause().unwrap();
    let ids: Vec<JobId> = (0..3)
        .map(|_| m.start_process(JobSpec::new("true")).unwrap())
        .collect();
    let h = m.handle();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        h.shutdown(ShutdownMode::Drain, None);
        let _ = tx.send(());
    });
    rx.recv_timeout(LONG)
        .expect("a draining shutdown must not wait for ever on a paused queue");
    t.join().unwrap();
    for id in ids {
        assert_eq!(m.job_data(id).unwrap().status, JobStatus::Finished);
    }
}
