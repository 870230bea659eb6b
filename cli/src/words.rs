//! Shell-style words: [`split_words`] (and its byte version [`split_words_bytes`]) splits a
//! line as a POSIX shell would, without expansions; [`quote_word`] and [`join_words`] quote
//! words so that splitting gives them back.

use std::error::Error;
use std::fmt;

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
pub(crate) fn is_separator(c: char) -> bool {
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
/// use procman_cli::split_words;
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
/// use procman_cli::split_words_bytes;
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
/// use procman_cli::quote_word;
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
