//! Property test of the manager's lifecycle (issue 19, section 3): random sequences of every
//! public call — start (short jobs, long ones, observed ones whose observer tries to wait on its
//! own job), kill, delete, wait and wait_timeout (zero, small and large timeouts), set_limit,
//! set_capacities, pause, resume, shutdown in both modes with and without a timeout, and the
//! owner's drop, after which the calls go on through a handle — on real processes. A watchdog
//! aborts the test binary if a case does not end within a generous bound. Each case checks:
//! - every call answers as the model says (unknown ids and a closed manager are errors, never
//!   a hang); every wait that returns a record gives a final one;
//! - every accepted job gets exactly one handler call, with a final record;
//! - afterwards no job process is left (found by the unique marker in its arguments), no child
//!   or zombie of the test process, and no `procman-*` thread, and the thread count is back
//!   where it was.
//!
//! The model only makes a blocking call (`wait`, a large `wait_timeout`, a `Drain` shutdown
//! without timeout) when it is bound to return; otherwise the timeout is made small. Being
//! bound to return is the point of the test: a call the model thinks safe that hangs is found
//! by the watchdog.
//!
//! Cases: 400 by default (about 20-60 s); `PROPTEST_CASES=2000 cargo test --test lifecycle_props`
//! for more. This file has one test, so the thread and child counts are this test's own.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::{children, eventually, live_with_argv, thread_count, TempDir};
use procman::{
    BuildError, Handle, JobId, JobSpec, JobStatus, KillOutcome, ObserveMode, ProcessManager,
    ShutDown, ShutdownMode, StartError, UnknownJob, WaitError, WaitTimeoutError,
};
use proptest::prelude::*;

/// proptest's `Config::default()` reads `PROPTEST_CASES`, but setting `cases` overrides it:
/// read it here so that the variable still wins over this file's default.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    ProptestConfig {
        cases,
        max_shrink_iters: 100,
        ..ProptestConfig::default()
    }
}

/// A case that has not ended after this long is a hang.
const WATCHDOG: Duration = Duration::from_secs(120);

/// The "large" timeout: the largest there is (a deadline too far for the clock means none; see
/// DESIGN.md, "The deadline rule"). A wait with it is only made when the job is bound to end.
const LARGE: Duration = Duration::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `sleep 0.0…` (under 0.1 s).
    Short,
    /// `sleep 30.…`: ends only when killed.
    Long,
    /// Prints a line, then a short sleep; its observer tries to wait on its own job.
    Observed,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Start(Kind),
    Kill(usize),
    Delete(usize),
    Wait(usize),
    WaitTimeout(usize, Duration),
    SetLimit(usize),
    SetCapacities(u32, u64),
    Pause,
    Resume,
    Shutdown(ShutdownMode, Option<Duration>),
    Drop,
}

fn op() -> impl Strategy<Value = Op> {
    let timeout = prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_millis(1)),
        (0u64..30).prop_map(Duration::from_millis),
        Just(LARGE),
    ];
    let mode = prop_oneof![Just(ShutdownMode::Drain), Just(ShutdownMode::Cancel)];
    prop_oneof![
        6 => Just(Op::Start(Kind::Short)),
        2 => Just(Op::Start(Kind::Long)),
        2 => Just(Op::Start(Kind::Observed)),
        3 => any::<usize>().prop_map(Op::Kill),
        2 => any::<usize>().prop_map(Op::Delete),
        2 => any::<usize>().prop_map(Op::Wait),
        3 => (any::<usize>(), timeout.clone()).prop_map(|(i, t)| Op::WaitTimeout(i, t)),
        2 => (1usize..4).prop_map(Op::SetLimit),
        1 => (1u32..8, 1u64..(1 << 40)).prop_map(|(c, m)| Op::SetCapacities(c, m)),
        2 => Just(Op::Pause),
        2 => Just(Op::Resume),
        1 => (mode, proptest::option::of(timeout)).prop_map(|(m, t)| Op::Shutdown(m, t)),
        1 => Just(Op::Drop),
    ]
}

struct Job {
    id: JobId,
    kind: Kind,
    /// The unique argument that finds its process.
    marker: String,
    killed: bool,
    deleted: bool,
}

/// The test's own view of the manager.
struct Model {
    jobs: Vec<Job>,
    paused: bool,
    /// A shutdown began (and, these calls being made one at a time, ended: every job is final).
    closed: bool,
}

impl Model {
    /// A live long job nobody killed: it holds (or waits for) a slot for 30 s.
    fn long_job_blocks(&self) -> bool {
        !self.closed
            && self
                .jobs
                .iter()
                .any(|j| j.kind == Kind::Long && !j.killed && !j.deleted)
    }

    /// Whether a wait on job `i` is bound to return soon: it is final, or it ends on its own
    /// (or was killed) and nothing keeps it from a slot.
    fn ends(&self, i: usize, h: &Handle) -> bool {
        let j = &self.jobs[i];
        if self.closed || j.deleted {
            return true;
        }
        if h.job_data(j.id).is_ok_and(|r| r.status.is_final()) {
            return true;
        }
        (j.kind != Kind::Long || j.killed) && !self.paused && !self.long_job_blocks()
    }
}

type Calls = Arc<Mutex<HashMap<JobId, Vec<JobStatus>>>>;

fn run_case(observe: ObserveMode, ops: Vec<Op>) -> Result<(), TestCaseError> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let threads_before = thread_count();
    let dir = TempDir::new("lifecycle-props");
    let mut owner = Some(
        ProcessManager::builder()
            .limit(2)
            .grace(Duration::from_millis(50))
            .observe_mode(observe)
            .build()
            .unwrap(),
    );
    let h = owner.as_ref().unwrap().handle();
    let calls: Calls = Arc::default();
    // Observer calls that were not refused with WouldDeadlock (should stay empty).
    let observer_faults: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut model = Model {
        jobs: Vec::new(),
        paused: false,
        closed: false,
    };

    for (step, op) in ops.iter().copied().enumerate() {
        let at = format!("step {step} ({op:?})");
        let pick = |i: usize| (!model.jobs.is_empty()).then(|| i % model.jobs.len());
        match op {
            Op::Start(kind) => {
                let n = SEQ.fetch_add(1, Ordering::Relaxed);
                let pid = std::process::id();
                let marker = match kind {
                    Kind::Long => format!("30.{pid}{n:05}"),
                    Kind::Short | Kind::Observed => format!("0.0{pid}{n:05}"),
                };
                let c = calls.clone();
                let mut spec = match kind {
                    Kind::Short | Kind::Long => JobSpec::new("sleep").arg(&marker),
                    Kind::Observed => JobSpec::new("sh")
                        .args(["-c", &format!("echo x; exec sleep {marker}")])
                        .log_file(dir.join(&format!("{n}.log"))),
                };
                if kind == Kind::Observed {
                    let (oh, faults) = (h.clone(), observer_faults.clone());
                    spec = spec.observer(Arc::new(move |id, _, _| {
                        match oh.wait_timeout(id, Duration::from_secs(3600)) {
                            Err(WaitTimeoutError::WouldDeadlock(i)) if i == id => {}
                            other => faults.lock().unwrap().push(format!("{id}: {other:?}")),
                        }
                    }));
                }
                spec = spec.on_finish(move |r| {
                    c.lock().unwrap().entry(r.id).or_default().push(r.status);
                });
                match h.start_process(spec) {
                    Ok(id) => {
                        prop_assert!(!model.closed, "{at}: accepted after shutdown");
                        prop_assert!(model.jobs.iter().all(|j| j.id != id), "{at}: id reused");
                        model.jobs.push(Job {
                            id,
                            kind,
                            marker,
                            killed: false,
                            deleted: false,
                        });
                    }
                    Err(StartError::ShutDown) => {
                        prop_assert!(model.closed, "{at}: refused while open")
                    }
                    Err(e) => prop_assert!(false, "{at}: {e}"),
                }
            }
            Op::Kill(i) => {
                if let Some(i) = pick(i) {
                    let j = &mut model.jobs[i];
                    let got = h.kill_process(j.id);
                    if j.deleted {
                        prop_assert_eq!(got, Err(UnknownJob(j.id)), "{}", at);
                    } else if model.closed {
                        prop_assert_eq!(got, Ok(KillOutcome::AlreadyFinished), "{}", at);
                    } else {
                        prop_assert!(got.is_ok(), "{at}: {got:?}");
                    }
                    j.killed = true;
                }
            }
            Op::Delete(i) => {
                if let Some(i) = pick(i) {
                    let j = &mut model.jobs[i];
                    let got = h.delete_job(j.id);
                    if j.deleted {
                        prop_assert_eq!(got, Err(UnknownJob(j.id)), "{}", at);
                    } else {
                        prop_assert_eq!(got, Ok(()), "{}", at);
                    }
                    prop_assert_eq!(h.job_data(j.id).unwrap_err(), UnknownJob(j.id));
                    j.deleted = true;
                    j.killed = true;
                }
            }
            Op::Wait(i) => {
                if let Some(i) = pick(i) {
                    let (id, deleted) = (model.jobs[i].id, model.jobs[i].deleted);
                    if model.ends(i, &h) {
                        let got = h.wait(id);
                        if deleted {
                            prop_assert_eq!(got.unwrap_err(), WaitError::UnknownJob(id));
                        } else {
                            let r = got.map_err(|e| TestCaseError::fail(format!("{at}: {e}")))?;
                            prop_assert!(r.status.is_final() && r.id == id, "{at}: {r:?}");
                        }
                    }
                }
            }
            Op::WaitTimeout(i, t) => {
                if let Some(i) = pick(i) {
                    let (id, deleted) = (model.jobs[i].id, model.jobs[i].deleted);
                    let t = if t == LARGE && !model.ends(i, &h) {
                        Duration::from_millis(20)
                    } else {
                        t
                    };
                    match h.wait_timeout(id, t) {
                        Ok(r) => prop_assert!(
                            !deleted && r.status.is_final() && r.id == id,
                            "{at}: {r:?}"
                        ),
                        Err(WaitTimeoutError::UnknownJob(u)) => {
                            prop_assert!(deleted && u == id, "{at}: unknown")
                        }
                        Err(WaitTimeoutError::Timeout) => {
                            prop_assert!(t != LARGE, "{at}: a large wait timed out")
                        }
                        Err(e) => prop_assert!(false, "{at}: {e}"),
                    }
                }
            }
            Op::SetLimit(n) => {
                let got = h.set_limit(n);
                if model.closed {
                    prop_assert!(matches!(got, Err(BuildError::ShutDown)), "{at}: {got:?}");
                } else {
                    prop_assert!(got.is_ok(), "{at}: {got:?}");
                }
            }
            Op::SetCapacities(c, m) => {
                let got = h.set_capacities(c, m);
                if model.closed {
                    prop_assert!(matches!(got, Err(BuildError::ShutDown)), "{at}: {got:?}");
                } else {
                    prop_assert!(got.is_ok(), "{at}: {got:?}");
                }
            }
            Op::Pause | Op::Resume => {
                let got = if matches!(op, Op::Pause) {
                    h.pause()
                } else {
                    h.resume()
                };
                if model.closed {
                    prop_assert_eq!(got, Err(ShutDown), "{}", at);
                } else {
                    prop_assert_eq!(got, Ok(()), "{}", at);
                    model.paused = matches!(op, Op::Pause);
                }
            }
            Op::Shutdown(mode, timeout) => {
                // A drain without a timeout waits for every job: not while a long one lives.
                let timeout = match (mode, timeout) {
                    (ShutdownMode::Drain, t) if model.long_job_blocks() => {
                        Some(t.unwrap_or(LARGE).min(Duration::from_millis(30)))
                    }
                    (_, t) => t,
                };
                owner.as_deref().unwrap_or(&h).shutdown(mode, timeout);
                model.closed = true;
                model.paused = false;
            }
            Op::Drop => {
                drop(owner.take());
                model.closed = true;
                model.paused = false;
            }
        }
    }
    drop(owner.take());
    h.wait_all();

    // Exactly one handler call per accepted job, with a final record.
    let calls = calls.lock().unwrap().clone();
    prop_assert_eq!(calls.len(), model.jobs.len(), "jobs with a handler call");
    for j in &model.jobs {
        let seen = calls.get(&j.id).cloned().unwrap_or_default();
        prop_assert_eq!(seen.len(), 1, "job {} handler calls: {:?}", j.id, seen);
        prop_assert!(seen[0].is_final());
        match h.job_data(j.id) {
            Ok(r) => prop_assert!(!j.deleted && r.status == seen[0], "job {}: {r:?}", j.id),
            Err(UnknownJob(u)) => prop_assert!(j.deleted && u == j.id),
        }
    }
    let faults = observer_faults.lock().unwrap().clone();
    prop_assert!(faults.is_empty(), "observer waits not refused: {faults:?}");
    // Nothing left: processes (by marker), children, threads.
    for j in &model.jobs {
        let script = format!("echo x; exec sleep {}", j.marker);
        prop_assert!(
            live_with_argv(&["sleep", &j.marker]).is_empty()
                && live_with_argv(&["sh", "-c", &script]).is_empty(),
            "job {} ({:?}) left a process",
            j.id,
            j.kind
        );
    }
    prop_assert!(children().is_empty(), "children left: {:?}", children());
    drop(h);
    // Joined threads (and a job's detached follower, which closes its inotify instance after
    // the job completed) may linger in /proc for a moment: poll; a leaked one stays.
    let settled = eventually(Duration::from_secs(10), || thread_count() <= threads_before);
    prop_assert!(
        settled,
        "threads: {} before, {} after",
        threads_before,
        thread_count()
    );
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_call_sequence_ends_with_one_handler_call_per_job_and_nothing_left(
        observe in prop_oneof![Just(ObserveMode::Files), Just(ObserveMode::Pipes)],
        ops in proptest::collection::vec(op(), 1..30),
    ) {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let shown = format!("{ops:?}");
        let watchdog = std::thread::spawn(move || {
            if done_rx.recv_timeout(WATCHDOG) == Err(mpsc::RecvTimeoutError::Timeout) {
                // Straight to the stderr descriptor: the test harness would swallow eprintln.
                let msg = format!("lifecycle_props: a case hung for {WATCHDOG:?}: {shown}\n");
                let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
                std::process::abort();
            }
        });
        let result = run_case(observe, ops);
        drop(done_tx);
        watchdog.join().unwrap();
        result?;
    }
}
