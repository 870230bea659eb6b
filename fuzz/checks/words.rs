//! The `words` fuzz target's check, shared with `tests/fuzz_corpora.rs` (which replays the
//! committed corpus through it): `split_words` never panics; whatever it accepts, quoting the
//! words and splitting again gives the same words back.

use procman::jobfile::{join_words, quote_word, split_words};

/// Panics if `data` breaks the invariant.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(words) = split_words(text) {
        let joined = join_words(&words);
        assert_eq!(split_words(&joined).as_ref(), Ok(&words), "{joined:?}");
    }
    // Any string at all survives quoting as one word.
    assert_eq!(split_words(&quote_word(text)), Ok(vec![text.to_owned()]));
}
