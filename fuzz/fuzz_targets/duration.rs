//! `parse_duration` never panics, and an accepted duration written back as
//! seconds with nine decimals parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use procman::jobfile::parse_duration;

fuzz_target!(|data: &[u8]| {
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
});
