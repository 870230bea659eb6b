//! Ending a job on a kill request or at its timeout, for every backend: SIGTERM, the grace
//! period, SIGKILL. The step machine decides what is due; the backend says how a job is sent
//! TERM and KILL ([`Signals`]: the local backend signals the process group, the Slurm backend
//! runs `scancel`) and waits in between (for the child, or for the poller's reports).

use std::time::{Duration, Instant};

use crate::deadline;
use crate::job::JobCore;

/// How a backend ends its job.
pub(crate) trait Signals {
    /// Asks the job to end (SIGTERM). Never blocks for long; a failure is logged.
    fn term(&mut self);
    /// Ends the job at once (SIGKILL). Never blocks for long; a failure is logged.
    fn kill(&mut self);
    /// Ends a job whose program has not started (Slurm: still pending): nothing to end
    /// gracefully. By default [`Signals::kill`].
    fn cancel_unstarted(&mut self) {
        self.kill();
    }
    /// What is ended, for the log: "its process group", "Slurm job 42".
    fn what(&self) -> String;
}

/// Where a job's ending stands: the timeout's deadline, and what was sent when.
/// Small: the Slurm poller keeps one per job in flight (the grace is read from the job's core).
pub(crate) struct Termination {
    /// `None`: no timeout, or its clock has not started (a Slurm job not seen running yet).
    deadline: Option<Instant>,
    started: bool,
    timed_out: bool,
    term_sent: Option<Instant>,
    killed_at: Option<Instant>,
}

impl Termination {
    /// For a job whose program has not started yet: see [`Termination::start_clock`].
    pub(crate) fn new() -> Termination {
        Termination {
            deadline: None,
            started: false,
            timed_out: false,
            term_sent: None,
            killed_at: None,
        }
    }

    /// For a job whose program started at `at`.
    pub(crate) fn running_since(core: &JobCore, at: Instant) -> Termination {
        let mut t = Termination::new();
        t.start_clock(core, at);
        t
    }

    /// The program started at `at`: its timeout counts from there. A timeout too long for the
    /// clock is none.
    pub(crate) fn start_clock(&mut self, core: &JobCore, at: Instant) {
        self.started = true;
        self.deadline = core.timeout.and_then(|t| deadline::after(at, t));
    }

    /// The job was ended for its timeout.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// When KILL (or the cancel of a job not started) was sent, if it was.
    pub(crate) fn killed_at(&self) -> Option<Instant> {
        self.killed_at
    }

    /// Sends what is due through `signals` (whose job has not been reaped yet) and returns how
    /// long the caller may wait before calling again (`None`: until the job ends or a wake).
    /// A kill request (`JobCore::kill_requested`) or the timeout sends TERM, or KILL at once
    /// when the grace is zero; KILL follows when the grace has passed since TERM.
    pub(crate) fn step(&mut self, core: &JobCore, signals: &mut impl Signals) -> Option<Duration> {
        let now = Instant::now();
        if self.term_sent.is_none() && self.killed_at.is_none() {
            let kill = core
                .kill_requested
                .load(std::sync::atomic::Ordering::SeqCst);
            if !kill && self.deadline.is_some_and(|d| now >= d) {
                self.timed_out = true;
                log::info!("job {}: timed out; ending {}", core.id, signals.what());
            }
            if kill || self.timed_out {
                #[cfg(test)]
                crate::fault::hit(&core.args, crate::fault::WORKER_RUNNING);
                if !self.started {
                    signals.cancel_unstarted();
                    self.killed_at = Some(now);
                } else if core.grace.is_zero() {
                    signals.kill();
                    self.killed_at = Some(now);
                } else {
                    signals.term();
                    self.term_sent = Some(now);
                }
            }
        }
        if let (Some(t), None) = (self.term_sent, self.killed_at) {
            // A grace too long for the clock: KILL is never due.
            if let Some(at) = deadline::after(t, core.grace) {
                if now >= at {
                    log::info!(
                        "job {}: still alive after the grace period; killing {}",
                        core.id,
                        signals.what()
                    );
                    signals.kill();
                    self.killed_at = Some(now);
                } else {
                    return Some(at.saturating_duration_since(now));
                }
            }
        }
        match (self.term_sent, self.killed_at, self.deadline) {
            (None, None, Some(d)) => Some(d.saturating_duration_since(now)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[derive(Default)]
    struct Log(Vec<&'static str>);

    impl Signals for Log {
        fn term(&mut self) {
            self.0.push("term");
        }
        fn kill(&mut self) {
            self.0.push("kill");
        }
        fn cancel_unstarted(&mut self) {
            self.0.push("cancel");
        }
        fn what(&self) -> String {
            "the test job".into()
        }
    }

    fn core(timeout: Option<Duration>, grace: Duration) -> JobCore {
        let mut core = JobCore::for_tests(crate::record::JobId(1), "true");
        core.timeout = timeout;
        core.grace = grace;
        core
    }

    #[test]
    fn a_kill_sends_term_then_kill_after_the_grace() {
        let c = core(None, Duration::from_millis(30));
        let mut t = Termination::running_since(&c, Instant::now());
        let mut log = Log::default();
        assert_eq!(t.step(&c, &mut log), None);
        c.kill_requested.store(true, Ordering::SeqCst);
        let wait = t.step(&c, &mut log).expect("the grace is counted");
        assert!(wait <= Duration::from_millis(30));
        assert_eq!(log.0, ["term"]);
        std::thread::sleep(wait);
        assert_eq!(t.step(&c, &mut log), None);
        assert_eq!(log.0, ["term", "kill"]);
        assert!(t.killed_at().is_some() && !t.timed_out());
        // Nothing more is ever sent.
        assert_eq!(t.step(&c, &mut log), None);
        assert_eq!(log.0, ["term", "kill"]);
    }

    #[test]
    fn the_timeout_counts_from_the_start_and_a_zero_grace_kills_at_once() {
        let c = core(Some(Duration::from_millis(20)), Duration::ZERO);
        let mut t = Termination::new();
        let mut log = Log::default();
        // Not started: no clock, nothing due.
        assert_eq!(t.step(&c, &mut log), None);
        t.start_clock(&c, Instant::now());
        let wait = t.step(&c, &mut log).expect("the deadline is counted");
        std::thread::sleep(wait);
        assert_eq!(t.step(&c, &mut log), None);
        assert_eq!(log.0, ["kill"]);
        assert!(t.timed_out());
    }

    #[test]
    fn a_kill_before_the_start_cancels() {
        let c = core(Some(Duration::from_secs(60)), Duration::from_secs(60));
        let mut t = Termination::new();
        let mut log = Log::default();
        c.kill_requested.store(true, Ordering::SeqCst);
        assert_eq!(t.step(&c, &mut log), None);
        assert_eq!(log.0, ["cancel"]);
        assert!(t.killed_at().is_some());
    }

    #[test]
    fn a_grace_too_long_for_the_clock_never_kills() {
        let c = core(None, Duration::MAX);
        let mut t = Termination::running_since(&c, Instant::now());
        let mut log = Log::default();
        c.kill_requested.store(true, Ordering::SeqCst);
        assert_eq!(t.step(&c, &mut log), None);
        assert_eq!(t.step(&c, &mut log), None);
        assert_eq!(log.0, ["term"]);
    }
}
