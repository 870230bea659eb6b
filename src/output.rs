//! A job's standard streams: the input file, the log and error files, and — only when the output
//! is observed — the pipes and reader threads that copy it to those files.
//!
//! Unobserved output (the default) is handed to the child as open files: the kernel writes them,
//! nothing is copied, no pipe can fill up. Observed output goes through one pipe per stream and
//! one reader thread per pipe; completion waits for the readers' EOF at most
//! [`DRAIN_BOUND`](crate::manager::Config) after the program was reaped, then the readers are told
//! to stop, drain what is already in the pipe, and close it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

use crate::record::JobId;
use crate::spec::{Input, Observer, Stream, OBSERVER_LINE_CAP};
use crate::sys;

/// The child's three standard streams, plus the reader side when output is observed.
pub(crate) struct Streams {
    pub(crate) stdin: Stdio,
    pub(crate) stdout: Stdio,
    pub(crate) stderr: Stdio,
    pub(crate) observed: Option<ObservedSetup>,
}

/// Pipes' read ends and where their bytes go, waiting for [`ObservedSetup::start`].
pub(crate) struct ObservedSetup {
    out_pipe: File,
    err_pipe: File,
    out_file: Option<Arc<File>>,
    err_file: Option<Arc<File>>,
    observer: Observer,
}

/// Opens a file for writing output: parent directories created, truncated.
pub(crate) fn create_output(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    blocking(file)
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
    // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        if fl == -1 || libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file)
}

/// Opens what the job needs. On failure returns a message naming the file and the cause, and
/// the error file if it could be opened (so the caller can write the failure into it).
pub(crate) fn open_streams(
    input: &Input,
    log_file: Option<&Path>,
    merge_error: bool,
    error_file: Option<&Path>,
    observer: Option<&Observer>,
) -> Result<Streams, (String, Option<File>)> {
    let log = match log_file {
        Some(p) => Some(
            create_output(p)
                .map_err(|e| (format!("cannot open log file {}: {e}", p.display()), None))?,
        ),
        None => None,
    };
    let err = match (merge_error, error_file, &log) {
        (true, _, Some(log)) => Some(
            log.try_clone()
                .map_err(|e| (format!("cannot share the log file with stderr: {e}"), None))?,
        ),
        (_, Some(p), _) => Some(
            create_output(p)
                .map_err(|e| (format!("cannot open error file {}: {e}", p.display()), None))?,
        ),
        _ => None,
    };
    let stdin = match input {
        Input::Null => Stdio::null(),
        Input::File(p) => match open_input(p) {
            Ok(f) => Stdio::from(f),
            Err(e) => {
                return Err((
                    format!("cannot open input file {}: {e}", p.display()),
                    err.or(log),
                ))
            }
        },
        Input::Bytes(b) => match sys::bytes_file(b) {
            Ok(f) => Stdio::from(f),
            Err(e) => return Err((format!("cannot prepare input bytes: {e}"), err.or(log))),
        },
    };
    let Some(observer) = observer else {
        return Ok(Streams {
            stdin,
            stdout: log.map_or_else(Stdio::null, Stdio::from),
            stderr: err.map_or_else(Stdio::null, Stdio::from),
            observed: None,
        });
    };
    let pipes = sys::pipe().and_then(|o| sys::pipe().map(|e| (o, e)));
    let ((out_r, out_w), (err_r, err_w)) = match pipes {
        Ok(p) => p,
        Err(e) => return Err((format!("cannot create output pipes: {e}"), err.or(log))),
    };
    let merged = merge_error;
    let out_file = log.map(Arc::new);
    let err_file = if merged {
        out_file.clone()
    } else {
        err.map(Arc::new)
    };
    Ok(Streams {
        stdin,
        stdout: Stdio::from(out_w),
        stderr: Stdio::from(err_w),
        observed: Some(ObservedSetup {
            out_pipe: out_r,
            err_pipe: err_r,
            out_file,
            err_file,
            observer: observer.clone(),
        }),
    })
}

impl ObservedSetup {
    /// Starts the two reader threads. Call after the child was spawned and the parent's copies
    /// of the pipes' write ends were dropped.
    pub(crate) fn start(self, id: JobId) -> io::Result<Readers> {
        let (stop_r, stop_w) = sys::pipe()?;
        let stop_r = Arc::new(stop_r);
        let (tx, rx) = bounded(2);
        let mut threads = Vec::with_capacity(2);
        for (pipe, file, stream) in [
            (self.out_pipe, self.out_file, Stream::Stdout),
            (self.err_pipe, self.err_file, Stream::Stderr),
        ] {
            let observer = self.observer.clone();
            let stop = stop_r.clone();
            let tx = tx.clone();
            threads.push(
                thread::Builder::new()
                    .name(format!("procman-out-{id}"))
                    .spawn(move || {
                        let r = copy_observed(id, stream, pipe, file.as_deref(), &observer, &stop);
                        let _ = tx.send(r);
                    })?,
            );
        }
        Ok(Readers {
            threads,
            done: rx,
            stop: stop_w,
        })
    }
}

/// The running reader threads of one job.
pub(crate) struct Readers {
    threads: Vec<thread::JoinHandle<()>>,
    done: Receiver<Result<(), String>>,
    stop: File,
}

impl Readers {
    /// Waits for both readers to reach EOF, at most `bound`; then tells them to stop (they copy
    /// what is already in the pipe and close it). Returns the first copy error, if any, and
    /// whether the bound was hit (a process outside the job's group still held the pipe).
    pub(crate) fn finish(mut self, bound: Duration) -> (Option<String>, bool) {
        let deadline = Instant::now() + bound;
        let mut error = None;
        let mut left = self.threads.len();
        let mut cut = false;
        while left > 0 {
            match self.done.recv_deadline(deadline) {
                Ok(r) => {
                    left -= 1;
                    error = error.or(r.err());
                }
                Err(_) => break,
            }
        }
        if left > 0 {
            cut = true;
            let _ = self.stop.write_all(b"x");
            for r in self.done.iter().take(left) {
                error = error.or(r.err());
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        (error, cut)
    }
}

/// One reader: pipe → file, and each line → observer. Returns the first write error.
fn copy_observed(
    id: JobId,
    stream: Stream,
    mut pipe: File,
    file: Option<&File>,
    observer: &Observer,
    stop: &File,
) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut lines = LineSplitter::default();
    let mut error: Option<String> = None;
    let mut observer_ok = true;
    let mut deliver = |line: &[u8]| {
        if observer_ok && catch_unwind(AssertUnwindSafe(|| observer(id, stream, line))).is_err() {
            log::error!("job {id}: the output observer panicked; it is not called again");
            observer_ok = false;
        }
    };
    // The read end is non-blocking from the start: while output flows, each round is one read
    // and one write, and `poll` runs only when the pipe is empty (it was one poll per read).
    set_nonblocking(&pipe);
    let mut stopping = false;
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stopping {
                    break;
                }
                match sys::poll_readable(&[pipe.as_raw_fd(), stop.as_raw_fd()], None) {
                    // Told to stop and nothing left to read: one more read drains what came
                    // in meanwhile, then the reader ends at the first empty pipe.
                    Ok(ready) if !ready[0] && ready[1] => stopping = true,
                    Ok(_) => {}
                    Err(e) => {
                        error.get_or_insert(format!("polling the {stream:?} pipe: {e}"));
                        break;
                    }
                }
                continue;
            }
            Err(e) => {
                error.get_or_insert(format!("reading the {stream:?} pipe: {e}"));
                break;
            }
        };
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
}

impl LineSplitter {
    pub(crate) fn feed(&mut self, mut data: &[u8], deliver: &mut impl FnMut(&[u8])) {
        while !data.is_empty() {
            let nl = find_newline(data);
            if self.pending.is_empty() {
                // Fast path: whole lines (and capped pieces) straight from `data`, no copy.
                let (mut line, rest) = match nl {
                    Some(i) => (&data[..i], Some(&data[i + 1..])),
                    None => (data, None),
                };
                while line.len() > OBSERVER_LINE_CAP {
                    deliver(&line[..OBSERVER_LINE_CAP]);
                    line = &line[OBSERVER_LINE_CAP..];
                }
                match rest {
                    Some(rest) => {
                        deliver(line);
                        data = rest;
                    }
                    None => {
                        self.pending.extend_from_slice(line);
                        data = &[];
                    }
                }
                continue;
            }
            match nl {
                Some(i) => {
                    self.push_capped(&data[..i], deliver);
                    deliver(&self.pending);
                    self.pending.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.push_capped(data, deliver);
                    data = &[];
                }
            }
        }
    }

    fn push_capped(&mut self, mut part: &[u8], deliver: &mut impl FnMut(&[u8])) {
        while self.pending.len() + part.len() > OBSERVER_LINE_CAP {
            let take = OBSERVER_LINE_CAP - self.pending.len();
            self.pending.extend_from_slice(&part[..take]);
            deliver(&self.pending);
            self.pending.clear();
            part = &part[take..];
        }
        self.pending.extend_from_slice(part);
    }

    pub(crate) fn finish(&mut self, deliver: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            deliver(&self.pending);
            self.pending.clear();
        }
    }
}

/// The first `\n` in `data`: libc's `memchr` (vectorised), not a byte-at-a-time loop, which cost
/// ~0.4 s of CPU per GiB of observed output (DESIGN.md, "Performance").
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
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts { chunks.push(&data[last..c]); last = c; }
            chunks.push(&data[last..]);
            prop_assert_eq!(split(&chunks), split_model(&chunks));
        }
    }

    proptest! {
        #[test]
        fn pieces_rebuild_the_stream(data in proptest::collection::vec(any::<u8>(), 0..4000),
                                     cuts in proptest::collection::vec(0usize..4000, 0..8)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut chunks = Vec::new();
            let mut last = 0;
            for c in cuts { chunks.push(&data[last..c]); last = c; }
            chunks.push(&data[last..]);
            let lines = split(&chunks);
            // Without long lines every piece is a whole line: joining with \n gives the data back
            // (but for a final \n, which yields no empty last line).
            let mut joined = lines.join(&b'\n');
            if data.last() == Some(&b'\n') { joined.push(b'\n'); }
            prop_assert_eq!(joined, data);
        }
    }
}
