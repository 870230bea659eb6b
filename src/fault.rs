//! Fault injection, compiled only into the crate's own unit tests (`cfg(test)`): every manager
//! thread has a hook that panics when the job it serves asks for it, so the tests below can
//! prove the panic rule (DESIGN.md, "The panic rule") for each thread kind on real processes.
//!
//! A job asks for a fault with an argument `procman-fault:<point>:<token>` (a program such as
//! `sh -c SCRIPT` ignores it). Each such argument fires once, on the first thread that reaches
//! its point: a recovering thread that comes back to the same point goes on normally. The
//! Slurm poller's hook fires on a state its (stand-in) `squeue` reports instead.

use std::collections::HashSet;
use std::ffi::OsString;
use std::sync::Mutex;

/// The worker, before it opens the job's files and spawns its program.
pub(crate) const WORKER_BEFORE_SPAWN: &str = "worker-before-spawn";
/// The worker, while the program runs, when it sees a kill request.
pub(crate) const WORKER_RUNNING: &str = "worker-running";
/// The dispatcher, before it calls the job's handler.
pub(crate) const DISPATCHER_BEFORE: &str = "dispatcher-before";
/// The dispatcher, after the handler returned, before it reports that.
pub(crate) const DISPATCHER_AFTER: &str = "dispatcher-after";
/// The scheduler, in `end_attempt` under the state lock, after the slot was released.
pub(crate) const SCHEDULER: &str = "scheduler";
/// The retry timer, between taking the job's timer and queueing its retry.
pub(crate) const TIMER: &str = "timer";
/// An output reader or follower thread, as it hands the job's first line to the observer.
pub(crate) const READER: &str = "reader";
/// The Slurm poller panics in a round that finds a job in this state.
pub(crate) const SLURM_STATE: &str = "PROCMAN_FAULT";

static FIRED: Mutex<Option<HashSet<OsString>>> = Mutex::new(None);

thread_local! {
    /// The arguments of the job this (reader) thread serves, for [`hit_here`].
    static SERVING: std::cell::RefCell<Vec<OsString>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records which job's arguments this thread serves.
pub(crate) fn serve(args: &[OsString]) {
    SERVING.with(|s| *s.borrow_mut() = args.to_vec());
}

/// [`hit`] with the arguments recorded by [`serve`] on this thread.
pub(crate) fn hit_here(point: &str) {
    let args = SERVING.with(|s| s.borrow().clone());
    hit(&args, point);
}

/// Panics if one of `args` asks for a fault at `point` that has not fired yet.
pub(crate) fn hit(args: &[OsString], point: &str) {
    let prefix = format!("procman-fault:{point}:");
    for a in args {
        if a.to_str().is_some_and(|s| s.starts_with(&prefix)) {
            let first = FIRED
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(HashSet::new)
                .insert(a.clone());
            if first {
                panic!("injected fault at {point}");
            }
        }
    }
}

/// The Slurm poller's hook: panics on a job whose state is [`SLURM_STATE`].
pub(crate) fn hit_slurm_state(state: &str) {
    if state == SLURM_STATE {
        panic!("injected fault in the Slurm poller");
    }
}

/// The panic rule, thread kind by thread kind, on real processes. Each test: the job ends with
/// a final record saying an internal error ended it (or, for the dispatcher and the timer, the
/// job's own outcome), its handler runs exactly once, its processes are killed and reaped, its
/// slot is freed (a next job runs under `limit(1)`), and dropping the manager returns. Every
/// wait has a generous bound, so a hang fails the test instead of hanging it.
mod tests {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use crate::backend::slurm::SlurmOptions;
    use crate::{
        Event, JobId, JobRecord, JobSpec, JobStatus, ObserveMode, ProcessManager, RetryOn, WaitMode,
    };

    /// Generous: only a hang takes this long.
    const BOUND: Duration = Duration::from_secs(60);

    /// A fault argument no other job (or test) carries, also the marker of the job's processes.
    fn fault(point: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        format!(
            "procman-fault:{point}:{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        )
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("procman-fault-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// The statuses each handler call saw.
    #[derive(Clone, Default)]
    struct Calls(Arc<Mutex<Vec<JobStatus>>>);

    impl Calls {
        fn on(&self, spec: JobSpec) -> JobSpec {
            let calls = self.0.clone();
            spec.on_finish(move |r| calls.lock().unwrap().push(r.status))
        }
        fn get(&self) -> Vec<JobStatus> {
            self.0.lock().unwrap().clone()
        }
    }

    fn wait(m: &ProcessManager, id: JobId) -> JobRecord {
        m.wait_timeout(id, BOUND)
            .unwrap_or_else(|e| panic!("job {id} did not end within {BOUND:?}: {e:?}"))
    }

    fn assert_internal(r: &JobRecord, thread: &str) {
        assert_eq!(r.status, JobStatus::InternalError, "{r:?}");
        let e = r.error.as_deref().unwrap_or("");
        assert!(
            e.starts_with("internal error:") && e.contains(thread) && e.contains("injected"),
            "{e}"
        );
        assert!(r.finished_at.is_some());
    }

    /// Under `limit(1)` a next job runs: the faulty one's slot was freed.
    fn assert_slot_freed(m: &ProcessManager) {
        let r = wait(m, m.start_process(JobSpec::new("true")).unwrap());
        assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    }

    /// Runs a test's body on its own thread and fails if it does not end within a few
    /// `BOUND`s: a failed assertion unwinds through the manager's drop, which must not hang
    /// the test run either (before the panic rule it did).
    fn watchdog(body: impl FnOnce() + Send + 'static) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            let _ = tx.send(r);
        });
        match rx.recv_timeout(BOUND * 3) {
            Ok(Ok(())) => {}
            Ok(Err(p)) => std::panic::resume_unwind(p),
            Err(_) => panic!("the test hung (and so did dropping its manager)"),
        }
    }

    /// Drops (shuts down) the manager on another thread; fails if that does not return.
    fn drop_returns(m: ProcessManager) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            drop(m);
            let _ = tx.send(());
        });
        rx.recv_timeout(BOUND)
            .expect("dropping the manager did not return");
    }

    /// A process that exists and is not a zombie.
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the command name in parentheses.
            Ok(s) => s
                .rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.starts_with(" Z")),
            Err(_) => false,
        }
    }

    /// Live processes whose process group is `pgid` or whose command line holds `marker`.
    fn survivors(pgid: u32, marker: &str) -> Vec<u32> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let pgrp = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok());
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let marked = cmdline
                .windows(marker.len())
                .any(|w| w == marker.as_bytes());
            if (pgrp == Some(pgid) || marked) && alive(pid) {
                found.push(pid);
            }
        }
        found
    }

    /// The leader is reaped (`kill(pid, 0)` fails with ESRCH: not even a zombie is left), and
    /// nothing of its group or with its marker lives on; the background process, reparented
    /// to init once the leader died, is given a bounded time to be gone.
    fn assert_killed_and_reaped(leader: u32, background: u32, marker: &str) {
        // SAFETY: kill with signal 0 only checks for the process.
        let r = unsafe { libc::kill(leader as libc::pid_t, 0) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        assert!(
            r == -1 && errno == Some(libc::ESRCH),
            "leader {leader} still exists (unreaped)"
        );
        let until = Instant::now() + Duration::from_secs(10);
        while (alive(background) || !survivors(leader, marker).is_empty()) && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !alive(background),
            "background process {background} survived"
        );
        assert_eq!(survivors(leader, marker), Vec::<u32>::new(), "survivors");
    }

    /// A job that starts a background sleep, writes its pid to `pidfile`, prints a line, then
    /// waits: it only ends when killed.
    fn sleeper(pidfile: &Path, marker: &str) -> JobSpec {
        JobSpec::new("sh")
            .arg("-c")
            .arg(format!(
                "sleep 3600 & echo $! > {p}.tmp; mv {p}.tmp {p}; echo started; wait",
                p = pidfile.display()
            ))
            .arg(marker)
    }

    /// Waits for the job's pid file (written once its background process exists).
    fn read_pid(pidfile: &Path) -> u32 {
        let until = Instant::now() + BOUND;
        loop {
            if let Ok(s) = std::fs::read_to_string(pidfile) {
                if let Ok(pid) = s.trim().parse() {
                    return pid;
                }
            }
            assert!(Instant::now() < until, "the job never wrote {pidfile:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The job's leader pid, from its `Started` event (the job may write its pid file before
    /// its worker records the spawn).
    fn leader_of(events: &crossbeam_channel::Receiver<Event>, id: JobId) -> u32 {
        let until = Instant::now() + BOUND;
        loop {
            match events.recv_deadline(until) {
                Ok(Event::Started { id: i, pid, .. }) if i == id => return pid,
                Ok(_) => {}
                Err(e) => panic!("no Started event for job {id}: {e}"),
            }
        }
    }

    #[test]
    fn a_worker_panic_before_the_spawn_ends_the_job_and_frees_its_slot() {
        watchdog(|| {
            let m = ProcessManager::builder().limit(1).build().unwrap();
            let calls = Calls::default();
            let marker = fault(super::WORKER_BEFORE_SPAWN);
            let id = m
                .start_process(calls.on(JobSpec::new("true").arg(&marker)))
                .unwrap();
            let r = wait(&m, id);
            assert_internal(&r, "worker");
            assert_eq!(r.pid, None, "nothing was spawned");
            assert_slot_freed(&m);
            assert_eq!(calls.get(), [JobStatus::InternalError]);
            drop_returns(m);
        });
    }

    fn worker_panic_while_the_child_runs(mode: WaitMode) {
        let dir = scratch(&format!("worker-{mode:?}"));
        let m = ProcessManager::builder()
            .limit(1)
            .wait_mode(mode)
            .build()
            .unwrap();
        let calls = Calls::default();
        let marker = fault(super::WORKER_RUNNING);
        let pidfile = dir.join("bg.pid");
        let events = m.subscribe(64);
        let id = m
            .start_process(calls.on(sleeper(&pidfile, &marker)))
            .unwrap();
        let background = read_pid(&pidfile);
        let leader = leader_of(&events, id);
        // The worker panics as it sees the kill request, before it signals anything.
        let _ = m.kill_process(id);
        let r = wait(&m, id);
        assert_internal(&r, "worker");
        assert_killed_and_reaped(leader, background, &marker);
        assert_slot_freed(&m);
        assert_eq!(calls.get(), [JobStatus::InternalError]);
        drop_returns(m);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_worker_panic_while_the_child_runs_kills_and_reaps_its_group_pidfd() {
        watchdog(|| {
            worker_panic_while_the_child_runs(WaitMode::Pidfd);
        });
    }

    #[test]
    fn a_worker_panic_while_the_child_runs_kills_and_reaps_its_group_portable() {
        watchdog(|| {
            worker_panic_while_the_child_runs(WaitMode::Portable);
        });
    }

    #[test]
    fn a_scheduler_panic_ending_an_attempt_still_ends_the_job_once_and_frees_its_slot() {
        watchdog(|| {
            let m = ProcessManager::builder().limit(1).build().unwrap();
            let calls = Calls::default();
            let marker = fault(super::SCHEDULER);
            let id = m
                .start_process(calls.on(JobSpec::new("true").arg(&marker)))
                .unwrap();
            let r = wait(&m, id);
            assert_internal(&r, "scheduler");
            // The slot was released once: the next job runs, and the count is not off by one
            // (a second release would have let two run at once, or underflowed).
            assert_slot_freed(&m);
            assert_eq!(m.snapshot().running.len(), 0);
            assert_eq!(calls.get(), [JobStatus::InternalError]);
            drop_returns(m);
        });
    }

    fn dispatcher_panic(point: &str) {
        let m = ProcessManager::builder().limit(1).build().unwrap();
        let calls = Calls::default();
        let marker = fault(point);
        let id = m
            .start_process(calls.on(JobSpec::new("true").arg(&marker)))
            .unwrap();
        // `wait` returns once the record is final and the completion was reported.
        let r = wait(&m, id);
        assert_eq!(r.status, JobStatus::Finished, "{r:?}");
        let e = r.handler_error.as_deref().unwrap_or("");
        assert!(
            e.starts_with("internal error:") && e.contains("dispatcher") && e.contains("injected"),
            "{e}"
        );
        assert_eq!(calls.get(), [JobStatus::Finished]);
        // The dispatcher goes on: a next job's handler runs.
        let next = Calls::default();
        let r = wait(&m, m.start_process(next.on(JobSpec::new("true"))).unwrap());
        assert_eq!((r.status, r.handler_error), (JobStatus::Finished, None));
        assert_eq!(next.get(), [JobStatus::Finished]);
        assert_eq!(calls.get(), [JobStatus::Finished], "called once only");
        drop_returns(m);
    }

    #[test]
    fn a_dispatcher_panic_before_the_handler_still_calls_it_once() {
        watchdog(|| {
            dispatcher_panic(super::DISPATCHER_BEFORE);
        });
    }

    #[test]
    fn a_dispatcher_panic_after_the_handler_does_not_call_it_again() {
        watchdog(|| {
            dispatcher_panic(super::DISPATCHER_AFTER);
        });
    }

    #[test]
    fn a_timer_panic_loses_no_retry() {
        watchdog(|| {
            let m = ProcessManager::builder().limit(1).build().unwrap();
            let calls = Calls::default();
            let marker = fault(super::TIMER);
            let spec = JobSpec::new("sh")
                .args(["-c", "exit 3"])
                .arg(&marker)
                .retries(2, Duration::from_millis(20), RetryOn::default());
            let id = m.start_process(calls.on(spec)).unwrap();
            let r = wait(&m, id);
            // The timer panicked as it took the first retry's timer; that retry was still queued,
            // and so was the next one (the timer went on).
            assert_eq!(
                (r.status, r.exit_code, r.attempts),
                (JobStatus::Failed, Some(3), 3)
            );
            assert_slot_freed(&m);
            assert_eq!(calls.get(), [JobStatus::Failed]);
            drop_returns(m);
        });
    }

    fn reader_panic(mode: ObserveMode) {
        let dir = scratch(&format!("reader-{mode:?}"));
        let m = ProcessManager::builder()
            .limit(1)
            .observe_mode(mode)
            .build()
            .unwrap();
        let calls = Calls::default();
        let marker = fault(super::READER);
        let pidfile = dir.join("bg.pid");
        let events = m.subscribe(64);
        let spec = sleeper(&pidfile, &marker)
            .log_file(dir.join("log.txt"))
            .observe(|_, _, _| {});
        let id = m.start_process(calls.on(spec)).unwrap();
        let background = read_pid(&pidfile);
        let leader = leader_of(&events, id);
        // Nothing else ends this job: only the reader's panic, at its first line (printed after
        // the pid file was written).
        let r = wait(&m, id);
        assert_internal(&r, "output");
        assert_killed_and_reaped(leader, background, &marker);
        assert_slot_freed(&m);
        assert_eq!(calls.get(), [JobStatus::InternalError]);
        drop_returns(m);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_follower_panic_kills_the_job_and_ends_it_as_an_internal_error() {
        watchdog(|| {
            reader_panic(ObserveMode::Files);
        });
    }

    #[test]
    fn a_pipe_reader_panic_kills_the_job_and_ends_it_as_an_internal_error() {
        watchdog(|| {
            reader_panic(ObserveMode::Pipes);
        });
    }

    /// Stand-in Slurm commands (no Slurm is started or used): the first job submitted is
    /// reported in the state that makes the poller panic, later ones as completed.
    #[test]
    fn a_slurm_poller_panic_ends_its_jobs_and_cancels_them() {
        watchdog(|| {
            let dir = scratch("slurm");
            let d = dir.display();
            let script = |name: &str, body: String| -> PathBuf {
                let p = dir.join(name);
                std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
                std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .unwrap();
                p
            };
            let options = SlurmOptions::new()
                .sbatch_program(script(
                    "sbatch",
                    format!(
                        "cat >/dev/null; n=$(cat {d}/n 2>/dev/null || echo 100); \
                     echo $((n + 1)) >{d}/n; echo $((n + 1))"
                    ),
                ))
                .squeue_program(script(
                    "squeue",
                    format!(
                        "for id in $(echo \"$5\" | tr , ' '); do \
                       if [ $id = 101 ]; then echo \"$id|{}|0|node|None|\"; \
                       else echo \"$id|COMPLETED|0|node|None|\"; fi; done",
                        super::SLURM_STATE
                    ),
                ))
                .scancel_program(script("scancel", format!("echo \"$*\" >>{d}/scancel.log")))
                .poll_interval(Duration::from_millis(20), Duration::from_millis(100));
            let m = ProcessManager::builder()
                .limit(1)
                .slurm(options)
                .build()
                .unwrap();
            let calls = Calls::default();
            let id = m.start_process(calls.on(JobSpec::new("true"))).unwrap();
            let r = wait(&m, id);
            assert_internal(&r, "Slurm poller");
            assert_eq!(r.pid, Some(101));
            // The worker cancelled the Slurm job (hard: KILL to the batch shell and every step,
            // then the cancel).
            let log = std::fs::read_to_string(dir.join("scancel.log")).unwrap_or_default();
            let lines: HashSet<&str> = log.lines().collect();
            assert!(
                lines.contains("--signal=KILL --full --batch 101") && lines.contains("101"),
                "{log}"
            );
            // The poller goes on: the next job is followed to its end in the same slot.
            let next = wait(&m, m.start_process(JobSpec::new("true")).unwrap());
            assert_eq!(
                (next.status, next.pid),
                (JobStatus::Finished, Some(102)),
                "{next:?}"
            );
            assert_eq!(calls.get(), [JobStatus::InternalError]);
            drop_returns(m);
            std::fs::remove_dir_all(&dir).ok();
        });
    }
}
