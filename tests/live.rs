//! Watching jobs live (issue 14): resource sampling of a job's whole process tree
//! (`Builder::sample_interval`), progress parsed from its output (`JobSpec::progress`), and
//! how both reach `snapshot()`, the event stream and the final record.
//!
//! The loads are known: `procman-testkid orphan-burn CPU MIB` burns CPU seconds of CPU time
//! and holds MIB mebibytes in a process the job never waits for (re-parented outside the job,
//! in its process group still), so the kernel's `wait4` figures never see it and only sampling
//! the group can. Bounds are generous: the machine may be loaded.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::kid;
use procman::{Event, JobId, JobSpec, JobStatus, ProcessManager, Progress, Stream, WaitMode};

const MIB: u64 = 1024 * 1024;

/// Held by the tests that sample, and by the one that checks no sampling thread exists.
static SAMPLING: Mutex<()> = Mutex::new(());

fn sampling(ms: u64) -> ProcessManager {
    ProcessManager::builder()
        .sample_interval(Duration::from_millis(ms))
        .build()
        .unwrap()
}

/// Every event of `rx` up to and including `id`'s `Finished`.
fn events_until_finished(rx: &crossbeam_channel::Receiver<Event>, id: JobId) -> Vec<Event> {
    let mut v = Vec::new();
    loop {
        let e = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the job ends within a minute");
        assert!(!matches!(e, Event::Lost(_)), "events were lost");
        let done = matches!(&e, Event::Finished(r) if r.id == id);
        v.push(e);
        if done {
            return v;
        }
    }
}

/// refmac's "cycle N of M", anywhere in the line.
fn cycles(line: &[u8]) -> Option<Progress> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = &text[text.find("cycle ")? + "cycle ".len()..];
    let mut words = rest.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    (words.next()? == "of").then_some(())?;
    let m: u64 = words.next()?.parse().ok()?;
    Some(Progress::steps(n, m, format!("cycle {n} of {m}")))
}

#[test]
fn sampling_sees_the_whole_process_tree() {
    let _one = SAMPLING.lock();
    let m = sampling(50);
    let rx = m.subscribe(10_000);
    let id = m
        .start_process(JobSpec::new(kid()).args(["orphan-burn", "1.0", "100"]))
        .unwrap();
    // While it runs, the snapshot shows its figures.
    let mut seen_live = None;
    while seen_live.is_none() {
        let snap = m.snapshot();
        if snap.count(JobStatus::Running) + snap.count(JobStatus::Pending) == 0 {
            break;
        }
        seen_live = snap
            .live
            .iter()
            .find(|j| j.id == id)
            .and_then(|j| j.usage.clone())
            .filter(|u| u.rss >= 90 * MIB);
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{}", r.describe_end());
    let live = seen_live.expect("the snapshot showed the job's 100 MiB while it ran");
    assert!(live.processes >= 2, "{live:?}");

    let s = r.sampled.as_deref().expect("a summary of the samples");
    // The burner used 1.0 s of CPU; the last sample before its end may miss up to one
    // interval's worth.
    let cpu = s.cpu.as_secs_f64();
    assert!((0.7..=1.6).contains(&cpu), "sampled CPU {cpu} s: {s:?}");
    assert!(
        (95 * MIB..=250 * MIB).contains(&s.peak_rss),
        "peak RSS {} MiB",
        s.peak_rss / MIB
    );
    assert!(s.mean_rss <= s.peak_rss && s.samples >= 3, "{s:?}");
    assert!(s.peak_cpu_percent > 20.0, "{s:?}");
    assert!(s.peak_processes >= 2 && s.peak_threads >= 2, "{s:?}");
    assert!(
        s.written_bytes.is_some_and(|w| w >= MIB),
        "the burner wrote 1 MiB: {s:?}"
    );
    // The kernel's figures: wait4 (process-group mode) sees the leader only, the burner was
    // never waited for; a job's cgroup (cpu.stat) sees the whole tree.
    let u = r.usage.unwrap();
    let waited = u.user_cpu.unwrap() + u.system_cpu.unwrap();
    if m.containment() == procman::Containment::Cgroup {
        assert!(
            waited >= Duration::from_millis(1000),
            "cpu.stat saw {waited:?}"
        );
    } else {
        assert!(waited < Duration::from_millis(400), "wait4 saw {waited:?}");
    }

    // Usage events: between Started and Finished, CPU never falling, peak never falling.
    let events = events_until_finished(&rx, id);
    let started = events
        .iter()
        .position(|e| matches!(e, Event::Started { id: i, .. } if *i == id))
        .unwrap();
    let usages: Vec<(usize, &procman::Usage)> = events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Event::Usage { id: j, usage, .. } if *j == id => Some((i, usage)),
            _ => None,
        })
        .collect();
    assert!(usages.len() >= 3, "{} usage events", usages.len());
    assert!(usages.iter().all(|(i, _)| *i > started));
    for w in usages.windows(2) {
        assert!(w[1].1.cpu >= w[0].1.cpu && w[1].1.peak_rss >= w[0].1.peak_rss);
        assert!(w[1].1.elapsed > w[0].1.elapsed);
    }
    assert!(matches!(events.last(), Some(Event::Finished(_))));
}

#[test]
fn sampling_off_reports_nothing_and_starts_no_thread() {
    let _one = SAMPLING.lock();
    let m = ProcessManager::new();
    let rx = m.subscribe(1000);
    let id = m
        .start_process(JobSpec::new(kid()).args(["spin-cpu", "0.2"]))
        .unwrap();
    let r = m.wait(id).unwrap();
    assert!(r.sampled.is_none());
    let events = events_until_finished(&rx, id);
    assert!(!events.iter().any(|e| matches!(e, Event::Usage { .. })));
    assert!(!thread_names().iter().any(|n| n == "procman-sample"));
}

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn progress_is_parsed_from_real_output_in_order() {
    let m = ProcessManager::new();
    let rx = m.subscribe(1000);
    let observed = Arc::new(Mutex::new(Vec::new()));
    let o = observed.clone();
    let id = m
        .start_process(
            JobSpec::new(kid())
                .args(["cycles", "5", "0.05"])
                .progress(cycles)
                .observe(move |_, s, line| o.lock().unwrap().push((s, line.to_vec()))),
        )
        .unwrap();
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    // The user's observer still gets every line.
    assert_eq!(observed.lock().unwrap().len(), 10);
    assert!(observed
        .lock()
        .unwrap()
        .iter()
        .all(|(s, _)| *s == Stream::Stdout));
    let events = events_until_finished(&rx, id);
    let progress: Vec<&Progress> = events
        .iter()
        .filter_map(|e| match e {
            Event::Progress {
                id: j, progress, ..
            } if *j == id => Some(progress),
            _ => None,
        })
        .collect();
    // Lines may be coalesced (the latest wins) but never reordered, and the last is always told.
    assert!(!progress.is_empty());
    for w in progress.windows(2) {
        assert!(w[1].fraction > w[0].fraction, "{progress:?}");
    }
    let last = progress.last().unwrap();
    assert_eq!(last.fraction, Some(1.0));
    assert_eq!(last.message.as_deref(), Some("cycle 5 of 5"));
    // Queued, Started, then progress, then Finished.
    assert!(matches!(events[0], Event::Queued { .. }));
    assert!(matches!(events[1], Event::Started { .. }));
    assert!(matches!(events.last(), Some(Event::Finished(_))));
}

#[test]
fn the_snapshot_shows_the_latest_progress_while_the_job_runs() {
    let m = ProcessManager::new();
    let id = m
        .start_process(
            JobSpec::new(kid())
                .args(["cycles", "3", "0.3"])
                .progress(cycles),
        )
        .unwrap();
    let mut seen = Vec::new();
    while !m.job_data(id).unwrap().status.is_final() {
        if let Some(p) = m
            .snapshot()
            .live
            .iter()
            .find(|j| j.id == id)
            .and_then(|j| j.progress.clone())
        {
            if seen.last() != Some(&p) {
                seen.push(p);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen.iter()
            .any(|p| p.message.as_deref() == Some("cycle 1 of 3")),
        "{seen:?}"
    );
    assert!(m.snapshot().live.is_empty());
}

#[test]
fn progress_and_sampling_in_portable_mode() {
    let _one = SAMPLING.lock();
    // The portable wait reaps through `wait-timeout`: no sampling there, progress still works.
    let m = ProcessManager::builder()
        .wait_mode(WaitMode::Portable)
        .sample_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let rx = m.subscribe(1000);
    let id = m
        .start_process(
            JobSpec::new(kid())
                .args(["cycles", "2", "0.1"])
                .progress(cycles),
        )
        .unwrap();
    let r = m.wait(id).unwrap();
    assert!(r.sampled.is_none());
    let events = events_until_finished(&rx, id);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Progress { progress, .. } if progress.fraction == Some(1.0))));
}

#[test]
fn a_panicking_parser_leaves_the_job_alone() {
    let m = ProcessManager::new();
    let r = m
        .run(
            JobSpec::new(kid())
                .args(["cycles", "2", "0"])
                .progress(|_| panic!("a bad parser")),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert!(r.error.is_none());
}

#[test]
fn a_subscription_ends_when_the_manager_shuts_down() {
    let m = ProcessManager::new();
    let rx = m.subscribe(100);
    let id = m.start_process(JobSpec::new("true")).unwrap();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || done_tx.send(rx.iter().collect::<Vec<Event>>()));
    m.wait(id).unwrap();
    m.shutdown(procman::ShutdownMode::Drain, None);
    // The iteration ended, after every event of the job.
    let events = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the iteration ends on shutdown");
    assert!(matches!(events.last(), Some(Event::Finished(r)) if r.id == id));
    // Subscribing afterwards gives a channel that is already disconnected.
    assert!(m.subscribe(1).recv().is_err());
}
