//! A job's standard streams: the input file, the log and error files, and — only when the output
//! is observed — the threads that hand its lines to the observer.
//!
//! Unobserved output (the default) is handed to the child as open files: the kernel writes them,
//! nothing is copied, no pipe can fill up. Observed output ([`ObserveMode`](crate::ObserveMode)):
//! - `Files` (Linux): the child still writes its files itself; one follower thread per job
//!   reads them back as they grow (inotify while idle, every `FOLLOW_PACE` while output flows)
//!   and, once the job's processes are reaped, reads them to their size at that moment.
//! - `Pipes`, and any stream without a regular file behind it: one pipe and one reader thread
//!   per stream, copying to the file; completion waits for the readers' EOF at most the drain
//!   bound after the program was reaped, then they drain what is in the pipe and close it.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver};

use crate::deadline;
use crate::engine::dispatch::panic_message;
use crate::job::JobCore;
use crate::record::JobId;
use crate::spec::{Input, Observer, Stream, OBSERVER_LINE_CAP};
use crate::sys;

thread_local! {
    /// On a reader thread: the manager (its key, `Inner::key`) and the job whose
    /// observer the thread calls. Each reader thread serves one job, so any user code on it is
    /// that job's observer; `wait` on that job from here could never end (the job ends only
    /// after its readers), and is refused.
    static OBSERVING: Cell<Option<(u64, JobId)>> = const { Cell::new(None) };
}

/// The (manager, job) whose observer runs on this thread, if it is a reader thread.
pub(crate) fn observing() -> Option<(u64, JobId)> {
    OBSERVING.with(Cell::get)
}

/// How a reader thread that panicked ends its job (the panic rule, DESIGN.md): it asks the
/// job's worker to kill it, as `kill_process` would. Unread, a pipe would fill and block the
/// program for ever.
pub(crate) struct JobKill {
    core: Arc<JobCore>,
    #[cfg(target_os = "linux")]
    waker: Option<Arc<sys::Waker>>,
}

impl JobKill {
    pub(crate) fn new(
        core: Arc<JobCore>,
        #[cfg(target_os = "linux")] waker: Option<Arc<sys::Waker>>,
    ) -> JobKill {
        JobKill {
            core,
            #[cfg(target_os = "linux")]
            waker,
        }
    }

    fn kill(&self) {
        self.core.kill_requested.store(true, Ordering::SeqCst);
        #[cfg(target_os = "linux")]
        if let Some(w) = &self.waker {
            w.wake();
        }
    }

    /// Runs a reader's body; a panic in it becomes [`ReadError::Panic`] and kills the job.
    fn guard(&self, what: &str, body: impl FnOnce() -> ReadResult) -> ReadResult {
        catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            crate::fault::serve(&self.core.args);
            body()
        }))
        .unwrap_or_else(|p| {
            let msg = format!(
                "internal error: the output {what} thread panicked: {}",
                panic_message(&*p)
            );
            log::error!("job {}: {msg}; killing the job", self.core.id);
            self.kill();
            Err(ReadError::Panic(msg))
        })
    }
}

/// The child's three standard streams, plus the reader side when output is observed.
pub(crate) struct Streams {
    /// `None`: `/dev/null`.
    pub(crate) stdin: Option<File>,
    /// `None`: `/dev/null`.
    pub(crate) stdout: Option<File>,
    /// `None`: `/dev/null`.
    pub(crate) stderr: Option<File>,
    pub(crate) observed: Option<ObservedSetup>,
}

/// What the readers of an observed job will read, waiting for [`ObservedSetup::start`].
/// Every descriptor the readers need is made here, before the spawn, so that running out of
/// descriptors ends the job as `SpawnFailed` instead of killing a program already started.
pub(crate) struct ObservedSetup {
    /// Pipes' read ends, the file each one's bytes go to, and their stream.
    pipes: Vec<(File, Option<Arc<File>>, Stream)>,
    /// What tells the pipe readers to stop; made with the first pipe.
    pipe_stop: Option<Arc<Stop>>,
    /// Files the program writes itself, opened again for reading, and what follows them.
    #[cfg(target_os = "linux")]
    follow: Option<FollowSetup>,
    observer: Observer,
}

/// The follower's inotify instance, the files it reads back (with their streams), and what
/// tells it the job's processes ended.
#[cfg(target_os = "linux")]
struct FollowSetup {
    inotify: sys::Inotify,
    files: Vec<(File, Stream)>,
    stop: Arc<Stop>,
}

/// Which file a descriptor is open on: (device, inode).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FileId(u64, u64);

impl FileId {
    pub(crate) fn of(file: &File) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        file.metadata().ok().map(|m| FileId(m.dev(), m.ino()))
    }

    /// The file `path` names now (symbolic links followed), if it exists.
    pub(crate) fn at(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| FileId(m.dev(), m.ino()))
    }
}

/// What [`create_output_unless`] found at the path.
pub(crate) enum Output {
    /// Another file: opened for writing and truncated.
    New(File),
    /// The file `known[i]` (by device and inode, so through any alias: `./a` for `a`, a
    /// symbolic or hard link): closed again, neither truncated nor written.
    Known(usize),
}

/// Opens a file for writing output (parent directories created) unless it is one of `known`:
/// it is opened without truncation first and compared by device and inode, so an alias of
/// another of the job's files (the log, the input) is recognised before anything in it is lost.
/// A file that is none of them is then truncated (a FIFO or device is not: there is nothing to
/// truncate).
pub(crate) fn create_output_unless(path: &Path, known: &[Option<FileId>]) -> io::Result<Output> {
    // Nothing to compare with: truncate on open (O_TRUNC leaves a FIFO or a device alone).
    let compare = known.iter().any(Option::is_some);
    let open = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(!compare)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
    };
    // The parent directories only when the open says they are missing: no mkdir and stat per
    // job for a directory that exists (the common case).
    let file = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                std::fs::create_dir_all(parent)?;
                open()?
            }
            _ => return Err(e),
        },
        r => r?,
    };
    if !compare {
        return blocking(file).map(Output::New);
    }
    let meta = file.metadata()?;
    let id = {
        use std::os::unix::fs::MetadataExt;
        FileId(meta.dev(), meta.ino())
    };
    if let Some(i) = known.iter().position(|k| *k == Some(id)) {
        return Ok(Output::Known(i));
    }
    if meta.file_type().is_file() {
        file.set_len(0)?;
    }
    blocking(file).map(Output::New)
}

/// Opens a file to read from (the input file) without blocking: a FIFO with no writer would
/// otherwise block the worker in `open` for ever (the program then reads EOF at once).
fn open_input(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    blocking(file)
}

/// Clears `O_NONBLOCK`, which was only wanted for `open` (a FIFO opened for writing with no
/// reader then fails with ENXIO instead of blocking the worker for ever).
fn blocking(file: File) -> io::Result<File> {
    // Of the flags F_SETFL sets (O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME, O_NONBLOCK), the
    // callers opened the file with O_NONBLOCK only: setting none clears it in one call.
    // SAFETY: F_SETFL on a descriptor we own.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Opens what the job needs. On failure returns a message naming the file and the cause, and
/// the error file (else the log) if it could be opened, so the caller can write the failure into
/// it. `follow`: observed output goes to the files and is read back from them where it can
/// ([`ObserveMode::Files`](crate::ObserveMode)).
///
/// Files are compared by device and inode, whatever their paths: an error file that is the
/// log's file (`./log` for `log`, a symbolic or hard link) is merged into the log, as
/// `merge_error` does, instead of being opened a second time with its own offset (each
/// descriptor would overwrite the other's output); an output file that is the input file is
/// refused before it is truncated, and the input is left as it was.
pub(crate) fn open_streams(
    input: &Input,
    log_file: Option<&Path>,
    merge_error: bool,
    error_file: Option<&Path>,
    observer: Option<&Observer>,
    follow: bool,
) -> Result<Streams, (String, Option<File>)> {
    // The input first: an output file that is the input must be recognised before it is
    // truncated.
    let (input_path, input_file) = match input {
        Input::File(p) => (Some(p), Some(open_input(p))),
        _ => (None, None),
    };
    // Only a regular file can be destroyed by writing it: `/dev/null` or a terminal may be
    // both the input and an output.
    let input_id = match &input_file {
        Some(Ok(f)) if f.metadata().is_ok_and(|m| m.is_file()) => FileId::of(f),
        _ => None,
    };
    let is_input = |what: &str, p: &Path| {
        format!(
            "the {what} {} is the input file {}: refused, as writing it would destroy the \
             input (the file is left as it was)",
            p.display(),
            input_path.map_or_else(Default::default, |i| i.display().to_string())
        )
    };
    // A refusal does not stop the other output file from being opened: the message goes there.
    let mut refused = None;
    let log = match log_file {
        Some(p) => match create_output_unless(p, &[input_id]) {
            Ok(Output::New(f)) => Some(f),
            Ok(Output::Known(_)) => {
                refused = Some(is_input("log file", p));
                None
            }
            Err(e) => return Err((format!("cannot open log file {}: {e}", p.display()), None)),
        },
        None => None,
    };
    let share_log = |log: &File| {
        log.try_clone()
            .map_err(|e| (format!("cannot share the log file with stderr: {e}"), None))
    };
    let mut merge_error = merge_error;
    let err = match (merge_error, error_file, &log) {
        (true, _, Some(log)) => Some(share_log(log)?),
        (false, Some(p), _) => {
            let log_id = log.as_ref().and_then(FileId::of);
            match create_output_unless(p, &[input_id, log_id]) {
                Ok(Output::New(f)) => Some(f),
                Ok(Output::Known(0)) => {
                    refused.get_or_insert_with(|| is_input("error file", p));
                    None
                }
                // The log's file under another name: merged into the log.
                Ok(Output::Known(_)) => match &log {
                    Some(log) => {
                        merge_error = true;
                        Some(share_log(log)?)
                    }
                    None => None,
                },
                Err(e) => {
                    return Err((format!("cannot open error file {}: {e}", p.display()), log))
                }
            }
        }
        _ => None,
    };
    if let Some(msg) = refused {
        return Err((msg, err.or(log)));
    }
    let stdin = match (input, input_file) {
        (_, Some(Ok(f))) => Some(f),
        (_, Some(Err(e))) => {
            return Err((
                format!(
                    "cannot open input file {}: {e}",
                    input_path.map_or_else(Default::default, |p| p.display().to_string())
                ),
                err.or(log),
            ))
        }
        (Input::Bytes(b), None) => match sys::bytes_file(b) {
            Ok(f) => Some(f),
            Err(e) => return Err((format!("cannot prepare input bytes: {e}"), err.or(log))),
        },
        (_, None) => None,
    };
    let Some(observer) = observer else {
        return Ok(Streams {
            stdin,
            stdout: log,
            stderr: err,
            observed: None,
        });
    };
    let mut setup = ObservedSetup {
        pipes: Vec::with_capacity(2),
        pipe_stop: None,
        #[cfg(target_os = "linux")]
        follow: None,
        observer: observer.clone(),
    };
    // A failure is written into the error file, else the log, where one is at hand.
    let fail = |e: io::Error, to: Option<&Arc<File>>| {
        let file = to.and_then(|f| f.try_clone().ok());
        (format!("cannot create output pipes: {e}"), file)
    };
    // Stdout: followed in its file, else a pipe into it.
    let (stdout, out_file) = match setup.follow_file(log, Stream::Stdout, follow) {
        Ok(direct) => (Some(direct), None),
        Err(file) => {
            let file = file.map(Arc::new);
            match setup.add_pipe(file.clone(), Stream::Stdout) {
                Ok(w) => (Some(w), Some(file)),
                Err(e) => return Err(fail(e, err.map(Arc::new).as_ref().or(file.as_ref()))),
            }
        }
    };
    // Stderr: merged into a followed log, it is the log (the program's own order, observed as
    // stdout); merged into a piped log, a second pipe into the same file; else like stdout.
    let stderr = match (merge_error, out_file) {
        (true, None) => err,
        (true, Some(file)) => Some(
            setup
                .add_pipe(file.clone(), Stream::Stderr)
                .map_err(|e| fail(e, file.as_ref()))?,
        ),
        (false, out_file) => match setup.follow_file(err, Stream::Stderr, follow) {
            Ok(direct) => Some(direct),
            Err(file) => {
                let file = file.map(Arc::new);
                let log = out_file.flatten();
                Some(
                    setup
                        .add_pipe(file.clone(), Stream::Stderr)
                        .map_err(|e| fail(e, file.as_ref().or(log.as_ref())))?,
                )
            }
        },
    };
    Ok(Streams {
        stdin,
        stdout,
        stderr,
        observed: Some(setup),
    })
}

impl ObservedSetup {
    /// Sets `file` up to be followed: `Ok(file)` to hand to the child as it is, or `Err(file)`
    /// back when it cannot be (no file, not a regular file, no inotify instance left, not
    /// Linux, or `follow` is off).
    fn follow_file(
        &mut self,
        file: Option<File>,
        stream: Stream,
        follow: bool,
    ) -> Result<File, Option<File>> {
        let Some(file) = file else { return Err(None) };
        if !follow {
            return Err(Some(file));
        }
        #[cfg(target_os = "linux")]
        {
            let reader = match sys::reopen_regular_for_reading(&file) {
                Ok(r) => r,
                Err(_) => return Err(Some(file)),
            };
            let mut setup = match self.follow.take() {
                Some(f) => f,
                None => match sys::Inotify::new().and_then(|i| Ok((i, Stop::new()?))) {
                    Ok((inotify, stop)) => FollowSetup {
                        inotify,
                        files: Vec::with_capacity(2),
                        stop,
                    },
                    Err(e) => {
                        log::debug!("cannot follow the output files ({e}): using a pipe");
                        return Err(Some(file));
                    }
                },
            };
            let result = match setup.inotify.watch_once(&file) {
                Ok(()) => {
                    setup.files.push((reader, stream));
                    Ok(file)
                }
                Err(_) => Err(Some(file)),
            };
            self.follow = Some(setup);
            result
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = stream;
            Err(Some(file))
        }
    }

    /// A pipe whose bytes a reader will copy into `file`: returns the write end for the child.
    fn add_pipe(&mut self, file: Option<Arc<File>>, stream: Stream) -> io::Result<File> {
        if self.pipe_stop.is_none() {
            self.pipe_stop = Some(Stop::new()?);
        }
        let (r, w) = sys::pipe()?;
        self.pipes.push((r, file, stream));
        Ok(w)
    }

    /// Starts the reader threads: one per pipe, one for all followed files. Call after the
    /// child was spawned and the parent's copies of the pipes' write ends were dropped. Fails
    /// only if a thread cannot be started; the threads already started are then told to stop
    /// (they end on their own). A reader that panics kills the job through `kill`.
    /// `manager` is the manager's key, so that this manager's `wait` can tell its own job's
    /// observer ([`observing`]).
    pub(crate) fn start(self, id: JobId, manager: u64, kill: JobKill) -> io::Result<Readers> {
        let kill = Arc::new(kill);
        let (tx, rx) = bounded(self.pipes.len());
        let mut readers = Readers {
            threads: Vec::with_capacity(self.pipes.len()),
            done: rx,
            stop: self.pipe_stop.clone(),
            #[cfg(target_os = "linux")]
            follower: None,
        };
        if let Some(pipe_stop) = self.pipe_stop {
            for (pipe, file, stream) in self.pipes {
                let observer = self.observer.clone();
                let stop = pipe_stop.clone();
                let tx = tx.clone();
                let kill = kill.clone();
                readers.threads.push(
                    thread::Builder::new()
                        .name(format!("procman-out-{id}"))
                        .spawn(move || {
                            OBSERVING.with(|o| o.set(Some((manager, id))));
                            let r = kill.guard("reader", || {
                                copy_observed(id, stream, pipe, file.as_deref(), &observer, &stop)
                                    .map_err(ReadError::Io)
                            });
                            drop(kill);
                            let _ = tx.send(r);
                        })?,
                );
            }
        }
        #[cfg(target_os = "linux")]
        if let Some(FollowSetup {
            inotify,
            files,
            stop,
        }) = self.follow.filter(|f| !f.files.is_empty())
        {
            let observer = self.observer.clone();
            let s = stop.clone();
            let (tx, rx) = bounded(1);
            // The result is sent before the inotify instance is closed: closing one waits for
            // an SRCU grace period (4.5-5 ms measured with strace -T), which the job's
            // completion must not wait for. The thread is detached; the observer and the stop
            // are released before the result is sent.
            thread::Builder::new()
                .name(format!("procman-out-{id}"))
                .spawn(move || {
                    OBSERVING.with(|o| o.set(Some((manager, id))));
                    let r = kill.guard("follower", || {
                        follow_files(id, files, &inotify, &observer, &s).map_err(ReadError::Io)
                    });
                    drop((observer, s, kill));
                    let _ = tx.send(r);
                    drop(inotify);
                })?;
            readers.follower = Some((rx, stop));
        }
        Ok(readers)
    }
}

/// Tells reader threads to stop: a flag they check between reads (a reader that always finds
/// data never polls), and a pipe that wakes them from `poll`.
struct Stop {
    raised: AtomicBool,
    wake_r: File,
    wake_w: File,
}

impl Stop {
    fn new() -> io::Result<Arc<Stop>> {
        let (wake_r, wake_w) = sys::pipe()?;
        Ok(Arc::new(Stop {
            raised: AtomicBool::new(false),
            wake_r,
            wake_w,
        }))
    }

    fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        let _ = (&self.wake_w).write_all(b"x");
    }

    fn raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Readable once raised.
    fn fd(&self) -> RawFd {
        self.wake_r.as_raw_fd()
    }
}

/// The running reader threads of one job.
pub(crate) struct Readers {
    threads: Vec<thread::JoinHandle<()>>,
    done: Receiver<ReadResult>,
    /// What tells the pipe readers to stop; `None` when no stream is piped.
    stop: Option<Arc<Stop>>,
    /// Where the thread following the files sends its result (its first read error), and what
    /// tells it the job's processes ended.
    #[cfg(target_os = "linux")]
    follower: Option<(Receiver<ReadResult>, Arc<Stop>)>,
}

/// What a reader thread reports when it ends: its first read or copy error.
type ReadResult = Result<(), ReadError>;

/// Why a reader thread ended badly.
enum ReadError {
    /// A read or copy failed; the job goes on (the message lands in its record).
    Io(String),
    /// The thread panicked ("internal error: ..."); the job was killed.
    Panic(String),
}

impl Readers {
    /// Call once the job's processes were reaped. The follower reads the files to the size
    /// they have now and ends; pipe readers get at most `bound` to reach EOF, then are told to
    /// stop (they copy what the pipe holds at that moment and close it). Blocks until every
    /// observer call has returned. Returns the first read or copy error, if any, whether
    /// the bound was hit (a process outside the job's group still held a pipe), and the first
    /// reader's panic ("internal error: ..."), if one panicked.
    pub(crate) fn finish(mut self, bound: Duration) -> (Option<String>, bool, Option<String>) {
        let mut error = None;
        let mut panicked = None;
        let mut take = |r: ReadResult| match r {
            Ok(()) => {}
            Err(ReadError::Io(e)) => {
                error.get_or_insert(e);
            }
            Err(ReadError::Panic(e)) => {
                panicked.get_or_insert(e);
            }
        };
        #[cfg(target_os = "linux")]
        if let Some((result, stop)) = self.follower.take() {
            stop.raise();
            take(result.recv().unwrap_or_else(|_| {
                Err(ReadError::Panic(
                    "internal error: the output follower thread ended without a result".into(),
                ))
            }));
        }
        // The bound starts after the follower's catch-up: a slow observer of the files is not a
        // process holding a pipe.
        // A bound too long for the clock: no bound.
        let deadline = deadline::from_now(bound);
        let mut left = self.threads.len();
        let mut cut = false;
        while left > 0 {
            let next = match deadline {
                Some(d) => self.done.recv_deadline(d).map_err(drop),
                None => self.done.recv().map_err(drop),
            };
            match next {
                Ok(r) => {
                    left -= 1;
                    take(r);
                }
                Err(_) => break,
            }
        }
        if let (true, Some(stop)) = (left > 0, &self.stop) {
            cut = true;
            stop.raise();
            for r in self.done.iter().take(left) {
                take(r);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (error, cut, panicked)
    }
}

/// Dropped without [`Readers::finish`] (an error after `start`, an unwinding worker): every
/// reader is told to stop, so none outlives the job for long.
impl Drop for Readers {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.raise();
        }
        #[cfg(target_os = "linux")]
        if let Some((_, stop)) = &self.follower {
            stop.raise();
        }
    }
}

/// Hands lines to the observer, on the reader's thread. A panicking observer is reported and
/// not called again for this reader.
struct Delivery<'a> {
    id: JobId,
    observer: &'a Observer,
    ok: bool,
}

impl Delivery<'_> {
    fn call(&mut self, stream: Stream, line: &[u8]) {
        let (id, observer) = (self.id, self.observer);
        #[cfg(test)]
        crate::fault::hit_here(crate::fault::READER);
        if self.ok && catch_unwind(AssertUnwindSafe(|| observer(id, stream, line))).is_err() {
            log::error!("job {id}: the output observer panicked; it is not called again");
            self.ok = false;
        }
    }
}

/// How much of one followed file is read before the follower turns to the next one.
#[cfg(target_os = "linux")]
const FOLLOW_ROUND: u64 = 1 << 20;

/// While output flows, how long the follower waits before it reads the files again (instead of
/// a wake-up per write). 2, 10 and 20 ms measured alike on w2/w3 (docs/performance.md);
/// 10 ms bounds an observer's lag behind a fast writer.
#[cfg(target_os = "linux")]
const FOLLOW_PACE: Duration = Duration::from_millis(10);

/// The follower: reads the files the program writes as they grow (woken by inotify) and hands
/// their lines to the observer. Once told to stop, reads each file to the size it has then and
/// ends. Returns the first read error.
#[cfg(target_os = "linux")]
fn follow_files(
    id: JobId,
    files: Vec<(File, Stream)>,
    inotify: &sys::Inotify,
    observer: &Observer,
    stop: &Stop,
) -> Result<(), String> {
    struct Followed<'a> {
        file: File,
        stream: Stream,
        lines: LineSplitter,
        deliver: Delivery<'a>,
        offset: u64,
        failed: bool,
    }
    let mut followed: Vec<Followed> = files
        .into_iter()
        .map(|(file, stream)| Followed {
            file,
            stream,
            lines: LineSplitter::default(),
            deliver: Delivery {
                id,
                observer,
                ok: true,
            },
            offset: 0,
            failed: false,
        })
        .collect();
    let mut buf = vec![0u8; 64 * 1024];
    let mut error: Option<String> = None;
    // Reads `f` from its offset up to `limit` bytes more or EOF; true when it stopped at EOF.
    let read_some =
        |f: &mut Followed, limit: u64, buf: &mut [u8], error: &mut Option<String>| -> bool {
            let mut left = limit;
            while left > 0 && !f.failed {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match f.file.read(&mut buf[..want]) {
                    Ok(0) => return true,
                    Ok(n) => {
                        f.offset += n as u64;
                        left -= n as u64;
                        let (stream, deliver) = (f.stream, &mut f.deliver);
                        f.lines
                            .feed(&buf[..n], &mut |line| deliver.call(stream, line));
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        error.get_or_insert(format!("reading the {:?} file back: {e}", f.stream));
                        f.failed = true;
                    }
                }
            }
            f.failed
        };
    // While output flows, no watch is armed (the program's writes then cost it nothing) and
    // the files are read again every `FOLLOW_PACE`; once a look finds nothing new, the watches
    // are armed for one event each and the follower sleeps until a write or the stop. Where a
    // watch cannot be armed (no watch left for the user), the files are read every pace.
    let mut armed = true;
    let mut unwatched_warned = false;
    while !stop.raised() {
        let before: u64 = followed.iter().map(|f| f.offset).sum();
        let mut at_eof = true;
        for f in &mut followed {
            at_eof &= read_some(f, FOLLOW_ROUND, &mut buf, &mut error);
        }
        if !at_eof {
            continue;
        }
        let got = followed.iter().map(|f| f.offset).sum::<u64>() > before;
        if !got && !armed {
            // Armed first, then one more look: a write between the last read and the arming
            // is found by that look, a later one fires a watch.
            armed = true;
            for f in &followed {
                if let Err(e) = inotify.watch_once(&f.file) {
                    armed = false;
                    if !unwatched_warned {
                        unwatched_warned = true;
                        log::warn!(
                            "job {id}: cannot watch its {:?} file ({e}); reading it every {:?}",
                            f.stream,
                            FOLLOW_PACE
                        );
                    }
                }
            }
            if armed {
                continue;
            }
        }
        let polled = if got || !armed {
            sys::poll_readable(&[stop.fd()], Some(FOLLOW_PACE)).map(drop)
        } else {
            let r = sys::poll_readable(&[inotify.raw(), stop.fd()], None);
            inotify.drain();
            armed = false;
            r.map(drop)
        };
        if let Err(e) = polled {
            error.get_or_insert(format!("polling the output files: {e}"));
            break;
        }
    }
    // The job's processes are reaped: read what the files hold now, and no more (a process
    // that left the group may write on for ever).
    for f in &mut followed {
        match f.file.metadata() {
            Ok(m) => {
                read_some(f, m.len().saturating_sub(f.offset), &mut buf, &mut error);
            }
            Err(e) => {
                error.get_or_insert(format!("reading the {:?} file's size: {e}", f.stream));
            }
        }
        let (stream, deliver) = (f.stream, &mut f.deliver);
        f.lines.finish(&mut |line| deliver.call(stream, line));
    }
    error.map_or(Ok(()), Err)
}

/// One reader: pipe → file, and each line → observer. Once told to stop, reads what the pipe
/// holds at that moment and ends. Returns the first write error.
fn copy_observed(
    id: JobId,
    stream: Stream,
    mut pipe: File,
    file: Option<&File>,
    observer: &Observer,
    stop: &Stop,
) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = LineSplitter::default();
    let mut error: Option<String> = None;
    let mut delivery = Delivery {
        id,
        observer,
        ok: true,
    };
    let mut deliver = |line: &[u8]| delivery.call(stream, line);
    // The read end is non-blocking from the start: while output flows, each round is one read
    // and one write, and `poll` runs only when the pipe is empty (it was one poll per read).
    set_nonblocking(&pipe);
    // Once stopping: how much of what the pipe held at the stop is still to read (a process
    // outside the group may keep it full for ever).
    let mut left: Option<usize> = None;
    loop {
        if left.is_none() && stop.raised() {
            // Should FIONREAD fail, drain at most 1 MiB (a default pipe holds 64 KiB).
            left = Some(sys::unread_bytes(&pipe).unwrap_or(1 << 20));
        }
        let want = match left {
            Some(0) => break,
            Some(l) => l.min(buf.len()),
            None => buf.len(),
        };
        let n = match pipe.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if left.is_some() {
                    break;
                }
                if let Err(e) = sys::poll_readable(&[pipe.as_raw_fd(), stop.fd()], None) {
                    error.get_or_insert(format!("polling the {stream:?} pipe: {e}"));
                    break;
                }
                continue;
            }
            Err(e) => {
                error.get_or_insert(format!("reading the {stream:?} pipe: {e}"));
                break;
            }
        };
        if let Some(l) = &mut left {
            *l -= n.min(*l);
        }
        let data = &buf[..n];
        if let (Some(mut f), None) = (file, &error) {
            if let Err(e) = f.write_all(data) {
                // Keep draining the pipe so the program is not blocked; stop writing.
                error = Some(format!("writing {stream:?} to its file: {e}"));
            }
        }
        lines.feed(data, &mut deliver);
    }
    lines.finish(&mut deliver);
    error.map_or(Ok(()), Err)
}

fn set_nonblocking(f: &File) {
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Splits a byte stream into lines without `\n`, holding at most [`OBSERVER_LINE_CAP`] bytes of
/// an unfinished line: a longer line is delivered in pieces of exactly that size.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    /// The current line's last piece was delivered at the cap and nothing of it is pending: a
    /// newline now ends the line without an empty piece.
    cut: bool,
}

impl LineSplitter {
    pub(crate) fn feed(&mut self, mut data: &[u8], deliver: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            let nl = find_newline(data);
            let mut part = &data[..nl.unwrap_or(data.len())];
            if !self.pending.is_empty() {
                // Fill the pending piece; all of `part` goes in unless the piece reaches the cap.
                let take = (OBSERVER_LINE_CAP - self.pending.len()).min(part.len());
                self.pending.extend_from_slice(&part[..take]);
                part = &part[take..];
                if self.pending.len() == OBSERVER_LINE_CAP {
                    deliver(&self.pending);
                    self.pending.clear();
                    self.cut = true;
                }
            }
            // Nothing pending: full pieces, and a line's last piece, straight from `data`.
            if self.pending.is_empty() {
                while part.len() >= OBSERVER_LINE_CAP {
                    deliver(&part[..OBSERVER_LINE_CAP]);
                    part = &part[OBSERVER_LINE_CAP..];
                    self.cut = true;
                }
            }
            match nl {
                Some(i) => {
                    if !self.pending.is_empty() {
                        deliver(&self.pending);
                        self.pending.clear();
                    } else if !part.is_empty() || !self.cut {
                        deliver(part);
                    }
                    self.cut = false;
                    data = &data[i + 1..];
                }
                None => {
                    self.pending.extend_from_slice(part);
                    data = &[];
                }
            }
        }
    }

    pub(crate) fn finish(&mut self, deliver: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            deliver(&self.pending);
            self.pending.clear();
        }
        self.cut = false;
    }
}

/// The first `\n` in `data`: libc's `memchr` (vectorised), not a byte-at-a-time loop, which cost
/// ~0.4 s of CPU per GiB of observed output (docs/performance.md).
fn find_newline(data: &[u8]) -> Option<usize> {
    // SAFETY: memchr reads at most data.len() bytes from data's start; a non-null result points
    // into data.
    let p = unsafe { libc::memchr(data.as_ptr().cast(), b'\n' as libc::c_int, data.len()) };
    (!p.is_null()).then(|| p as usize - data.as_ptr() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = LineSplitter::default();
        for c in chunks {
            s.feed(c, &mut |l: &[u8]| out.push(l.to_vec()));
        }
        s.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_split_across_chunks() {
        assert_eq!(
            split(&[b"ab", b"c\nde\n\nf"]),
            vec![b"abc".to_vec(), b"de".to_vec(), b"".to_vec(), b"f".to_vec()]
        );
    }

    #[test]
    fn long_line_comes_in_capped_pieces() {
        let line = vec![b'x'; OBSERVER_LINE_CAP * 2 + 5];
        let out = split(&[&line, b"\n"]);
        let lens: Vec<usize> = out.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![OBSERVER_LINE_CAP, OBSERVER_LINE_CAP, 5]);
    }

    /// `data` cut at the given offsets (clamped to its length, in any order): the reads a
    /// reader might have made.
    fn cut_at(data: &[u8], cuts: Vec<usize>) -> Vec<&[u8]> {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        cuts.sort();
        let mut chunks = Vec::with_capacity(cuts.len() + 1);
        let mut last = 0;
        for c in cuts {
            chunks.push(&data[last..c]);
            last = c;
        }
        chunks.push(&data[last..]);
        chunks
    }

    /// The splitter before the fast path (byte-at-a-time, everything through `pending`): the
    /// model the fast path must match piece for piece.
    fn split_model(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let push = |pending: &mut Vec<u8>, mut part: &[u8], out: &mut Vec<Vec<u8>>| {
            while pending.len() + part.len() > OBSERVER_LINE_CAP {
                let take = OBSERVER_LINE_CAP - pending.len();
                pending.extend_from_slice(&part[..take]);
                out.push(std::mem::take(pending));
                part = &part[take..];
            }
            pending.extend_from_slice(part);
        };
        for c in chunks {
            let mut data = *c;
            while !data.is_empty() {
                match data.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        push(&mut pending, &data[..i], &mut out);
                        out.push(std::mem::take(&mut pending));
                        data = &data[i + 1..];
                    }
                    None => {
                        push(&mut pending, data, &mut out);
                        data = &[];
                    }
                }
            }
        }
        if !pending.is_empty() {
            out.push(pending);
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fast_path_matches_the_model(
            lines in proptest::collection::vec(
                (prop_oneof![0usize..4, (OBSERVER_LINE_CAP - 2)..(OBSERVER_LINE_CAP + 3),
                             (2 * OBSERVER_LINE_CAP - 1)..(2 * OBSERVER_LINE_CAP + 2)],
                 any::<bool>()), 0..6),
            cuts in proptest::collection::vec(0usize..(6 * OBSERVER_LINE_CAP), 0..8)) {
            let mut data = Vec::new();
            for (len, nl) in lines {
                data.extend(std::iter::repeat(b'x').take(len));
                if nl { data.push(b'\n'); }
            }
            let chunks = cut_at(&data, cuts);
            prop_assert_eq!(split(&chunks), split_model(&chunks));
        }
    }

    proptest! {
        #[test]
        fn pieces_rebuild_the_stream(data in proptest::collection::vec(any::<u8>(), 0..4000),
                                     cuts in proptest::collection::vec(0usize..4000, 0..8)) {
            let chunks = cut_at(&data, cuts);
            let lines = split(&chunks);
            // Without long lines every piece is a whole line: joining with \n gives the data back
            // (but for a final \n, which yields no empty last line).
            let mut joined = lines.join(&b'\n');
            if data.last() == Some(&b'\n') { joined.push(b'\n'); }
            prop_assert_eq!(joined, data);
        }
    }
}
