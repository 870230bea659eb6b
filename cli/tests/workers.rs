//! The tool at a huge -j (moved from the library's tests/workers.rs, issue 16): worker threads
//! are created as attempts need them, so `procman batch -j 100000` runs one job with few
//! threads. Alone in its binary, as it took turns with the thread-counting tests there.

// The library's test helpers, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;

#[test]
fn the_tool_runs_one_job_at_j_100000_with_few_threads() {
    let dir = TempDir::new("workers-cli");
    let out_file = dir.join("threads.txt");
    let jobs = dir.join("jobs.txt");
    // The job reads the tool's thread count (its parent's status).
    std::fs::write(
        &jobs,
        format!(
            "sh -c 'grep ^Threads: /proc/$PPID/status > {}'\n",
            out_file.display()
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_procman"))
        .args(["batch", "-j", "100000", "--no-logs"])
        .arg(&jobs)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let line = std::fs::read_to_string(&out_file).unwrap();
    let threads: usize = line
        .trim()
        .strip_prefix("Threads:")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(threads <= 10, "{threads} threads in the tool");
}
