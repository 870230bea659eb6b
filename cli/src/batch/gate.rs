//! The gate between the reader and the jobs' handlers: when the batch stops submitting, and
//! `--halt`'s permits and tally.

use std::sync::{Condvar, Mutex};

use procman::Handle;

use crate::halt::{self, Tally, When};

/// Shared by the reader, the handlers and the main thread: once `stopped` is set (under the
/// lock) no job is submitted any more, so `submitted` is then the final number of jobs to wait
/// for.
#[derive(Default)]
pub(super) struct Gate {
    pub(super) stopped: bool,
    pub(super) submitted: u64,
    /// With `--halt`: how many more jobs may be submitted before one finishes (`-j` at first).
    /// A job is only submitted with a permit, and a finished job's handler decides whether the
    /// batch halts *before* it returns its permit, so no job starts after the halting one
    /// (the manager cannot start one the tool never submitted). `None`: no limit.
    pub(super) permits: Option<usize>,
    /// Finished jobs (and invalid lines), for the halt rule.
    pub(super) tally: Tally,
    /// Job lines in the whole input, when a percentage rule needs it (read up front).
    pub(super) total: u64,
}

/// The gate and its condition variable (a reader waiting for a permit).
#[derive(Default)]
pub(super) struct Shared {
    gate: Mutex<Gate>,
    pub(super) freed: Condvar,
}

impl Shared {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().expect("gate")
    }

    /// Stops submissions and wakes a reader waiting for a permit.
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.freed.notify_all();
    }

    /// Counts a finished job (or an invalid line) and decides, under the lock, whether the
    /// batch halts; if so the manager is paused at once, so not even a job already submitted
    /// (one waiting for its dependency) starts. Returns when it halts. `permit`: the job held
    /// one, which is returned only now.
    pub(super) fn settle(
        &self,
        rule: Option<halt::Rule>,
        failed: bool,
        permit: bool,
        manager: &Handle,
    ) -> Option<When> {
        let mut g = self.lock();
        let mut fired = None;
        if !g.stopped {
            if failed {
                g.tally.failed += 1;
            } else {
                g.tally.succeeded += 1;
            }
            if let Some(rule) = rule {
                if rule.met(g.tally, g.total) {
                    g.stopped = true;
                    // Err only once shut down, when nothing starts anyway.
                    let _ = manager.pause();
                    fired = Some(rule.when);
                }
            }
        }
        if permit {
            if let Some(p) = g.permits.as_mut() {
                *p += 1;
            }
        }
        drop(g);
        self.freed.notify_all();
        fired
    }
}
