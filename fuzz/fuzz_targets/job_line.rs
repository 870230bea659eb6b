//! `parse_job_line` never panics; accepted jobs satisfy the documented
//! invariants, and a shell-words job re-quoted parses to the same job.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The check itself, shared with `cli/tests/fuzz_corpora.rs`, which replays the committed
/// corpus.
#[path = "../checks/job_line.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
