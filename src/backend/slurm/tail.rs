//! Live output of Slurm jobs: the poller thread reads the log and error files of every observed
//! job (an output observer or a progress parser) as Slurm's node writes them on the shared file
//! system, and hands their lines on, as the local `Files` mode does (`output/follow.rs`'s
//! [`Followed`] reads each file). No thread per job: the poller looks at each job's files every
//! [`PACE`] between its rounds; a job nobody observes has no [`Tail`] and costs nothing. No
//! descriptor is held between looks: a look at a file is a `stat`, and a file that grew is
//! opened (on a network file system an open fetches the file's current size), read from where
//! it was and closed.
//!
//! Once Slurm reports the job ended (or its step's `srun` exited), the files are read until
//! they are all there and nothing new came for the lag
//! ([`SlurmOptions::output_lag`](super::SlurmOptions::output_lag)), at most the lag plus
//! [`APPEAR`] after the end; then the last line (without its newline, if
//! so) is handed on and the attempt ends. The observer has returned from its last call when the
//! job completes, as for a local job.
//!
//! A [`Tail`] takes a job and its files' paths, so any way onto Slurm (batch jobs, job steps,
//! array tasks) follows its output the same way: make one with [`Tail::new`], call
//! [`Tail::look`] when [`Tail::due`], [`Tail::ended`] at the end, then [`Tail::drained`] until it
//! is true, and only then end the attempt.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Later;
use crate::deadline;
use crate::job::{AttemptEnd, JobCore};
use crate::output::{as_observer, with_progress, Followed, ProgressSlot};
use crate::record::JobId;
use crate::spec::{Observer, Stream};
use crate::sys::Waker;

/// How often a running job's files are read again (while a look finds more than [`ROUND`], at
/// once).
pub(super) const PACE: Duration = Duration::from_millis(100);

/// How much of one file one look reads, so that one chatty job does not hold up the others.
const ROUND: u64 = 1 << 20;

/// How long after a job's end (beyond the lag) a file not there yet is waited for.
pub(super) const APPEAR: Duration = Duration::from_secs(2);

/// Opens a followed file for reading, never blocking: a FIFO put in its place is not read.
fn open(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(std::io::Error::other("not a regular file"))
    }
}

/// One file of the job: its path, and once it could be opened, how far it was read.
struct Source {
    path: PathBuf,
    stream: Stream,
    read: Option<Followed>,
    /// The file was there at a look.
    seen: bool,
}

/// After the job's end: when the last new bytes came, and when to stop waiting for more.
struct Drain {
    quiet_since: Instant,
    until: Option<Instant>,
    lag: Duration,
}

/// The follower of one observed Slurm job's files (see the module's text).
pub(super) struct Tail {
    id: JobId,
    sources: Vec<Source>,
    observer: Observer,
    /// The progress parser's latest result, reported after each look.
    slot: Option<Arc<ProgressSlot>>,
    next: Instant,
    /// The last look stopped before the end of a file.
    more: bool,
    drain: Option<Drain>,
    /// The first read error, for the record.
    error: Option<String>,
}

impl Tail {
    /// The follower of job `core`'s output in `files` (absolute paths as Slurm writes them;
    /// stderr merged into the log is observed as stdout, as for a local job), or `None` when
    /// nobody observes it (no observer, no progress parser) or it has no file. Never blocks.
    pub(super) fn new(core: &JobCore, files: Vec<(PathBuf, Stream)>) -> Option<Tail> {
        if files.is_empty() {
            return None;
        }
        let (observer, slot) = match &core.progress {
            Some(parser) => {
                let slot = ProgressSlot::new(Waker::none());
                let observer = with_progress(core.observer.clone(), parser.clone(), slot.clone());
                (observer, Some(slot))
            }
            None => (core.observer.clone()?, None),
        };
        Some(Tail {
            id: core.id,
            sources: files
                .into_iter()
                .map(|(path, stream)| Source {
                    path,
                    stream,
                    read: None,
                    seen: false,
                })
                .collect(),
            observer,
            slot,
            next: Instant::now(),
            more: false,
            drain: None,
            error: None,
        })
    }

    /// Whether a look is due.
    pub(super) fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// When the next look is due.
    pub(super) fn next(&self) -> Instant {
        self.next
    }

    /// One look at the files: reads what they gained (opening those that were not there yet)
    /// and hands the whole lines to the observer, on this thread, marked as the job's observer
    /// (`output::observing`). True if anything was read: the caller then reports the job
    /// started if it was not yet, and calls [`Tail::report_progress`] (the engine keeps a
    /// running job's progress only). Blocks on the file system and for as long as the observer
    /// takes.
    pub(super) fn look(&mut self, later: &Later, buf: &mut [u8]) -> bool {
        let report = later.report();
        let key = report.as_ref().map_or(0, |r| r.key());
        let got = as_observer(key, self.id, || self.read(buf));
        let now = Instant::now();
        self.next = if self.more {
            now
        } else {
            deadline::after(now, PACE).unwrap_or(now)
        };
        got
    }

    /// Reads each file that grew: no descriptor is held between looks (a thousand jobs in
    /// flight would hold two thousand), a look at a file that did not grow is one `stat`, and
    /// every read opens the file again (on a network file system, an open fetches its size).
    fn read(&mut self, buf: &mut [u8]) -> bool {
        let mut got = false;
        self.more = false;
        for s in &mut self.sources {
            // Not there yet (a network file system's lag): looked for again next time.
            let Ok(size) = std::fs::metadata(&s.path).map(|m| m.len()) else {
                continue;
            };
            if s.read.as_ref().is_some_and(|f| f.offset() >= size) {
                // Nothing new (or the file was truncated under it: nothing is read again).
                s.seen = true;
                continue;
            }
            let Ok(file) = open(&s.path) else { continue };
            s.seen = true;
            let f = match s.read.as_mut() {
                Some(f) => {
                    if let Err(e) = f.reopened(file) {
                        self.error.get_or_insert(format!(
                            "reading the {:?} file {} again: {e}",
                            s.stream,
                            s.path.display()
                        ));
                        continue;
                    }
                    f
                }
                None => s.read.insert(Followed::new(
                    file,
                    s.stream,
                    self.id,
                    self.observer.clone(),
                )),
            };
            let before = f.offset();
            let at_eof = f.read_some(ROUND, buf, &mut self.error);
            f.close();
            got |= f.offset() > before;
            self.more |= !at_eof;
        }
        got
    }

    /// Reports the latest progress its parser found, if any since the last report.
    pub(super) fn report_progress(&self, later: &Later) {
        let Some(p) = self.slot.as_ref().and_then(|s| s.take()) else {
            return;
        };
        if let Some(report) = later.report() {
            report.progress(self.id, later.attempt(), p);
        }
    }

    /// The job ended (Slurm reported its end, or its step's `srun` exited): from now on
    /// [`Tail::drained`] reads what is left, waiting at most `lag` + [`APPEAR`] for it.
    pub(super) fn ended(&mut self, lag: Duration) {
        let now = Instant::now();
        self.drain = Some(Drain {
            quiet_since: now,
            until: deadline::after(now, lag.saturating_add(APPEAR)),
            lag,
        });
        self.next = now;
    }

    /// After [`Tail::ended`], when due: one more look; true once the output is complete (every
    /// file there and nothing new for the lag) or the wait is over. Then the last line without
    /// a newline has been handed on: the attempt can end. Blocks as [`Tail::look`] does.
    pub(super) fn drained(&mut self, later: &Later, buf: &mut [u8]) -> bool {
        let got = self.look(later, buf);
        self.report_progress(later);
        let now = Instant::now();
        let all_there = self.sources.iter().all(|s| s.seen);
        let Some(d) = self.drain.as_mut() else {
            return false;
        };
        if got {
            d.quiet_since = now;
        }
        let quiet = now.saturating_duration_since(d.quiet_since) >= d.lag;
        let over = d.until.is_some_and(|u| now >= u);
        if !(over || (all_there && quiet && !self.more)) {
            // Looked at again after the lag, or at the pace, whichever comes first.
            let again = deadline::after(d.quiet_since, d.lag).unwrap_or(self.next);
            self.next = self.next.min(again.max(now));
            return false;
        }
        self.finish(later);
        true
    }

    /// Hands on the last lines without a newline; says which files never appeared.
    fn finish(&mut self, later: &Later) {
        let key = later.report().map_or(0, |r| r.key());
        let id = self.id;
        for s in &mut self.sources {
            if let Some(f) = s.read.as_mut() {
                as_observer(key, id, || f.finish());
            }
            if !s.seen {
                log::warn!(
                    "job {id}: its {:?} file {} did not appear within {:?} of the job's end; \
                     its output was not observed",
                    s.stream,
                    s.path.display(),
                    self.drain
                        .as_ref()
                        .map_or(APPEAR, |d| d.lag.saturating_add(APPEAR))
                );
                self.error.get_or_insert(format!(
                    "the {:?} file {} was not there to read",
                    s.stream,
                    s.path.display()
                ));
            }
        }
        self.report_progress(later);
    }

    /// `end` with the first read error of the files in its record (unless it has an error).
    pub(super) fn into_end(self, end: AttemptEnd) -> AttemptEnd {
        match (end, self.error) {
            (
                AttemptEnd::Exited {
                    exit,
                    usage,
                    timed_out,
                    error: None,
                },
                Some(e),
            ) => AttemptEnd::Exited {
                exit,
                usage,
                timed_out,
                error: Some(format!("observing the output: {e}")),
            },
            (end, _) => end,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Weak;

    use parking_lot::Mutex;

    use super::*;
    use crate::backend::Report;
    use crate::config::Config;
    use crate::watch::{Progress, Usage, UsageSummary};

    /// A manager that is gone: `Later::report` is `None`, nothing is reported.
    struct Gone;
    impl Report for Gone {
        fn started(&self, _: JobId, _: u32, _: u32, _: Instant, _: Waker) {
            unreachable!()
        }
        fn queued(&self, _: JobId, _: u32, _: Option<u32>, _: u32) {
            unreachable!()
        }
        fn set_backend_state(&self, _: JobId, _: &str) {
            unreachable!()
        }
        fn usage(&self, _: JobId, _: u32, _: Usage, _: UsageSummary) {
            unreachable!()
        }
        fn progress(&self, _: JobId, _: u32, _: Progress) {
            unreachable!()
        }
        fn end_attempt(self: Arc<Self>, _: JobId, _: u32, _: AttemptEnd) {
            unreachable!()
        }
        fn config(&self) -> &Config {
            unreachable!()
        }
        fn key(&self) -> u64 {
            unreachable!()
        }
    }

    type Seen = Arc<Mutex<Vec<(Stream, Vec<u8>)>>>;

    fn tail(files: Vec<(PathBuf, Stream)>) -> (Tail, Seen, Later) {
        let mut core = super::super::test_core("sh", &[], Vec::new());
        let seen: Seen = Arc::default();
        let s = seen.clone();
        core.observer = Some(Arc::new(move |_, stream, line: &[u8]| {
            s.lock().push((stream, line.to_vec()));
        }));
        let engine: Weak<dyn Report> = Weak::<Gone>::new();
        let later = Later::new(&engine, core.id, 1);
        (Tail::new(&core, files).unwrap(), seen, later)
    }

    /// Looks again whenever due, until drained; how long that took.
    fn drain(t: &mut Tail, later: &Later) -> Duration {
        let (start, mut buf) = (Instant::now(), vec![0; 16]);
        while !t.drained(later, &mut buf) {
            // The follower's own pace (what the poller's tick does), not a synchronisation.
            std::thread::sleep(t.next().saturating_duration_since(Instant::now()));
        }
        start.elapsed()
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("procman-tail-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn nobody_observing_costs_no_follower() {
        let core = super::super::test_core("sh", &[], Vec::new());
        assert!(Tail::new(&core, vec![("/x".into(), Stream::Stdout)]).is_none());
    }

    #[test]
    fn output_that_appears_late_and_grows_after_the_end_is_all_seen() {
        let d = dir("late");
        let (out, err) = (d.join("out"), d.join("err"));
        std::fs::write(&out, b"one\ntw").unwrap();
        let (mut t, seen, later) = tail(vec![
            (out.clone(), Stream::Stdout),
            (err.clone(), Stream::Stderr),
        ]);
        let mut buf = vec![0; 4];
        assert!(t.look(&later, &mut buf));
        assert_eq!(seen.lock().len(), 1);
        // No descriptor is held between looks.
        let open_here = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .any(|p| p == out);
        assert!(!open_here);
        t.ended(Duration::from_millis(300));
        // The error file is not there yet and the log grows after the end (a lagging NFS).
        assert!(!t.drained(&later, &mut buf));
        std::fs::write(&err, b"e\n").unwrap();
        // Every file is there now, but output came within the lag: not complete yet.
        assert!(!t.drained(&later, &mut buf));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        f.write_all(b"o\nthree").unwrap();
        drop(f);
        let took = drain(&mut t, &later);
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert_eq!(
            *seen.lock(),
            vec![
                (Stream::Stdout, b"one".to_vec()),
                (Stream::Stderr, b"e".to_vec()),
                (Stream::Stdout, b"two".to_vec()),
                (Stream::Stdout, b"three".to_vec()),
            ]
        );
        let end = t.into_end(AttemptEnd::NotStarted);
        assert!(matches!(end, AttemptEnd::NotStarted));
        later.disarm();
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_file_that_never_appears_is_waited_for_a_bounded_time() {
        let d = dir("never");
        let (mut t, seen, later) = tail(vec![(d.join("nothing"), Stream::Stdout)]);
        t.ended(Duration::ZERO);
        let took = drain(&mut t, &later);
        assert!(took >= APPEAR && took < APPEAR * 3, "{took:?}");
        assert!(seen.lock().is_empty());
        let end = t.into_end(AttemptEnd::Exited {
            exit: None,
            usage: Default::default(),
            timed_out: false,
            error: None,
        });
        let AttemptEnd::Exited { error: Some(e), .. } = end else {
            panic!("no error");
        };
        assert!(e.contains("nothing"), "{e}");
        later.disarm();
        std::fs::remove_dir_all(&d).ok();
    }
}
