//! Waiting for a plugin's or a pipeline's end: [`PluginWaitError`] and the one wait loop both
//! use.

use std::fmt;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::FinishStatus;
use crate::Handle;

/// Why a plugin's or pipeline's `wait` returned without a [`FinishStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginWaitError {
    /// The time ran out first; the run goes on.
    Timeout,
    /// Called on the manager's dispatcher thread (inside a handler or a `finished` slot) for a
    /// run that has not finished: its end can only be handled by that same thread, so the wait
    /// could never return.
    InHandler,
}

impl fmt::Display for PluginWaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginWaitError::Timeout => f.write_str("timed out waiting for the plugin"),
            PluginWaitError::InHandler => {
                f.write_str("cannot wait for a plugin inside a handler: it would wait for itself")
            }
        }
    }
}

impl std::error::Error for PluginWaitError {}

/// The wait loop of [`Plugin::wait`](super::Plugin::wait) and
/// [`Pipeline::wait`](super::Pipeline::wait): blocks on `ended` (notified under `state`'s lock
/// when the run is over) until `end` gives the finish, `deadline` passes, or at once when called
/// on the manager's dispatcher thread before the end (the end is handled on that thread, so the
/// wait could never return).
pub(super) fn wait_for_end<S>(
    state: &Mutex<S>,
    ended: &Condvar,
    manager: &Handle,
    deadline: Option<Instant>,
    end: impl Fn(&S) -> Option<FinishStatus>,
) -> Result<FinishStatus, PluginWaitError> {
    let mut s = state.lock();
    loop {
        if let Some(finish) = end(&s) {
            return Ok(finish);
        }
        if manager.on_dispatcher_thread() {
            return Err(PluginWaitError::InHandler);
        }
        match deadline {
            None => ended.wait(&mut s),
            Some(d) => {
                if ended.wait_until(&mut s, d).timed_out() && end(&s).is_none() {
                    return Err(PluginWaitError::Timeout);
                }
            }
        }
    }
}
