//! The scheduler's commands from the API layer and the engine's threads that are not a job's
//! own life cycle: deletion, limits and capacities, pause and resume, closing for shutdown,
//! retry timers, subscriptions, retention and holds. Each runs under the manager's lock, takes
//! microseconds and never blocks.

use std::cmp::Reverse;
use std::time::Instant;

use crossbeam_channel::Sender;

use super::{KillReason, Phase, State};
use crate::engine::sched::retain::Retention;
use crate::error::{BuildError, ShutDown, UnknownJob};
use crate::events::Event;
use crate::record::{JobId, KillOutcome};

/// What the retry timer does next (see [`State::next_timer`]).
pub(crate) enum TimerStep {
    /// A retry was due and is queued now: look again at once.
    Fired,
    /// Sleep until this instant (or until woken).
    Until(Instant),
    /// No retry waits: sleep until woken.
    Idle,
}

impl State {
    /// `kill_process`: a pending job is cancelled, a running one asked to die.
    ///
    /// # Errors
    /// [`UnknownJob`] for an id not known, deleted or evicted.
    pub(crate) fn kill_job(&mut self, id: JobId) -> Result<KillOutcome, UnknownJob> {
        self.get(id).ok_or(UnknownJob(id))?;
        self.kill(id, KillReason::User).ok_or(UnknownJob(id))
    }

    /// `delete_job`: kills a live job, then hides the record at once; a record that is final
    /// and whose handler returned is removed now, any other when its handler returns.
    ///
    /// # Errors
    /// [`UnknownJob`] for an id not known, deleted or evicted.
    pub(crate) fn delete(&mut self, id: JobId) -> Result<(), UnknownJob> {
        self.get(id).ok_or(UnknownJob(id))?;
        self.kill(id, KillReason::User);
        let e = self.jobs.get_mut(&id).ok_or(UnknownJob(id))?;
        if matches!(e.phase, Phase::Final) && e.handler_done {
            if self.jobs.remove(&id).is_some() {
                self.retain.deleted(&self.jobs);
            }
        } else {
            e.deleted = true;
        }
        Ok(())
    }

    /// Changes the job limit (not zero: checked by the caller) and admits what now fits.
    ///
    /// # Errors
    /// [`BuildError::ShutDown`] once closed (nothing changed).
    pub(crate) fn set_limit(&mut self, limit: usize) -> Result<(), BuildError> {
        if self.closed {
            return Err(BuildError::ShutDown);
        }
        self.limit = limit;
        self.pump();
        Ok(())
    }

    /// Changes the capacities (not zero: checked by the caller); queued jobs that no longer fit
    /// end as `SpawnFailed`; admits what now fits.
    ///
    /// # Errors
    /// [`BuildError::ShutDown`] once closed (nothing changed).
    pub(crate) fn set_capacities(&mut self, cpus: u32, memory: u64) -> Result<(), BuildError> {
        if self.closed {
            return Err(BuildError::ShutDown);
        }
        self.cpu_capacity = cpus;
        self.memory_capacity = memory;
        self.fail_unfittable();
        self.pump();
        Ok(())
    }

    /// Stops admitting jobs.
    ///
    /// # Errors
    /// [`ShutDown`] once closed (a paused drain would never end).
    pub(crate) fn pause(&mut self) -> Result<(), ShutDown> {
        if self.closed {
            return Err(ShutDown);
        }
        self.paused = true;
        Ok(())
    }

    /// Admits jobs again.
    ///
    /// # Errors
    /// [`ShutDown`] once closed (nothing changed).
    pub(crate) fn resume(&mut self) -> Result<(), ShutDown> {
        if self.closed {
            return Err(ShutDown);
        }
        self.paused = false;
        self.pump();
        Ok(())
    }

    /// Shutdown begins: no new job, no limit change, no pause from here on.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// A draining shutdown: closes, resumes a paused queue (draining it would never end) and
    /// admits what fits.
    pub(crate) fn close_for_drain(&mut self) {
        self.closed = true;
        self.paused = false;
        self.pump();
    }

    /// A cancelling shutdown: closes, cancels every pending job and asks every running one to
    /// die; no job is retried from here on.
    pub(crate) fn close_and_cancel(&mut self) {
        self.closed = true;
        self.cancelling = true;
        self.cancel_all();
    }

    /// A shutdown called from an output observer, which cannot wait: closes and resumes a
    /// paused queue; with `cancel`, cancels and kills every job, else admits what fits.
    pub(crate) fn close_from_observer(&mut self, cancel: bool) {
        self.closed = true;
        self.paused = false;
        if cancel {
            self.cancelling = true;
            self.cancel_all();
        } else {
            self.pump();
        }
    }

    /// The retry timer's step: queues the earliest retry if it is due at `now`.
    pub(crate) fn next_timer(&mut self, now: Instant) -> TimerStep {
        match self.timers.peek().copied() {
            Some(Reverse((at, id))) if at <= now => {
                self.timers.pop();
                #[cfg(test)]
                if let Some(core) = self.jobs.get(&id).and_then(|e| e.core.as_ref()) {
                    crate::fault::hit(&core.args, crate::fault::TIMER);
                }
                self.retry_due(id);
                TimerStep::Fired
            }
            Some(Reverse((at, _))) => TimerStep::Until(at),
            None => TimerStep::Idle,
        }
    }

    /// Without a timer thread: every retry waiting for its backoff is queued now.
    pub(crate) fn retry_all_now(&mut self) {
        while let Some(Reverse((_, id))) = self.timers.pop() {
            self.retry_due(id);
        }
    }

    /// A new event subscriber.
    pub(crate) fn subscribe(&mut self, tx: Sender<Event>) {
        self.events.add(tx);
    }

    /// Shutdown finished: subscribers' channels are disconnected (see `Subscribers::end`).
    pub(crate) fn end_events(&mut self) {
        self.events.end();
    }

    /// Which finished records are kept.
    pub(crate) fn retention(&self) -> Retention {
        self.retain.policy()
    }

    /// Changes the retention policy; evicts at once what it no longer keeps.
    pub(crate) fn set_retention(&mut self, retention: Retention) {
        self.retain.set_policy(retention, &mut self.jobs);
    }

    /// A hold (or a wait) on `id` begins: its record is handed over if it is evicted meanwhile.
    pub(crate) fn hold(&mut self, id: JobId) {
        self.retain.add_waiter(id);
    }

    /// [`hold`](Self::hold) for a job known now.
    ///
    /// # Errors
    /// [`UnknownJob`] for an id not known, deleted or evicted (nothing held).
    pub(crate) fn hold_known(&mut self, id: JobId) -> Result<(), UnknownJob> {
        self.get(id).ok_or(UnknownJob(id))?;
        self.retain.add_waiter(id);
        Ok(())
    }

    /// A hold (or wait) on `id` ends.
    pub(crate) fn release(&mut self, id: JobId) {
        self.retain.remove_waiter(id);
    }
}
