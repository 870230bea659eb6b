//! Tests for the plugin / pipeline layer (`Plugin`, `Pipeline`, `ProgramTask`, `Task`).
//!
//! The first group ports CCP4i2's plugin tests; the `regression_*` tests pin the faults of
//! CCP4i2's plugin base named in issue 3; the last group runs the refinement pipeline example
//! (included below as a module) against its stand-in programs. Every test drives real
//! processes and synchronises with channels, FIFOs and waits, never with sleeps. Receives use
//! a generous timeout only so that a bug fails the test instead of hanging it.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use procman::{
    AlreadyStarted, FinishStatus, JobRecord, JobSpec, JobStatus, Pipeline, PipelineFinished,
    Plugin, PluginInfo, PluginStatus, PluginWaitError, ProcessManager, ProgramTask, Signal, Task,
};

#[allow(dead_code)] // its `main` and printing are for the command line
#[path = "../examples/refinement_pipeline.rs"]
mod refinement_pipeline;

/// Only so that a bug fails a test instead of hanging it; never a synchronisation.
const HANG_GUARD: Duration = Duration::from_secs(30);

fn manager() -> ProcessManager {
    ProcessManager::builder()
        .limit(4)
        .grace(Duration::from_millis(500))
        .build()
        .unwrap()
}

/// A fresh, empty work directory for one test.
fn work_dir(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("procman-plugin-test-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn testkid() -> &'static str {
    env!("CARGO_BIN_EXE_procman-testkid")
}

fn sh(script: &str) -> ProgramTask {
    ProgramTask::new("sh").args(["-c", script])
}

/// Every emit of `signal`, in order.
fn listen(signal: &Signal<FinishStatus>) -> Receiver<FinishStatus> {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    signal.connect(move |status| {
        let _ = tx.lock().unwrap().send(status.clone());
    });
    rx
}

fn standins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/standins")
}

// ------------------------------------------------------------ ported from CCP4i2's tests

#[test]
fn a_single_plugin_emits_succeeded() {
    let m = manager();
    let dir = work_dir("single");
    let plugin = Plugin::new(
        &m,
        PluginInfo::new("echo", "5", &dir),
        ProgramTask::new("echo").arg("hello"),
    );
    let rx = listen(plugin.finished());
    let started = plugin.process().unwrap();
    assert!(matches!(
        started,
        PluginStatus::Running | PluginStatus::Succeeded
    ));

    let end = rx.recv_timeout(HANG_GUARD).unwrap();
    assert_eq!(end.finish_status, PluginStatus::Succeeded);
    assert_eq!(end.job_id, "5");
    assert_eq!(end.name, "echo");
    assert_eq!(end.pid, plugin.job());
    assert!(end.pid.is_some());
    assert_eq!(end.message, "exited with code 0");
    assert_eq!(plugin.wait().unwrap(), end);
    assert_eq!(plugin.status(), PluginStatus::Succeeded);
    assert_eq!(plugin.record().unwrap().status, JobStatus::Finished);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failing_command_emits_failed() {
    let m = manager();
    let dir = work_dir("failing");
    let cases: Vec<(ProgramTask, &str, bool)> = vec![
        (sh("echo oops >&2; exit 3"), "exited with code 3", true),
        (
            ProgramTask::new("/no/such/program"),
            "never started: ",
            true,
        ),
        (
            sh("true").output_file("missing.pdb"),
            "was not written",
            true,
        ),
        (
            sh("true").input_file("absent.mtz"),
            "input file",
            false, // no job is submitted at all
        ),
    ];
    for (n, (task, message, has_job)) in cases.into_iter().enumerate() {
        let info = PluginInfo::new("bad", "1", dir.join(format!("case{n}")));
        let plugin = Plugin::new(&m, info, task);
        let rx = listen(plugin.finished());
        plugin.process().unwrap();
        let end = rx.recv_timeout(HANG_GUARD).unwrap();
        assert_eq!(end.finish_status, PluginStatus::Failed, "case {n}: {end:?}");
        assert!(end.message.contains(message), "case {n}: {end:?}");
        assert_eq!(end.pid.is_some(), has_job, "case {n}: {end:?}");
        assert_eq!(plugin.wait().unwrap(), end);
    }
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_two_step_pipeline_chains_through_finished() {
    let m = manager();
    let dir = work_dir("two-step");
    let pipeline = Pipeline::new(&m, PluginInfo::new("chain", "3", &dir));
    let order = Arc::new(Mutex::new(Vec::new()));

    let first = pipeline
        .make_plugin_object(sh("echo one > out.txt").output_file("out.txt"))
        .unwrap();
    let order2 = order.clone();
    pipeline.connect_signal(&first, move |pipeline, first, end| {
        order2.lock().unwrap().push(end.job_id.clone());
        // The second step reads the first one's output.
        let input = first.info().path("out.txt");
        let second = pipeline
            .make_plugin_object(
                ProgramTask::new("cat")
                    .arg(&input)
                    .input_file(&input)
                    .output_file("log.txt"),
            )
            .unwrap();
        let order3 = order2.clone();
        pipeline.connect_signal(&second, move |pipeline, _, end| {
            order3.lock().unwrap().push(end.job_id.clone());
            pipeline.report_status(PluginStatus::Succeeded, "done");
        });
        second.process().unwrap();
    });
    first.process().unwrap();

    let end = pipeline.wait().unwrap();
    assert_eq!(end.finish_status, PluginStatus::Succeeded);
    assert_eq!(end.job_id, "3");
    assert_eq!(end.pid, None);
    assert_eq!(*order.lock().unwrap(), ["3.1", "3.2"]);
    assert_eq!(pipeline.child_count(), 2);
    assert_eq!(
        fs::read_to_string(dir.join("job_2/log.txt")).unwrap(),
        "one\n"
    );
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failure_stops_the_chain_and_the_second_plugin_is_never_made() {
    let m = manager();
    let dir = work_dir("stops");
    let pipeline = Pipeline::new(&m, PluginInfo::new("chain", "1", &dir));
    let handler_ran = Arc::new(AtomicBool::new(false));

    let first = pipeline.make_plugin_object(sh("exit 1")).unwrap();
    let ran = handler_ran.clone();
    pipeline.connect_signal(&first, move |pipeline, _, _| {
        ran.store(true, Ordering::SeqCst);
        let second = pipeline.make_plugin_object(sh("true")).unwrap();
        second.process().unwrap();
    });
    first.process().unwrap();

    let end = pipeline.wait().unwrap();
    assert_eq!(end.finish_status, PluginStatus::Failed);
    assert_eq!(end.message, "step chain_1 (1.1) failed: exited with code 1");
    assert!(!handler_ran.load(Ordering::SeqCst));
    assert_eq!(pipeline.child_count(), 1);
    assert!(!dir.join("job_2").exists());
    assert_eq!(
        pipeline.make_plugin_object(sh("true")).unwrap_err(),
        PipelineFinished
    );
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_plugins_log_holds_the_programs_output() {
    let m = manager();
    let dir = work_dir("log");
    let task = ProgramTask::new(testkid()).args(["lines", "3"]);
    let plugin = Plugin::new(&m, PluginInfo::new("kid", "1", &dir), task);
    let end = plugin.process_sync().unwrap();
    assert_eq!(end.finish_status, PluginStatus::Succeeded);
    assert_eq!(plugin.info().log_file(), dir.join("log.txt"));
    assert_eq!(
        fs::read_to_string(dir.join("log.txt")).unwrap(),
        "line 1\nline 2\nline 3\n"
    );

    // Standard error goes beside it, and the keyword script is kept as com.txt.
    let task = sh("cat; echo warn >&2")
        .script_line("NCYCLES 5")
        .script_line("END");
    let plugin = Plugin::new(&m, PluginInfo::new("cat", "2", dir.join("cat")), task);
    plugin.process_sync().unwrap();
    let log = |f: &str| fs::read_to_string(dir.join("cat").join(f)).unwrap();
    assert_eq!(log("log.txt"), "NCYCLES 5\nEND\n");
    assert_eq!(log("log_err.txt"), "warn\n");
    assert_eq!(log("com.txt"), "NCYCLES 5\nEND\n");
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn three_plugins_started_together_all_emit_succeeded() {
    let m = manager();
    let dir = work_dir("three");
    let (tx, rx) = mpsc::channel();
    let mut plugins = Vec::new();
    for n in 1..=3 {
        let info = PluginInfo::new(format!("p{n}"), n.to_string(), dir.join(n.to_string()));
        let plugin = Plugin::new(&m, info, ProgramTask::new(testkid()).args(["lines", "2"]));
        let tx = Mutex::new(tx.clone());
        plugin.finished().connect(move |end| {
            tx.lock().unwrap().send(end.clone()).unwrap();
        });
        plugins.push(plugin);
    }
    for p in &plugins {
        p.process().unwrap();
    }
    let mut ends: Vec<FinishStatus> = (0..3)
        .map(|_| rx.recv_timeout(HANG_GUARD).unwrap())
        .collect();
    ends.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    assert_eq!(
        ends.iter().map(|e| e.job_id.as_str()).collect::<Vec<_>>(),
        ["1", "2", "3"]
    );
    assert!(ends
        .iter()
        .all(|e| e.finish_status == PluginStatus::Succeeded));
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // The same through a pipeline's join.
    let pipeline = Pipeline::new(&m, PluginInfo::new("scan", "9", dir.join("scan")));
    let children: Vec<_> = (0..3)
        .map(|_| pipeline.make_plugin_object(sh("echo ok")).unwrap())
        .collect();
    pipeline.connect_all(&children, |pipeline, children| {
        let all = children
            .iter()
            .all(|c| c.finish_status().unwrap().finish_status == PluginStatus::Succeeded);
        pipeline.report_status(PluginStatus::Succeeded, format!("all three: {all}"));
    });
    for c in &children {
        c.process().unwrap();
    }
    assert_eq!(pipeline.wait().unwrap().message, "all three: true");
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn connect_signal_connects_a_handler_that_a_manual_emit_reaches() {
    let m = manager();
    let dir = work_dir("manual");
    let pipeline = Pipeline::new(&m, PluginInfo::new("pipe", "4", &dir));
    let child = pipeline.make_plugin_object(sh("true")).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    pipeline.connect_signal(&child, move |pipeline, child, end| {
        let seen = (
            pipeline.info().name.clone(),
            child.info().job_number.clone(),
            end.clone(),
        );
        tx.lock().unwrap().send(seen).unwrap();
    });
    let manual = FinishStatus {
        finish_status: PluginStatus::Succeeded,
        job_id: "4.1".into(),
        name: "pipe_1".into(),
        pid: None,
        message: "emitted by hand".into(),
    };
    let report = child.finished().emit(&manual);
    assert_eq!(report.called, 1);
    // Slots run on the emitting thread, so the handler has already run.
    let (name, job, end) = rx.try_recv().unwrap();
    assert_eq!((name.as_str(), job.as_str()), ("pipe", "4.1"));
    assert_eq!(end, manual);
    // The child itself never ran.
    assert_eq!(child.job(), None);
    assert_eq!(pipeline.status(), PluginStatus::Running);

    // A manual FAILED ends the pipeline at once (it has no running child).
    let failed = FinishStatus {
        finish_status: PluginStatus::Failed,
        message: "by hand".into(),
        ..manual
    };
    child.finished().emit(&failed);
    assert!(rx.try_recv().is_err());
    let end = pipeline.wait().unwrap();
    assert_eq!(end.finish_status, PluginStatus::Failed);
    assert_eq!(end.message, "step pipe_1 (4.1) failed: by hand");
    fs::remove_dir_all(&dir).ok();
}

/// `connect_signal_once` takes an `FnOnce` (here it moves the next step in and consumes a
/// token), runs it exactly once although eight threads emit the child's `finished` at once,
/// and is disconnected after that first call.
#[test]
fn connect_signal_once_runs_its_handler_exactly_once_under_concurrent_emits() {
    let m = manager();
    let dir = work_dir("once-slot");
    let pipeline = Pipeline::new(&m, PluginInfo::new("pipe", "6", &dir));
    let child = pipeline.make_plugin_object(sh("true")).unwrap();
    let next = pipeline
        .make_plugin_object(sh("echo two > two.txt").output_file("two.txt"))
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let (token, consumed) = mpsc::channel::<()>();
    let counter = calls.clone();
    pipeline.connect_signal_once(&child, move |pipeline, _, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        drop(token); // consumed: only an FnOnce may do this
        pipeline.connect_signal(&next, |pipeline, _, _| {
            pipeline.report_status(PluginStatus::Succeeded, "second step ran");
        });
        next.process().unwrap(); // `next` was moved in, too
    });
    assert_eq!(child.finished().connection_count(), 1);
    let manual = FinishStatus {
        finish_status: PluginStatus::Succeeded,
        job_id: "6.1".into(),
        name: "pipe_1".into(),
        pid: None,
        message: "emitted by hand".into(),
    };
    let start = Arc::new(std::sync::Barrier::new(8));
    let emitters: Vec<_> = (0..8)
        .map(|_| {
            let (child, manual, start) = (child.clone(), manual.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                child.finished().emit(&manual).called
            })
        })
        .collect();
    let called: usize = emitters.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(called, 1, "one emit in eight called the slot");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        consumed.try_recv(),
        Err(TryRecvError::Disconnected),
        "the token was dropped"
    );
    assert_eq!(
        child.finished().connection_count(),
        0,
        "disconnected after its call"
    );
    child.finished().emit(&manual);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let end = pipeline.wait_timeout(HANG_GUARD).unwrap();
    assert_eq!(end.message, "second step ran");
    assert_eq!(
        fs::read_to_string(dir.join("job_2/two.txt")).unwrap(),
        "two\n"
    );
    fs::remove_dir_all(&dir).ok();
}

// --------------------------------------------------- regressions: CCP4i2's plugin base faults

/// Opens `fifo` (blocking until the other end opens it too) on a helper thread, so that a
/// program that never opens it fails the test instead of hanging it.
fn open_fifo(fifo: PathBuf, write: bool) -> fs::File {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let file = fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(fifo)
            .unwrap();
        tx.send(file).unwrap();
    });
    rx.recv_timeout(HANG_GUARD)
        .expect("the program never opened the FIFO")
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A task that notes when its post-processing ran.
struct Noted {
    inner: ProgramTask,
    post_processed: Arc<AtomicBool>,
}

impl Task for Noted {
    fn make_command_and_script(&mut self, info: &PluginInfo) -> Result<JobSpec, String> {
        self.inner.make_command_and_script(info)
    }

    fn process_output_files(
        &mut self,
        info: &PluginInfo,
        record: &JobRecord,
    ) -> Result<PluginStatus, String> {
        self.post_processed.store(true, Ordering::SeqCst);
        self.inner.process_output_files(info, record)
    }
}

/// A pipeline whose caller drops it mid-run still runs every step and emits `finished` (its
/// running step holds it), and is freed once it has finished.
#[test]
fn a_dropped_pipeline_runs_every_step_emits_finished_and_is_then_freed() {
    let m = manager();
    let dir = work_dir("dropped");
    mkfifo(&dir.join("go.fifo"));
    let pipeline = Pipeline::new(&m, PluginInfo::new("orphan", "9", &dir));
    let ends = listen(pipeline.finished());
    let ran = Arc::new(Mutex::new(Vec::new()));
    let first = pipeline
        .make_plugin_object(sh("read go < ../go.fifo"))
        .unwrap();
    let ran1 = ran.clone();
    pipeline.connect_signal(&first, move |pipeline, _, end| {
        ran1.lock().unwrap().push(end.job_id.clone());
        let Ok(second) = pipeline.make_plugin_object(sh("true")) else {
            return;
        };
        let ran2 = ran1.clone();
        pipeline.connect_signal(&second, move |pipeline, _, end| {
            ran2.lock().unwrap().push(end.job_id.clone());
            let Ok(third) = pipeline.make_plugin_object(sh("true")) else {
                return;
            };
            let ran3 = ran2.clone();
            pipeline.connect_signal(&third, move |pipeline, _, end| {
                ran3.lock().unwrap().push(end.job_id.clone());
                pipeline.report_status(PluginStatus::Succeeded, "three steps");
            });
            third.process().unwrap();
        });
        second.process().unwrap();
    });
    first.process().unwrap();
    let weak = Arc::downgrade(&pipeline);
    // The caller lets go while the first step runs (blocked on the FIFO).
    drop(first);
    drop(pipeline);
    assert!(
        weak.upgrade().is_some(),
        "the running step holds the pipeline"
    );
    open_fifo(dir.join("go.fifo"), true)
        .write_all(b"go\n")
        .unwrap();

    let end = ends
        .recv_timeout(HANG_GUARD)
        .expect("finished was never emitted");
    assert_eq!(end.finish_status, PluginStatus::Succeeded);
    assert_eq!(end.message, "three steps");
    assert_eq!(*ran.lock().unwrap(), ["9.1", "9.2", "9.3"]);
    m.wait_all(); // the last step's completion handler, which held the pipeline, has returned
    assert!(
        weak.upgrade().is_none(),
        "the finished pipeline was not freed"
    );
    fs::remove_dir_all(&dir).ok();
}

/// CCP4i2's plugin base emitted `finished` with SUCCEEDED as soon as the process started, and
/// again at the real end. Here: nothing while the program runs (held by a FIFO), then exactly
/// one emit, after the program's last action, the final record and post-processing.
#[test]
fn regression_finished_is_emitted_exactly_once_and_never_before_the_process_ends() {
    let m = manager();
    let dir = work_dir("once");
    mkfifo(&dir.join("started.fifo"));
    mkfifo(&dir.join("go.fifo"));
    let post_processed = Arc::new(AtomicBool::new(false));
    let task = Noted {
        inner: sh("echo started > started.fifo; read go < go.fifo; echo done > end.txt")
            .output_file("end.txt"),
        post_processed: post_processed.clone(),
    };
    let plugin = Plugin::new(&m, PluginInfo::new("held", "1", &dir), task);

    let emits = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let (handle, end_file, flag, count) = (
        m.handle(),
        dir.join("end.txt"),
        post_processed.clone(),
        emits.clone(),
    );
    plugin.finished().connect(move |end| {
        count.fetch_add(1, Ordering::SeqCst);
        // What was true at the moment of the emit.
        let record = handle.job_data(end.pid.unwrap()).unwrap();
        let seen = (
            end.clone(),
            record.status,
            end_file.exists(),
            flag.load(Ordering::SeqCst),
        );
        tx.lock().unwrap().send(seen).unwrap();
    });

    assert_eq!(plugin.process().unwrap(), PluginStatus::Running);
    let mut started = String::new();
    open_fifo(dir.join("started.fifo"), false)
        .read_to_string(&mut started)
        .unwrap();
    assert_eq!(started, "started\n");
    // The program is running and blocked: nothing may have been emitted.
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(emits.load(Ordering::SeqCst), 0);
    assert_eq!(plugin.status(), PluginStatus::Running);
    assert_eq!(plugin.finish_status(), None);
    assert_eq!(
        plugin.wait_timeout(Duration::ZERO),
        Err(PluginWaitError::Timeout)
    );
    assert!(!post_processed.load(Ordering::SeqCst));

    open_fifo(dir.join("go.fifo"), true)
        .write_all(b"go\n")
        .unwrap();
    let (end, job_status, program_done, post_done) = rx.recv_timeout(HANG_GUARD).unwrap();
    assert_eq!(end.finish_status, PluginStatus::Succeeded);
    assert_eq!(job_status, JobStatus::Finished, "the record was final");
    assert!(program_done, "the program's last action came first");
    assert!(post_done, "post-processing came first");

    assert_eq!(plugin.wait().unwrap(), end);
    m.wait_all();
    assert_eq!(emits.load(Ordering::SeqCst), 1);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    // And a plugin runs once: a second start is refused and emits nothing.
    assert_eq!(plugin.process(), Err(AlreadyStarted));
    assert_eq!(plugin.process_sync(), Err(AlreadyStarted));
    assert_eq!(emits.load(Ordering::SeqCst), 1);
    fs::remove_dir_all(&dir).ok();
}

/// The same guarantee in synchronous mode, which CCP4i2 hardly ever exercised.
#[test]
fn regression_process_sync_emits_once_after_the_end() {
    let m = manager();
    let dir = work_dir("sync");
    let plugin = Plugin::new(
        &m,
        PluginInfo::new("sync", "1", &dir),
        sh("echo x > out.txt").output_file("out.txt"),
    );
    let emits = Arc::new(Mutex::new(Vec::new()));
    let (seen, handle) = (emits.clone(), m.handle());
    plugin.finished().connect(move |end| {
        let status = handle.job_data(end.pid.unwrap()).unwrap().status;
        seen.lock()
            .unwrap()
            .push((end.clone(), status, thread::current().id()));
    });
    let end = plugin.process_sync().unwrap();
    let emits = emits.lock().unwrap();
    assert_eq!(emits.len(), 1);
    assert_eq!(emits[0].0, end);
    assert_eq!(emits[0].1, JobStatus::Finished);
    assert_eq!(
        emits[0].2,
        thread::current().id(),
        "emitted on the calling thread"
    );
    assert_eq!(end.finish_status, PluginStatus::Succeeded);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_crash_is_described_with_its_signal() {
    let m = manager();
    let dir = work_dir("segv");
    let plugin = Plugin::new(
        &m,
        PluginInfo::new("segv", "1", &dir),
        // (Not `procman-testkid segv`: its raise(SIGSEGV) lands in the Rust runtime's SIGSEGV
        // handler and the kid exits 0.)
        sh("kill -SEGV $$"),
    );
    let end = plugin.process_sync().unwrap();
    assert_eq!(end.finish_status, PluginStatus::Failed);
    assert_eq!(end.message, "terminated by SIGSEGV (signal 11)");
    assert_eq!(plugin.record().unwrap().status, JobStatus::Crashed);
    fs::remove_dir_all(&dir).ok();
}

struct Panicky;

impl Task for Panicky {
    fn make_command_and_script(&mut self, _: &PluginInfo) -> Result<JobSpec, String> {
        Ok(JobSpec::new("true"))
    }

    fn process_output_files(
        &mut self,
        _: &PluginInfo,
        _: &JobRecord,
    ) -> Result<PluginStatus, String> {
        panic!("bad log");
    }
}

#[test]
fn a_panicking_post_process_still_emits_failed_once() {
    let m = manager();
    let dir = work_dir("panic");
    let plugin = Plugin::new(&m, PluginInfo::new("p", "1", &dir), Panicky);
    let rx = listen(plugin.finished());
    plugin.process().unwrap();
    let end = rx.recv_timeout(HANG_GUARD).unwrap();
    assert_eq!(end.finish_status, PluginStatus::Failed);
    assert_eq!(end.message, "process_output_files panicked: bad log");
    m.wait_all();
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_killed_plugin_ends_interrupted() {
    let m = manager();
    let dir = work_dir("kill");
    let plugin = Plugin::new(
        &m,
        PluginInfo::new("sleeper", "1", &dir),
        ProgramTask::new(testkid()).args(["sleep", "30"]),
    );
    let rx = listen(plugin.finished());
    plugin.process().unwrap();
    assert!(plugin.kill());
    let end = rx.recv_timeout(HANG_GUARD).unwrap();
    assert_eq!(end.finish_status, PluginStatus::Interrupted);
    assert!(
        end.message == "cancelled before it started" || end.message.starts_with("killed"),
        "{end:?}"
    );
    assert!(!plugin.kill(), "already ended");

    // Killed before it starts: no job at all, still one INTERRUPTED emit.
    let plugin = Plugin::new(&m, PluginInfo::new("never", "2", dir.join("2")), sh("true"));
    let rx = listen(plugin.finished());
    assert!(plugin.kill());
    assert_eq!(plugin.process().unwrap(), PluginStatus::Interrupted);
    let end = rx.try_recv().unwrap();
    assert_eq!(end.finish_status, PluginStatus::Interrupted);
    assert_eq!(end.pid, None);
    assert_eq!(m.snapshot().counts.iter().map(|c| c.1).sum::<usize>(), 1);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_pipeline_timeout_terminates_its_running_children_before_it_finishes() {
    let m = manager();
    let dir = work_dir("timeout");
    let pipeline = Pipeline::new(&m, PluginInfo::new("slow", "1", &dir));
    let events = Arc::new(Mutex::new(Vec::new()));
    let child = pipeline
        .make_plugin_object(ProgramTask::new(testkid()).args(["sleep", "30"]))
        .unwrap();
    let log = events.clone();
    child.finished().connect(move |end| {
        log.lock()
            .unwrap()
            .push(format!("child {}", end.finish_status));
    });
    let (log, handle, weak) = (events.clone(), m.handle(), Arc::downgrade(&child));
    pipeline.finished().connect(move |end| {
        let job = weak.upgrade().unwrap().job().unwrap();
        let job_status = handle.job_data(job).unwrap().status;
        log.lock().unwrap().push(format!(
            "pipeline {} (child job {job_status})",
            end.finish_status
        ));
    });
    pipeline.connect_signal(&child, |pipeline, _, _| {
        pipeline.report_status(PluginStatus::Succeeded, "too early");
    });
    child.process().unwrap();
    pipeline.set_timeout(Duration::from_millis(300)).unwrap();

    let end = pipeline.wait().unwrap();
    assert_eq!(end.finish_status, PluginStatus::Failed);
    assert_eq!(end.message, "timed out after 300ms");
    let events = events.lock().unwrap();
    assert_eq!(events[0], "child INTERRUPTED");
    assert!(
        events[1] == "pipeline FAILED (child job killed)"
            || events[1] == "pipeline FAILED (child job cancelled)",
        "{events:?}"
    );
    assert_eq!(events.len(), 2);
    assert_eq!(pipeline.running_children(), 0);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn terminate_kills_every_running_child_and_later_steps_never_start() {
    let m = manager();
    let dir = work_dir("terminate");
    let pipeline = Pipeline::new(&m, PluginInfo::new("scan", "2", &dir));
    let children: Vec<_> = (0..3)
        .map(|_| {
            pipeline
                .make_plugin_object(ProgramTask::new(testkid()).args(["sleep", "30"]))
                .unwrap()
        })
        .collect();
    let late = pipeline.make_plugin_object(sh("true")).unwrap();
    let joined = Arc::new(AtomicBool::new(false));
    let j = joined.clone();
    pipeline.connect_all(&children, move |_, _| j.store(true, Ordering::SeqCst));
    for c in &children {
        c.process().unwrap();
    }
    assert_eq!(pipeline.running_children(), 3);
    assert!(pipeline.terminate());
    assert!(!pipeline.terminate(), "only once");

    let end = pipeline.wait().unwrap();
    assert_eq!(end.finish_status, PluginStatus::Interrupted);
    assert_eq!(end.message, "terminated");
    for c in &children {
        assert_eq!(c.wait().unwrap().finish_status, PluginStatus::Interrupted);
    }
    assert!(!joined.load(Ordering::SeqCst));
    // A child made earlier cannot start any more.
    assert_eq!(late.process().unwrap(), PluginStatus::Interrupted);
    assert_eq!(late.job(), None);
    assert_eq!(pipeline.running_children(), 0);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn waiting_inside_a_handler_is_refused_and_process_sync_works_there() {
    let m = manager();
    let dir = work_dir("in-handler");
    let pipeline = Pipeline::new(&m, PluginInfo::new("p", "1", &dir));
    let first = pipeline.make_plugin_object(sh("true")).unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    pipeline.connect_signal(&first, move |pipeline, _, _| {
        // On the dispatcher thread: waiting for anything unfinished could never return.
        let second = pipeline.make_plugin_object(sh("echo sync")).unwrap();
        let refused = (pipeline.wait().unwrap_err(), second.wait().unwrap_err());
        // A synchronous child is fine here.
        let end = second.process_sync().unwrap();
        pipeline.report_status(end.finish_status, "sync child done");
        tx.lock().unwrap().send((refused, end)).unwrap();
    });
    first.process().unwrap();
    let (refused, end) = rx.recv_timeout(HANG_GUARD).unwrap();
    assert_eq!(
        refused,
        (PluginWaitError::InHandler, PluginWaitError::InHandler)
    );
    assert_eq!(end.finish_status, PluginStatus::Succeeded);
    assert_eq!(end.job_id, "1.2");
    assert_eq!(pipeline.wait().unwrap().message, "sync child done");
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn children_get_job_directories_names_and_numbers() {
    let m = manager();
    let dir = work_dir("names");
    let pipeline = Pipeline::new(&m, PluginInfo::new("prosmart_refmac", "12", &dir));
    let a = pipeline.make_plugin_object(sh("pwd")).unwrap();
    let b = pipeline.make_plugin_object(sh("pwd")).unwrap();
    assert_eq!(a.info().work_dir, dir.join("job_1"));
    assert_eq!(b.info().name, "prosmart_refmac_2");
    assert_eq!(b.info().job_number, "12.2");
    // The program runs in its work directory.
    b.process_sync().unwrap();
    let pwd = fs::read_to_string(dir.join("job_2/log.txt")).unwrap();
    assert_eq!(
        Path::new(pwd.trim()).canonicalize().unwrap(),
        dir.join("job_2").canonicalize().unwrap()
    );
    fs::remove_dir_all(&dir).ok();
}

// ------------------------------------------------ the refinement pipeline and its stand-ins

#[test]
fn the_refinement_pipeline_succeeds_and_keeps_the_best_weight() {
    let m = manager();
    let dir = work_dir("refinement");
    let report = refinement_pipeline::run_refinement(&m, &dir, None);
    assert_eq!(
        report.end.finish_status,
        PluginStatus::Succeeded,
        "{report:?}"
    );
    assert!(report.skipped.is_empty());
    let labels: Vec<&str> = report.steps.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "prosmart",
            "refmac w=0.10",
            "refmac w=0.20",
            "refmac w=0.30",
            "refmac w=0.50",
            "waters",
            "refmac w=0.30",
            "validate"
        ]
    );
    assert!(report
        .steps
        .iter()
        .all(|s| s.status == PluginStatus::Succeeded));
    assert_eq!(report.best_weight, Some(0.3));
    // Statistics parsed from the logs.
    assert!(report.steps[0].detail.contains("Restraints generated"));
    assert!(report.steps[6].detail.contains("(8 cycles)"));
    assert!(report.steps[7]
        .detail
        .contains("Ramachandran favoured 97.4%"));
    assert_eq!(report.end.message, "final Rfree 0.2285");
    assert!(dir.join("job_8/validation.txt").exists());
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failure_injected_in_any_step_ends_the_refinement_pipeline_failed_and_skips_the_rest() {
    let m = manager();
    for (n, step) in refinement_pipeline::STEPS.iter().enumerate() {
        let dir = work_dir(&format!("inject-{step}"));
        let report = refinement_pipeline::run_refinement(&m, &dir, Some(step));
        assert_eq!(
            report.end.finish_status,
            PluginStatus::Failed,
            "{step}: {report:?}"
        );
        assert!(
            report.end.message.contains("failed: exited with code 1"),
            "{report:?}"
        );
        assert_eq!(
            report.skipped,
            refinement_pipeline::STEPS[n + 1..],
            "{step}"
        );
        let failed: Vec<_> = report
            .steps
            .iter()
            .filter(|s| s.status == PluginStatus::Failed)
            .collect();
        assert_eq!(failed.len(), 1, "{step}: {report:?}");
        assert_eq!(failed[0].step, *step);
        assert!(failed[0].detail.contains("(FAIL requested)"), "{failed:?}");
        // Nothing of the failed step's successors was created on disk.
        let made = report.steps.len();
        assert!(!dir.join(format!("job_{}", made + 1)).exists());
        fs::remove_dir_all(&dir).ok();
    }
}

/// The start of the same chain built directly on the library API: prosmart told to fail, so
/// refmac is never made.
#[test]
fn a_failing_prosmart_stand_in_stops_the_chain_before_refmac() {
    let m = manager();
    let dir = work_dir("prosmart-fails");
    fs::write(dir.join("in.pdb"), "ATOM      1  CA  ALA A   1\n").unwrap();
    let pipeline = Pipeline::new(&m, PluginInfo::new("prosmart_refmac", "1", &dir));
    let prosmart = pipeline
        .make_plugin_object(
            ProgramTask::new(standins().join("prosmart"))
                .interpreter("sh")
                .arg("restraints.txt")
                .script_line(format!("XYZIN {}", dir.join("in.pdb").display()))
                .script_line("FAIL yes")
                .output_file("restraints.txt"),
        )
        .unwrap();
    let standins = standins();
    pipeline.connect_signal(&prosmart, move |pipeline, prosmart, _| {
        let refmac = pipeline
            .make_plugin_object(
                ProgramTask::new(standins.join("refmac"))
                    .interpreter("sh")
                    .arg("refined.pdb")
                    .script_line(format!(
                        "LIBIN {}",
                        prosmart.info().path("restraints.txt").display()
                    )),
            )
            .unwrap();
        refmac.process().unwrap();
    });
    prosmart.process().unwrap();
    let end = pipeline.wait().unwrap();
    assert_eq!(end.finish_status, PluginStatus::Failed);
    assert_eq!(pipeline.child_count(), 1);
    assert!(!dir.join("job_2").exists());
    assert!(fs::read_to_string(dir.join("job_1/log.txt"))
        .unwrap()
        .contains("Atoms read: 1"));
    assert!(fs::read_to_string(dir.join("job_1/log_err.txt"))
        .unwrap()
        .contains("no homologous structure found"));
    fs::remove_dir_all(&dir).ok();
}

/// Connections hold the pipeline and the children weakly: once the run is over and the
/// handlers have returned, dropping the pipeline frees every child, even when a join's
/// handler never ran.
#[test]
fn a_finished_pipeline_and_its_children_are_freed() {
    let m = manager();
    let dir = work_dir("freed");
    let pipeline = Pipeline::new(&m, PluginInfo::new("p", "1", &dir));
    let children: Vec<_> = [sh("true"), sh("exit 2")]
        .into_iter()
        .map(|t| pipeline.make_plugin_object(t).unwrap())
        .collect();
    pipeline.connect_signal(&children[0], |_, _, _| {});
    pipeline.connect_all(&children, |_, _| unreachable!("a child failed"));
    for c in &children {
        c.process().unwrap();
    }
    assert_eq!(pipeline.wait().unwrap().finish_status, PluginStatus::Failed);
    m.wait_all(); // the completion handlers (which hold their plugin) have returned
    let weak_children: Vec<_> = children.iter().map(Arc::downgrade).collect();
    let weak_pipeline = Arc::downgrade(&pipeline);
    drop(children);
    drop(pipeline);
    assert!(weak_pipeline.upgrade().is_none());
    assert!(weak_children.iter().all(|w| w.upgrade().is_none()));
    fs::remove_dir_all(&dir).ok();
}
