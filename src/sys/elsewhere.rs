//! Other Unix systems (macOS, the BSDs): the Linux-only items of `linux.rs`, each unavailable.
//! Callers check [`HANDLER_FREE_WAIT`] or [`FOLLOW_FILES`], or take the error, and use the
//! portable path.

use std::fs::File;
use std::io;
use std::os::fd::{OwnedFd, RawFd};

/// Workers wait with the `wait-timeout` crate in slices here.
pub(crate) const HANDLER_FREE_WAIT: bool = false;
/// Observed output always goes through pipes here.
pub(crate) const FOLLOW_FILES: bool = false;

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "not available on this system")
}

/// No pidfds here.
pub(crate) fn pidfd_open(_pid: u32) -> io::Result<OwnedFd> {
    Err(unsupported())
}

/// No eventfds here: none can be made, so none exists.
pub(crate) enum EventFd {}

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        Err(unsupported())
    }

    pub(crate) fn wake(&self) {
        match *self {}
    }

    pub(crate) fn drain(&self) {
        match *self {}
    }

    pub(crate) fn raw(&self) -> RawFd {
        match *self {}
    }
}

/// No inotify here: none can be made, so none exists.
pub(crate) enum Inotify {}

impl Inotify {
    pub(crate) fn new() -> io::Result<Inotify> {
        Err(unsupported())
    }

    pub(crate) fn watch_once(&self, _file: &File) -> io::Result<()> {
        match *self {}
    }

    pub(crate) fn drain(&self) {
        match *self {}
    }

    pub(crate) fn raw(&self) -> RawFd {
        match *self {}
    }
}

/// No `/proc/self/fd` to reopen through here.
pub(crate) fn reopen_regular_for_reading(_file: &File) -> io::Result<File> {
    Err(unsupported())
}

/// Not used here: a bare pid (the `posix_spawn` path) is only made on Linux.
pub(crate) fn has_exited(_pid: u32) -> io::Result<bool> {
    Err(unsupported())
}

/// Not known here.
pub(crate) fn thread_room() -> Option<usize> {
    None
}
