//! The `state_machine` fuzz target's check, shared with `tests/fuzz_state_machine.rs` (which
//! replays the committed corpus through it): the job state machine under arbitrary sequences of
//! operations. The input's bytes, two per operation, are read as submit / kill / delete / wait /
//! pause / resume / set_limit / wait_all operations against a fresh `ProcessManager` running
//! trivial programs (`true`, `false`, `sleep 0.0x`, a missing program, a timeout, a retry, a
//! handler that starts a job). Code 15 is an extended operation chosen by its argument:
//! queries, set_capacities, wait / wait_timeout(0), an observed job whose observer waits on
//! itself, shutdown (drain with a short timeout, or cancel), and the owner's drop; every call
//! after those goes through a handle and must answer with an error (`ShutDown`), never hang.
//! After `wait_all`:
//! - every call answered as the manager's state allows (unknown ids are `Err(UnknownJob)`, a
//!   closed manager refuses starts, limit changes, pause and resume);
//! - every job that was accepted had its handler called exactly once, and no other id did;
//! - every visible record is final and equals what its handler saw;
//! - each job ended as its program and its history allow (an untouched `true` is Finished, a
//!   job after a failed job is DependencyFailed, a killed one may be Killed or Cancelled, and
//!   after a shutdown any job may have been killed or cancelled);
//! - an observer's wait on its own job was refused with `WouldDeadlock`;
//! - after shutdown the process has no child left, zombie or alive, and no more threads than
//!   before the input (both read from /proc).
//!
//! The check counts this process's children and threads, so whoever runs it must not start
//! other children or threads meanwhile (libFuzzer runs one input at a time; the replay test is
//! alone in its binary).
//! Each input takes well under a second: the longest programs are `sleep 0.04` and a `sleep 5`
//! killed by a timeout of at most 20 ms.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use procman::{
    BuildError, Handle, JobId, JobSpec, JobStatus, KillOutcome, ProcessManager, RetryOn, ShutDown,
    ShutdownMode, StartError, UnknownJob, WaitError, WaitTimeoutError,
};

/// At most this many operations and programs per input, so each input takes well under a second.
const MAX_OPS: usize = 24;
const MAX_JOBS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    True,
    False,
    Sleep,
    Timeout,
    Missing,
    Retry,
    /// Runs `true`; its handler starts another `true` through a handle.
    Spawner,
    /// `echo x`, observed (through a pipe): the observer waits on its own job.
    Observed,
}

struct Job {
    kind: Kind,
    after: Option<JobId>,
    /// A kill or delete was asked for.
    touched: bool,
    deleted: bool,
}

type Calls = Arc<Mutex<HashMap<JobId, Vec<JobStatus>>>>;
/// What went wrong inside handlers and observers (a panic there is caught by the manager, so
/// the checks are made at the end).
type Faults = Arc<Mutex<Vec<String>>>;

fn spec(
    kind: Kind,
    arg: u8,
    calls: &Calls,
    children: &Arc<Mutex<Vec<JobId>>>,
    faults: &Faults,
    m: &Handle,
) -> JobSpec {
    let base = match kind {
        Kind::True | Kind::Spawner => JobSpec::new("true"),
        Kind::Observed => {
            let (h, faults) = (m.clone(), faults.clone());
            JobSpec::new("echo")
                .arg("x")
                .observer(Arc::new(move |id, _, _| {
                    match h.wait_timeout(id, Duration::from_secs(3600)) {
                        Err(WaitTimeoutError::WouldDeadlock(i)) if i == id => {}
                        other => faults
                            .lock()
                            .unwrap()
                            .push(format!("observer of job {id} waited: {other:?}")),
                    }
                }))
        }
        Kind::False => JobSpec::new("false"),
        Kind::Sleep => JobSpec::new("sleep").arg(format!("0.0{}", arg % 5)),
        Kind::Timeout => JobSpec::new("sleep")
            .arg("5")
            .timeout(Duration::from_millis(1 + u64::from(arg % 20)))
            .grace(Duration::from_millis(u64::from(arg % 3) * 5)),
        Kind::Missing => JobSpec::new("/nonexistent/procman-fuzz-program"),
        Kind::Retry => JobSpec::new("false").retries(1, Duration::ZERO, RetryOn::default()),
    };
    let calls = calls.clone();
    let children = children.clone();
    let faults = faults.clone();
    let handle = m.clone();
    base.priority(i32::from(arg % 3)).on_finish(move |r| {
        calls
            .lock()
            .unwrap()
            .entry(r.id)
            .or_default()
            .push(r.status);
        if kind == Kind::Spawner {
            let calls = calls.clone();
            match handle.start_process(JobSpec::new("true").on_finish(move |r| {
                calls
                    .lock()
                    .unwrap()
                    .entry(r.id)
                    .or_default()
                    .push(r.status);
            })) {
                Ok(child) => children.lock().unwrap().push(child),
                // A shutdown began: the manager refuses new jobs.
                Err(StartError::ShutDown) => {}
                Err(e) => faults
                    .lock()
                    .unwrap()
                    .push(format!("a handler could not start a job: {e}")),
            }
        }
    })
}

fn expected(kind: Kind) -> JobStatus {
    match kind {
        Kind::True | Kind::Sleep | Kind::Spawner | Kind::Observed => JobStatus::Finished,
        Kind::False | Kind::Retry => JobStatus::Failed,
        Kind::Timeout => JobStatus::TimedOut,
        Kind::Missing => JobStatus::SpawnFailed,
    }
}

/// Runs the operations `data` encodes on a fresh manager; panics if an invariant breaks.
pub fn check(data: &[u8]) {
    let threads_before = thread_count();
    let mut owner = Some(
        ProcessManager::builder()
            .limit(2)
            .grace(Duration::from_millis(20))
            .build()
            .expect("a manager"),
    );
    // Every call goes through a handle, so the calls go on after the owner's drop.
    let m = owner.as_ref().unwrap().handle();
    let calls: Calls = Arc::default();
    let children: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let faults: Faults = Arc::default();
    let mut jobs: HashMap<JobId, Job> = HashMap::new();
    let mut order: Vec<JobId> = Vec::new();
    let mut paused = false;
    // A shutdown began (and ended: these calls are made one at a time).
    let mut closed = false;
    let pick =
        |order: &Vec<JobId>, b: u8| (!order.is_empty()).then(|| order[b as usize % order.len()]);

    for op in data.chunks(2).take(MAX_OPS) {
        let (code, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        match code % 16 {
            c @ 0..=7 if order.len() < MAX_JOBS => {
                let kind = [
                    Kind::True,
                    Kind::False,
                    Kind::Sleep,
                    Kind::Timeout,
                    Kind::Missing,
                    Kind::Retry,
                    Kind::Spawner,
                    Kind::True,
                ][c as usize];
                // Code 7: a `true` that runs after an earlier job.
                let after = if c == 7 { pick(&order, arg) } else { None };
                let mut s = spec(kind, arg, &calls, &children, &faults, &m);
                if let Some(dep) = after {
                    s = s.after(dep);
                }
                match m.start_process(s) {
                    Ok(id) => {
                        assert!(!jobs.contains_key(&id), "id {id} given out twice");
                        jobs.insert(
                            id,
                            Job {
                                kind,
                                after,
                                touched: false,
                                deleted: false,
                            },
                        );
                        order.push(id);
                    }
                    Err(StartError::UnknownDependency(d)) => {
                        assert_eq!(Some(d), after);
                        assert!(jobs[&d].deleted, "job {d} is known but was refused");
                    }
                    Err(StartError::ShutDown) => assert!(closed, "refused while open"),
                    Err(e) => panic!("unexpected start error: {e}"),
                }
            }
            8 | 9 => {
                if let Some(id) = pick(&order, arg) {
                    let j = jobs.get_mut(&id).unwrap();
                    if code % 16 == 8 {
                        let out = m.kill_process(id);
                        if j.deleted {
                            assert_eq!(out, Err(UnknownJob(id)), "kill of job {id}");
                        } else if closed {
                            assert_eq!(out, Ok(KillOutcome::AlreadyFinished), "kill of job {id}");
                        } else {
                            assert!(out.is_ok(), "kill of job {id}: {out:?}");
                        }
                    } else {
                        let out = m.delete_job(id);
                        if j.deleted {
                            assert_eq!(out, Err(UnknownJob(id)), "delete of job {id}");
                        } else {
                            assert_eq!(out, Ok(()), "delete of job {id}");
                        }
                        j.deleted = true;
                    }
                    j.touched = true;
                }
            }
            10 => {
                if let Some(id) = pick(&order, arg) {
                    let limit = if paused {
                        Duration::from_millis(1)
                    } else {
                        Duration::from_secs(20)
                    };
                    match m.wait_timeout(id, limit) {
                        Ok(r) => {
                            assert!(!jobs[&id].deleted);
                            assert!(r.status.is_final());
                        }
                        Err(WaitTimeoutError::UnknownJob(_)) => assert!(jobs[&id].deleted),
                        Err(WaitTimeoutError::Timeout) => assert!(paused, "job {id} did not end"),
                        Err(e) => panic!("wait for job {id}: {e}"),
                    }
                }
            }
            11 => {
                let out = m.pause();
                assert_eq!(out, if closed { Err(ShutDown) } else { Ok(()) }, "pause");
                paused = !closed;
            }
            12 => {
                let out = m.resume();
                assert_eq!(out, if closed { Err(ShutDown) } else { Ok(()) }, "resume");
                paused = false;
            }
            13 => match m.set_limit(1 + usize::from(arg % 3)) {
                Ok(()) => assert!(!closed, "set_limit accepted after shutdown"),
                Err(BuildError::ShutDown) => assert!(closed, "set_limit refused while open"),
                Err(e) => panic!("set_limit: {e}"),
            },
            14 if !paused => m.wait_all(),
            15 => match (arg / 16) % 8 {
                1 => match m.set_capacities(1 + u32::from(arg % 4), 1 << 30) {
                    Ok(()) => assert!(!closed, "set_capacities accepted after shutdown"),
                    Err(BuildError::ShutDown) => assert!(closed, "set_capacities refused"),
                    Err(e) => panic!("set_capacities: {e}"),
                },
                2 if order.len() < MAX_JOBS => {
                    // An observed job, started through the same path as the others.
                    match m.start_process(spec(Kind::Observed, arg, &calls, &children, &faults, &m))
                    {
                        Ok(id) => {
                            jobs.insert(
                                id,
                                Job {
                                    kind: Kind::Observed,
                                    after: None,
                                    touched: false,
                                    deleted: false,
                                },
                            );
                            order.push(id);
                        }
                        Err(StartError::ShutDown) => assert!(closed, "refused while open"),
                        Err(e) => panic!("unexpected start error: {e}"),
                    }
                }
                3 => {
                    // A blocking wait when the job is bound to end; a zero timeout otherwise.
                    if let Some(id) = pick(&order, arg) {
                        let deleted = jobs[&id].deleted;
                        if paused {
                            match m.wait_timeout(id, Duration::ZERO) {
                                Ok(r) => assert!(!deleted && r.status.is_final()),
                                Err(WaitTimeoutError::UnknownJob(_)) => assert!(deleted),
                                Err(WaitTimeoutError::Timeout) => {}
                                Err(e) => panic!("wait for job {id}: {e}"),
                            }
                        } else {
                            match m.wait(id) {
                                Ok(r) => assert!(!deleted && r.status.is_final()),
                                Err(WaitError::UnknownJob(_)) => assert!(deleted),
                                Err(e) => panic!("wait for job {id}: {e}"),
                            }
                        }
                    }
                }
                4 => {
                    let timeout = Duration::from_millis(u64::from(arg % 16));
                    m.shutdown(ShutdownMode::Drain, Some(timeout));
                    closed = true;
                    paused = false;
                }
                5 => {
                    m.shutdown(ShutdownMode::Cancel, None);
                    closed = true;
                    paused = false;
                }
                6 => {
                    drop(owner.take());
                    closed = true;
                    paused = false;
                }
                _ => {
                    let _ = m.snapshot();
                    let _ = m.running_processes();
                    let _ = m.pending_processes();
                }
            },
            _ => {
                let _ = m.snapshot();
                let _ = m.running_processes();
                let _ = m.pending_processes();
            }
        }
    }
    let _ = m.resume();
    m.wait_all();

    let calls = calls.lock().unwrap().clone();
    let children = children.lock().unwrap().clone();
    let mut all: HashSet<JobId> = order.iter().copied().collect();
    all.extend(children.iter().copied());
    assert_eq!(
        calls.keys().copied().collect::<HashSet<_>>(),
        all,
        "handler ids"
    );
    for (id, seen) in &calls {
        assert_eq!(
            seen.len(),
            1,
            "job {id}: handler called {} times",
            seen.len()
        );
    }
    for id in &children {
        let status = calls[id][0];
        assert!(
            status == JobStatus::Finished
                || (closed && matches!(status, JobStatus::Killed | JobStatus::Cancelled)),
            "job {id} started by a handler ended as {status}"
        );
    }
    let faults = faults.lock().unwrap().clone();
    assert!(faults.is_empty(), "{faults:?}");
    for &id in &order {
        let j = &jobs[&id];
        let status = calls[&id][0];
        assert!(status.is_final());
        match m.job_data(id) {
            Ok(r) => {
                assert!(!j.deleted, "deleted job {id} is still visible");
                assert_eq!(r.status, status, "job {id}: record and handler disagree");
                if status == JobStatus::Failed && j.kind == Kind::Retry && !j.touched && !closed {
                    assert_eq!(r.attempts, 2, "job {id}: one retry");
                }
            }
            Err(UnknownJob(u)) => assert!(j.deleted && u == id, "job {id} vanished"),
        }
        let dep_ok = j.after.map_or(true, |d| calls[&d][0].is_success());
        let natural = if dep_ok {
            expected(j.kind)
        } else {
            JobStatus::DependencyFailed
        };
        let ok = status == natural
            || ((j.touched || closed)
                && matches!(status, JobStatus::Killed | JobStatus::Cancelled));
        assert!(
            ok,
            "job {id} ({:?}, after {:?}, touched {}) ended as {status}",
            j.kind, j.after, j.touched
        );
    }

    drop(owner.take());
    m.shutdown(ShutdownMode::Cancel, None);
    drop(m);
    // No child left, zombie or alive (the sanitizer's own llvm-symbolizer aside).
    let left: Vec<_> = children_of_self()
        .into_iter()
        .filter(|(_, stat)| !stat.contains("(llvm-symbolizer)"))
        .collect();
    assert!(
        left.is_empty(),
        "child processes left after shutdown: {left:?}"
    );
    // No thread left: the manager's threads are joined by the owner's drop, but a joined thread
    // can stay in /proc for a moment, so poll (5 s: generous, a joined thread is gone within
    // milliseconds); a leaked one stays.
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_count() > threads_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let threads_after = thread_count();
    assert!(
        threads_after <= threads_before,
        "threads left after shutdown: {threads_before} before, {threads_after} after"
    );
}

/// This process's threads.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// This process's children as (pid, state and command), for the failure message.
fn children_of_self() -> Vec<(u32, String)> {
    let me = std::process::id().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if fields.get(1) == Some(&me.as_str()) {
            out.push((pid, stat));
        }
    }
    out
}
