//! A pipe reader: copies the program's output from its pipe into the stream's file and hands
//! each line to the observer (`ObserveMode::Pipes`, and any stream without a regular file).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;

use super::lines::LineSplitter;
use super::readers::{Delivery, Stop};
use crate::record::JobId;
use crate::spec::{Observer, Stream};
use crate::sys;

/// One reader: pipe → file, and each line → observer. Once told to stop, reads what the pipe
/// holds at that moment and ends. Returns the first write error.
pub(super) fn copy_observed(
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
        observer: observer.clone(),
        ok: true,
    };
    let mut deliver = |line: &[u8]| delivery.call(stream, line);
    // The read end is non-blocking from the start: while output flows, each round is one read
    // and one write, and `poll` runs only when the pipe is empty (it was one poll per read).
    sys::set_nonblocking(&pipe);
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
