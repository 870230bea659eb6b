//! The core engine's guarantees (issue 2), each on real processes, and the behaviours of the
//! Python manager's own tests, ported.

mod common;
#[path = "common/isolate.rs"]
mod isolate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, kid, pattern, TempDir};
use procman::{
    BuildError, JobId, JobRecord, JobSpec, JobStatus, KillOutcome, ProcessManager, ShutdownMode,
    StartError, WaitError, WaitMode, WaitTimeoutError,
};

const LONG: Duration = Duration::from_secs(30);

fn manager(limit: usize) -> ProcessManager {
    ProcessManager::builder()
        .limit(limit)
        .grace(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// Both wait paths must keep every guarantee.
fn managers(limit: usize) -> Vec<ProcessManager> {
    [WaitMode::Pidfd, WaitMode::Portable]
        .into_iter()
        .map(|m| {
            ProcessManager::builder()
                .limit(limit)
                .grace(Duration::from_millis(500))
                .wait_mode(m)
                .build()
                .unwrap()
        })
        .collect()
}

// ---- Ported from the Python manager's tests ----

/// Threads of this process whose name (as the kernel keeps it: 15 bytes) starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn the_global_instance_is_one_instance_whichever_thread_touches_it_first() {
    // In a process of its own: the thread counts are process-wide.
    isolate::isolated(
        "the_global_instance_is_one_instance_whichever_thread_touches_it_first",
        Duration::from_secs(120),
        || {
            assert_eq!(threads_named("procman-dispatc"), 0);
            // All threads are released at once, so they race to create the instance.
            const THREADS: usize = 16;
            let start = Arc::new(std::sync::Barrier::new(THREADS));
            let from_threads: Vec<usize> = (0..THREADS)
                .map(|_| {
                    let start = start.clone();
                    std::thread::spawn(move || {
                        start.wait();
                        ProcessManager::global() as *const _ as usize
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            let here = ProcessManager::global() as *const _ as usize;
            assert!(from_threads.iter().all(|&p| p == here), "{from_threads:?}");
            // One manager was built: one dispatcher and its first worker ("procman-worker-N"
            // cut to 15 bytes; more are created as jobs need them). A new thread names itself
            // once it runs: under load, its name may show a moment after `global()` returned.
            let named = |prefix: &str| {
                eventually(LONG, || threads_named(prefix) >= 1);
                threads_named(prefix)
            };
            assert_eq!(named("procman-dispatc"), 1);
            assert_eq!(named("procman-worker-"), 1);
            assert_eq!(ProcessManager::global().limit(), 10);
            let r = ProcessManager::global().run(JobSpec::new("true")).unwrap();
            assert_eq!(r.status, JobStatus::Finished);
        },
    );
}

#[test]
fn echo_finishes_with_exit_code_0_before_its_handler_runs_and_the_handler_gets_its_id() {
    let m = manager(2);
    let dir = TempDir::new("echo");
    let (tx, rx) = mpsc::channel();
    let id = m
        .start_process(
            JobSpec::new("echo")
                .arg("hello world")
                .log_file(dir.join("echo.log"))
                .on_finish(move |r| tx.send(r.clone()).unwrap()),
        )
        .unwrap();
    let seen = rx.recv_timeout(LONG).unwrap();
    assert_eq!(seen.id, id);
    assert_eq!(seen.status, JobStatus::Finished);
    assert_eq!(seen.exit_code, Some(0));
    assert_eq!(seen.ccp4i2_exit_status(), 0);
    assert!(seen.finished_at.is_some());
    assert_eq!(
        std::fs::read_to_string(dir.join("echo.log")).unwrap(),
        "hello world\n"
    );
    // The default error file follows the CCP4i2 convention.
    assert_eq!(seen.error_file.as_deref(), Some(&*dir.join("echo_err.txt")));
    assert!(dir.join("echo_err.txt").exists());
}

#[test]
fn false_gives_exit_code_1_and_exit_status_1_and_job_data_reports_it() {
    let m = manager(2);
    let id = m.start_process(JobSpec::new("false")).unwrap();
    let r = m.wait(id).unwrap();
    let data = m.job_data(id).unwrap();
    for r in [r, data] {
        assert_eq!(r.program, "false");
        assert_eq!(r.status, JobStatus::Failed);
        assert_eq!(r.exit_code, Some(1));
        assert_eq!(r.ccp4i2_exit_status(), 1);
        assert!(r.pid.is_some());
        assert!(r.started_at.is_some() && r.finished_at.is_some());
    }
}

#[test]
fn three_concurrent_jobs_all_complete() {
    let m = manager(10);
    let count = Arc::new(AtomicUsize::new(0));
    let ids: Vec<JobId> = (0..3)
        .map(|i| {
            let c = count.clone();
            m.start_process(
                JobSpec::new("sh")
                    .args(["-c", &format!("exit {}", i)])
                    .on_finish(move |_| {
                        c.fetch_add(1, Ordering::SeqCst);
                    }),
            )
            .unwrap()
        })
        .collect();
    m.wait_all();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(m.job_data(*id).unwrap().exit_code, Some(i as i32));
    }
}

#[test]
fn delete_job_forgets_a_finished_job() {
    let m = manager(2);
    let id = m.start_process(JobSpec::new("true")).unwrap();
    m.wait(id).unwrap();
    m.delete_job(id).unwrap();
    assert!(m.job_data(id).is_err());
    assert!(m.delete_job(id).is_err());
    assert_eq!(m.wait(id).unwrap_err(), WaitError::UnknownJob(id));
}

#[test]
fn a_running_sleep_is_listed_by_running_processes_and_gone_once_it_ends() {
    let m = manager(2);
    let events = m.subscribe(16);
    let id = m
        .start_process(JobSpec::new(kid()).args(["sleep", "0.3"]))
        .unwrap();
    // Wait for the Started event rather than for time to pass.
    loop {
        match events.recv_timeout(LONG).unwrap() {
            procman::Event::Started { id: got, .. } if got == id => break,
            _ => {}
        }
    }
    assert_eq!(m.running_processes(), vec![id]);
    assert_eq!(m.job_data(id).unwrap().status, JobStatus::Running);
    m.wait(id).unwrap();
    assert!(m.running_processes().is_empty());
}

// ---- Guarantee 1: exactly one handler call on every path ----

#[test]
fn exactly_one_handler_call_on_every_path() {
    for m in managers(2) {
        let dir = TempDir::new("once");
        let calls: Arc<Mutex<HashMap<JobId, (usize, JobStatus)>>> = Arc::default();
        let handler = |calls: &Arc<Mutex<HashMap<JobId, (usize, JobStatus)>>>| {
            let calls = calls.clone();
            move |r: &JobRecord| {
                // The record is final before the handler runs.
                assert!(r.status.is_final(), "handler saw {:?}", r.status);
                let mut c = calls.lock().unwrap();
                let e = c.entry(r.id).or_insert((0, r.status));
                e.0 += 1;
            }
        };
        let spec = |args: &[&str]| JobSpec::new(kid()).args(args).on_finish(handler(&calls));
        let exit = m.start_process(spec(&["exit", "0"])).unwrap();
        let fail = m.start_process(spec(&["exit", "7"])).unwrap();
        let crash = m.start_process(spec(&["segv"])).unwrap();
        let timeout = m
            .start_process(spec(&["sleep", "30"]).timeout(Duration::from_millis(100)))
            .unwrap();
        let spawn_fail = m
            .start_process(JobSpec::new(dir.join("missing")).on_finish(handler(&calls)))
            .unwrap();
        for id in [exit, fail, crash, timeout, spawn_fail] {
            m.wait(id).unwrap();
        }
        let running = m.start_process(spec(&["sleep", "30"])).unwrap();
        let deleted = m.start_process(spec(&["sleep", "30"])).unwrap();
        // Both take the two slots; these two stay pending.
        m.pause().unwrap();
        let pending = m.start_process(spec(&["exit", "0"])).unwrap();
        let at_shutdown = m.start_process(spec(&["exit", "0"])).unwrap();
        assert_eq!(m.kill_process(pending), Ok(KillOutcome::Cancelled));
        // Kill and delete a running job (or one about to start).
        assert_eq!(m.kill_process(running), Ok(KillOutcome::Killing));
        m.delete_job(deleted).unwrap();
        m.wait(running).unwrap();
        m.shutdown(ShutdownMode::Cancel, None);
        let calls = calls.lock().unwrap();
        let expect = [
            (exit, JobStatus::Finished),
            (fail, JobStatus::Failed),
            (crash, JobStatus::Crashed),
            (timeout, JobStatus::TimedOut),
            (spawn_fail, JobStatus::SpawnFailed),
            (pending, JobStatus::Cancelled),
            (at_shutdown, JobStatus::Cancelled),
        ];
        for (id, status) in expect {
            assert_eq!(calls.get(&id), Some(&(1, status)), "job {id}");
        }
        for id in [running, deleted] {
            let (n, status) = calls[&id];
            assert_eq!(n, 1, "job {id}");
            assert!(matches!(status, JobStatus::Killed | JobStatus::Cancelled));
        }
        assert_eq!(calls.len(), 9);
    }
}

// ---- Guarantee 2: timeout and kill reach the whole process group ----

#[test]
fn a_timeout_ends_the_whole_process_group() {
    for m in managers(2) {
        let secs = common::marker_secs();
        let r = m
            .run(
                JobSpec::new("sh")
                    .args(["-c", &format!("sleep {secs} & sleep {secs}")])
                    .timeout(Duration::from_millis(200)),
            )
            .unwrap();
        assert_eq!(r.status, JobStatus::TimedOut);
        // Found by their unique argv: a group id can be reused once the leader is reaped.
        assert!(
            eventually(Duration::from_secs(5), || common::live_with_argv(&[
                "sleep", &secs
            ])
            .is_empty()),
            "left alive: {:?}",
            common::live_with_argv(&["sleep", &secs])
        );
        // Well before the 30 s the sleeps would take.
        assert!(r.usage.unwrap().wall < Duration::from_secs(10));
    }
}

#[test]
fn a_kill_ends_the_whole_process_group() {
    let m = manager(2);
    let dir = TempDir::new("killgroup");
    let log = dir.join("tree.log");
    let secs = common::marker_secs();
    let id = m
        .start_process(
            JobSpec::new("sh")
                .args(["-c", &format!("{} tree 2 2 {secs}; sleep {secs}", kid())])
                .log_file(&log),
        )
        .unwrap();
    // The tree prints 7 pids; wait for them.
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&log).map_or(0, |s| s.lines().count()) == 7
    }));
    let tree = [kid(), "tree", "2", "2", secs.as_str()];
    // The root exited at once; its six descendants sleep.
    assert_eq!(common::live_with_argv(&tree).len(), 6);
    assert_eq!(m.kill_process(id), Ok(KillOutcome::Killing));
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Killed);
    // Well before the 30 s the processes would take on their own.
    assert!(r.usage.unwrap().wall < Duration::from_secs(10));
    assert!(eventually(Duration::from_secs(5), || {
        common::live_with_argv(&tree).is_empty()
            && common::live_with_argv(&["sleep", &secs]).is_empty()
    }));
}

#[test]
fn a_child_that_ignores_term_is_killed_after_the_grace_period() {
    for m in managers(1) {
        let dir = TempDir::new("ignoreterm");
        let log = dir.join("kid.log");
        let id = m
            .start_process(
                JobSpec::new(kid())
                    .args(["ignore-term", "30"])
                    .log_file(&log)
                    .grace(Duration::from_millis(300))
                    .timeout(Duration::from_millis(300)),
            )
            .unwrap();
        let r = m.wait(id).unwrap();
        assert_eq!(r.status, JobStatus::TimedOut);
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert!(r.usage.unwrap().wall < Duration::from_secs(10));
    }
}

#[test]
fn leftover_processes_in_the_group_are_ended_when_the_program_exits() {
    let m = manager(1);
    let secs = common::marker_secs();
    let grandchild = [kid(), "grandchild", secs.as_str()];
    let r = m.run(JobSpec::new(kid()).args(&grandchild[1..])).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert!(eventually(Duration::from_secs(5), || {
        common::live_with_argv(&grandchild).is_empty()
    }));

    // With kill_leftovers(false) the grandchild lives on (then the test ends it).
    let secs = common::marker_secs();
    let grandchild = [kid(), "grandchild", secs.as_str()];
    let r = m
        .run(
            JobSpec::new(kid())
                .args(&grandchild[1..])
                .kill_leftovers(false),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    let left = common::live_with_argv(&grandchild);
    assert_eq!(left.len(), 1);
    unsafe { libc::kill(left[0] as i32, libc::SIGKILL) };
}

// ---- Guarantee 3: the limit holds at every instant; handlers hold no slot ----

#[test]
fn the_concurrency_limit_holds_at_every_instant() {
    let m = manager(3);
    let live = Arc::new(AtomicUsize::new(0));
    let max_live = Arc::new(AtomicUsize::new(0));
    let events = m.subscribe(10_000);
    let ids: Vec<JobId> = (0..24)
        .map(|_| {
            m.start_process(JobSpec::new(kid()).args(["sleep", "0.02"]))
                .unwrap()
        })
        .collect();
    // Count live jobs from the event stream, which is ordered under the manager's lock:
    // Started after spawn, Finished after reaping.
    let mut finished = 0;
    while finished < ids.len() {
        match events.recv_timeout(LONG).unwrap() {
            procman::Event::Started { .. } => {
                let n = live.fetch_add(1, Ordering::SeqCst) + 1;
                max_live.fetch_max(n, Ordering::SeqCst);
            }
            procman::Event::Finished(_) => {
                live.fetch_sub(1, Ordering::SeqCst);
                finished += 1;
            }
            procman::Event::Lost(n) => panic!("lost {n} events"),
            _ => {}
        }
    }
    assert_eq!(max_live.load(Ordering::SeqCst), 3);
    // And from the records: no instant is inside more than 3 [started, finished] intervals.
    let mut edges: Vec<(std::time::SystemTime, i32)> = Vec::new();
    for id in ids {
        let r = m.wait(id).unwrap();
        edges.push((r.started_at.unwrap(), 1));
        edges.push((r.finished_at.unwrap(), -1));
    }
    edges.sort();
    let mut n = 0;
    for (_, d) in edges {
        n += d;
        assert!(n <= 3);
    }
}

#[test]
fn a_slow_handler_holds_no_slot() {
    // Limit 1: if the first job's handler held the slot, the second job could never start
    // while the handler waits for it.
    let m = manager(1);
    let h = m.handle();
    let (tx, rx) = mpsc::channel();
    let second = Arc::new(Mutex::new(None::<JobId>));
    let s2 = second.clone();
    m.start_process(JobSpec::new("true").on_finish(move |_| {
        let h2 = h.clone();
        let id = h2.start_process(JobSpec::new("true")).unwrap();
        *s2.lock().unwrap() = Some(id);
        tx.send(h2.wait_timeout(id, LONG).map(|r| r.status))
            .unwrap();
    }))
    .unwrap();
    assert_eq!(rx.recv_timeout(LONG).unwrap(), Ok(JobStatus::Finished));
}

#[test]
fn records_list_every_known_job_in_id_order_and_finished_records_only_final_ones() {
    let m = manager(4);
    let ok = m.run(JobSpec::new("true")).unwrap().id;
    let bad = m.run(JobSpec::new("false")).unwrap().id;
    let gone = m.start_process(JobSpec::new("sleep").arg("30")).unwrap();
    m.delete_job(gone).unwrap(); // still ending: hidden at once all the same
    let sleeper = m.start_process(JobSpec::new("sleep").arg("30")).unwrap();
    let listed: Vec<(JobId, JobStatus)> = m.records().iter().map(|r| (r.id, r.status)).collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(
        listed[..2],
        [(ok, JobStatus::Finished), (bad, JobStatus::Failed)]
    );
    assert_eq!(listed[2].0, sleeper);
    let finished: Vec<JobId> = m.finished_records().iter().map(|r| r.id).collect();
    assert_eq!(finished, [ok, bad]);
    m.kill_process(sleeper).unwrap();
    m.wait(sleeper).unwrap();
    let finished: Vec<JobId> = m.finished_records().iter().map(|r| r.id).collect();
    assert_eq!(finished, [ok, bad, sleeper]);
}

#[test]
fn dropping_a_handle_leaves_the_manager_running_and_dropping_the_owner_ends_its_jobs() {
    let m = manager(2);
    let h = m.handle();
    drop(h.clone());
    let id = h.start_process(JobSpec::new("sleep").arg("30")).unwrap();
    drop(h);
    let h = m.handle();
    assert!(
        !m.job_data(id).unwrap().status.is_final(),
        "dropping handles ended nothing"
    );
    drop(m);
    // The owner's drop was a cancelling shutdown: the job ended, and the handle is refused.
    assert!(matches!(
        h.job_data(id).map(|r| r.status),
        Ok(JobStatus::Killed | JobStatus::Cancelled)
    ));
    assert_eq!(
        h.start_process(JobSpec::new("true")),
        Err(StartError::ShutDown)
    );
}

#[test]
fn subscriptions_end_when_the_manager_stops_even_while_handles_live() {
    let m = manager(2);
    let h = m.handle();
    let before = h.subscribe(64);
    let id = h.run(JobSpec::new("true")).unwrap().id;
    drop(m);
    // Every event sent before the stop is delivered, then the channel ends (a `for ev in rx`
    // loop returns) although `h` still lives.
    let mut events = vec![];
    loop {
        match before.recv_timeout(LONG) {
            Ok(e) => events.push(e),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("the channel did not end: {e:?}; got {events:?}"),
        }
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, procman::Event::Finished(r) if r.id == id)),
        "{events:?}"
    );
    let after = h.subscribe(8);
    assert!(matches!(
        after.recv_timeout(LONG),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    ));
}

#[test]
fn concurrent_shutdowns_both_return_only_once_the_threads_are_gone() {
    // In a process of its own: the thread counts are process-wide.
    isolate::isolated(
        "concurrent_shutdowns_both_return_only_once_the_threads_are_gone",
        Duration::from_secs(120),
        || {
            for _ in 0..20 {
                let m = manager(4);
                for _ in 0..4 {
                    m.start_process(JobSpec::new("sleep").arg("30")).unwrap();
                }
                let h = m.handle();
                // A thread that has exited can stay listed in /proc for a moment after its
                // join returned: allow 100 ms for that, far less than a job's grace.
                let gone = || {
                    eventually(Duration::from_millis(100), || {
                        threads_named("procman-") == 0
                    })
                };
                let other = std::thread::spawn(move || {
                    h.shutdown(ShutdownMode::Cancel, None);
                    gone()
                });
                drop(m);
                assert!(gone(), "threads left after the owner's drop");
                assert!(
                    other.join().unwrap(),
                    "threads left after the handle's shutdown"
                );
            }
        },
    );
}

// ---- Guarantee 4: output is byte-exact, never buffered in memory ----

#[test]
fn logs_are_byte_exact_including_binary() {
    let m = manager(2);
    let dir = TempDir::new("bytes");
    for (i, observed) in [false, true].into_iter().enumerate() {
        let log = dir.join(&format!("out{i}.log"));
        let mut spec = JobSpec::new(kid())
            .args(["write", "3000001", "700003"])
            .log_file(&log);
        if observed {
            spec = spec.observe(|_, _, _| {});
        }
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        assert!(std::fs::read(&log).unwrap() == pattern(3_000_001));
        let err = r.error_file.unwrap();
        assert!(std::fs::read(err).unwrap() == pattern(700_003));
    }
}

#[test]
fn merged_error_output_lands_in_the_log() {
    let m = manager(1);
    let dir = TempDir::new("merge");
    let log = dir.join("all.log");
    let r = m
        .run(
            JobSpec::new("sh")
                .args(["-c", "echo out; echo err >&2; echo out2"])
                .log_file(&log)
                .merge_error_into_log(),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "out\nerr\nout2\n");
}

#[test]
fn the_input_file_is_streamed_to_stdin_and_input_bytes_work_too() {
    let m = manager(2);
    let dir = TempDir::new("input");
    let input = dir.join("keywords.txt");
    let data = pattern(5_000_000);
    std::fs::write(&input, &data).unwrap();
    let r = m
        .run(
            JobSpec::new(kid())
                .arg("cat")
                .input_file(&input)
                .log_file(dir.join("cat.log")),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert!(std::fs::read(dir.join("cat.log")).unwrap() == data);
    let r = m
        .run(
            JobSpec::new(kid())
                .arg("cat")
                .input_bytes(&data[..200_000])
                .log_file(dir.join("bytes.log")),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert!(std::fs::read(dir.join("bytes.log")).unwrap() == data[..200_000]);
    // stdin is /dev/null by default, never the host's.
    let r = m
        .run(
            JobSpec::new(kid())
                .arg("cat")
                .log_file(dir.join("null.log")),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert_eq!(std::fs::read(dir.join("null.log")).unwrap(), b"");
}

// ---- Guarantee 5: no fds leaked into children ----

#[test]
fn a_child_sees_only_fds_0_1_2() {
    let m = manager(4);
    let dir = TempDir::new("fds");
    for (i, observed) in [false, true].into_iter().enumerate() {
        let log = dir.join(&format!("fds{i}.log"));
        let mut spec = JobSpec::new(kid())
            .arg("fds")
            .input_bytes("x")
            .log_file(&log);
        if observed {
            spec = spec.observe(|_, _, _| {});
        }
        // Other jobs running at the same time must not leak their fds into this one.
        let busy: Vec<JobId> = (0..3)
            .map(|_| {
                m.start_process(
                    JobSpec::new(kid())
                        .args(["sleep", "0.5"])
                        .observe(|_, _, _| {}),
                )
                .unwrap()
            })
            .collect();
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "0\n1\n2\n");
        for id in busy {
            m.wait(id).unwrap();
        }
    }
}

// ---- Guarantee 6: safe from any thread, including handlers ----

#[test]
fn a_handler_may_start_jobs_and_wait_for_them() {
    let m = manager(2);
    let h = m.handle();
    let (tx, rx) = mpsc::channel();
    m.start_process(JobSpec::new("true").on_finish(move |first| {
        let r = h
            .run(JobSpec::new("sh").args(["-c", "exit 4"]))
            .expect("start from a handler");
        tx.send((first.status, r.status, r.exit_code)).unwrap();
    }))
    .unwrap();
    assert_eq!(
        rx.recv_timeout(LONG).unwrap(),
        (JobStatus::Finished, JobStatus::Failed, Some(4))
    );
}

#[test]
fn many_threads_submit_kill_and_query_at_once() {
    let m = Arc::new(manager(4));
    let calls = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            let calls = calls.clone();
            std::thread::spawn(move || {
                let mut ids = vec![];
                for i in 0..25 {
                    let c = calls.clone();
                    let id = m
                        .start_process(JobSpec::new("true").on_finish(move |_| {
                            c.fetch_add(1, Ordering::SeqCst);
                        }))
                        .unwrap();
                    if (i + t) % 3 == 0 {
                        m.kill_process(id).unwrap();
                    }
                    let _ = m.job_data(id);
                    let _ = m.running_processes();
                    ids.push(id);
                }
                ids
            })
        })
        .collect();
    let ids: Vec<JobId> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    m.wait_all();
    assert_eq!(calls.load(Ordering::SeqCst), 100);
    for id in ids {
        assert!(m.job_data(id).unwrap().status.is_final());
    }
}

// ---- Guarantee 7: bad input gives a typed error or a SpawnFailed record ----

#[test]
fn bad_input_gives_typed_errors() {
    let m = manager(1);
    assert_eq!(
        m.start_process(JobSpec::new("")).unwrap_err(),
        StartError::EmptyProgram
    );
    assert_eq!(
        m.start_process(JobSpec::new("echo").args(["ok", "a\0b"]))
            .unwrap_err(),
        StartError::NulByte("argument 2".into())
    );
    assert_eq!(
        m.start_process(JobSpec::new("echo").env("A=B", "x"))
            .unwrap_err(),
        StartError::BadEnvName("A=B".into())
    );
    assert_eq!(
        m.start_process(JobSpec::new("true").after(JobId(1)))
            .unwrap_err(),
        StartError::UnknownDependency(JobId(1))
    );
    assert!(matches!(
        ProcessManager::builder().limit(0).build(),
        Err(BuildError::ZeroLimit(_))
    ));
    assert!(matches!(m.set_limit(0), Err(BuildError::ZeroLimit(_))));
    let unknown = JobId(999_999);
    assert!(m.job_data(unknown).is_err());
    assert!(m.kill_process(unknown).is_err());
    assert!(m.delete_job(unknown).is_err());
    assert!(m.wait(unknown).is_err());
    assert_eq!(
        m.wait_timeout(unknown, Duration::from_millis(1))
            .unwrap_err(),
        WaitTimeoutError::UnknownJob(unknown)
    );
}

#[test]
fn spawn_failures_name_the_cause_and_land_in_the_error_file() {
    let m = manager(2);
    let dir = TempDir::new("spawnfail");
    let cases: Vec<(JobSpec, &str)> = vec![
        (
            JobSpec::new(dir.join("no-such-program")).log_file(dir.join("a/log.txt")),
            "no-such-program",
        ),
        (
            JobSpec::new("cat")
                .input_file(dir.join("missing-input.txt"))
                .log_file(dir.join("b/log.txt")),
            "missing-input.txt",
        ),
        (
            JobSpec::new("true")
                .cwd(dir.join("no-such-dir"))
                .log_file(dir.join("c/log.txt")),
            "no-such-dir",
        ),
    ];
    for (spec, needle) in cases {
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::SpawnFailed);
        let error = r.error.clone().unwrap();
        assert!(error.contains(needle), "{error}");
        let err_file = std::fs::read_to_string(r.error_file.unwrap()).unwrap();
        assert!(err_file.contains(needle), "{err_file}");
        assert!(err_file.contains(&r.id.to_string()));
    }
    // A log path that is a directory.
    std::fs::create_dir_all(dir.join("isdir")).unwrap();
    let r = m
        .run(JobSpec::new("true").log_file(dir.join("isdir")))
        .unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed);
    assert!(r.error.unwrap().contains("log file"));
    // A log directory that cannot be created (its parent is a file).
    std::fs::write(dir.join("file"), "").unwrap();
    let r = m
        .run(JobSpec::new("true").log_file(dir.join("file/sub/log.txt")))
        .unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed);
}

// ---- kill_process on each state ----

#[test]
fn a_killed_pending_job_never_starts() {
    let m = manager(1);
    let events = m.subscribe(16);
    let blocker = m
        .start_process(JobSpec::new(kid()).args(["sleep", "30"]))
        .unwrap();
    loop {
        if let procman::Event::Started { .. } = events.recv_timeout(LONG).unwrap() {
            break;
        }
    }
    let dir = TempDir::new("pending");
    let marker = dir.join("ran");
    let pending = m.start_process(JobSpec::new("touch").arg(&marker)).unwrap();
    assert_eq!(m.pending_processes(), vec![pending]);
    assert_eq!(m.kill_process(pending), Ok(KillOutcome::Cancelled));
    assert_eq!(m.kill_process(blocker), Ok(KillOutcome::Killing));
    m.wait_all();
    let r = m.job_data(pending).unwrap();
    assert_eq!(r.status, JobStatus::Cancelled);
    assert!(r.started_at.is_none() && r.pid.is_none());
    assert!(!marker.exists());
    assert_eq!(m.kill_process(pending), Ok(KillOutcome::AlreadyFinished));
}

#[test]
fn deleting_a_running_job_kills_it_and_its_handler_still_runs_once() {
    let m = manager(1);
    let (tx, rx) = mpsc::channel();
    let events = m.subscribe(16);
    let id = m
        .start_process(
            JobSpec::new(kid())
                .args(["sleep", "30"])
                .on_finish(move |r| tx.send(r.status).unwrap()),
        )
        .unwrap();
    loop {
        if let procman::Event::Started { .. } = events.recv_timeout(LONG).unwrap() {
            break;
        }
    }
    m.delete_job(id).unwrap();
    assert!(m.job_data(id).is_err());
    assert_eq!(rx.recv_timeout(LONG).unwrap(), JobStatus::Killed);
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
}

// ---- Shutdown ----

#[test]
fn drain_finishes_queued_work_and_cancel_kills_it() {
    let m = manager(2);
    let ids: Vec<JobId> = (0..6)
        .map(|_| m.start_process(JobSpec::new("true")).unwrap())
        .collect();
    m.shutdown(ShutdownMode::Drain, None);
    for id in &ids {
        assert_eq!(m.job_data(*id).unwrap().status, JobStatus::Finished);
    }
    assert_eq!(
        m.start_process(JobSpec::new("true")).unwrap_err(),
        StartError::ShutDown
    );

    let m = manager(1);
    let running = m
        .start_process(JobSpec::new(kid()).args(["sleep", "30"]))
        .unwrap();
    let queued = m.start_process(JobSpec::new("true")).unwrap();
    let t = Instant::now();
    m.shutdown(ShutdownMode::Drain, Some(Duration::from_millis(100)));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        m.job_data(running).unwrap().status,
        JobStatus::Killed | JobStatus::Cancelled
    ));
    assert_eq!(m.job_data(queued).unwrap().status, JobStatus::Cancelled);
}

#[test]
fn dropping_a_manager_with_queued_work_runs_every_handler_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let secs = common::marker_secs();
    let t = Instant::now();
    {
        let m = manager(2);
        let events = m.subscribe(64);
        for _ in 0..10 {
            let c = calls.clone();
            m.start_process(
                JobSpec::new(kid())
                    .args(["sleep", &secs])
                    .on_finish(move |_| {
                        c.fetch_add(1, Ordering::SeqCst);
                    }),
            )
            .unwrap();
        }
        // Two are running, eight queued, when the manager is dropped.
        let mut started = 0;
        while started < 2 {
            if let procman::Event::Started { .. } = events.recv_timeout(LONG).unwrap() {
                started += 1;
            }
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    // The drop killed the running jobs rather than waiting out their 30 s.
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(eventually(Duration::from_secs(5), || {
        common::live_with_argv(&[kid(), "sleep", &secs]).is_empty()
    }));
}

// ---- Records, environment, working directory, interpreter ----

#[test]
fn crash_is_recorded_with_its_signal() {
    let m = manager(1);
    let r = m.run(JobSpec::new(kid()).arg("segv")).unwrap();
    assert_eq!(r.status, JobStatus::Crashed);
    assert_eq!(r.signal, Some(libc::SIGSEGV));
    assert_eq!(r.exit_code, None);
    assert_eq!(r.describe_end(), "terminated by SIGSEGV (signal 11)");
}

#[test]
fn environment_edits_working_directory_and_interpreter_apply() {
    let m = manager(2);
    let dir = TempDir::new("env");
    std::env::set_var("PROCMAN_TEST_INHERITED", "yes");
    let out = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    // Without edits the child gets the host's environment as it is at the spawn (passed as
    // it is, not copied), so a change made after the manager was built reaches it.
    for value in ["yes", "changed"] {
        std::env::set_var("PROCMAN_TEST_INHERITED", value);
        m.run(
            JobSpec::new(kid())
                .args(["env", "PROCMAN_TEST_INHERITED"])
                .log_file(dir.join("host.log")),
        )
        .unwrap();
        assert_eq!(out("host.log"), format!("{value}\n"));
    }
    std::env::set_var("PROCMAN_TEST_INHERITED", "yes");
    m.run(
        JobSpec::new(kid())
            .args(["env", "PROCMAN_X"])
            .env("PROCMAN_X", "42")
            .log_file(dir.join("set.log")),
    )
    .unwrap();
    assert_eq!(out("set.log"), "42\n");
    m.run(
        JobSpec::new(kid())
            .args(["env", "PROCMAN_TEST_INHERITED"])
            .env_clear()
            .env("PROCMAN_Y", "1")
            .log_file(dir.join("clear.log")),
    )
    .unwrap();
    assert_eq!(out("clear.log"), "<unset>\n");
    m.run(
        JobSpec::new(kid())
            .args(["env", "PROCMAN_TEST_INHERITED"])
            .env_remove("PROCMAN_TEST_INHERITED")
            .log_file(dir.join("rm.log")),
    )
    .unwrap();
    assert_eq!(out("rm.log"), "<unset>\n");
    m.run(
        JobSpec::new(kid())
            .arg("pwd")
            .cwd(dir.path())
            .log_file(dir.join("pwd.log")),
    )
    .unwrap();
    assert_eq!(
        out("pwd.log").trim_end(),
        dir.path().canonicalize().unwrap().to_str().unwrap()
    );
    std::fs::write(dir.join("script.sh"), "echo interpreted \"$1\"\n").unwrap();
    let r = m
        .run(
            JobSpec::new(dir.join("script.sh"))
                .interpreter("sh")
                .arg("arg")
                .log_file(dir.join("interp.log")),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert_eq!(out("interp.log"), "interpreted arg\n");
}

#[test]
fn wait_timeout_returns_while_the_job_goes_on() {
    let m = manager(1);
    let id = m
        .start_process(JobSpec::new(kid()).args(["sleep", "30"]))
        .unwrap();
    assert_eq!(
        m.wait_timeout(id, Duration::from_millis(50)).unwrap_err(),
        WaitTimeoutError::Timeout
    );
    assert!(!m.job_data(id).unwrap().status.is_final());
    m.kill_process(id).unwrap();
    assert!(m.wait(id).unwrap().status.is_final());
}

#[test]
fn a_panicking_handler_is_recorded_and_the_dispatcher_goes_on() {
    let m = manager(1);
    let a = m
        .start_process(JobSpec::new("true").on_finish(|_| panic!("handler bug")))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    m.start_process(JobSpec::new("true").on_finish(move |r| tx.send(r.id).unwrap()))
        .unwrap();
    assert!(rx.recv_timeout(LONG).is_ok());
    let r = m.wait(a).unwrap();
    assert_eq!(r.handler_error.as_deref(), Some("handler bug"));
}

#[test]
fn a_long_synchronous_run_has_no_cap_of_its_own() {
    // The Python manager's synchronous call gave up after 5 s while the child ran on.
    let m = manager(1);
    let r = m.run(JobSpec::new(kid()).args(["sleep", "5.5"])).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert!(r.usage.unwrap().wall >= Duration::from_millis(5500));
}
