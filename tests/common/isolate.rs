//! Runs one test in a process of its own, for tests that change or measure process-wide state
//! (signal dispositions, the user id, resource limits, fd/thread/child counts) and must neither
//! disturb nor be disturbed by other tests in the same binary.
//!
//! `isolated("name", || body)` re-executes the test binary as
//! `BIN name --exact --test-threads=1 --nocapture` with `PROCMAN_ISOLATED=name`; in that child
//! the same call runs `body`. The parent asserts the child passed (and ran exactly one test),
//! killing it after `limit` so a hang fails the test instead of blocking it.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const VAR: &str = "PROCMAN_ISOLATED";

/// Runs `body` in a fresh process (see the module docs). `name` must be the test's own name.
pub fn isolated(name: &str, limit: Duration, body: impl FnOnce()) {
    isolated_env(name, limit, &[], body)
}

/// [`isolated`] with extra environment variables for the child process.
pub fn isolated_env(name: &str, limit: Duration, env: &[(&str, &str)], body: impl FnOnce()) {
    if std::env::var(VAR).as_deref() == Ok(name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = std::env::temp_dir().join(format!("procman-isolated-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(VAR, name)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("re-executing the test binary");
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let report = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    match status {
        None => panic!("isolated test {name} hung for {limit:?}\n{report}"),
        Some(s) => assert!(s.success(), "isolated test {name} failed: {s}\n{report}"),
    }
    // Shown with --nocapture (the soak prints its figures).
    println!("{stdout}");
    assert!(
        stdout.contains("1 passed"),
        "isolated test {name} did not run\n{report}"
    );
}
