//! Issue 19, section 1: any `Duration` is accepted and none can panic a thread. A deadline that
//! does not fit in an `Instant` means "no deadline" (DESIGN.md, "The deadline rule").
//!
//! Every test runs real processes in a process of its own (tests/common/isolate.rs): before the
//! fix each of these durations panicked a worker (the job stayed Running for ever and drop hung)
//! or the calling thread, and the isolation turns a hang into a failure after `LIMIT` without
//! disturbing the other tests. Each shows that the job still ends properly, with exactly one
//! handler call, that a `limit(1)` manager stays usable, and that drop or shutdown returns.

mod common;
#[path = "common/isolate.rs"]
mod isolate;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{kid, live_with_argv, marker_secs, TempDir};
use isolate::isolated;
use procman::{
    Builder, Event, JobRecord, JobSpec, JobStatus, ObserveMode, Pipeline, Plugin, PluginInfo,
    PluginStatus, ProcessManager, ProgramTask, RetryOn, ShutdownMode, StartError, Stream, WaitMode,
    WaitTimeoutError,
};

/// The most any isolated test may take: only so that a hang fails instead of blocking.
const LIMIT: Duration = Duration::from_secs(60);
/// Receives wait at most this long: only so that a bug fails a test instead of hanging it.
const GUARD: Duration = Duration::from_secs(30);
/// A duration that fits in an `Instant` (about 146 billion years from any boot time).
const HUGE_BUT_FITS: Duration = Duration::from_secs(1 << 62);
const SIGTERM: i32 = 15;

/// Counts a job's handler calls and hands over the records it was called with.
struct Ends {
    calls: Arc<AtomicUsize>,
    rx: Receiver<JobRecord>,
}

impl Ends {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn record(&self) -> JobRecord {
        self.rx.recv_timeout(GUARD).expect("the job's handler ran")
    }
}

fn counted(spec: JobSpec) -> (JobSpec, Ends) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let c = calls.clone();
    let spec = spec.on_finish(move |r| {
        c.fetch_add(1, Ordering::SeqCst);
        let _ = tx.send(r.clone());
    });
    (spec, Ends { calls, rx })
}

/// `procman-testkid ready-sleep MARKER` (which obeys SIGTERM), and a channel that gets its
/// `ready` line once it surely runs. Its argv is unique, so leftovers can be found.
fn ready_job(marker: &str) -> (JobSpec, Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let spec = JobSpec::new(kid())
        .args(["ready-sleep", marker])
        .observe(move |_, stream, line| {
            if stream == Stream::Stdout && line == b"ready" {
                let _ = tx.lock().unwrap().send(());
            }
        });
    (spec, rx)
}

fn no_process_left(marker: &str) {
    let argv = [kid(), "ready-sleep", marker];
    assert!(
        common::eventually(GUARD, || live_with_argv(&argv).is_empty()),
        "a job process outlived its manager: {:?}",
        live_with_argv(&argv)
    );
}

/// A `limit(1)` manager is still usable: a job runs to its end there now.
fn still_usable(m: &ProcessManager) {
    let r = m
        .run(JobSpec::new(kid()).args(["exit", "0"]))
        .expect("the manager accepts jobs");
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
}

fn build(b: Builder) -> ProcessManager {
    b.limit(1).build().expect("a valid builder")
}

/// Kills a job that surely runs and returns its final record (after its handler returned).
fn kill_running(m: &ProcessManager, spec: JobSpec, ready: &Receiver<()>) -> JobRecord {
    let id = m.start_process(spec).unwrap();
    ready.recv_timeout(GUARD).expect("the job printed ready");
    let _ = m.kill_process(id);
    m.wait(id).unwrap()
}

fn timeout_max_then_kill(mode: WaitMode) {
    let m = build(ProcessManager::builder().wait_mode(mode));
    let marker = marker_secs();
    let (spec, ready) = ready_job(&marker);
    let (spec, ends) = counted(spec.timeout(Duration::MAX));
    let r = kill_running(&m, spec, &ready);
    assert_eq!(r.status, JobStatus::Killed, "{r:?}");
    assert_eq!(r.signal, Some(SIGTERM), "{r:?}");
    assert_eq!(ends.record().status, JobStatus::Killed);
    still_usable(&m);
    // A timeout that does fit (and so a very long poll) lets a job end by itself.
    let (spec, fits) = counted(
        JobSpec::new(kid())
            .args(["exit", "0"])
            .timeout(HUGE_BUT_FITS),
    );
    assert_eq!(m.run(spec).unwrap().status, JobStatus::Finished);
    // Too long for the clock, on a job that ends by itself.
    let (spec, own) = counted(
        JobSpec::new(kid())
            .args(["exit", "0"])
            .timeout(Duration::MAX),
    );
    assert_eq!(m.run(spec).unwrap().status, JobStatus::Finished);
    drop(m);
    assert_eq!((ends.calls(), fits.calls(), own.calls()), (1, 1, 1));
    no_process_left(&marker);
}

#[test]
fn a_max_timeout_never_fires_and_a_kill_still_ends_the_job() {
    isolated(
        "a_max_timeout_never_fires_and_a_kill_still_ends_the_job",
        LIMIT,
        || timeout_max_then_kill(WaitMode::default()),
    );
}

#[test]
fn a_max_timeout_in_portable_wait_mode_never_fires_and_a_kill_still_ends_the_job() {
    isolated(
        "a_max_timeout_in_portable_wait_mode_never_fires_and_a_kill_still_ends_the_job",
        LIMIT,
        || timeout_max_then_kill(WaitMode::Portable),
    );
}

/// With a grace too long for the clock, a kill and a timeout send SIGTERM (and never SIGKILL):
/// a program that obeys TERM ends.
fn grace_max(m: &ProcessManager, with_grace: impl Fn(JobSpec) -> JobSpec) {
    let marker = marker_secs();
    let (spec, ready) = ready_job(&marker);
    let (spec, killed) = counted(with_grace(spec));
    let r = kill_running(m, spec, &ready);
    assert_eq!(
        (r.status, r.signal),
        (JobStatus::Killed, Some(SIGTERM)),
        "{r:?}"
    );
    still_usable(m);

    let (spec, timed) = counted(with_grace(
        JobSpec::new(kid())
            .args(["ready-sleep", &marker])
            .timeout(Duration::from_millis(100)),
    ));
    let r = m.run(spec).unwrap();
    assert_eq!(
        (r.status, r.signal),
        (JobStatus::TimedOut, Some(SIGTERM)),
        "{r:?}"
    );
    still_usable(m);
    assert_eq!(killed.record().status, JobStatus::Killed);
    assert_eq!(timed.record().status, JobStatus::TimedOut);
    assert_eq!((killed.calls(), timed.calls()), (1, 1));
    no_process_left(&marker);
}

#[test]
fn a_max_grace_in_the_spec_sends_term_and_the_job_ends() {
    isolated(
        "a_max_grace_in_the_spec_sends_term_and_the_job_ends",
        LIMIT,
        || {
            let m = build(ProcessManager::builder());
            grace_max(&m, |s| s.grace(Duration::MAX));
            drop(m);
        },
    );
}

#[test]
fn a_max_grace_in_the_builder_sends_term_and_the_job_ends() {
    isolated(
        "a_max_grace_in_the_builder_sends_term_and_the_job_ends",
        LIMIT,
        || {
            let m = build(ProcessManager::builder().grace(Duration::MAX));
            grace_max(&m, |s| s);
            drop(m);
        },
    );
}

#[test]
fn a_max_retry_backoff_waits_without_a_slot_until_a_kill_or_drop_ends_the_job() {
    isolated(
        "a_max_retry_backoff_waits_without_a_slot_until_a_kill_or_drop_ends_the_job",
        LIMIT,
        || {
            let m = build(ProcessManager::builder());
            let events = m.subscribe(1024);
            let retried =
                |spec: JobSpec| counted(spec.retries(1, Duration::MAX, RetryOn::default()));
            let (spec, killed) = retried(JobSpec::new(kid()).args(["exit", "3"]));
            let a = m.start_process(spec).unwrap();
            let (spec, dropped) = retried(JobSpec::new(kid()).args(["exit", "4"]));
            let b = m.start_process(spec).unwrap();
            // Both first attempts end (one slot: one after the other) and wait for a retry.
            let mut waiting = vec![];
            while waiting.len() < 2 {
                match events.recv_timeout(GUARD).expect("both jobs retry") {
                    Event::Retrying {
                        id,
                        attempt,
                        status,
                    } => {
                        assert_eq!((attempt, status), (1, JobStatus::Failed));
                        waiting.push(id);
                    }
                    Event::Finished(r) => panic!("a job ended instead of waiting: {r:?}"),
                    _ => {}
                }
            }
            waiting.sort();
            assert_eq!(waiting, [a, b]);
            // No slot is held while they wait.
            still_usable(&m);
            let pending = m.job_data(a).unwrap();
            assert_eq!((pending.status, pending.attempts), (JobStatus::Pending, 1));

            let _ = m.kill_process(a);
            let r = m.wait(a).unwrap();
            assert_eq!((r.status, r.attempts), (JobStatus::Cancelled, 1), "{r:?}");
            drop(m);
            assert_eq!(dropped.record().status, JobStatus::Cancelled);
            assert_eq!(killed.record().status, JobStatus::Cancelled);
            assert_eq!((killed.calls(), dropped.calls()), (1, 1));
        },
    );
}

fn drain_bound_max(mode: ObserveMode) {
    let m = build(
        ProcessManager::builder()
            .observe_mode(mode)
            .output_drain_bound(Duration::MAX),
    );
    let dir = TempDir::new("drain-max");
    for round in 0..2 {
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = lines.clone();
        let (spec, ends) = counted(
            JobSpec::new(kid())
                .args(["lines", "3"])
                .log_file(dir.join(&format!("{round}.log")))
                .observe(move |_, _, line| seen.lock().unwrap().push(line.to_vec())),
        );
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::Finished, "{r:?}");
        assert_eq!(
            *lines.lock().unwrap(),
            [&b"line 1"[..], b"line 2", b"line 3"],
            "round {round}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(&format!("{round}.log"))).unwrap(),
            "line 1\nline 2\nline 3\n"
        );
        assert_eq!(ends.calls(), 1);
    }
    drop(m);
}

#[test]
fn a_max_drain_bound_with_observed_output_files_completes() {
    isolated(
        "a_max_drain_bound_with_observed_output_files_completes",
        LIMIT,
        || drain_bound_max(ObserveMode::Files),
    );
}

#[test]
fn a_max_drain_bound_with_observed_output_pipes_completes() {
    isolated(
        "a_max_drain_bound_with_observed_output_pipes_completes",
        LIMIT,
        || drain_bound_max(ObserveMode::Pipes),
    );
}

#[test]
fn wait_timeout_with_max_waits_for_the_end_and_with_zero_does_not_wait() {
    isolated(
        "wait_timeout_with_max_waits_for_the_end_and_with_zero_does_not_wait",
        LIMIT,
        || {
            let m = build(ProcessManager::builder());
            let marker = marker_secs();
            let (spec, ready) = ready_job(&marker);
            let (spec, ends) = counted(spec);
            let id = m.start_process(spec).unwrap();
            ready.recv_timeout(GUARD).expect("the job printed ready");
            let start = Instant::now();
            assert!(matches!(
                m.wait_timeout(id, Duration::ZERO),
                Err(WaitTimeoutError::Timeout)
            ));
            assert!(start.elapsed() < GUARD);
            // A waiter with no limit, and a kill from another thread that ends the job.
            let killer = {
                let m = m.handle();
                std::thread::spawn(move || {
                    let _ = m.kill_process(id);
                })
            };
            let r = m.wait_timeout(id, Duration::MAX).unwrap();
            killer.join().unwrap();
            assert_eq!(r.status, JobStatus::Killed, "{r:?}");
            assert_eq!(ends.calls(), 1);
            let r = m
                .wait_timeout(
                    m.start_process(JobSpec::new(kid()).args(["exit", "0"]))
                        .unwrap(),
                    Duration::MAX,
                )
                .unwrap();
            assert_eq!(r.status, JobStatus::Finished);
            still_usable(&m);
            drop(m);
            no_process_left(&marker);
        },
    );
}

#[test]
fn shutdown_drain_with_max_lets_jobs_finish_and_with_zero_cancels_at_once() {
    isolated(
        "shutdown_drain_with_max_lets_jobs_finish_and_with_zero_cancels_at_once",
        LIMIT,
        || {
            let m = build(ProcessManager::builder());
            let (spec, first) = counted(JobSpec::new(kid()).args(["sleep", "0.2"]));
            m.start_process(spec).unwrap();
            let (spec, queued) = counted(JobSpec::new(kid()).args(["exit", "0"]));
            m.start_process(spec).unwrap();
            m.shutdown(ShutdownMode::Drain, Some(Duration::MAX));
            assert_eq!(first.record().status, JobStatus::Finished);
            assert_eq!(queued.record().status, JobStatus::Finished);
            assert_eq!((first.calls(), queued.calls()), (1, 1));
            assert_eq!(
                m.start_process(JobSpec::new("true")).unwrap_err(),
                StartError::ShutDown
            );
            drop(m);

            let m = build(ProcessManager::builder());
            let marker = marker_secs();
            let (spec, ready) = ready_job(&marker);
            let (spec, ends) = counted(spec);
            m.start_process(spec).unwrap();
            ready.recv_timeout(GUARD).expect("the job printed ready");
            m.shutdown(ShutdownMode::Drain, Some(Duration::ZERO));
            assert_eq!(ends.record().status, JobStatus::Killed);
            drop(m);
            assert_eq!(ends.calls(), 1);
            no_process_left(&marker);
        },
    );
}

#[test]
fn plugin_and_pipeline_waits_and_timeouts_accept_max() {
    isolated(
        "plugin_and_pipeline_waits_and_timeouts_accept_max",
        LIMIT,
        || {
            let m = build(ProcessManager::builder());
            let dir = TempDir::new("plugin-max");
            let plugin = Plugin::new(
                &m,
                PluginInfo::new("one", "1", dir.join("one")),
                ProgramTask::new(kid())
                    .args(["exit", "0"])
                    .timeout(Duration::MAX),
            );
            plugin.process().unwrap();
            let end = plugin.wait_timeout(Duration::MAX).unwrap();
            assert_eq!(end.finish_status, PluginStatus::Succeeded, "{end:?}");

            let threads = common::thread_count();
            let pipeline = Pipeline::new(&m, PluginInfo::new("two", "2", dir.join("two")));
            pipeline.set_timeout(Duration::MAX).unwrap();
            let child = pipeline
                .make_plugin_object(ProgramTask::new(kid()).args(["exit", "0"]))
                .unwrap();
            pipeline.connect_signal(&child, |pipeline, _, status| {
                pipeline.report_status(status.finish_status, "the child ended");
            });
            child.process().unwrap();
            let end = pipeline.wait_timeout(Duration::MAX).unwrap();
            assert_eq!(end.finish_status, PluginStatus::Succeeded, "{end:?}");
            // The watchdog of a timeout that never fires exits once the pipeline has finished.
            assert!(
                common::eventually(GUARD, || common::thread_count() <= threads),
                "the pipeline's watchdog thread is still there"
            );
            still_usable(&m);
            drop(m);
        },
    );
}
