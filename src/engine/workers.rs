//! The worker threads: each takes one admitted attempt at a time from the work channel, hands
//! it to the backend, and reports how it ended to the scheduler. The engine is what backends
//! report to ([`Report`], implemented here for [`Inner`]).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crossbeam_channel::Receiver;

use crate::backend::{Attempt, Report};
use crate::config::{Config, WaitMode};
use crate::engine::sched::WorkMsg;
use crate::engine::Inner;
use crate::error::panic_message;
use crate::job::{AttemptEnd, Work};
use crate::output::rotate_outputs;
use crate::record::JobId;
use crate::sys::Waker;
use crate::watch::{Progress, Usage, UsageSummary};

/// The worker thread's body: runs attempts until told to stop.
///
/// The panic rule (DESIGN.md): an attempt runs inside `catch_unwind`. A panic anywhere in it
/// (the backend, the wait, reader set-up) unwinds through what owns the attempt's processes
/// (the local backend's `Reaper`, Slurm's `CancelOnDrop`), which ends them; the job then ends as
/// `InternalError` through the ordinary `end_attempt` (slot freed, handler once), and this
/// thread takes the next attempt.
pub(crate) fn worker_loop(inner: Arc<Inner>, rx: Receiver<WorkMsg>) {
    let waker = match inner.config.wait_mode {
        WaitMode::Pidfd => Waker::new().unwrap_or_else(|e| {
            log::warn!("cannot create an eventfd ({e}); this worker uses the portable wait");
            Waker::none()
        }),
        WaitMode::Portable => Waker::none(),
    };
    // What a backend keeps to end an attempt that continues without this thread (Slurm).
    let engine: Weak<dyn Report> = {
        let w: Weak<Inner> = Arc::downgrade(&inner);
        w
    };
    for msg in rx {
        match msg {
            WorkMsg::Stop => break,
            WorkMsg::Job(work) => {
                inner.worker_took_attempt();
                let (id, attempt) = (work.core.id, work.attempt);
                let started = catch_unwind(AssertUnwindSafe(|| match before_attempt(&work) {
                    Some(end) => Attempt::Ended(end),
                    None => inner
                        .backend
                        .start_attempt(&*inner, &engine, work, waker.clone()),
                }))
                .unwrap_or_else(|p| {
                    let msg = format!(
                        "internal error: the worker thread panicked: {}",
                        panic_message(&*p)
                    );
                    log::error!("job {id}: {msg}; its processes were killed");
                    Attempt::Ended(AttemptEnd::Internal(msg))
                });
                // Idle before the report, whose admissions it may take itself.
                inner.worker_done();
                // An attempt that continues is ended by its backend (`backend::Later`).
                if let Attempt::Ended(end) = started {
                    report_end(&inner, id, attempt, end);
                    // The completion just woke the dispatcher; a woken thread waits for a CPU
                    // while its waker runs on (here: straight into the next spawn), which made
                    // the dispatcher hop the largest part of the exit-to-handler latency. Let
                    // it run.
                    std::thread::yield_now();
                }
            }
        }
    }
}

/// Hands the attempt's end to the scheduler. The scheduler never panics (fuzzed and
/// property-tested); should it, the job still ends (as an internal error, slot freed, handler
/// once) and this worker goes on serving the others.
fn report_end(inner: &Arc<Inner>, id: JobId, attempt: u32, end: AttemptEnd) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| inner.end_attempt(id, attempt, end))) {
        let msg = format!(
            "internal error: the scheduler panicked ending its attempt: {}",
            panic_message(&*p)
        );
        log::error!("job {id}: {msg}");
        let _ = catch_unwind(AssertUnwindSafe(|| inner.abandon(id, msg)));
    }
}

/// What every backend's attempt starts with: keep the previous attempt's output, and end here
/// if a kill arrived before the program was started.
fn before_attempt(work: &Work) -> Option<AttemptEnd> {
    let core = &*work.core;
    if work.attempt > 1 {
        rotate_outputs(core, work.attempt - 1);
    }
    core.kill_requested
        .load(Ordering::SeqCst)
        .then_some(AttemptEnd::NotStarted)
}

impl Report for Inner {
    fn started(&self, id: JobId, pid: u32, attempt: u32, spawned: Instant, waker: Waker) {
        Inner::started(self, id, pid, attempt, spawned, waker);
    }

    fn queued(&self, id: JobId, cluster_id: u32, task: Option<u32>, attempt: u32) {
        Inner::queued(self, id, cluster_id, task, attempt);
    }

    fn set_backend_state(&self, id: JobId, state: &str) {
        Inner::set_backend_state(self, id, state);
    }

    fn usage(&self, id: JobId, attempt: u32, usage: Usage, summary: UsageSummary) {
        self.lock().record_usage(id, attempt, usage, summary);
    }

    fn progress(&self, id: JobId, attempt: u32, progress: Progress) {
        self.lock().record_progress(id, attempt, progress);
    }

    fn end_attempt(self: Arc<Self>, id: JobId, attempt: u32, end: AttemptEnd) {
        report_end(&self, id, attempt, end);
    }

    fn config(&self) -> &Config {
        &self.config
    }

    fn key(&self) -> u64 {
        self.key
    }
}
