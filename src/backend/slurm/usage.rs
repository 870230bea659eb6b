//! CPU time and peak memory of ended Slurm jobs from Slurm's accounting: one
//! `sacct -n -P -j ID,ID,... -o JobID,UserCPU,SystemCPU,MaxRSS` for the jobs that ended in one
//! round of the poller. Without accounting (`sacct` says it is disabled, or is missing) procman
//! asks no more and the records carry the wall time only.
//!
//! Job steps ([`StepUsage`]): a step that ran at least [`STEP_MIN_WALL`], and ten times as long
//! as the last `sacct` took, waits, once its `srun` exited, for one `sacct -j ALLOC.N,...` that
//! asks about every step waiting then (so the wait costs a step at most about 10 %); it runs as
//! a child process the poller looks at between ticks (never blocking it), one at a time. A
//! step its answer lists ends with its figures; one still missing is asked about again, until
//! [`SlurmOptions::accounting_wait`] after its end, then ends with its wall time only; a failing `sacct` ends those
//! it asked about with the wall time only (logged at most once a minute). Shorter steps end at once
//! with the wall time only: an `sacct` takes about 0.1 s here, longer than such a job.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::array::SlurmId;
use super::follow::one_line;
use super::tail::Tail;
use super::SlurmOptions;
use crate::backend::Later;
use crate::job::AttemptEnd;
use crate::record::ResourceUsage;

/// What the accounting says of one job.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Accounted {
    pub(super) user: Option<Duration>,
    pub(super) system: Option<Duration>,
    /// The largest MaxRSS of the job's steps, in bytes.
    pub(super) peak: Option<u64>,
}

impl Accounted {
    pub(super) fn fill(&self, usage: &mut ResourceUsage) {
        usage.user_cpu = self.user.or(usage.user_cpu);
        usage.system_cpu = self.system.or(usage.system_cpu);
        usage.peak_memory = self.peak.or(usage.peak_memory);
    }
}

/// Asks `sacct` about `jobs`. `Err(true)`: accounting is not there (ask no more); `Err(false)`:
/// a failure that may pass (the database restarting).
pub(super) fn query(
    opts: &SlurmOptions,
    jobs: &[SlurmId],
) -> Result<HashMap<SlurmId, Accounted>, bool> {
    let list = jobs
        .iter()
        .map(SlurmId::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new(&opts.sacct)
        .args([
            "-n",
            "-P",
            "-o",
            "JobID,UserCPU,SystemCPU,MaxRSS",
            "-j",
            &list,
        ])
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            log::info!(
                "cannot run {} ({e}): no CPU times or peak memory from Slurm",
                opts.sacct.display()
            );
            return Err(true);
        }
    };
    if !out.status.success() {
        let msg = one_line(&out.stderr);
        let gone = msg.contains("disabled");
        if gone {
            log::info!("Slurm has no accounting ({msg}): records carry the wall time only");
        } else {
            log::warn!("sacct failed: {msg}");
        }
        return Err(gone);
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// A step shorter than this ends without asking the accounting.
pub(super) const STEP_MIN_WALL: Duration = Duration::from_secs(1);

/// What an `sacct` is taken to cost until one was timed (measured here: 0.08–0.1 s).
const SACCT_GUESS: Duration = Duration::from_millis(100);

/// At most this many steps per `sacct` (its answer, about 50 bytes a step, fits in the pipe).
const STEPS_PER_QUERY: usize = 200;

/// Ended steps waiting for their figures, and the `sacct` under way.
#[derive(Default)]
pub(super) struct StepUsage {
    waiting: Vec<Waiting>,
    /// Steps whose wait is over, for the poller to end ([`StepUsage::take_done`]).
    done: Vec<(Later, AttemptEnd, Option<Tail>)>,
    query: Option<Query>,
    /// When a failing `sacct` was last logged (at most once a minute).
    warned: Option<Instant>,
    /// How long the last `sacct` took (`None`: none yet).
    took: Option<Duration>,
}

struct Waiting {
    /// `ALLOC.N`
    id: String,
    /// When it ends without figures (`None`: never, a wait too long for the clock).
    until: Option<Instant>,
    later: Later,
    end: AttemptEnd,
    /// The follower of its output (the poller drains it before ending the attempt).
    tail: Option<Tail>,
}

struct Query {
    child: Child,
    ids: Vec<String>,
    started: Instant,
}

impl StepUsage {
    /// Whether a step that ran for `wall` is worth its wait for an `sacct`: at least
    /// [`STEP_MIN_WALL`] and ten times what the last `sacct` took.
    pub(super) fn worth(&self, wall: Duration) -> bool {
        wall >= STEP_MIN_WALL && wall >= self.took.unwrap_or(SACCT_GUESS).saturating_mul(10)
    }

    /// Holds the ended step `id`'s attempt until its figures come (an end other than an exit,
    /// which has no figures, is done at once).
    pub(super) fn wait(
        &mut self,
        opts: &SlurmOptions,
        id: String,
        later: Later,
        end: AttemptEnd,
        tail: Option<Tail>,
    ) {
        if !matches!(end, AttemptEnd::Exited { .. }) {
            self.done.push((later, end, tail));
            return;
        }
        self.waiting.push(Waiting {
            id,
            until: crate::deadline::from_now(opts.accounting_wait),
            later,
            end,
            tail,
        });
    }

    /// The steps whose wait is over, with their figures when `sacct` had them: the poller ends
    /// their attempts (after their last output).
    pub(super) fn take_done(&mut self) -> Vec<(Later, AttemptEnd, Option<Tail>)> {
        std::mem::take(&mut self.done)
    }

    fn finish(&mut self, w: Waiting) {
        self.done.push((w.later, w.end, w.tail));
    }

    /// True while steps wait (the poller keeps ticking).
    pub(super) fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.query.is_some() || !self.done.is_empty()
    }

    /// Looks at the `sacct` under way without blocking: ends the steps it found (and those
    /// waiting past [`SlurmOptions::accounting_wait`]), and starts the next `sacct` for those still waiting.
    /// `accounting` turns false when `sacct` says there is none (every waiting step ends).
    pub(super) fn step(&mut self, opts: &SlurmOptions, accounting: &mut bool) {
        if let Some(mut q) = self.query.take() {
            match q.child.try_wait() {
                Ok(None) => self.query = Some(q),
                Ok(Some(status)) => {
                    self.took = Some(q.started.elapsed());
                    self.answered(q, status.success(), accounting);
                }
                Err(e) => {
                    log::warn!("cannot wait for sacct: {e}");
                    let _ = q.child.kill();
                    let _ = q.child.wait();
                }
            }
        }
        let now = Instant::now();
        let mut i = 0;
        while i < self.waiting.len() {
            if !*accounting || self.waiting[i].until.is_some_and(|u| now >= u) {
                let w = self.waiting.swap_remove(i);
                self.finish(w);
            } else {
                i += 1;
            }
        }
        if self.query.is_none() && !self.waiting.is_empty() {
            self.ask(opts);
        }
    }

    fn ask(&mut self, opts: &SlurmOptions) {
        let ids: Vec<String> = self
            .waiting
            .iter()
            .take(STEPS_PER_QUERY)
            .map(|w| w.id.clone())
            .collect();
        let spawned = Command::new(&opts.sacct)
            .args(["-n", "-P", "-o", "JobID,UserCPU,SystemCPU,MaxRSS", "-j"])
            .arg(ids.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(child) => {
                self.query = Some(Query {
                    child,
                    ids,
                    started: Instant::now(),
                })
            }
            Err(e) => {
                log::info!(
                    "cannot run {} ({e}): job steps end without CPU times or peak memory",
                    opts.sacct.display()
                );
                for w in std::mem::take(&mut self.waiting) {
                    self.finish(w);
                }
            }
        }
    }

    /// `sacct` answered: the steps it lists end with their figures.
    fn answered(&mut self, mut q: Query, ok: bool, accounting: &mut bool) {
        let mut out = String::new();
        let mut err = Vec::new();
        if let Some(mut o) = q.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = q.child.stderr.take() {
            let _ = e.read_to_end(&mut err);
        }
        if !ok {
            let msg = one_line(&err);
            if msg.contains("disabled") {
                log::info!("Slurm has no accounting ({msg}): records carry the wall time only");
                *accounting = false;
            } else if self
                .warned
                .map_or(true, |t| t.elapsed() > Duration::from_secs(60))
            {
                log::warn!("sacct failed: {msg}; job steps end without CPU times or peak memory");
                self.warned = Some(Instant::now());
            }
            // Asking again at once would likely fail again: those asked about end without.
            let mut i = 0;
            while i < self.waiting.len() {
                if q.ids.contains(&self.waiting[i].id) {
                    let w = self.waiting.swap_remove(i);
                    self.finish(w);
                } else {
                    i += 1;
                }
            }
            return;
        }
        let found = parse_steps(&out);
        let mut i = 0;
        while i < self.waiting.len() {
            let id = &self.waiting[i].id;
            match found.get(id.as_str()).filter(|_| q.ids.contains(id)) {
                Some(a) => {
                    let mut w = self.waiting.swap_remove(i);
                    if let AttemptEnd::Exited { usage, .. } = &mut w.end {
                        a.fill(usage);
                    }
                    self.finish(w);
                }
                None => i += 1,
            }
        }
    }

    fn stop_query(&mut self) {
        if let Some(mut q) = self.query.take() {
            let _ = q.child.kill();
            let _ = q.child.wait();
        }
    }

    /// Ends every waiting step with what is known (no figures, no more output), and stops
    /// the `sacct`.
    pub(super) fn abandon(&mut self) {
        self.stop_query();
        for w in self.waiting.drain(..) {
            w.later.end(w.end);
        }
        for (later, end, _) in self.done.drain(..) {
            later.end(end);
        }
    }
}

impl Drop for StepUsage {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Parses `sacct -n -P -o JobID,UserCPU,SystemCPU,MaxRSS -j ALLOC.N,...`: each step's line.
fn parse_steps(text: &str) -> HashMap<&str, Accounted> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let [id, user, system, rss, ..] = f[..] else {
            continue;
        };
        if id.split_once('.').is_none() {
            continue;
        }
        m.insert(
            id,
            Accounted {
                user: duration(user),
                system: duration(system),
                peak: bytes(rss),
            },
        );
    }
    m
}

/// Parses `sacct -n -P -o JobID,UserCPU,SystemCPU,MaxRSS`: the job's own line gives the CPU
/// times, its steps' lines (`ID.batch`, `ID.0`) the peak memory.
pub(super) fn parse(text: &str) -> HashMap<SlurmId, Accounted> {
    let mut m: HashMap<SlurmId, Accounted> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let [id, user, system, rss, ..] = f[..] else {
            continue;
        };
        let (base, step) = match id.split_once('.') {
            Some((b, s)) => (b, Some(s)),
            None => (id, None),
        };
        let Some(base) = SlurmId::parse(base) else {
            continue;
        };
        let a = m.entry(base).or_default();
        if step.is_none() {
            a.user = duration(user);
            a.system = duration(system);
        }
        if let Some(b) = bytes(rss) {
            a.peak = Some(a.peak.map_or(b, |p| p.max(b)));
        }
    }
    m
}

/// Slurm's `[D-][HH:]MM:SS[.mmm]`.
fn duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (h, m, sec) = match parts[..] {
        [m, s] => (0, m.parse::<u64>().ok()?, s),
        [h, m, s] => (h.parse::<u64>().ok()?, m.parse::<u64>().ok()?, s),
        _ => return None,
    };
    let sec: f64 = sec.parse().ok()?;
    let whole = days
        .saturating_mul(86_400)
        .saturating_add(h.saturating_mul(3_600))
        .saturating_add(m.saturating_mul(60));
    Duration::try_from_secs_f64(sec)
        .ok()
        .map(|d| d.saturating_add(Duration::from_secs(whole)))
}

/// Slurm's memory figures: a number with a K, M, G or T suffix (1024-based), or bytes.
fn bytes(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (num, mult) = match s.as_bytes()[s.len() - 1] {
        b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        b'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sacct_lines_give_cpu_times_and_peak_memory() {
        let m = parse(
            "2053|00:02.064|00:00.080|\n2053.batch|00:02.064|00:00.080|96888K\n\
             2054|1-02:03:04|01:00:00|\n2054.batch|||2G\n2054.0|||3.5G\nbad|x|y|z\n\
             77_3|00:01.000|00:00.000|\n77_3.batch|||1M\n",
        );
        assert_eq!(
            m[&SlurmId::from(2053)],
            Accounted {
                user: Some(Duration::from_millis(2064)),
                system: Some(Duration::from_millis(80)),
                peak: Some(96888 << 10),
            }
        );
        assert_eq!(
            m[&SlurmId::from(2054)].user,
            Some(Duration::from_secs(86_400 + 7_384))
        );
        assert_eq!(
            m[&SlurmId::from(2054)].system,
            Some(Duration::from_secs(3_600))
        );
        assert_eq!(m[&SlurmId::from(2054)].peak, Some(3758096384));
        let task = SlurmId::parse("77_3").unwrap();
        assert_eq!(m[&task].peak, Some(1 << 20));
        assert_eq!(duration(""), None);
        assert!(duration("99999999999999999-00:00:00").is_some());
        assert_eq!(bytes("12"), Some(12));
        let steps =
            parse_steps("4358.12|00:00.087|00:00.010|2048K\n4358.13|00:01.500||\n4358|x|y|z\n");
        assert_eq!(steps.len(), 2);
        assert_eq!(steps["4358.12"].peak, Some(2 << 20));
        assert_eq!(steps["4358.13"].user, Some(Duration::from_millis(1500)));
        assert_eq!(steps["4358.13"].peak, None);
        let mut u = StepUsage::default();
        assert!(!u.worth(Duration::from_millis(999)) && u.worth(Duration::from_secs(1)));
        u.took = Some(Duration::from_millis(200));
        assert!(!u.worth(Duration::from_millis(1999)) && u.worth(Duration::from_secs(2)));
        assert_eq!(bytes("-1K"), None);
    }
}
