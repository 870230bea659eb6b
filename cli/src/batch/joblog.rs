//! The batch's joblog (GNU parallel's `--joblog` format): writing it, and reading what an
//! earlier run recorded for `--resume` and `--resume-failed`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use procman::JobStatus;
use procman_cli::{lines, parse_joblog_line, JoblogEntry, JoblogError, LineErrorKind};

use super::{Finished, Resume};

/// The joblog, written one complete line per `write` so that a killed tool leaves only whole
/// lines (see DESIGN.md). The file is unbuffered: each line is in the kernel once written.
pub(super) struct Joblog {
    file: File,
}

impl Joblog {
    pub(super) fn open(path: &Path, append: bool) -> io::Result<Joblog> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let mut file = if append {
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(path)?
        } else {
            File::create(path)?
        };
        let len = file.metadata()?.len();
        if len == 0 {
            file.write_all(format!("{}\n", JoblogEntry::HEADER).as_bytes())?;
        } else {
            // A torn last line (a full disk, say) must not swallow the next entry.
            let mut last = [0u8];
            file.read_exact_at(&mut last, len - 1)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        Ok(Joblog { file })
    }

    pub(super) fn record(&mut self, entry: &JoblogEntry) -> io::Result<()> {
        let mut line = entry.to_line();
        line.push('\n');
        self.file.write_all(line.as_bytes())
    }
}

/// How a finished job is written in the joblog (GNU parallel's columns). `None` for a job that
/// never ran (cancelled, or a dependency failed): it has no entry, so `--resume` runs it.
pub(super) fn joblog_entry(f: &Finished) -> Option<JoblogEntry> {
    let r = &f.record;
    let (exitval, signal) = match r.status {
        JobStatus::Finished => (0, 0),
        JobStatus::Failed => (r.exit_code.unwrap_or(1), 0),
        // As GNU parallel: a job ended by a signal has Exitval 0 and the signal's number.
        JobStatus::Crashed => (r.exit_code.unwrap_or(0), r.signal.unwrap_or(0)),
        // As GNU parallel for its timeouts: -1, and the signal that ended the job.
        JobStatus::TimedOut | JobStatus::Killed => (-1, r.signal.unwrap_or(0)),
        // Ended by procman (its internal error), as a kill.
        JobStatus::InternalError => (-1, 0),
        // As `procman run` and a shell: 127 not found, 126 not executable (a directory, say).
        JobStatus::SpawnFailed => (crate::exit_code(r), 0),
        JobStatus::Cancelled
        | JobStatus::DependencyFailed
        | JobStatus::Pending
        | JobStatus::Running => return None,
        // A status added later (JobStatus is non_exhaustive): an end, told by its code/signal.
        _ => (r.exit_code.unwrap_or(-1), r.signal.unwrap_or(0)),
    };
    let start = r.started_at.or(r.finished_at).unwrap_or(r.queued_at);
    Some(JoblogEntry {
        seq: f.seq,
        host: JoblogEntry::LOCAL_HOST.into(),
        start_time: start
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        runtime: r.usage.map_or(0.0, |u| u.wall.as_secs_f64()),
        send: 0,
        receive: 0,
        exitval,
        signal,
        command: f.command.clone(),
    })
}

/// seq → command of the jobs the joblog records: all of them for `--resume`, those whose latest
/// entry succeeded (Exitval 0 and Signal 0) for `--resume-failed`. A missing joblog is an
/// empty one; unreadable lines are skipped with a warning.
pub(super) fn recorded_in(path: &Path, resume: Resume) -> io::Result<HashMap<u64, String>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let mut latest: HashMap<u64, JoblogEntry> = HashMap::new();
    for item in lines(BufReader::new(file)) {
        match item {
            Ok((n, text)) => match parse_joblog_line(&text) {
                Ok(e) => {
                    latest.insert(e.seq, e);
                }
                Err(JoblogError::Header) => {}
                Err(e) if text.is_empty() => log::debug!("joblog line {n} is empty: {e}"),
                Err(e) => eprintln!("procman: {}: line {n} ignored: {e}", path.display()),
            },
            Err(e) => match e.kind {
                LineErrorKind::Io(io) => return Err(io),
                LineErrorKind::NotUtf8 { .. } => {
                    eprintln!("procman: {}: {e}; ignored", path.display())
                }
            },
        }
    }
    Ok(latest
        .into_iter()
        .filter(|(_, e)| resume == Resume::All || (e.exitval == 0 && e.signal == 0))
        .map(|(seq, e)| (seq, e.command))
        .collect())
}
