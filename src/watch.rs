//! What a running job is doing, for user interfaces: its live resource usage ([`Usage`], from
//! [`Builder::sample_interval`](crate::Builder::sample_interval)), the summary of those samples
//! in its final record ([`UsageSummary`]), and its progress as its own output tells it
//! ([`Progress`], from [`JobSpec::progress`](crate::JobSpec::progress)). Plain data.

use std::sync::Arc;
use std::time::Duration;

/// One sample of a running job's whole process tree: every process of its process group (not
/// only the processes it waits for), read from `/proc` (Linux only; elsewhere jobs are never
/// sampled).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Usage {
    /// Time from the attempt's spawn to this sample.
    pub elapsed: Duration,
    /// CPU time (user + system) used so far by the group's live processes and by the children
    /// they waited for. A member whose parent left the group and that was reaped by another
    /// process takes its time with it; this figure then stays where it was (it never falls).
    pub cpu: Duration,
    /// CPU use over the time since the previous sample (the first: since the spawn), in per
    /// cent of one CPU: 250.0 is two and a half CPUs busy.
    pub cpu_percent: f64,
    /// Resident memory of the group's processes now, in bytes (the sum of their RSS: pages
    /// shared between them are counted once per process).
    pub rss: u64,
    /// The largest `rss` of this attempt's samples so far.
    pub peak_rss: u64,
    /// Processes in the group now.
    pub processes: u32,
    /// Threads of those processes now.
    pub threads: u32,
    /// Bytes the group's processes read through system calls so far (`rchar` of
    /// `/proc/PID/io`, any file, pipe or socket), counting processes that have since exited;
    /// `None` when no process's figures could be read (another user's process, a kernel
    /// without task I/O accounting).
    pub read_bytes: Option<u64>,
    /// Bytes written so far (`wchar`), as `read_bytes`.
    pub written_bytes: Option<u64>,
}

/// What a job's samples came to: in [`JobRecord::sampled`](crate::JobRecord::sampled) once its
/// attempt ended (the last attempt's), `None` when sampling was off or the attempt ended
/// before its first sample.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct UsageSummary {
    /// How many samples were taken.
    pub samples: u32,
    /// The largest resident memory of the process group seen, in bytes.
    pub peak_rss: u64,
    /// The mean of the samples' resident memory, in bytes.
    pub mean_rss: u64,
    /// The largest CPU use over one interval, in per cent of one CPU.
    pub peak_cpu_percent: f64,
    /// The mean CPU use from the spawn to the last sample, in per cent of one CPU.
    pub mean_cpu_percent: f64,
    /// The most processes seen in the group at once.
    pub peak_processes: u32,
    /// The most threads seen at once.
    pub peak_threads: u32,
    /// The last sample's figures ([`Usage::cpu`], [`Usage::read_bytes`],
    /// [`Usage::written_bytes`]).
    pub cpu: Duration,
    /// See [`Usage::read_bytes`].
    pub read_bytes: Option<u64>,
    /// See [`Usage::written_bytes`].
    pub written_bytes: Option<u64>,
}

impl UsageSummary {
    /// Adds one sample.
    pub(crate) fn add(&mut self, u: &Usage) {
        self.samples = self.samples.saturating_add(1);
        self.peak_rss = self.peak_rss.max(u.rss);
        let n = u128::from(self.samples);
        let mean = (u128::from(self.mean_rss) * (n - 1) + u128::from(u.rss)) / n;
        self.mean_rss = u64::try_from(mean).unwrap_or(u64::MAX);
        if u.cpu_percent > self.peak_cpu_percent {
            self.peak_cpu_percent = u.cpu_percent;
        }
        let wall = u.elapsed.as_secs_f64();
        if wall > 0.0 {
            self.mean_cpu_percent = 100.0 * u.cpu.as_secs_f64() / wall;
        }
        self.peak_processes = self.peak_processes.max(u.processes);
        self.peak_threads = self.peak_threads.max(u.threads);
        self.cpu = u.cpu;
        self.read_bytes = u.read_bytes;
        self.written_bytes = u.written_bytes;
    }
}

/// How far a job has got, as its progress parser read it from one line of its output.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// The fraction done, from 0.0 to 1.0 (clamped to that range; `NaN` is dropped).
    pub fraction: Option<f64>,
    /// A short text for a user: "cycle 3 of 10".
    pub message: Option<String>,
}

impl Progress {
    /// Progress as a fraction (clamped to 0.0..=1.0; `NaN` gives none).
    pub fn fraction(fraction: f64) -> Progress {
        Progress {
            fraction: clamp(fraction),
            message: None,
        }
    }

    /// Progress as a message only.
    pub fn message(message: impl Into<String>) -> Progress {
        Progress {
            fraction: None,
            message: Some(message.into()),
        }
    }

    /// Step `done` of `total` (the fraction `done / total`, none when `total` is 0) with a
    /// message.
    pub fn steps(done: u64, total: u64, message: impl Into<String>) -> Progress {
        Progress {
            fraction: (total > 0)
                .then(|| clamp(done as f64 / total as f64))
                .flatten(),
            message: Some(message.into()),
        }
    }

    /// The same progress with its fraction clamped to 0.0..=1.0 (`NaN` dropped).
    pub(crate) fn clamped(mut self) -> Progress {
        self.fraction = self.fraction.and_then(clamp);
        self
    }
}

fn clamp(f: f64) -> Option<f64> {
    (!f.is_nan()).then(|| f.clamp(0.0, 1.0))
}

/// A progress parser: called with each line of a job's output (without its `\n`, both streams),
/// it returns the job's progress when the line tells it. See
/// [`JobSpec::progress`](crate::JobSpec::progress).
pub type ProgressParser = Arc<dyn Fn(&[u8]) -> Option<Progress> + Send + Sync + 'static>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_tracks_peaks_and_means() {
        let mut s = UsageSummary::default();
        let sample = |secs: u64, cpu_ms: u64, pct: f64, rss: u64| Usage {
            elapsed: Duration::from_secs(secs),
            cpu: Duration::from_millis(cpu_ms),
            cpu_percent: pct,
            rss,
            processes: 2,
            threads: 3,
            ..Usage::default()
        };
        s.add(&sample(1, 500, 50.0, 100));
        s.add(&sample(2, 2000, 150.0, 300));
        s.add(&sample(3, 2000, 0.0, 200));
        assert_eq!(s.samples, 3);
        assert_eq!(s.peak_rss, 300);
        assert_eq!(s.mean_rss, 200);
        assert_eq!(s.peak_cpu_percent, 150.0);
        assert!((s.mean_cpu_percent - 66.666).abs() < 0.01);
        assert_eq!((s.peak_processes, s.peak_threads), (2, 3));
    }

    #[test]
    fn fractions_are_clamped() {
        assert_eq!(Progress::fraction(1.5).fraction, Some(1.0));
        assert_eq!(Progress::fraction(-1.0).fraction, Some(0.0));
        assert_eq!(Progress::fraction(f64::NAN).fraction, None);
        assert_eq!(Progress::steps(3, 0, "x").fraction, None);
        assert_eq!(Progress::steps(1, 4, "x").fraction, Some(0.25));
    }
}
