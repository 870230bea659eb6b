//! Output paths cannot silently destroy output, through the tool (moved from the library's
//! tests/output_paths.rs, issue 19, section 4): `run --log/--err/--input` and job lines. An error
//! file that is the log file merges the streams; an input file that is also an output is refused
//! and left as it was.

// The library's test helpers, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::Path;

use common::TempDir;

/// Lines each stream writes in the merge tests.
const N: usize = 300;

/// Writes `out i` and `err i` alternately, one `write` each: the program's own order.
fn interleaving(n: usize) -> String {
    format!("i=1; while [ $i -le {n} ]; do echo out $i; echo err $i >&2; i=$((i+1)); done")
}

/// What `interleaving` writes, in its order.
fn interleaved(n: usize) -> String {
    (1..=n).map(|i| format!("out {i}\nerr {i}\n")).collect()
}

const INPUT: &str = "the only copy of the keywords\n";

fn procman() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_procman"));
    c.env_remove("RUST_LOG").stdin(std::process::Stdio::null());
    c
}

#[test]
fn run_with_log_and_err_naming_one_file_merges_them() {
    let dir = TempDir::new("cli-merge");
    std::os::unix::fs::symlink(dir.join("out.log"), dir.join("link")).unwrap();
    for (log, err) in [
        (dir.join("out.log"), dir.join("out.log")),
        (dir.join("out.log"), dir.path().join(".").join("out.log")),
        (dir.join("out.log"), dir.join("link")),
    ] {
        std::fs::write(dir.join("out.log"), "stale\n".repeat(1000)).unwrap();
        let out = procman()
            .args(["run", "-q", "--log"])
            .arg(&log)
            .arg("--err")
            .arg(&err)
            .args(["--", "sh", "-c", &interleaving(N)])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{err:?}: {out:?}");
        assert!(
            std::fs::read_to_string(&log).unwrap() == interleaved(N),
            "{err:?}: not the merged output"
        );
    }
}

#[test]
fn run_refuses_an_input_that_is_its_log_or_err_and_leaves_it_untouched() {
    let dir = TempDir::new("cli-input");
    let input = dir.join("in.txt");
    std::fs::write(&input, INPUT).unwrap();
    std::os::unix::fs::symlink(&input, dir.join("link")).unwrap();
    // The same path is refused before the job starts, a link when it is spawned (the job
    // ends SpawnFailed): procman's own error either way, 125.
    for (opt, path) in [
        ("--log", input.clone()),
        ("--err", input.clone()),
        ("--log", dir.join("link")),
        ("--err", dir.join("link")),
    ] {
        let out = procman()
            .args(["run", "--input"])
            .arg(&input)
            .arg(opt)
            .arg(&path)
            .args(["--", "cat"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{opt} {path:?}: {err}");
        assert!(err.contains("input"), "{opt} {path:?}: {err}");
        assert_eq!(
            std::fs::read_to_string(&input).unwrap(),
            INPUT,
            "{opt} {path:?}"
        );
    }
}

#[test]
fn a_job_line_with_equal_log_and_err_merges_and_one_reading_its_log_is_invalid() {
    let dir = TempDir::new("cli-batch");
    let input = dir.join("in.txt");
    std::fs::write(&input, INPUT).unwrap();
    let merged = dir.join("merged.log");
    let json = |v: &Path| serde_json_string(v.to_str().unwrap());
    let jobs = format!(
        "{{\"program\": \"sh\", \"args\": [\"-c\", {script}], \"log\": {m}, \"err\": {m}}}\n\
         {{\"program\": \"cat\", \"input\": {i}, \"log\": {i}}}\n\
         {{\"program\": \"cat\", \"input\": {i}, \"log\": {o}, \"err\": {i}}}\n",
        script = serde_json_string(&interleaving(N)),
        m = json(&merged),
        i = json(&input),
        o = json(&dir.join("other.log")),
    );
    std::fs::write(dir.join("jobs.txt"), jobs).unwrap();
    let out = procman()
        .args(["batch", "-j", "2"])
        .arg(dir.join("jobs.txt"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "two invalid lines: {err}");
    for line in [2, 3] {
        assert!(err.contains(&format!("line {line}:")), "{err}");
    }
    assert!(err.contains("is also the job's log file"), "{err}");
    assert!(err.contains("is also the job's error file"), "{err}");
    assert_eq!(std::fs::read_to_string(&input).unwrap(), INPUT);
    assert!(std::fs::read_to_string(&merged).unwrap() == interleaved(N));
}

/// A JSON string literal (the paths and script here hold no control characters).
fn serde_json_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
