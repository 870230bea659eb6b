//! The `duration` fuzz target's check, shared with `cli/tests/fuzz_corpora.rs` (which replays the
//! committed corpus through it): `parse_duration` never panics, and an accepted duration written
//! back as seconds with nine decimals parses to the same value.

use procman_cli::parse_duration;

/// Panics if `data` breaks the invariant.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_duration(text) {
        Ok(d) => {
            let again = format!("{}.{:09}", d.as_secs(), d.subsec_nanos());
            assert_eq!(parse_duration(&again), Ok(d), "{again}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
