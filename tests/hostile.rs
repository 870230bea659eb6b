//! Reliability under hostile programs and a hostile environment (issue 6). Each hostile
//! behaviour is a mode of `procman-testkid` (tests/support/testkid.rs) and each test names the
//! promise it pins (DESIGN.md, "RELIABILITY", lists them).

mod common;
#[path = "common/isolate.rs"]
mod isolate;

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{alive, eventually, kid, live_in_group, pattern, proc_stat, TempDir};
use procman::{
    Event, JobRecord, JobSpec, JobStatus, KillOutcome, ObserveMode, ProcessManager, Stream,
    WaitMode, OBSERVER_LINE_CAP,
};

const LONG: Duration = Duration::from_secs(60);

fn manager(mode: WaitMode) -> ProcessManager {
    ProcessManager::builder()
        .limit(4)
        .grace(Duration::from_millis(300))
        .wait_mode(mode)
        .build()
        .unwrap()
}

const MODES: [WaitMode; 2] = [WaitMode::Pidfd, WaitMode::Portable];

/// A handler that counts its calls per job, and the counts.
type Counts = Arc<Mutex<HashMap<procman::JobId, usize>>>;
fn counting(counts: &Counts) -> impl FnOnce(&JobRecord) + Send + 'static {
    let counts = counts.clone();
    move |r| *counts.lock().unwrap().entry(r.id).or_default() += 1
}

/// Blocks until the job's program printed `ready` (seen through an observer).
fn spec_with_ready(spec: JobSpec) -> (JobSpec, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let spec = spec.observe(move |_, stream, line| {
        if stream == Stream::Stdout && line == b"ready" {
            let _ = tx.lock().unwrap().send(());
        }
    });
    (spec, rx)
}

fn pids_in(log: &Path) -> Vec<u32> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

// ---- Hostile children ----

#[test]
fn a_child_that_ignores_term_and_int_is_killed_with_sigkill_after_the_grace_period() {
    let dir = TempDir::new("ignoreterm");
    for mode in MODES {
        let m = manager(mode);
        // The child catches TERM and INT, logs each one it gets and carries on: its log shows
        // that the TERM came, while it was alive, before the KILL ended it.
        let log = dir.join(&format!("{mode:?}.log"));
        let (spec, ready) =
            spec_with_ready(JobSpec::new(kid()).args(["log-term", "60"]).log_file(&log));
        let id = m
            .start_process(spec.grace(Duration::from_millis(400)))
            .unwrap();
        ready.recv_timeout(LONG).expect("the child is ready");
        let asked = Instant::now();
        assert_eq!(m.kill_process(id), Ok(KillOutcome::Killing));
        let r = m.wait(id).unwrap();
        let took = asked.elapsed();
        assert_eq!(r.status, JobStatus::Killed, "{mode:?}");
        assert_eq!(r.signal, Some(libc::SIGKILL), "{mode:?}: TERM was ignored");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "ready\nTERM\n",
            "{mode:?}: one TERM, received and ignored before the KILL"
        );
        assert!(
            took >= Duration::from_millis(400),
            "{mode:?}: SIGKILL before the grace: {took:?}"
        );
        assert!(took < Duration::from_secs(20), "{mode:?}: {took:?}");
        assert!(live_in_group(r.pid.unwrap()).is_empty());
    }
}

#[test]
fn a_process_tree_left_behind_by_its_root_is_ended_with_the_group() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("tree");
    let log = dir.join("tree.log");
    // Depth 3, width 3: 40 processes, each sleeping 60 s; the root exits at once.
    let r = m
        .run(
            JobSpec::new(kid())
                .args(["tree", "3", "3", "60"])
                .log_file(&log),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    let pgid = r.pid.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || live_in_group(pgid).is_empty()),
        "left alive in group {pgid}: {:?}",
        live_in_group(pgid)
    );
    let pids = pids_in(&log);
    assert!(!pids.is_empty());
    assert!(eventually(Duration::from_secs(10), || pids
        .iter()
        .all(|&p| !alive(p))));
}

#[test]
fn a_grandchild_in_a_new_session_escapes_the_group_kill_and_procman_does_not_wait_for_it() {
    // Documented limit (DESIGN.md, "Limits, stated"): a process that calls setsid() leaves the job's
    // process group, so neither the timeout/kill nor the leftover kill reaches it. procman does
    // not track it; with observed output it stops waiting for the pipes after the drain bound.
    let dir = TempDir::new("setsid");
    let bound = Duration::from_millis(300);
    for observed in [false, true] {
        // The process-group mode's limit (a cgroup per job ends it: tests/containment.rs).
        let m = ProcessManager::builder()
            .output_drain_bound(bound)
            .containment(procman::Containment::ProcessGroup)
            .build()
            .unwrap();
        let log = dir.join(&format!("setsid{observed}.log"));
        let mut spec = JobSpec::new(kid())
            .args(["setsid-grandchild", "60"])
            .log_file(&log);
        if observed {
            spec = spec.observe(|_, _, _| {});
        }
        let t = Instant::now();
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        // The bound, and a second for spawning and running the program on a loaded machine.
        assert!(
            t.elapsed() < bound + Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(r.error, None);
        let grandchild = pids_in(&log)[0];
        let (_, _, pgrp) = proc_stat(grandchild).expect("the escaped grandchild lives on");
        assert_ne!(pgrp, r.pid.unwrap(), "it left the job's group");
        assert!(alive(grandchild), "it escaped the leftover kill");
        // Clean up what procman cannot.
        unsafe { libc::kill(grandchild as i32, libc::SIGKILL) };
        assert!(eventually(Duration::from_secs(10), || !alive(grandchild)));
    }
}

#[test]
fn a_program_that_exits_while_its_grandchild_holds_the_observed_pipes_completes() {
    let dir = TempDir::new("holdpipes");
    let bound = Duration::from_millis(300);
    for mode in [ObserveMode::Pipes, ObserveMode::Files] {
        let m = ProcessManager::builder()
            .output_drain_bound(bound)
            .observe_mode(mode)
            .build()
            .unwrap();
        // Leftovers killed (the default): the pipes close with the group, nothing to wait for.
        let log = dir.join(&format!("killed-{mode:?}.log"));
        let t = Instant::now();
        let r = m
            .run(
                JobSpec::new(kid())
                    .args(["grandchild", "60"])
                    .log_file(&log)
                    .observe(|_, _, _| {}),
            )
            .unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        // Nothing to wait for: below the bound plus a second for spawning on a loaded machine.
        assert!(
            t.elapsed() < bound + Duration::from_secs(1),
            "{:?}",
            t.elapsed()
        );
        let g = pids_in(&log)[0];
        assert!(eventually(Duration::from_secs(10), || !alive(g)));

        // Leftovers kept: the grandchild holds the output. Through pipes, completion waits the
        // drain bound, no more; following the files, it waits for nothing.
        let log = dir.join(&format!("kept-{mode:?}.log"));
        let lines = Arc::new(AtomicUsize::new(0));
        let n = lines.clone();
        let t = Instant::now();
        let r = m
            .run(
                JobSpec::new(kid())
                    .args(["grandchild", "60"])
                    .log_file(&log)
                    .kill_leftovers(false)
                    .observe(move |_, _, _| {
                        n.fetch_add(1, Ordering::SeqCst);
                    }),
            )
            .unwrap();
        let took = t.elapsed();
        assert_eq!(r.status, JobStatus::Finished);
        if mode == ObserveMode::Pipes {
            assert!(took >= bound, "waited for the pipes: {took:?}");
        }
        assert!(took < bound + Duration::from_secs(1), "{mode:?}: {took:?}");
        assert_eq!(lines.load(Ordering::SeqCst), 1, "the pid line was observed");
        let g = pids_in(&log)[0];
        assert!(alive(g));
        unsafe { libc::kill(g as i32, libc::SIGKILL) };
        assert!(eventually(Duration::from_secs(10), || !alive(g)));
    }
}

#[test]
fn a_program_that_closes_stdout_early_finishes_normally() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("closestdout");
    for observed in [false, true] {
        let log = dir.join(&format!("c{observed}.log"));
        let mut spec = JobSpec::new(kid()).arg("close-stdout").log_file(&log);
        if observed {
            spec = spec.observe(|_, _, _| {});
        }
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        assert_eq!(r.error, None);
        assert_eq!(std::fs::read(&log).unwrap(), b"");
        assert_eq!(
            std::fs::read_to_string(r.error_file.unwrap()).unwrap(),
            "still here\n"
        );
    }
}

#[test]
fn a_leftover_writing_without_end_does_not_keep_an_observed_job_from_completing() {
    // kill_leftovers(false): an in-group leftover writes for ever, faster than the observer
    // (2 ms per 64 KiB piece) takes it, so its reader never finds the file or pipe empty.
    // Completion must still come: the follower reads the files to their size at reap, a pipe
    // reader what its pipe holds at the stop (after the drain bound). Following files, the
    // writer is paced (~75 MB/s, the file is not throttled) and the job runs 0.3 s so the
    // follower is megabytes behind at reap; through a pipe, `cat` is throttled by the pipe.
    let dir = TempDir::new("endless");
    let bound = Duration::from_millis(300);
    for (mode, script) in [
        (
            ObserveMode::Files,
            "sh -c 'while :; do head -c 1048576 /dev/zero; sleep 0.01; done' & sleep 0.3",
        ),
        (ObserveMode::Pipes, "cat /dev/zero & echo started"),
    ] {
        let m = ProcessManager::builder()
            .observe_mode(mode)
            .output_drain_bound(bound)
            .build()
            .unwrap();
        let t = Instant::now();
        let id = m
            .start_process(
                JobSpec::new("sh")
                    .args(["-c", script])
                    .log_file(dir.join(&format!("endless-{mode:?}.log")))
                    .kill_leftovers(false)
                    .observe(|_, _, _| std::thread::sleep(Duration::from_millis(2))),
            )
            .unwrap();
        let r = m.wait_timeout(id, LONG);
        let took = t.elapsed();
        let pgid = m.job_data(id).unwrap().pid.unwrap();
        // The writer is still alive (it keeps the group), so the group id is still ours.
        unsafe { libc::killpg(pgid as i32, libc::SIGKILL) };
        let r = r.unwrap_or_else(|e| panic!("{mode:?}: no completion: {e:?}"));
        assert_eq!(r.status, JobStatus::Finished, "{mode:?}");
        if mode == ObserveMode::Pipes {
            // The pipe reader stops after the bound and drains one pipeful (one 2 ms piece).
            assert!(took < bound + Duration::from_secs(1), "{took:?}");
        }
        assert!(eventually(Duration::from_secs(10), || live_in_group(pgid).is_empty()));
        std::fs::remove_file(dir.join(&format!("endless-{mode:?}.log"))).unwrap();
    }
}

#[test]
fn binary_output_reaches_the_log_and_the_observer_byte_exact() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("binary");
    let log = dir.join("bin.log");
    let lines: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let l = lines.clone();
    let n = 1_000_003;
    let r = m
        .run(
            JobSpec::new(kid())
                .args(["write", &n.to_string(), "0"])
                .log_file(&log)
                .observe(move |_, stream, line| {
                    if stream == Stream::Stdout {
                        l.lock().unwrap().push(line.to_vec());
                    }
                }),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert!(
        std::fs::read(&log).unwrap() == pattern(n),
        "log is byte-exact"
    );
    // The pattern has a \n every 256 bytes and does not end with one.
    let joined = lines.lock().unwrap().join(&b'\n');
    assert!(joined == pattern(n), "observed lines rebuild the output");
}

#[test]
fn a_100_mb_line_is_written_exactly_and_observed_in_capped_pieces() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("longline");
    const N: usize = 100_000_000;
    for observed in [false, true] {
        let log = dir.join(&format!("long{observed}.log"));
        // Each piece's length and whether it is all `x`, checked here: a failed assert inside
        // the observer would only panic the observer.
        let (tx, pieces) = mpsc::channel::<(usize, bool)>();
        let tx = Mutex::new(tx);
        let mut spec = JobSpec::new(kid())
            .args(["long-line", &N.to_string()])
            .log_file(&log);
        if observed {
            spec = spec.observe(move |_, _, line| {
                let piece = (line.len(), line.iter().all(|&b| b == b'x'));
                tx.lock().unwrap().send(piece).unwrap();
            });
        }
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::Finished);
        assert_eq!(r.error, None);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), N as u64 + 1);
        let data = std::fs::read(&log).unwrap();
        assert!(data[..N].iter().all(|&b| b == b'x') && data[N] == b'\n');
        drop(data);
        std::fs::remove_file(&log).unwrap();
        let pieces: Vec<(usize, bool)> = pieces.try_iter().collect();
        if observed {
            let bytes: usize = pieces.iter().map(|p| p.0).sum();
            let longest = pieces.iter().map(|p| p.0).max();
            assert_eq!(bytes, N);
            assert_eq!(longest, Some(OBSERVER_LINE_CAP), "no piece above the cap");
            assert_eq!(pieces.len(), N.div_ceil(OBSERVER_LINE_CAP));
            let bad = pieces.iter().position(|p| !p.1);
            assert_eq!(bad, None, "every observed byte is an x");
        } else {
            assert!(pieces.is_empty());
        }
    }
}

#[test]
fn a_program_that_exhausts_its_own_fds_runs_to_its_end() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("fds");
    for observed in [false, true] {
        let log = dir.join(&format!("fds{observed}.log"));
        let mut spec = JobSpec::new("sh")
            .args(["-c", &format!("ulimit -n 64 && exec {} exhaust-fds", kid())])
            .log_file(&log);
        if observed {
            spec = spec.observe(|_, _, _| {});
        }
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::Finished, "{:?}", r.error);
        // It started with fds 0, 1, 2 only and opened the other 61.
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "61\n");
    }
}

#[test]
fn a_program_killed_by_sigsegv_is_recorded_as_crashed_with_its_signal() {
    for mode in MODES {
        let m = manager(mode);
        for observed in [false, true] {
            let mut spec = JobSpec::new(kid()).arg("segv");
            if observed {
                spec = spec.observe(|_, _, _| {});
            }
            let r = m.run(spec).unwrap();
            assert_eq!(r.status, JobStatus::Crashed, "{mode:?}");
            assert_eq!(r.signal, Some(libc::SIGSEGV), "{mode:?}");
            assert_eq!(r.exit_code, None);
            assert_eq!(r.describe_end(), "terminated by SIGSEGV (signal 11)");
        }
    }
}

// ---- Hostile environment ----

#[test]
fn a_log_on_a_full_device_ends_the_job_with_a_clear_error_and_one_handler_call() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("devfull");
    let counts: Counts = Arc::default();
    // Unobserved: the kernel hands the program the full device; the program sees ENOSPC and
    // fails, and says so in its error file.
    let err = dir.join("direct_err.txt");
    let r = m
        .run(
            JobSpec::new(kid())
                .args(["write", "100000", "0"])
                .log_file("/dev/full")
                .error_file(&err)
                .on_finish(counting(&counts)),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Failed);
    let text = std::fs::read_to_string(&err).unwrap();
    assert!(text.contains("No space left on device"), "{text}");
    // Observed: procman copies the output and meets ENOSPC itself; it keeps draining the pipe
    // (the program is not blocked) and records the error on the job.
    let observed = m
        .run(
            JobSpec::new(kid())
                .args(["write", "100000", "0"])
                .log_file("/dev/full")
                .error_file(dir.join("observed_err.txt"))
                .observe(|_, _, _| {})
                .on_finish(counting(&counts)),
        )
        .unwrap();
    let error = observed.error.clone().expect("the copy error is recorded");
    assert!(error.contains("No space left on device"), "{error}");
    assert!(error.contains("Stdout"), "{error}");
    assert_eq!(observed.exit_code, Some(0));
    m.wait_all();
    let counts = counts.lock().unwrap();
    assert_eq!(counts.get(&r.id), Some(&1));
    assert_eq!(counts.get(&observed.id), Some(&1));
}

#[test]
fn a_log_path_that_is_a_directory_fails_to_spawn_with_its_name() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("logdir");
    let counts: Counts = Arc::default();
    let logdir = dir.join("logs");
    std::fs::create_dir(&logdir).unwrap();
    // An explicit error file inside the temp dir: the default would be `<dir>/../logs_err.txt`.
    let err = dir.join("err.txt");
    let r = m
        .run(
            JobSpec::new("true")
                .log_file(&logdir)
                .error_file(&err)
                .on_finish(counting(&counts)),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed);
    let e = r.error.unwrap();
    assert!(
        e.contains("log file") && e.contains(logdir.to_str().unwrap()),
        "{e}"
    );
    assert!(e.contains("Is a directory"), "{e}");
    assert!(std::fs::read_to_string(&err)
        .unwrap()
        .contains("Is a directory"));
    m.wait_all();
    assert_eq!(counts.lock().unwrap()[&r.id], 1);
}

#[test]
fn a_program_without_execute_permission_fails_to_spawn_even_for_root() {
    use std::os::unix::fs::PermissionsExt;
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("noexec");
    let prog = dir.join("prog.sh");
    std::fs::write(&prog, "#!/bin/sh\nexit 0\n").unwrap();
    // No execute bit at all: even root gets EACCES from execve.
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = m.run(JobSpec::new(&prog)).unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed);
    let e = r.error.unwrap();
    assert!(
        e.contains("Permission denied") && e.contains("prog.sh"),
        "{e}"
    );
}

#[test]
fn unreadable_input_and_unwritable_log_fail_to_spawn_with_permission_denied() {
    // Root bypasses file permissions, so this runs in a child process that drops to the
    // unprivileged user 65534 (nobody) when it is root (see DESIGN.md, "Permission tests and root").
    isolate::isolated(
        "unreadable_input_and_unwritable_log_fail_to_spawn_with_permission_denied",
        LONG,
        || {
            use std::os::unix::fs::PermissionsExt;
            unsafe {
                if libc::geteuid() == 0 {
                    assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
                    assert_eq!(libc::setgid(65534), 0);
                    assert_eq!(libc::setuid(65534), 0);
                }
                assert_ne!(libc::geteuid(), 0);
            }
            let m = manager(WaitMode::Pidfd);
            let dir = TempDir::new("perm");
            let input = dir.join("input.txt");
            std::fs::write(&input, "data").unwrap();
            std::fs::set_permissions(&input, std::fs::Permissions::from_mode(0o000)).unwrap();
            let ro = dir.join("ro");
            std::fs::create_dir(&ro).unwrap();
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
            let err_file = dir.join("err.txt");
            let r = m
                .run(JobSpec::new("cat").input_file(&input).error_file(&err_file))
                .unwrap();
            assert_eq!(r.status, JobStatus::SpawnFailed);
            let e = r.error.unwrap();
            assert!(
                e.contains("input file") && e.contains("Permission denied"),
                "{e}"
            );
            // The failure is written where the user looks first.
            assert!(std::fs::read_to_string(&err_file)
                .unwrap()
                .contains("input.txt"));
            for log in [ro.join("log.txt"), ro.join("sub/log.txt")] {
                let r = m.run(JobSpec::new("true").log_file(&log)).unwrap();
                assert_eq!(r.status, JobStatus::SpawnFailed);
                let e = r.error.unwrap();
                assert!(
                    e.contains("log file") && e.contains("Permission denied"),
                    "{e}"
                );
            }
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
        },
    );
}

#[test]
fn a_missing_program_fails_to_spawn_and_names_it() {
    let m = manager(WaitMode::Pidfd);
    for prog in ["procman-no-such-program-6", "/no/such/dir/prog"] {
        let r = m.run(JobSpec::new(prog)).unwrap();
        assert_eq!(r.status, JobStatus::SpawnFailed);
        let e = r.error.unwrap();
        assert!(e.contains(prog) && e.contains("No such file"), "{e}");
        assert_eq!(r.attempts, 1);
        assert!(r.pid.is_none());
    }
}

fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}

#[test]
fn non_utf8_program_names_arguments_and_paths_work() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("nonutf8");
    let base = dir.path().as_os_str().as_bytes().to_vec();
    let path = |name: &[u8]| PathBuf::from(os(&[&base[..], b"/", name].concat()));
    let prog = path(b"prog-\xff\xfe");
    std::os::unix::fs::symlink(kid(), &prog).unwrap();
    let args = [os(b"a\xff"), os(b"\xc3\x28"), os(b"plain")];
    let log = path(b"log-\xff.txt");
    let r = m
        .run(JobSpec::new(&prog).arg("args").args(&args).log_file(&log))
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{:?}", r.error);
    assert_eq!(r.program.as_os_str(), prog.as_os_str());
    assert_eq!(&r.args[1..], &args[..]);
    assert_eq!(std::fs::read(&log).unwrap(), b"a\xff\n\xc3\x28\nplain\n");
    // The default error file keeps the log's raw bytes too.
    assert_eq!(r.error_file.unwrap(), path(b"log-\xff_err.txt"));
    // A non-UTF-8 working directory and input file.
    let cwd = path(b"cwd-\xfe");
    std::fs::create_dir(&cwd).unwrap();
    let input = path(b"in-\xff");
    std::fs::write(&input, b"in\xffput").unwrap();
    let r = m
        .run(
            JobSpec::new(kid())
                .arg("pwd")
                .cwd(&cwd)
                .log_file(path(b"pwd.log")),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    let mut want = cwd.canonicalize().unwrap().into_os_string().into_vec();
    want.push(b'\n');
    assert_eq!(std::fs::read(path(b"pwd.log")).unwrap(), want);
    let r = m
        .run(
            JobSpec::new(kid())
                .arg("cat")
                .input_file(&input)
                .log_file(path(b"cat.log")),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished);
    assert_eq!(std::fs::read(path(b"cat.log")).unwrap(), b"in\xffput");
    // A missing non-UTF-8 program: a readable error, no panic.
    let r = m.run(JobSpec::new(path(b"missing-\xff"))).unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed);
    assert!(r.error.unwrap().contains("missing-"));
}

#[test]
fn a_working_directory_that_disappears_before_spawn_fails_to_spawn_with_its_name() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("vanish");
    let cwd = dir.join("work");
    std::fs::create_dir(&cwd).unwrap();
    m.pause().unwrap();
    let id = m.start_process(JobSpec::new("true").cwd(&cwd)).unwrap();
    std::fs::remove_dir(&cwd).unwrap();
    m.resume().unwrap();
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed);
    let e = r.error.unwrap();
    assert!(e.contains("working directory") && e.contains("work"), "{e}");
}

#[test]
fn a_working_directory_removed_while_the_job_runs_does_not_disturb_it() {
    let m = manager(WaitMode::Pidfd);
    let dir = TempDir::new("vanish-running");
    let cwd = dir.join("work");
    std::fs::create_dir(&cwd).unwrap();
    let events = m.subscribe(16);
    let id = m
        .start_process(JobSpec::new(kid()).args(["sleep", "0.3"]).cwd(&cwd))
        .unwrap();
    loop {
        if let Event::Started { .. } = events.recv_timeout(LONG).unwrap() {
            break;
        }
    }
    std::fs::remove_dir(&cwd).unwrap();
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Finished);
}

#[test]
fn a_fifo_as_input_or_log_never_blocks_a_worker() {
    // Regression: opening a FIFO blocks until the other end is opened, so a FIFO input with no
    // writer (or a FIFO log with no reader) blocked the worker in open(2) for ever: the job could
    // not be killed and shutdown never returned. Both are now opened non-blocking.
    isolate::isolated(
        "a_fifo_as_input_or_log_never_blocks_a_worker",
        Duration::from_secs(60),
        || {
            let m = manager(WaitMode::Pidfd);
            let dir = TempDir::new("fifo");
            let fifo = dir.join("fifo");
            let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            // No writer: the program reads EOF at once.
            let id = m
                .start_process(JobSpec::new(kid()).arg("cat").input_file(&fifo))
                .unwrap();
            let r = m
                .wait_timeout(id, Duration::from_secs(20))
                .expect("no hang");
            assert_eq!(r.status, JobStatus::Finished);
            // No reader: a clear spawn failure naming the log file.
            let id = m
                .start_process(JobSpec::new("true").log_file(&fifo).error_null())
                .unwrap();
            let r = m
                .wait_timeout(id, Duration::from_secs(20))
                .expect("no hang");
            assert_eq!(r.status, JobStatus::SpawnFailed);
            let e = r.error.unwrap();
            assert!(e.contains("log file") && e.contains("fifo"), "{e}");
            m.shutdown(procman::ShutdownMode::Cancel, None);
        },
    );
}
