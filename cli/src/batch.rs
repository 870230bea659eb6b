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

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, IsTerminal, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crossbeam_channel::{unbounded, RecvTimeoutError, Sender};
use procman::{
    Handle, JobId, JobRecord, JobSpec, JobStatus, ProcessManager, RetryOn, ShutdownMode,
    StartError, Stream, OBSERVER_LINE_CAP,
};
use procman_cli::{lines, parse_joblog_line, JoblogEntry, JoblogError, LineErrorKind};

use crate::args::{Arg, Args, UsageError};
use crate::halt::{self, Tally, Threshold, When};
use crate::inputs::{self, Item};
use crate::sig;

/// Exit status for procman's own errors (GNU parallel uses 255 too).
const OWN_ERROR: i32 = 255;
/// The exit status is the number of failed jobs, at most this (as GNU parallel).
const MAX_FAILED_STATUS: u64 = 101;
/// Where job N's output goes without `--log-dir`: `procman-logs/N.log`, `procman-logs/N_err.txt`.
pub const DEFAULT_LOG_DIR: &str = "procman-logs";
/// How often the live progress line is redrawn on a terminal.
const REDRAW: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    All,
    Failed,
}

#[derive(Clone)]
struct Options {
    jobs: usize,
    timeout: Option<Duration>,
    grace: Option<Duration>,
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

/// Whether words after the first mean a command template rather than a job file and options.
fn is_command(rest: &[OsString]) -> bool {
    rest.iter().any(|w| w == ":::" || w == "::::")
        || rest
            .first()
            .is_some_and(|w| !w.as_encoded_bytes().starts_with(b"-"))
}

fn parse(argv: Vec<OsString>) -> Result<Options, UsageError> {
    let mut o = Options {
        jobs: thread::available_parallelism().map_or(1, |n| n.get()),
        timeout: None,
        grace: None,
        retries: 0,
        log_dir: Some(PathBuf::from(DEFAULT_LOG_DIR)),
        joblog: None,
        resume: None,
        halt: None,
        progress: None,
        quiet: false,
        file: None,
        command: None,
        nul: false,
        output: Output::Files,
        tag: false,
    };
    let mut a = Args::new(argv);
    let mut words = Vec::new();
    while let Some(arg) = a.next()? {
        match arg {
            Arg::EndOfOptions => {
                let rest = a.rest();
                if rest.len() > 1 || is_command(&rest) {
                    o.command = Some(rest);
                } else {
                    words.extend(rest);
                }
            }
            Arg::Word(w) => {
                // `procman batch [OPTIONS] COMMAND ARGS... [::: ...]`: the rest is the command.
                // `procman batch FILE [OPTIONS]`: options may follow the job file.
                let rest = a.rest();
                if is_command(&rest) {
                    o.command = Some(std::iter::once(w).chain(rest).collect());
                } else {
                    words.push(w);
                    a = Args::new(rest);
                }
            }
            Arg::Opt(name) => match name.as_str() {
                "0" | "null" => o.nul = true,
                "group" => o.output = Output::Group,
                "line-buffer" | "lb" => o.output = Output::Lines,
                "tag" => o.tag = true,
                "j" | "jobs" => {
                    o.jobs = a.number()?;
                    if o.jobs == 0 {
                        return Err(UsageError("option --jobs: must be at least 1".into()));
                    }
                }
                "timeout" => o.timeout = Some(a.duration()?),
                "grace" => o.grace = Some(a.duration()?),
                "retries" => o.retries = a.number()?,
                "log-dir" => o.log_dir = Some(a.path()?),
                "no-logs" => o.log_dir = None,
                "joblog" => o.joblog = Some(a.path()?),
                "resume" => o.resume = Some(Resume::All),
                "resume-failed" => o.resume = Some(Resume::Failed),
                "halt" | "halt-on-error" => {
                    // `--halt=V`, `--halt V` (when V reads as a halt rule), or a bare `--halt`.
                    let v = a.optional_value(halt::looks_like_value);
                    let v = v.map_or(Ok("soon".to_owned()), |v| {
                        v.into_string()
                            .map_err(|v| UsageError(format!("option --halt: {v:?} is not UTF-8")))
                    })?;
                    o.halt = halt::parse(&v).map_err(UsageError)?;
                }
                "progress" => o.progress = Some(true),
                "no-progress" => o.progress = Some(false),
                "q" | "quiet" => o.quiet = true,
                "h" | "help" => return Err(UsageError::help()),
                _ => return Err(a.unknown("batch")),
            },
        }
    }
    if words.len() > 1 {
        return Err(UsageError(format!(
            "batch: one job file expected, got {} ({})",
            words.len(),
            words
                .iter()
                .map(|w| w.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    o.file = words.pop();
    if o.tag && o.output == Output::Files {
        return Err(UsageError(
            "option --tag: the output goes to log files only; add --group or --line-buffer".into(),
        ));
    }
    if o.resume.is_some() && o.joblog.is_none() {
        return Err(UsageError(
            "option --resume needs --joblog FILE (so does --resume-failed)".into(),
        ));
    }
    Ok(o)
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
}

/// Shared by the reader, the handlers and the main thread: once `stopped` is set (under the
/// lock) no job is submitted any more, so `submitted` is then the final number of jobs to wait
/// for.
#[derive(Default)]
struct Gate {
    stopped: bool,
    submitted: u64,
    /// With `--halt`: how many more jobs may be submitted before one finishes (`-j` at first).
    /// A job is only submitted with a permit, and a finished job's handler decides whether the
    /// batch halts *before* it returns its permit, so no job starts after the halting one
    /// (the manager cannot start one the tool never submitted). `None`: no limit.
    permits: Option<usize>,
    /// Finished jobs (and invalid lines), for the halt rule.
    tally: Tally,
    /// Job lines in the whole input, when a percentage rule needs it (read up front).
    total: u64,
}

/// The gate and its condition variable (a reader waiting for a permit).
#[derive(Default)]
struct Shared {
    gate: Mutex<Gate>,
    freed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().expect("gate")
    }

    /// Stops submissions and wakes a reader waiting for a permit.
    fn stop(&self) {
        self.lock().stopped = true;
        self.freed.notify_all();
    }

    /// Counts a finished job (or an invalid line) and decides, under the lock, whether the
    /// batch halts; if so the manager is paused at once, so not even a job already submitted
    /// (one waiting for its dependency) starts. Returns when it halts. `permit`: the job held
    /// one, which is returned only now.
    fn settle(
        &self,
        rule: Option<halt::Rule>,
        failed: bool,
        permit: bool,
        manager: &Handle,
    ) -> Option<When> {
        let mut g = self.lock();
        let mut fired = None;
        if !g.stopped {
            if failed {
                g.tally.failed += 1;
            } else {
                g.tally.succeeded += 1;
            }
            if let Some(rule) = rule {
                if rule.met(g.tally, g.total) {
                    g.stopped = true;
                    // Err only once shut down, when nothing starts anyway.
                    let _ = manager.pause();
                    fired = Some(rule.when);
                }
            }
        }
        if permit {
            if let Some(p) = g.permits.as_mut() {
                *p += 1;
            }
        }
        drop(g);
        self.freed.notify_all();
        fired
    }
}

/// What a job name in `after` refers to.
enum Named {
    Job(JobId),
    /// Skipped by `--resume` or `--resume-failed`: it ran before, so nothing to wait for.
    AlreadySucceeded,
    Invalid(usize),
}

/// Job id → how the user knows the job (`job 3 (line 5, "prep")`), for messages that name
/// another job by its id.
/// With each, whether the job can sit pending after it was admitted by the tool (it waits for
/// a dependency, or may wait to be retried): only those are cancelled when the batch halts
/// `soon` (see the main loop).
type Labels = Arc<Mutex<HashMap<u64, (String, bool)>>>;

/// Rewrites "job <id>, which it runs after, ..." (the library's words for a failed dependency)
/// with the dependency's label.
fn name_dependency(error: &str, labels: &Labels) -> Option<String> {
    let rest = error.strip_prefix("job ")?;
    let (id, tail) = rest.split_once(',')?;
    let id: u64 = id.parse().ok()?;
    let label = labels.lock().expect("labels").get(&id)?.0.clone();
    Some(format!("{label},{tail}"))
}

struct Reader {
    labels: Labels,
    manager: Handle,
    tx: Sender<Msg>,
    gate: Arc<Shared>,
    options: Options,
    /// seq → command of the jobs to skip (`--resume`, `--resume-failed`).
    succeeded: HashMap<u64, String>,
}

/// A job's output gathered for `--group`, printed whole when it ends.
#[derive(Default)]
struct Grouped {
    out: Mutex<Vec<u8>>,
    err: Mutex<Vec<u8>>,
}

impl Grouped {
    fn print(&self) {
        for (buf, mut to) in [
            (&self.out, Box::new(io::stdout().lock()) as Box<dyn Write>),
            (&self.err, Box::new(io::stderr().lock())),
        ] {
            let buf = std::mem::take(&mut *buf.lock().expect("group"));
            if !buf.is_empty() {
                let _ = to.write_all(&buf).and_then(|_| to.flush());
            }
        }
    }
}

impl Reader {
    /// With `--group` or `--line-buffer`, observes the job's output and prints it (with the tag
    /// for `--tag`): each line is written with one `write` under the stream's lock, so lines of
    /// different jobs never mix. A piece of exactly the library's line cap is part of a longer
    /// line and gets no newline; a last line without one gets one.
    fn terminal_output(&self, spec: JobSpec, tag: &str) -> (JobSpec, Option<Arc<Grouped>>) {
        let mode = self.options.output;
        if mode == Output::Files {
            return (spec, None);
        }
        let prefix: Vec<u8> = if self.options.tag {
            format!("{tag}\t").into_bytes()
        } else {
            Vec::new()
        };
        let grouped = (mode == Output::Group).then(|| Arc::new(Grouped::default()));
        let sink = grouped.clone();
        let spec = spec.observe(move |_, stream, line| {
            let mut buf = Vec::with_capacity(prefix.len() + line.len() + 1);
            buf.extend_from_slice(&prefix);
            buf.extend_from_slice(line);
            if line.len() != OBSERVER_LINE_CAP {
                buf.push(b'\n');
            }
            match (&sink, stream) {
                (Some(g), Stream::Stdout) => g.out.lock().expect("group").extend(buf),
                (Some(g), Stream::Stderr) => g.err.lock().expect("group").extend(buf),
                (None, Stream::Stdout) => {
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(&buf).and_then(|_| out.flush());
                }
                (None, Stream::Stderr) => {
                    let _ = io::stderr().lock().write_all(&buf);
                }
            }
        });
        (spec, grouped)
    }

    /// Reports an invalid line; it counts as a failure for `--halt`.
    fn invalid(&self, msg: String) {
        let halts = self
            .gate
            .settle(self.options.halt, true, false, &self.manager);
        let _ = self.tx.send(Msg::Invalid(msg, halts));
    }

    fn run(self, input: Box<dyn Iterator<Item = Item> + Send>) {
        let mut seq = 0u64;
        let mut names: HashMap<String, (Named, usize)> = HashMap::new();
        let mut items = input;
        if matches!(
            self.options.halt,
            Some(halt::Rule {
                threshold: Threshold::Percent(_),
                ..
            })
        ) {
            // A percentage is of all the jobs: read them all first.
            let all: Vec<Item> = items.collect();
            let total = all
                .iter()
                .filter(|item| matches!(item, Item::Job(..) | Item::Invalid(_)))
                .count();
            self.gate.lock().total = total as u64;
            items = Box::new(all.into_iter());
        }
        for item in items {
            if self.gate.lock().stopped {
                return;
            }
            let (line_no, job) = match item {
                Item::Job(n, job) => (n, job),
                Item::Blank => continue,
                Item::Invalid(msg) => {
                    seq += 1;
                    self.invalid(msg);
                    continue;
                }
                Item::ReadError(e) => {
                    let _ = self.tx.send(Msg::ReadError(e));
                    return;
                }
            };
            seq += 1;
            let command = job.command();
            let invalid = |msg: String| format!("line {line_no}: {msg}");
            if let Some(name) = &job.name {
                if let Some((_, other)) = names.get(name) {
                    self.invalid(invalid(format!(
                        "job name {name:?} is already used by line {other}"
                    )));
                    continue;
                }
            }
            let register = |names: &mut HashMap<String, (Named, usize)>, what: Named| {
                if let Some(name) = &job.name {
                    names.insert(name.clone(), (what, line_no));
                }
            };
            if let Some(before) = self.succeeded.get(&seq) {
                if *before == command {
                    register(&mut names, Named::AlreadySucceeded);
                    let _ = self.tx.send(Msg::Skipped);
                    continue;
                }
                let _ = self.tx.send(Msg::Warning(format!(
                    "line {line_no}: the joblog's job {seq} ran another command ({before}); running this one"
                )));
            }
            let mut spec = JobSpec::new(&job.program).args(&job.args);
            let (spec_out, print) = self.terminal_output(spec, &job.tag);
            spec = spec_out;
            let mut bad_after = None;
            for name in &job.after {
                match names.get(name) {
                    Some((Named::Job(id), _)) => spec = spec.after(*id),
                    Some((Named::AlreadySucceeded, _)) => {}
                    Some((Named::Invalid(l), _)) => {
                        bad_after = Some(format!(
                            "\"after\" names job {name:?}, whose line {l} is invalid"
                        ));
                        break;
                    }
                    None => {
                        bad_after = Some(format!(
                            "\"after\" names job {name:?}, which no earlier line defines \
                             (a job can only run after jobs on lines above it)"
                        ));
                        break;
                    }
                }
            }
            if let Some(msg) = bad_after {
                register(&mut names, Named::Invalid(line_no));
                self.invalid(invalid(msg));
                continue;
            }
            let log = job.log.clone().or_else(|| {
                self.options
                    .log_dir
                    .as_ref()
                    .map(|d| d.join(format!("{seq}.log")))
            });
            if let Some(log) = &log {
                spec = spec.log_file(log);
            }
            match &job.err {
                Some(err) => spec = spec.error_file(err),
                None if log.is_none() => spec = spec.error_null(),
                None => {} // the CCP4i2 convention: <log without extension>_err.txt
            }
            if let Some(input) = &job.input {
                spec = spec.input_file(input);
            }
            if let Some(cwd) = &job.cwd {
                spec = spec.cwd(cwd);
            }
            for (k, v) in &job.env {
                spec = spec.env(k, v);
            }
            // 0 means no timeout, as for coreutils `timeout` (a job's own 0 overrides --timeout).
            if let Some(t) = job
                .timeout
                .or(self.options.timeout)
                .filter(|t| !t.is_zero())
            {
                spec = spec.timeout(t);
            }
            if let Some(g) = self.options.grace {
                spec = spec.grace(g);
            }
            if let Some(p) = job.priority {
                spec = spec.priority(p);
            }
            let retries = job.retries.unwrap_or(self.options.retries);
            if retries > 0 {
                spec = spec.retries(retries, Duration::ZERO, RetryOn::default());
            }
            let tx = self.tx.clone();
            let done_command = command.clone();
            let shared = self.gate.clone();
            let rule = self.options.halt;
            let manager = self.manager.clone();
            spec = spec.on_finish(move |record| {
                if let Some(print) = print {
                    print.print();
                }
                let failed = !record.status.is_success() && record.status != JobStatus::Cancelled;
                let halts = shared.settle(rule, failed, rule.is_some(), &manager);
                let _ = tx.send(Msg::Done(Box::new(Finished {
                    seq,
                    line: line_no,
                    command: done_command,
                    record: record.clone(),
                    halts,
                })));
            });
            let mut gate = self.gate.lock();
            // With --halt, wait for a permit (see Gate::permits).
            while !gate.stopped && gate.permits == Some(0) {
                gate = self.gate.freed.wait(gate).expect("gate");
            }
            if gate.stopped {
                return;
            }
            match self.manager.start_process(spec) {
                Ok(id) => {
                    let label = match &job.name {
                        Some(name) => format!("job {seq} (line {line_no}, {name:?})"),
                        None => format!("job {seq} (line {line_no})"),
                    };
                    let may_wait = !job.after.is_empty() || retries > 0;
                    self.labels
                        .lock()
                        .expect("labels")
                        .insert(id.0, (label, may_wait));
                    gate.submitted += 1;
                    if let Some(p) = gate.permits.as_mut() {
                        *p -= 1;
                    }
                    drop(gate);
                    register(&mut names, Named::Job(id));
                }
                Err(StartError::ShutDown) => return,
                Err(e) => {
                    drop(gate);
                    register(&mut names, Named::Invalid(line_no));
                    self.invalid(invalid(e.to_string()));
                }
            }
        }
        let _ = self.tx.send(Msg::InputDone);
    }
}

/// The joblog, written one complete line per `write` so that a killed tool leaves only whole
/// lines (see DESIGN.md). The file is unbuffered: each line is in the kernel once written.
struct Joblog {
    file: File,
}

impl Joblog {
    fn open(path: &Path, append: bool) -> io::Result<Joblog> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let mut file = if append {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)?
        } else {
            File::create(path)?
        };
        let len = file.metadata()?.len();
        if len == 0 {
            file.write_all(format!("{}\n", JoblogEntry::HEADER).as_bytes())?;
        } else {
            // A torn last line (a full disk, say) must not swallow the next entry.
            let mut last = [0u8];
            file.read_exact_at(&mut last, len - 1)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(Joblog { file })
    }

    fn record(&mut self, entry: &JoblogEntry) -> io::Result<()> {
        let mut line = entry.to_line();
        line.push('\n');
        self.file.write_all(line.as_bytes())
    }
}

/// How a finished job is written in the joblog (GNU parallel's columns). `None` for a job that
/// never ran (cancelled, or a dependency failed): it has no entry, so `--resume` runs it.
fn joblog_entry(f: &Finished) -> Option<JoblogEntry> {
    let r = &f.record;
    let (exitval, signal) = match r.status {
        JobStatus::Finished => (0, 0),
        JobStatus::Failed => (r.exit_code.unwrap_or(1), 0),
        // As GNU parallel: a job ended by a signal has Exitval 0 and the signal's number.
        JobStatus::Crashed => (r.exit_code.unwrap_or(0), r.signal.unwrap_or(0)),
        // As GNU parallel for its timeouts: -1, and the signal that ended the job.
        JobStatus::TimedOut | JobStatus::Killed => (-1, r.signal.unwrap_or(0)),
        // Ended by procman (its internal error), as a kill.
        JobStatus::InternalError => (-1, 0),
        // As `procman run` and a shell: 127 not found, 126 not executable (a directory, say).
        JobStatus::SpawnFailed => (crate::exit_code(r), 0),
        JobStatus::Cancelled
        | JobStatus::DependencyFailed
        | JobStatus::Pending
        | JobStatus::Running => return None,
    };
    let start = r.started_at.or(r.finished_at).unwrap_or(r.queued_at);
    Some(JoblogEntry {
        seq: f.seq,
        host: JoblogEntry::LOCAL_HOST.into(),
        start_time: start
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        runtime: r.usage.map_or(0.0, |u| u.wall.as_secs_f64()),
        send: 0,
        receive: 0,
        exitval,
        signal,
        command: f.command.clone(),
    })
}

/// seq → command of the jobs the joblog records: all of them for `--resume`, those whose latest
/// entry succeeded (Exitval 0 and Signal 0) for `--resume-failed`. A missing joblog is an
/// empty one; unreadable lines are skipped with a warning.
fn recorded_in(path: &Path, resume: Resume) -> io::Result<HashMap<u64, String>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let mut latest: HashMap<u64, JoblogEntry> = HashMap::new();
    for item in lines(BufReader::new(file)) {
        match item {
            Ok((n, text)) => match parse_joblog_line(&text) {
                Ok(e) => {
                    latest.insert(e.seq, e);
                }
                Err(JoblogError::Header) => {}
                Err(e) if text.is_empty() => log::debug!("joblog line {n} is empty: {e}"),
                Err(e) => eprintln!("procman: {}: line {n} ignored: {e}", path.display()),
            },
            Err(e) => match e.kind {
                LineErrorKind::Io(io) => return Err(io),
                LineErrorKind::NotUtf8 { .. } => {
                    eprintln!("procman: {}: {e}; ignored", path.display())
                }
            },
        }
    }
    Ok(latest
        .into_iter()
        .filter(|(_, e)| resume == Resume::All || (e.exitval == 0 && e.signal == 0))
        .map(|(seq, e)| (seq, e.command))
        .collect())
}

/// What the main thread counts.
#[derive(Default)]
struct Counts {
    ok: u64,
    failed: u64,
    timed_out: u64,
    /// Cancelled (halt, interrupt) or whose dependency was cancelled: not run.
    not_run: u64,
    /// Killed by a halt or an interrupt while running.
    interrupted: u64,
    skipped: u64,
    invalid: u64,
    /// Done messages received (every submitted job sends exactly one).
    done: u64,
}

/// The display: a live line on a terminal, plain lines otherwise.
struct Ui {
    live: bool,
    shown: bool,
    start: Instant,
    last_draw: Instant,
}

impl Ui {
    fn say(&mut self, text: &str) {
        let mut err = io::stderr().lock();
        if self.shown {
            let _ = write!(err, "\r\x1b[K");
            self.shown = false;
        }
        let _ = writeln!(err, "procman: {text}");
    }

    fn draw(&mut self, c: &Counts, total: u64, input_done: bool, running: usize) {
        if !self.live {
            return;
        }
        self.last_draw = Instant::now();
        // Skipped and invalid lines count as done but not in the rate of jobs that ran.
        let ran = c.ok + c.failed + c.not_run + c.interrupted;
        let finished = ran + c.skipped + c.invalid;

        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            ran as f64 / elapsed
        } else {
            0.0
        };
        let eta = if input_done && rate > 0.0 && total >= finished {
            format!(
                ", ETA {}",
                crate::fmt_duration(
                    Duration::try_from_secs_f64((total - finished) as f64 / rate)
                        .unwrap_or(Duration::MAX)
                )
            )
        } else {
            String::new()
        };
        let more = if input_done { "" } else { "+" };
        let mut err = io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Kprocman: {finished}/{total}{more} done, {running} running, {} failed, {rate:.1} jobs/s{eta}",
            c.failed + c.invalid
        );
        let _ = err.flush();
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            let _ = write!(io::stderr().lock(), "\r\x1b[K");
            self.shown = false;
        }
    }
}

fn paths_of(r: &JobRecord) -> String {
    let mut s = String::new();
    if let Some(l) = &r.log_file {
        s.push_str(&format!("; log {}", l.display()));
    }
    if let Some(e) = &r.error_file {
        if Some(e) != r.log_file.as_ref() {
            s.push_str(&format!("; errors {}", e.display()));
        }
    }
    s
}

pub fn main(argv: Vec<OsString>, blocked: sig::Blocked) -> i32 {
    let o = match parse(argv) {
        Ok(o) => o,
        Err(e) if e.is_help() => {
            crate::print_help(crate::BATCH_USAGE);
            return 0;
        }
        Err(e) => {
            eprintln!("procman: {e}");
            return OWN_ERROR;
        }
    };
    // A log directory that cannot be one is reported once here, not once per job.
    if let Some(dir) = &o.log_dir {
        let bad = match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => Some("it exists and is not a directory".to_owned()),
            Err(e) if e.kind() != io::ErrorKind::NotFound => Some(e.to_string()),
            _ => None,
        };
        if let Some(why) = bad {
            eprintln!("procman: cannot use log directory {}: {why}", dir.display());
            return OWN_ERROR;
        }
    }
    let input: Box<dyn Iterator<Item = Item> + Send> = match (&o.command, o.file.as_deref()) {
        (Some(words), _) => {
            let template = match inputs::Template::parse(words.clone(), o.nul) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("procman: {e}");
                    return OWN_ERROR;
                }
            };
            // Without ::: or ::::, the arguments come from stdin, one per line (or per NUL).
            let from_stdin = template.sources.is_empty();
            if from_stdin && io::stdin().is_terminal() {
                eprintln!(
                    "procman: batch: no arguments for the command: give ::: ARGS, :::: FILE, \
                     or pipe them into stdin"
                );
                return OWN_ERROR;
            }
            inputs::template_items(template, from_stdin, o.nul)
        }
        (None, None) => inputs::job_lines(BufReader::new(io::stdin())),
        (None, Some(f)) if f == "-" => inputs::job_lines(BufReader::new(io::stdin())),
        (None, Some(f)) => match File::open(f) {
            Ok(file) => inputs::job_lines(BufReader::new(file)),
            Err(e) => {
                eprintln!(
                    "procman: cannot open job file {}: {e}",
                    Path::new(f).display()
                );
                return OWN_ERROR;
            }
        },
    };
    let succeeded = match (&o.joblog, o.resume) {
        (Some(path), Some(resume)) => match recorded_in(path, resume) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("procman: cannot read joblog {}: {e}", path.display());
                return OWN_ERROR;
            }
        },
        _ => HashMap::new(),
    };
    let mut joblog = match &o.joblog {
        Some(path) => match Joblog::open(path, o.resume.is_some()) {
            Ok(j) => Some(j),
            Err(e) => {
                eprintln!("procman: cannot open joblog {}: {e}", path.display());
                return OWN_ERROR;
            }
        },
        None => None,
    };
    let mut builder = ProcessManager::builder().limit(o.jobs);
    if let Some(g) = o.grace {
        builder = builder.grace(g);
    }
    let manager = match builder.build() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("procman: cannot start: {e}");
            return OWN_ERROR;
        }
    };
    let (tx, rx) = unbounded();
    sig::forward(blocked, tx.clone(), Msg::Signal);
    let gate = Arc::new(Shared::default());
    if o.halt.is_some() {
        gate.lock().permits = Some(o.jobs);
    }
    let labels: Labels = Arc::default();
    let reader = Reader {
        labels: labels.clone(),
        manager: manager.handle(),
        tx,
        gate: gate.clone(),
        options: o.clone(),
        succeeded,
    };
    // Not joined: a reader blocked on a terminal or pipe must not keep the tool alive.
    if let Err(e) = thread::Builder::new()
        .name("procman-reader".into())
        .spawn(move || reader.run(input))
    {
        eprintln!("procman: cannot start the reader thread: {e}");
        return OWN_ERROR;
    }

    // Job output on the terminal and a live line would garble each other: only when asked.
    let live = !o.quiet
        && o.progress
            .unwrap_or_else(|| o.output == Output::Files && io::stderr().is_terminal());
    let start = Instant::now();
    let mut ui = Ui {
        live,
        shown: false,
        start,
        last_draw: start,
    };
    let mut c = Counts::default();
    let mut input_done = false;
    let mut own_error = false;
    let mut interrupted: Option<i32> = None;
    let mut stopping = false;
    let mut failures: Vec<String> = Vec::new();
    // The status of the job (or invalid line) the batch halted on.
    let mut halt_status: Option<i32> = None;
    loop {
        let submitted = gate.lock().submitted;
        if (input_done || stopping) && c.done == submitted {
            break;
        }
        let msg = if live {
            let wait = REDRAW.saturating_sub(ui.last_draw.elapsed());
            match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => break,
            }
        };
        let mut halt_now = false;
        match msg {
            None => {}
            Some(Msg::Skipped) => c.skipped += 1,
            Some(Msg::Warning(w)) => ui.say(&w),
            Some(Msg::Invalid(m, halts)) => {
                c.invalid += 1;
                ui.say(&format!("invalid job, {m}"));
                failures.push(format!("invalid job, {m}"));
                if let Some(when) = halts {
                    halt_now = when == When::Now;
                    stopping = true;
                    halt_status = Some(1);
                    ui.say("--halt: starting no new job");
                }
            }
            Some(Msg::InputDone) => input_done = true,
            Some(Msg::ReadError(e)) => {
                ui.say(&format!("cannot read the job file further: {e}"));
                input_done = true;
                own_error = true;
            }
            Some(Msg::Signal(s)) if interrupted.is_none() => {
                interrupted = Some(s);
                ui.say(&format!(
                    "{}: stopping; killing the running jobs",
                    procman::signal_name(s).unwrap_or("signal")
                ));
                stopping = true;
                halt_now = true;
            }
            // A second signal while stopping changes nothing: the kills are under way.
            Some(Msg::Signal(_)) => {}
            Some(Msg::Done(mut f)) => {
                c.done += 1;
                if f.record.status == JobStatus::DependencyFailed {
                    if let Some(e) = f.record.error.as_deref() {
                        if let Some(named) = name_dependency(e, &labels) {
                            f.record.error = Some(named);
                        }
                    }
                }
                let r = &f.record;
                let not_run = r.status == JobStatus::Cancelled
                    || (stopping && r.status == JobStatus::DependencyFailed);
                // Killed because we were told to stop: interrupted, not a failure of its own
                // (the joblog still records it, so --resume runs it again).
                let interrupted_job = stopping && r.status == JobStatus::Killed;
                if let (Some(log), Some(entry)) = (joblog.as_mut(), joblog_entry(&f)) {
                    if let Err(e) = log.record(&entry) {
                        ui.say(&format!(
                            "cannot write the joblog: {e}; it is no longer written"
                        ));
                        joblog = None;
                        own_error = true;
                    }
                }
                // A template's jobs have no lines: job N is the N-th argument set.
                let head = if o.command.is_some() {
                    format!("job {}", f.seq)
                } else {
                    format!("job {} (line {})", f.seq, f.line)
                };
                if not_run {
                    c.not_run += 1;
                } else if interrupted_job {
                    c.interrupted += 1;
                    ui.say(&format!("{head} interrupted: {}", f.command));
                } else if r.status.is_success() {
                    c.ok += 1;
                    if !live && !o.quiet {
                        ui.say(&format!(
                            "{head} ok, {}: {}",
                            crate::fmt_duration(r.usage.map_or(Duration::ZERO, |u| u.wall)),
                            f.command
                        ));
                    }
                } else {
                    c.failed += 1;
                    if r.status == JobStatus::TimedOut {
                        c.timed_out += 1;
                    }
                    let text = format!(
                        "{head} FAILED, {}: {}{}",
                        crate::account(r),
                        f.command,
                        paths_of(r)
                    );
                    ui.say(&text);
                    failures.push(format!("{head} {}{}", r.describe_end(), paths_of(r)));
                }
                if let Some(when) = f.halts {
                    halt_now = when == When::Now;
                    stopping = true;
                    halt_status = Some(if r.status.is_success() {
                        0
                    } else {
                        crate::exit_code(r)
                    });
                    ui.say(&format!(
                        "--halt: {head} ends the batch; starting no new job"
                    ));
                }
            }
        }
        if stopping {
            gate.stop();
            if halt_now {
                // Blocks for at most the grace period; every handler has sent its record when
                // it returns, so the loop then drains them all.
                ui.clear();
                manager.shutdown(ShutdownMode::Cancel, None);
            } else {
                // The manager is paused: jobs waiting for a dependency or a retry would wait for
                // ever, so they are cancelled. Not the other pending ones: those were admitted
                // before the halt and are being spawned (a job handed to a worker is still
                // "pending" until it has spawned); `soon` lets them run.
                let labels = labels.lock().expect("labels");
                for id in manager.pending_processes() {
                    if labels.get(&id.0).is_some_and(|l| l.1) {
                        // The batch never deletes jobs, so every listed id is known.
                        let _ = manager.kill_process(id);
                    }
                }
            }
        }
        if live && (ui.last_draw.elapsed() >= REDRAW) {
            let running = manager.snapshot().count(JobStatus::Running);
            let submitted = gate.lock().submitted;
            ui.draw(&c, submitted + c.skipped + c.invalid, input_done, running);
        }
    }
    ui.clear();
    let total = c.ok + c.failed + c.not_run + c.interrupted + c.skipped + c.invalid;
    let mut summary = format!(
        "{total} job{}: {} succeeded, {} failed",
        if total == 1 { "" } else { "s" },
        c.ok,
        c.failed + c.invalid
    );
    if c.timed_out > 0 {
        summary.push_str(&format!(" ({} timed out)", c.timed_out));
    }
    if c.invalid > 0 {
        summary.push_str(&format!(
            ", {} invalid line{}",
            c.invalid,
            if c.invalid == 1 { "" } else { "s" }
        ));
    }
    if c.skipped > 0 {
        summary.push_str(&format!(
            ", {} skipped ({})",
            c.skipped,
            match o.resume {
                Some(Resume::Failed) => "succeeded before",
                _ => "in the joblog",
            }
        ));
    }
    if c.interrupted > 0 {
        summary.push_str(&format!(", {} interrupted", c.interrupted));
    }
    if c.not_run > 0 {
        summary.push_str(&format!(", {} not run", c.not_run));
    }
    summary.push_str(&format!(" in {}", crate::fmt_duration(start.elapsed())));
    if !o.quiet || !failures.is_empty() || interrupted.is_some() {
        ui.say(&summary);
    }
    for f in failures.iter().take(20) {
        ui.say(&format!("  {f}"));
    }
    if failures.len() > 20 {
        ui.say(&format!("  ... and {} more", failures.len() - 20));
    }
    drop(manager);
    if let Some(s) = interrupted {
        return 128 + s;
    }
    if own_error {
        return OWN_ERROR;
    }
    if let Some(rule) = o.halt {
        let tally = Tally {
            failed: c.failed + c.invalid,
            succeeded: c.ok,
        };
        return rule.exit_status(halt_status, tally, gate.lock().total);
    }
    (c.failed + c.invalid).min(MAX_FAILED_STATUS) as i32
}
