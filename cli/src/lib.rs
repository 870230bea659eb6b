//! The parsers of the `procman` command-line tool (the crate's binary, `src/main.rs`): job
//! files, shell-style word splitting, `timeout`-style durations and GNU parallel's `--joblog`
//! format. They are a library of their own so that the fuzz targets (`fuzz/`) and the tests
//! reach them; they are not part of the `procman` library's API.
//!
//! | file | holds |
//! |---|---|
//! | `words.rs` | [`split_words`], [`split_words_bytes`], [`quote_word`], [`join_words`] |
//! | `duration.rs` | [`parse_duration`] |
//! | `job_line.rs` | [`BatchJob`], [`parse_job_line`], [`parse_job_file`] |
//! | `json_job.rs` | the JSON form of a job line (private) |
//! | `lines.rs` | [`lines`]: numbered UTF-8 lines of a reader |
//! | `joblog.rs` | [`JoblogEntry`], [`parse_joblog_line`] |
//! | `progress.rs` | [`ProgressPattern`]: `--progress-pattern`'s matcher |
//!
//! The tool's own modules (`main.rs`, `args.rs`, `batch.rs`, …) sit beside these files but
//! belong to the binary, which uses this library like any other crate.
//!
//! Everything here is a pure function over text: nothing spawns a process and
//! nothing depends on the job engine. No function in this crate panics,
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
//! use procman_cli::parse_job_line;
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

#![deny(missing_docs)]

mod duration;
mod job_line;
mod joblog;
mod json_job;
mod lines;
mod progress;
mod words;

pub use duration::{parse_duration, DurationError};
pub use job_line::{
    parse_job_file, parse_job_line, BatchJob, JobFileError, JobLineError, JobLineErrorKind,
};
pub use joblog::{parse_joblog_line, JoblogEntry, JoblogError};
pub use lines::{lines, LineError, LineErrorKind, Lines};
pub use progress::{Found, PatternError, ProgressPattern};
pub use words::{join_words, quote_word, split_words, split_words_bytes, SplitError};
