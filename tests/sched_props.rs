//! Property tests of the scheduler (issue 4) on real processes: random job sets (exit codes,
//! short sleeps, timeouts, crashes, spawn failures, priorities, acyclic dependency graphs,
//! retries, CPU and memory declarations) with kills at random moments. The invariants are
//! checked from the event stream, which the manager emits under its lock in the order things
//! happen, and from the final records.
//!
//! Cases: 20 by default; `PROPTEST_CASES=500 cargo test --test sched_props` for a soak.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::kid;
use procman::{Event, JobId, JobRecord, JobSpec, JobStatus, KillOutcome, ProcessManager, RetryOn};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// proptest's `Config::default()` reads `PROPTEST_CASES`, but setting `cases` overrides it:
/// read it here so that the variable still wins over this file's default.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    ProptestConfig {
        cases,
        // Every case runs processes: keep a failure's shrinking bounded.
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    True,
    Exit(i32),
    SleepMs(u64),
    Timeout,
    Crash,
    NoSpawn,
}

impl Kind {
    /// What every attempt of this job ends as, unless it is killed.
    fn outcome(self) -> JobStatus {
        match self {
            Kind::True | Kind::SleepMs(_) => JobStatus::Finished,
            Kind::Exit(_) => JobStatus::Failed,
            Kind::Timeout => JobStatus::TimedOut,
            Kind::Crash => JobStatus::Crashed,
            Kind::NoSpawn => JobStatus::SpawnFailed,
        }
    }

    fn spec(self) -> JobSpec {
        match self {
            Kind::True => JobSpec::new("true"),
            Kind::Exit(n) => JobSpec::new(kid()).args(["exit".to_string(), n.to_string()]),
            Kind::SleepMs(ms) => {
                JobSpec::new(kid()).args(["sleep".to_string(), format!("{}", ms as f64 / 1e3)])
            }
            Kind::Timeout => JobSpec::new(kid())
                .args(["sleep", "30"])
                .timeout(Duration::from_millis(20)),
            Kind::Crash => JobSpec::new(kid()).arg("segv"),
            Kind::NoSpawn => JobSpec::new("/nonexistent/procman-sched-props"),
        }
    }
}

#[derive(Clone, Debug)]
struct Plan {
    kind: Kind,
    priority: i32,
    /// Indices of earlier jobs: the graph is acyclic by construction.
    after: Vec<usize>,
    /// (count, backoff, outcomes)
    retry: Option<(u32, Duration, RetryOn)>,
    cpus: u32,
    memory: u64,
}

#[derive(Clone, Debug)]
struct Case {
    limit: usize,
    cpu_cap: u32,
    mem_cap: u64,
    jobs: Vec<Plan>,
    /// (after this many events were received, kill this job)
    kills: Vec<(usize, usize)>,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::True),
        2 => (1..4i32).prop_map(Kind::Exit),
        3 => (10..50u64).prop_map(Kind::SleepMs),
        1 => Just(Kind::Timeout),
        1 => Just(Kind::Crash),
        1 => Just(Kind::NoSpawn),
    ]
}

fn retry_on() -> impl Strategy<Value = RetryOn> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(s, n, c, t)| RetryOn {
        spawn_failure: s,
        nonzero_exit: n,
        crash: c,
        timeout: t,
    })
}

fn case() -> impl Strategy<Value = Case> {
    let job = (
        kind(),
        -2..=2i32,
        prop::collection::vec(any::<prop::sample::Index>(), 0..=2),
        prop::option::weighted(
            0.5,
            (
                0..=2u32,
                prop_oneof![Just(0u64), Just(5), Just(20)],
                retry_on(),
            ),
        ),
        0..=4u32,
        0..=4u64,
    );
    (
        1..=4usize,
        1..=4u32,
        1..=4u64,
        prop::collection::vec(job, 5..=15),
        prop::collection::vec((0..80usize, any::<prop::sample::Index>()), 0..=3),
    )
        .prop_map(|(limit, cpu_cap, mem_cap, raw, kills)| {
            let n = raw.len();
            let jobs = raw
                .into_iter()
                .enumerate()
                .map(|(i, (kind, priority, deps, retry, cpus, mem))| {
                    let mut after: Vec<usize> = if i == 0 {
                        vec![]
                    } else {
                        deps.iter().map(|d| d.index(i)).collect()
                    };
                    after.sort();
                    after.dedup();
                    Plan {
                        kind,
                        priority,
                        after,
                        retry: retry.map(|(c, ms, on)| (c, Duration::from_millis(ms), on)),
                        cpus: cpus.min(cpu_cap),
                        memory: mem.min(mem_cap),
                    }
                })
                .collect();
            let kills = kills.into_iter().map(|(at, j)| (at, j.index(n))).collect();
            Case {
                limit,
                cpu_cap,
                mem_cap,
                jobs,
                kills,
            }
        })
}

/// What one run produced.
struct Run {
    ids: Vec<JobId>,
    events: Vec<Event>,
    records: Vec<JobRecord>,
    /// The statuses each job's handler saw (exactly one entry expected).
    handled: Vec<Vec<JobStatus>>,
    kills: HashMap<usize, KillOutcome>,
}

fn run(case: &Case) -> Result<Run, TestCaseError> {
    let m = ProcessManager::builder()
        .limit(case.limit)
        .cpu_capacity(case.cpu_cap)
        .memory_capacity(case.mem_cap)
        .grace(Duration::from_millis(50))
        .build()
        .unwrap();
    let rx = m.subscribe(1_000_000);
    let handled: Arc<Mutex<HashMap<JobId, Vec<JobStatus>>>> = Arc::default();
    // Everything is submitted while paused, so the whole set waits at the same moment.
    m.pause().unwrap();
    let mut ids: Vec<JobId> = Vec::new();
    for p in &case.jobs {
        let mut spec = p
            .kind
            .spec()
            .priority(p.priority)
            .cpus(p.cpus)
            .memory(p.memory);
        for &d in &p.after {
            spec = spec.after(ids[d]);
        }
        if let Some((count, backoff, on)) = p.retry {
            spec = spec.retries(count, backoff, on);
        }
        let h = handled.clone();
        spec = spec.on_finish(move |r| h.lock().unwrap().entry(r.id).or_default().push(r.status));
        ids.push(m.start_process(spec).unwrap());
    }
    m.resume().unwrap();
    let mut events = Vec::new();
    let mut kills = HashMap::new();
    let mut finished = 0;
    while finished < ids.len() {
        for &(_, j) in case.kills.iter().filter(|k| k.0 == events.len()) {
            if let Ok(o) = m.kill_process(ids[j]) {
                kills.entry(j).or_insert(o);
            }
        }
        let e = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| TestCaseError::fail(format!("no event for 60 s: {e}")))?;
        prop_assert!(!matches!(e, Event::Lost(_)), "events were lost");
        if matches!(e, Event::Finished(_)) {
            finished += 1;
        }
        events.push(e);
    }
    m.wait_all();
    let records = ids.iter().map(|&id| m.job_data(id).unwrap()).collect();
    let mut handled = handled.lock().unwrap();
    let handled = ids
        .iter()
        .map(|id| handled.remove(id).unwrap_or_default())
        .collect();
    Ok(Run {
        ids,
        events,
        records,
        handled,
        kills,
    })
}

fn event_job(e: &Event) -> Option<JobId> {
    match e {
        Event::Queued { id } | Event::Started { id, .. } | Event::Retrying { id, .. } => Some(*id),
        Event::Finished(r) => Some(r.id),
        _ => None,
    }
}

fn retryable(on: RetryOn, status: JobStatus) -> bool {
    match status {
        JobStatus::SpawnFailed => on.spawn_failure,
        JobStatus::Failed => on.nonzero_exit,
        JobStatus::Crashed => on.crash,
        JobStatus::TimedOut => on.timeout,
        _ => false,
    }
}

fn check(case: &Case, run: &Run) -> Result<(), TestCaseError> {
    let n = run.ids.len();
    let ix: HashMap<JobId, usize> = run.ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let jx = |e: &Event| event_job(e).map(|id| ix[&id]);

    // ---- Every handler exactly once, with the final record; one Queued and one Finished ----
    for j in 0..n {
        prop_assert_eq!(&run.handled[j], &vec![run.records[j].status], "job {}", j);
        let count = |f: fn(&Event) -> bool| {
            run.events
                .iter()
                .filter(|e| f(e) && jx(e) == Some(j))
                .count()
        };
        prop_assert_eq!(count(|e| matches!(e, Event::Queued { .. })), 1);
        prop_assert_eq!(count(|e| matches!(e, Event::Finished(_))), 1);
    }
    let finished_at: Vec<usize> = (0..n)
        .map(|j| {
            run.events
                .iter()
                .position(|e| matches!(e, Event::Finished(_)) && jx(e) == Some(j))
                .unwrap()
        })
        .collect();
    let first_event = |j: usize, f: &dyn Fn(&Event) -> bool| {
        run.events.iter().position(|e| jx(e) == Some(j) && f(e))
    };

    // ---- At no instant more running jobs than the limit, nor more CPUs or memory ----
    // An attempt runs from its Started to its Retrying or Finished (the slot is released in
    // the same lock hold as that event, and the next admission can only come after it).
    let mut running: Vec<usize> = Vec::new();
    // For the priority check: the jobs visibly holding a slot just before each event, and the
    // latest slot release before it.
    let mut holders_before: Vec<Vec<usize>> = Vec::new();
    let mut last_release_before: Vec<Option<usize>> = Vec::new();
    let mut last_release = None;
    for (i, e) in run.events.iter().enumerate() {
        holders_before.push(running.clone());
        last_release_before.push(last_release);
        match e {
            Event::Started { .. } => {
                let j = jx(e).unwrap();
                prop_assert!(!running.contains(&j), "job {} started twice at once", j);
                running.push(j);
                let cpus: u32 = running.iter().map(|&r| case.jobs[r].cpus).sum();
                let mem: u64 = running.iter().map(|&r| case.jobs[r].memory).sum();
                prop_assert!(
                    running.len() <= case.limit,
                    "{} running at event {}",
                    running.len(),
                    i
                );
                prop_assert!(cpus <= case.cpu_cap, "{} CPUs in use at event {}", cpus, i);
                prop_assert!(mem <= case.mem_cap, "{} bytes in use at event {}", mem, i);
            }
            Event::Retrying { status, .. } => {
                let j = jx(e).unwrap();
                let held = running.contains(&j) || *status == JobStatus::SpawnFailed;
                running.retain(|&r| r != j);
                if held {
                    last_release = Some(i);
                }
            }
            Event::Finished(r) => {
                let j = jx(e).unwrap();
                let held =
                    running.contains(&j) || (r.status == JobStatus::SpawnFailed && r.attempts > 0);
                running.retain(|&x| x != j);
                if held {
                    last_release = Some(i);
                }
            }
            _ => {}
        }
    }

    // ---- Dependencies ----
    let status = |j: usize| run.records[j].status;
    let killed = |j: usize| run.kills.get(&j).copied();
    for (j, p) in case.jobs.iter().enumerate() {
        for (i, e) in run.events.iter().enumerate() {
            if matches!(e, Event::Started { .. }) && jx(e) == Some(j) {
                for &d in &p.after {
                    prop_assert!(
                        finished_at[d] < i && status(d) == JobStatus::Finished,
                        "job {} started before its dependency {} finished successfully",
                        j,
                        d
                    );
                }
            }
        }
        let failed: Vec<usize> = p
            .after
            .iter()
            .copied()
            .filter(|&d| status(d) != JobStatus::Finished)
            .collect();
        let never_started = run.records[j].attempts == 0
            && first_event(j, &|e| matches!(e, Event::Started { .. })).is_none();
        if !failed.is_empty() {
            prop_assert!(
                never_started,
                "job {} ran though dependency {:?} failed",
                j,
                failed
            );
            let cancelled_first =
                status(j) == JobStatus::Cancelled && killed(j) == Some(KillOutcome::Cancelled);
            prop_assert!(
                status(j) == JobStatus::DependencyFailed || cancelled_first,
                "job {} after failed {:?} ended as {}",
                j,
                failed,
                status(j)
            );
        }
        if status(j) == JobStatus::DependencyFailed {
            prop_assert!(never_started);
            prop_assert!(
                failed.iter().any(|&d| finished_at[d] < finished_at[j]),
                "job {} ended dependency-failed before any dependency failed",
                j
            );
        }
    }

    // ---- Priorities: among jobs waiting at the same moment, a higher one never starts after
    // a lower one. A job is waiting (in the ready queue) from its Queued event, or the
    // Finished event of its last dependency, until it is admitted. Admission itself is not an
    // event (Started comes from the worker after the spawn), so the check is the sound one:
    // when L's first attempt starts, every job H ahead of L that was waiting no later than L
    // and has neither started nor ended yet must hold a slot already (admitted before L), so
    // the visible holders + L + those H must fit in the limit and the capacities. With a
    // limit of 1 this is exact: nothing else can hold the slot, so no such H may exist.
    let key = |j: usize| (case.jobs[j].priority, std::cmp::Reverse(j));
    let ready_at: Vec<Option<usize>> = (0..n)
        .map(|j| {
            let q = first_event(j, &|e| matches!(e, Event::Queued { .. }))?;
            case.jobs[j].after.iter().try_fold(q, |r, &d| {
                (status(d) == JobStatus::Finished).then(|| r.max(finished_at[d]))
            })
        })
        .collect();
    for l in 0..n {
        let Some(rl) = ready_at[l] else { continue };
        let start = first_event(l, &|e| match e {
            Event::Started { attempt: 1, .. } => true,
            Event::Retrying {
                attempt: 1,
                status: JobStatus::SpawnFailed,
                ..
            } => true,
            Event::Finished(r) => r.status == JobStatus::SpawnFailed && r.attempts == 1,
            _ => false,
        });
        let Some(s) = start else { continue };
        // Before s: nothing of L's own but its Queued.
        let p = if case.limit == 1 {
            rl.max(last_release_before[s].unwrap_or(0))
        } else {
            rl
        };
        let ahead: Vec<usize> = (0..n)
            .filter(|&h| h != l && key(h) > key(l))
            .filter(|&h| ready_at[h].is_some_and(|rh| rh <= p))
            .filter(|&h| {
                !run.events[..s].iter().any(|e| {
                    jx(e) == Some(h)
                        && matches!(
                            e,
                            Event::Started { .. } | Event::Retrying { .. } | Event::Finished(_)
                        )
                })
            })
            .collect();
        let held: Vec<usize> = holders_before[s]
            .iter()
            .copied()
            .chain([l])
            .chain(ahead.iter().copied())
            .collect();
        let cpus: u32 = held.iter().map(|&j| case.jobs[j].cpus).sum();
        let mem: u64 = held.iter().map(|&j| case.jobs[j].memory).sum();
        prop_assert!(
            held.len() <= case.limit && cpus <= case.cpu_cap && mem <= case.mem_cap,
            "job {} started (event {}) while {:?}, ahead of it, waited",
            l,
            s,
            ahead
        );
    }

    // ---- Attempts and final statuses ----
    for (j, p) in case.jobs.iter().enumerate() {
        let r = &run.records[j];
        let (count, on) = p
            .retry
            .map_or((0, RetryOn::default()), |(c, _, on)| (c, on));
        let expected = p.kind.outcome();
        let retries: Vec<(u32, JobStatus)> = run
            .events
            .iter()
            .filter(|e| jx(e) == Some(j))
            .filter_map(|e| match e {
                Event::Retrying {
                    attempt, status, ..
                } => Some((*attempt, *status)),
                _ => None,
            })
            .collect();
        let starts: Vec<u32> = run
            .events
            .iter()
            .filter(|e| jx(e) == Some(j))
            .filter_map(|e| match e {
                Event::Started { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect();
        let k = retries.len() as u32;
        prop_assert!(
            r.attempts <= 1 + count,
            "job {}: {} attempts",
            j,
            r.attempts
        );
        prop_assert!(k <= count);
        for (n, &(attempt, st)) in retries.iter().enumerate() {
            prop_assert_eq!(attempt, n as u32 + 1);
            prop_assert_eq!(st, expected, "job {} attempt {}", j, attempt);
            prop_assert!(retryable(on, st));
        }
        prop_assert!(starts.windows(2).all(|w| w[0] < w[1]));
        let spawned_all = p.kind.outcome() != JobStatus::SpawnFailed;
        prop_assert_eq!(
            starts.len() as u32,
            if spawned_all { r.attempts } else { 0 },
            "job {}",
            j
        );
        match killed(j) {
            Some(KillOutcome::Cancelled) => prop_assert_eq!(r.status, JobStatus::Cancelled),
            Some(KillOutcome::Killing) => prop_assert!(
                matches!(
                    r.status,
                    JobStatus::Killed | JobStatus::Cancelled | JobStatus::SpawnFailed
                ),
                "job {} killed while running ended as {}",
                j,
                r.status
            ),
            _ => prop_assert!(
                r.status == expected || r.status == JobStatus::DependencyFailed,
                "job {}: {} (expected {})",
                j,
                r.status,
                expected
            ),
        }
        match r.status {
            JobStatus::DependencyFailed => prop_assert_eq!(r.attempts, 0),
            // Cancelled before an attempt was spawned, or while waiting for a retry.
            JobStatus::Cancelled => prop_assert_eq!(r.attempts, k, "job {}", j),
            // The last attempt decided the status.
            st => {
                prop_assert_eq!(r.attempts, k + 1, "job {}", j);
                if st == expected && killed(j).is_none() && retryable(on, st) {
                    prop_assert_eq!(k, count, "job {} stopped retrying early", j);
                }
                if let Kind::Exit(code) = p.kind {
                    if st == JobStatus::Failed {
                        prop_assert_eq!(r.exit_code, Some(code));
                    }
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_scheduler_keeps_its_invariants_on_random_job_sets(case in case()) {
        let run = run(&case)?;
        check(&case, &run)?;
    }
}
