//! The job state machine under arbitrary sequences of operations: the input's bytes are read as
//! submit / kill / delete / wait / pause / resume / set_limit / wait_all operations against a
//! fresh `ProcessManager` running trivial programs (`true`, `false`, `sleep 0.0x`, a missing
//! program, a timeout, a retry, a handler that starts a job). After `wait_all`:
//! - every job that was accepted had its handler called exactly once, and no other id did;
//! - every visible record is final and equals what its handler saw;
//! - each job ended as its program and its history allow (an untouched `true` is Finished, a
//!   job after a failed job is DependencyFailed, a killed one may be Killed or Cancelled, ...);
//! - after shutdown the process has no child left, zombie or alive (read from /proc).
//!
//! A hang is a finding too: run with `-timeout=60` so libFuzzer reports it.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use procman::{
    JobId, JobSpec, JobStatus, ProcessManager, RetryOn, ShutdownMode, StartError, WaitTimeoutError,
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
}

struct Job {
    kind: Kind,
    after: Option<JobId>,
    /// A kill or delete was asked for.
    touched: bool,
    deleted: bool,
}

type Calls = Arc<Mutex<HashMap<JobId, Vec<JobStatus>>>>;

fn spec(
    kind: Kind,
    arg: u8,
    calls: &Calls,
    children: &Arc<Mutex<Vec<JobId>>>,
    m: &ProcessManager,
) -> JobSpec {
    let base = match kind {
        Kind::True | Kind::Spawner => JobSpec::new("true"),
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
    let handle = m.handle();
    base.priority(i32::from(arg % 3)).on_finish(move |r| {
        calls
            .lock()
            .unwrap()
            .entry(r.id)
            .or_default()
            .push(r.status);
        if kind == Kind::Spawner {
            let calls = calls.clone();
            let child = handle
                .start_process(JobSpec::new("true").on_finish(move |r| {
                    calls
                        .lock()
                        .unwrap()
                        .entry(r.id)
                        .or_default()
                        .push(r.status);
                }))
                .expect("a handler can start a job while the manager runs");
            children.lock().unwrap().push(child);
        }
    })
}

fn expected(kind: Kind) -> JobStatus {
    match kind {
        Kind::True | Kind::Sleep | Kind::Spawner => JobStatus::Finished,
        Kind::False | Kind::Retry => JobStatus::Failed,
        Kind::Timeout => JobStatus::TimedOut,
        Kind::Missing => JobStatus::SpawnFailed,
    }
}

fuzz_target!(|data: &[u8]| {
    let m = ProcessManager::builder()
        .limit(2)
        .grace(Duration::from_millis(20))
        .build()
        .expect("a manager");
    let calls: Calls = Arc::default();
    let children: Arc<Mutex<Vec<JobId>>> = Arc::default();
    let mut jobs: HashMap<JobId, Job> = HashMap::new();
    let mut order: Vec<JobId> = Vec::new();
    let mut paused = false;
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
                let mut s = spec(kind, arg, &calls, &children, &m);
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
                    Err(e) => panic!("unexpected start error: {e}"),
                }
            }
            8 | 9 => {
                if let Some(id) = pick(&order, arg) {
                    let j = jobs.get_mut(&id).unwrap();
                    if code % 16 == 8 {
                        let out = m.kill_process(id);
                        assert_eq!(out.is_none(), j.deleted, "kill of job {id}: {out:?}");
                    } else {
                        assert_eq!(m.delete_job(id), !j.deleted, "delete of job {id}");
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
                    }
                }
            }
            11 => {
                m.pause();
                paused = true;
            }
            12 => {
                m.resume();
                paused = false;
            }
            13 => m
                .set_limit(1 + usize::from(arg % 3))
                .expect("a valid limit"),
            14 if !paused => m.wait_all(),
            _ => {
                let _ = m.snapshot();
                let _ = m.running_processes();
                let _ = m.pending_processes();
            }
        }
    }
    m.resume();
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
        assert_eq!(
            calls[id][0],
            JobStatus::Finished,
            "job {id} started by a handler"
        );
    }
    for &id in &order {
        let j = &jobs[&id];
        let status = calls[&id][0];
        assert!(status.is_final());
        match m.job_data(id) {
            Some(r) => {
                assert!(!j.deleted, "deleted job {id} is still visible");
                assert_eq!(r.status, status, "job {id}: record and handler disagree");
                if status == JobStatus::Failed && j.kind == Kind::Retry && !j.touched {
                    assert_eq!(r.attempts, 2, "job {id}: one retry");
                }
            }
            None => assert!(j.deleted, "job {id} vanished"),
        }
        let dep_ok = j.after.is_none_or(|d| calls[&d][0].is_success());
        let natural = if dep_ok {
            expected(j.kind)
        } else {
            JobStatus::DependencyFailed
        };
        let ok = status == natural
            || (j.touched && matches!(status, JobStatus::Killed | JobStatus::Cancelled));
        assert!(
            ok,
            "job {id} ({:?}, after {:?}, touched {}) ended as {status}",
            j.kind, j.after, j.touched
        );
    }

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
});

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
