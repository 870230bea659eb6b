//! The `words` fuzz target's check, shared with `cli/tests/fuzz_corpora.rs` (which replays the
//! committed corpus through it): `split_words` never panics; whatever it accepts, quoting the
//! words and splitting again gives the same words back.

use procman_cli::{join_words, quote_word, split_words};

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

/// Both checks: the text one on UTF-8 input, the byte one on any input.
pub fn check_all(data: &[u8]) {
    check(data);
    check_bytes(data);
}

/// The byte version, on the same input: never panics; on UTF-8 it is `split_words`; on any
/// input without quoting, escapes, comments or operators it splits at ASCII blanks and keeps
/// every byte.
pub fn check_bytes(data: &[u8]) {
    use procman_cli::split_words_bytes;
    use std::os::unix::ffi::OsStrExt;
    let got = split_words_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let words = split_words(text).map(|w| w.into_iter().map(Into::into).collect::<Vec<_>>());
        assert_eq!(got, words);
        return;
    }
    let special = |b: &u8| b"'\"\\#|&;<>()".contains(b);
    if data.iter().any(special) {
        return;
    }
    let plain: Vec<&[u8]> = data
        .split(|b| b" \t\r\n".contains(b))
        .filter(|w| !w.is_empty())
        .collect();
    let high = |c: u32| (0x10_FF00..=0x10_FFFF).contains(&c);
    match got {
        Ok(words) => {
            let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
            assert_eq!(words, plain);
        }
        // Only for the reserved characters.
        Err(e) => assert!(
            String::from_utf8_lossy(data)
                .chars()
                .any(|c| high(c as u32)),
            "{e}"
        ),
    }
}
