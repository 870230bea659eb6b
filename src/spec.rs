//! [`JobSpec`]: what to run and how.
//!
//! Building a spec never fails and never touches the file system; everything is checked when
//! the job is submitted (a typed [`StartError`](crate::StartError)) or when it is spawned
//! (a [`SpawnFailed`](crate::JobStatus::SpawnFailed) record naming the cause).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::record::{JobId, JobRecord};
use crate::watch::{Progress, ProgressParser};

/// A completion handler: called exactly once, on the dispatcher thread, with the final record.
pub type Handler = Box<dyn FnOnce(&JobRecord) + Send + 'static>;

/// A live-output observer: called on a reader thread with each line (without its `\n`) of one
/// stream. Lines longer than [`OBSERVER_LINE_CAP`] bytes arrive in pieces of at most that size.
pub type Observer = Arc<dyn Fn(JobId, Stream, &[u8]) + Send + Sync + 'static>;

/// The longest piece of a line handed to an [`Observer`] at once (64 KiB).
pub const OBSERVER_LINE_CAP: usize = 64 * 1024;

/// Which output stream a piece of observed output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output (the log file).
    Stdout,
    /// Standard error (the error file).
    Stderr,
}

/// Where the job's standard input comes from. Never inherited from the host.
#[derive(Clone, Debug, Default)]
pub(crate) enum Input {
    /// `/dev/null` (the default).
    #[default]
    Null,
    /// A file opened by procman and handed to the child: streamed by the kernel, never read
    /// into memory.
    File(PathBuf),
    /// Bytes held by the spec; at spawn the local backend copies them into a memfd (an unlinked
    /// temporary file off Linux) handed to the child, the Slurm backend into a file beside the
    /// log given to `sbatch --input`.
    Bytes(Arc<[u8]>),
}

/// Where the job's standard error goes.
#[derive(Clone, Debug, Default)]
pub(crate) enum ErrorOutput {
    /// `<log path without extension>_err.txt` when there is a log file, else `/dev/null`.
    #[default]
    Default,
    /// A file of its own.
    File(PathBuf),
    /// Into the log file, interleaved with stdout.
    MergeWithLog,
    /// Discarded.
    Null,
}

/// One edit of the job's environment, applied in order (the CCP4i2 `editEnv` cases).
#[derive(Clone, Debug)]
pub(crate) enum EnvEdit {
    Set(OsString, OsString),
    Remove(OsString),
    Clear,
}

/// Which outcomes of an attempt are retried (see [`JobSpec::retries`]). A kill by the user or a
/// cancelling shutdown is never retried.
// Exhaustive on purpose: callers build it with a literal (`..RetryOn::default()` keeps working
// when a field is added; `#[non_exhaustive]` would forbid that literal outside the crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryOn {
    /// Retry when the program could not be started.
    pub spawn_failure: bool,
    /// Retry when the program exited with a non-zero code.
    pub nonzero_exit: bool,
    /// Retry when the program was ended by a signal procman did not send.
    pub crash: bool,
    /// Retry when the attempt ran past its timeout.
    pub timeout: bool,
}

impl Default for RetryOn {
    /// Every outcome but success is retried.
    fn default() -> Self {
        RetryOn {
            spawn_failure: true,
            nonzero_exit: true,
            crash: true,
            timeout: true,
        }
    }
}

/// Retry policy: how many more attempts, how long to wait between them, which outcomes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Retry {
    pub(crate) count: u32,
    pub(crate) backoff: Duration,
    pub(crate) on: RetryOn,
}

/// Describes one job: program, arguments, input, log files, environment, timeout, handler and
/// scheduling options. Built by value:
///
/// ```
/// use procman::JobSpec;
/// use std::time::Duration;
///
/// let spec = JobSpec::new("refmac5")
///     .args(["HKLIN", "in.mtz", "HKLOUT", "out.mtz"])
///     .input_file("keywords.txt")
///     .log_file("job_1/log.txt")          // stderr goes to job_1/log_err.txt
///     .timeout(Duration::from_secs(3600))
///     .on_finish(|record| println!("job {} ended: {}", record.id, record.status));
/// ```
///
/// Building never blocks and never fails; problems are reported when the job is submitted
/// ([`StartError`](crate::StartError)) or spawned ([`JobStatus::SpawnFailed`](crate::JobStatus)).
pub struct JobSpec {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) interpreter: Option<OsString>,
    pub(crate) input: Input,
    pub(crate) log_file: Option<PathBuf>,
    pub(crate) error_output: ErrorOutput,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) env: Vec<EnvEdit>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) grace: Option<Duration>,
    pub(crate) handler: Option<Handler>,
    pub(crate) observer: Option<Observer>,
    pub(crate) progress: Option<ProgressParser>,
    pub(crate) priority: i32,
    pub(crate) after: Vec<JobId>,
    pub(crate) retry: Retry,
    pub(crate) cpus: u32,
    pub(crate) memory: u64,
    pub(crate) kill_leftovers: Option<bool>,
    /// `memory.max` of the job's cgroup (issue 15).
    pub(crate) memory_limit: Option<u64>,
    /// `cpu.weight` of the job's cgroup.
    pub(crate) cpu_weight: Option<u32>,
}

impl JobSpec {
    /// A job that runs `program` (looked up in `PATH` when it has no `/`), with no arguments,
    /// stdin from `/dev/null`, output discarded, no timeout and no handler.
    pub fn new(program: impl AsRef<OsStr>) -> JobSpec {
        JobSpec {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            interpreter: None,
            input: Input::Null,
            log_file: None,
            error_output: ErrorOutput::Default,
            cwd: None,
            env: Vec::new(),
            timeout: None,
            grace: None,
            handler: None,
            observer: None,
            progress: None,
            priority: 0,
            after: Vec::new(),
            retry: Retry::default(),
            cpus: 0,
            memory: 0,
            kill_leftovers: None,
            memory_limit: None,
            cpu_weight: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> JobSpec {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> JobSpec
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Runs the program through an interpreter: argv = `interpreter program args...`
    /// (CCP4i2's `interpreter` argument, e.g. `python3 script.py`).
    pub fn interpreter(mut self, interpreter: impl AsRef<OsStr>) -> JobSpec {
        self.interpreter = Some(interpreter.as_ref().to_owned());
        self
    }

    /// Standard input from a file (a keyword file). The file is opened when the job is spawned
    /// and handed to the child, so it is streamed, never read into memory. An unreadable file
    /// makes the job `SpawnFailed`.
    ///
    /// The input file cannot also be an output (the log or error file) when it is a regular
    /// file: opening the output would truncate it (`/dev/null`, a terminal or a FIFO may be
    /// both). The same path (up to `.` components: `./in.txt` is `in.txt`) is
    /// refused at submission with [`StartError::InputIsOutput`](crate::StartError); the same
    /// file under another name (a symbolic or hard link, `../dir/in.txt`, found by device and
    /// inode when the job is spawned, before any output is opened for writing) ends the job as
    /// `SpawnFailed`, with the reason written into the other output file if there is one. Either
    /// way the input file is left exactly as it was.
    pub fn input_file(mut self, path: impl AsRef<Path>) -> JobSpec {
        self.input = Input::File(path.as_ref().to_owned());
        self
    }

    /// Standard input from bytes, held in memory by the spec (and its retries). When the job
    /// is spawned they are copied into an anonymous file (a memfd on Linux, an unlinked
    /// temporary file elsewhere) that is handed to the child as its stdin, like an
    /// [`input_file`](Self::input_file): no pipe and no writer thread, so a program that exits
    /// without reading them costs nothing and no SIGPIPE can reach the host; the program sees a
    /// regular, seekable file. Under the Slurm backend they are written to a hidden file
    /// `.procman-<pid>-<id>-<attempt>.stdin` next to the log (else in the working directory),
    /// passed to `sbatch --input` and removed when the attempt ends. Each attempt gets a fresh
    /// copy. A failure to create or write the copy makes the job `SpawnFailed`, naming the
    /// cause.
    pub fn input_bytes(mut self, bytes: impl Into<Vec<u8>>) -> JobSpec {
        self.input = Input::Bytes(bytes.into().into());
        self
    }

    /// Standard input from `/dev/null` (the default: stdin is never inherited from the host).
    pub fn stdin_null(mut self) -> JobSpec {
        self.input = Input::Null;
        self
    }

    /// Standard output to this file. Parent directories are created; the file is truncated.
    /// Unless [`error_file`](Self::error_file) or another error setting says otherwise, standard
    /// error goes to the same path without its extension plus `_err.txt` (the CCP4i2 convention:
    /// `job_1/log.txt` → `job_1/log_err.txt`).
    ///
    /// An error file that is the log file (see [`error_file`](Self::error_file)) merges the two
    /// streams; an input file that is the log file is refused (see
    /// [`input_file`](Self::input_file)).
    pub fn log_file(mut self, path: impl AsRef<Path>) -> JobSpec {
        self.log_file = Some(path.as_ref().to_owned());
        self
    }

    /// Standard error to this file (parent directories created, truncated).
    ///
    /// When it is the log file, the streams are merged exactly as with
    /// [`merge_error_into_log`](Self::merge_error_into_log): one descriptor, one offset, the
    /// program's own order, observed as [`Stream::Stdout`] when the log is followed. That holds
    /// for the same path (up to `.` components, decided at submission; the record's
    /// `error_file` is then the log's path) and for the same file under another name (a
    /// symbolic or hard link, `../dir/log.txt`: compared by device and inode after the log was
    /// opened and before the error file is truncated). Opening one file twice would give two
    /// offsets, each overwriting the other's output. With retries, a merged file is kept once
    /// per attempt (`log.txt.attempt1`); a hard link to it is renamed too. An error file that is
    /// the input file is refused (see [`input_file`](Self::input_file)).
    pub fn error_file(mut self, path: impl AsRef<Path>) -> JobSpec {
        self.error_output = ErrorOutput::File(path.as_ref().to_owned());
        self
    }

    /// Standard error into the log file, interleaved with standard output as the program writes.
    pub fn merge_error_into_log(mut self) -> JobSpec {
        self.error_output = ErrorOutput::MergeWithLog;
        self
    }

    /// Standard error discarded.
    pub fn error_null(mut self) -> JobSpec {
        self.error_output = ErrorOutput::Null;
        self
    }

    /// The job's working directory. A missing directory makes the job `SpawnFailed`.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> JobSpec {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets one environment variable for the job.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> JobSpec {
        self.env.push(EnvEdit::Set(
            key.as_ref().to_owned(),
            value.as_ref().to_owned(),
        ));
        self
    }

    /// Removes one environment variable for the job.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> JobSpec {
        self.env.push(EnvEdit::Remove(key.as_ref().to_owned()));
        self
    }

    /// Starts the job from an empty environment; later [`env`](Self::env) calls add to it.
    /// (CCP4i2's `env` argument, which replaces the environment, is `env_clear` then `env`s.)
    pub fn env_clear(mut self) -> JobSpec {
        self.env.push(EnvEdit::Clear);
        self
    }

    /// Ends the job's whole process group when it runs longer than `timeout`: SIGTERM, then
    /// SIGKILL after the grace period. The job ends as `TimedOut`. Any `Duration` is accepted:
    /// one too long for the clock (`Duration::MAX`) is no timeout.
    pub fn timeout(mut self, timeout: Duration) -> JobSpec {
        self.timeout = Some(timeout);
        self
    }

    /// How long a job has between SIGTERM and SIGKILL when it is timed out or killed
    /// (default: the manager's, 2 s). Zero sends SIGKILL at once; a grace too long for the
    /// clock (`Duration::MAX`) never sends SIGKILL, so a program that ignores SIGTERM then runs
    /// on (and a shutdown waits for it).
    pub fn grace(mut self, grace: Duration) -> JobSpec {
        self.grace = Some(grace);
        self
    }

    /// The completion handler, called exactly once with the final record, on the manager's
    /// dispatcher thread, outside every lock and after the job's slot was released. A panic in
    /// it is caught, logged and recorded in [`JobRecord::handler_error`].
    pub fn on_finish(mut self, handler: impl FnOnce(&JobRecord) + Send + 'static) -> JobSpec {
        self.handler = Some(Box::new(handler));
        self
    }

    /// Observes the job's output live: `observer(id, stream, line)` is called on a reader
    /// thread for each line (without `\n`; long lines in pieces of at most
    /// [`OBSERVER_LINE_CAP`] bytes), in order within a stream; the log file holds a line before
    /// the observer gets it. The log files stay byte-exact. The job completes after the
    /// observer has returned from its last call, so a slow observer delays completion.
    ///
    /// How the output travels is the manager's [`ObserveMode`](crate::ObserveMode): on Linux
    /// the program writes its files itself and a follower reads them back (the observer never
    /// slows the program; stderr merged into the log is observed as [`Stream::Stdout`]);
    /// otherwise through pipes and reader threads. A panicking observer is logged and not
    /// called again for that stream; the job is unaffected.
    pub fn observe(
        mut self,
        observer: impl Fn(JobId, Stream, &[u8]) + Send + Sync + 'static,
    ) -> JobSpec {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Reads the job's progress from its output: `parser(line)` is called with each line of
    /// both streams (without `\n`, as an [`observe`](Self::observe)r gets them) on the job's
    /// reader thread, and a line that tells the progress returns it. The latest progress is in
    /// [`Snapshot::live`](crate::Snapshot::live) and reaches subscribers as
    /// [`Event::Progress`](crate::Event::Progress) (lines that come faster than the engine
    /// takes them are coalesced: the latest wins). The job's output is observed as with
    /// `observe` (same threads, same modes); an observer set too gets every line after the
    /// parser. A panicking parser is logged and not called again. Local backend only (Slurm
    /// jobs are not observed).
    ///
    /// ```
    /// use procman::{JobSpec, Progress};
    ///
    /// // refmac prints "... cycle 3 of 10 ..."
    /// let spec = JobSpec::new("refmac5").progress(|line| {
    ///     let text = std::str::from_utf8(line).ok()?;
    ///     let rest = &text[text.find("cycle ")? + 6..];
    ///     let mut words = rest.split_whitespace();
    ///     let n: u64 = words.next()?.parse().ok()?;
    ///     (words.next()? == "of").then_some(())?;
    ///     let m: u64 = words.next()?.parse().ok()?;
    ///     Some(Progress::steps(n, m, format!("cycle {n} of {m}")))
    /// });
    /// ```
    pub fn progress(
        mut self,
        parser: impl Fn(&[u8]) -> Option<Progress> + Send + Sync + 'static,
    ) -> JobSpec {
        self.progress = Some(Arc::new(parser));
        self
    }

    /// Like [`progress`](Self::progress) with a parser shared between jobs.
    pub fn progress_parser(mut self, parser: ProgressParser) -> JobSpec {
        self.progress = Some(parser);
        self
    }

    /// Like [`observe`](Self::observe) with an observer shared between jobs.
    pub fn observer(mut self, observer: Observer) -> JobSpec {
        self.observer = Some(observer);
        self
    }

    /// Scheduling priority: higher-priority pending jobs start first; equal priorities start
    /// in submission order. Default 0.
    pub fn priority(mut self, priority: i32) -> JobSpec {
        self.priority = priority;
        self
    }

    /// Runs this job only after `job` finished successfully. If `job` ends in any other way,
    /// this job ends as `DependencyFailed` without starting. Unknown ids are rejected when the
    /// job is submitted.
    pub fn after(mut self, job: JobId) -> JobSpec {
        self.after.push(job);
        self
    }

    /// Retries the job up to `count` more times when an attempt ends in one of `on`'s outcomes,
    /// waiting `backoff` between attempts (no slot is held while waiting). Each earlier
    /// attempt's log and error files are kept, renamed with the suffix `.attempt<N>`. A backoff
    /// too long for the clock (`Duration::MAX`) is never over: the job stays pending until it
    /// is killed or a cancelling shutdown (or drop) cancels it; a draining shutdown waits for
    /// it up to its timeout.
    pub fn retries(mut self, count: u32, backoff: Duration, on: RetryOn) -> JobSpec {
        self.retry = Retry { count, backoff, on };
        self
    }

    /// Declares how many CPUs the job uses; it starts only when that many are free under the
    /// manager's CPU capacity. Default 0 (not counted).
    pub fn cpus(mut self, cpus: u32) -> JobSpec {
        self.cpus = cpus;
        self
    }

    /// Declares how much memory (bytes) the job uses; it starts only when that much is free
    /// under the manager's memory capacity. Default 0 (not counted).
    pub fn memory(mut self, bytes: u64) -> JobSpec {
        self.memory = bytes;
        self
    }

    /// Limits the memory of the job's whole process tree to `bytes` (its cgroup's
    /// `memory.max`, set before the program starts): past it the kernel reclaims, then its
    /// out-of-memory killer ends a process of the job, which the record then says
    /// ([`JobRecord::error`](crate::JobRecord::error)). A job with a limit and no
    /// [`memory`](Self::memory) declaration is admitted as declaring its limit.
    /// Needs [`Containment::Cgroup`](crate::Containment::Cgroup) and a host that delegates the
    /// memory controller; otherwise [`start_process`](crate::Handle::start_process) refuses
    /// the job ([`StartError::LimitUnavailable`](crate::StartError::LimitUnavailable)).
    pub fn memory_limit(mut self, bytes: u64) -> JobSpec {
        self.memory_limit = Some(bytes);
        self
    }

    /// The job's CPU weight (its cgroup's `cpu.weight`, 1 to 10000; 100 is every job's share
    /// by default). Needs [`Containment::Cgroup`](crate::Containment::Cgroup) and the cpu
    /// controller, like [`memory_limit`](Self::memory_limit); a weight outside 1..=10000, or
    /// no such controller, is refused at submission
    /// ([`StartError::LimitUnavailable`](crate::StartError::LimitUnavailable)).
    pub fn cpu_weight(mut self, weight: u32) -> JobSpec {
        self.cpu_weight = Some(weight);
        self
    }

    /// The memory the scheduler counts for the job: its declaration, else its limit.
    pub(crate) fn declared_memory(&self) -> u64 {
        match (self.memory, self.memory_limit) {
            (0, Some(limit)) => limit,
            (m, _) => m,
        }
    }

    /// Whether processes left in the job's process group when its program exits are killed
    /// (default: the manager's setting, on). See DESIGN.md, "Leftover processes".
    pub fn kill_leftovers(mut self, yes: bool) -> JobSpec {
        self.kill_leftovers = Some(yes);
        self
    }

    /// Whether an [`on_finish`](Self::on_finish) handler is set (the plugin layer owns that
    /// slot and refuses a spec that fills it).
    pub(crate) fn has_handler(&self) -> bool {
        self.handler.is_some()
    }

    /// This spec with `log_file` as its log file and `cwd` as its working directory where it
    /// has none of its own (a plugin's defaults: `log.txt` in its work directory).
    pub(crate) fn or_log_file_and_cwd(mut self, log_file: &Path, cwd: &Path) -> JobSpec {
        if self.log_file.is_none() {
            self = self.log_file(log_file);
        }
        if self.cwd.is_none() {
            self = self.cwd(cwd);
        }
        self
    }

    /// Whether standard error goes into the log file: asked for, or an error file whose path is
    /// the log's (see [`same_path`]).
    pub(crate) fn merges_error(&self) -> bool {
        match (&self.error_output, &self.log_file) {
            (ErrorOutput::MergeWithLog, _) => true,
            (ErrorOutput::File(e), Some(l)) => same_path(e, l),
            _ => false,
        }
    }

    /// The error file path this spec resolves to, applying the `_err.txt` convention.
    pub(crate) fn resolved_error_file(&self) -> Option<PathBuf> {
        match &self.error_output {
            ErrorOutput::Default => self.log_file.as_deref().map(default_error_file),
            ErrorOutput::File(p) => Some(p.clone()),
            ErrorOutput::MergeWithLog => self.log_file.clone(),
            ErrorOutput::Null => None,
        }
    }
}

/// Whether two paths name the same file by their text alone: equal up to `.` components,
/// repeated and trailing separators (`./a/b` is `a//b/`). `..` is kept: through a symbolic
/// link it need not lead back. Files that are the same only on disk are compared by device and
/// inode when the job is spawned.
pub(crate) fn same_path(a: &Path, b: &Path) -> bool {
    use std::path::Component;
    let a = a.components().filter(|c| *c != Component::CurDir);
    a.eq(b.components().filter(|c| *c != Component::CurDir))
}

/// `dir/log.txt` → `dir/log_err.txt`; `dir/log` → `dir/log_err.txt`.
pub(crate) fn default_error_file(log: &Path) -> PathBuf {
    let mut name = log.file_stem().unwrap_or_default().to_owned();
    name.push("_err.txt");
    log.with_file_name(name)
}

impl fmt::Debug for JobSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("interpreter", &self.interpreter)
            .field("log_file", &self.log_file)
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .field("priority", &self.priority)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_path_ignores_only_dot_components_and_separators() {
        assert!(same_path(Path::new("a/b"), Path::new("./a/./b")));
        assert!(same_path(Path::new("a//b/"), Path::new("a/b")));
        assert!(same_path(Path::new("/x/y"), Path::new("/x/./y")));
        assert!(!same_path(Path::new("a/../b"), Path::new("b")));
        assert!(!same_path(Path::new("/a"), Path::new("a")));
        assert!(!same_path(Path::new("a/b"), Path::new("a/c")));
    }

    #[test]
    fn error_file_follows_the_ccp4i2_convention() {
        assert_eq!(
            default_error_file(Path::new("a/b/log.txt")),
            Path::new("a/b/log_err.txt")
        );
        assert_eq!(
            default_error_file(Path::new("log")),
            Path::new("log_err.txt")
        );
        assert_eq!(
            default_error_file(Path::new("/x/y.tar.gz")),
            Path::new("/x/y.tar_err.txt")
        );
    }
}
