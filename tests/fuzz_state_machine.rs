//! Replays the committed `state_machine` fuzz corpus (`fuzz/corpus/state_machine/*`) through
//! the very check the fuzz target runs (`fuzz/checks/state_machine.rs`, included here and by
//! `fuzz/fuzz_targets/state_machine.rs`), so a plain `cargo test`, without cargo-fuzz or
//! nightly, drives a real manager through every operation sequence the fuzzer kept and checks
//! its invariants (one handler call per accepted job, records as the handlers saw them, ends
//! the programs and their histories allow, no child or thread left).
//!
//! A binary of its own with one test: the check counts the process's children and threads, so
//! nothing else may run in this process meanwhile. Every input is replayed, one after the
//! other; a watchdog aborts the binary, naming the input, if one input runs longer than
//! [`INPUT_LIMIT`] (the fuzz runs' `-timeout=60`): a hang is a finding, as in the fuzzer.

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

#[path = "../fuzz/checks/state_machine.rs"]
mod state_machine;

mod common;

/// One input's bound before the watchdog aborts the binary (well above the about 0.1-0.5 s an
/// input takes, even on a loaded machine).
const INPUT_LIMIT: Duration = Duration::from_secs(60);

/// Failing inputs named before the replay stops: once one fails, most others usually fail the
/// same way, each after up to the check's 5 s wait for threads to go, so a broken build would
/// otherwise take minutes to report.
const MAX_FAILURES: usize = 10;

#[test]
fn state_machine_corpus_keeps_its_invariants() {
    let files = common::corpus("state_machine");

    // The watchdog gets each input's name as it starts and `None` at the end; it is started
    // before the first input, so the check's thread count does not see it come or go.
    let (started, watch) = mpsc::channel::<Option<String>>();
    let watchdog = std::thread::spawn(move || {
        let mut current = String::new();
        loop {
            match watch.recv_timeout(INPUT_LIMIT) {
                Ok(Some(name)) => current = name,
                Ok(None) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    // Straight to the stderr stream: `eprintln!` is captured by the test
                    // harness and lost in the abort.
                    let _ = writeln!(
                        std::io::stderr(),
                        "state_machine corpus input {current} ran over {INPUT_LIMIT:?}: a hang"
                    );
                    std::process::abort();
                }
            }
        }
    });

    let begin = Instant::now();
    let mut failures = Vec::new();
    let mut replayed = 0;
    let mut slowest = (Duration::ZERO, String::new());
    for file in &files {
        if failures.len() == MAX_FAILURES {
            break;
        }
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        started.send(Some(file.display().to_string())).unwrap();
        let t = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| state_machine::check(&data)));
        let took = t.elapsed();
        replayed += 1;
        if took > slowest.0 {
            slowest = (took, file.display().to_string());
        }
        if let Err(payload) = outcome {
            let message = common::panic_text(&*payload);
            failures.push(format!("{}: {message}", file.display()));
        }
    }
    started.send(None).unwrap();
    watchdog.join().unwrap();
    eprintln!(
        "{replayed} of {} state_machine inputs replayed in {:?} (slowest {:?}: {})",
        files.len(),
        begin.elapsed(),
        slowest.0,
        slowest.1
    );
    assert!(
        failures.is_empty(),
        "{} of the {replayed} state_machine corpus inputs replayed (of {}) break the target's \
         invariants (after the first, a failure may come from what the failed one left \
         behind{}):\n{}",
        failures.len(),
        files.len(),
        if replayed < files.len() {
            format!("; stopped after {MAX_FAILURES} failing inputs")
        } else {
            String::new()
        },
        failures.join("\n")
    );
}
