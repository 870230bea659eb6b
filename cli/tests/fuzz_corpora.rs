//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/*`) through the very checks the
//! fuzz targets run (`fuzz/checks/<target>.rs`, included here and by `fuzz/fuzz_targets/`), so
//! a plain `cargo test` covers every input the fuzzers kept, without cargo-fuzz or nightly.
//! The state_machine target's corpus is replayed by `tests/fuzz_state_machine.rs` instead: its
//! check runs real processes and counts the process's children and threads, so it needs a binary
//! of its own.

// The library's test helpers, shared rather than copied.
#[path = "../../tests/common/mod.rs"]
mod common;

use std::panic::{self, AssertUnwindSafe};

#[path = "../../fuzz/checks/duration.rs"]
mod duration;
#[path = "../../fuzz/checks/job_line.rs"]
mod job_line;
#[path = "../../fuzz/checks/joblog_line.rs"]
mod joblog_line;
#[path = "../../fuzz/checks/words.rs"]
mod words;

/// Runs `check` on every file of `fuzz/corpus/<target>` and fails naming every input that broke
/// an invariant (a panic in the check), and if the corpus is missing or empty.
fn replay(target: &str, check: fn(&[u8])) {
    let files = common::corpus(target);
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let message = common::panic_text(&*payload);
            failures.push(format!("{}: {message}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} corpus inputs break the target's invariants:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn duration_corpus_keeps_its_invariants() {
    replay("duration", duration::check);
}

#[test]
fn words_corpus_keeps_its_invariants() {
    replay("words", words::check_all);
}

#[test]
fn job_line_corpus_keeps_its_invariants() {
    replay("job_line", job_line::check);
}

#[test]
fn joblog_line_corpus_keeps_its_invariants() {
    replay("joblog_line", joblog_line::check);
}
