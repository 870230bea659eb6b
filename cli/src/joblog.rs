//! GNU parallel's `--joblog` format: [`JoblogEntry`] and [`parse_joblog_line`].

use std::error::Error;
use std::fmt;

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
    /// use procman_cli::JoblogEntry;
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
