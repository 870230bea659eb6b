//! Numbered lines of a job file or joblog: [`lines`] decodes one line at a time, so an invalid
//! UTF-8 line is reported by its number instead of failing the whole file.

use std::error::Error;
use std::fmt;
use std::io::{self, BufRead};

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
