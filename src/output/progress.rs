//! Progress parsing on the observed-output path (`JobSpec::progress`): a job with a progress
//! parser is observed; each line goes to the parser, then to the user's observer if there is
//! one. The latest progress waits in a [`ProgressSlot`] for the job's worker, which is woken
//! when the slot fills and reports it (`backend::Report::progress`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::spec::{Observer, Stream};
use crate::sys::Waker;
use crate::watch::{Progress, ProgressParser};

/// The latest progress of one attempt not yet reported.
pub(crate) struct ProgressSlot {
    latest: Mutex<Option<Progress>>,
    waker: Waker,
}

impl ProgressSlot {
    /// A slot that wakes `waker` (the attempt's worker) when it fills.
    pub(crate) fn new(waker: Waker) -> Arc<ProgressSlot> {
        Arc::new(ProgressSlot {
            latest: Mutex::new(None),
            waker,
        })
    }

    /// Keeps `p` as the latest; wakes the worker only when the slot was empty, so a job that
    /// prints progress faster than its worker reports it wakes the worker once per report.
    fn put(&self, p: Progress) {
        let was_empty = self.latest.lock().replace(p).is_none();
        if was_empty {
            self.waker.wake();
        }
    }

    /// The latest progress not taken yet. Never blocks but for the slot's lock.
    pub(crate) fn take(&self) -> Option<Progress> {
        self.latest.lock().take()
    }
}

/// The observer of a job with a progress parser: the parser, then the user's observer if any.
/// A parser that panics is logged and not called again, and the user's observer goes on; a
/// user's observer that panics is logged and not called again for that stream, and the parser
/// goes on.
pub(crate) fn with_progress(
    user: Option<Observer>,
    parser: ProgressParser,
    slot: Arc<ProgressSlot>,
) -> Observer {
    let parser_broken = AtomicBool::new(false);
    // Per stream, as the readers do for an observer alone.
    let user_broken = [AtomicBool::new(false), AtomicBool::new(false)];
    Arc::new(move |id, stream, line| {
        if !parser_broken.load(Ordering::Relaxed) {
            match catch_unwind(AssertUnwindSafe(|| parser(line))) {
                Ok(Some(p)) => slot.put(p.clamped()),
                Ok(None) => {}
                Err(_) => {
                    parser_broken.store(true, Ordering::Relaxed);
                    log::error!("job {id}: the progress parser panicked; it is not called again");
                }
            }
        }
        if let Some(user) = &user {
            let broken = &user_broken[usize::from(stream == Stream::Stderr)];
            if !broken.load(Ordering::Relaxed)
                && catch_unwind(AssertUnwindSafe(|| user(id, stream, line))).is_err()
            {
                broken.store(true, Ordering::Relaxed);
                log::error!("job {id}: the output observer panicked; it is not called again");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::JobId;

    #[test]
    fn parser_then_observer_and_panics_are_contained() {
        let slot = ProgressSlot::new(Waker::none());
        let seen = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let s2 = seen.clone();
        let user: Observer = Arc::new(move |_, _, line: &[u8]| {
            assert_ne!(line, b"boom-user");
            s2.lock().push(line.to_vec());
        });
        let parser: ProgressParser = Arc::new(|line: &[u8]| {
            assert_ne!(line, b"boom-parser");
            line.strip_prefix(b"p ")
                .map(|n| Progress::fraction(std::str::from_utf8(n).unwrap().parse().unwrap()))
        });
        let obs = with_progress(Some(user), parser, slot.clone());
        obs(JobId(1), Stream::Stdout, b"p 0.5");
        obs(JobId(1), Stream::Stdout, b"p 2");
        assert_eq!(slot.take().unwrap().fraction, Some(1.0));
        assert_eq!(slot.take(), None);
        obs(JobId(1), Stream::Stdout, b"boom-user");
        obs(JobId(1), Stream::Stdout, b"p 0.25");
        assert_eq!(slot.take().unwrap().fraction, Some(0.25));
        obs(JobId(1), Stream::Stdout, b"boom-parser");
        obs(JobId(1), Stream::Stdout, b"p 0.75");
        assert_eq!(slot.take(), None);
        assert_eq!(seen.lock().len(), 2);
    }
}
