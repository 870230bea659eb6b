//! The `joblog_line` fuzz target's check, shared with `cli/tests/fuzz_corpora.rs` (which
//! replays the committed corpus through it): `parse_joblog_line` never panics; an accepted line
//! formatted again with `to_line` parses to the same entry, and formatting is then a fixed
//! point.

use procman_cli::parse_joblog_line;

/// Panics if `data` breaks an invariant.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_joblog_line(text) {
        Ok(entry) => {
            let line = entry.to_line();
            let back = parse_joblog_line(&line).expect("to_line output parses");
            assert_eq!(back.to_line(), line);
            assert_eq!(
                (back.seq, &back.host, back.send, back.receive),
                (entry.seq, &entry.host, entry.send, entry.receive)
            );
            assert_eq!((back.exitval, back.signal), (entry.exitval, entry.signal));
            assert_eq!(back.command, entry.command);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
