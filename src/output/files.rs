//! Opening a job's files: the input, the log and error files (compared by device and inode, so
//! an alias is recognised before anything is truncated), and keeping an earlier attempt's
//! output before a retry.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::job::JobCore;
use crate::spec::Input;
use crate::sys;

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
    sys::clear_status_flags(&file)?;
    Ok(file)
}

/// What [`open_files`] opened: the child's stdin, the log, the error file (`None`: nothing, or
/// `/dev/null`), and whether stderr goes into the log (asked, or the error file is the log's
/// file under another name).
pub(super) struct Opened {
    pub(super) stdin: Option<File>,
    pub(super) log: Option<File>,
    pub(super) err: Option<File>,
    pub(super) merge_error: bool,
}

/// A spawn failure: the message, and the error file (else the log) if it was opened, to write
/// the message into.
pub(crate) type OpenError = (String, Option<File>);

/// Opens the job's input and output files (see [`open_streams`](super::open_streams)).
pub(super) fn open_files(
    input: &Input,
    log_file: Option<&Path>,
    merge_error: bool,
    error_file: Option<&Path>,
) -> Result<Opened, OpenError> {
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
    let input_name = || input_path.map_or_else(Default::default, |i| i.display().to_string());
    let (log, err, merge_error) =
        open_outputs(log_file, merge_error, error_file, input_id, &input_name())?;
    let stdin = match (input, input_file) {
        (_, Some(Ok(f))) => Some(f),
        (_, Some(Err(e))) => {
            return Err((
                format!("cannot open input file {}: {e}", input_name()),
                err.or(log),
            ))
        }
        (Input::Bytes(b), None) => match sys::bytes_file(b) {
            Ok(f) => Some(f),
            Err(e) => return Err((format!("cannot prepare input bytes: {e}"), err.or(log))),
        },
        (_, None) => None,
    };
    Ok(Opened {
        stdin,
        log,
        err,
        merge_error,
    })
}

/// Opens the log and the error file: (log, error file, merged). An output that is the input
/// file (`input_id`, named `input_name`) is refused; the other one is still opened, so that
/// the refusal can be written into it.
fn open_outputs(
    log_file: Option<&Path>,
    merge_error: bool,
    error_file: Option<&Path>,
    input_id: Option<FileId>,
    input_name: &str,
) -> Result<(Option<File>, Option<File>, bool), OpenError> {
    let is_input = |what: &str, p: &Path| {
        format!(
            "the {what} {} is the input file {input_name}: refused, as writing it would destroy \
             the input (the file is left as it was)",
            p.display(),
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
    Ok((log, err, merge_error))
}

/// Keeps an earlier attempt's output: `log.txt` → `log.txt.attempt1`, and the error file
/// likewise. An error file merged into the log (asked, or the same file under another path)
/// goes with it: once the log is renamed, a textual alias or a symbolic link to it names nothing
/// and is left alone; a hard link still names the old file and is renamed too, so that the next
/// attempt does not truncate it. When one of them is a symbolic link to the other, the real name
/// is renamed first, which keeps the link pointing at the new attempt's file (still merged).
/// A file that is the job's input is never renamed: its attempt was refused and wrote nothing.
pub(crate) fn rotate_outputs(core: &JobCore, attempt: u32) {
    let input = match &core.input {
        Input::File(p) => FileId::at(p),
        _ => None,
    };
    let (log, err) = (core.log_file.as_deref(), core.error_file.as_deref());
    let is_link = |p: Option<&Path>| {
        p.and_then(|p| p.symlink_metadata().ok())
            .is_some_and(|m| m.file_type().is_symlink())
    };
    let order = if is_link(log) && !is_link(err) {
        [err, log]
    } else {
        [log, err]
    };
    for p in order.into_iter().flatten() {
        if input.is_none() || FileId::at(p) != input {
            rotate(p, attempt);
        }
    }
}

/// Renames `path` (if it names an existing file) to `path.attempt<N>`.
fn rotate(p: &Path, attempt: u32) {
    let mut to = p.as_os_str().to_owned();
    to.push(format!(".attempt{attempt}"));
    if p.exists() {
        if let Err(e) = std::fs::rename(p, &to) {
            log::warn!(
                "cannot keep attempt {attempt}'s output {}: {e}",
                p.display()
            );
        }
    }
}
