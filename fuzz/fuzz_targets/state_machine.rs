//! The job state machine under arbitrary sequences of operations (see `fuzz/checks/
//! state_machine.rs` for the operations and the invariants checked after them).
//!
//! Corpus: the format is unchanged (two bytes per operation) and every old input is still
//! valid; only code 15 (formerly queries only) now also reaches the new calls, so old inputs
//! with code 15 may now shut the manager down part-way.
//!
//! A hang is a finding too: run with `-timeout=60` so libFuzzer reports it.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The check itself, shared with `tests/fuzz_state_machine.rs`, which replays the committed
/// corpus.
#[path = "../checks/state_machine.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
