//! `procman run --slurm` and `procman batch --slurm` against a real Slurm (the one-node cluster
//! of `.ci/start-slurm.sh`). Every test is `#[ignore = "needs Slurm: ..."]`, so a plain
//! `cargo test` lists them as ignored; run them with
//! `cargo test -p procman-cli --test slurm_cli -- --ignored` once Slurm is up.
//!
//! Each test works in a directory of its own under the build's `target/tmp` (Slurm's nodes
//! see it: one machine here, a shared filesystem on a cluster) and names its Slurm jobs with a
//! marker unique to the test and process, so `squeue -n MARKER` finds exactly its own jobs;
//! every test cancels them at its end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const NEEDS: &str = "needs Slurm";

fn procman() -> Command {
    Command::new(env!("CARGO_BIN_EXE_procman"))
}

/// A fresh directory for one test, and its job-name marker.
fn setup(test: &str) -> (PathBuf, String) {
    let out = Command::new("sinfo").arg("-h").output();
    assert!(
        out.is_ok_and(|o| o.status.success()),
        "{NEEDS}: sinfo failed; start it with .ci/start-slurm.sh"
    );
    let marker = format!("pmcli{}{}", test, std::process::id());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("slurm-cli-tests")
        .join(&marker);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (dir, marker)
}

/// The ids `squeue -h -o %i -n MARKER` lists with these further options.
fn squeue_ids(marker: &str, options: &[&str]) -> Vec<String> {
    let o = Command::new("squeue")
        .args(["-h", "-o", "%i", "-n", marker])
        .args(options)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The Slurm job ids still queued or running under this marker.
fn in_squeue(marker: &str) -> Vec<String> {
    squeue_ids(marker, &[])
}

/// Cancels whatever is left under the marker (the tests' own clean-up).
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("scancel").args(["-n", &self.0]).status();
    }
}

/// Sends SIGINT to a procman still running (a failed test's), so it cancels its jobs.
struct KillOnDrop(Option<u32>);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run_in(dir: &Path, cmd: &mut Command) -> Output {
    cmd.current_dir(dir).output().unwrap()
}

#[test]
#[ignore = "needs Slurm: .ci/start-slurm.sh"]
fn batch_on_slurm_writes_logs_and_joblog_and_fails_for_a_failing_job() {
    let (dir, marker) = setup("batch");
    let _c = Cleanup(marker.clone());
    std::fs::write(
        dir.join("jobs.txt"),
        concat!(
            "echo one\nsh -c 'echo two >&2; exit 3'\n",
            r#"{"program": "sh", "args": ["-c", "echo $SLURM_CPUS_PER_TASK $SLURM_MEM_PER_NODE"], "#,
            r#""cpus": 2, "memory": "100M"}"#,
            "\n"
        ),
    )
    .unwrap();
    let o = run_in(
        &dir,
        procman()
            .args([
                "batch",
                "--slurm=poll_max_ms=500",
                "-j",
                "3",
                "--joblog",
                "JL",
            ])
            .arg(format!("--sbatch-arg=--job-name={marker}"))
            .arg("jobs.txt"),
    );
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("3 jobs: 2 succeeded, 1 failed"), "{err}");
    let log = |n: &str| std::fs::read_to_string(dir.join("procman-logs").join(n)).unwrap();
    assert_eq!(log("1.log"), "one\n");
    assert_eq!(log("2_err.txt"), "two\n");
    // The job line's cpus and memory reach sbatch (--cpus-per-task, --mem in MiB).
    assert_eq!(log("3.log"), "2 100\n");
    let joblog = std::fs::read_to_string(dir.join("JL")).unwrap();
    let exits = joblog_exits(&joblog);
    assert_eq!(exits.len(), 3, "{joblog}");
    assert!(exits.contains(&("2".into(), "3".into())), "{joblog}");
    assert!(exits.contains(&("1".into(), "0".into())), "{joblog}");
    // --resume-failed reruns only the failed job, on Slurm again.
    std::fs::write(dir.join("jobs.txt"), "echo one\ntrue\necho three\n").unwrap();
    let o = run_in(
        &dir,
        procman()
            .args(["batch", "--slurm", "--resume-failed", "--joblog", "JL"])
            .arg(format!("--sbatch-arg=--job-name={marker}"))
            .arg("jobs.txt"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(in_squeue(&marker).is_empty());
}

#[test]
#[ignore = "needs Slurm: .ci/start-slurm.sh"]
fn run_on_slurm_passes_output_and_exit_status_through() {
    let (dir, marker) = setup("run");
    let _c = Cleanup(marker.clone());
    let o = run_in(
        &dir,
        procman()
            .args(["run", "--slurm", "--partition=debug"])
            .arg(format!("--sbatch-arg=--job-name={marker}"))
            .args(["--", "sh", "-c", "echo out; echo err >&2; exit 7"]),
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "out\n");
    assert!(text(&o.stderr).starts_with("err\n"), "{}", text(&o.stderr));
    // The spool directory is gone.
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    // A program missing on the node: 127, as locally.
    let o = run_in(
        &dir,
        procman()
            .args(["run", "--slurm", "--quiet"])
            .arg(format!("--sbatch-arg=--job-name={marker}"))
            .args(["--", "no-such-program-procman-cli"]),
    );
    assert_eq!(o.status.code(), Some(127), "{}", text(&o.stderr));
    // A refused submission (no such partition): procman's own error, 125.
    let o = run_in(
        &dir,
        procman()
            .args(["run", "--partition=no-such-partition"])
            .args(["--", "true"]),
    );
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("partition"), "{}", text(&o.stderr));
}

#[test]
#[ignore = "needs Slurm: .ci/start-slurm.sh"]
fn batch_steps_inside_a_users_sbatch_script() {
    let (dir, marker) = setup("steps");
    let _c = Cleanup(marker.clone());
    std::fs::write(
        dir.join("jobs.txt"),
        "echo a\necho b\nsh -c 'exit 4'\necho d\n",
    )
    .unwrap();
    let script = format!(
        "#!/bin/sh\n{} batch --steps 2 -j 2 --joblog JL jobs.txt\necho procman-exit=$?\n",
        env!("CARGO_BIN_EXE_procman")
    );
    std::fs::write(dir.join("script.sh"), script).unwrap();
    let o = run_in(
        &dir,
        Command::new("timeout")
            .args(["120", "sbatch", "-W", "-n", "2", "-o", "out.txt"])
            .arg(format!("--job-name={marker}"))
            .arg("script.sh"),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let job = text(&o.stdout)
        .split_whitespace()
        .last()
        .unwrap()
        .to_owned();
    let out = std::fs::read_to_string(dir.join("out.txt")).unwrap();
    assert!(out.contains("4 jobs: 3 succeeded, 1 failed"), "{out}");
    assert!(out.contains("procman-exit=1"), "{out}");
    assert_eq!(
        std::fs::read_to_string(dir.join("procman-logs/4.log")).unwrap(),
        "d\n"
    );
    // They ran as steps of the script's own job (where accounting answers).
    let steps = Command::new("sacct")
        .args(["-n", "-P", "-o", "JobID", "-j", &job])
        .output()
        .unwrap();
    let steps = text(&steps.stdout);
    if steps.contains(&job) {
        assert!(steps.contains(&format!("{job}.3")), "{steps}");
    }
}

#[test]
#[ignore = "needs Slurm: .ci/start-slurm.sh"]
fn queued_jobs_show_as_queued_and_ctrl_c_cancels_them_all() {
    let (dir, marker) = setup("intr");
    let _c = Cleanup(marker.clone());
    std::fs::write(dir.join("jobs.txt"), "sleep 300\nsleep 301\nsleep 302\n").unwrap();
    // --begin keeps them pending in Slurm's queue.
    let child = procman()
        .current_dir(&dir)
        .args(["batch", "--slurm", "-j", "3", "--joblog", "JL"])
        .args(["--sbatch-arg=--begin=now+600"])
        .arg(format!("--sbatch-arg=--job-name={marker}"))
        .arg("jobs.txt")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Should an assertion fail before procman was interrupted: end it (by its PID) too.
    let mut guard = KillOnDrop(Some(child.id()));
    let live = dir.join("JL.live.json");
    let t0 = Instant::now();
    let state = loop {
        let s = std::fs::read_to_string(&live).unwrap_or_default();
        if s.contains("\"queued\":3") {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "never 3 queued: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(state.contains("\"running\":0"), "{state}");
    assert_eq!(in_squeue(&marker).len(), 3);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    guard.0 = None;
    assert_eq!(o.status.code(), Some(130), "{}", text(&o.stderr));
    let left = in_squeue(&marker);
    assert!(left.is_empty(), "left in squeue: {left:?}");
}

/// Issue 13: `run --slurm` relays the job's output while it runs, byte for byte. The job
/// prints a line, then waits for a file the test creates only once that line came through
/// procman's stdout (a pipe); then it prints odd bytes and last lines without a newline.
#[test]
#[ignore = "needs Slurm: .ci/start-slurm.sh"]
fn run_on_slurm_relays_the_output_live() {
    use std::io::Read;
    let (dir, marker) = setup("live");
    let _c = Cleanup(marker.clone());
    let mut child = procman()
        .current_dir(&dir)
        .args(["run", "--slurm", "--quiet"])
        .arg(format!("--sbatch-arg=--job-name={marker}"))
        .args([
            "--",
            "sh",
            "-c",
            "printf 'first\\n'; while [ ! -e go ]; do sleep 0.05; done; \
             printf 'caf\\351\\nlast'; printf 'e1\\ne2' >&2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _k = KillOnDrop(Some(child.id()));
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !got.starts_with(b"first\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(b) => got.extend(b),
            Err(e) => panic!("no first line before the job's end ({e:?}): {got:?}"),
        }
    }
    // The job still runs (it waits for `go`): procman has not exited.
    assert!(child.try_wait().unwrap().is_none());
    std::fs::write(dir.join("go"), "").unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    got.extend(rx.try_iter().flatten());
    let mut err = Vec::new();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "{}", text(&err));
    assert_eq!(got, b"first\ncaf\xe9\nlast");
    assert_eq!(err, b"e1\ne2");
}

/// A joblog's (sequence number, exit value) per job, in the file's order (header skipped).
fn joblog_exits(joblog: &str) -> Vec<(String, String)> {
    joblog
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[6].to_owned())
        })
        .collect()
}

/// Every Slurm job (array task) under the marker, queued, running or ended (`squeue -t all`
/// keeps ended jobs for `MinJobAge`, an hour on the CI cluster).
fn all_in_squeue(marker: &str) -> Vec<String> {
    let mut ids = squeue_ids(marker, &["-r", "-t", "all"]);
    ids.sort();
    ids
}

/// `batch --slurm=array=yes -j 3` and `batch --array` (no `-j`: on Slurm the default is 1,000
/// jobs at once, not the machine's CPUs, two in CI): the jobs go to Slurm as one array (one
/// submission), each with its own log, error file and exit status in the joblog.
#[test]
#[ignore = "needs Slurm: .ci/start-slurm.sh"]
fn batch_in_a_slurm_array_by_text_and_by_flag() {
    for (n, how) in [(0, "--slurm=array=yes"), (1, "--array")] {
        let jobs: &[&str] = if n == 0 { &["-j", "3"] } else { &[] };
        let (dir, marker) = setup(&format!("array{n}"));
        let _c = Cleanup(marker.clone());
        std::fs::write(
            dir.join("jobs.txt"),
            "echo one\nsh -c 'echo two >&2; exit 3'\necho three\n",
        )
        .unwrap();
        let o = run_in(
            &dir,
            procman()
                .args(["batch", how])
                .args(jobs)
                .args(["--joblog", "JL"])
                .arg(format!("--sbatch-arg=--job-name={marker}"))
                .arg("jobs.txt"),
        );
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{how}: {err}");
        assert!(
            err.contains("3 jobs: 2 succeeded, 1 failed"),
            "{how}: {err}"
        );
        let log = |n: &str| std::fs::read_to_string(dir.join("procman-logs").join(n)).unwrap();
        assert_eq!(log("1.log"), "one\n");
        assert_eq!(log("2_err.txt"), "two\n");
        assert_eq!(log("3.log"), "three\n");
        let joblog = std::fs::read_to_string(dir.join("JL")).unwrap();
        let mut exits = joblog_exits(&joblog);
        exits.sort();
        let want: Vec<(String, String)> = [("1", "0"), ("2", "3"), ("3", "0")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(exits, want, "{how}: {joblog}");
        // One array of three tasks: ARRAYID_0, ARRAYID_1, ARRAYID_2.
        let ids = all_in_squeue(&marker);
        assert_eq!(ids.len(), 3, "{how}: {ids:?}");
        let array = ids[0].split_once('_').map(|(a, _)| a.to_owned());
        assert!(array.is_some(), "{how}: {ids:?}");
        for (t, id) in ids.iter().enumerate() {
            assert_eq!(Some(id.clone()), array.as_ref().map(|a| format!("{a}_{t}")));
        }
        assert!(in_squeue(&marker).is_empty());
    }
}
