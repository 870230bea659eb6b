//! `parse_duration` never panics, and an accepted duration written back as
//! seconds with nine decimals parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The check itself, shared with `cli/tests/fuzz_corpora.rs`, which replays the committed
/// corpus.
#[path = "../checks/duration.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
