//! `split_words` and `split_words_bytes` never panic; whatever `split_words` accepts, quoting the words and
//! splitting again gives the same words back.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The check itself, shared with `cli/tests/fuzz_corpora.rs`, which replays the committed
/// corpus.
#[path = "../checks/words.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check_all(data));
