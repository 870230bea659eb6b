//! The deadline rule: every `Instant + Duration` in the crate goes through [`after`], and a
//! deadline that does not fit in an [`Instant`] means "no deadline" (`None`), never a panic.
//!
//! Any `Duration` a caller gives (a timeout, a grace period, a retry backoff, a drain bound, a
//! wait limit, a poll interval) is accepted: one too long for the clock waits for ever, as if
//! no limit had been set. `Instant + Duration` panics on overflow, so it is never written
//! directly; `tests/no_raw_deadlines.rs` scans the sources to keep it that way.

use std::time::{Duration, Instant};

/// `start + d`, or `None` ("no deadline") when that does not fit in an `Instant`.
pub(crate) fn after(start: Instant, d: Duration) -> Option<Instant> {
    start.checked_add(d)
}

/// `d` from now, or `None` ("no deadline") when that does not fit in an `Instant`.
pub(crate) fn from_now(d: Duration) -> Option<Instant> {
    after(Instant::now(), d)
}

/// The earlier of two optional deadlines, `None` being "never".
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// How long until `deadline` from `now` (zero once it has passed); `None` means no limit.
pub(crate) fn left(deadline: Option<Instant>, now: Instant) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_past_the_clock_is_none() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::MAX), None);
        assert_eq!(from_now(Duration::MAX), None);
        assert_eq!(after(now, Duration::ZERO), Some(now));
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now.checked_add(Duration::from_secs(1))
        );
        // Find (roughly) the last Instant there is: one nanosecond more does not fit.
        let mut far = now;
        let mut step = Duration::MAX;
        while !step.is_zero() {
            match after(far, step) {
                Some(f) => far = f,
                None => step /= 2,
            }
        }
        assert_eq!(after(far, Duration::from_nanos(1)), None);
        assert_eq!(after(far, Duration::ZERO), Some(far));
        assert_eq!(left(Some(far), now), Some(far - now));
        assert!(far - now > Duration::from_secs(100 * 365 * 86_400));
    }

    #[test]
    fn earliest_treats_none_as_never() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        assert_eq!(earliest(Some(now), Some(later)), Some(now));
        assert_eq!(earliest(Some(later), Some(now)), Some(now));
        assert_eq!(earliest(None, Some(now)), Some(now));
        assert_eq!(earliest(Some(now), None), Some(now));
        assert_eq!(earliest(None, None), None);
    }

    #[test]
    fn time_left_saturates_at_zero() {
        let now = Instant::now();
        assert_eq!(left(None, now), None);
        assert_eq!(
            left(Some(now), now + Duration::from_secs(5)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            left(Some(now + Duration::from_secs(5)), now),
            Some(Duration::from_secs(5))
        );
    }
}
