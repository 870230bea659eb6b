//! `procman batch`: one job per line, in GNU parallel's spirit.
//!
//! Threads: the main thread owns the display and the joblog; a reader thread reads the job
//! file, parses each line and submits it (so jobs start while a slow stdin is still being
//! read); each job's completion handler sends its final record to the main thread over an
//! unbounded channel (exactly once per job, so nothing is lost however slow the display is);
//! the signal thread sends SIGINT/SIGTERM/SIGHUP to the same channel.
//!
//! Numbering: every job line (not blank, not a comment), valid or not, gets the next sequence
//! number, 1-based: the joblog's `Seq`, the log file names, and what `--resume` matches.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the options' and messages' types; `main`: setting the batch up |
//! | `options.rs` | the command line |
//! | `reader.rs` | the reader thread: job lines to submitted jobs |
//! | `gate.rs` | when submitting stops; `--halt`'s permits and tally |
//! | `main_loop.rs` | the main thread: results, joblog, display, stopping, summary, exit status |
//! | `joblog.rs` | writing the joblog, reading it for `--resume` |
//! | `ui.rs` | the progress line and the counts |

mod gate;
mod joblog;
mod main_loop;
mod options;
mod reader;
mod ui;

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::unbounded;
use procman::{JobRecord, ProcessManager};

use crate::cli::{BatchArgs, Shape};
use crate::dash::Key;
use crate::halt::{self, When};
use crate::inputs::{self, Item};
use crate::sampling::Series;
use crate::sig;
use gate::Shared;
use joblog::{recorded_in, Joblog};
use main_loop::Batch;
use reader::Reader;

/// Exit status for procman's own errors (GNU parallel uses 255 too).
const OWN_ERROR: i32 = 255;
/// The exit status is the number of failed jobs, at most this (as GNU parallel).
const MAX_FAILED_STATUS: u64 = 101;
/// Where job N's output goes without `--log-dir`: `procman-logs/N.log`, `procman-logs/N_err.txt`.
pub const DEFAULT_LOG_DIR: &str = "procman-logs";
/// How often the live progress line is redrawn on a terminal.
const REDRAW: Duration = Duration::from_millis(200);

/// Which jobs the joblog's entries skip: `--resume` (all) or `--resume-failed`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    All,
    Failed,
}

/// `procman batch`'s command line (`options.rs` reads it).
#[derive(Clone)]
struct Options {
    jobs: usize,
    timeout: Option<Duration>,
    grace: Option<Duration>,
    contain: Option<procman::Containment>,
    slurm: Option<procman::slurm::SlurmOptions>,
    memory_limit: Option<u64>,
    retries: u32,
    /// `None` with `--no-logs`.
    log_dir: Option<PathBuf>,
    joblog: Option<PathBuf>,
    /// `--resume`: skip the jobs the joblog records, whatever their outcome (GNU parallel);
    /// `--resume-failed`: skip only those recorded as succeeded.
    resume: Option<Resume>,
    halt: Option<halt::Rule>,
    progress: Option<bool>,
    /// `-q`: no progress line, no line per successful job, no summary unless something failed.
    quiet: bool,
    file: Option<OsString>,
    /// A command template and its `:::`/`::::` sources, instead of a job file.
    command: Option<Vec<OsString>>,
    /// `-0`: arguments (stdin, `::::` files) are NUL-terminated.
    nul: bool,
    /// Job output to procman's stdout/stderr besides the log files.
    output: Output,
    /// `--tag`: each line of output to the terminal starts with the job's arguments and a TAB.
    tag: bool,
    /// `--report FILE`: the HTML run report, written at the end.
    report: Option<PathBuf>,
    /// Test only: the report records JavaScript errors in the page.
    report_error_hook: bool,
    /// How often running jobs are sampled (`--sample-interval`, see `sampling.rs`); `None`:
    /// never.
    sample_interval: Option<Duration>,
    /// `--progress-pattern`: each job's progress parser.
    progress_parser: Option<procman::ProgressParser>,
}

impl Options {
    /// Whether the live display is on: the progress line or the dashboard. Job output on the
    /// terminal and a live line would garble each other: only when asked, then.
    fn live(&self) -> bool {
        !self.quiet
            && self
                .progress
                .unwrap_or_else(|| self.output == Output::Files && io::stderr().is_terminal())
    }

    /// Whether the live display is the dashboard: on a terminal, when no job output is printed.
    fn dashboard(&self) -> bool {
        self.live() && self.output == Output::Files && io::stderr().is_terminal()
    }
}

/// Where the jobs' output goes besides the log files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// Log files only (the default).
    Files,
    /// `--group`: each job's output printed whole when it ends.
    Group,
    /// `--line-buffer`: lines printed as they come, whole lines only.
    Lines,
}

/// A finished job, from its completion handler.
struct Finished {
    seq: u64,
    line: usize,
    command: String,
    record: JobRecord,
    /// The batch halts on this job (`--halt`).
    halts: Option<When>,
}

/// What the reader, the jobs' handlers and the signal thread tell the main thread.
enum Msg {
    /// A line was skipped: the joblog records it (`--resume`), as succeeded
    /// (`--resume-failed`).
    Skipped,
    /// A line is not a valid job; the message names the line. Whether the batch halts on it.
    Invalid(String, Option<When>),
    /// Something worth telling that is not a job's failure.
    Warning(String),
    Done(Box<Finished>),
    /// The reader reached the end of the input.
    InputDone,
    /// The input could not be read further.
    ReadError(String),
    Signal(i32),
    /// A key pressed on the dashboard.
    Key(Key),
}

/// Job id → how the user knows the job (`job 3 (line 5, "prep")`), for messages that name
/// another job by its id.
/// With each, whether the job can sit pending after it was admitted by the tool (it waits for
/// a dependency, or may wait to be retried): only those are cancelled when the batch halts
/// `soon` (see the main loop).
type Labels = Arc<Mutex<HashMap<u64, Label>>>;

/// How the user knows a submitted job, and what the live view shows of it.
struct Label {
    /// `job 3 (line 5, "prep")`.
    text: String,
    /// Whether it can sit pending after it was admitted (see [`Labels`]).
    may_wait: bool,
    seq: u64,
    command: String,
    /// Its log file (the live view shows its last line).
    log: Option<PathBuf>,
}

/// `procman batch ARGS...`: runs the batch and returns the tool's exit status.
pub fn main(argv: BatchArgs, shape: Shape, blocked: sig::Blocked) -> i32 {
    let o = match options::parse(argv, shape) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("procman: {e}");
            return OWN_ERROR;
        }
    };
    match start(o, blocked) {
        Ok(batch) => batch.run(),
        Err(message) => {
            eprintln!("procman: {message}");
            OWN_ERROR
        }
    }
}

/// Opens everything the batch needs (the input, the joblog, the manager), starts the signal
/// forwarder and the reader thread, and returns the main loop. `Err`: why the batch cannot run.
fn start(o: Options, blocked: sig::Blocked) -> Result<Batch, String> {
    check_log_dir(&o)?;
    let input = open_input(&o)?;
    let succeeded = match (&o.joblog, o.resume) {
        (Some(path), Some(resume)) => recorded_in(path, resume)
            .map_err(|e| format!("cannot read joblog {}: {e}", path.display()))?,
        _ => HashMap::new(),
    };
    let joblog = match &o.joblog {
        Some(path) => Some(
            Joblog::open(path, o.resume.is_some())
                .map_err(|e| format!("cannot open joblog {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut builder = ProcessManager::builder().limit(o.jobs);
    if let Some(g) = o.grace {
        builder = builder.grace(g);
    }
    if let Some(every) = o.sample_interval {
        builder = builder.sample_interval(every);
    }
    if let Some(c) = o.contain {
        builder = builder.containment(c);
    }
    if let Some(s) = o.slurm.clone() {
        builder = builder.slurm(s);
    }
    let manager = builder.build().map_err(|e| format!("cannot start: {e}"))?;
    let (tx, rx) = unbounded();
    let tx_keys = tx.clone();
    sig::forward(blocked, tx.clone(), Msg::Signal);
    let gate = Arc::new(Shared::default());
    if o.halt.is_some() {
        gate.lock().permits = Some(o.jobs);
    }
    let labels: Labels = Arc::default();
    // The report's usage over time: subscribed before the first job is submitted.
    let series =
        (o.report.is_some() && o.sample_interval.is_some()).then(|| Series::subscribe(&manager));
    let reader = Reader {
        labels: labels.clone(),
        manager: manager.handle(),
        tx,
        gate: gate.clone(),
        options: o.clone(),
        succeeded,
    };
    // Not joined: a reader blocked on a terminal or pipe must not keep the tool alive.
    thread::Builder::new()
        .name("procman-reader".into())
        .spawn(move || reader.run(input))
        .map_err(|e| format!("cannot start the reader thread: {e}"))?;
    Ok(Batch::new(
        o,
        manager,
        (tx_keys, rx),
        gate,
        labels,
        (joblog, series),
    ))
}

/// A log directory that cannot be one is reported once here, not once per job.
fn check_log_dir(o: &Options) -> Result<(), String> {
    if let Some(dir) = &o.log_dir {
        let bad = match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => Some("it exists and is not a directory".to_owned()),
            Err(e) if e.kind() != io::ErrorKind::NotFound => Some(e.to_string()),
            _ => None,
        };
        if let Some(why) = bad {
            return Err(format!("cannot use log directory {}: {why}", dir.display()));
        }
    }
    Ok(())
}

/// The batch's items: a command template's argument sets, or the job file's lines (stdin for
/// none or `-`).
fn open_input(o: &Options) -> Result<Box<dyn Iterator<Item = Item> + Send>, String> {
    Ok(match (&o.command, o.file.as_deref()) {
        (Some(words), _) => {
            let template = inputs::Template::parse(words.clone(), o.nul)?;
            // Without ::: or ::::, the arguments come from stdin, one per line (or per NUL).
            let from_stdin = template.sources.is_empty();
            if from_stdin && io::stdin().is_terminal() {
                return Err(
                    "batch: no arguments for the command: give ::: ARGS, :::: FILE, \
                     or pipe them into stdin"
                        .into(),
                );
            }
            inputs::template_items(template, from_stdin, o.nul)
        }
        (None, None) => inputs::job_lines(BufReader::new(io::stdin())),
        (None, Some(f)) if f == "-" => inputs::job_lines(BufReader::new(io::stdin())),
        (None, Some(f)) => match File::open(f) {
            Ok(file) => inputs::job_lines(BufReader::new(file)),
            Err(e) => {
                return Err(format!(
                    "cannot open job file {}: {e}",
                    Path::new(f).display()
                ))
            }
        },
    })
}
