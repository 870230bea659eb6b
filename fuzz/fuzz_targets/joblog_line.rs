//! `parse_joblog_line` never panics; an accepted line formatted again with
//! `to_line` parses to the same entry, and formatting is then a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The check itself, shared with `cli/tests/fuzz_corpora.rs`, which replays the committed
/// corpus.
#[path = "../checks/joblog_line.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
