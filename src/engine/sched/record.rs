//! A job's record as the job table keeps it ([`Rec`]): while the job is live, only what a live
//! job's record has of its own ([`LiveRecord`]: status, ids, times, attempts; its identity is
//! in its core, and the outcome of an ended attempt is kept only while a retry waits); once
//! final, the public [`JobRecord`]. Both boxed: a live job costs about 140 bytes here instead
//! of a whole `JobRecord` (384), which matters for many jobs in flight (issue 13: a 10,000-job
//! Slurm array in flight at ≤ 1 KiB per job), and a final one no more than before.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use super::{fill_identity, Entry};
use crate::job::JobCore;
use crate::record::{JobId, JobRecord, JobStatus, ResourceUsage};
use crate::watch::UsageSummary;

/// A job's record in its table entry.
pub(super) enum Rec {
    Live(Box<LiveRecord>),
    Final(Box<JobRecord>),
}

/// The record of a live job, but for its identity (in its core).
#[derive(Clone)]
pub(super) struct LiveRecord {
    pub(super) id: JobId,
    pub(super) status: JobStatus,
    pub(super) pid: Option<u32>,
    pub(super) array_task: Option<u32>,
    pub(super) attempts: u32,
    pub(super) priority: i32,
    pub(super) queued_at: SystemTime,
    pub(super) started_at: Option<SystemTime>,
    pub(super) after: Box<[JobId]>,
    pub(super) backend_state: Option<String>,
    pub(super) sampled: Option<Box<UsageSummary>>,
    /// The outcome of the last attempt that ended, while a retry waits (`None` before).
    pub(super) outcome: Option<Box<Outcome>>,
}

/// How an attempt ended, in the record's terms (the fields of [`JobRecord`] of that name).
#[derive(Clone, Default)]
pub(super) struct Outcome {
    pub(super) exit_code: Option<i32>,
    pub(super) signal: Option<i32>,
    pub(super) usage: Option<ResourceUsage>,
    pub(super) error: Option<String>,
}

impl LiveRecord {
    /// A new job's record: pending, submitted now.
    pub(super) fn new(id: JobId, priority: i32, after: &[JobId]) -> LiveRecord {
        LiveRecord {
            id,
            status: JobStatus::Pending,
            pid: None,
            array_task: None,
            attempts: 0,
            priority,
            queued_at: SystemTime::now(),
            started_at: None,
            after: after.into(),
            backend_state: None,
            sampled: None,
            outcome: None,
        }
    }

    /// The public record, with its identity fields empty.
    fn into_record(self) -> JobRecord {
        let o = self.outcome.map(|o| *o).unwrap_or_default();
        JobRecord {
            id: self.id,
            program: Default::default(),
            args: Vec::new(),
            interpreter: None,
            status: self.status,
            exit_code: o.exit_code,
            signal: o.signal,
            pid: self.pid,
            array_task: self.array_task,
            queued_at: self.queued_at,
            started_at: self.started_at,
            finished_at: None,
            log_file: None,
            error_file: None,
            error: o.error,
            attempts: self.attempts,
            usage: o.usage,
            sampled: self.sampled,
            handler_error: None,
            priority: self.priority,
            after: self.after.into_vec(),
            backend_state: self.backend_state,
        }
    }
}

impl Outcome {
    /// Into the record.
    pub(super) fn apply(self, r: &mut JobRecord) {
        r.exit_code = self.exit_code;
        r.signal = self.signal;
        r.usage = self.usage;
        r.error = self.error;
    }
}

impl Entry {
    /// The job's status.
    pub(super) fn status(&self) -> JobStatus {
        match &self.rec {
            Rec::Live(l) => l.status,
            Rec::Final(r) => r.status,
        }
    }

    /// The job's pid (or cluster id).
    pub(super) fn pid(&self) -> Option<u32> {
        match &self.rec {
            Rec::Live(l) => l.pid,
            Rec::Final(r) => r.pid,
        }
    }

    /// How many attempts were made.
    pub(super) fn attempts(&self) -> u32 {
        match &self.rec {
            Rec::Live(l) => l.attempts,
            Rec::Final(r) => r.attempts,
        }
    }

    /// The live job's record; `None` once the job is final.
    pub(super) fn live_record(&mut self) -> Option<&mut LiveRecord> {
        match &mut self.rec {
            Rec::Live(l) => Some(l),
            Rec::Final(_) => None,
        }
    }

    /// The job's record as users see it: a live job's is made from its live record and its
    /// core (its program, arguments and paths are stored once, in the core).
    pub(crate) fn record(&self) -> JobRecord {
        match &self.rec {
            Rec::Final(r) => (**r).clone(),
            Rec::Live(l) => {
                let mut r = (**l).clone().into_record();
                if let Some(core) = &self.core {
                    fill_identity(&mut r, core);
                }
                r
            }
        }
    }

    /// Makes the job's record final (if it is live) and lets `set` change it: the core is
    /// dropped (nothing the job captured outlives it) and its identity moves to the record.
    pub(super) fn set_final(&mut self, set: impl FnOnce(&mut JobRecord)) {
        if let Rec::Live(l) = &mut self.rec {
            let id = l.id;
            let live = std::mem::replace(&mut **l, LiveRecord::new(id, 0, &[]));
            let mut r = live.into_record();
            if let Some(core) = self.core.take() {
                match Arc::try_unwrap(core) {
                    Ok(core) => move_identity(&mut r, core),
                    Err(core) => fill_identity(&mut r, &core),
                }
            }
            self.rec = Rec::Final(Box::new(r));
        }
        if let Rec::Final(r) = &mut self.rec {
            set(r);
        }
    }

    /// The final record (`None` while the job is live).
    pub(super) fn into_final_record(self) -> Option<JobRecord> {
        match self.rec {
            Rec::Final(r) => Some(*r),
            Rec::Live(_) => None,
        }
    }
}

/// The core's identity fields moved into the record (the core is the job's last owner).
fn move_identity(r: &mut JobRecord, core: JobCore) {
    r.error_file = if core.merge_error {
        core.log_file.as_deref().map(Path::to_path_buf)
    } else {
        core.error_file.map(Path::into_path_buf)
    };
    r.program = core.program.into_os_string();
    r.args = core.args.into_vec();
    r.interpreter = core.interpreter.map(OsStr::into_os_string);
    r.log_file = core.log_file.map(Path::into_path_buf);
}
