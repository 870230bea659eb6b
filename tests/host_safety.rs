//! Host safety (issue 6): procman is a library inside someone else's process. In
//! `WaitMode::Pidfd` (the Linux default) it changes no signal disposition of the host, so a host
//! thread's blocking system call is never interrupted with EINTR because of it.
//! `WaitMode::Portable` is the exception, and says so: the `wait-timeout` crate installs a
//! SIGCHLD handler (SA_RESTART, chained to the previous handler) on its first wait. A host that
//! ignores SIGCHLD gets a clear SpawnFailed, never a hang or a crash.
//!
//! Every test runs in a process of its own (tests/common/isolate.rs): dispositions, signal
//! masks and the kernel's child-reaping rules are process-wide.

mod common;
#[path = "common/isolate.rs"]
mod isolate;

use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use common::{kid, TempDir};
use isolate::{isolated, isolated_env};
use procman::{JobSpec, JobStatus, KillOutcome, ProcessManager, ShutdownMode, Stream, WaitMode};

const LIMIT: Duration = Duration::from_secs(120);
const LONG: Duration = Duration::from_secs(60);

/// One signal's disposition: handler address, flags, and which signals its mask blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Disposition {
    handler: usize,
    flags: i32,
    mask: Vec<i32>,
}

fn disposition(sig: i32) -> Disposition {
    // SAFETY: a null new action only reads the current one; sigismember reads a valid set.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(
            libc::sigaction(sig, std::ptr::null(), &mut old),
            0,
            "signal {sig}"
        );
        let mask = (1..=64)
            .filter(|&s| libc::sigismember(&old.sa_mask, s) == 1)
            .collect();
        Disposition {
            handler: old.sa_sigaction,
            flags: old.sa_flags,
            mask,
        }
    }
}

/// Signals 1..=31 (every standard signal).
fn all_dispositions() -> Vec<(i32, Disposition)> {
    (1..=31).map(|s| (s, disposition(s))).collect()
}

fn manager(mode: WaitMode) -> ProcessManager {
    ProcessManager::builder()
        .limit(4)
        .grace(Duration::from_millis(200))
        .wait_mode(mode)
        .build()
        .unwrap()
}

/// Runs one job of every kind that makes procman signal, wait or read: success, failure, crash,
/// timeout (TERM ignored, so SIGKILL after the grace), kill, observed output, input bytes,
/// spawn failure, a process tree, and a shutdown that kills a running job. Calls `during`
/// while jobs run: an observed job surely running (it printed `ready`) beside an unobserved
/// one; the same once the first was asked to die and ignores the TERM (its grace is 200 ms);
/// and with a job in its timeout's 2 s grace.
fn exercise(m: &ProcessManager, during: &dyn Fn(&str)) {
    let dir = TempDir::new("exercise");
    let ok = |s: JobSpec| m.run(s).unwrap().status;
    assert_eq!(ok(JobSpec::new("true")), JobStatus::Finished);
    assert_eq!(ok(JobSpec::new("false")), JobStatus::Failed);
    assert_eq!(ok(JobSpec::new(kid()).arg("segv")), JobStatus::Crashed);
    assert_eq!(
        ok(JobSpec::new(kid())
            .args(["ignore-term", "30"])
            .timeout(Duration::from_millis(100))),
        JobStatus::TimedOut
    );
    assert_eq!(
        ok(JobSpec::new(kid())
            .args(["lines", "1000"])
            .log_file(dir.join("lines.log"))
            .observe(|_, _, _| {})),
        JobStatus::Finished
    );
    assert_eq!(
        ok(JobSpec::new(kid())
            .arg("cat")
            .input_bytes(vec![7u8; 300_000])),
        JobStatus::Finished
    );
    assert_eq!(ok(JobSpec::new("/no/such/program")), JobStatus::SpawnFailed);
    // Leaves that sleep 2 s: Portable mode does not kill leftovers, so they end on their own.
    assert_eq!(
        ok(JobSpec::new(kid()).args(["tree", "2", "3", "2"])),
        JobStatus::Finished
    );
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let killed = m
        .start_process(JobSpec::new(kid()).args(["ignore-term", "30"]).observe(
            move |_, s, line| {
                if s == Stream::Stdout && line == b"ready" {
                    let _ = tx.lock().unwrap().send(());
                }
            },
        ))
        .unwrap();
    let plain = m
        .start_process(JobSpec::new(kid()).args(["sleep", "30"]))
        .unwrap();
    rx.recv_timeout(LONG).unwrap();
    during("an observed job and a plain one run");
    assert_eq!(m.kill_process(killed), Ok(KillOutcome::Killing));
    during("a killed job ignores its TERM");
    assert_eq!(m.wait(killed).unwrap().status, JobStatus::Killed);
    // Logs the TERM it ignores: once that line is seen, the job is in its timeout's grace. (2 s
    // is ample time to install its handler first; had it not, the job dies of that TERM and the
    // receive below fails with a clear message.)
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let timed = m
        .start_process(
            JobSpec::new(kid())
                .args(["log-term", "30"])
                .timeout(Duration::from_secs(2))
                .grace(Duration::from_secs(2))
                .observe(move |_, s, line| {
                    if s == Stream::Stdout && line == b"TERM" {
                        let _ = tx.lock().unwrap().send(());
                    }
                }),
        )
        .unwrap();
    rx.recv_timeout(LONG)
        .expect("the timeout's TERM, caught (not: the job died of it, or no TERM came)");
    during("a timed-out job is in its grace");
    assert_eq!(m.kill_process(plain), Ok(KillOutcome::Killing));
    assert_eq!(m.wait(plain).unwrap().status, JobStatus::Killed);
    let r = m.wait(timed).unwrap();
    assert_eq!(
        (r.status, r.signal),
        (JobStatus::TimedOut, Some(libc::SIGKILL))
    );
    let at_shutdown = m
        .start_process(JobSpec::new(kid()).args(["sleep", "30"]))
        .unwrap();
    m.shutdown(ShutdownMode::Cancel, None);
    assert!(m.job_data(at_shutdown).unwrap().status.is_final());
}

/// Portable mode may add wait-timeout's SIGCHLD handler (R10) and nothing else.
fn portable_changed_only_sigchld(before: &[(i32, Disposition)], when: &str) {
    for ((sig, b), (_, a)) in before.iter().zip(&all_dispositions()) {
        if *sig == libc::SIGCHLD && a != b {
            assert_eq!(b.handler, libc::SIG_DFL, "{when}");
            assert_ne!(a.handler, libc::SIG_DFL, "{when}: wait-timeout's handler");
            assert_ne!(
                a.flags & libc::SA_RESTART,
                0,
                "{when}: interrupted calls restart"
            );
            assert_ne!(a.flags & libc::SA_NOCLDSTOP, 0, "{when}");
        } else {
            assert_eq!(a, b, "{when}: signal {sig}");
        }
    }
}

#[test]
fn the_pidfd_wait_changes_no_signal_disposition_of_the_host() {
    isolated(
        "the_pidfd_wait_changes_no_signal_disposition_of_the_host",
        LIMIT,
        || {
            let before = all_dispositions();
            let m = manager(WaitMode::Pidfd);
            exercise(&m, &|when| assert_eq!(all_dispositions(), before, "{when}"));
            drop(m);
            assert_eq!(all_dispositions(), before);
            // The process-wide manager too, while its job runs and after.
            let g = ProcessManager::global();
            let (tx, rx) = mpsc::channel();
            let tx = std::sync::Mutex::new(tx);
            let id = g
                .start_process(
                    JobSpec::new(kid())
                        .args(["ready-sleep", "30"])
                        .timeout(Duration::from_secs(60))
                        .observe(move |_, s, line| {
                            if s == Stream::Stdout && line == b"ready" {
                                let _ = tx.lock().unwrap().send(());
                            }
                        }),
                )
                .unwrap();
            rx.recv_timeout(LONG).unwrap();
            assert_eq!(all_dispositions(), before, "a global job runs");
            let _ = g.kill_process(id);
            assert_eq!(g.wait(id).unwrap().status, JobStatus::Killed);
            g.shutdown(ShutdownMode::Cancel, None);
            assert_eq!(all_dispositions(), before);
        },
    );
}

#[test]
fn the_portable_wait_installs_a_restarting_sigchld_handler_and_changes_nothing_else() {
    isolated(
        "the_portable_wait_installs_a_restarting_sigchld_handler_and_changes_nothing_else",
        LIMIT,
        || {
            let before = all_dispositions();
            let m = manager(WaitMode::Portable);
            // Building the manager installs nothing; the first wait does.
            assert_eq!(all_dispositions(), before);
            exercise(&m, &|when| portable_changed_only_sigchld(&before, when));
            drop(m);
            let after = all_dispositions();
            for ((sig, b), (_, a)) in before.iter().zip(&after) {
                if *sig == libc::SIGCHLD {
                    assert_eq!(b.handler, libc::SIG_DFL);
                    assert_ne!(a.handler, libc::SIG_DFL, "wait-timeout's handler");
                    assert_ne!(a.flags & libc::SA_RESTART, 0, "interrupted calls restart");
                    assert_ne!(a.flags & libc::SA_NOCLDSTOP, 0);
                } else {
                    assert_eq!(a, b, "signal {sig}");
                }
            }
        },
    );
}

/// With `PROCMAN_BLOCK_SIGCHLD=1`, blocks SIGCHLD in the main thread before `main` (and so
/// before the test harness creates any thread): every thread inherits it blocked, and the one
/// that unblocks it (the reader below) is the only one the kernel can deliver SIGCHLD to.
#[used]
#[link_section = ".init_array"]
static BLOCK_SIGCHLD_BEFORE_MAIN: extern "C" fn() = block_sigchld_before_main;

extern "C" fn block_sigchld_before_main() {
    // SAFETY: getenv with a valid C string before any thread exists; plain signal-mask calls.
    unsafe {
        let v = libc::getenv(c"PROCMAN_BLOCK_SIGCHLD".as_ptr());
        if v.is_null() || *v != b'1' as libc::c_char {
            return;
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

const BLOCK: &[(&str, &str)] = &[("PROCMAN_BLOCK_SIGCHLD", "1")];

/// Blocks SIGCHLD in the calling thread (so every thread created after this, the manager's
/// included, inherits it blocked) and starts a thread that unblocks it and blocks in `read(2)`
/// on a pipe: with [`BLOCK`] in the environment (see above), every SIGCHLD of the process is
/// then delivered to that thread. Returns the pipe's
/// write end, a receiver that fires once the reader is about to read, and one that gets what
/// each `read` call returned (`Err(errno)` for a failure).
fn blocked_reader() -> (
    std::fs::File,
    mpsc::Receiver<()>,
    mpsc::Receiver<ReadResults>,
) {
    // SAFETY: plain signal-mask calls on valid sigsets.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
    }
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    use std::os::fd::FromRawFd;
    let (r, w) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut results = Vec::new();
        // SAFETY: as above; then read into a valid one-byte buffer.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            ready_tx.send(()).unwrap();
            loop {
                let mut b = 0u8;
                let n = libc::read(r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
                if n >= 0 {
                    results.push(Ok(n));
                    break;
                }
                let e = std::io::Error::last_os_error().raw_os_error().unwrap();
                results.push(Err(e));
                if e != libc::EINTR {
                    break;
                }
            }
        }
        done_tx.send(results).unwrap();
    });
    (w, ready_rx, done_rx)
}

/// What each `read(2)` call of the reader returned: bytes read, or the errno.
type ReadResults = Vec<Result<isize, i32>>;

/// Jobs end (SIGCHLDs are sent) while the reader blocks; then it gets its byte.
fn run_jobs_while_reading(mode: WaitMode) -> ReadResults {
    use std::io::Write;
    let (mut w, ready, done) = blocked_reader();
    let m = manager(mode);
    ready.recv_timeout(LONG).unwrap();
    exercise(&m, &|_| {});
    drop(m);
    w.write_all(b"x").unwrap();
    done.recv_timeout(LONG).unwrap()
}

#[test]
fn a_host_threads_blocking_read_is_not_interrupted_by_the_pidfd_wait() {
    isolated_env(
        "a_host_threads_blocking_read_is_not_interrupted_by_the_pidfd_wait",
        LIMIT,
        BLOCK,
        || assert_eq!(run_jobs_while_reading(WaitMode::Pidfd), vec![Ok(1)]),
    );
}

#[test]
fn a_host_threads_blocking_read_is_not_interrupted_by_the_portable_wait() {
    // wait-timeout's handler runs on the reading thread (the only one with SIGCHLD unblocked),
    // but it is installed with SA_RESTART, so the read restarts instead of failing with EINTR.
    isolated_env(
        "a_host_threads_blocking_read_is_not_interrupted_by_the_portable_wait",
        LIMIT,
        BLOCK,
        || assert_eq!(run_jobs_while_reading(WaitMode::Portable), vec![Ok(1)]),
    );
}

extern "C" fn count_sigchld(_: libc::c_int) {}

#[test]
fn the_eintr_probe_sees_a_sigchld_handler_without_sa_restart() {
    // The control for the two tests above: with a handler that does not restart, the same
    // reader does see EINTR, so their `vec![Ok(1)]` is a real observation.
    isolated_env(
        "the_eintr_probe_sees_a_sigchld_handler_without_sa_restart",
        LIMIT,
        BLOCK,
        || {
            // SAFETY: installs a handler that does nothing (async-signal-safe).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = count_sigchld as *const () as usize;
                sa.sa_flags = 0;
                assert_eq!(libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()), 0);
            }
            let results = run_jobs_while_reading(WaitMode::Pidfd);
            assert!(results.contains(&Err(libc::EINTR)), "{results:?}");
            assert_eq!(results.last(), Some(&Ok(1)));
        },
    );
}

fn ignore_sigchld(flags_only: bool) {
    // SAFETY: sets SIGCHLD's disposition; no handler code is involved.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        if flags_only {
            sa.sa_sigaction = libc::SIG_DFL;
            sa.sa_flags = libc::SA_NOCLDWAIT;
        } else {
            sa.sa_sigaction = libc::SIG_IGN;
        }
        assert_eq!(libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()), 0);
    }
}

#[test]
fn a_host_that_ignores_sigchld_gets_a_clear_spawn_failure_not_a_hang() {
    isolated(
        "a_host_that_ignores_sigchld_gets_a_clear_spawn_failure_not_a_hang",
        LIMIT,
        || {
            for flags_only in [false, true] {
                ignore_sigchld(flags_only);
                for mode in [WaitMode::Pidfd, WaitMode::Portable] {
                    let m = manager(mode);
                    let (tx, rx) = mpsc::channel();
                    let id = m
                        .start_process(
                            JobSpec::new("true").on_finish(move |r| tx.send(r.clone()).unwrap()),
                        )
                        .unwrap();
                    let r = rx.recv_timeout(LONG).expect("the handler runs, no hang");
                    assert_eq!(r.id, id);
                    assert_eq!(r.status, JobStatus::SpawnFailed, "{mode:?}");
                    let e = r.error.unwrap();
                    assert!(e.contains("ignores SIGCHLD"), "{e}");
                    m.shutdown(ShutdownMode::Cancel, None);
                }
            }
        },
    );
}

#[test]
fn a_host_that_starts_ignoring_sigchld_while_a_job_runs_gets_a_clear_error_not_a_hang() {
    isolated(
        "a_host_that_starts_ignoring_sigchld_while_a_job_runs_gets_a_clear_error_not_a_hang",
        LIMIT,
        || {
            for mode in [WaitMode::Pidfd, WaitMode::Portable] {
                // Restore the default between rounds.
                unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
                let m = manager(mode);
                let (tx, rx) = mpsc::channel();
                let tx = std::sync::Mutex::new(tx);
                let id = m
                    .start_process(JobSpec::new(kid()).args(["ready-sleep", "0.5"]).observe(
                        move |_, s, line| {
                            if s == Stream::Stdout && line == b"ready" {
                                let _ = tx.lock().unwrap().send(());
                            }
                        },
                    ))
                    .unwrap();
                rx.recv_timeout(LONG).unwrap();
                ignore_sigchld(false);
                let r = m.wait_timeout(id, LONG).expect("no hang");
                // The kernel reaped the program itself, so its exit status is lost.
                assert_eq!(r.status, JobStatus::Failed, "{mode:?}");
                let e = r.error.unwrap();
                assert!(e.contains("SIGCHLD"), "{mode:?}: {e}");
                m.shutdown(ShutdownMode::Cancel, None);
            }
        },
    );
}

#[test]
fn under_fd_exhaustion_every_job_ends_and_the_pidfd_wait_still_installs_no_handler() {
    // The host is at its descriptor limit: pipes, pidfds and spawns fail at random points.
    // Every job must still end exactly once (SpawnFailed or run), with no hang, no panic, and
    // no fallback that installs a signal handler.
    isolated(
        "under_fd_exhaustion_every_job_ends_and_the_pidfd_wait_still_installs_no_handler",
        LIMIT,
        || {
            let before = all_dispositions();
            let m = manager(WaitMode::Pidfd);
            let open = common::fd_count() as u64;
            // SAFETY: lowers this process's own soft limit.
            unsafe {
                let mut rl: libc::rlimit = std::mem::zeroed();
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
                rl.rlim_cur = open + 10; // A mix of spawn failures and runs (was 22 before procman's
                                         // own posix_spawn, which opens no /dev/null and no error pipe in the host).
                assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
            }
            let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut statuses = std::collections::HashMap::new();
            let ids: Vec<_> = (0..200)
                .map(|i| {
                    let c = calls.clone();
                    let mut spec = JobSpec::new(kid())
                        .args(["lines", "3"])
                        .on_finish(move |_| {
                            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        });
                    if i % 2 == 0 {
                        spec = spec.observe(|_, _, _| {});
                    }
                    m.start_process(spec).unwrap()
                })
                .collect();
            let mut emfile = 0;
            for id in ids {
                let r = m.wait_timeout(id, LONG).expect("every job ends");
                *statuses.entry(r.status).or_insert(0) += 1;
                assert!(
                    matches!(r.status, JobStatus::Finished | JobStatus::SpawnFailed),
                    "{:?}: {:?}",
                    r.status,
                    r.error
                );
                if r.status == JobStatus::SpawnFailed {
                    // A spawn failure here can only be the limit, and the record says so.
                    let e = r.error.unwrap_or_default();
                    assert!(e.contains("Too many open files"), "{e}");
                    emfile += 1;
                }
            }
            m.shutdown(ShutdownMode::Cancel, None);
            assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 200);
            println!("under fd exhaustion: {statuses:?}");
            // The limit was met, so the test tested something: with 4 workers spawning at once,
            // 10 descriptors are not enough (runs saw 60 to 70 spawn failures out of 200).
            assert!(emfile > 0, "no job met the descriptor limit: {statuses:?}");
            assert!(statuses.contains_key(&JobStatus::Finished), "{statuses:?}");
            assert_eq!(all_dispositions(), before);
        },
    );
}

#[test]
fn a_pidfd_manager_built_without_free_fds_still_installs_no_handler_and_kills_leftovers() {
    // Regression: a worker that could not create its eventfd (the host was at its descriptor
    // limit when the manager was built), or a job whose pidfd could not be opened, fell back to
    // the wait-timeout crate: a SIGCHLD handler appeared in the host, leftovers were no longer
    // killed, and wait-timeout's first use panics (leaving the job running forever) when it
    // cannot create its own socket pair. Pidfd mode now polls `waitid(WNOWAIT)` instead.
    isolated(
        "a_pidfd_manager_built_without_free_fds_still_installs_no_handler_and_kills_leftovers",
        LIMIT,
        || {
            let before = all_dispositions();
            // SAFETY: changes this process's own soft descriptor limit.
            let set_limit = |n: u64| unsafe {
                let mut rl: libc::rlimit = std::mem::zeroed();
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
                let old = rl.rlim_cur;
                rl.rlim_cur = n;
                assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
                old
            };
            let dir = TempDir::new("nofds");
            // One worker, created with no descriptor to spare: fill the table up to the limit.
            let old = set_limit(common::fd_count() as u64 + 64);
            let mut hog = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                hog.push(f);
            }
            let m = ProcessManager::builder()
                .limit(1)
                .grace(Duration::from_millis(100))
                .build()
                .unwrap();
            // Its first job cannot open its log either: proof the worker met the limit when it
            // started. (Without a log it would now run: posix_spawn opens /dev/null in the
            // child, in place of the descriptor it replaces.)
            assert_eq!(
                m.run(JobSpec::new("true").log_file(dir.join("first.log")))
                    .unwrap()
                    .status,
                JobStatus::SpawnFailed
            );
            drop(hog);
            set_limit(old);
            let log = dir.join("gc.log");
            let r = m
                .run(
                    JobSpec::new(kid())
                        .args(["grandchild", "30"])
                        .log_file(&log),
                )
                .unwrap();
            assert_eq!(r.status, JobStatus::Finished);
            let grandchild: u32 = std::fs::read_to_string(&log)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(
                common::eventually(Duration::from_secs(10), || !common::alive(grandchild)),
                "the leftover grandchild was killed"
            );
            let r = m
                .run(
                    JobSpec::new(kid())
                        .args(["ignore-term", "30"])
                        .timeout(Duration::from_millis(100)),
                )
                .unwrap();
            assert_eq!(r.status, JobStatus::TimedOut);
            assert_eq!(r.signal, Some(libc::SIGKILL));
            assert!(r.usage.unwrap().user_cpu.is_some(), "reaped with wait4");
            assert_eq!(m.run(JobSpec::new("false")).unwrap().exit_code, Some(1));
            drop(m);
            assert_eq!(all_dispositions(), before);
        },
    );
}
