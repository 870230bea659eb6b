//! How `procman run` passes the job's output on to its own stdout and stderr, exactly.
//!
//! The library writes a job's output to files it opens by path, so the job gets procman's own
//! descriptor by the path `/dev/fd/N`. Where reopening that path yields the very same stream
//! (a pipe, a terminal, `/dev/null`: anything but a regular file or a socket) the job writes to
//! it directly: its bytes arrive untouched, and when the reader of a pipe goes away the job
//! gets SIGPIPE (or EPIPE) itself, exactly as under coreutils `timeout`.
//!
//! A regular file cannot be reopened that way (the library truncates it, and the new
//! descriptor has its own offset and no `O_APPEND`), nor can a socket (`open` fails). Then the
//! job writes into a pipe of procman's, which a relay thread copies to procman's descriptor
//! chunk by chunk as read (raw bytes, not lines). When that write fails (EPIPE: the reader went
//! away) the relay closes its end of the pipe, so the job meets the same SIGPIPE on its next
//! write as it would have met writing directly.

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long the relay goes on reading after the job ended, for output still in flight from a
/// process outside the job that holds the pipe (the library's own drain bound).
const DRAIN: Duration = Duration::from_millis(200);

/// Where one of the job's streams goes.
pub enum Dest {
    /// procman's descriptor is closed: the stream is discarded.
    Closed,
    /// The job opens this path itself (`/dev/fd/N`).
    Direct(PathBuf),
    /// The job writes into this relay's pipe.
    Relay(Relay),
}

impl Dest {
    /// Decides for procman's descriptor `fd` (1 or 2). Fails only if a pipe cannot be made.
    pub fn of(fd: RawFd) -> io::Result<Dest> {
        // SAFETY: fstat on a descriptor number into a zeroed struct; a closed fd gives EBADF.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Ok(Dest::Closed);
        }
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFREG || kind == libc::S_IFSOCK {
            Relay::new(fd).map(Dest::Relay)
        } else {
            Ok(Dest::Direct(PathBuf::from(format!("/dev/fd/{fd}"))))
        }
    }

    /// The path to give the library, if any.
    pub fn path(&self) -> Option<PathBuf> {
        match self {
            Dest::Closed => None,
            Dest::Direct(p) => Some(p.clone()),
            Dest::Relay(r) => Some(PathBuf::from(format!("/dev/fd/{}", r.write.as_raw_fd()))),
        }
    }

    pub fn into_relay(self) -> Option<Relay> {
        match self {
            Dest::Relay(r) => Some(r),
            _ => None,
        }
    }
}

/// A pipe whose read end a thread copies to procman's descriptor.
pub struct Relay {
    /// Kept open until the job has ended: the library opens it by path when it spawns the job.
    write: OwnedFd,
    /// Written (closed) to tell the thread that the job has ended.
    stop: OwnedFd,
    thread: JoinHandle<()>,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Relay {
    fn new(to: RawFd) -> io::Result<Relay> {
        let (read, write) = pipe()?;
        let (stop_read, stop) = pipe()?;
        let thread = thread::Builder::new()
            .name("procman-relay".into())
            .spawn(move || copy(File::from(read), stop_read, to))?;
        Ok(Relay {
            write,
            stop,
            thread,
        })
    }

    /// Called once the job has ended: lets the thread copy what is left (until EOF, or
    /// [`DRAIN`] without data) and waits for it.
    pub fn finish(self) {
        drop(self.write);
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// Waits until `fd` is readable or, with a timeout, that long; true if readable (or hung up).
fn readable(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> bool {
    let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
    loop {
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r >= 0 {
            return r > 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

/// The relay thread: copies `from` to descriptor `to` until EOF; once `stop` is readable (the
/// job ended), until EOF or [`DRAIN`] without data. A failed write ends it: dropping `from`
/// closes the pipe's only read end, so the job's next write meets SIGPIPE.
fn copy(mut from: File, stop: OwnedFd, to: RawFd) {
    // SAFETY: procman's own stdout/stderr, borrowed for the process's life and never closed.
    let mut out = ManuallyDrop::new(unsafe { File::from_raw_fd(to) });
    let mut buf = vec![0u8; 64 * 1024];
    let mut stopping = false;
    loop {
        let ready = if stopping {
            let mut fds = [libc::pollfd {
                fd: from.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            readable(&mut fds, Some(DRAIN))
        } else {
            let mut fds = [
                libc::pollfd {
                    fd: from.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: stop.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            readable(&mut fds, None);
            if fds[1].revents != 0 {
                stopping = true;
            }
            fds[0].revents != 0
        };
        if !ready {
            if stopping {
                return; // nothing more within the drain bound
            }
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if out.write_all(&buf[..n]).is_err() {
            log::info!("the relay's reader went away: closing the job's pipe");
            return;
        }
    }
}
