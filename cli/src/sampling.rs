//! The live figures of running jobs, as the tool uses the library's sampling and progress:
//! when to sample (`--sample-interval`), the progress parser of `--progress-pattern`, a running
//! job's view filled from [`procman::Snapshot::live`], and the usage over time that `--report`
//! draws, collected from the manager's events.
//!
//! Sampling is on by default only where something shows its figures (the dashboard,
//! `JOBLOG.live.json`, the report), every [`DEFAULT_INTERVAL`]: the dashboard and the live file
//! are redrawn 5 times a second, but a CPU % over half a second is steadier to read than one
//! over a fifth, and reading `/proc` for every process of every running job twice a second is
//! cheap (issue 14 asks 100 ms to stay within 5 % of no sampling on the harness,
//! `bench/run.sh --sample 100`). Elsewhere it stays off, so a plain batch costs what it did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Receiver;
use procman::{Event, JobRecord, LiveJob, Progress, ProgressParser};
use procman_cli::ProgressPattern;

use crate::args::{self, UsageError};
use crate::live::JobView;
use crate::report::Sample;

/// The sampling interval when something shows the figures and `--sample-interval` is not given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(500);
/// How many undelivered events the report's subscription holds (about 2 MB at most): at the
/// default interval, 64 running jobs fill it in over 8 minutes, and the main loop empties it
/// 5 times a second.
const EVENT_CAPACITY: usize = 1 << 15;
/// At most this many points per job are kept for the report (halved by dropping every other
/// when full: a long job keeps its whole span, coarser).
const MAX_POINTS: usize = 256;

/// The interval to sample at: `--sample-interval`'s (0: never), else [`DEFAULT_INTERVAL`] when
/// `shown` (something shows the figures), else never.
pub fn interval(option: Option<&str>, shown: bool) -> Result<Option<Duration>, UsageError> {
    Ok(match args::opt_duration("--sample-interval", option)? {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None => shown.then_some(DEFAULT_INTERVAL),
    })
}

/// `--progress-pattern`'s parser for [`procman::JobSpec::progress_parser`].
pub fn parser(option: Option<&str>) -> Result<Option<ProgressParser>, UsageError> {
    let Some(text) = option else {
        return Ok(None);
    };
    let pattern = ProgressPattern::parse(text)
        .map_err(|e| UsageError(format!("option --progress-pattern: {e}")))?;
    let parser: ProgressParser = Arc::new(move |line: &[u8]| {
        let found = pattern.find(line)?;
        let mut p = Progress::fraction(found.fraction);
        p.message = Some(found.message);
        Some(p)
    });
    Ok(Some(parser))
}

/// Fills a running job's live figures from its entry in the snapshot.
pub fn fill(view: &mut JobView, live: &LiveJob) {
    if let Some(u) = &live.usage {
        view.cpu_percent = Some(u.cpu_percent);
        view.rss = Some(u.rss);
    }
    if let Some(p) = &live.progress {
        view.progress = p.fraction;
        view.progress_message = p.message.clone();
    }
}

/// One point of a job's usage over time, relative to its attempt's spawn.
#[derive(Clone, Debug, PartialEq)]
struct Point {
    /// Seconds since the attempt's spawn.
    at: f64,
    cpu_percent: f64,
    rss: u64,
    /// Samples may be missing before this one (the subscription lost events).
    gap: bool,
}

/// A job's points, of its latest attempt.
#[derive(Default)]
struct JobSeries {
    attempt: u32,
    points: Vec<Point>,
    /// Events were lost since the last point.
    gap: bool,
}

/// Usage over time per job, from the manager's [`Event::Usage`]s (subscribed before the first
/// job starts). [`drain`](Self::drain) often (the subscription is bounded: what does not fit
/// is lost and shows as a gap in every job's line), [`take`](Self::take) a job's points when
/// it has finished.
pub struct Series {
    rx: Receiver<Event>,
    jobs: HashMap<u64, JobSeries>,
    /// Events lost in all.
    pub lost: u64,
}

impl Series {
    /// Subscribes to `manager`'s events.
    pub fn subscribe(manager: &procman::Handle) -> Series {
        Series {
            rx: manager.subscribe(EVENT_CAPACITY),
            jobs: HashMap::new(),
            lost: 0,
        }
    }

    /// Takes in the events delivered so far. Never blocks.
    pub fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            match ev {
                Event::Usage { id, attempt, usage } => {
                    let s = self.jobs.entry(id.0).or_default();
                    if attempt != s.attempt {
                        // A retry: the report shows the last attempt's run.
                        s.points.clear();
                        s.attempt = attempt;
                    }
                    s.points.push(Point {
                        at: usage.elapsed.as_secs_f64(),
                        cpu_percent: usage.cpu_percent,
                        rss: usage.rss,
                        gap: std::mem::take(&mut s.gap),
                    });
                    if s.points.len() > MAX_POINTS {
                        thin(&mut s.points);
                    }
                }
                Event::Lost(n) => {
                    self.lost = self.lost.saturating_add(n);
                    for s in self.jobs.values_mut() {
                        s.gap = true;
                    }
                }
                _ => {}
            }
        }
    }

    /// The finished job's points as the report's samples (seconds since `start`, the batch's
    /// start), forgetting them. Only the last attempt's, placed from its spawn time.
    pub fn take(&mut self, record: &JobRecord, start: SystemTime) -> Vec<Sample> {
        let Some(s) = self.jobs.remove(&record.id.0) else {
            return Vec::new();
        };
        let Some(spawned) = record.started_at else {
            return Vec::new();
        };
        if s.attempt != record.attempts {
            return Vec::new();
        }
        let base = spawned
            .duration_since(start)
            .map_or(0.0, |d| d.as_secs_f64());
        s.points
            .into_iter()
            .map(|p| Sample {
                t: base + p.at,
                cpu_percent: Some(p.cpu_percent),
                rss: Some(p.rss),
                gap: p.gap,
            })
            .collect()
    }
}

/// Halves the points by keeping every other one and the last; a dropped point's gap passes
/// to the next kept one.
fn thin(points: &mut Vec<Point>) {
    let last = points.len().saturating_sub(1);
    let mut kept = Vec::with_capacity(points.len() / 2 + 1);
    let mut gap = false;
    for (i, p) in points.drain(..).enumerate() {
        gap |= p.gap;
        if i % 2 == 0 || i == last {
            kept.push(Point { gap, ..p });
            gap = false;
        }
    }
    *points = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_the_options_else_the_default_where_shown() {
        assert_eq!(interval(None, false).unwrap(), None);
        assert_eq!(interval(None, true).unwrap(), Some(DEFAULT_INTERVAL));
        assert_eq!(interval(Some("0"), true).unwrap(), None);
        assert_eq!(
            interval(Some("100ms"), false).unwrap(),
            Some(Duration::from_millis(100))
        );
        assert!(interval(Some("soon"), true)
            .unwrap_err()
            .0
            .starts_with("option --sample-interval: "));
        let Err(e) = parser(Some("{n}")) else {
            panic!("{{n}} alone is not a pattern")
        };
        assert!(e.0.starts_with("option --progress-pattern: "), "{e}");
        let p = parser(Some("cycle {n} of {m}")).unwrap().unwrap();
        let got = p(b"refinement cycle 3 of 10").unwrap();
        assert_eq!(got.fraction, Some(0.3));
        assert_eq!(got.message.as_deref(), Some("cycle 3 of 10"));
        assert!(p(b"R factor 0.3").is_none());
    }

    #[test]
    fn thinning_keeps_the_span_and_the_gaps() {
        let mut points: Vec<Point> = (0..6)
            .map(|i| Point {
                at: f64::from(i),
                cpu_percent: 0.0,
                rss: 0,
                gap: i == 3,
            })
            .collect();
        thin(&mut points);
        let kept: Vec<(f64, bool)> = points.iter().map(|p| (p.at, p.gap)).collect();
        assert_eq!(
            kept,
            [(0.0, false), (2.0, false), (4.0, true), (5.0, false)]
        );
    }
}
