//! The Slurm backend against a real Slurm (issue 8).
//!
//! The tests that need a real Slurm (whose jobs run on this machine, so they can read the log
//! files) are `#[ignore = "needs Slurm: ..."]`: a plain `cargo test` passes on a fresh machine and
//! its output lists each of them as `ignored, needs Slurm: ...`. Run them with
//! `sudo .ci/start-slurm.sh` (a one-node cluster) and `cargo test --test slurm -- --ignored`, as
//! `.ci/run` does; run that way, a missing Slurm is a failure. The tests with stand-in Slurm
//! commands always run.
//!
//! Tests hold `serial()` so that they do not compete for the cluster's few CPUs. They
//! synchronise by waiting on the manager (or on a job's record reaching a state), never by
//! sleeping.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{unbounded, Receiver, Sender};
use procman::slurm::SlurmOptions;
use procman::{JobId, JobRecord, JobSpec, JobStatus, KillOutcome, ProcessManager, ShutdownMode};

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Fails the test when no Slurm answers. Every test that needs a real Slurm is `#[ignore]`d with
/// the reason `needs Slurm`, so a plain `cargo test` lists it as ignored, with that reason, where
/// the test runner shows it; `cargo test --test slurm -- --ignored` (what `.ci/run` does after
/// starting one) runs them, and then a missing Slurm is an error. `sinfo` is asked once per test
/// binary, for at most 15 s (a configured but stopped Slurm makes it retry for a minute).
fn slurm_up(test: &str) {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = PROBE.get_or_init(probe) {
        panic!("{test}: no Slurm is reachable: {why}. Start one with `sudo .ci/start-slurm.sh`.");
    }
}

fn probe() -> Result<(), String> {
    let mut child = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("sinfo not found ({e})"))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("sinfo did not answer within 15 s".into());
        }
        // Waiting for a child with a deadline (std has no wait with a timeout).
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    if o.status.success() && !o.stdout.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "sinfo does not answer ({}: {})",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Whether this Slurm keeps accounting (`sacct` answers; without slurmdbd it fails).
fn accounting_on() -> bool {
    Command::new("sacct")
        .args(["-n", "-X", "-j", "1"])
        .output()
        .unwrap()
        .status
        .success()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("procman-slurm-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn manager(options: SlurmOptions, limit: usize) -> ProcessManager {
    ProcessManager::builder()
        .limit(limit)
        .grace(Duration::from_secs(1))
        .slurm(options)
        .build()
        .unwrap()
}

/// Counts handler calls per job.
struct Handlers {
    tx: Sender<(JobId, JobStatus)>,
    rx: Receiver<(JobId, JobStatus)>,
}

impl Handlers {
    fn new() -> Handlers {
        let (tx, rx) = unbounded();
        Handlers { tx, rx }
    }

    fn on(&self, spec: JobSpec) -> JobSpec {
        let tx = self.tx.clone();
        spec.on_finish(move |r| tx.send((r.id, r.status)).unwrap())
    }

    /// After `wait_all`: every handler ran exactly once, with the final status.
    fn calls(&self) -> HashMap<JobId, Vec<JobStatus>> {
        let mut m: HashMap<JobId, Vec<JobStatus>> = HashMap::new();
        for (id, s) in self.rx.try_iter() {
            m.entry(id).or_default().push(s);
        }
        m
    }
}

/// Waits (polling the record, with a deadline) until `cond` holds for the job's record.
fn wait_until(m: &ProcessManager, id: JobId, within: Duration, cond: impl Fn(&JobRecord) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let r = m.job_data(id).expect("a known job");
        if cond(&r) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never reached the expected state: {r:?}"
        );
        // Not synchronisation by sleeping: a bounded wait between checks of the condition.
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Slurm's own view of a job: (JobState, ExitCode) from `scontrol show job`.
fn scontrol(job: u32) -> (String, String) {
    let out = Command::new("scontrol")
        .args(["-o", "show", "job", &job.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or("")
            .to_owned()
    };
    (field("JobState="), field("ExitCode="))
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn success_with_log_content_input_env_and_odd_arguments() {
    let _s = serial();
    slurm_up("success");
    let dir = scratch("success");
    // A '%' in the path: Slurm would expand "%j" unless procman escapes it.
    let log = dir.join("100% done %j").join("log.txt");
    let input = dir.join("keywords.txt");
    std::fs::write(&input, "line one\nline two\n").unwrap();
    let m = manager(SlurmOptions::new(), 4);
    let h = Handlers::new();
    let odd = "it's \"odd\" $HOME `x` \\ * \u{e9}";
    let spec = JobSpec::new("sh")
        .args([
            "-c",
            "printf 'arg=%s\\nvar=%s\\npwd=%s\\n' \"$1\" \"$PROCMAN_TEST\" \"$(pwd)\"; cat; echo to-stderr >&2",
            "sh",
            odd,
        ])
        .env("PROCMAN_TEST", "value with spaces")
        .input_file(&input)
        .cwd(&dir)
        .log_file(&log)
        .cpus(1)
        .memory(64 << 20)
        .timeout(Duration::from_secs(600));
    let id = m.start_process(h.on(spec)).unwrap();
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.backend_state.as_deref(), Some("COMPLETED"));
    let job = r.pid.expect("the Slurm job id");
    assert_eq!(scontrol(job), ("COMPLETED".into(), "0:0".into()));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!(
            "arg={odd}\nvar=value with spaces\npwd={}\nline one\nline two\n",
            dir.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(log.with_file_name("log_err.txt")).unwrap(),
        "to-stderr\n"
    );
    m.wait_all();
    assert_eq!(h.calls()[&id], vec![JobStatus::Finished]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn input_bytes_and_merged_error_output() {
    let _s = serial();
    slurm_up("input_bytes");
    let dir = scratch("bytes");
    let log = dir.join("log.txt");
    let m = manager(SlurmOptions::new(), 4);
    let r = m
        .run(
            JobSpec::new("sh")
                .args(["-c", "cat; echo err >&2"])
                .input_bytes(b"bytes\n".to_vec())
                .merge_error_into_log()
                .log_file(&log),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "bytes\nerr\n");
    // The file that carried the bytes is gone.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn nonzero_exit_is_failed_with_its_code() {
    let _s = serial();
    slurm_up("nonzero_exit");
    let m = manager(SlurmOptions::new(), 4);
    let h = Handlers::new();
    let id = m
        .start_process(h.on(JobSpec::new("sh").args(["-c", "exit 3"])))
        .unwrap();
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.backend_state.as_deref(), Some("FAILED"));
    assert_eq!(r.error, None);
    assert_eq!(scontrol(r.pid.unwrap()), ("FAILED".into(), "3:0".into()));
    m.wait_all();
    assert_eq!(h.calls()[&id], vec![JobStatus::Failed]);
}

/// The job's own log of a stubborn job (see the timeout test): `start T`, then `alive T` every
/// 50 ms, and `term T` for each SIGTERM it caught and ignored; T is the job's wall clock
/// (`$EPOCHREALTIME`, seconds since the epoch).
const STUBBORN: &str = r#"log=$1
trap 'echo "term $EPOCHREALTIME" >>"$log"' TERM
echo "start $EPOCHREALTIME" >>"$log"
while :; do echo "alive $EPOCHREALTIME" >>"$log"; sleep 0.05; done"#;

/// The times of the `what` lines of a [`STUBBORN`] log.
fn stamps(log: &str, what: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| l.strip_prefix(what)?.strip_prefix(' ')?.parse().ok())
        .collect()
}

fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn procman_timeout_is_precise_and_survives_a_job_that_ignores_sigterm() {
    let _s = serial();
    slurm_up("timeout");
    let dir = scratch("timeout");
    let log = dir.join("stubborn.log");
    let m = manager(SlurmOptions::new(), 4);
    let h = Handlers::new();
    // Longer than a job's submit-to-running latency (about 1-3 s here), so a TERM sent at once
    // instead of at the timeout comes before `submitted + TIMEOUT`.
    const TIMEOUT: Duration = Duration::from_secs(4);
    const GRACE: Duration = Duration::from_secs(2);
    let submitted = SystemTime::now();
    // Catches and ignores SIGTERM, logging it (so does the loop: its `sleep` dies of it and the
    // next one starts): only the SIGKILL after the grace ends it.
    let stubborn = m
        .start_process(
            h.on(JobSpec::new("bash")
                .args(["-c", STUBBORN, "bash"])
                .arg(&log)
                .timeout(TIMEOUT)
                .grace(GRACE)),
        )
        .unwrap();
    let polite = m
        .start_process(h.on(JobSpec::new("sleep").arg("300").timeout(TIMEOUT)))
        .unwrap();
    for id in [stubborn, polite] {
        wait_until(&m, id, Duration::from_secs(60), |r| {
            r.backend_state.as_deref() == Some("RUNNING") || r.status.is_final()
        });
    }
    let running = Instant::now();
    let a = m.wait(stubborn).unwrap();
    let b = m.wait(polite).unwrap();
    let took = running.elapsed();
    for r in [&a, &b] {
        assert_eq!(r.status, JobStatus::TimedOut, "{r:?}");
        // Not before the timeout (counted from when procman saw the job running).
        let wall = r.usage.unwrap().wall;
        assert!(wall >= TIMEOUT, "ended {wall:?} after it ran: {r:?}");
        assert!(wall < Duration::from_secs(30), "{r:?}");
        let (state, _) = scontrol(r.pid.unwrap());
        assert!(state == "CANCELLED" || state == "FAILED", "{state}");
    }
    // Slurm's own minute limits fire after 64-82 s; procman's came after the timeout + grace.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(b.signal, Some(15), "{b:?}");

    // The stubborn job's own view: one SIGTERM, not before the timeout; it lived on through
    // the grace; then SIGKILL ended it (a plain `scancel` would have sent a second SIGTERM and
    // left it running for Slurm's KillWait).
    let text = std::fs::read_to_string(&log).unwrap();
    let terms = stamps(&text, "term");
    let [term] = terms[..] else {
        panic!("expected exactly one SIGTERM: {text}");
    };
    let start = stamps(&text, "start")[0];
    assert!(
        term >= epoch_secs(submitted) + TIMEOUT.as_secs_f64(),
        "SIGTERM {:.3} s after the submission, before the {TIMEOUT:?} timeout",
        term - epoch_secs(submitted)
    );
    assert!(term > start, "{text}");
    let last_alive = stamps(&text, "alive").into_iter().fold(f64::MIN, f64::max);
    assert!(
        last_alive >= term + GRACE.as_secs_f64() / 2.0,
        "last alive {:.3} s after the SIGTERM, the grace is {GRACE:?}: {text}",
        last_alive - term
    );
    assert_eq!(a.signal, Some(9), "ended by SIGKILL: {a:?}");
    m.wait_all();
    let calls = h.calls();
    assert_eq!(calls[&stubborn], vec![JobStatus::TimedOut]);
    assert_eq!(calls[&polite], vec![JobStatus::TimedOut]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn kill_while_pending_cancels_it_in_slurm() {
    let _s = serial();
    slurm_up("kill_pending");
    // --begin keeps the job pending (reason BeginTime) for an hour.
    let m = manager(SlurmOptions::new().sbatch_arg("--begin=now+3600"), 4);
    let h = Handlers::new();
    let id = m
        .start_process(h.on(JobSpec::new("sleep").arg("300")))
        .unwrap();
    wait_until(&m, id, Duration::from_secs(30), |r| r.pid.is_some());
    let job = m.job_data(id).unwrap().pid.unwrap();
    assert_eq!(scontrol(job).0, "PENDING");
    assert_eq!(m.kill_process(id), Ok(KillOutcome::Killing));
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Cancelled, "{r:?}");
    assert_eq!(r.backend_state.as_deref(), Some("CANCELLED"));
    assert_eq!(scontrol(job).0, "CANCELLED");
    m.wait_all();
    assert_eq!(h.calls()[&id], vec![JobStatus::Cancelled]);
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn kill_while_running_ends_it_as_killed() {
    let _s = serial();
    slurm_up("kill_running");
    let m = manager(SlurmOptions::new(), 4);
    let h = Handlers::new();
    let id = m
        .start_process(h.on(JobSpec::new("sleep").arg("300")))
        .unwrap();
    wait_until(&m, id, Duration::from_secs(60), |r| {
        r.backend_state.as_deref() == Some("RUNNING")
    });
    let t = Instant::now();
    assert_eq!(m.kill_process(id), Ok(KillOutcome::Killing));
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Killed, "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let (state, _) = scontrol(r.pid.unwrap());
    assert!(state == "CANCELLED" || state == "FAILED", "{state}");
    m.wait_all();
    assert_eq!(h.calls()[&id], vec![JobStatus::Killed]);
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn scancel_outside_procman_is_cancelled_when_pending_and_reported_when_running() {
    let _s = serial();
    slurm_up("external_scancel");
    let ext_cancel = |job: u32| {
        assert!(Command::new("scancel")
            .arg(job.to_string())
            .status()
            .unwrap()
            .success());
    };
    let held = manager(SlurmOptions::new().sbatch_arg("--begin=now+3600"), 2);
    let a = held
        .start_process(JobSpec::new("sleep").arg("300"))
        .unwrap();
    wait_until(&held, a, Duration::from_secs(30), |r| r.pid.is_some());
    ext_cancel(held.job_data(a).unwrap().pid.unwrap());
    let ra = held.wait(a).unwrap();
    assert_eq!(ra.status, JobStatus::Cancelled, "{ra:?}");
    assert_eq!(ra.backend_state.as_deref(), Some("CANCELLED"));

    let m = manager(SlurmOptions::new(), 2);
    let b = m.start_process(JobSpec::new("sleep").arg("300")).unwrap();
    wait_until(&m, b, Duration::from_secs(60), |r| {
        r.backend_state.as_deref() == Some("RUNNING")
    });
    ext_cancel(m.job_data(b).unwrap().pid.unwrap());
    let rb = m.wait(b).unwrap();
    assert!(
        matches!(rb.status, JobStatus::Crashed | JobStatus::Failed),
        "{rb:?}"
    );
    assert!(
        rb.error
            .as_deref()
            .unwrap_or("")
            .contains("outside procman"),
        "{rb:?}"
    );
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn refused_submissions_are_spawn_failed_with_slurms_message() {
    let _s = serial();
    slurm_up("refused");
    let dir = scratch("refused");
    // One Handlers per manager: each manager's ids start at 1000.
    let h = Handlers::new();
    let h2 = Handlers::new();
    let bad_partition = manager(SlurmOptions::new().partition("no-such-partition"), 2);
    let a = bad_partition
        .start_process(h.on(JobSpec::new("true").log_file(dir.join("a.log"))))
        .unwrap();
    let ra = bad_partition.wait(a).unwrap();
    assert_eq!(ra.status, JobStatus::SpawnFailed, "{ra:?}");
    let msg = ra.error.unwrap();
    assert!(msg.contains("Invalid partition name specified"), "{msg}");
    // Written where the user looks first too.
    let err = std::fs::read_to_string(dir.join("a_err.txt")).unwrap();
    assert!(err.contains("Invalid partition"), "{err}");

    let m = manager(SlurmOptions::new(), 2);
    let b = m
        .start_process(h2.on(JobSpec::new("true").memory(1 << 50)))
        .unwrap();
    let rb = m.wait(b).unwrap();
    assert_eq!(rb.status, JobStatus::SpawnFailed, "{rb:?}");
    let msg = rb.error.unwrap();
    assert!(
        msg.contains("Memory specification can not be satisfied")
            || msg.contains("Requested node configuration is not available"),
        "{msg}"
    );
    bad_partition.wait_all();
    m.wait_all();
    assert_eq!(h.calls()[&a], vec![JobStatus::SpawnFailed]);
    assert_eq!(h2.calls()[&b], vec![JobStatus::SpawnFailed]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn fifty_jobs_end_to_end_every_handler_once() {
    let _s = serial();
    slurm_up("fifty");
    let dir = scratch("fifty");
    let m = manager(SlurmOptions::new(), 50);
    let h = Handlers::new();
    let t = Instant::now();
    let ids: Vec<JobId> = (0..50)
        .map(|n| {
            m.start_process(
                h.on(JobSpec::new("echo")
                    .arg(format!("job {n}"))
                    .log_file(dir.join(format!("{n}.log")))),
            )
            .unwrap()
        })
        .collect();
    m.wait_all();
    eprintln!(
        "50 Slurm jobs through procman, end to end: {:?}",
        t.elapsed()
    );
    let calls = h.calls();
    assert_eq!(calls.len(), 50);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(calls[id], vec![JobStatus::Finished], "job {id}");
        let r = m.job_data(*id).unwrap();
        assert_eq!(r.backend_state.as_deref(), Some("COMPLETED"));
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap(),
            format!("job {n}\n")
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn shutdown_cancels_everything_the_manager_submitted() {
    let _s = serial();
    slurm_up("shutdown");
    // One Handlers per manager: each manager's ids start at 1000.
    let h = Handlers::new();
    let h2 = Handlers::new();
    let m = manager(SlurmOptions::new(), 4);
    let pending = manager(SlurmOptions::new().sbatch_arg("--begin=now+3600"), 4);
    let running = m
        .start_process(h.on(JobSpec::new("sleep").arg("300")))
        .unwrap();
    let held = pending
        .start_process(h2.on(JobSpec::new("sleep").arg("300")))
        .unwrap();
    wait_until(&m, running, Duration::from_secs(60), |r| {
        r.backend_state.as_deref() == Some("RUNNING")
    });
    wait_until(&pending, held, Duration::from_secs(30), |r| r.pid.is_some());
    let jobs = [
        m.job_data(running).unwrap().pid.unwrap(),
        pending.job_data(held).unwrap().pid.unwrap(),
    ];
    m.shutdown(ShutdownMode::Cancel, None);
    pending.shutdown(ShutdownMode::Cancel, None);
    for job in jobs {
        let (state, _) = scontrol(job);
        assert!(
            state == "CANCELLED" || state == "FAILED",
            "job {job}: {state}"
        );
    }
    assert_eq!(h.calls()[&running], vec![JobStatus::Killed]);
    assert_eq!(h2.calls()[&held], vec![JobStatus::Cancelled]);
}

/// Stand-in Slurm commands: sbatch accepts, squeue has never heard of the job, sacct has no
/// accounting. Runs without a Slurm.
#[test]
fn vanished_job_fails_and_its_handler_runs_once() {
    let _s = serial();
    let dir = scratch("vanished");
    let script = |name: &str, body: &str| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    };
    let options = SlurmOptions::new()
        .sbatch_program(script("sbatch", "cat >/dev/null; echo 4242"))
        .squeue_program(script(
            "squeue",
            "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1",
        ))
        .sacct_program(script(
            "sacct",
            "echo 'Slurm accounting storage is disabled' >&2; exit 1",
        ))
        .scancel_program(script("scancel", "exit 0"));
    let m = manager(options, 2);
    let h = Handlers::new();
    let id = m.start_process(h.on(JobSpec::new("true"))).unwrap();
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Failed, "{r:?}");
    assert_eq!(r.pid, Some(4242));
    let msg = r.error.unwrap();
    assert!(
        msg.contains("vanished") && msg.contains("accounting storage is disabled"),
        "{msg}"
    );
    m.wait_all();
    assert_eq!(h.calls()[&id], vec![JobStatus::Failed]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Stand-in Slurm commands: a job that runs until it is cancelled. Two managers built from one
/// builder have pollers of their own: shutting one down leaves the other's jobs followed, and
/// a kill still goes through SIGTERM, the grace, then the cancel.
#[test]
fn managers_from_one_builder_are_independent_and_kill_escalates() {
    let _s = serial();
    let dir = scratch("fake-kill");
    let d = dir.display();
    let script = |name: &str, body: String| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    };
    let options = SlurmOptions::new()
        .sbatch_program(script("sbatch", "cat >/dev/null; echo 4242".into()))
        .squeue_program(script(
            "squeue",
            format!(
                "if [ -e {d}/cancelled ]; then echo '4242|CANCELLED|15|vm|None|'; \
                 else echo '4242|RUNNING|0|vm|None|'; fi"
            ),
        ))
        .scancel_program(script(
            "scancel",
            format!("echo \"$*\" >>{d}/scancel.log; case $1 in --signal=*) ;; *) touch {d}/cancelled ;; esac"),
        ));
    let builder = ProcessManager::builder()
        .grace(Duration::from_millis(300))
        .slurm(options);
    let first = builder.clone().build().unwrap();
    let second = builder.build().unwrap();
    let h = Handlers::new();
    let id = second
        .start_process(h.on(JobSpec::new("sleep").arg("300")))
        .unwrap();
    wait_until(&second, id, Duration::from_secs(30), |r| {
        r.backend_state.as_deref() == Some("RUNNING")
    });
    first.shutdown(ShutdownMode::Cancel, None);
    assert_eq!(second.kill_process(id), Ok(KillOutcome::Killing));
    let r = second.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Killed, "{r:?}");
    assert_eq!((r.signal, r.error.as_deref()), (Some(15), None));
    assert_eq!(r.backend_state.as_deref(), Some("CANCELLED"));
    assert_eq!(
        std::fs::read_to_string(dir.join("scancel.log")).unwrap(),
        "--signal=TERM --full 4242\n--signal=KILL --full --batch 4242\n4242\n"
    );
    second.wait_all();
    assert_eq!(h.calls()[&id], vec![JobStatus::Killed]);
    std::fs::remove_dir_all(&dir).ok();
}

/// Stand-in Slurm commands (issue 19): a timeout, a grace, a cancel confirmation time and a
/// poll interval of `Duration::MAX` are accepted. The job gets no `--time` (no limit fits), a
/// kill sends SIGTERM and never escalates, and the job ends when it obeys (the stand-in scancel
/// cancels on TERM). Before the fix the worker panicked computing the `--time` backstop (with
/// the timeout) or the end of the grace (without), and the job never ended.
#[test]
fn max_durations_with_stand_in_slurm_end_by_term() {
    let _s = serial();
    max_durations_with_stand_in_slurm("fake-max-timeout", Some(Duration::MAX));
    max_durations_with_stand_in_slurm("fake-max-grace", None);
}

fn max_durations_with_stand_in_slurm(name: &str, timeout: Option<Duration>) {
    let dir = scratch(name);
    let d = dir.display();
    let script = |name: &str, body: String| -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        p
    };
    let options = SlurmOptions::new()
        .sbatch_program(script(
            "sbatch",
            format!("echo \"$*\" >{d}/sbatch.args; cat >/dev/null; echo 4244"),
        ))
        .squeue_program(script(
            "squeue",
            format!(
                "if [ -e {d}/cancelled ]; then echo '4244|CANCELLED|15|vm|None|'; \
                 else echo '4244|RUNNING|0|vm|None|'; fi"
            ),
        ))
        .scancel_program(script(
            "scancel",
            format!("echo \"$*\" >>{d}/scancel.log; touch {d}/cancelled"),
        ))
        .poll_interval(Duration::from_millis(10), Duration::MAX)
        .cancel_confirm_timeout(Duration::MAX);
    // Not dropped if the test fails: a manager whose worker died would hang its drop.
    let m = std::mem::ManuallyDrop::new(
        ProcessManager::builder()
            .limit(1)
            .grace(Duration::MAX)
            .slurm(options)
            .build()
            .unwrap(),
    );
    let h = Handlers::new();
    let mut spec = JobSpec::new("sleep").arg("300");
    if let Some(t) = timeout {
        spec = spec.timeout(t);
    }
    let id = m.start_process(h.on(spec)).unwrap();
    wait_until(&m, id, Duration::from_secs(30), |r| {
        r.backend_state.as_deref() == Some("RUNNING")
    });
    assert_eq!(m.kill_process(id), Ok(KillOutcome::Killing));
    // Bounded only so that a bug fails the test instead of hanging it.
    let r = m.wait_timeout(id, Duration::from_secs(30)).unwrap();
    assert_eq!(r.status, JobStatus::Killed, "{r:?}");
    assert_eq!(r.signal, Some(15), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("scancel.log")).unwrap(),
        "--signal=TERM --full 4244\n"
    );
    let args = std::fs::read_to_string(dir.join("sbatch.args")).unwrap();
    assert!(!args.contains("--time"), "{args}");
    m.wait_all();
    drop(std::mem::ManuallyDrop::into_inner(m));
    assert_eq!(h.calls()[&id], vec![JobStatus::Killed]);
    std::fs::remove_dir_all(&dir).ok();
}

/// A stand-in sbatch that refuses: SpawnFailed with its message, without a Slurm.
#[test]
fn refusal_message_is_kept_without_a_slurm() {
    let _s = serial();
    let dir = scratch("fake-refusal");
    let sbatch = dir.join("sbatch");
    std::fs::write(
        &sbatch,
        "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: Invalid account' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&sbatch, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let m = manager(SlurmOptions::new().sbatch_program(&sbatch), 2);
    let r = m.run(JobSpec::new("true")).unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed);
    assert_eq!(
        r.error.as_deref(),
        Some("sbatch refused the job: sbatch: error: Batch job submission failed: Invalid account")
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `cargo test --release --test slurm -- --ignored --nocapture overhead`: 50 trivial jobs via
/// plain `sbatch --wrap` plus a squeue polling loop, then via procman; prints both.
#[test]
#[ignore = "benchmark, needs Slurm: cargo test --release --test slurm -- --ignored --nocapture overhead"]
fn overhead_50_jobs_plain_sbatch_vs_procman() {
    let _s = serial();
    slurm_up("overhead");
    let plain = r#"
        t0=$(date +%s.%N)
        ids=""
        for i in $(seq 50); do ids="$ids,$(sbatch --parsable --output=/dev/null --wrap true)"; done
        ids=${ids#,}
        echo "plain: 50 submitted after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s" >&2
        while squeue -h -t PENDING,RUNNING,COMPLETING,CONFIGURING -j "$ids" -o %i | grep -q .; do
          sleep 0.1
        done"#;
    let rounds = 5;
    for round in 1..=rounds {
        let t = Instant::now();
        let ok = Command::new("bash").args(["-c", plain]).status().unwrap();
        assert!(ok.success());
        let plain_took = t.elapsed();

        let mut options = SlurmOptions::new();
        if let Some(ms) = std::env::var("PROCMAN_SLURM_POLL_MAX_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            options = options.poll_interval(Duration::from_millis(100), Duration::from_millis(ms));
        }
        let m = manager(options, 50);
        let t = Instant::now();
        let ids: Vec<JobId> = (0..50)
            .map(|_| m.start_process(JobSpec::new("true")).unwrap())
            .collect();
        for &id in &ids {
            wait_until(&m, id, Duration::from_secs(60), |r| {
                r.pid.is_some() || r.status.is_final()
            });
        }
        eprintln!(
            "procman: 50 submitted after {:.2} s",
            t.elapsed().as_secs_f64()
        );
        m.wait_all();
        let procman_took = t.elapsed();
        for id in ids {
            assert_eq!(m.job_data(id).unwrap().status, JobStatus::Finished);
        }
        eprintln!(
            "round {round}: plain sbatch + squeue loop {:.1} s, procman {:.1} s, overhead {:+.1} s",
            plain_took.as_secs_f64(),
            procman_took.as_secs_f64(),
            procman_took.as_secs_f64() - plain_took.as_secs_f64()
        );
    }
}

/// Issue 13: a job waiting in Slurm's queue reads `Queued` (record, events, lists) until Slurm
/// runs it. `--begin=now+3` keeps it pending for a few seconds whatever the cluster's load.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn queued_is_not_running() {
    let _s = serial();
    slurm_up("queued");
    let m = manager(SlurmOptions::new().sbatch_arg("--begin=now+3"), 4);
    let events = m.subscribe(100);
    let id = m
        .start_process(JobSpec::new("sleep").arg("2.13579"))
        .unwrap();
    wait_until(&m, id, Duration::from_secs(30), |r| {
        r.status != JobStatus::Pending
    });
    let r = m.job_data(id).unwrap();
    assert_eq!(r.status, JobStatus::Queued, "{r:?}");
    assert!(!r.status.is_final());
    assert_eq!(r.backend_state.as_deref(), Some("PENDING"));
    assert!(r.pid.is_some() && r.started_at.is_none(), "{r:?}");
    assert!(m.running_processes().is_empty());
    assert_eq!(m.snapshot().count(JobStatus::Queued), 1);
    wait_until(&m, id, Duration::from_secs(60), |r| {
        r.status == JobStatus::Running
    });
    assert_eq!(m.running_processes(), vec![id]);
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    assert!(r.started_at.is_some());
    let seen: Vec<String> = events
        .try_iter()
        .map(|e| match e {
            procman::Event::Queued { .. } => "queued".to_owned(),
            procman::Event::Submitted { cluster_id, .. } => {
                assert_eq!(Some(cluster_id), r.pid);
                "submitted".to_owned()
            }
            procman::Event::Started { .. } => "started".to_owned(),
            procman::Event::Finished(_) => "finished".to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, ["queued", "submitted", "started", "finished"]);
}

/// The threads of this process now.
fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Issue 13: 200 jobs in flight at limit 200 (2 running, the rest queued in Slurm) hold no
/// thread each: the manager's threads stay a handful (submitters, the poller, the handler
/// thread). A cancelling shutdown then cancels all of them in Slurm.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn two_hundred_jobs_in_flight_hold_a_bounded_number_of_threads() {
    let _s = serial();
    slurm_up("threads");
    let before = threads_now();
    let m = manager(SlurmOptions::new(), 200);
    let h = Handlers::new();
    let ids: Vec<JobId> = (0..200)
        .map(|_| {
            m.start_process(h.on(JobSpec::new("sleep").arg("600.2718")))
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut most = 0;
    loop {
        most = most.max(threads_now());
        let waiting = m.snapshot().count(JobStatus::Pending);
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} jobs still not submitted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = m.snapshot();
    assert_eq!(
        s.count(JobStatus::Queued) + s.count(JobStatus::Running),
        200,
        "{s:?}"
    );
    most = most.max(threads_now());
    // Submitters (4) + the poller + the handler thread + spare: far from 200.
    assert!(
        most - before <= 12,
        "{} threads for 200 jobs in flight",
        most - before
    );
    let slurm_ids: Vec<String> = ids
        .iter()
        .map(|&id| m.job_data(id).unwrap().pid.unwrap().to_string())
        .collect();
    m.shutdown(ShutdownMode::Cancel, None);
    let calls = h.calls();
    for id in &ids {
        let c = &calls[id];
        assert!(
            c.len() == 1 && matches!(c[0], JobStatus::Cancelled | JobStatus::Killed),
            "{id}: {c:?}"
        );
    }
    let out = Command::new("squeue")
        .args(["-h", "-t", "PD,R,CG", "-j", &slurm_ids.join(",")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "left in Slurm"
    );
}

/// An allocation of `cpus` CPUs requested by hand (as a user's `sbatch` script has), running.
struct Alloc(u32);

impl Alloc {
    fn new(cpus: u32) -> Alloc {
        let out = Command::new("sbatch")
            .args(["--parsable", "-o", "/dev/null", "-J", "procman-test-alloc"])
            .arg(format!("--ntasks={cpus}"))
            .args(["--wrap", "exec sleep 3600.161803"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let id: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while scontrol(id).0 != "RUNNING" {
            if Instant::now() >= deadline {
                // Not left behind holding the node's CPUs once it runs.
                let _ = Command::new("scancel").arg(id.to_string()).status();
                panic!("allocation {id} never ran within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Alloc(id)
    }
}

impl Drop for Alloc {
    fn drop(&mut self) {
        let _ = Command::new("scancel").arg(self.0.to_string()).status();
    }
}

/// Issue 13: jobs as job steps in an allocation given to procman (as `SLURM_JOB_ID` inside an
/// `sbatch` script): their files, exit codes, signals, kill and timeout, handlers once each.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn steps_in_a_given_allocation() {
    let _s = serial();
    slurm_up("steps");
    let alloc = Alloc::new(2);
    let dir = scratch("steps");
    let m = manager(SlurmOptions::new().steps_in(alloc.0), 2);
    let h = Handlers::new();
    let log = dir.join("ok.log");
    let ok = m
        .start_process(
            h.on(JobSpec::new("sh")
                .args(["-c", "echo \"out $X $(pwd)\"; cat; echo err >&2", "sh"])
                .env("X", "x y")
                .input_bytes(b"from stdin\n".to_vec())
                .cwd(&dir)
                .log_file(&log)),
        )
        .unwrap();
    let three = m
        .start_process(h.on(JobSpec::new("sh").args(["-c", "exit 3"])))
        .unwrap();
    let segv = m
        .start_process(h.on(JobSpec::new("sh").args(["-c", "kill -SEGV $$"])))
        .unwrap();
    let r = m.wait(ok).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("out x y {}\nfrom stdin\n", dir.display())
    );
    assert_eq!(
        std::fs::read_to_string(log.with_file_name("ok_err.txt")).unwrap(),
        "err\n"
    );
    let r = m.wait(three).unwrap();
    assert_eq!(
        (r.status, r.exit_code),
        (JobStatus::Failed, Some(3)),
        "{r:?}"
    );
    let r = m.wait(segv).unwrap();
    assert_eq!(
        (r.status, r.signal),
        (JobStatus::Crashed, Some(11)),
        "{r:?}"
    );

    let killed = m
        .start_process(h.on(JobSpec::new("sleep").arg("300.314159")))
        .unwrap();
    let timed = m
        .start_process(
            h.on(JobSpec::new("sleep")
                .arg("300.314159")
                .timeout(Duration::from_secs(1))),
        )
        .unwrap();
    wait_until(&m, killed, Duration::from_secs(30), |r| {
        r.status == JobStatus::Running
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(m.kill_process(killed), Ok(KillOutcome::Killing));
    let r = m.wait(killed).unwrap();
    assert_eq!(r.status, JobStatus::Killed, "{r:?}");
    let r = m.wait(timed).unwrap();
    assert_eq!(r.status, JobStatus::TimedOut, "{r:?}");
    let wall = r.usage.unwrap().wall;
    assert!(
        wall >= Duration::from_secs(1) && wall < Duration::from_secs(15),
        "{r:?}"
    );
    m.wait_all();
    for (id, c) in h.calls() {
        assert_eq!(c.len(), 1, "{id}: {c:?}");
    }
    // The allocation is the user's: still there.
    assert_eq!(scontrol(alloc.0).0, "RUNNING");
    drop(m);
    assert_eq!(scontrol(alloc.0).0, "RUNNING");
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13: job steps in an allocation procman requests, released at shutdown.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn steps_in_an_allocation_procman_requests_and_releases() {
    let _s = serial();
    slurm_up("steps-own");
    let m = manager(SlurmOptions::new().steps(2), 2);
    let h = Handlers::new();
    let ids: Vec<JobId> = (0..20)
        .map(|i| {
            m.start_process(h.on(JobSpec::new("sh").args(["-c", &format!("exit {}", i % 2)])))
                .unwrap()
        })
        .collect();
    m.wait_all();
    let calls = h.calls();
    for (i, id) in ids.iter().enumerate() {
        let want = if i % 2 == 0 {
            JobStatus::Finished
        } else {
            JobStatus::Failed
        };
        assert_eq!(calls[id], vec![want]);
    }
    let pending = |ids: &mut Vec<String>| {
        let out = Command::new("squeue")
            .args(["-h", "-n", "procman-steps", "-t", "PD,R,CG", "-o", "%i"])
            .output()
            .unwrap();
        *ids = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        ids.len()
    };
    let mut held = Vec::new();
    assert_eq!(
        pending(&mut held),
        1,
        "one allocation while the manager lives"
    );
    drop(m);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = Vec::new();
    while pending(&mut left) > 0 {
        assert!(
            Instant::now() < deadline,
            "allocation not released: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The command line of a running `srun` (the step's record's `pid`), split at its NULs.
fn cmdline(pid: u32) -> Vec<Vec<u8>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Issue 13: a step runs the program itself (`srun ... -- PROG ARGS`, no shell), with its
/// arguments' bytes, working directory and environment edits exact; edits `srun` cannot carry
/// (clearing the environment, `PATH`) still apply, through the script.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn steps_run_the_program_directly_with_exact_bytes_cwd_and_environment() {
    use std::os::unix::ffi::OsStrExt;
    let _s = serial();
    slurm_up("steps-direct");
    let alloc = Alloc::new(2);
    let dir = scratch("steps-direct");
    let m = manager(SlurmOptions::new().steps_in(alloc.0), 2);
    let odd: Vec<&[u8]> = vec![
        b"",
        b" two  spaces ",
        b"'\"$HOME\" `id` $(id) \\ ;&|<>*?~#",
        b"a\nb\r\nc\rd",
        b"\xff\xfe non-UTF-8 \x80",
        b"-n",
        b"--export=NONE",
        b"%j %% %N",
    ];
    let args: Vec<std::ffi::OsString> = std::iter::once(b"%s\\0".as_slice())
        .chain(odd.iter().copied())
        .map(|a| std::ffi::OsStr::from_bytes(a).to_owned())
        .collect();
    let log = dir.join("argv.log");
    let r = m
        .run(JobSpec::new("printf").args(&args).log_file(&log))
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    let mut want: Vec<u8> = Vec::new();
    for a in &odd {
        want.extend_from_slice(a);
        want.push(0);
    }
    assert_eq!(std::fs::read(&log).unwrap(), want);

    let env_log = dir.join("env.log");
    std::env::set_var("PROCMAN_TEST_GONE", "still here");
    let r = m
        .run(
            JobSpec::new("sh")
                .args([
                    "-c",
                    "printf '%s|%s|%s' \"$X\" \"${PROCMAN_TEST_GONE-unset}\" \"$(pwd)\"",
                ])
                .env("X", "a,b\n'c' \u{e9}")
                .env_remove("PROCMAN_TEST_GONE")
                .cwd(&dir)
                .log_file(&env_log),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(&env_log).unwrap(),
        format!("a,b\n'c' \u{e9}|unset|{}", dir.display())
    );
    // Through the script: a cleared environment, and PATH.
    let r = m
        .run(
            JobSpec::new("/usr/bin/env")
                .env_clear()
                .env("ONLY", "y")
                .log_file(&env_log),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    assert_eq!(std::fs::read_to_string(&env_log).unwrap(), "ONLY=y\n");
    let r = m
        .run(
            JobSpec::new("sh")
                .args(["-c", "echo \"$PATH\""])
                .env("PATH", "/procman-nowhere:/usr/bin:/bin")
                .log_file(&env_log),
        )
        .unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    assert_eq!(
        std::fs::read_to_string(&env_log).unwrap(),
        "/procman-nowhere:/usr/bin:/bin\n"
    );

    // What srun runs: the program, not a shell.
    let sleeper = m
        .start_process(JobSpec::new("sleep").arg("300.271828"))
        .unwrap();
    wait_until(&m, sleeper, Duration::from_secs(30), |r| {
        r.status == JobStatus::Running
    });
    let pid = m.job_data(sleeper).unwrap().pid.unwrap();
    let argv = cmdline(pid);
    assert!(
        argv.ends_with(&[b"--".to_vec(), b"sleep".to_vec(), b"300.271828".to_vec()])
            && !argv.iter().any(|w| w == b"/bin/sh"),
        "{:?}",
        argv.iter()
            .map(|w| String::from_utf8_lossy(w))
            .collect::<Vec<_>>()
    );
    assert_eq!(m.kill_process(sleeper), Ok(KillOutcome::Killing));
    assert_eq!(m.wait(sleeper).unwrap().status, JobStatus::Killed);
    drop(m);
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13: on the direct path (no shell to check first), a program that cannot be started
/// on the node is told from one that fails, wherever the job's standard error goes.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn steps_tell_a_program_that_cannot_start_from_one_that_fails() {
    let _s = serial();
    slurm_up("steps-cannot-start");
    let alloc = Alloc::new(2);
    let dir = scratch("steps-cannot-start");
    let m = manager(SlurmOptions::new().steps_in(alloc.0), 2);
    let missing = "no-such-program-314159";
    let cases = [
        ("discarded", JobSpec::new(missing).cwd(&dir)),
        (
            "error file",
            JobSpec::new(missing)
                .log_file(dir.join("a.log"))
                .error_file(dir.join("a.err")),
        ),
        (
            "merged",
            JobSpec::new(missing)
                .log_file(dir.join("b.log"))
                .merge_error_into_log(),
        ),
    ];
    for (what, spec) in cases {
        let r = m.run(spec).unwrap();
        assert_eq!(r.status, JobStatus::SpawnFailed, "{what}: {r:?}");
        let e = r.error.unwrap();
        assert!(
            e.contains(missing) && e.contains("not found") && e.contains("on node"),
            "{what}: {e}"
        );
    }
    let not_exec = dir.join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    let r = m.run(JobSpec::new(&not_exec)).unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed, "{r:?}");
    assert!(
        r.error.as_deref().unwrap().contains("permission denied"),
        "{r:?}"
    );
    // A program that fails saying the same as slurmstepd, but not first, not of itself, or
    // not with the errno as its exit code, ran: it failed.
    for (said, code) in [
        (
            "echo ran >&2; echo 'slurmstepd-x: error: execve(): sh: No such file or directory'",
            2,
        ),
        (
            "echo 'slurmstepd-x: error: execve(): other: No such file or directory'",
            2,
        ),
        (
            "echo 'slurmstepd-x: error: execve(): sh: No such file or directory'",
            127,
        ),
    ] {
        let r = m
            .run(
                JobSpec::new("sh")
                    .args(["-c", &format!("{said} >&2; exit {code}")])
                    .cwd(&dir),
            )
            .unwrap();
        assert_eq!(
            (r.status, r.exit_code),
            (JobStatus::Failed, Some(code)),
            "{said}: {r:?}"
        );
    }
    // procman's files for the standard error the jobs did not keep are gone.
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["a.err", "a.log", "b.log", "not-executable"]);
    drop(m);
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13: a job step's record carries its CPU times and peak memory from Slurm's
/// accounting (one `sacct` of the step, found by its id); a step shorter than a second ends
/// at once with its wall time only; without accounting every step has the wall time only.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn step_usage_from_accounting_or_a_clean_fallback() {
    let _s = serial();
    slurm_up("steps-usage");
    let accounting = accounting_on();
    let alloc = Alloc::new(2);
    let m = manager(SlurmOptions::new().steps_in(alloc.0), 2);
    // 80 MiB touched, and 1.5 s of CPU (however busy the machine).
    let burn = "x = bytearray(80 << 20)\nimport time\nt = time.process_time()\n\
                while time.process_time() - t < 1.5: x[int(time.time() * 1000) % len(x)] = 1\n";
    let long = m
        .start_process(JobSpec::new("python3").args(["-c", burn]))
        .unwrap();
    let short = m.start_process(JobSpec::new("true")).unwrap();
    let r = m.wait(long).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    let u = r.usage.unwrap();
    assert!(u.wall >= Duration::from_millis(1500), "{u:?}");
    if accounting {
        let cpu = u.user_cpu.unwrap() + u.system_cpu.unwrap();
        assert!(cpu >= Duration::from_secs(1), "{u:?}");
        assert!(u.peak_memory.unwrap() >= 80 << 20, "{u:?}");
    } else {
        eprintln!("Slurm has no accounting here: checking the fallback only");
        assert_eq!((u.user_cpu, u.peak_memory), (None, None), "{u:?}");
    }
    let r = m.wait(short).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    let u = r.usage.unwrap();
    assert_eq!((u.user_cpu, u.peak_memory), (None, None), "{u:?}");
}

/// Runs a bash script; its wall time.
fn timed_bash(script: &str) -> Duration {
    let t = Instant::now();
    let ok = Command::new("bash").args(["-c", script]).status().unwrap();
    assert!(ok.success(), "{script}");
    t.elapsed()
}

/// Runs `n` trivial jobs through `m`; the wall time until the last handler returned.
fn timed_procman(m: &ProcessManager, n: usize) -> Duration {
    let t = Instant::now();
    let ids: Vec<JobId> = (0..n)
        .map(|_| m.start_process(JobSpec::new("true")).unwrap())
        .collect();
    m.wait_all();
    let took = t.elapsed();
    for id in ids {
        assert_eq!(m.job_data(id).unwrap().status, JobStatus::Finished);
    }
    took
}

/// Issue 13's measurement (docs/slurm.md): `PROCMAN_BENCH_JOBS` (default 200) trivial jobs in
/// each way onto Slurm, procman against a hand-written script doing the same:
/// `cargo test --release --test slurm -- --ignored --nocapture ways_onto_slurm`.
/// `PROCMAN_BENCH_WAYS` (default `steps,array,jobs`; also `limited`: arrays under a limit of
/// `PROCMAN_BENCH_LIMIT`, default 10) picks the ways, `PROCMAN_BENCH_SIDES`
/// (default `hand,procman`) the sides of the arrays and one job each.
#[test]
#[ignore = "benchmark, needs Slurm: cargo test --release --test slurm -- --ignored --nocapture ways_onto_slurm"]
fn ways_onto_slurm_benchmark() {
    let _s = serial();
    slurm_up("ways");
    let n: usize = std::env::var("PROCMAN_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ways = std::env::var("PROCMAN_BENCH_WAYS").unwrap_or("steps,array,jobs".into());
    let wait_for =
        "while squeue -h -t PD,R,CG,CF -j \"$ids\" -o %i | grep -q .; do sleep 0.1; done";
    if ways.contains("steps") {
        let alloc = Alloc::new(2);
        let hand = timed_bash(&format!(
            "seq {n} | xargs -P 2 -I{{}} srun --jobid={} --exact -n1 -c1 --output=/dev/null true",
            alloc.0
        ));
        let m = manager(SlurmOptions::new().steps_in(alloc.0), 2);
        let took = timed_procman(&m, n);
        drop(m);
        eprintln!(
            "steps, {n} jobs in a 2-CPU allocation: hand-written srun loop (xargs -P 2) {:.2} s, \
             procman (limit 2) {:.2} s ({:+.1} %)",
            hand.as_secs_f64(),
            took.as_secs_f64(),
            (took.as_secs_f64() / hand.as_secs_f64() - 1.0) * 100.0
        );
    }
    if ways.contains("array") {
        let hand = side("hand").then(|| {
            timed_bash(&format!(
                "ids=$(sbatch --parsable --array=1-{n} --output=/dev/null --wrap true); \
                 {wait_for}"
            ))
        });
        let took = side("procman").then(|| {
            let m = manager(SlurmOptions::new().array(1000), n);
            timed_procman(&m, n)
        });
        compare(
            &format!("array, {n} jobs: hand-written sbatch --array"),
            hand,
            &format!("procman (array=yes, limit {n})"),
            took,
        );
    }
    // Arrays under a job limit (PROCMAN_BENCH_LIMIT, default 10): Slurm's own `%` throttle
    // against procman's held jobs released as slots free.
    if ways.contains("limited") {
        let limit: usize = std::env::var("PROCMAN_BENCH_LIMIT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10);
        let hand = side("hand").then(|| {
            timed_bash(&format!(
                "ids=$(sbatch --parsable --array=1-{n}%{limit} --output=/dev/null --wrap true); \
                 {wait_for}"
            ))
        });
        let took = side("procman").then(|| {
            let m = manager(SlurmOptions::new().array(1000), limit);
            timed_procman(&m, n)
        });
        compare(
            &format!("array, {n} jobs, {limit} at once: hand-written sbatch --array=1-{n}%{limit}"),
            hand,
            &format!("procman (array=yes, limit {limit})"),
            took,
        );
    }
    if ways.contains("jobs") {
        let hand = side("hand").then(|| {
            timed_bash(&format!(
                "ids=''; for i in $(seq {n}); do ids=\"$ids,$(sbatch --parsable \
                 --output=/dev/null --wrap true)\"; done; ids=${{ids#,}}; {wait_for}"
            ))
        });
        let took = side("procman").then(|| {
            let m = manager(SlurmOptions::new(), n);
            timed_procman(&m, n)
        });
        compare(
            &format!("one job each, {n} jobs: hand-written sbatch loop"),
            hand,
            &format!("procman (limit {n})"),
            took,
        );
    }
}

/// `PROCMAN_BENCH_SIDES` (default `hand,procman`) holds `which`: a run of 1,000 jobs one job
/// each takes about 8 minutes per side, so each side can be timed in a run of its own.
fn side(which: &str) -> bool {
    std::env::var("PROCMAN_BENCH_SIDES").map_or(true, |s| s.contains(which))
}

/// Prints the hand-written script's time and procman's, each if it was timed.
fn compare(what: &str, hand: Option<Duration>, procman: &str, took: Option<Duration>) {
    let secs = |d: Option<Duration>| {
        d.map_or("not run".to_owned(), |d| {
            format!("{:.2} s", d.as_secs_f64())
        })
    };
    let diff = match (hand, took) {
        (Some(h), Some(p)) => format!(
            " ({:+.1} %)",
            (p.as_secs_f64() / h.as_secs_f64() - 1.0) * 100.0
        ),
        _ => String::new(),
    };
    eprintln!("{what} {}, {procman} {}{diff}", secs(hand), secs(took));
}

/// Issue 13, the cost of per-step usage (docs/slurm.md): `PROCMAN_BENCH_JOBS` (default 20)
/// one-second jobs (`sleep 1`, long enough to wait for their `sacct`) as steps in a 2-CPU
/// allocation: a hand-written `srun` loop, procman with Slurm's accounting, and procman with a
/// stand-in `sacct` that says there is none (no figures, no wait):
/// `cargo test --release --test slurm -- --ignored --nocapture step_usage_cost`.
#[test]
#[ignore = "benchmark, needs Slurm: cargo test --release --test slurm -- --ignored --nocapture step_usage_cost"]
fn step_usage_cost_benchmark() {
    let _s = serial();
    slurm_up("usage-cost");
    let n: usize = std::env::var("PROCMAN_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = scratch("usage-cost");
    let none = dir.join("sacct");
    std::fs::write(
        &none,
        "#!/bin/sh\necho 'sacct: error: Slurm accounting storage is disabled' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&none, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let alloc = Alloc::new(2);
    let hand = timed_bash(&format!(
        "seq {n} | xargs -P 2 -I{{}} srun --jobid={} --exact -n1 -c1 --output=/dev/null sleep 1",
        alloc.0
    ));
    let timed = |opts: SlurmOptions| {
        let m = manager(opts, 2);
        let t = Instant::now();
        let ids: Vec<JobId> = (0..n)
            .map(|_| m.start_process(JobSpec::new("sleep").arg("1")).unwrap())
            .collect();
        m.wait_all();
        let took = t.elapsed();
        let with_cpu = ids
            .iter()
            .filter(|&&id| m.job_data(id).unwrap().usage.unwrap().user_cpu.is_some())
            .count();
        (took, with_cpu)
    };
    let (with, counted) = timed(SlurmOptions::new().steps_in(alloc.0));
    let (without, _) = timed(SlurmOptions::new().steps_in(alloc.0).sacct_program(&none));
    let pct = |d: Duration| (d.as_secs_f64() / hand.as_secs_f64() - 1.0) * 100.0;
    eprintln!(
        "{n} one-second steps: hand-written srun loop {:.2} s; procman with accounting {:.2} s \
         ({:+.1} %, {counted} of {n} with CPU times); without {:.2} s ({:+.1} %)",
        hand.as_secs_f64(),
        with.as_secs_f64(),
        pct(with),
        without.as_secs_f64(),
        pct(without)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13: slurmctld stopped in the middle of a batch and started again: no job is lost or
/// reported twice; each ends with its true outcome once the controller answers again.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn controller_restart_mid_batch_loses_no_job() {
    let _s = serial();
    slurm_up("restart");
    let options =
        SlurmOptions::new().poll_interval(Duration::from_millis(100), Duration::from_millis(500));
    // One job each, and (issue 13's arrays) the same batch as one array, through one restart.
    let runs: Vec<(ProcessManager, Handlers, Vec<JobId>)> = [options.clone(), options.array(1000)]
        .into_iter()
        .map(|options| {
            let m = manager(options, 20);
            let h = Handlers::new();
            let ids: Vec<JobId> = (0..12)
                .map(|i| {
                    let code = if i % 3 == 0 { 3 } else { 0 };
                    let sh = JobSpec::new("sh").args(["-c", &format!("sleep 1.5; exit {code}")]);
                    m.start_process(h.on(sh)).unwrap()
                })
                .collect();
            (m, h, ids)
        })
        .collect();
    for (m, _, ids) in &runs {
        for &id in ids {
            wait_until(m, id, Duration::from_secs(60), |r| r.pid.is_some());
        }
    }
    // Slurm itself loses a batch job allocated just before its controller stops but not yet
    // launched on the node: after the restart it reads RUNNING for ever, with nothing on the
    // node (seen here: two jobs allocated 6 s before the stop, still RUNNING 20 minutes
    // later, so the wait below never returned). So the partition takes no new job while the
    // controller goes away, and the stop waits until every job Slurm has started runs on the
    // node (its batch step is listed); queued jobs and running ones still cross the restart.
    let _up = PartitionDown::new("debug");
    // Slurm job ids (an array's id stands for its tasks: squeue -r lists them as ID_N).
    let all: Vec<String> = runs
        .iter()
        .flat_map(|(m, _, ids)| ids.iter().map(|&id| m.job_data(id).unwrap().pid.unwrap()))
        .collect::<std::collections::BTreeSet<u32>>()
        .iter()
        .map(u32::to_string)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !launched(&all) {
        assert!(Instant::now() < deadline, "jobs allocated but not launched");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid_file = "/run/procman-slurm/slurmctld.pid";
    let pid = std::fs::read_to_string(pid_file).unwrap().trim().to_owned();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Command::new("scontrol")
        .arg("ping")
        .output()
        .unwrap()
        .stdout
        .windows(2)
        .any(|w| w == b"UP")
    {
        assert!(Instant::now() < deadline, "slurmctld did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Jobs go on ending on the node while the controller is away.
    std::thread::sleep(Duration::from_secs(5));
    // Started again as .ci/start-slurm.sh starts it (running the script would rewrite the
    // configuration from this process's environment, which may differ from the one it was
    // started with).
    assert!(Command::new("/usr/sbin/slurmctld")
        .status()
        .unwrap()
        .success());
    drop(_up);
    for (m, h, ids) in runs {
        m.wait_all();
        let calls = h.calls();
        for (i, id) in ids.iter().enumerate() {
            let want = if i % 3 == 0 {
                JobStatus::Failed
            } else {
                JobStatus::Finished
            };
            assert_eq!(calls[id], vec![want], "{:?}", m.job_data(*id));
        }
        assert_eq!(calls.len(), ids.len());
    }
}

/// Sets a partition DOWN (running jobs go on, no new job starts) and back UP when dropped, also
/// when the test fails.
struct PartitionDown(&'static str);

impl PartitionDown {
    fn new(name: &'static str) -> PartitionDown {
        let set = |state: &str| {
            Command::new("scontrol")
                .args([
                    "update",
                    &format!("PartitionName={name}"),
                    &format!("State={state}"),
                ])
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(
            set("DOWN"),
            "scontrol update PartitionName={name} State=DOWN"
        );
        PartitionDown(name)
    }
}

impl Drop for PartitionDown {
    fn drop(&mut self) {
        // The controller may be starting again: retried for up to 30 s.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new("scontrol")
            .args(["update", &format!("PartitionName={}", self.0), "State=UP"])
            .status()
            .is_ok_and(|s| s.success())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whether every one of these jobs (or array tasks) that Slurm has started runs on its node:
/// `squeue` lists a RUNNING job's batch step (`ID.batch`, `ARRAYID_N.batch`) only once the node
/// launched it.
fn launched(jobs: &[String]) -> bool {
    let q = |args: &[&str]| -> Vec<String> {
        let o = Command::new("squeue").args(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .collect()
    };
    let list = jobs.join(",");
    let running = q(&["-h", "-r", "-t", "R", "-o", "%i", "-j", &list]);
    let steps = q(&["-h", "-s", "-o", "%i", "-j", &list]);
    running
        .iter()
        .all(|j| steps.iter().any(|s| s == &format!("{j}.batch")))
}

/// Issue 13: a program missing on the node is `SpawnFailed` naming the node, told apart from a
/// program that exits 127 itself; as a batch job and as a job step.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn a_program_missing_on_the_node_is_spawn_failed() {
    let _s = serial();
    slurm_up("missing");
    let dir = scratch("missing");
    for steps in [false, true] {
        // The allocation holds the CPUs: batch jobs first, without it.
        let alloc = steps.then(|| Alloc::new(2));
        let options = match &alloc {
            Some(a) => SlurmOptions::new().steps_in(a.0),
            None => SlurmOptions::new(),
        };
        let m = manager(options, 4);
        let missing = m
            .start_process(JobSpec::new("no-such-program-271828").cwd(&dir))
            .unwrap();
        let own = m
            .start_process(JobSpec::new("sh").args(["-c", "exit 127"]).cwd(&dir))
            .unwrap();
        let r = m.wait(missing).unwrap();
        assert_eq!(r.status, JobStatus::SpawnFailed, "{r:?}");
        let e = r.error.unwrap();
        assert!(
            e.contains("no-such-program-271828") && e.contains("not found") && e.contains("node"),
            "{e}"
        );
        let r = m.wait(own).unwrap();
        assert_eq!(
            (r.status, r.exit_code),
            (JobStatus::Failed, Some(127)),
            "{r:?}"
        );
    }
    // The notes were removed.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13: the final record carries CPU times and peak memory from Slurm's accounting
/// (`PROCMAN_SLURM_ACCOUNTING=dbd bash .ci/start-slurm.sh`); without accounting it carries the
/// wall time only and the job ends as usual.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn cpu_time_and_peak_memory_from_accounting_or_a_clean_fallback() {
    let _s = serial();
    slurm_up("accounting");
    let accounting = accounting_on();
    let m = manager(SlurmOptions::new(), 2);
    // 80 MiB touched, and about 1.5 s of CPU.
    let burn = "x = bytearray(80 << 20)\nimport time\nt = time.time()\n\
                while time.time() - t < 1.5: x[int(time.time() * 1000) % len(x)] = 1\n";
    let r = m.run(JobSpec::new("python3").args(["-c", burn])).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    let u = r.usage.unwrap();
    if accounting {
        let cpu = u.user_cpu.unwrap() + u.system_cpu.unwrap();
        assert!(cpu >= Duration::from_secs(1), "{u:?}");
        assert!(u.peak_memory.unwrap() >= 80 << 20, "{u:?}");
    } else {
        eprintln!("Slurm has no accounting here: checking the fallback only");
        assert_eq!((u.user_cpu, u.peak_memory), (None, None), "{u:?}");
        assert!(u.wall >= Duration::from_secs(1));
    }
}

/// Issue 13, faults: an `sacct` that fails for a while (slurmdbd restarting) is asked again
/// within the accounting wait, so the job still ends with its figures. A stand-in `sacct`
/// fails its first two calls, then runs the real one.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn a_failing_sacct_is_asked_again_within_the_accounting_wait() {
    let _s = serial();
    slurm_up("sacct_retry");
    if !accounting_on() {
        eprintln!("Slurm has no accounting here: nothing to retry");
        return;
    }
    let dir = scratch("sacct_retry");
    let calls = dir.join("sacct.calls");
    let sacct = dir.join("sacct");
    std::fs::write(
        &sacct,
        format!(
            "#!/bin/sh\necho x >>'{0}'\n\
             [ \"$(wc -l <'{0}')\" -le 2 ] && {{ echo 'sacct: error: slurmdbd: Connection refused' >&2; exit 1; }}\n\
             exec sacct \"$@\"\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&sacct, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let m = manager(SlurmOptions::new().sacct_program(&sacct), 2);
    let r = m.run(JobSpec::new("sh").args(["-c", "exit 0"])).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    let asked = std::fs::read_to_string(&calls).unwrap().lines().count();
    assert!(asked >= 3, "sacct asked {asked} times");
    let u = r.usage.unwrap();
    assert!(u.user_cpu.is_some() && u.system_cpu.is_some(), "{u:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13: what an observer and a progress parser of a Slurm job (`opts`) see, and when.
/// The job prints a line to each stream, then waits for a file the test creates only once the
/// observer has the first line: so the observer saw it while the job ran. Then it prints odd
/// bytes, a progress line and last lines without a newline on both streams.
fn observers_follow_the_job_live(opts: SlurmOptions, name: &str) {
    let dir = scratch(name);
    let go = dir.join("go");
    let log = dir.join("log.txt");
    let m = manager(opts, 2);
    let events = m.subscribe(1024);
    let (tx, rx) = unbounded::<(procman::Stream, Vec<u8>)>();
    // The progress line comes first, likely before Slurm reports the job running.
    let script = "printf 'first\\np 0.5\\n'; printf 'err one\\n' >&2; \
                  while [ ! -e \"$1\" ]; do sleep 0.05; done; \
                  printf 'caf\\351 \\001\\nlast without newline'; printf 'err last' >&2";
    let spec = JobSpec::new("sh")
        .args(["-c", script, "sh"])
        .arg(&go)
        .log_file(&log)
        .observe(move |_, stream, line| tx.send((stream, line.to_vec())).unwrap())
        .progress(|line: &[u8]| {
            let n = std::str::from_utf8(line.strip_prefix(b"p ")?).ok()?;
            Some(procman::Progress::fraction(n.parse().ok()?))
        });
    let id = m.start_process(spec).unwrap();
    let (stream, first) = rx
        .recv_timeout(Duration::from_secs(600))
        .expect("a first line");
    assert_eq!(
        (stream, first.as_slice()),
        (procman::Stream::Stdout, &b"first"[..])
    );
    let r = m.job_data(id).unwrap();
    assert!(!r.status.is_final(), "seen only after the end: {r:?}");
    std::fs::write(&go, "").unwrap();
    let r = m.wait(id).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    assert_eq!(r.error, None, "{r:?}");
    // The job completes after the observer's last call: everything is here.
    let seen: Vec<(procman::Stream, Vec<u8>)> = rx.try_iter().collect();
    let of = |s: procman::Stream| -> Vec<Vec<u8>> {
        std::iter::once((stream, first.clone()))
            .chain(seen.iter().cloned())
            .filter(|(x, _)| *x == s)
            .map(|(_, l)| l)
            .collect()
    };
    let want: Vec<Vec<u8>> = vec![
        b"first".to_vec(),
        b"p 0.5".to_vec(),
        b"caf\xe9 \x01".to_vec(),
        b"last without newline".to_vec(),
    ];
    assert_eq!(of(procman::Stream::Stdout), want);
    assert_eq!(
        of(procman::Stream::Stderr),
        vec![b"err one".to_vec(), b"err last".to_vec()]
    );
    // The files are as the job wrote them.
    assert_eq!(
        std::fs::read(&log).unwrap(),
        b"first\np 0.5\ncaf\xe9 \x01\nlast without newline"
    );
    let progress = events.try_iter().any(|e| {
        matches!(e, procman::Event::Progress { id: i, progress, .. }
                 if i == id && progress.fraction == Some(0.5))
    });
    assert!(progress, "no progress event");
    drop(m);
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13: observers of a batch job see its output while it runs, byte for byte.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn observers_of_a_batch_job_see_its_output_live() {
    let _s = serial();
    slurm_up("live-batch");
    // squeue asked every 2 s: the output is seen before Slurm reports the job running.
    observers_follow_the_job_live(
        SlurmOptions::new().poll_interval(Duration::from_secs(2), Duration::from_secs(2)),
        "live-batch",
    );
}

/// Issue 13: observers of a job step see its output while it runs, byte for byte.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn observers_of_a_job_step_see_its_output_live() {
    let _s = serial();
    slurm_up("live-step");
    let alloc = Alloc::new(2);
    observers_follow_the_job_live(SlurmOptions::new().steps_in(alloc.0), "live-step");
}

/// A stand-in `sbatch` in `dir` that notes each call's arguments in `dir/sbatch.calls` (one line
/// each) and runs the real one.
fn counting_sbatch(dir: &std::path::Path) -> PathBuf {
    let p = dir.join("sbatch");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$*\" >>'{}'\nexec sbatch \"$@\"\n",
            dir.join("sbatch.calls").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

fn sbatch_calls(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("sbatch.calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `squeue`'s states of an array's tasks 0 to n-1 (`ARRAYID_TASK` to state; each asked for by
/// its id: a pending task cancelled alone is no longer listed under the array's id).
fn array_states(array: u32, n: u32) -> HashMap<String, String> {
    let list: Vec<String> = (0..n).map(|t| format!("{array}_{t}")).collect();
    let out = Command::new("squeue")
        .args([
            "-h",
            "-r",
            "-t",
            "all",
            "-o",
            "%i|%T",
            "-j",
            &list.join(","),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(i, s)| (i.to_owned(), s.to_owned()))
        .collect()
}

/// Issue 13, arrays: 200 jobs reach Slurm in ONE `sbatch --array` call; each task reads
/// `Queued` while Slurm holds it; a kill cancels that task alone; a shutdown cancels the rest;
/// every handler runs once.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn arrays_two_hundred_jobs_in_one_sbatch_call_queued_and_cancelled() {
    let _s = serial();
    slurm_up("array200");
    let dir = scratch("array200");
    let options = SlurmOptions::new()
        .array(1000)
        .sbatch_program(counting_sbatch(&dir))
        .sbatch_arg("--begin=now+3600");
    let m = manager(options, 200);
    let h = Handlers::new();
    let ids: Vec<JobId> = (0..200)
        .map(|_| m.start_process(h.on(JobSpec::new("true"))).unwrap())
        .collect();
    for &id in &ids {
        wait_until(&m, id, Duration::from_secs(30), |r| r.pid.is_some());
    }
    let calls = sbatch_calls(&dir);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].contains("--array=0-199"), "{calls:?}");
    let array = m.job_data(ids[0]).unwrap().pid.unwrap();
    // Task i is the i-th job submitted.
    for (task, &id) in (0u32..).zip(&ids) {
        let r = m.job_data(id).unwrap();
        assert_eq!(
            (r.status, r.pid, r.array_task, r.backend_state.as_deref()),
            (JobStatus::Queued, Some(array), Some(task), Some("PENDING")),
            "{r:?}"
        );
    }
    assert!(m.running_processes().is_empty());
    assert_eq!(m.snapshot().count(JobStatus::Queued), 200);
    let states = array_states(array, 200);
    assert_eq!(states.len(), 200, "{states:?}");
    assert!(states.values().all(|s| s == "PENDING"), "{states:?}");

    // The kill of one task: that task alone is cancelled (Slurm drops a pending task it
    // cancels from its queue: it is no longer listed; it never ran, so sacct has no record).
    assert_eq!(m.kill_process(ids[7]), Ok(KillOutcome::Killing));
    let r = m.wait(ids[7]).unwrap();
    assert_eq!(r.status, JobStatus::Cancelled, "{r:?}");
    let states = array_states(array, 200);
    assert_eq!(states.len(), 199, "{states:?}");
    assert!(!states.contains_key(&format!("{array}_7")), "{states:?}");
    assert!(states.values().all(|s| s == "PENDING"), "{states:?}");
    assert_eq!(m.snapshot().count(JobStatus::Queued), 199);

    m.shutdown(ShutdownMode::Cancel, None);
    let states = array_states(array, 200);
    assert!(states.values().all(|s| s == "CANCELLED"), "{states:?}");
    assert_eq!(sbatch_calls(&dir).len(), 1);
    let calls = h.calls();
    assert_eq!(calls.len(), 200);
    for id in ids {
        assert_eq!(calls[&id], vec![JobStatus::Cancelled], "{id}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13, arrays under a job limit: jobs beyond the limit go into Slurm held, in the same
/// few `sbatch` calls, and are released one by one as slots free, so at most `limit` run at
/// any instant (checked from the jobs' own clocks: with limit 1 on a two-CPU node, no two
/// jobs' runs overlap), every job finishing, each handler once.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn arrays_hold_the_limit_with_few_sbatch_calls() {
    let _s = serial();
    slurm_up("array_limit");
    let dir = scratch("array_limit");
    let options = SlurmOptions::new()
        .array(1000)
        .sbatch_program(counting_sbatch(&dir));
    let m = manager(options, 1);
    let h = Handlers::new();
    let n = 5;
    let ids: Vec<JobId> = (0..n)
        .map(|i| {
            let spec = JobSpec::new("sh")
                .args(["-c", "date +%s.%N; sleep 1; date +%s.%N"])
                .log_file(dir.join(format!("{i}.log")));
            m.start_process(h.on(spec)).unwrap()
        })
        .collect();
    // All are in Slurm long before the first ends: one queued or running, the rest held.
    for &id in &ids {
        wait_until(&m, id, Duration::from_secs(60), |r| r.pid.is_some());
    }
    let calls = sbatch_calls(&dir);
    assert!(calls.len() <= 2, "{calls:?}");
    assert!(calls.iter().all(|c| c.contains("--array=")), "{calls:?}");
    for &id in &ids {
        wait_until(&m, id, Duration::from_secs(120), |r| r.status.is_final());
    }
    let mut runs: Vec<(f64, f64)> = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let r = m.job_data(id).unwrap();
        assert_eq!(r.status, JobStatus::Finished, "{r:?}");
        let log = std::fs::read_to_string(dir.join(format!("{i}.log"))).unwrap();
        let t: Vec<f64> = log.lines().map(|l| l.parse().unwrap()).collect();
        runs.push((t[0], t[1]));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in runs.windows(2) {
        assert!(
            w[1].0 >= w[0].1,
            "two jobs ran at once under limit 1: {runs:?}"
        );
    }
    assert_eq!(
        sbatch_calls(&dir).len(),
        calls.len(),
        "no more sbatch calls"
    );
    let calls = h.calls();
    assert!(calls.values().all(|c| c.len() == 1), "{calls:?}");
    assert_eq!(calls.len(), n);
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13, arrays: a pending task cancelled outside procman (`scancel ARRAY_TASK`) leaves
/// Slurm's queue with no record at all (squeue and sacct know nothing of it): procman ends it
/// as `Cancelled`, as a pending job cancelled outside, not as a job that vanished; its sibling
/// stays `Queued`.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn arrays_a_pending_task_cancelled_outside_procman_is_cancelled() {
    let _s = serial();
    slurm_up("array_outside");
    let options = SlurmOptions::new()
        .array(1000)
        .sbatch_arg("--begin=now+3600");
    let m = manager(options, 2);
    let h = Handlers::new();
    let ids: Vec<JobId> = (0..2)
        .map(|_| m.start_process(h.on(JobSpec::new("true"))).unwrap())
        .collect();
    for &id in &ids {
        wait_until(&m, id, Duration::from_secs(60), |r| {
            r.status == JobStatus::Queued
        });
    }
    let r = m.job_data(ids[1]).unwrap();
    let task = format!("{}_{}", r.pid.unwrap(), r.array_task.unwrap());
    let st = Command::new("scancel").arg(&task).status().unwrap();
    assert!(st.success());
    let r = m.wait(ids[1]).unwrap();
    assert_eq!(r.status, JobStatus::Cancelled, "{r:?}");
    assert_eq!(m.job_data(ids[0]).unwrap().status, JobStatus::Queued);
    m.shutdown(ShutdownMode::Cancel, None);
    let calls = h.calls();
    assert_eq!(calls[&ids[1]], vec![JobStatus::Cancelled]);
    assert_eq!(calls[&ids[0]], vec![JobStatus::Cancelled]);
}

/// Issue 13, arrays: a batch larger than the largest array goes in whole arrays; the jobs that
/// come while a full one is taken wait for the next instead of going as a small array of their
/// own, and the last ones are not stranded when no more jobs come.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn arrays_are_filled_whole_and_the_rest_follows() {
    let _s = serial();
    slurm_up("array_fill");
    let dir = scratch("array_fill");
    let options = SlurmOptions::new()
        .array(64)
        .sbatch_program(counting_sbatch(&dir))
        .sbatch_arg("--begin=now+3600");
    let m = manager(options, 300);
    let ids: Vec<JobId> = (0..300)
        .map(|_| m.start_process(JobSpec::new("true")).unwrap())
        .collect();
    for &id in &ids {
        wait_until(&m, id, Duration::from_secs(60), |r| r.pid.is_some());
    }
    assert_eq!(m.snapshot().count(JobStatus::Queued), 300);
    let sizes: Vec<u32> = sbatch_calls(&dir)
        .iter()
        .map(|c| {
            let a = c
                .split_whitespace()
                .find_map(|w| w.strip_prefix("--array=0-"));
            a.unwrap().parse::<u32>().unwrap() + 1
        })
        .collect();
    m.shutdown(ShutdownMode::Cancel, None);
    assert_eq!(sizes.iter().sum::<u32>(), 300, "{sizes:?}");
    // Full arrays but the last (300 jobs come well within one 500 ms gathering window).
    assert_eq!(sizes, [64, 64, 64, 64, 44], "{sizes:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 13, arrays: each task keeps its own files, directory, environment, input, exit code;
/// a program missing on the node is told apart from one that exits 127; the retry of a failed
/// task is a job of its own; CPU times from accounting per task where there is one.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn arrays_keep_each_jobs_files_exit_code_and_retry() {
    let _s = serial();
    slurm_up("array_files");
    let dir = scratch("array_files");
    let m = manager(
        SlurmOptions::new()
            .array(1000)
            .sbatch_program(counting_sbatch(&dir)),
        10,
    );
    let h = Handlers::new();
    let codes = [0, 3, 0, 5];
    let mut plain = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let cwd = dir.join(format!("cwd {i}"));
        std::fs::create_dir_all(&cwd).unwrap();
        let spec = JobSpec::new("sh")
            .args([
                "-c",
                "echo \"out $1 $(pwd) $X\"; echo \"err $1\" >&2; cat; exit $2",
                "sh",
                &i.to_string(),
                &code.to_string(),
            ])
            .env("X", format!("x{i}"))
            .input_bytes(format!("in{i}\n").into_bytes())
            .cwd(&cwd)
            .log_file(dir.join(format!("log{i}.txt")))
            .error_file(dir.join(format!("err{i}.txt")));
        plain.push(m.start_process(h.on(spec)).unwrap());
    }
    let missing = m
        .start_process(h.on(JobSpec::new("no-such-program-271828").cwd(&dir)))
        .unwrap();
    let own127 = m
        .start_process(h.on(JobSpec::new("sh").args(["-c", "exit 127"]).cwd(&dir)))
        .unwrap();
    // A '%' in the path (Slurm's patterns) and stderr merged into the log.
    let merged_log = dir.join("100% %a.log");
    let merged = m
        .start_process(
            h.on(JobSpec::new("sh")
                .args(["-c", "echo one; echo two >&2"])
                .log_file(&merged_log)
                .merge_error_into_log()),
        )
        .unwrap();
    let mark = dir.join("failed-once");
    let retried = m
        .start_process(
            h.on(JobSpec::new("sh")
                .args(["-c", "test -e \"$1\" && exit 0; : >\"$1\"; exit 4", "sh"])
                .arg(&mark)
                .retries(1, Duration::ZERO, procman::RetryOn::default())),
        )
        .unwrap();
    m.wait_all();

    let array = m.job_data(plain[0]).unwrap().pid.unwrap();
    for (i, (&id, code)) in plain.iter().zip(codes).enumerate() {
        let r = m.job_data(id).unwrap();
        let want = if code == 0 {
            JobStatus::Finished
        } else {
            JobStatus::Failed
        };
        assert_eq!(
            (r.status, r.exit_code, r.pid),
            (want, Some(code), Some(array)),
            "{r:?}"
        );
        let cwd = dir.join(format!("cwd {i}"));
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("log{i}.txt"))).unwrap(),
            format!("out {i} {} x{i}\nin{i}\n", cwd.display())
        );
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("err{i}.txt"))).unwrap(),
            format!("err {i}\n")
        );
    }
    let r = m.job_data(missing).unwrap();
    assert_eq!(r.status, JobStatus::SpawnFailed, "{r:?}");
    let e = r.error.unwrap();
    assert!(
        e.contains("no-such-program-271828") && e.contains("not found") && e.contains("node"),
        "{e}"
    );
    let r = m.job_data(own127).unwrap();
    assert_eq!(
        (r.status, r.exit_code, r.pid),
        (JobStatus::Failed, Some(127), Some(array)),
        "{r:?}"
    );
    let r = m.job_data(merged).unwrap();
    assert_eq!(r.status, JobStatus::Finished, "{r:?}");
    assert_eq!(std::fs::read_to_string(&merged_log).unwrap(), "one\ntwo\n");
    let r = m.job_data(retried).unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Finished, 2), "{r:?}");
    assert_ne!(r.pid, Some(array), "the retry is a job of its own: {r:?}");
    assert_eq!(r.array_task, None, "{r:?}");

    // One array of all 8, then the retry alone.
    let calls = sbatch_calls(&dir);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[0].contains("--array=0-7"), "{calls:?}");
    assert!(!calls[1].contains("--array"), "{calls:?}");
    let calls = h.calls();
    assert_eq!(calls.len(), 8);
    assert!(calls.values().all(|c| c.len() == 1), "{calls:?}");
    // No input-bytes file or missing-program note is left behind.
    let left: Vec<String> = walk(&dir)
        .into_iter()
        .filter(|p| p.contains(".procman-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let accounting = accounting_on();
    let u = m.job_data(plain[0]).unwrap().usage.unwrap();
    assert_eq!(u.user_cpu.is_some(), accounting, "{u:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Issue 13, arrays: the kill of one running task leaves its sibling running; the sibling's
/// own timeout ends it later; an `sbatch` refusal ends every job of the array as
/// `SpawnFailed` with Slurm's message.
#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm -- --ignored"]
fn arrays_kill_one_task_time_out_another_and_refusals() {
    let _s = serial();
    slurm_up("array_kill");
    let m = manager(SlurmOptions::new().array(1000), 4);
    let h = Handlers::new();
    // The same timeout (so the same --time backstop): one array.
    const TIMEOUT: Duration = Duration::from_secs(15);
    let spec = || JobSpec::new("sleep").arg("300").timeout(TIMEOUT);
    let killed = m.start_process(h.on(spec())).unwrap();
    let timed = m.start_process(h.on(spec())).unwrap();
    wait_until(&m, killed, Duration::from_secs(120), |r| {
        r.status == JobStatus::Running
    });
    let array = m.job_data(killed).unwrap().pid.unwrap();
    assert_eq!(m.job_data(timed).unwrap().pid, Some(array));
    assert_eq!(m.kill_process(killed), Ok(KillOutcome::Killing));
    let r = m.wait(killed).unwrap();
    assert_eq!(r.status, JobStatus::Killed, "{r:?}");
    // Its sibling goes on (running, or queued if the cluster's CPUs are busy), in procman's
    // view and in Slurm's.
    let r = m.job_data(timed).unwrap();
    assert!(!r.status.is_final(), "{r:?}");
    let states = array_states(array, 2);
    // (FAILED when the program died of procman's SIGTERM before Slurm's cancel.)
    let own = states.get(&format!("{array}_0")).map(String::as_str);
    assert!(matches!(own, Some("CANCELLED" | "FAILED")), "{states:?}");
    let sibling = states.get(&format!("{array}_1")).map(String::as_str);
    assert!(matches!(sibling, Some("RUNNING" | "PENDING")), "{states:?}");
    let r = m.wait(timed).unwrap();
    assert_eq!(r.status, JobStatus::TimedOut, "{r:?}");
    let wall = r.usage.unwrap().wall;
    assert!(wall >= TIMEOUT && wall < TIMEOUT * 3, "{r:?}");
    m.wait_all();
    let calls = h.calls();
    assert_eq!(calls[&killed], vec![JobStatus::Killed]);
    assert_eq!(calls[&timed], vec![JobStatus::TimedOut]);

    let dir = scratch("array_refused");
    let bad = manager(
        SlurmOptions::new()
            .array(1000)
            .partition("no-such-partition")
            .sbatch_program(counting_sbatch(&dir)),
        4,
    );
    let h = Handlers::new();
    let ids: Vec<JobId> = (0..3)
        .map(|_| bad.start_process(h.on(JobSpec::new("true"))).unwrap())
        .collect();
    bad.wait_all();
    assert_eq!(sbatch_calls(&dir).len(), 1);
    let calls = h.calls();
    for id in ids {
        let r = bad.job_data(id).unwrap();
        assert_eq!(r.status, JobStatus::SpawnFailed, "{r:?}");
        let e = r.error.unwrap();
        assert!(e.contains("Invalid partition name specified"), "{e}");
        assert_eq!(calls[&id], vec![JobStatus::SpawnFailed]);
    }
    std::fs::remove_dir_all(&dir).ok();
}
