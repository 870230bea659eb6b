//! End-to-end tests of the `procman` tool: the built binary on real job files.

// The library's test helpers, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{eventually, TempDir};
use procman_cli::{parse_joblog_line, JoblogEntry, JoblogError};

const LONG: Duration = Duration::from_secs(30);

fn procman() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_procman"));
    c.env_remove("RUST_LOG");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run procman")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn examples(name: &str) -> String {
    format!("{}/../examples/batch/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Every entry of a joblog, which must start with the header and hold only complete, valid
/// lines.
fn joblog(path: &Path) -> Vec<JoblogEntry> {
    let text = std::fs::read_to_string(path).expect("joblog");
    let mut lines = text.split_inclusive('\n');
    assert_eq!(
        parse_joblog_line(lines.next().expect("a header")),
        Err(JoblogError::Header)
    );
    lines
        .map(|l| {
            assert!(l.ends_with('\n'), "incomplete joblog line {l:?}");
            parse_joblog_line(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))
        })
        .collect()
}

fn by_seq(entries: &[JoblogEntry]) -> HashMap<u64, &JoblogEntry> {
    entries.iter().map(|e| (e.seq, e)).collect()
}

fn write(dir: &TempDir, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------------
// batch
// ---------------------------------------------------------------------------------------------

#[test]
fn the_bundled_example_batch_succeeds() {
    let dir = TempDir::new("cli-example");
    let out = run(procman()
        .args(["batch", "-j", "4", "--timeout", "10s", "--log-dir"])
        .arg(dir.join("logs"))
        .arg("--joblog")
        .arg(dir.join("joblog"))
        .arg(examples("jobs.txt")));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let entries = joblog(&dir.join("joblog"));
    let mut seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    assert!(entries.iter().all(|e| e.exitval == 0 && e.signal == 0));
    assert_eq!(
        std::fs::read_to_string(dir.join("logs/1.log")).unwrap(),
        "hello from job 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("logs/5_err.txt")).unwrap(),
        "to stderr\n"
    );
    // The JSON job that runs after another read what the first one wrote.
    assert_eq!(
        std::fs::read_to_string(dir.join("logs/11.log")).unwrap(),
        "42\n"
    );
    assert!(err.contains("12 jobs: 12 succeeded, 0 failed"), "{err}");
}

#[test]
fn mixed_successes_failures_a_timeout_a_crash_and_a_malformed_line() {
    let dir = TempDir::new("cli-mixed");
    let out = run(procman()
        .args([
            "batch",
            "-j",
            "4",
            "--timeout",
            "1s",
            "--grace",
            "5s",
            "--log-dir",
        ])
        .arg(dir.join("logs"))
        .arg("--joblog")
        .arg(dir.join("joblog"))
        .arg(examples("mixed.txt")));
    let err = text(&out.stderr);
    // Four failures: exit 3, timeout, SIGSEGV, the malformed line.
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("line 7: unterminated single quote"),
        "the bad line is named: {err}"
    );
    let entries = joblog(&dir.join("joblog"));
    let e = by_seq(&entries);
    assert_eq!(entries.len(), 7, "the malformed line has no entry");
    for ok in [1, 6, 7, 8] {
        assert_eq!((e[&ok].exitval, e[&ok].signal), (0, 0), "job {ok}");
    }
    assert_eq!((e[&2].exitval, e[&2].signal), (3, 0));
    // The timeout: -1 as GNU parallel, and SIGTERM did end `sleep` (no SIGKILL needed).
    assert_eq!((e[&3].exitval, e[&3].signal), (-1, 15));
    assert!(
        e[&3].runtime >= 1.0 && e[&3].runtime < 5.0,
        "{}",
        e[&3].runtime
    );
    assert_eq!((e[&4].exitval, e[&4].signal), (0, 11));
    assert_eq!(e[&2].command, "sh -c 'echo failing >&2; exit 3'");
    assert_eq!(e[&2].host, ":");
    assert_eq!(
        std::fs::read_to_string(dir.join("logs/2_err.txt")).unwrap(),
        "failing\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("logs/8.log")).unwrap(),
        "after three\n"
    );
    // Plain lines when not on a terminal, and a summary.
    assert!(err.contains("job 1 (line 3) ok"), "{err}");
    assert!(err.contains("8 jobs: 4 succeeded, 4 failed (1 timed out), 1 invalid line"));
}

#[test]
fn the_exit_status_is_the_number_of_failures_capped_at_101() {
    let dir = TempDir::new("cli-cap");
    let jobs = write(&dir, "jobs.txt", &"false\n".repeat(103));
    let out = run(procman().args(["batch", "-j", "8", "--no-logs", &jobs]));
    assert_eq!(out.status.code(), Some(101), "{}", text(&out.stderr));
    let jobs = write(&dir, "two.txt", "false\ntrue\nfalse\n");
    let out = run(procman().args(["batch", "--no-logs", &jobs]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_after_refers_to_earlier_names_and_bad_references_name_their_line() {
    let dir = TempDir::new("cli-after");
    let marker = dir.join("marker");
    let m = marker.to_str().unwrap();
    let jobs = write(
        &dir,
        "jobs.txt",
        &format!(
            r#"{{"id": "a", "program": "sh", "args": ["-c", "echo a >> {m}"]}}
{{"program": "sh", "args": ["-c", "echo b >> {m}"], "after": ["a"], "name": "b"}}
{{"program": "true", "after": ["later"]}}
{{"id": "later", "program": "true"}}
{{"id": "a", "program": "true"}}
{{"program": "true", "bogus": 1}}
{{"program": "sh", "args": ["-c", "echo c >> {m}"], "after": ["b", "later"]}}
"#
        ),
    );
    let out = run(procman()
        .args(["batch", "-j", "4", "--log-dir"])
        .arg(dir.join("logs"))
        .arg(&jobs));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("line 3: \"after\" names job \"later\", which no earlier line defines"),
        "{err}"
    );
    assert!(
        err.contains("line 5: job name \"a\" is already used by line 1"),
        "{err}"
    );
    assert!(err.contains("line 6: unknown field \"bogus\""), "{err}");
    // The rest of the batch is unaffected, and the dependencies held.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "a\nb\nc\n");
}

#[test]
fn jobs_can_come_from_stdin_and_json_fields_apply() {
    let dir = TempDir::new("cli-stdin");
    let input = write(&dir, "input.txt", "from the input file\n");
    let log = dir.join("custom.log");
    let jobs = format!(
        "{{\"program\": \"sh\", \"args\": [\"-c\", \"cat; echo $X; pwd\"], \"input\": \"{input}\", \
         \"log\": \"{}\", \"env\": {{\"X\": \"y z\"}}, \"cwd\": \"{}\"}}\n\
         sh -c 'exit 7'\n",
        log.display(),
        dir.path().display()
    );
    let mut child = procman()
        .args(["batch", "--no-logs", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(jobs.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("from the input file\ny z\n{}\n", dir.path().display())
    );
}

#[test]
fn halt_starts_no_new_job_after_the_first_failure() {
    let dir = TempDir::new("cli-halt");
    let jobs = write(
        &dir,
        "jobs.txt",
        &format!("false\n{}", "sleep 0.2\n".repeat(10)),
    );
    let out = run(procman()
        .args(["batch", "-j", "1", "--halt", "--no-logs", "--joblog"])
        .arg(dir.join("joblog"))
        .arg(&jobs));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let entries = joblog(&dir.join("joblog"));
    assert_eq!(entries[0].seq, 1);
    // No job starts after the failure (see halt_now_never_starts_a_job_after_the_failure).
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(
        err.contains("--halt: job 1 (line 1) ends the batch"),
        "{err}"
    );
}

/// Runs `procman batch -j J --halt RULE` (the space-separated form) over `lines`, where
/// `touch NAME` marks a job that ran; returns the exit code and which marks exist.
fn halt_batch(dir: &TempDir, j: &str, rule: &str, lines: &[&str]) -> (Option<i32>, Vec<String>) {
    let marks = dir.join("marks");
    let _ = std::fs::remove_dir_all(&marks);
    std::fs::create_dir_all(&marks).unwrap();
    let jobs = write(dir, "jobs.txt", &(lines.join("\n") + "\n"));
    let out = run(procman()
        .args(["batch", "-q", "-j", j, "--halt", rule, "--no-logs"])
        .arg(&jobs)
        .current_dir(&marks));
    let mut found: Vec<String> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    (out.status.code(), found)
}

#[test]
fn halt_now_never_starts_a_job_after_the_failure() {
    let dir = TempDir::new("cli-halt-race");
    for i in 0..30 {
        let (code, marks) = halt_batch(
            &dir,
            "1",
            "now,fail=1",
            &["touch a", "sh -c 'exit 7'", "touch c", "touch d", "touch e"],
        );
        assert_eq!(marks, ["a"], "run {i}: a job started after the failure");
        // GNU parallel: with fail=1, the failing job's exit status.
        assert_eq!(code, Some(7), "run {i}");
    }
    // -j 4: the failure is known (its handler ran) long before the sleeping jobs end, so no
    // job after them ever starts: the library's queue would start job 5 in the failing job's
    // slot at once.
    for i in 0..3 {
        let (code, marks) = halt_batch(
            &dir,
            "4",
            "soon,fail=1",
            &[
                "sh -c 'exit 3'",
                "sh -c 'sleep 1; touch b'",
                "sh -c 'sleep 1; touch c'",
                "sh -c 'sleep 1; touch d'",
                "touch e",
                "touch f",
            ],
        );
        // Jobs 2-4 finish if they were admitted (and started) before the failure was known;
        // jobs 5 and 6 never start.
        assert!(
            marks.iter().all(|m| ["b", "c", "d"].contains(&m.as_str())),
            "run {i}: {marks:?}"
        );
        assert_eq!(code, Some(3), "run {i}");
    }
}

#[test]
fn halt_soon_lets_running_jobs_finish_and_now_kills_them() {
    let dir = TempDir::new("cli-halt-when");
    let lines = [
        "sh -c 'sleep 1; touch slow'",
        "sh -c 'exit 3'",
        "touch after",
    ];
    let (code, marks) = halt_batch(&dir, "2", "soon,fail=1", &lines);
    assert_eq!((code, marks), (Some(3), vec!["slow".to_owned()]));
    let lines = [
        "sh -c 'sleep 20; touch slow'",
        "sh -c 'exit 3'",
        "touch after",
    ];
    let t0 = std::time::Instant::now();
    let (code, marks) = halt_batch(&dir, "2", "now,fail=1", &lines);
    assert_eq!((code, marks), (Some(3), vec![]));
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "the sleeping job was killed"
    );
    // A job admitted (-j 3) but waiting for a dependency when the batch halts never starts,
    // and the batch ends.
    let lines = [
        r#"{"name": "a", "program": "sh", "args": ["-c", "sleep 0.5; touch a"]}"#,
        "sh -c 'exit 4'",
        r#"{"program": "touch", "args": ["after-a"], "after": ["a"]}"#,
    ];
    let (code, marks) = halt_batch(&dir, "3", "soon,fail=1", &lines);
    assert!(
        code == Some(4) && !marks.contains(&"after-a".to_owned()),
        "{code:?} {marks:?}"
    );
}

#[test]
fn halt_counts_percentages_successes_and_finished_jobs_as_gnu_parallel() {
    let dir = TempDir::new("cli-halt-forms");
    // fail=N: the number of failures is the exit status.
    let (code, marks) = halt_batch(
        &dir,
        "1",
        "soon,fail=2",
        &["false", "touch b", "false", "touch d"],
    );
    assert_eq!((code, marks), (Some(2), vec!["b".to_owned()]));
    // fail=P% of all the jobs (4): 50% after the second failure; the status is the percentage.
    let (code, marks) = halt_batch(
        &dir,
        "1",
        "soon,fail=50%",
        &["false", "touch b", "false", "touch d"],
    );
    assert_eq!((code, marks), (Some(50), vec!["b".to_owned()]));
    // success=1: stop at the first success, status 0.
    let (code, marks) = halt_batch(&dir, "1", "now,success=1", &["false", "touch b", "touch c"]);
    assert_eq!((code, marks), (Some(0), vec!["b".to_owned()]));
    // done=2: two finished jobs whatever their outcome; the number of failures.
    let (code, marks) = halt_batch(&dir, "1", "now,done=2", &["false", "touch b", "touch c"]);
    assert_eq!((code, marks), (Some(1), vec!["b".to_owned()]));
    // A rule never met: the number of failures, as without --halt.
    let (code, marks) = halt_batch(&dir, "1", "soon,fail=5", &["false", "touch b"]);
    assert_eq!((code, marks), (Some(1), vec!["b".to_owned()]));
    // parallel's numeric forms: 2 is now,fail=1.
    let (code, marks) = halt_batch(&dir, "1", "2", &["sh -c 'exit 9'", "touch b"]);
    assert_eq!((code, marks), (Some(9), vec![]));
    let out = run(procman().args(["batch", "--halt=sometimes", "/dev/null"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("option --halt"));
}

/// Kills the tool with SIGTERM once the joblog holds `n` entries; returns its exit status.
fn interrupt_after(cmd: &mut Command, joblog_path: &Path, n: usize) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let ready = eventually(LONG, || {
        std::fs::read_to_string(joblog_path).is_ok_and(|t| t.lines().count() > n)
    });
    // SAFETY: signalling our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(
        ready,
        "the joblog never had {n} entries: {}",
        text(&out.stderr)
    );
    out
}

#[test]
fn resume_after_an_interrupted_run_runs_every_job_exactly_once_to_success() {
    let dir = TempDir::new("cli-resume");
    let gate = dir.join("gate");
    let done = dir.join("done.txt");
    // Jobs 1-2 are quick; 3-6 wait for the gate file, so the first run is interrupted with
    // jobs 3-4 running and 5-6 queued. Each job records its success as its very last act.
    let mut lines = String::new();
    for k in 1..=6 {
        let wait = if k > 2 {
            format!("while [ ! -e {} ]; do sleep 0.02; done; ", gate.display())
        } else {
            String::new()
        };
        lines.push_str(&format!("sh -c '{wait}echo {k} >> {}'\n", done.display()));
    }
    let jobs = write(&dir, "jobs.txt", &lines);
    let log = dir.join("joblog");
    let mut first = procman();
    first
        .args(["batch", "-j", "2", "--no-logs", "--joblog"])
        .arg(&log)
        .arg(&jobs);
    let out = interrupt_after(&mut first, &log, 2);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + 15), "{err}");
    let entries = joblog(&log);
    let succeeded: Vec<u64> = entries
        .iter()
        .filter(|e| e.exitval == 0 && e.signal == 0)
        .map(|e| e.seq)
        .collect();
    assert!(
        succeeded.contains(&1) && succeeded.contains(&2),
        "{entries:?}"
    );
    // The running jobs were killed (their groups), recorded, and will run again.
    for e in entries.iter().filter(|e| e.seq > 2) {
        assert_eq!((e.exitval, e.signal), (-1, 15), "{e:?}");
    }
    // Open the gate: a job of the first run that survived would now write a second line.
    std::fs::write(&gate, "").unwrap();
    // --resume-failed: the jobs recorded as killed run again.
    let out = run(procman()
        .args([
            "batch",
            "-j",
            "2",
            "--no-logs",
            "--resume-failed",
            "--joblog",
        ])
        .arg(&log)
        .arg(&jobs));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("skipped (succeeded before)"), "{err}");
    let mut ran: Vec<u32> = std::fs::read_to_string(&done)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    ran.sort();
    assert_eq!(ran, [1, 2, 3, 4, 5, 6], "every job succeeded exactly once");
    // The joblog's latest entry for every job is a success, and jobs 1-2 ran only once.
    let entries = joblog(&log);
    let latest = by_seq(&entries);
    assert_eq!(latest.len(), 6);
    assert!(latest.values().all(|e| e.exitval == 0 && e.signal == 0));
    for k in [1, 2] {
        assert_eq!(entries.iter().filter(|e| e.seq == k).count(), 1);
    }
    // A third run has nothing left to do.
    let out = run(procman()
        .args(["batch", "--no-logs", "--resume", "--joblog"])
        .arg(&log)
        .arg(&jobs));
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("6 skipped"));
}

#[test]
fn resume_skips_every_recorded_job_and_resume_failed_reruns_the_failures() {
    let dir = TempDir::new("cli-resume-forms");
    let runs = dir.join("runs.txt");
    let mut lines = String::new();
    for k in 1..=4 {
        // Jobs 2 and 4 fail; each records that it ran.
        let code = if k % 2 == 0 { 1 } else { 0 };
        lines.push_str(&format!(
            "sh -c 'echo {k} >> {}; exit {code}'\n",
            runs.display()
        ));
    }
    let jobs = write(&dir, "jobs.txt", &lines);
    let log = dir.join("joblog");
    let batch = |extra: &[&str]| {
        let out = run(procman()
            .args(["batch", "-q", "-j", "1", "--no-logs"])
            .args(extra)
            .arg("--joblog")
            .arg(&log)
            .arg(&jobs));
        let ran = std::fs::read_to_string(&runs).unwrap_or_default();
        let _ = std::fs::remove_file(&runs);
        (out.status.code(), ran)
    };
    assert_eq!(batch(&[]), (Some(2), "1\n2\n3\n4\n".to_owned()));
    // GNU parallel's --resume: every job in the joblog is done, failed or not.
    assert_eq!(batch(&["--resume"]), (Some(0), String::new()));
    // --resume-failed: the failures run again.
    assert_eq!(batch(&["--resume-failed"]), (Some(2), "2\n4\n".to_owned()));
}

#[test]
fn timeouts_of_zero_directories_dependencies_and_bad_log_dirs_read_one_way() {
    let dir = TempDir::new("cli-small");
    // --timeout 0 is no timeout, as for coreutils timeout; in run, batch and a JSON job.
    let out = run(procman().args(["run", "-q", "--timeout", "0", "sleep", "0.3"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let jobs = write(
        &dir,
        "t0.txt",
        "sleep 0.3\n{\"program\": \"sleep\", \"args\": [\"0.3\"], \"timeout\": 0}\n",
    );
    let out = run(procman()
        .args(["batch", "-q", "--timeout", "0", "--no-logs"])
        .arg(&jobs));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let jobs = write(
        &dir,
        "t1.txt",
        "{\"program\": \"sleep\", \"args\": [\"0.3\"], \"timeout\": 0}\n",
    );
    let out = run(procman()
        .args(["batch", "-q", "--timeout", "0.05", "--no-logs"])
        .arg(&jobs));
    assert_eq!(
        out.status.code(),
        Some(0),
        "a job's own 0 overrides --timeout"
    );

    // A program that is a directory: 126 from run and in batch's joblog, as from a shell.
    let out = run(procman().args(["run", "-q", "/"]));
    assert_eq!(out.status.code(), Some(126));
    let jobs = write(&dir, "dir.txt", "/\n/no/such/program\n");
    let log = dir.join("joblog");
    run(procman()
        .args(["batch", "-q", "--no-logs", "--joblog"])
        .arg(&log)
        .arg(&jobs));
    let entries = joblog(&log);
    let codes: HashMap<u64, i32> = entries.iter().map(|e| (e.seq, e.exitval)).collect();
    assert_eq!(codes, HashMap::from([(1, 126), (2, 127)]));

    // A failed dependency is named by its line and name, not an internal id.
    let jobs = write(
        &dir,
        "dep.txt",
        "true\n{\"name\": \"prep\", \"program\": \"false\"}\n{\"program\": \"true\", \"after\": [\"prep\"]}\n",
    );
    let out = run(procman().args(["batch", "--no-logs"]).arg(&jobs));
    let err = text(&out.stderr);
    assert!(
        err.contains("job 3 (line 3) never started: job 2 (line 2, \"prep\"), which it runs after"),
        "{err}"
    );

    // A --log-dir that is a file: one message up front, procman's own error status.
    let file = write(&dir, "not-a-dir", "");
    let jobs = write(&dir, "three.txt", "true\ntrue\ntrue\n");
    let out = run(procman().args(["batch", "--log-dir", &file]).arg(&jobs));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{err}");
    assert_eq!(err.matches("not-a-dir").count(), 1, "{err}");
}

#[test]
fn every_verb_has_help_on_stdout_and_batch_has_a_quiet_mode() {
    for (verb, first) in [
        ("run", "procman run [OPTIONS]"),
        ("batch", "procman batch [OPTIONS]"),
        ("status", "procman status --joblog"),
    ] {
        for flag in ["--help", "-h"] {
            let out = run(procman().args([verb, flag]));
            assert_eq!(out.status.code(), Some(0), "{verb} {flag}");
            assert!(
                text(&out.stdout).starts_with(first),
                "{verb} {flag}: {}",
                text(&out.stdout)
            );
            assert_eq!(text(&out.stderr), "");
        }
    }
    // After the program, --help is the program's.
    let out = run(procman().args(["run", "-q", "printf", "%s\\n", "--help"]));
    assert_eq!(text(&out.stdout), "--help\n");
    // -q: nothing on stderr for a batch that succeeds; failures are still told.
    let dir = TempDir::new("cli-quiet");
    let jobs = write(&dir, "ok.txt", "true\ntrue\n");
    let out = run(procman()
        .args(["batch", "-q", "--progress", "--no-logs"])
        .arg(&jobs));
    assert_eq!(
        (out.status.code(), text(&out.stderr)),
        (Some(0), String::new())
    );
    let jobs = write(&dir, "bad.txt", "true\nfalse\n");
    let out = run(procman().args(["batch", "-q", "--no-logs"]).arg(&jobs));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("job 2 (line 2) FAILED"));
}

#[test]
fn a_sigkilled_tool_leaves_a_joblog_of_complete_valid_lines() {
    let dir = TempDir::new("cli-sigkill");
    let jobs = write(&dir, "jobs.txt", &"sh -c 'exit 0'\n".repeat(400));
    let log = dir.join("joblog");
    let child = procman()
        .args(["batch", "-j", "2", "--no-logs", "--joblog"])
        .arg(&log)
        .arg(&jobs)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    assert!(eventually(LONG, || std::fs::read_to_string(&log)
        .is_ok_and(|t| t.lines().count() > 20)));
    // SAFETY: our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None);
    // Whatever the moment of the kill, every line is whole (each is one write).
    let entries = joblog(&log);
    assert!(entries.len() >= 20);
    // And --resume appends after it, skipping what succeeded.
    let out = run(procman()
        .args(["batch", "-j", "4", "--no-logs", "--resume", "--joblog"])
        .arg(&log)
        .arg(&jobs));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let latest = joblog(&log);
    assert_eq!(by_seq(&latest).len(), 400);
}

#[test]
fn bad_options_and_a_missing_job_file_are_reported() {
    let out = run(procman().args(["batch", "--jobs", "0", "x"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("--jobs"));
    let out = run(procman().args(["batch", "/no/such/jobs.txt"]));
    assert_eq!(out.status.code(), Some(255));
    assert!(text(&out.stderr).contains("/no/such/jobs.txt"));
    let out = run(procman().args(["batch", "--resume", "x"]));
    assert!(text(&out.stderr).contains("--resume needs --joblog"));
    let out = run(procman().args(["batch", "--timeout", "soon", "x"]));
    assert!(text(&out.stderr).contains("--timeout"));
    let out = run(procman().arg("frobnicate"));
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------------

#[test]
fn status_summarises_a_joblog_with_failures_and_their_logs() {
    let dir = TempDir::new("cli-status");
    let logs = dir.join("logs");
    let log = dir.join("joblog");
    let jobs = write(
        &dir,
        "jobs.txt",
        "true\nsh -c 'exit 5'\nsleep 0.3\nsh -c 'kill -9 $$'\n",
    );
    let out = run(procman()
        .args(["batch", "--log-dir"])
        .arg(&logs)
        .arg("--joblog")
        .arg(&log)
        .arg(&jobs));
    assert_eq!(out.status.code(), Some(2));
    let out = run(procman()
        .args(["status", "--joblog"])
        .arg(&log)
        .arg("--log-dir")
        .arg(&logs));
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{s}");
    assert!(s.contains("4 jobs, 2 succeeded, 2 failed"), "{s}");
    assert!(
        s.contains("job 2: exited with code 5: sh -c 'exit 5'"),
        "{s}"
    );
    assert!(
        s.contains(&format!("{}", logs.join("2_err.txt").display())),
        "{s}"
    );
    assert!(s.contains("job 4: terminated by SIGKILL (signal 9)"), "{s}");
    // The slowest job is listed first.
    let slowest = s.split("slowest:\n").nth(1).unwrap();
    assert!(slowest.trim_start().starts_with("job 3"), "{s}");

    let out = run(procman().args(["status", "--joblog", "/no/such/joblog"]));
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------------------------

#[test]
fn run_exits_with_the_jobs_code_and_accounts_for_it_on_stderr() {
    let out = run(procman().args(["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    let err = text(&out.stderr);
    assert!(err.contains("err\n"), "{err}");
    let account = err.lines().last().unwrap();
    assert!(
        account.starts_with("procman: exited with code 3; wall "),
        "{account}"
    );
    assert!(
        account.contains("cpu ") && account.contains("peak memory"),
        "{account}"
    );
}

#[test]
fn run_follows_the_conventions_of_timeout_for_timeouts_signals_and_missing_programs() {
    let out = run(procman().args(["run", "--timeout", "200ms", "sleep", "30"]));
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("timed out, terminated by SIGTERM"));
    let out = run(procman().args(["run", "--", "sh", "-c", "kill -SEGV $$"]));
    assert_eq!(out.status.code(), Some(128 + 11));
    let out = run(procman().args(["run", "/no/such/program"]));
    assert_eq!(out.status.code(), Some(127));
    let out = run(procman().args(["run", "/etc/passwd"]));
    assert_eq!(out.status.code(), Some(126));
    let out = run(procman().args(["run", "--cwd", "/no/such/dir", "true"]));
    assert_eq!(out.status.code(), Some(125));
    let out = run(procman().args(["run", "--frob", "true"]));
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn run_writes_logs_reads_input_and_sets_the_environment() {
    let dir = TempDir::new("cli-run");
    let input = write(&dir, "in.txt", "keywords\n");
    let out = run(procman()
        .args(["run", "-q", "--input", &input, "--env", "A=b=c", "--cwd"])
        .arg(dir.path())
        .arg("--log")
        .arg(dir.join("out.log"))
        .arg("--err")
        .arg(dir.join("err.log"))
        .args(["--", "sh", "-c", "cat; echo $A; pwd; echo oops >&2"]));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "");
    assert_eq!(text(&out.stderr), "", "-q: no account");
    assert_eq!(
        std::fs::read_to_string(dir.join("out.log")).unwrap(),
        format!("keywords\nb=c\n{}\n", dir.path().display())
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("err.log")).unwrap(),
        "oops\n"
    );
}

#[test]
fn run_kills_the_job_group_on_sigterm_and_exits_128_plus_the_signal() {
    let dir = TempDir::new("cli-run-term");
    // The background sleep is found by its argv (a length no other process uses) and its pid.
    let secs = common::marker_secs();
    let script = format!("sleep {secs} & echo $!; wait");
    let child = procman()
        .args(["run", "--log"])
        .arg(dir.join("out.log"))
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sleeper = 0u32;
    assert!(eventually(LONG, || {
        let log = std::fs::read_to_string(dir.join("out.log")).unwrap_or_default();
        match log.strip_suffix('\n').map(str::parse) {
            Some(Ok(pid)) => {
                sleeper = pid;
                true
            }
            _ => false,
        }
    }));
    assert_eq!(
        common::live_with_argv(&["sleep", &secs]),
        vec![sleeper],
        "the background sleep runs"
    );
    // SAFETY: our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 15), "{}", text(&out.stderr));
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(text(&out.stderr).contains("killed"));
    // The group kill reached the background sleep, not only the shell.
    let gone = eventually(Duration::from_secs(10), || {
        !common::alive(sleeper) && common::live_with_argv(&["sleep", &secs]).is_empty()
    });
    if !gone {
        // SAFETY: the pid is the leftover this test started (its argv is unique).
        for pid in common::live_with_argv(&["sleep", &secs]) {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    assert!(gone, "the background sleep {sleeper} outlived procman run");
}

/// Deterministic pseudo-random bytes (xorshift64*), so a failure names a seed to replay.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// What `procman run -q -- sh -c SCRIPT` writes when its stdout is `how`: "pipe" (handed to the
/// job directly), "file" or "socket" (relayed by procman).
fn run_output(how: &str, dir: &TempDir, script: &str) -> Vec<u8> {
    use std::io::Read;
    let mut cmd = procman();
    cmd.args(["run", "-q", "--", "sh", "-c", script])
        .stdin(Stdio::null());
    match how {
        "pipe" => {
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            out.stdout
        }
        "file" => {
            let path = dir.join("relayed");
            cmd.stdout(std::fs::File::create(&path).unwrap());
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
            std::fs::read(&path).unwrap()
        }
        "socket" => {
            let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
            cmd.stdout(std::os::fd::OwnedFd::from(theirs));
            let mut child = cmd.spawn().unwrap();
            drop(cmd);
            let mut got = Vec::new();
            ours.read_to_end(&mut got).unwrap();
            assert_eq!(child.wait().unwrap().code(), Some(0));
            got
        }
        _ => unreachable!(),
    }
}

#[test]
fn run_passes_output_on_byte_for_byte_whether_direct_or_relayed() {
    let dir = TempDir::new("cli-run-bytes");
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // A line of exactly 64 KiB (the library's observer cap) with its newline, then more.
    let mut line = vec![b'x'; 64 * 1024];
    line.push(b'\n');
    line.extend_from_slice(b"after\n");
    cases.push(("64 KiB line".into(), line));
    cases.push(("no final newline".into(), b"one\ntwo".to_vec()));
    cases.push(("empty".into(), Vec::new()));
    for seed in 1..=4u64 {
        let len = 1000 + (seed as usize * 97_531) % 300_000;
        cases.push((format!("random seed {seed}"), random_bytes(seed, len)));
    }
    for (i, (what, data)) in cases.iter().enumerate() {
        let path = dir.join(&format!("in{i}"));
        std::fs::write(&path, data).unwrap();
        let script = format!("cat '{}'", path.display());
        for how in ["pipe", "file", "socket"] {
            let got = run_output(how, &dir, &script);
            assert!(
                got == *data,
                "{what} through a {how}: {} bytes in, {} out",
                data.len(),
                got.len()
            );
        }
        // Stderr too, as a pipe.
        let out = run(procman().args([
            "run",
            "-q",
            "--",
            "sh",
            "-c",
            &format!("cat '{}' >&2", path.display()),
        ]));
        assert!(out.stderr == *data, "{what} on stderr");
    }
}

/// `procman run -q -- sh -c 'echo $$ >PIDFILE; exec yes'` with its stdout on `reader`'s other
/// end; reads one line, closes the reader and returns (procman's exit code, the job's pid).
fn yes_then_close(
    dir: &TempDir,
    stdout: Stdio,
    mut reader: impl std::io::Read,
) -> (Option<i32>, u32) {
    let pidfile = dir.join("pid");
    let mut child = procman()
        .args(["run", "-q", "--", "sh", "-c"])
        .arg(format!("echo $$ >'{}'; exec yes", pidfile.display()))
        .stdin(Stdio::null())
        .stdout(stdout)
        .spawn()
        .unwrap();
    let mut first = [0u8; 2];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\n");
    drop(reader);
    let mut status = None;
    let ended = eventually(LONG, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if !ended {
        // Clean up what this test started before failing: the job (by its pid) and procman.
        // SAFETY: plain kill(2) on pids this test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(ended, "procman run did not end after its reader went away");
    (status.unwrap().code(), pid)
}

#[test]
fn run_ends_like_timeout_when_the_reader_of_its_output_goes_away() {
    let dir = TempDir::new("cli-run-yes");
    // A pipe: the job writes to it directly and dies of SIGPIPE, as under `timeout`: 141.
    let (r, w) = pipe_pair();
    let (code, pid) = yes_then_close(&dir, Stdio::from(w), std::fs::File::from(r));
    assert_eq!(code, Some(128 + libc::SIGPIPE));
    assert!(!common::alive(pid), "the job {pid} outlived procman");
    // A socket: relayed; the relay closes its pipe, so the job meets the same SIGPIPE.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let (code, pid) = yes_then_close(&dir, Stdio::from(std::os::fd::OwnedFd::from(theirs)), ours);
    assert_eq!(code, Some(128 + libc::SIGPIPE));
    assert!(!common::alive(pid), "the job {pid} outlived procman");
}

fn pipe_pair() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors, owned here from now on.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// batch: command templates, output to the terminal, bytes
// ---------------------------------------------------------------------------------------------

/// `procman batch ARGS` with `stdin` as its input; returns (exit code, stdout, stderr).
fn batch_with_stdin(args: &[&std::ffi::OsStr], stdin: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    use std::io::Write;
    let mut child = procman()
        .arg("batch")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), out.stdout, text(&out.stderr))
}

fn os_args(v: &[&str]) -> Vec<std::ffi::OsString> {
    v.iter().map(std::ffi::OsString::from).collect()
}

#[test]
fn a_command_template_takes_arguments_from_sources_files_and_stdin() {
    let dir = TempDir::new("cli-template");
    let fmt = "%s|%s|%s|%s|%s|%s\n";
    let out = run(procman().args([
        "batch",
        "-q",
        "-j",
        "1",
        "--no-logs",
        "--line-buffer",
        "--",
        "printf",
        fmt,
        "{}",
        "{.}",
        "{/}",
        "{//}",
        "{/.}",
        "{#}",
        ":::",
        "dir/in.tar.gz",
        "plain",
    ]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "dir/in.tar.gz|dir/in.tar|in.tar.gz|dir|in.tar|1\nplain|plain|plain|.|plain|2\n"
    );
    // Options before the command need no `--`; sources multiply; `::::` reads a file.
    let args = write(&dir, "args.txt", "x\ny\n");
    let out = run(procman()
        .args([
            "batch",
            "-q",
            "-j",
            "1",
            "--no-logs",
            "--group",
            "echo",
            "{1}-{2}",
            "::::",
        ])
        .arg(&args)
        .args([":::", "1", "2"]));
    assert_eq!(text(&out.stdout), "x-1\nx-2\ny-1\ny-2\n");
    // No source: arguments from stdin, one per line, or NUL-terminated with -0; a command
    // without a replacement string gets the argument appended.
    let (code, stdout, err) = batch_with_stdin(
        &os_args(&[
            "-q",
            "-j",
            "1",
            "--no-logs",
            "--line-buffer",
            "echo",
            "arg:",
        ])
        .iter()
        .map(|a| a.as_os_str())
        .collect::<Vec<_>>(),
        b"a b\nc\n",
    );
    assert_eq!(
        (code, text(&stdout)),
        (Some(0), "arg: a b\narg: c\n".into()),
        "{err}"
    );
    let (_, stdout, _) = batch_with_stdin(
        &os_args(&[
            "-q",
            "-j",
            "1",
            "--no-logs",
            "--line-buffer",
            "-0",
            "echo",
            "[{}]",
        ])
        .iter()
        .map(|a| a.as_os_str())
        .collect::<Vec<_>>(),
        b"with\nnewline\0two\0",
    );
    assert_eq!(text(&stdout), "[with\nnewline]\n[two]\n");
}

#[test]
fn bytes_that_are_not_utf8_reach_the_job_unchanged() {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let dir = TempDir::new("cli-bytes");
    let marks = dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // A job line in Latin-1, quoted, and an argument from ::: that is not UTF-8.
    let mut line = b"touch 'caf\xe9 one' plain\n".to_vec();
    line.extend_from_slice(b"{\"program\": \"true\"}\n");
    let jobs = dir.join("latin1.txt");
    std::fs::write(&jobs, &line).unwrap();
    let out = run(procman()
        .args(["batch", "-q", "--no-logs"])
        .arg(&jobs)
        .current_dir(&marks));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(procman()
        .args(["batch", "-q", "--no-logs", "touch", "{}.x", ":::"])
        .arg(std::ffi::OsString::from_vec(b"\xff\xfe".to_vec()))
        .current_dir(&marks));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut names: Vec<Vec<u8>> = std::fs::read_dir(&marks)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            b"caf\xe9 one".to_vec(),
            b"plain".to_vec(),
            b"\xff\xfe.x".to_vec()
        ]
    );
}

/// The lines of `out`, which must each be `TAG<TAB>TAG-<n>-<padding>` with its own tag.
fn check_tagged_lines(out: &str, tags: &[&str], per_job: usize) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut order = Vec::new();
    for line in out.lines() {
        let (tag, body) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("untagged {line:?}"));
        assert!(tags.contains(&tag), "{line:?}");
        let n = seen.entry(tag.to_owned()).or_default();
        assert_eq!(
            body,
            format!("{tag}-{n}-{}", "x".repeat(200)),
            "a mixed line"
        );
        *n += 1;
        order.push(tag.to_owned());
    }
    for t in tags {
        assert_eq!(seen.get(*t), Some(&per_job), "{t}");
    }
    order
}

#[test]
fn line_buffer_and_group_print_whole_lines_tagged_and_group_keeps_each_job_together() {
    let tags = ["a", "b", "c", "d"];
    let script = format!(
        "i=0; while [ $i -lt 300 ]; do echo \"$0-$i-{}\"; i=$((i+1)); done",
        "x".repeat(200)
    );
    for mode in ["--line-buffer", "--group"] {
        let out = run(procman()
            .args([
                "batch",
                "-q",
                "-j",
                "4",
                "--no-logs",
                mode,
                "--tag",
                "sh",
                "-c",
            ])
            .arg(&script)
            .args(["{}", ":::"])
            .args(tags));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let order = check_tagged_lines(&text(&out.stdout), &tags, 300);
        if mode == "--group" {
            let mut runs = order.clone();
            runs.dedup();
            assert_eq!(runs.len(), 4, "--group: each job's output in one piece");
        }
    }
    // --tag without a terminal output mode is a usage error.
    let out = run(procman().args(["batch", "--tag", "/dev/null"]));
    assert_eq!(out.status.code(), Some(255));
    // Log files are still written beside the terminal output.
    let dir = TempDir::new("cli-line-buffer-logs");
    let out = run(procman()
        .args(["batch", "-q", "--line-buffer", "--log-dir"])
        .arg(dir.join("logs"))
        .args(["echo", "{}", ":::", "hello"]));
    assert_eq!(text(&out.stdout), "hello\n");
    assert_eq!(
        std::fs::read_to_string(dir.join("logs/1.log")).unwrap(),
        "hello\n"
    );
}

// ---------------------------------------------------------------------------------------------
// durations (issue 19)
// ---------------------------------------------------------------------------------------------

/// Runs the tool, killing it (and failing) if it has not exited within `LONG`: before issue 19 a
/// duration too long for the clock panicked a worker and the tool hung.
fn run_within(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run procman");
    let exited = eventually(LONG, || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "procman hung: {}", text(&out.stderr));
    out
}

/// The largest duration there is, as the CLI writes it.
const MAX_SECS: &str = "18446744073709551615.999999999";

#[test]
fn impossible_durations_are_refused_with_a_message_and_the_usage_status() {
    for opt in ["--timeout", "--grace"] {
        for (value, says) in [
            ("1e99", "exponents (\"e99\") are not accepted"),
            ("99999999999999999999d", "is too large (at most"),
            ("18446744073709551616", "is too large (at most"),
        ] {
            for (verb, code) in [("run", 125), ("batch", 255)] {
                let out = run_within(procman().args([verb, opt, value, "true"]));
                let err = text(&out.stderr);
                assert_eq!(out.status.code(), Some(code), "{verb} {opt} {value}: {err}");
                assert!(
                    err.contains(&format!("option {opt}")) && err.contains(says),
                    "{verb} {opt} {value}: {err}"
                );
                assert!(!err.contains("panicked"), "{err}");
            }
        }
    }
}

#[test]
fn durations_too_long_for_the_clock_mean_no_limit() {
    // The job ends by itself: no timeout fires, no panic.
    for value in [MAX_SECS, "18446744073709551615", "213503982334601d"] {
        let out = run_within(procman().args(["run", "--timeout", value, "--grace", value, "true"]));
        assert_eq!(out.status.code(), Some(0), "{value}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("exited with code 0"));
    }
    // A grace without end: the timeout's SIGTERM ends the job, and no SIGKILL follows.
    let out = run_within(procman().args([
        "run",
        "--timeout",
        "200ms",
        "--grace",
        MAX_SECS,
        "sleep",
        "30",
    ]));
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("timed out, terminated by SIGTERM"));
    // The same in batch, as options (a job's own timeout overrides the default).
    let dir = TempDir::new("cli-durations");
    let jobs = write(
        &dir,
        "jobs.txt",
        "true\n{\"program\":\"sleep\",\"args\":[\"30\"],\"timeout\":\"200ms\"}\n",
    );
    let out = run_within(
        procman()
            .args(["batch", "--no-progress", "--no-logs", "--grace", MAX_SECS])
            .args(["--timeout", "18446744073709551615", &jobs]),
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("1 succeeded, 1 failed"), "{err}");
    assert!(err.contains("timed out"), "{err}");
}

#[test]
fn job_lines_with_impossible_durations_are_invalid_and_huge_ones_have_no_limit() {
    let dir = TempDir::new("cli-durations-lines");
    let jobs = write(
        &dir,
        "jobs.txt",
        &[
            r#"{"program":"true","timeout":"99999999999999999999d"}"#,
            r#"{"program":"true","timeout":"1e99"}"#,
            r#"{"program":"true","timeout":1e99}"#,
            r#"{"program":"true","timeout":18446744073709551615}"#,
            &format!(r#"{{"program":"true","timeout":"{MAX_SECS}"}}"#),
            r#"{"program":"true","timeout":1.8e19}"#,
            "",
        ]
        .join("\n"),
    );
    let out = run_within(procman().args(["batch", "--no-progress", "--no-logs", &jobs]));
    let err = text(&out.stderr);
    // The three impossible lines are invalid (failures); the three huge ones run and succeed.
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("3 succeeded, 3 failed, 3 invalid lines"),
        "{err}"
    );
    assert!(
        err.contains(
            r#"line 1: "timeout": duration "99999999999999999999d" is too large (at most"#
        ),
        "{err}"
    );
    assert!(
        err.contains(r#"line 2: "timeout": invalid duration "1e99": exponents"#),
        "{err}"
    );
    assert!(
        err.contains(r#"line 3: "timeout" of 1e+99 seconds is invalid"#) && err.contains("at most"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// `--contain` and `--memory-limit` (issue 15): the mode reaches the manager (in cgroup mode,
/// as root, the job runs in a `job-` cgroup; in group mode in the tool's own), a bad value is a
/// usage error, and a memory limit the mode cannot apply is refused with the reason.
#[test]
fn contain_and_memory_limit_reach_the_manager() {
    let cgroup_of_job = |mode: &str| {
        let out = run(procman().args([
            "run",
            "--quiet",
            "--contain",
            mode,
            "--",
            "sh",
            "-c",
            "grep ^0:: /proc/self/cgroup",
        ]));
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, stdout, err) = cgroup_of_job("group");
    assert_eq!(code, Some(0), "{err}");
    assert!(!stdout.contains("/job-"), "{stdout}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let (code, stdout, err) = cgroup_of_job("cgroup");
        assert_eq!(code, Some(0), "{err}");
        assert!(
            stdout.contains("/procman-") && stdout.contains("/job-"),
            "{stdout}"
        );
    }
    let out = run(procman().args(["run", "--contain", "pgroup", "--", "true"]));
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("option --contain"),
        "{}",
        text(&out.stderr)
    );
    for verb in [&["run"][..], &["batch", "--no-progress", "--no-logs"][..]] {
        let mut args: Vec<&str> = verb.to_vec();
        args.extend(["--contain", "group", "--memory-limit", "1M", "--", "true"]);
        if verb[0] == "batch" {
            args.extend([":::", "x"]);
        }
        let out = run(procman().args(&args));
        let err = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(
            err.contains("memory limit needs cgroup containment"),
            "{verb:?}: {err}"
        );
    }
    let out = run(procman().args(["run", "--memory-limit", "lots", "--", "true"]));
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("option --memory-limit"));
}
