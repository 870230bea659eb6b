//! Live usage sampling of local jobs (`Builder::sample_interval`): one thread,
//! `procman-sample`, for all of a manager's running jobs.
//!
//! Why one thread rather than each worker sampling its own job from its wait loop: the
//! members of a process group can only be found by reading every process's `/proc/PID/stat`
//! (a group has no list of its own, and `/proc/PID/task/TID/children` is often not built into
//! the kernel and misses members whose parent left). One scan per interval serves every
//! running job at once, where per-worker sampling would scan once per job: 64 jobs on a host
//! of 1000 processes would read 640 000 files a second at 100 ms instead of 10 000.
//!
//! The thread never reports to the engine itself: it writes each job's sample into the job's
//! [`Slot`] and wakes the job's worker, which is blocked on its pidfd and eventfd anyway and
//! reports the sample through `backend::Report`. So every report about an attempt still comes
//! from its own worker, in order, and nothing here sees the engine.
//!
//! Pid safety: a worker closes its slot before it reaps its process group's leader, and the
//! thread stores a sample only into a slot still open, under the slot's lock. A stored sample
//! was therefore scanned while the leader was unreaped, when no other group could have its id.
//!
//! Sampling off, none of this exists: no `Sampler`, no thread, no read of `/proc`. The thread
//! is started with the first job sampled and sleeps without a timeout while no job runs.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::deadline;
use crate::sys::{self, ProcFigures, Waker};
use crate::watch::{Usage, UsageSummary};

/// The sampler of one manager's local jobs.
pub(crate) struct Sampler {
    interval: Duration,
    shared: Mutex<Shared>,
    cv: Condvar,
}

#[derive(Default)]
struct Shared {
    slots: Vec<Arc<Slot>>,
    stop: bool,
    /// The thread could not be started or `/proc` could not be read: sample nothing.
    failed: bool,
    /// The thread sleeps without a timeout (no slot was open): a new slot must wake it. While
    /// it sleeps until its next round, a new slot waits for that round (no wake-up per job:
    /// thousands of short jobs would each cost the thread a context switch).
    idle: bool,
    thread: Option<JoinHandle<()>>,
}

/// One attempt's place in the sampler: its process group, and its latest sample until the
/// worker takes it.
struct Slot {
    pgid: u32,
    waker: Waker,
    state: Mutex<SlotState>,
}

struct SlotState {
    closed: bool,
    /// The latest sample not yet taken by the worker.
    fresh: Option<(Usage, UsageSummary)>,
    acc: Accumulator,
}

/// What a job's samples so far add up to.
struct Accumulator {
    spawned: Instant,
    /// When the previous sample was taken and the CPU time it found.
    prev: (Instant, Duration),
    peak_rss: u64,
    /// The last I/O figures of each live process, by (pid, start time).
    io_live: Vec<((u32, u64), (u64, u64))>,
    /// The last figures of processes gone since.
    io_gone: (u64, u64),
    io_seen: bool,
    summary: UsageSummary,
}

impl Accumulator {
    fn new(spawned: Instant) -> Accumulator {
        Accumulator {
            spawned,
            prev: (spawned, Duration::ZERO),
            peak_rss: 0,
            io_live: Vec::new(),
            io_gone: (0, 0),
            io_seen: false,
            summary: UsageSummary::default(),
        }
    }

    /// One sample from the group's processes as scanned at `now`.
    fn add(&mut self, members: &[&ProcFigures], now: Instant, ticks: u64) -> Usage {
        let ticks_sum = members
            .iter()
            .fold(0u64, |a, f| a.saturating_add(f.cpu_ticks));
        let found = Duration::from_secs_f64(ticks_sum as f64 / ticks.max(1) as f64);
        // Never falls: a member reaped outside the group takes its time with it.
        let cpu = found.max(self.prev.1);
        let span = now.saturating_duration_since(self.prev.0).as_secs_f64();
        let cpu_percent = if span > 0.0 {
            100.0 * cpu.saturating_sub(self.prev.1).as_secs_f64() / span
        } else {
            0.0
        };
        self.prev = (now, cpu);
        let rss = members
            .iter()
            .fold(0u64, |a, f| a.saturating_add(f.rss_bytes));
        self.peak_rss = self.peak_rss.max(rss);
        let (read_bytes, written_bytes) = self.io(members);
        let usage = Usage {
            elapsed: now.saturating_duration_since(self.spawned),
            cpu,
            cpu_percent,
            rss,
            peak_rss: self.peak_rss,
            processes: u32::try_from(members.len()).unwrap_or(u32::MAX),
            threads: members
                .iter()
                .fold(0u32, |a, f| a.saturating_add(f.threads)),
            read_bytes,
            written_bytes,
        };
        self.summary.add(&usage);
        usage
    }

    /// Bytes read and written by the group so far, processes gone since counted at their last
    /// figures.
    fn io(&mut self, members: &[&ProcFigures]) -> (Option<u64>, Option<u64>) {
        let now: Vec<((u32, u64), (u64, u64))> = members
            .iter()
            .filter_map(|f| Some(((f.pid, f.start), f.io?)))
            .collect();
        for (key, (r, w)) in &self.io_live {
            if !now.iter().any(|(k, _)| k == key) {
                self.io_gone.0 = self.io_gone.0.saturating_add(*r);
                self.io_gone.1 = self.io_gone.1.saturating_add(*w);
            }
        }
        self.io_seen |= !now.is_empty();
        self.io_live = now;
        if !self.io_seen {
            return (None, None);
        }
        let (r, w) = self
            .io_live
            .iter()
            .fold(self.io_gone, |(r, w), (_, (a, b))| {
                (r.saturating_add(*a), w.saturating_add(*b))
            });
        (Some(r), Some(w))
    }
}

/// A worker's hold on its attempt's slot. Closed (explicitly before the reap, or when
/// dropped), the slot takes no more samples and the sampler forgets it.
pub(crate) struct Sampled(Arc<Slot>);

impl Sampled {
    /// The latest sample not taken yet, with the summary of all so far. Never blocks but for
    /// the slot's lock (held for a few statements).
    pub(crate) fn take(&self) -> Option<(Usage, UsageSummary)> {
        self.0.state.lock().fresh.take()
    }

    /// No sample is stored from now on. Call before reaping the group's leader.
    pub(crate) fn close(&self) {
        self.0.state.lock().closed = true;
    }
}

impl Drop for Sampled {
    fn drop(&mut self) {
        self.close();
    }
}

impl Sampler {
    pub(crate) fn new(interval: Duration) -> Arc<Sampler> {
        Arc::new(Sampler {
            interval,
            shared: Mutex::new(Shared::default()),
            cv: Condvar::new(),
        })
    }

    /// Samples process group `pgid` (its leader spawned at `spawned`, not reaped) until the
    /// returned hold is closed; `waker` wakes the worker after each sample. Starts the thread
    /// on first use. `None` once sampling failed (no thread, no `/proc`) or stopped.
    pub(crate) fn register(
        self: &Arc<Self>,
        pgid: u32,
        spawned: Instant,
        waker: Waker,
    ) -> Option<Sampled> {
        let mut shared = self.shared.lock();
        if shared.failed || shared.stop {
            return None;
        }
        if shared.thread.is_none() {
            let me = self.clone();
            match std::thread::Builder::new()
                .name("procman-sample".into())
                .spawn(move || me.run())
            {
                Ok(t) => shared.thread = Some(t),
                Err(e) => {
                    log::warn!("cannot start the sampling thread ({e}); jobs are not sampled");
                    shared.failed = true;
                    return None;
                }
            }
        }
        let slot = Arc::new(Slot {
            pgid,
            waker,
            state: Mutex::new(SlotState {
                closed: false,
                fresh: None,
                acc: Accumulator::new(spawned),
            }),
        });
        shared.slots.push(slot.clone());
        if shared.idle {
            self.cv.notify_one();
        }
        Some(Sampled(slot))
    }

    /// Stops and joins the thread (shutdown, after every job ended). Blocks for at most one
    /// scan of `/proc`.
    pub(crate) fn stop(&self) {
        let thread = {
            let mut shared = self.shared.lock();
            shared.stop = true;
            shared.thread.take()
        };
        self.cv.notify_all();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// The thread: one scan of `/proc` per interval for every open slot. A panic here would
    /// end sampling only (the workers' waits do not depend on it); nothing here panics on
    /// what `/proc` holds.
    fn run(self: Arc<Self>) {
        let ticks = sys::clock_ticks();
        let mut figures: Vec<ProcFigures> = Vec::new();
        while let Some(slots) = self.next_round() {
            let mut pgids: Vec<u32> = slots.iter().map(|s| s.pgid).collect();
            pgids.sort_unstable();
            pgids.dedup();
            figures.clear();
            if let Err(e) = sys::scan_groups(&pgids, &mut figures) {
                log::warn!("cannot read /proc ({e}); jobs are not sampled");
                self.shared.lock().failed = true;
                return;
            }
            let now = Instant::now();
            for slot in &slots {
                let members: Vec<&ProcFigures> =
                    figures.iter().filter(|f| f.pgrp == slot.pgid).collect();
                let mut state = slot.state.lock();
                if state.closed || members.is_empty() {
                    continue;
                }
                let usage = state.acc.add(&members, now, ticks);
                state.fresh = Some((usage, state.acc.summary.clone()));
                drop(state);
                slot.waker.wake();
            }
        }
    }

    /// Sleeps one interval (without a timeout while no slot is open), then returns the open
    /// slots; `None` once stopped.
    fn next_round(&self) -> Option<Vec<Arc<Slot>>> {
        let mut shared = self.shared.lock();
        let mut due = deadline::from_now(self.interval);
        loop {
            if shared.stop {
                return None;
            }
            shared.slots.retain(|s| !s.state.lock().closed);
            if shared.slots.is_empty() {
                shared.idle = true;
                self.cv.wait(&mut shared);
                shared.idle = false;
                due = deadline::from_now(self.interval);
                continue;
            }
            match due {
                Some(at) if self.cv.wait_until(&mut shared, at).timed_out() => {
                    due = deadline::from_now(self.interval);
                    shared.slots.retain(|s| !s.state.lock().closed);
                    if !shared.slots.is_empty() && !shared.stop {
                        return Some(shared.slots.clone());
                    }
                }
                Some(_) => {}
                // An interval too long for the clock: never due.
                None => self.cv.wait(&mut shared),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: u32, cpu_ticks: u64, rss: u64, io: Option<(u64, u64)>) -> ProcFigures {
        ProcFigures {
            pid,
            pgrp: 1,
            start: u64::from(pid),
            cpu_ticks,
            threads: 1,
            rss_bytes: rss,
            io,
        }
    }

    #[test]
    fn cpu_never_falls_and_gone_processes_keep_their_io() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(t0);
        let a = proc(10, 100, 1000, Some((5, 7)));
        let b = proc(11, 50, 500, Some((1, 1)));
        let u = acc.add(&[&a, &b], t0 + Duration::from_secs(1), 100);
        assert_eq!(u.cpu, Duration::from_millis(1500));
        assert!((u.cpu_percent - 150.0).abs() < 1e-6);
        assert_eq!((u.rss, u.processes, u.threads), (1500, 2, 2));
        assert_eq!((u.read_bytes, u.written_bytes), (Some(6), Some(8)));
        // b is gone (reaped outside the group): its CPU time went with it, its I/O stays.
        let u = acc.add(&[&a], t0 + Duration::from_secs(2), 100);
        assert_eq!(u.cpu, Duration::from_millis(1500));
        assert_eq!(u.cpu_percent, 0.0);
        assert_eq!((u.rss, u.peak_rss), (1000, 1500));
        assert_eq!((u.read_bytes, u.written_bytes), (Some(6), Some(8)));
        assert_eq!(acc.summary.samples, 2);
        assert_eq!(acc.summary.peak_rss, 1500);
    }

    #[test]
    fn unreadable_io_is_none() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(t0);
        let u = acc.add(&[&proc(1, 0, 0, None)], t0, 100);
        assert_eq!((u.read_bytes, u.written_bytes), (None, None));
    }
}
