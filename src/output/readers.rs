//! The reader side of an observed job: what is set up before the spawn ([`ObservedSetup`]),
//! the reader threads (one per pipe, one follower for the files: `pipe.rs`, `follow.rs`), and
//! how the worker collects them ([`Readers::finish`]). A reader that panics kills its job
//! ([`JobKill`]).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver};

use super::files::OpenError;
use super::follow::follow_files;
use super::pipe::copy_observed;
use crate::deadline;
use crate::error::panic_message;
use crate::job::JobCore;
use crate::record::JobId;
use crate::spec::{Observer, Stream};
use crate::sys::{self, Waker};

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

/// Runs `f` (calls of job `id`'s observer) marked as that job's observer of manager `manager`
/// ([`observing`]), on a thread that serves many jobs (the Slurm poller); the mark before is
/// put back after, also when `f` unwinds.
pub(crate) fn as_observer<R>(manager: u64, id: JobId, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<(u64, JobId)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            OBSERVING.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(OBSERVING.with(|o| o.replace(Some((manager, id)))));
    f()
}

/// How a reader thread that panicked ends its job (the panic rule, DESIGN.md): it asks the
/// job's worker to kill it, as `kill_process` would. Unread, a pipe would fill and block the
/// program for ever.
pub(crate) struct JobKill {
    core: Arc<JobCore>,
    waker: Waker,
}

impl JobKill {
    /// Kills the job of `core`, whose worker `waker` wakes.
    pub(crate) fn new(core: Arc<JobCore>, waker: Waker) -> JobKill {
        JobKill { core, waker }
    }

    fn kill(&self) {
        self.core.kill_requested.store(true, Ordering::SeqCst);
        self.waker.wake();
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

/// What the readers of an observed job will read, waiting for [`ObservedSetup::start`].
/// Every descriptor the readers need is made here, before the spawn, so that running out of
/// descriptors ends the job as `SpawnFailed` instead of killing a program already started.
pub(crate) struct ObservedSetup {
    /// Pipes' read ends, the file each one's bytes go to, and their stream.
    pipes: Vec<(File, Option<Arc<File>>, Stream)>,
    /// What tells the pipe readers to stop; made with the first pipe.
    pipe_stop: Option<Arc<Stop>>,
    /// Files the program writes itself, opened again for reading, and what follows them.
    follow: Option<FollowSetup>,
    observer: Observer,
}

/// The follower's inotify instance, the files it reads back (with their streams), and what
/// tells it the job's processes ended.
struct FollowSetup {
    inotify: sys::Inotify,
    files: Vec<(File, Stream)>,
    stop: Arc<Stop>,
}

impl ObservedSetup {
    /// Sets up the reading of an observed job's output, whose files are open: stdout is
    /// followed in the log file where it can be (`follow`), else goes through a pipe into it;
    /// stderr likewise, or as the log when merged. Returns the child's stdout and stderr.
    /// On failure, the message and the file to write it into (the error file, else the log).
    pub(super) fn wire(
        log: Option<File>,
        err: Option<File>,
        merge_error: bool,
        observer: &Observer,
        follow: bool,
    ) -> Result<(Option<File>, Option<File>, ObservedSetup), OpenError> {
        let mut setup = ObservedSetup {
            pipes: Vec::with_capacity(2),
            pipe_stop: None,
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
        // Stderr: merged into a followed log, it is the log (the program's own order, observed
        // as stdout); merged into a piped log, a second pipe into the same file; else like
        // stdout.
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
        Ok((stdout, stderr, setup))
    }

    /// Sets `file` up to be followed: `Ok(file)` to hand to the child as it is, or `Err(file)`
    /// back when it cannot be (no file, not a regular file, no inotify instance left, not
    /// Linux: `sys::FOLLOW_FILES`, or `follow` is off).
    fn follow_file(
        &mut self,
        file: Option<File>,
        stream: Stream,
        follow: bool,
    ) -> Result<File, Option<File>> {
        let Some(file) = file else { return Err(None) };
        if !follow || !sys::FOLLOW_FILES {
            return Err(Some(file));
        }
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
pub(super) struct Stop {
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

    pub(super) fn raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Readable once raised.
    pub(super) fn fd(&self) -> RawFd {
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
    follower: Option<(Receiver<ReadResult>, Arc<Stop>)>,
}

/// What a reader thread reports when it ends: its first read or copy error.
pub(super) type ReadResult = Result<(), ReadError>;

/// Why a reader thread ended badly.
pub(super) enum ReadError {
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
        if let Some((_, stop)) = &self.follower {
            stop.raise();
        }
    }
}

/// Hands lines to the observer, on the reader's thread. A panicking observer is reported and
/// not called again for this reader.
pub(super) struct Delivery {
    pub(super) id: JobId,
    pub(super) observer: Observer,
    pub(super) ok: bool,
}

impl Delivery {
    pub(super) fn call(&mut self, stream: Stream, line: &[u8]) {
        let (id, observer) = (self.id, &self.observer);
        #[cfg(test)]
        crate::fault::hit_here(crate::fault::READER);
        if self.ok && catch_unwind(AssertUnwindSafe(|| observer(id, stream, line))).is_err() {
            log::error!("job {id}: the output observer panicked; it is not called again");
            self.ok = false;
        }
    }
}
