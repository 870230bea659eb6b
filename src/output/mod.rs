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
//!
//! - `files.rs`: opening the input and output files (aliases recognised), keeping an earlier
//!   attempt's output.
//! - `readers.rs`: the observed job's set-up, reader threads and their collection.
//! - `pipe.rs`: one pipe reader. `follow.rs`: the follower of the files ([`Followed`], one
//!   file, is shared with the Slurm backend's log follower).
//! - `lines.rs`: splitting output into lines.
//! - `progress.rs`: the progress parser on the observed path, and the slot its latest result
//!   waits in for the worker.

mod files;
mod follow;
mod lines;
mod pipe;
mod progress;
mod readers;

use std::fs::File;
use std::path::Path;

pub(crate) use files::{create_output_unless, rotate_outputs, FileId, OpenError, Output};
pub(crate) use follow::Followed;
pub(crate) use progress::{with_progress, ProgressSlot};
pub(crate) use readers::{as_observer, observing, JobKill, ObservedSetup, Readers};

use crate::spec::{Input, Observer};

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

/// Opens what the job needs. On failure returns a message naming the file and the cause, and
/// the error file (else the log) if it could be opened, so the caller can write the failure into
/// it. `follow`: observed output goes to the files and is read back from them where it can
/// ([`ObserveMode::Files`](crate::ObserveMode)). Blocks only on the file system (a FIFO never
/// blocks the open).
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
) -> Result<Streams, OpenError> {
    let opened = files::open_files(input, log_file, merge_error, error_file)?;
    let Some(observer) = observer else {
        return Ok(Streams {
            stdin: opened.stdin,
            stdout: opened.log,
            stderr: opened.err,
            observed: None,
        });
    };
    let (stdout, stderr, setup) =
        ObservedSetup::wire(opened.log, opened.err, opened.merge_error, observer, follow)?;
    Ok(Streams {
        stdin: opened.stdin,
        stdout,
        stderr,
        observed: Some(setup),
    })
}
