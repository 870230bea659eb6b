//! Job lines and job files: [`parse_job_line`] reads one line (shell words or a JSON object,
//! the latter in `json_job.rs`) into a [`BatchJob`]; [`parse_job_file`] reads a whole file.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use crate::duration::{DurationError, LARGEST};
use crate::json_job::{parse_json_job, KNOWN_FIELDS};
use crate::lines::{lines, LineError};
use crate::words::{is_separator, split_words, SplitError};

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
    /// CPUs the job needs (JSON `cpus`, at least 1): what a Slurm job asks for
    /// (`--cpus-per-task`); a hint to the local backend.
    pub cpus: Option<u32>,
    /// Memory the job needs in bytes (JSON `memory`: a number of bytes or a size such as
    /// `"8G"`): what a Slurm job asks for (`--mem`); a hint to the local backend.
    pub memory: Option<u64>,
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
///   strings), `timeout` (a [`parse_duration`](crate::parse_duration) string, or a number of
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

pub(crate) fn check_nonempty_no_nul(field: &str, s: &str) -> Result<(), JobLineErrorKind> {
    if s.is_empty() {
        Err(JobLineErrorKind::Empty(field.to_owned()))
    } else if s.contains('\0') {
        Err(JobLineErrorKind::Nul(field.to_owned()))
    } else {
        Ok(())
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
