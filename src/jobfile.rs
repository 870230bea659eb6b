//! Parsers for the `procman` command-line tool: job files, shell-style word
//! splitting, `timeout`-style durations and GNU parallel's `--joblog` format.
//!
//! Everything here is a pure function over text: nothing spawns a process and
//! nothing depends on the job engine. No function in this module panics,
//! whatever its input; each operation has its own small error type
//! implementing [`std::fmt::Display`] and [`std::error::Error`].
//!
//! Text comes in as `&str`. Byte input (a job file, a joblog) is decoded one
//! line at a time by [`lines`], which reports the line number of an invalid
//! UTF-8 line instead of failing the whole file.
//!
//! # Job files
//!
//! One job per line; see [`parse_job_line`]. Blank lines and lines whose first
//! non-blank character is `#` are skipped. A line whose first non-blank
//! character is `{` is a JSON object; any other line is a command in shell
//! words ([`split_words`]): the first word is the program, the rest its
//! arguments. No shell is ever run.
//!
//! ```
//! use procman::jobfile::parse_job_line;
//!
//! let job = parse_job_line(1, r#"refmac5 HKLIN "in put.mtz" # comment"#).unwrap().unwrap();
//! assert_eq!(job.program, "refmac5");
//! assert_eq!(job.args, ["HKLIN", "in put.mtz"]);
//!
//! let job = parse_job_line(2, r#"{"program": "sleep", "args": ["5"], "timeout": "2.5s"}"#)
//!     .unwrap()
//!     .unwrap();
//! assert_eq!(job.timeout, Some(std::time::Duration::from_millis(2500)));
//!
//! assert!(parse_job_line(3, "   # only a comment").unwrap().is_none());
//! ```

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::io::{self, BufRead};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

// ---------------------------------------------------------------------------
// Shell words
// ---------------------------------------------------------------------------

/// Why [`split_words`] rejected its input.
///
/// Columns are 1-based and count characters (Unicode scalar values), not
/// bytes, from the start of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitError {
    /// A `'` that is never closed; `column` is that of the opening quote.
    UnterminatedSingleQuote {
        /// Column of the opening `'`.
        column: usize,
    },
    /// A `"` that is never closed; `column` is that of the opening quote.
    UnterminatedDoubleQuote {
        /// Column of the opening `"`.
        column: usize,
    },
    /// A `\` outside quotes at the very end of the input, with nothing to escape.
    TrailingBackslash {
        /// Column of the backslash.
        column: usize,
    },
    /// An unquoted shell operator (`|`, `&`, `;`, `<`, `>`, `(`, `)`).
    ///
    /// No shell runs the command, so a pipe or redirection would silently
    /// become a literal argument; it is rejected instead. Quote it to pass it
    /// as an argument, or run `sh -c '...'` explicitly.
    UnquotedOperator {
        /// The operator character.
        operator: char,
        /// Its column.
        column: usize,
    },
    /// A line that is not UTF-8 holds a character [`split_words_bytes`] reserves (see there).
    Unrepresentable {
        /// Its column.
        column: usize,
    },
}

impl SplitError {
    /// The 1-based column (in characters) where the problem is.
    pub fn column(&self) -> usize {
        match *self {
            SplitError::UnterminatedSingleQuote { column }
            | SplitError::UnterminatedDoubleQuote { column }
            | SplitError::TrailingBackslash { column }
            | SplitError::UnquotedOperator { column, .. }
            | SplitError::Unrepresentable { column } => column,
        }
    }
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SplitError::UnterminatedSingleQuote { column } => {
                write!(f, "unterminated single quote opened at column {column}")
            }
            SplitError::UnterminatedDoubleQuote { column } => {
                write!(f, "unterminated double quote opened at column {column}")
            }
            SplitError::TrailingBackslash { column } => {
                write!(
                    f,
                    "backslash at end of line (column {column}) escapes nothing"
                )
            }
            SplitError::Unrepresentable { column } => write!(
                f,
                "a line that is not UTF-8 cannot hold the private-use character at column \
                 {column} (U+10FF00..U+10FFFF)"
            ),
            SplitError::UnquotedOperator { operator, column } => write!(
                f,
                "unquoted '{operator}' at column {column}: commands are not run by a shell, \
                 so pipes, redirections and ';' are not supported (quote it to pass it as an \
                 argument, or use sh -c '...')"
            ),
        }
    }
}

impl Error for SplitError {}

/// Characters that separate words outside quotes.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Characters that a shell would treat as control or redirection operators.
fn is_operator(c: char) -> bool {
    matches!(c, '|' | '&' | ';' | '<' | '>' | '(' | ')')
}

/// Splits a command line into words with POSIX shell quoting rules, without
/// any expansion.
///
/// * Spaces, tabs, newlines and carriage returns outside quotes separate words.
/// * `'...'`: everything up to the next `'` is literal (a `'` cannot appear
///   inside; write `'\''`).
/// * `"..."`: literal except that a backslash escapes `\`, `"`, `$` and `` ` ``,
///   and backslash-newline is removed; before any other character the
///   backslash is kept (`"a\b"` is `a\b`).
/// * A backslash outside quotes makes the next character literal;
///   backslash-newline is a line continuation and is removed.
/// * Adjacent quoted and unquoted parts join into one word (`a'b'"c"` is
///   `abc`); empty quotes make an empty word (`''` gives `[""]`).
/// * A `#` at the start of a word begins a comment that runs to the end of
///   the line (`a#b` is one word, `a #b` is `[a]`).
/// * Nothing is expanded: `$HOME`, `` `cmd` ``, `~`, `*` and `{a,b}` are
///   passed literally.
/// * Unquoted `|`, `&`, `;`, `<`, `>`, `(`, `)` are rejected
///   ([`SplitError::UnquotedOperator`]) since no shell interprets them.
///
/// ```
/// use procman::jobfile::split_words;
/// assert_eq!(split_words(r#"a 'b c' "d\"e" f\ g ''"#).unwrap(), ["a", "b c", "d\"e", "f g", ""]);
/// assert_eq!(split_words("echo $HOME # comment").unwrap(), ["echo", "$HOME"]);
/// assert_eq!(split_words("echo 'oops").unwrap_err().column(), 6);
/// ```
pub fn split_words(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    // True once the current word has begun (even if it is still empty, as
    // after `''`).
    let mut in_word = false;
    let mut chars = line.chars().zip(1usize..);

    while let Some((c, column)) = chars.next() {
        match c {
            c if is_separator(c) => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '#' if !in_word => {
                // Comment up to the end of the line; a newline ends it.
                for (c, _) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '\\' => match chars.next() {
                None => return Err(SplitError::TrailingBackslash { column }),
                Some(('\n', _)) => {} // line continuation
                Some((next, _)) => {
                    cur.push(next);
                    in_word = true;
                }
            },
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(SplitError::UnterminatedSingleQuote { column }),
                        Some(('\'', _)) => break,
                        Some((c, _)) => cur.push(c),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(SplitError::UnterminatedDoubleQuote { column }),
                        Some(('"', _)) => break,
                        Some(('\\', _)) => match chars.next() {
                            None => return Err(SplitError::UnterminatedDoubleQuote { column }),
                            Some(('\n', _)) => {}
                            Some((e @ ('\\' | '"' | '$' | '`'), _)) => cur.push(e),
                            Some((e, _)) => {
                                cur.push('\\');
                                cur.push(e);
                            }
                        },
                        Some((c, _)) => cur.push(c),
                    }
                }
            }
            c if is_operator(c) => {
                return Err(SplitError::UnquotedOperator {
                    operator: c,
                    column,
                })
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The first of the 256 characters that stand for the bytes of invalid UTF-8 while
/// [`split_words_bytes`] splits (the last 256 code points of plane 16, private use).
const BYTE_STANDIN: u32 = 0x10_FF00;

/// [`split_words`] over bytes: a job line that is not UTF-8 (file names in Latin-1, say) is
/// split by the same rules, and its words keep their bytes exactly.
///
/// Each byte of an invalid UTF-8 sequence is an ordinary word character (it is never a quote,
/// separator or operator, which are all ASCII). Columns in errors count characters of the
/// valid parts and one per invalid byte. For UTF-8 input the result is exactly
/// [`split_words`]'s.
///
/// # Errors
/// As [`split_words`]; also [`SplitError::Unrepresentable`] for the (contrived) line that is
/// not UTF-8 *and* holds one of the 256 private-use characters U+10FF00..=U+10FFFF, which this
/// function uses internally to stand for the invalid bytes.
///
/// ```
/// use procman::jobfile::split_words_bytes;
/// use std::os::unix::ffi::OsStrExt;
/// let words = split_words_bytes(b"cat 'caf\xe9 menu.txt'").unwrap();
/// assert_eq!(words[1].as_bytes(), b"caf\xe9 menu.txt");
/// ```
pub fn split_words_bytes(line: &[u8]) -> Result<Vec<std::ffi::OsString>, SplitError> {
    use std::os::unix::ffi::OsStringExt;
    if let Ok(text) = std::str::from_utf8(line) {
        return split_words(text)
            .map(|words| words.into_iter().map(std::ffi::OsString::from).collect());
    }
    let standin = |c: char| (BYTE_STANDIN..=BYTE_STANDIN + 0xFF).contains(&(c as u32));
    let mut text = String::with_capacity(line.len() * 2);
    let mut rest = line;
    while !rest.is_empty() {
        let (valid, invalid, next) = match std::str::from_utf8(rest) {
            Ok(v) => (v, &[][..], &[][..]),
            Err(e) => {
                let (v, tail) = rest.split_at(e.valid_up_to());
                let bad = e.error_len().unwrap_or(tail.len());
                // The prefix was just checked to be valid UTF-8.
                let v = std::str::from_utf8(v).unwrap_or_default();
                (v, &tail[..bad], &tail[bad..])
            }
        };
        if let Some(c) = valid.chars().find(|&c| standin(c)) {
            return Err(SplitError::Unrepresentable {
                column: text.chars().count() + valid.chars().take_while(|&d| d != c).count() + 1,
            });
        }
        text.push_str(valid);
        for &b in invalid {
            // In range: BYTE_STANDIN + 0..=255 are valid chars (plane 16).
            text.push(char::from_u32(BYTE_STANDIN + u32::from(b)).unwrap_or('\u{FFFD}'));
        }
        rest = next;
    }
    let words = split_words(&text)?;
    Ok(words
        .into_iter()
        .map(|w| {
            let mut bytes = Vec::with_capacity(w.len());
            for c in w.chars() {
                if standin(c) {
                    bytes.push((c as u32 - BYTE_STANDIN) as u8);
                } else {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            std::ffi::OsString::from_vec(bytes)
        })
        .collect())
}

/// Characters that never need quoting, for [`split_words`] or a POSIX shell.
fn is_safe_unquoted(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '_' | '-' | '.' | '/' | ',' | ':' | '@' | '%' | '+' | '=')
}

/// Quotes one word so that [`split_words`] (and a POSIX shell) reads it back
/// as exactly that word.
///
/// Words made only of ASCII letters, digits and `_-./,:@%+=` are returned as
/// they are; anything else, including the empty word, is put in single quotes
/// with each `'` written as `'\''`. For every string `w`,
/// `split_words(&quote_word(w)) == Ok(vec![w])`.
///
/// ```
/// use procman::jobfile::quote_word;
/// assert_eq!(quote_word("plain-word.txt"), "plain-word.txt");
/// assert_eq!(quote_word(""), "''");
/// assert_eq!(quote_word("it's"), r"'it'\''s'");
/// ```
pub fn quote_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(is_safe_unquoted) {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str(r"'\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes each word with [`quote_word`] and joins them with single spaces:
/// the inverse of [`split_words`].
pub fn join_words<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for (i, w) in words.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&quote_word(w.as_ref()));
    }
    out
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// Why [`parse_duration`] rejected its input. Each variant carries the
/// offending input (trimmed) for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// The input was empty or only whitespace.
    Empty,
    /// The number was negative.
    Negative(String),
    /// The number was NaN or infinite.
    NotFinite(String),
    /// The number part was not a plain decimal number.
    BadNumber(String),
    /// The suffix was not one of `s`, `m`, `h`, `d`, `ms`.
    BadSuffix {
        /// The whole input.
        input: String,
        /// The unrecognised suffix.
        suffix: String,
    },
    /// The duration does not fit in a [`Duration`].
    Overflow(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const EXPECTED: &str =
            "expected a non-negative decimal number with an optional suffix s, m, h, d or ms";
        match self {
            DurationError::Empty => write!(f, "empty duration: {EXPECTED}"),
            DurationError::Negative(s) => write!(f, "negative duration {s:?}: {EXPECTED}"),
            DurationError::NotFinite(s) => write!(f, "duration {s:?} is not a finite number"),
            DurationError::BadNumber(s) => write!(f, "invalid duration {s:?}: {EXPECTED}"),
            DurationError::BadSuffix { input, suffix } if is_exponent(suffix) => write!(
                f,
                "invalid duration {input:?}: exponents ({suffix:?}) are not accepted; write the \
                 number out, with an optional suffix s, m, h, d or ms"
            ),
            DurationError::BadSuffix { input, suffix } => write!(
                f,
                "invalid duration {input:?}: unknown suffix {suffix:?} (use s, m, h, d or ms)"
            ),
            DurationError::Overflow(s) => write!(f, "duration {s:?} is too large ({LARGEST})"),
        }
    }
}

impl Error for DurationError {}

/// What the messages say about the largest duration.
const LARGEST: &str = "at most 18446744073709551615.999999999 seconds, about 585 billion years";

/// `e3`, `E+6`, `e-2`, `e99s`: what an exponent looks like after the number.
fn is_exponent(suffix: &str) -> bool {
    let mut rest = suffix.chars();
    matches!(rest.next(), Some('e' | 'E'))
        && rest
            .as_str()
            .trim_start_matches(['+', '-'])
            .starts_with(|c: char| c.is_ascii_digit())
}

const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Fractional digits beyond this many are only used to round up.
const MAX_FRACTION_DIGITS: usize = 24;

/// Parses a duration the way coreutils `timeout` does: a non-negative decimal
/// number, fractions allowed, with an optional unit suffix `s` (seconds, the
/// default), `m` (minutes), `h` (hours), `d` (days) or `ms` (milliseconds).
///
/// Surrounding whitespace is ignored and a leading `+` is allowed. `0` is
/// valid (what it means is up to the caller). The value is computed exactly in
/// decimal and rounded *up* to a whole nanosecond, so a positive input never
/// becomes zero. Rejected, each with its own [`DurationError`]: empty input,
/// negative numbers (including `-0`), `nan`/`inf`, exponents (`1e3`), other
/// suffixes (`S`, `sec`, `1h30m`), and durations beyond [`Duration::MAX`]
/// (`99999999999999999999d`). Every duration up to `Duration::MAX` is accepted:
/// as a timeout or grace period, one too long for the clock means no limit
/// (DESIGN.md, "The deadline rule").
///
/// ```
/// use procman::jobfile::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
/// assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("-1").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let input = s.trim();
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let owned = || input.to_owned();
    let body = if let Some(rest) = input.strip_prefix('-') {
        // "-" followed by anything number-like is a negative; "-x" is garbage.
        if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
            return Err(DurationError::Negative(owned()));
        }
        return Err(DurationError::BadNumber(owned()));
    } else {
        input.strip_prefix('+').unwrap_or(input)
    };
    let lower = body.to_ascii_lowercase();
    if lower.starts_with("inf") || lower.starts_with("nan") {
        return Err(DurationError::NotFinite(owned()));
    }

    let number_len = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_len);
    let (int_digits, frac_digits) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if frac_digits.contains('.') || (int_digits.is_empty() && frac_digits.is_empty()) {
        return Err(DurationError::BadNumber(owned()));
    }
    let unit_nanos: u128 = match suffix {
        "" | "s" => NANOS_PER_SEC,
        "ms" => 1_000_000,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        _ => {
            return Err(DurationError::BadSuffix {
                input: owned(),
                suffix: suffix.to_owned(),
            })
        }
    };

    // Integer part, exactly (an over-long one overflows below anyway).
    let int_digits = int_digits.trim_start_matches('0');
    if int_digits.len() > 30 {
        return Err(DurationError::Overflow(owned()));
    }
    let mut int_value: u128 = 0;
    for d in int_digits.bytes() {
        int_value = int_value * 10 + u128::from(d - b'0');
    }
    let int_nanos = int_value
        .checked_mul(unit_nanos)
        .ok_or_else(|| DurationError::Overflow(owned()))?;

    // Fraction: the first MAX_FRACTION_DIGITS digits exactly, the rest only
    // to decide whether to round up.
    let (head, tail) = frac_digits.split_at(frac_digits.len().min(MAX_FRACTION_DIGITS));
    let mut frac_value: u128 = 0;
    let mut scale: u128 = 1;
    for d in head.bytes() {
        frac_value = frac_value * 10 + u128::from(d - b'0');
        scale *= 10;
    }
    // frac_value < 10^24 and unit_nanos < 10^14: the product fits in u128.
    let scaled = frac_value * unit_nanos;
    let mut frac_nanos = scaled / scale;
    if scaled % scale != 0 || tail.bytes().any(|d| d != b'0') {
        frac_nanos += 1;
    }

    let total = int_nanos
        .checked_add(frac_nanos)
        .ok_or_else(|| DurationError::Overflow(owned()))?;
    let secs =
        u64::try_from(total / NANOS_PER_SEC).map_err(|_| DurationError::Overflow(owned()))?;
    // The remainder is below 10^9 and fits in u32.
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

// ---------------------------------------------------------------------------
// Job lines
// ---------------------------------------------------------------------------

/// One job read from a job file.
///
/// Fields the line does not give are `None` (or empty, for the collections,
/// where "absent" and "empty" mean the same).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchJob {
    /// The 1-based line of the job file this job came from.
    pub line: usize,
    /// The job's name (JSON `id` or `name`), which other jobs use in `after`.
    pub name: Option<String>,
    /// The program to run: a path, or a name looked up in `PATH`. Never empty.
    pub program: String,
    /// The program's arguments, not including the program itself.
    pub args: Vec<String>,
    /// File to connect to the job's standard input.
    pub input: Option<PathBuf>,
    /// File that receives the job's standard output.
    pub log: Option<PathBuf>,
    /// File that receives the job's standard error.
    pub err: Option<PathBuf>,
    /// Working directory of the job.
    pub cwd: Option<PathBuf>,
    /// Environment variables to set for the job (on top of the inherited ones).
    pub env: BTreeMap<String, String>,
    /// Time limit for one run of the job.
    pub timeout: Option<Duration>,
    /// Scheduling priority: higher runs first among ready jobs.
    pub priority: Option<i32>,
    /// Names of jobs that must finish before this one starts.
    pub after: Vec<String>,
    /// How many times to rerun the job if it fails.
    pub retries: Option<u32>,
}

/// What was wrong with a job line; see [`JobLineError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobLineErrorKind {
    /// The shell-words line could not be split.
    Words(SplitError),
    /// The line starts with `{` but is not valid JSON (serde_json's message).
    Json(String),
    /// The required field `program` is missing.
    MissingProgram,
    /// A field the job format does not know.
    UnknownField(String),
    /// A field (or array element, or env entry) has the wrong JSON type.
    WrongType {
        /// The field, e.g. `args[2]` or `env.PATH`.
        field: String,
        /// What the field must be.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
    /// A field that must not be empty is empty (program, a path, a name).
    Empty(String),
    /// A string contains a NUL character, which no program argument, path or
    /// environment entry can hold.
    Nul(String),
    /// An environment variable name is empty or contains `=`.
    BadEnvName(String),
    /// A number is out of range for its field (or is not an integer).
    OutOfRange {
        /// The field.
        field: String,
        /// The number as written.
        value: String,
    },
    /// The `timeout` string is not a valid duration.
    Timeout(DurationError),
    /// The `timeout` number of seconds is negative, not finite or too large.
    TimeoutSeconds(String),
    /// Both `id` and `name` are given.
    IdAndName,
}

/// A job line that could not be parsed: the line number and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLineError {
    /// The line number passed to [`parse_job_line`].
    pub line: usize,
    /// The problem.
    pub kind: JobLineErrorKind,
}

impl fmt::Display for JobLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            JobLineErrorKind::Words(e) => write!(f, "{e}"),
            JobLineErrorKind::Json(m) => write!(f, "invalid JSON job: {m}"),
            JobLineErrorKind::MissingProgram => {
                write!(f, "JSON job has no \"program\" field")
            }
            JobLineErrorKind::UnknownField(name) => write!(
                f,
                "unknown field {name:?} in JSON job (known: {})",
                KNOWN_FIELDS.join(", ")
            ),
            JobLineErrorKind::WrongType {
                field,
                expected,
                found,
            } => write!(f, "\"{field}\" must be {expected}, found {found}"),
            JobLineErrorKind::Empty(field) => write!(f, "\"{field}\" must not be empty"),
            JobLineErrorKind::Nul(field) => {
                write!(f, "\"{field}\" contains a NUL character")
            }
            JobLineErrorKind::BadEnvName(name) => write!(
                f,
                "invalid environment variable name {name:?} (must be non-empty, without '=')"
            ),
            JobLineErrorKind::OutOfRange { field, value } => {
                write!(f, "\"{field}\" value {value} is out of range")
            }
            JobLineErrorKind::Timeout(e) => write!(f, "\"timeout\": {e}"),
            JobLineErrorKind::TimeoutSeconds(v) => write!(
                f,
                "\"timeout\" of {v} seconds is invalid (must be a non-negative number of seconds, \
                 {LARGEST})"
            ),
            JobLineErrorKind::IdAndName => {
                write!(f, "give either \"id\" or \"name\", not both")
            }
        }
    }
}

impl Error for JobLineError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            JobLineErrorKind::Words(e) => Some(e),
            JobLineErrorKind::Timeout(e) => Some(e),
            _ => None,
        }
    }
}

const KNOWN_FIELDS: &[&str] = &[
    "program", "args", "input", "log", "err", "cwd", "env", "timeout", "priority", "after", "id",
    "name", "retries",
];

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses one line of a job file.
///
/// `line_no` is only used in errors and in [`BatchJob::line`]. The line should
/// not contain its newline (a trailing `\n` or `\r\n` is harmless, though).
///
/// * Blank lines and lines whose first non-blank character is `#` give
///   `Ok(None)`.
/// * A line whose first non-blank character is `{` is one JSON object with
///   the fields `program` (string, required), `args` (array of strings),
///   `input`, `log`, `err`, `cwd` (non-empty path strings), `env` (object of
///   strings), `timeout` (a [`parse_duration`] string, or a number of
///   seconds), `priority` (integer, `i32`), `after` (array of job names),
///   `id` or `name` (string), `retries` (non-negative integer, `u32`).
///   `null` counts as absent. Unknown fields are errors, so typos are caught.
/// * Any other line is shell words ([`split_words`]): the first word is the
///   program and the rest are its arguments.
///
/// Strings holding a NUL character are rejected, as no process could receive
/// them.
pub fn parse_job_line(line_no: usize, line: &str) -> Result<Option<BatchJob>, JobLineError> {
    let err = |kind| JobLineError {
        line: line_no,
        kind,
    };
    let trimmed = line.trim_start_matches(is_separator);
    if trimmed.starts_with('{') {
        return parse_json_job(trimmed)
            .map(|mut job| {
                job.line = line_no;
                Some(job)
            })
            .map_err(err);
    }
    let mut words = split_words(line)
        .map_err(|e| err(JobLineErrorKind::Words(e)))?
        .into_iter();
    let Some(program) = words.next() else {
        return Ok(None);
    };
    let job = BatchJob {
        line: line_no,
        program,
        args: words.collect(),
        ..BatchJob::default()
    };
    check_nonempty_no_nul("program", &job.program).map_err(err)?;
    for (i, a) in job.args.iter().enumerate() {
        if a.contains('\0') {
            return Err(err(JobLineErrorKind::Nul(format!("args[{i}]"))));
        }
    }
    Ok(Some(job))
}

fn check_nonempty_no_nul(field: &str, s: &str) -> Result<(), JobLineErrorKind> {
    if s.is_empty() {
        Err(JobLineErrorKind::Empty(field.to_owned()))
    } else if s.contains('\0') {
        Err(JobLineErrorKind::Nul(field.to_owned()))
    } else {
        Ok(())
    }
}

fn want_string(field: &str, v: Value) -> Result<String, JobLineErrorKind> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(JobLineErrorKind::WrongType {
            field: field.to_owned(),
            expected: "a string",
            found: json_type(&other),
        }),
    }
}

/// A non-empty string without NUL.
fn want_name(field: &str, v: Value) -> Result<String, JobLineErrorKind> {
    let s = want_string(field, v)?;
    check_nonempty_no_nul(field, &s)?;
    Ok(s)
}

fn want_path(field: &str, v: Value) -> Result<PathBuf, JobLineErrorKind> {
    want_name(field, v).map(PathBuf::from)
}

fn want_string_array(
    field: &str,
    v: Value,
    element_expected: &'static str,
    nonempty: bool,
) -> Result<Vec<String>, JobLineErrorKind> {
    let Value::Array(items) = v else {
        return Err(JobLineErrorKind::WrongType {
            field: field.to_owned(),
            expected: "an array of strings",
            found: json_type(&v),
        });
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let name = format!("{field}[{i}]");
        let Value::String(s) = item else {
            return Err(JobLineErrorKind::WrongType {
                field: name,
                expected: element_expected,
                found: json_type(&item),
            });
        };
        if nonempty && s.is_empty() {
            return Err(JobLineErrorKind::Empty(name));
        }
        if s.contains('\0') {
            return Err(JobLineErrorKind::Nul(name));
        }
        out.push(s);
    }
    Ok(out)
}

fn want_env(v: Value) -> Result<BTreeMap<String, String>, JobLineErrorKind> {
    let Value::Object(map) = v else {
        return Err(JobLineErrorKind::WrongType {
            field: "env".to_owned(),
            expected: "an object of strings",
            found: json_type(&v),
        });
    };
    let mut env = BTreeMap::new();
    for (name, value) in map {
        if name.is_empty() || name.contains('=') {
            return Err(JobLineErrorKind::BadEnvName(name));
        }
        let field = format!("env.{name}");
        if name.contains('\0') {
            return Err(JobLineErrorKind::Nul(field));
        }
        let value = want_string(&field, value)?;
        if value.contains('\0') {
            return Err(JobLineErrorKind::Nul(field));
        }
        env.insert(name, value);
    }
    Ok(env)
}

fn want_integer<T: TryFrom<i64> + TryFrom<u64>>(
    field: &str,
    v: Value,
    expected: &'static str,
) -> Result<T, JobLineErrorKind> {
    let Value::Number(n) = v else {
        return Err(JobLineErrorKind::WrongType {
            field: field.to_owned(),
            expected,
            found: json_type(&v),
        });
    };
    let out_of_range = || JobLineErrorKind::OutOfRange {
        field: field.to_owned(),
        value: n.to_string(),
    };
    if let Some(u) = n.as_u64() {
        T::try_from(u).map_err(|_| out_of_range())
    } else if let Some(i) = n.as_i64() {
        T::try_from(i).map_err(|_| out_of_range())
    } else {
        // A float: 3.0 or 1e3 are still rejected, to keep the format simple.
        Err(JobLineErrorKind::WrongType {
            field: field.to_owned(),
            expected,
            found: "a non-integer number",
        })
    }
}

fn want_timeout(v: Value) -> Result<Duration, JobLineErrorKind> {
    match v {
        Value::String(s) => parse_duration(&s).map_err(JobLineErrorKind::Timeout),
        Value::Number(n) => {
            let invalid = || JobLineErrorKind::TimeoutSeconds(n.to_string());
            if let Some(u) = n.as_u64() {
                Ok(Duration::from_secs(u))
            } else {
                let secs = n.as_f64().ok_or_else(invalid)?;
                Duration::try_from_secs_f64(secs).map_err(|_| invalid())
            }
        }
        other => Err(JobLineErrorKind::WrongType {
            field: "timeout".to_owned(),
            expected: "a duration string or a number of seconds",
            found: json_type(&other),
        }),
    }
}

fn parse_json_job(text: &str) -> Result<BatchJob, JobLineErrorKind> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| JobLineErrorKind::Json(e.to_string()))?;
    let map: Map<String, Value> = match value {
        Value::Object(map) => map,
        // A text starting with '{' that parses is an object; kept for safety.
        other => {
            return Err(JobLineErrorKind::WrongType {
                field: "job".to_owned(),
                expected: "an object",
                found: json_type(&other),
            })
        }
    };
    let mut job = BatchJob::default();
    let mut program = None;
    let mut seen_id = false;
    for (key, value) in map {
        if value.is_null() {
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                return Err(JobLineErrorKind::UnknownField(key));
            }
            continue;
        }
        match key.as_str() {
            "program" => program = Some(want_name("program", value)?),
            "args" => job.args = want_string_array("args", value, "a string", false)?,
            "input" => job.input = Some(want_path("input", value)?),
            "log" => job.log = Some(want_path("log", value)?),
            "err" => job.err = Some(want_path("err", value)?),
            "cwd" => job.cwd = Some(want_path("cwd", value)?),
            "env" => job.env = want_env(value)?,
            "timeout" => job.timeout = Some(want_timeout(value)?),
            "priority" => job.priority = Some(want_integer("priority", value, "an integer")?),
            "after" => {
                job.after = want_string_array("after", value, "a string (a job name)", true)?
            }
            "id" | "name" => {
                if seen_id {
                    return Err(JobLineErrorKind::IdAndName);
                }
                seen_id = true;
                job.name = Some(want_name(&key, value)?);
            }
            "retries" => {
                job.retries = Some(want_integer("retries", value, "a non-negative integer")?)
            }
            _ => return Err(JobLineErrorKind::UnknownField(key)),
        }
    }
    job.program = program.ok_or(JobLineErrorKind::MissingProgram)?;
    Ok(job)
}

// ---------------------------------------------------------------------------
// Reading lines
// ---------------------------------------------------------------------------

/// Why [`lines`] could not produce a line.
#[derive(Debug)]
pub enum LineErrorKind {
    /// Reading failed.
    Io(io::Error),
    /// The line is not valid UTF-8.
    NotUtf8 {
        /// 1-based byte offset in the line of the first invalid byte.
        byte: usize,
    },
}

/// An error from [`lines`]: the 1-based line number and what went wrong.
#[derive(Debug)]
pub struct LineError {
    /// The line number (for an I/O error, the line that was being read).
    pub line: usize,
    /// The problem.
    pub kind: LineErrorKind,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            LineErrorKind::Io(e) => write!(f, "line {}: read error: {e}", self.line),
            LineErrorKind::NotUtf8 { byte } => write!(
                f,
                "line {}: not valid UTF-8 (invalid byte at byte {byte})",
                self.line
            ),
        }
    }
}

impl Error for LineError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.kind {
            LineErrorKind::Io(e) => Some(e),
            LineErrorKind::NotUtf8 { .. } => None,
        }
    }
}

/// Iterator over the numbered lines of a reader; see [`lines`].
#[derive(Debug)]
pub struct Lines<R> {
    reader: R,
    line_no: usize,
    buf: Vec<u8>,
    done: bool,
}

/// Reads `reader` line by line, yielding `(line_number, text)` with 1-based
/// line numbers and the `\n` or `\r\n` ending removed (a UTF-8 byte order mark
/// at the start of line 1 is removed too).
///
/// A line that is not UTF-8 gives an error naming it, and reading goes on with
/// the next line; an I/O error ends the iteration. Lines are read as bytes, so
/// a file of any size is fine but one line is held in memory at a time.
pub fn lines<R: BufRead>(reader: R) -> Lines<R> {
    Lines {
        reader,
        line_no: 0,
        buf: Vec::new(),
        done: false,
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = Result<(usize, String), LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        self.buf.clear();
        self.line_no += 1;
        match self.reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => {
                self.done = true;
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                self.done = true;
                return Some(Err(LineError {
                    line: self.line_no,
                    kind: LineErrorKind::Io(e),
                }));
            }
        }
        let mut bytes = &self.buf[..];
        if let Some(rest) = bytes.strip_suffix(b"\n") {
            bytes = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        if self.line_no == 1 {
            bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
        }
        Some(match std::str::from_utf8(bytes) {
            Ok(s) => Ok((self.line_no, s.to_owned())),
            Err(e) => Err(LineError {
                line: self.line_no,
                kind: LineErrorKind::NotUtf8 {
                    byte: e.valid_up_to() + 1,
                },
            }),
        })
    }
}

/// Why [`parse_job_file`] failed.
#[derive(Debug)]
pub enum JobFileError {
    /// A line could not be read or decoded.
    Read(LineError),
    /// A line could not be parsed.
    Line(JobLineError),
}

impl fmt::Display for JobFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobFileError::Read(e) => e.fmt(f),
            JobFileError::Line(e) => e.fmt(f),
        }
    }
}

impl Error for JobFileError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            JobFileError::Read(e) => Some(e),
            JobFileError::Line(e) => Some(e),
        }
    }
}

/// Reads a whole job file with [`lines`] and [`parse_job_line`], stopping at
/// the first error.
///
/// Only the lines are checked: duplicate names and `after` references to
/// unknown jobs are for the caller to check.
pub fn parse_job_file<R: BufRead>(reader: R) -> Result<Vec<BatchJob>, JobFileError> {
    let mut jobs = Vec::new();
    for item in lines(reader) {
        let (n, text) = item.map_err(JobFileError::Read)?;
        if let Some(job) = parse_job_line(n, &text).map_err(JobFileError::Line)? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

// ---------------------------------------------------------------------------
// GNU parallel joblog
// ---------------------------------------------------------------------------

/// One line of a GNU parallel `--joblog` file.
///
/// The format (GNU parallel's `print_joblog`) is nine tab-separated fields:
/// `Seq`, `Host` (`:` for the local machine), `Starttime` (epoch seconds,
/// `%.3f`), `JobRuntime` (seconds, `%10.3f`: right-aligned in ten
/// characters), `Send` and `Receive` (bytes transferred, 0 locally),
/// `Exitval`, `Signal`, and `Command`, which is the rest of the line and may
/// contain tabs; newlines in it are written as NUL characters.
#[derive(Debug, Clone, PartialEq)]
pub struct JoblogEntry {
    /// Job sequence number (1-based, in input order).
    pub seq: u64,
    /// Host the job ran on; [`JoblogEntry::LOCAL_HOST`] for this machine.
    pub host: String,
    /// Start time, seconds since the Unix epoch.
    pub start_time: f64,
    /// Run time in seconds.
    pub runtime: f64,
    /// Bytes sent to the host (0 for local jobs).
    pub send: u64,
    /// Bytes received from the host (0 for local jobs).
    pub receive: u64,
    /// Exit status (GNU parallel writes -1 for a job it killed on timeout).
    pub exitval: i32,
    /// Number of the signal that killed the job, 0 if none.
    pub signal: i32,
    /// The command line as run.
    pub command: String,
}

/// Why [`parse_joblog_line`] rejected a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoblogError {
    /// The line is the header line ([`JoblogEntry::HEADER`]); readers skip it.
    Header,
    /// Fewer than nine tab-separated fields.
    TooFewFields {
        /// How many fields there were.
        found: usize,
    },
    /// The line contains a newline before its end.
    EmbeddedNewline,
    /// A numeric field does not parse (or is not finite, for times).
    BadField {
        /// The field's name in the header, e.g. `Exitval`.
        field: &'static str,
        /// The field's text.
        value: String,
    },
}

impl fmt::Display for JoblogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoblogError::Header => write!(f, "this is the joblog header line, not a job"),
            JoblogError::TooFewFields { found } => write!(
                f,
                "joblog line has {found} tab-separated field(s), expected at least 9"
            ),
            JoblogError::EmbeddedNewline => write!(f, "joblog line contains a newline"),
            JoblogError::BadField { field, value } => {
                write!(f, "joblog field {field} has invalid value {value:?}")
            }
        }
    }
}

impl Error for JoblogError {}

impl JoblogEntry {
    /// GNU parallel's joblog header line (without the newline).
    pub const HEADER: &'static str =
        "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

    /// The `Host` value GNU parallel writes for the local machine.
    pub const LOCAL_HOST: &'static str = ":";

    /// Formats the entry exactly as GNU parallel does, without the newline.
    ///
    /// Newlines in `command` are written as NUL characters (as GNU parallel
    /// does); tabs and newlines in `host` are written as spaces, since they
    /// would break the line. [`parse_joblog_line`] reads the result back to
    /// an equal entry, up to the millisecond rounding of the two times, when
    /// `host` has neither and `command` has no NUL.
    ///
    /// ```
    /// use procman::jobfile::JoblogEntry;
    /// let e = JoblogEntry {
    ///     seq: 1, host: ":".into(), start_time: 1376577364.9741, runtime: 0.0081,
    ///     send: 0, receive: 0, exitval: 0, signal: 0, command: "true".into(),
    /// };
    /// assert_eq!(e.to_line(), "1\t:\t1376577364.974\t     0.008\t0\t0\t0\t0\ttrue");
    /// ```
    pub fn to_line(&self) -> String {
        let host: String = self
            .host
            .chars()
            .map(|c| if matches!(c, '\t' | '\n') { ' ' } else { c })
            .collect();
        format!(
            "{}\t{}\t{:.3}\t{:10.3}\t{}\t{}\t{}\t{}\t{}",
            self.seq,
            host,
            self.start_time,
            self.runtime,
            self.send,
            self.receive,
            self.exitval,
            self.signal,
            self.command.replace('\n', "\0"),
        )
    }
}

fn joblog_field<T: std::str::FromStr>(field: &'static str, text: &str) -> Result<T, JoblogError> {
    text.trim_matches(' ')
        .parse()
        .map_err(|_| JoblogError::BadField {
            field,
            value: text.to_owned(),
        })
}

fn joblog_time(field: &'static str, text: &str) -> Result<f64, JoblogError> {
    let v: f64 = joblog_field(field, text)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(JoblogError::BadField {
            field,
            value: text.to_owned(),
        })
    }
}

/// Parses one line of a GNU parallel joblog (a trailing `\n` or `\r\n` is
/// allowed).
///
/// The command is everything after the eighth tab, tabs included; NUL
/// characters in it become newlines again. Spaces around numbers are ignored
/// (`JobRuntime` is space-padded). The header line gives
/// [`JoblogError::Header`], so a reader can skip it.
pub fn parse_joblog_line(line: &str) -> Result<JoblogEntry, JoblogError> {
    let line = match line.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest),
        None => line,
    };
    if line == JoblogEntry::HEADER || line.starts_with("Seq\tHost\t") {
        return Err(JoblogError::Header);
    }
    if line.contains('\n') {
        return Err(JoblogError::EmbeddedNewline);
    }
    let fields: Vec<&str> = line.splitn(9, '\t').collect();
    let [seq, host, start, runtime, send, receive, exitval, signal, command] = fields[..] else {
        return Err(JoblogError::TooFewFields {
            found: fields.len(),
        });
    };
    Ok(JoblogEntry {
        seq: joblog_field("Seq", seq)?,
        host: host.to_owned(),
        start_time: joblog_time("Starttime", start)?,
        runtime: joblog_time("JobRuntime", runtime)?,
        send: joblog_field("Send", send)?,
        receive: joblog_field("Receive", receive)?,
        exitval: joblog_field("Exitval", exitval)?,
        signal: joblog_field("Signal", signal)?,
        command: command.replace('\0', "\n"),
    })
}
