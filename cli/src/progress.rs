//! `--progress-pattern`: a job's progress read from its output lines without writing Rust.
//!
//! A pattern is text with placeholders: `{n}` (steps done), `{m}` (steps in all) and `{p}`
//! (a percentage, decimals allowed). `cycle {n} of {m}`, `{n}/{m}` and `{p}%` are the usual
//! forms; `auto` tries those three in that order. A line matches where the pattern's text
//! occurs in it (anywhere; letters compared without case; a blank in the pattern matches one or
//! more blanks), its numbers whole (not a piece of a longer number) and sensible: `n` at most
//! `m`, `m` above 0, `p` at most 100. A line that does not match is not progress (the job's
//! progress stays as it was). The progress message is the matched text.
//!
//! A hand-written matcher, not a regular expression: the forms are few, and the tool keeps
//! its dependencies few. It works on bytes (a line need not be UTF-8), looks at most at a
//! line's first [`MAX_LINE`] bytes, never panics, and costs at most a small multiple of the
//! line's length times the pattern's.

use std::fmt;

/// How much of a line is looked at.
pub const MAX_LINE: usize = 4096;
/// The longest message kept (the matched text, in characters).
const MAX_MESSAGE: usize = 80;
/// The longest number read (more digits: not a number this matcher takes).
const MAX_DIGITS: usize = 18;

/// One piece of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    /// Bytes to find as they are (ASCII letters without case).
    Text(Vec<u8>),
    /// One or more blanks (spaces, tabs).
    Blank,
    /// `{n}`, `{m}` or `{p}`.
    Number(Slot),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Done,
    Total,
    Percent,
}

/// A parsed `--progress-pattern`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgressPattern {
    /// One or more alternatives, tried in order (`auto` has three).
    forms: Vec<Vec<Piece>>,
}

/// Why a pattern is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

/// What a line told: steps done of a total, or a percentage, and the matched text.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// The fraction done, 0 to 1.
    pub fraction: f64,
    /// The matched text, lossily as UTF-8, blanks as spaces and without other control
    /// characters, at most 80 characters.
    pub message: String,
}

impl ProgressPattern {
    /// Reads a pattern. Errors: an unknown or unclosed placeholder, one given twice, none at
    /// all, `{n}` without `{m}` or the other way round, `{p}` with either, two placeholders
    /// with nothing between them.
    pub fn parse(pattern: &str) -> Result<ProgressPattern, PatternError> {
        if pattern.trim() == "auto" {
            let forms = ["{n} of {m}", "{n}/{m}", "{p}%"]
                .iter()
                .map(|p| form(p))
                .collect::<Result<_, _>>()?;
            return Ok(ProgressPattern { forms });
        }
        Ok(ProgressPattern {
            forms: vec![form(pattern)?],
        })
    }

    /// The first match in `line` (its first `MAX_LINE` (4096) bytes) of the first form that has
    /// one, when its numbers are sensible; `None` otherwise.
    pub fn find(&self, line: &[u8]) -> Option<Found> {
        let line = &line[..line.len().min(MAX_LINE)];
        self.forms.iter().find_map(|f| find_form(f, line))
    }
}

/// One form: its pieces, checked.
fn form(pattern: &str) -> Result<Vec<Piece>, PatternError> {
    let err = |m: &str| Err(PatternError(format!("{m} (in {pattern:?})")));
    let bytes = pattern.as_bytes();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'{' {
            let slot = match bytes.get(i + 1..i + 3) {
                Some(b"n}") => Slot::Done,
                Some(b"m}") => Slot::Total,
                Some(b"p}") => Slot::Percent,
                _ => return err("a placeholder is {n}, {m} or {p}"),
            };
            if pieces.contains(&Piece::Number(slot)) {
                return err("each placeholder at most once");
            }
            if matches!(pieces.last(), Some(Piece::Number(_))) {
                return err("two placeholders need text between them");
            }
            pieces.push(Piece::Number(slot));
            i += 3;
        } else if b == b' ' || b == b'\t' {
            if pieces.last() != Some(&Piece::Blank) {
                pieces.push(Piece::Blank);
            }
            i += 1;
        } else {
            match pieces.last_mut() {
                Some(Piece::Text(t)) => t.push(b),
                _ => pieces.push(Piece::Text(vec![b])),
            }
            i += 1;
        }
    }
    // Blanks at either end would only make matches depend on what surrounds them.
    while pieces.first() == Some(&Piece::Blank) {
        pieces.remove(0);
    }
    while pieces.last() == Some(&Piece::Blank) {
        pieces.pop();
    }
    let has = |s| pieces.contains(&Piece::Number(s));
    match (has(Slot::Done), has(Slot::Total), has(Slot::Percent)) {
        (true, true, false) | (false, false, true) => Ok(pieces),
        (false, false, false) => err("no placeholder: give {n} and {m}, or {p}"),
        (_, _, true) => err("{p} goes alone, without {n} or {m}"),
        _ => err("{n} and {m} go together"),
    }
}

/// Numbers read so far in one attempt.
#[derive(Default)]
struct Numbers {
    done: Option<u64>,
    total: Option<u64>,
    /// As a fraction.
    percent: Option<f64>,
}

/// The first sensible match of one form.
fn find_form(pieces: &[Piece], line: &[u8]) -> Option<Found> {
    (0..line.len()).find_map(|start| {
        // A number must not start inside another one.
        if matches!(pieces.first(), Some(Piece::Number(_)))
            && start > 0
            && is_number_byte(line[start - 1])
        {
            return None;
        }
        let mut nums = Numbers::default();
        let end = match_at(pieces, line, start, &mut nums)?;
        let fraction = match (nums.done, nums.total, nums.percent) {
            (Some(n), Some(m), _) if m > 0 && n <= m => n as f64 / m as f64,
            (_, _, Some(p)) => p,
            _ => return None,
        };
        Some(Found {
            fraction,
            message: message(&line[start..end]),
        })
    })
}

/// Matches the pieces at `start`; where the match ends.
fn match_at(pieces: &[Piece], line: &[u8], start: usize, nums: &mut Numbers) -> Option<usize> {
    let mut at = start;
    for piece in pieces {
        match piece {
            Piece::Text(t) => {
                let got = line.get(at..at.checked_add(t.len())?)?;
                if !got.eq_ignore_ascii_case(t) {
                    return None;
                }
                at += t.len();
            }
            Piece::Blank => {
                let n = line[at..]
                    .iter()
                    .take_while(|b| **b == b' ' || **b == b'\t')
                    .count();
                if n == 0 {
                    return None;
                }
                at += n;
            }
            Piece::Number(slot) => {
                let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                if digits == 0 || digits > MAX_DIGITS {
                    return None;
                }
                let whole = number(&line[at..at + digits])?;
                at += digits;
                match slot {
                    Slot::Done => nums.done = Some(whole),
                    Slot::Total => nums.total = Some(whole),
                    Slot::Percent => {
                        let (p, used) = percent(whole, &line[at..])?;
                        at += used;
                        nums.percent = Some(p);
                    }
                }
                // A number ends where its digits do: "12.5" is not {n} 12.
                if *slot != Slot::Percent && line.get(at).is_some_and(|b| is_number_byte(*b)) {
                    return None;
                }
            }
        }
    }
    Some(at)
}

/// A percentage's decimals after its whole part (`.5` of `42.5`), as a fraction of 1 and the
/// bytes used; `None` above 100 or when followed by more of a number.
fn percent(whole: u64, rest: &[u8]) -> Option<(f64, usize)> {
    let mut value = whole as f64;
    let mut used = 0;
    if rest.first() == Some(&b'.') {
        let decimals = rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if decimals > 0 && decimals <= MAX_DIGITS {
            value += number(&rest[1..1 + decimals])? as f64 / 10f64.powi(decimals as i32);
            used = 1 + decimals;
        }
    }
    if rest.get(used).is_some_and(|b| is_number_byte(*b)) || value > 100.0 {
        return None;
    }
    Some((value / 100.0, used))
}

fn is_number_byte(b: u8) -> bool {
    b.is_ascii_digit() || b == b'.'
}

/// ASCII digits as a number (at most [`MAX_DIGITS`] of them, so it fits).
fn number(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?
            .checked_add(u64::from(d.checked_sub(b'0')?))
    })
}

/// The matched text as a message.
fn message(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter_map(|c| match c {
            c if c.is_whitespace() => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .take(MAX_MESSAGE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn find(pattern: &str, line: &str) -> Option<(f64, String)> {
        let p = ProgressPattern::parse(pattern).unwrap();
        p.find(line.as_bytes()).map(|f| (f.fraction, f.message))
    }

    #[test]
    fn the_usual_forms_are_found_anywhere_in_a_line() {
        assert_eq!(
            find("cycle {n} of {m}", "refinement cycle 3 of 10"),
            Some((0.3, "cycle 3 of 10".into()))
        );
        assert_eq!(
            find("Cycle {n} OF {m}", "CYCLE  3\tof 12 done"),
            Some((0.25, "CYCLE  3 of 12".into()))
        );
        assert_eq!(
            find("{n}/{m}", "[ 7/28] building"),
            Some((0.25, "7/28".into()))
        );
        assert_eq!(
            find("{p}%", "downloaded 42.5% of it"),
            Some((0.425, "42.5%".into()))
        );
        assert_eq!(find("{p}%", "100%"), Some((1.0, "100%".into())));
        assert_eq!(find("{n} of {m}", "0 of 4"), Some((0.0, "0 of 4".into())));
        // auto: the three forms in order.
        assert_eq!(
            find("auto", "step 2 of 8, 50% of the way"),
            Some((0.25, "2 of 8".into()))
        );
        assert_eq!(find("auto", "item 3/4"), Some((0.75, "3/4".into())));
        assert_eq!(find("auto", "loading 10%"), Some((0.1, "10%".into())));
        // The first sensible match wins: "12/2024" is not (12 of 2024 would be, but 13/12 no).
        assert_eq!(
            find("{n}/{m}", "on 13/12 did 1/2"),
            Some((0.5, "1/2".into()))
        );
    }

    #[test]
    fn other_lines_are_not_progress() {
        for (pattern, line) in [
            ("cycle {n} of {m}", "R factor 0.3"),
            ("cycle {n} of {m}", "cycle 11 of 10"),
            ("cycle {n} of {m}", "cycle 0 of 0"),
            ("cycle {n} of {m}", "cycle x of 10"),
            ("cycle {n} of {m}", "cycle 3 of"),
            ("cycle {n} of {m}", "cycle 3.5 of 10"),
            ("cycle {n} of {m}", "cycle 3 of 10.5"),
            ("cycle {n} of {m}", "cycle 99999999999999999999 of 1"),
            ("{n}/{m}", "12.5/20"),
            ("{n}/{m}", "1/0"),
            ("{p}%", "101%"),
            ("{p}%", "50.5.1%"),
            ("{p}%", "% 50"),
            ("auto", "nothing here"),
            ("auto", ""),
        ] {
            assert_eq!(find(pattern, line), None, "{pattern:?} on {line:?}");
        }
        // A number does not start inside another: "2 of 3" is not in "12 of 3".
        assert_eq!(find("{n} of {m}", "12 of 3"), None);
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for (pattern, why) in [
            ("", "no placeholder"),
            ("cycle", "no placeholder"),
            ("{n}", "go together"),
            ("{m} left", "go together"),
            ("{n}/{m} {p}%", "alone"),
            ("{n}{m}", "text between"),
            ("{n} of {n}", "at most once"),
            ("{x} of {m}", "{n}, {m} or {p}"),
            ("{n} of {m", "{n}, {m} or {p}"),
            ("{", "{n}, {m} or {p}"),
        ] {
            let e = ProgressPattern::parse(pattern).unwrap_err();
            assert!(e.to_string().contains(why), "{pattern:?}: {e}");
        }
    }

    #[test]
    fn the_line_is_looked_at_up_to_its_limit_and_the_message_is_short_and_clean() {
        let mut long = "x".repeat(MAX_LINE);
        long.push_str(" 1 of 2");
        assert_eq!(find("{n} of {m}", &long), None);
        let p = ProgressPattern::parse("{n}/{m}").unwrap();
        let f = p.find(b"\xff\xfe 3/4").unwrap();
        assert_eq!(f.fraction, 0.75);
        let p = ProgressPattern::parse("step{n}\x07x/{m}").unwrap();
        let f = p.find(b"step1\x07x/2").unwrap();
        assert_eq!(f.message, "step1x/2");
    }

    proptest! {
        #[test]
        fn never_panics_and_fractions_stay_in_0_to_1(
            pattern in prop_oneof![
                Just("auto".to_owned()),
                Just("{n} of {m}".to_owned()),
                Just("{n}/{m}".to_owned()),
                Just("{p}%".to_owned()),
                "[{}nmp% /ofa0-9]{0,12}",
            ],
            // Bytes biased towards what the forms are made of, so that lines match too.
            line in proptest::collection::vec(
                prop_oneof![
                    Just(b'1'), Just(b'9'), Just(b'0'), Just(b'/'), Just(b' '), Just(b'.'),
                    Just(b'%'), Just(b'o'), Just(b'f'), any::<u8>(),
                ],
                0..200,
            ),
        ) {
            if let Ok(p) = ProgressPattern::parse(&pattern) {
                if let Some(f) = p.find(&line) {
                    prop_assert!((0.0..=1.0).contains(&f.fraction));
                    prop_assert!(f.message.chars().count() <= MAX_MESSAGE);
                }
            }
        }

        #[test]
        fn n_of_m_is_read_back(n in 0u64..1_000_000, extra in 0u64..1_000_000, pre in "[a-z ]{0,10}") {
            let m = n + extra + 1;
            let line = format!("{pre} {n} of {m} tail");
            let f = ProgressPattern::parse("{n} of {m}").unwrap().find(line.as_bytes()).unwrap();
            prop_assert_eq!(f.fraction, n as f64 / m as f64);
            prop_assert_eq!(f.message, format!("{n} of {m}"));
        }
    }
}
