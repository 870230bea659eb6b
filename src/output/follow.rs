//! The follower (`ObserveMode::Files`, Linux): one thread per job reads back the files the
//! program writes itself, as they grow, and hands their lines to the observer. Elsewhere no
//! file is ever followed (`sys::FOLLOW_FILES`), so this thread is never started.
//!
//! [`Followed`], one followed file, is also what the Slurm poller reads a Slurm job's log files
//! with (`backend/slurm/tail.rs`), on any Unix: there the files are read by path on a shared
//! file system, without inotify.

use std::fs::File;
use std::io::{self, Read};
use std::time::Duration;

use super::lines::LineSplitter;
use super::readers::{Delivery, Stop};
use crate::record::JobId;
use crate::spec::{Observer, Stream};
use crate::sys;

/// How much of one followed file is read before the follower turns to the next one.
const FOLLOW_ROUND: u64 = 1 << 20;

/// While output flows, how long the follower waits before it reads the files again (instead of
/// a wake-up per write). 2, 10 and 20 ms measured alike on w2/w3 (docs/performance.md);
/// 10 ms bounds an observer's lag behind a fast writer.
const FOLLOW_PACE: Duration = Duration::from_millis(10);

/// One followed file: where it was read up to, and its partial line.
pub(crate) struct Followed {
    /// `None` while closed between looks (the Slurm follower holds no descriptor while idle).
    file: Option<File>,
    stream: Stream,
    lines: LineSplitter,
    deliver: Delivery,
    offset: u64,
    failed: bool,
}

impl Followed {
    /// `file`, open for reading at its start, whose lines go to job `id`'s `observer` as
    /// `stream`.
    pub(crate) fn new(file: File, stream: Stream, id: JobId, observer: Observer) -> Followed {
        Followed {
            file: Some(file),
            stream,
            lines: LineSplitter::default(),
            deliver: Delivery {
                id,
                observer,
                ok: true,
            },
            offset: 0,
            failed: false,
        }
    }

    /// Reads on from where it was, in `file` (the same file opened again: on a network file
    /// system, an open fetches the file's current size). Fails if it cannot seek there.
    pub(crate) fn reopened(&mut self, mut file: File) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(self.offset))?;
        self.file = Some(file);
        Ok(())
    }

    /// Closes the file until [`Followed::reopened`]; reads meanwhile find nothing.
    pub(crate) fn close(&mut self) {
        self.file = None;
    }

    /// How far the file was read.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Hands on the last line if it has no newline; call once, after the last read.
    pub(crate) fn finish(&mut self) {
        let (stream, deliver) = (self.stream, &mut self.deliver);
        self.lines.finish(&mut |line| deliver.call(stream, line));
    }

    /// Reads from the offset up to `limit` bytes more or EOF, handing the lines on; true when
    /// it stopped at EOF (or the file failed before). A read error is kept in `error` (the
    /// first one) and the file is read no more.
    pub(crate) fn read_some(
        &mut self,
        limit: u64,
        buf: &mut [u8],
        error: &mut Option<String>,
    ) -> bool {
        let mut left = limit;
        let Some(file) = self.file.as_mut() else {
            return true;
        };
        while left > 0 && !self.failed {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match file.read(&mut buf[..want]) {
                Ok(0) => return true,
                Ok(n) => {
                    self.offset += n as u64;
                    left -= n as u64;
                    let (stream, deliver) = (self.stream, &mut self.deliver);
                    self.lines
                        .feed(&buf[..n], &mut |line| deliver.call(stream, line));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error.get_or_insert(format!("reading the {:?} file back: {e}", self.stream));
                    self.failed = true;
                }
            }
        }
        self.failed
    }
}

/// The follower: reads the files the program writes as they grow (woken by inotify) and hands
/// their lines to the observer. Once told to stop, reads each file to the size it has then and
/// ends. Returns the first read error.
pub(super) fn follow_files(
    id: JobId,
    files: Vec<(File, Stream)>,
    inotify: &sys::Inotify,
    observer: &Observer,
    stop: &Stop,
) -> Result<(), String> {
    let mut followed: Vec<Followed> = files
        .into_iter()
        .map(|(file, stream)| Followed::new(file, stream, id, observer.clone()))
        .collect();
    let mut buf = vec![0u8; 64 * 1024];
    let mut error: Option<String> = None;
    follow_until_stopped(id, &mut followed, inotify, stop, &mut buf, &mut error);
    // The job's processes are reaped: read what the files hold now, and no more (a process
    // that left the group may write on for ever).
    for f in &mut followed {
        match f.file.as_ref().map(File::metadata) {
            Some(Ok(m)) => {
                f.read_some(m.len().saturating_sub(f.offset), &mut buf, &mut error);
            }
            Some(Err(e)) => {
                error.get_or_insert(format!("reading the {:?} file's size: {e}", f.stream));
            }
            None => {}
        }
        f.finish();
    }
    error.map_or(Ok(()), Err)
}

/// Reads the files as they grow until the stop is raised (or polling fails).
///
/// While output flows, no watch is armed (the program's writes then cost it nothing) and the
/// files are read again every `FOLLOW_PACE`; once a look finds nothing new, the watches are
/// armed for one event each and the follower sleeps until a write or the stop. Where a watch
/// cannot be armed (no watch left for the user), the files are read every pace.
fn follow_until_stopped(
    id: JobId,
    followed: &mut [Followed],
    inotify: &sys::Inotify,
    stop: &Stop,
    buf: &mut [u8],
    error: &mut Option<String>,
) {
    let mut armed = true;
    let mut unwatched_warned = false;
    while !stop.raised() {
        let before: u64 = followed.iter().map(|f| f.offset).sum();
        let mut at_eof = true;
        for f in followed.iter_mut() {
            at_eof &= f.read_some(FOLLOW_ROUND, buf, error);
        }
        if !at_eof {
            continue;
        }
        let got = followed.iter().map(|f| f.offset).sum::<u64>() > before;
        if !got && !armed {
            // Armed first, then one more look: a write between the last read and the arming
            // is found by that look, a later one fires a watch.
            armed = arm(id, followed, inotify, &mut unwatched_warned);
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
            return;
        }
    }
}

/// Arms a one-event watch on each file; false if one could not be armed (warned once).
fn arm(id: JobId, followed: &[Followed], inotify: &sys::Inotify, warned: &mut bool) -> bool {
    let mut armed = true;
    for f in followed {
        let Some(file) = &f.file else { continue };
        if let Err(e) = inotify.watch_once(file) {
            armed = false;
            if !*warned {
                *warned = true;
                log::warn!(
                    "job {id}: cannot watch its {:?} file ({e}); reading it every {:?}",
                    f.stream,
                    FOLLOW_PACE
                );
            }
        }
    }
    armed
}
