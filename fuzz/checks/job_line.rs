//! The `job_line` fuzz target's check, shared with `cli/tests/fuzz_corpora.rs` (which replays the
//! committed corpus through it): `parse_job_line` never panics; accepted jobs satisfy the
//! documented invariants, and a shell-words job re-quoted parses to the same job.

use procman_cli::{join_words, parse_job_line};

/// Panics if `data` breaks an invariant.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_job_line(3, text) {
        Ok(Some(job)) => {
            assert_eq!(job.line, 3);
            assert!(!job.program.is_empty());
            assert!(!job.program.contains('\0'));
            assert!(job.args.iter().all(|a| !a.contains('\0')));
            assert!(job.env.keys().all(|k| !k.is_empty() && !k.contains('=')));
            let mut words = vec![job.program.clone()];
            words.extend(job.args.iter().cloned());
            let line = join_words(&words);
            let again = parse_job_line(3, &line).expect("re-quoted job parses");
            let again = again.expect("re-quoted job is not blank");
            assert_eq!((&again.program, &again.args), (&job.program, &job.args));
        }
        Ok(None) => {}
        Err(e) => {
            assert_eq!(e.line, 3);
            let _ = e.to_string();
        }
    }
}
