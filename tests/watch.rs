//! Watching jobs: resource usage, live output observers, events and snapshots (issue 5).
//!
//! No sleep is used to synchronise: observers and events are waited for on channels, files are
//! polled only for conditions nothing can signal (a log file growing), and every time limit is a
//! generous upper bound, not an expected duration.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, kid, pattern, TempDir};
use crossbeam_channel::{unbounded, RecvTimeoutError};
use procman::{
    Event, JobId, JobSpec, JobStatus, ObserveMode, ProcessManager, Stream, WaitMode,
    OBSERVER_LINE_CAP,
};

const MIB: u64 = 1024 * 1024;
const LONG: Duration = Duration::from_secs(30);

/// Both ways observed output can travel; tests of observers run under each.
const OBSERVE_MODES: [ObserveMode; 2] = [ObserveMode::Files, ObserveMode::Pipes];

fn observing(mode: ObserveMode) -> ProcessManager {
    ProcessManager::builder()
        .observe_mode(mode)
        .build()
        .unwrap()
}

/// Everything an observer saw, per stream, in arrival order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Piece>>>);

/// One observed piece of output and its stream.
type Piece = (Stream, Vec<u8>);

impl Seen {
    fn observer(&self) -> impl Fn(JobId, Stream, &[u8]) + Send + Sync + 'static {
        let seen = self.0.clone();
        move |_, stream, line| seen.lock().unwrap().push((stream, line.to_vec()))
    }

    fn lines(&self, stream: Stream) -> Vec<Vec<u8>> {
        let v = self.0.lock().unwrap();
        v.iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Resource usage
// ---------------------------------------------------------------------------------------------

#[test]
fn a_job_allocating_200_mib_reports_a_peak_of_at_least_200_mib() {
    let m = ProcessManager::new();
    let r = m.run(JobSpec::new(kid()).args(["alloc", "200"])).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{}", r.describe_end());
    let u = r.usage.expect("a finished job has its usage");
    let peak = u.peak_memory.expect("wait4 gives the peak RSS on Linux");
    assert!(peak >= 200 * MIB, "peak {peak} bytes < 200 MiB");
    // And not absurdly more (the kernel's figure is in KiB, converted once).
    assert!(
        peak < 2000 * MIB,
        "peak {peak} bytes: unit conversion wrong?"
    );
}

#[test]
fn a_spinning_job_reports_user_cpu_close_to_its_wall_time() {
    let m = ProcessManager::new();
    // The job spins until it has used 0.5 s of CPU, however loaded the machine is.
    let r = m
        .run(JobSpec::new(kid()).args(["spin-cpu", "0.5"]))
        .unwrap();
    let u = r.usage.unwrap();
    let user = u.user_cpu.unwrap();
    let sys = u.system_cpu.unwrap();
    assert!(u.wall >= Duration::from_millis(500), "wall {:?}", u.wall);
    // Spinning is user time; the kernel may book a little of it as system time.
    assert!(
        user + sys >= Duration::from_millis(500),
        "user {user:?} sys {sys:?}"
    );
    assert!(user >= Duration::from_millis(400), "user {user:?}");
    assert!(
        user <= u.wall + Duration::from_millis(50),
        "user {user:?} > wall {:?}",
        u.wall
    );
    assert!(u.system_cpu.is_some());
}

#[test]
fn a_sleeping_job_uses_almost_no_cpu() {
    let m = ProcessManager::new();
    let r = m.run(JobSpec::new(kid()).args(["sleep", "0.3"])).unwrap();
    let u = r.usage.unwrap();
    assert!(u.wall >= Duration::from_millis(300));
    assert!(u.user_cpu.unwrap() + u.system_cpu.unwrap() < Duration::from_millis(200));
}

#[test]
fn the_portable_wait_reports_wall_time_and_none_for_what_it_cannot_tell() {
    // Without a cgroup, whose cpu.stat would give the figures.
    let m = ProcessManager::builder()
        .containment(procman::Containment::ProcessGroup)
        .wait_mode(WaitMode::Portable)
        .build()
        .unwrap();
    let r = m.run(JobSpec::new(kid()).args(["sleep", "0.1"])).unwrap();
    let u = r.usage.unwrap();
    assert!(u.wall >= Duration::from_millis(100));
    assert_eq!(
        (u.user_cpu, u.system_cpu, u.peak_memory),
        (None, None, None)
    );
}

#[test]
fn a_job_that_never_started_has_no_usage() {
    let m = ProcessManager::new();
    let r = m.run(JobSpec::new("/no/such/program")).unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed);
    assert!(r.usage.is_none());
}

// ---------------------------------------------------------------------------------------------
// Live output
// ---------------------------------------------------------------------------------------------

#[test]
fn observed_lines_arrive_in_order_within_each_stream() {
    let dir = TempDir::new("order");
    for mode in OBSERVE_MODES {
        let m = observing(mode);
        let seen = Seen::default();
        let script =
            "i=1; while [ $i -le 3000 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done";
        let log = dir.join(&format!("log-{mode:?}.txt"));
        let r = m
            .run(
                JobSpec::new("sh")
                    .args(["-c", script])
                    .log_file(&log)
                    .observe(seen.observer()),
            )
            .unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        for (stream, tag) in [(Stream::Stdout, "out"), (Stream::Stderr, "err")] {
            let want: Vec<Vec<u8>> = (1..=3000)
                .map(|i| format!("{tag} {i}").into_bytes())
                .collect();
            assert_eq!(seen.lines(stream), want, "{mode:?} {stream:?}");
        }
        // The files hold the same bytes as the lines, with their newlines.
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 3000);
        let err = std::fs::read_to_string(r.error_file.unwrap()).unwrap();
        assert!(err.starts_with("err 1\nerr 2\n") && err.ends_with("err 3000\n"));
    }
}

#[test]
fn a_long_line_arrives_in_capped_pieces_and_the_log_keeps_it_whole() {
    let dir = TempDir::new("long");
    for mode in OBSERVE_MODES {
        let m = observing(mode);
        let seen = Seen::default();
        let n = 3 * OBSERVER_LINE_CAP + 1234;
        let log = dir.join(&format!("log-{mode:?}.txt"));
        let r = m
            .run(
                JobSpec::new(kid())
                    .args(["long-line", &n.to_string()])
                    .log_file(&log)
                    .observe(seen.observer()),
            )
            .unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        let pieces = seen.lines(Stream::Stdout);
        let lens: Vec<usize> = pieces.iter().map(Vec::len).collect();
        assert_eq!(
            lens,
            [
                OBSERVER_LINE_CAP,
                OBSERVER_LINE_CAP,
                OBSERVER_LINE_CAP,
                1234
            ],
            "{mode:?}"
        );
        assert!(pieces.iter().all(|p| p.iter().all(|&b| b == b'x')));
        let text = std::fs::read(&log).unwrap();
        assert_eq!(text.len(), n + 1);
        assert_eq!(text.last(), Some(&b'\n'));
    }
}

#[test]
fn binary_output_is_byte_exact_in_the_logs_and_in_the_observed_pieces() {
    let dir = TempDir::new("binary");
    for mode in OBSERVE_MODES {
        let m = observing(mode);
        let seen = Seen::default();
        let (out_n, err_n) = (1_000_000, 300_001);
        let (out, err) = (
            dir.join(&format!("out-{mode:?}.bin")),
            dir.join(&format!("err-{mode:?}.bin")),
        );
        let r = m
            .run(
                JobSpec::new(kid())
                    .args(["write", &out_n.to_string(), &err_n.to_string()])
                    .log_file(&out)
                    .error_file(&err)
                    .observe(seen.observer()),
            )
            .unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!(std::fs::read(&out).unwrap(), pattern(out_n));
        assert_eq!(std::fs::read(&err).unwrap(), pattern(err_n));
        // The pattern has a '\n' (byte 10) every 256 bytes: the pieces joined with '\n' give
        // the stream back, but for a final newline that yields no empty last piece.
        for (stream, n) in [(Stream::Stdout, out_n), (Stream::Stderr, err_n)] {
            let pieces = seen.lines(stream);
            assert!(pieces.iter().all(|p| p.len() <= OBSERVER_LINE_CAP));
            let mut joined = pieces.join(&b'\n');
            if pattern(n).last() == Some(&b'\n') {
                joined.push(b'\n');
            }
            assert_eq!(joined, pattern(n), "{mode:?} {stream:?}");
        }
    }
}

#[test]
fn a_panicking_observer_is_not_called_again_for_that_stream_and_the_job_is_unaffected() {
    let dir = TempDir::new("panicky");
    for mode in OBSERVE_MODES {
        let m = observing(mode);
        let seen = Seen::default();
        let record = seen.observer();
        let log = dir.join(&format!("log-{mode:?}.txt"));
        let r = m
            .run(
                JobSpec::new("sh")
                    .args([
                        "-c",
                        "for i in 1 2 3; do echo out $i; echo err $i >&2; done",
                    ])
                    .log_file(&log)
                    .observe(move |id, stream, line| {
                        record(id, stream, line);
                        assert!(stream != Stream::Stdout, "this observer panics on stdout");
                    }),
            )
            .unwrap();
        assert_eq!(r.status, JobStatus::Finished, "{mode:?}");
        assert_eq!(r.error, None, "{mode:?}");
        assert_eq!(seen.lines(Stream::Stdout), [b"out 1".to_vec()], "{mode:?}");
        let err: Vec<Vec<u8>> = (1..=3).map(|i| format!("err {i}").into_bytes()).collect();
        assert_eq!(seen.lines(Stream::Stderr), err, "{mode:?}");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "out 1\nout 2\nout 3\n"
        );
    }
}

#[test]
fn a_merged_log_is_observed_in_the_order_the_program_wrote_it() {
    // Following the files, stderr merged into the log is the log: the observer sees exactly
    // the log's lines in its order, all as stdout (as QProcess's MergedChannels does).
    let dir = TempDir::new("merged");
    let m = observing(ObserveMode::Files);
    let seen = Seen::default();
    let script = "i=1; while [ $i -le 2000 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done";
    let log = dir.join("merged.log");
    let r = m
        .run(
            JobSpec::new("sh")
                .args(["-c", script])
                .log_file(&log)
                .merge_error_into_log()
                .observe(seen.observer()),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    let want: Vec<Vec<u8>> = (1..=2000)
        .flat_map(|i| [format!("out {i}"), format!("err {i}")])
        .map(String::into_bytes)
        .collect();
    let text = std::fs::read_to_string(&log).unwrap();
    let in_log: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    assert_eq!(in_log, want, "the log holds the program's order");
    assert_eq!(seen.lines(Stream::Stdout), want);
    assert!(seen.lines(Stream::Stderr).is_empty());
}

#[test]
fn a_slow_observer_does_not_hold_the_program_back_when_following_files() {
    // The observer blocks on its first line until the test has seen the whole output in the
    // log: through a pipe the program would block once the pipe is full (64 KiB), so the log
    // could never be whole; following the files, it writes on regardless.
    let dir = TempDir::new("slow");
    let m = observing(ObserveMode::Files);
    let log = dir.join("out.bin");
    let n: u64 = 4 * MIB;
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let p = pieces.clone();
    let id = m
        .start_process(
            JobSpec::new(kid())
                .args(["write", &n.to_string(), "0"])
                .log_file(&log)
                .observe(move |_, _, line| {
                    let mut p = p.lock().unwrap();
                    if p.is_empty() {
                        let _ = release_rx.recv();
                    }
                    p.push(line.to_vec());
                }),
        )
        .unwrap();
    let whole = eventually(LONG, || {
        std::fs::metadata(&log).is_ok_and(|md| md.len() == n)
    });
    release_tx.send(()).unwrap();
    assert!(whole, "the program was held back by its observer");
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    let mut joined = pieces.lock().unwrap().join(&b'\n');
    if pattern(n as usize).last() == Some(&b'\n') {
        joined.push(b'\n');
    }
    assert!(joined == pattern(n as usize), "every byte was observed");
}

#[test]
fn output_with_no_regular_file_behind_it_is_observed_through_a_pipe() {
    // Following needs a regular file: no log file, or /dev/null, falls back to a pipe.
    for log in [None, Some("/dev/null")] {
        let m = observing(ObserveMode::Files);
        let seen = Seen::default();
        let mut spec = JobSpec::new("sh")
            .args(["-c", "echo to-out; echo to-err >&2"])
            .observe(seen.observer());
        if let Some(log) = log {
            spec = spec.log_file(log).error_file("/dev/null");
        }
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        assert_eq!(seen.lines(Stream::Stdout), [b"to-out".to_vec()], "{log:?}");
        assert_eq!(seen.lines(Stream::Stderr), [b"to-err".to_vec()], "{log:?}");
    }
}

/// `sh` prints `first`, then blocks reading the FIFO it has as stdin until the test writes.
fn fifo_job(dir: &TempDir) -> (std::path::PathBuf, JobSpec) {
    let fifo = dir.join("stdin.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid, NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let spec = JobSpec::new("sh")
        .args(["-c", "echo first; read x; echo second $x"])
        .input_file(&fifo)
        .log_file(dir.join("log.txt"));
    (fifo, spec)
}

#[test]
fn an_observed_log_is_readable_while_the_job_runs() {
    for mode in OBSERVE_MODES {
        let dir = TempDir::new("partial-observed");
        let m = observing(mode);
        let (tx, rx) = unbounded();
        let (fifo, spec) = fifo_job(&dir);
        let id = m
            .start_process(spec.observe(move |_, stream, line| {
                let _ = tx.send((stream, line.to_vec()));
            }))
            .unwrap();
        // Opening the FIFO's write end meets the worker opening its read end.
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        assert_eq!(
            rx.recv_timeout(LONG).unwrap(),
            (Stream::Stdout, b"first".to_vec()),
            "{mode:?}"
        );
        // The log held the bytes before the observer was handed the line.
        assert_eq!(
            std::fs::read_to_string(dir.join("log.txt")).unwrap(),
            "first\n"
        );
        assert_eq!(m.job_data(id).unwrap().status, JobStatus::Running);
        writeln!(w, "go").unwrap();
        drop(w);
        let r = m.wait(id).unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        assert_eq!(
            std::fs::read_to_string(dir.join("log.txt")).unwrap(),
            "first\nsecond go\n"
        );
    }
}

#[test]
fn an_unobserved_log_is_readable_while_the_job_runs() {
    let dir = TempDir::new("partial-plain");
    let m = ProcessManager::new();
    let (fifo, spec) = fifo_job(&dir);
    let id = m.start_process(spec).unwrap();
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    // The kernel writes the log directly: nothing to wait on but the file itself.
    assert!(eventually(LONG, || {
        std::fs::read_to_string(dir.join("log.txt")).is_ok_and(|s| s == "first\n")
    }));
    // The job cannot end before it reads the FIFO. (It may still show Pending: the child can
    // write before its worker has recorded the spawn.)
    assert!(!m.job_data(id).unwrap().status.is_final());
    writeln!(w, "go").unwrap();
    drop(w);
    assert_eq!(m.wait(id).unwrap().status, JobStatus::Finished);
}

#[test]
fn a_setsid_grandchild_holding_the_pipes_delays_completion_by_at_most_the_drain_bound() {
    let bound = Duration::from_millis(300);
    // The process-group mode's limit (a cgroup per job ends the grandchild with its job).
    let m = ProcessManager::builder()
        .output_drain_bound(bound)
        .containment(procman::Containment::ProcessGroup)
        .build()
        .unwrap();
    let seen = Seen::default();
    let t0 = Instant::now();
    let r = m
        .run(
            JobSpec::new(kid())
                .args(["setsid-grandchild", "30"])
                .observe(seen.observer()),
        )
        .unwrap();
    let took = t0.elapsed();
    let grandchild: i32 = String::from_utf8(seen.lines(Stream::Stdout)[0].clone())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: the grandchild is our test's own process; end it so it does not outlive the test.
    unsafe { libc::kill(grandchild, libc::SIGKILL) };
    assert_eq!(r.status, JobStatus::Finished);
    assert!(
        took >= bound,
        "completed in {took:?}: the bound was not waited for"
    );
    assert!(
        took < bound + Duration::from_secs(1),
        "completed in {took:?}: the bound is {bound:?}"
    );
}

#[test]
fn a_grandchild_in_the_group_holding_the_pipes_does_not_delay_completion() {
    let m = ProcessManager::builder()
        .output_drain_bound(Duration::from_secs(20))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let r = m
        .run(
            JobSpec::new(kid())
                .args(["grandchild", "30"])
                .observe(|_, _, _| {}),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    // The leftover is killed with the group, so the pipes close at once: far below the bound.
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Events and snapshots
// ---------------------------------------------------------------------------------------------

#[test]
fn every_jobs_events_arrive_queued_then_started_then_finished() {
    let m = ProcessManager::builder().limit(3).build().unwrap();
    let events = m.subscribe(10_000);
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(
            m.start_process(JobSpec::new(kid()).args(["exit", &(i % 3).to_string()]))
                .unwrap(),
        );
    }
    let missing = m.start_process(JobSpec::new("/no/such/program")).unwrap();
    let blocked = m
        .start_process(JobSpec::new(kid()).args(["exit", "0"]).after(ids[1]))
        .unwrap();
    ids.extend([missing, blocked]);
    let mut per_job: std::collections::HashMap<JobId, Vec<Event>> = Default::default();
    let mut finished = 0;
    while finished < ids.len() {
        let e = events
            .recv_timeout(LONG)
            .expect("an event within the bound");
        let id = match &e {
            Event::Queued { id } | Event::Started { id, .. } | Event::Retrying { id, .. } => *id,
            Event::Finished(r) => {
                finished += 1;
                r.id
            }
            Event::Lost(n) => panic!("{n} events lost with a large channel"),
            other => panic!("unexpected event {other:?}"),
        };
        per_job.entry(id).or_default().push(e);
    }
    for id in &ids {
        let evs = &per_job[id];
        assert!(matches!(evs[0], Event::Queued { .. }), "{id}: {evs:?}");
        let Event::Finished(r) = evs.last().unwrap() else {
            panic!("{id}: last event {:?}", evs.last())
        };
        assert!(r.status.is_final());
        let started: Vec<u32> = evs
            .iter()
            .filter_map(|e| match e {
                Event::Started { pid, attempt, .. } => {
                    assert_eq!(*attempt, 1);
                    Some(*pid)
                }
                _ => None,
            })
            .collect();
        match r.status {
            JobStatus::SpawnFailed | JobStatus::DependencyFailed => {
                assert!(started.is_empty(), "{id}: {evs:?}")
            }
            _ => {
                assert_eq!(started, [r.pid.unwrap()], "{id}");
                assert_eq!(evs.len(), 3, "{id}: {evs:?}");
            }
        }
    }
    let Some(Event::Finished(r)) = per_job[&blocked].last() else {
        unreachable!()
    };
    assert_eq!(r.status, JobStatus::DependencyFailed);
}

#[test]
fn a_slow_consumer_with_a_tiny_channel_gets_lost_counts_and_never_blocks_the_manager() {
    let m = ProcessManager::builder().limit(4).build().unwrap();
    let events = m.subscribe(1);
    let n = 30;
    for _ in 0..n {
        m.start_process(JobSpec::new(kid()).args(["exit", "0"]))
            .unwrap();
    }
    // Nobody reads: the manager must still finish everything.
    let (done_tx, done_rx) = unbounded();
    let handle = m.handle();
    std::thread::spawn(move || {
        handle.wait_all();
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(LONG).is_ok(),
        "the manager blocked on a full event channel"
    );
    // The one slot holds the first event; the other 3n - 1 were dropped and counted.
    assert!(matches!(events.try_recv(), Ok(Event::Queued { .. })));
    assert!(events.try_recv().is_err());
    // The count is delivered before the next event that fits.
    let last = m
        .start_process(JobSpec::new(kid()).args(["exit", "0"]))
        .unwrap();
    m.wait(last).unwrap();
    match events.recv_timeout(LONG) {
        Ok(Event::Lost(lost)) => assert_eq!(lost, 3 * n - 1),
        other => panic!("expected Lost, got {other:?}"),
    }
}

#[test]
fn a_dropped_subscriber_is_forgotten_and_others_go_on() {
    let m = ProcessManager::new();
    let gone = m.subscribe(1);
    let kept = m.subscribe(100);
    drop(gone);
    let id = m
        .start_process(JobSpec::new(kid()).args(["exit", "0"]))
        .unwrap();
    m.wait(id).unwrap();
    let mut got = Vec::new();
    loop {
        match kept.recv_timeout(Duration::from_millis(0)) {
            Ok(e) => got.push(e),
            Err(RecvTimeoutError::Timeout) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn a_snapshot_counts_by_status_and_lists_running_jobs_with_their_elapsed_time() {
    let dir = TempDir::new("snapshot");
    let m = ProcessManager::builder().limit(1).build().unwrap();
    let events = m.subscribe(100);
    let (fifo, spec) = fifo_job(&dir);
    let running = m.start_process(spec).unwrap();
    let queued = m
        .start_process(JobSpec::new(kid()).args(["exit", "0"]))
        .unwrap();
    let w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    // Wait for the Started event rather than for time to pass.
    let pid = loop {
        match events.recv_timeout(LONG).unwrap() {
            Event::Started { id, pid, .. } if id == running => break pid,
            _ => {}
        }
    };
    let s = m.snapshot();
    assert_eq!(s.count(JobStatus::Running), 1);
    assert_eq!(s.count(JobStatus::Pending), 1);
    assert_eq!(s.limit, 1);
    assert_eq!(s.running.len(), 1);
    let (id, spid, elapsed) = s.running[0];
    assert_eq!((id, spid), (running, pid));
    assert!(elapsed < LONG);
    let later = m.snapshot().running[0].2;
    assert!(later >= elapsed, "elapsed time went backwards");
    drop(w); // EOF: `read` returns and the job ends.
    m.wait(running).unwrap();
    m.wait(queued).unwrap();
    let s = m.snapshot();
    assert_eq!(s.count(JobStatus::Finished), 2);
    assert!(s.running.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Regression: the procman tool blocks SIGTERM in every thread (it takes signals with sigwait);
// its jobs inherited that mask, ignored the timeout's SIGTERM and always died by SIGKILL.
// ---------------------------------------------------------------------------------------------

#[test]
fn jobs_do_not_inherit_the_hosts_blocked_signals() {
    for close_fds in [true, false] {
        let r = std::thread::spawn(move || {
            // SAFETY: blocking SIGTERM in this test thread only (and threads it creates).
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGTERM);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            let m = ProcessManager::builder()
                .close_inherited_fds(close_fds)
                .grace(Duration::from_secs(20))
                .build()
                .unwrap();
            m.run(
                JobSpec::new(kid())
                    .args(["sleep", "60"])
                    .timeout(Duration::from_millis(200)),
            )
            .unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(r.status, JobStatus::TimedOut);
        assert_eq!(r.signal, Some(libc::SIGTERM), "close_fds {close_fds}");
        assert!(r.usage.unwrap().wall < Duration::from_secs(15));
    }
}
