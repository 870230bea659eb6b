//! The poller: one thread per manager follows every Slurm job of the manager with one
//! `squeue` per round (at an interval that drops to the minimum on any change and doubles up to
//! the maximum while nothing happens), and reports to each job's worker.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::ending::{
    exit_from_pair, is_final, nodes_given, parse_squeue, Ending, Row, SQUEUE_FORMAT,
    SQUEUE_LEGACY_FORMAT,
};
use super::follow::one_line;
use super::SlurmOptions;
use crate::deadline;
use crate::error::panic_message;
use crate::sys::Exit;

pub(super) enum Ctl {
    /// Follow this Slurm job and report to this channel.
    Track(u32, Sender<Update>),
    /// Something was cancelled: poll soon.
    Nudge,
    Stop,
}

pub(super) enum Update {
    /// The job's raw state changed (not final).
    State(String),
    /// The job ended. The last report.
    End(Ending),
    /// The poller panicked in a round that followed this job ("internal error: ..."); it
    /// follows the job no longer. The last report: the worker cancels the job.
    Internal(String),
}

struct Tracked {
    tx: Sender<Update>,
    state: String,
}

pub(super) struct Poller {
    opts: Arc<SlurmOptions>,
    rx: Receiver<Ctl>,
    jobs: HashMap<u32, Tracked>,
    legacy: bool,
    last_warning: Option<Instant>,
}

impl Poller {
    /// A poller of `opts`'s cluster, told what to follow through `rx`; see [`Poller::run`].
    pub(super) fn new(opts: Arc<SlurmOptions>, rx: Receiver<Ctl>) -> Poller {
        Poller {
            opts,
            rx,
            jobs: HashMap::new(),
            legacy: false,
            last_warning: None,
        }
    }

    /// The poller thread's body: runs until told to stop (or every sender is gone).
    pub(super) fn run(mut self) {
        let (min, max) = (self.opts.poll_min, self.opts.poll_max);
        let mut interval = min;
        let mut next: Option<Instant> = None;
        loop {
            let msg = match next {
                None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(at) => self
                    .rx
                    .recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            // An interval too long for the clock: no poll is due ("never").
            let soon = deadline::from_now(min);
            match msg {
                Ok(Ctl::Track(job, tx)) => {
                    self.jobs.insert(
                        job,
                        Tracked {
                            tx,
                            state: "PENDING".into(),
                        },
                    );
                    interval = min;
                    next = deadline::earliest(next, soon);
                    continue;
                }
                Ok(Ctl::Nudge) => {
                    interval = min;
                    next = deadline::earliest(next, soon);
                    continue;
                }
                Ok(Ctl::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // The panic rule (DESIGN.md): a round that panics ends every job it followed as an
            // internal error (their workers cancel them); retrying the round could panic for
            // ever. The poller goes on with the jobs tracked after it.
            let changed = match catch_unwind(AssertUnwindSafe(|| self.round())) {
                Ok(changed) => changed,
                Err(p) => {
                    let msg = format!(
                        "internal error: the Slurm poller thread panicked: {}",
                        panic_message(&*p)
                    );
                    log::error!("{msg}; ending the {} jobs it followed", self.jobs.len());
                    for (_, t) in self.jobs.drain() {
                        let _ = t.tx.send(Update::Internal(msg.clone()));
                    }
                    true
                }
            };
            interval = if changed {
                min
            } else {
                interval.saturating_mul(2).min(max)
            };
            next = if self.jobs.is_empty() {
                None
            } else {
                deadline::from_now(interval)
            };
        }
        // Dropping the senders tells any worker still waiting (none after a shutdown).
    }

    /// One query for every tracked job; true if anything changed.
    fn round(&mut self) -> bool {
        let mut ids: Vec<u32> = self.jobs.keys().copied().collect();
        ids.sort_unstable();
        let mut changed = false;
        for chunk in ids.chunks(200) {
            let rows = match self.query(chunk) {
                Ok(r) => r,
                Err(e) => {
                    // The controller may be restarting: keep the jobs and try again later.
                    let now = Instant::now();
                    if self
                        .last_warning
                        .map_or(true, |t| now - t > Duration::from_secs(60))
                    {
                        log::warn!("cannot ask Slurm about procman's jobs: {e}");
                        self.last_warning = Some(now);
                    }
                    continue;
                }
            };
            for &job in chunk {
                match rows.get(&job) {
                    Some(row) => changed |= self.update(job, row),
                    None => {
                        let ending = self.gone(job);
                        self.end(job, ending);
                        changed = true;
                    }
                }
            }
        }
        changed
    }

    fn update(&mut self, job: u32, row: &Row) -> bool {
        #[cfg(test)]
        crate::fault::hit_slurm_state(&row.state);
        if is_final(&row.state) {
            let exit = match row.exit {
                Some(x) => Some(x),
                None => self.scontrol_exit(job),
            };
            self.end(
                job,
                Ending {
                    state: row.state.clone(),
                    reason: row.reason.clone(),
                    exit,
                    ran: nodes_given(&row.nodes),
                    lost: None,
                },
            );
            return true;
        }
        let Some(t) = self.jobs.get_mut(&job) else {
            return false;
        };
        if t.state == row.state {
            return false;
        }
        t.state = row.state.clone();
        if t.tx.send(Update::State(row.state.clone())).is_err() {
            self.jobs.remove(&job);
        }
        true
    }

    fn end(&mut self, job: u32, ending: Ending) {
        if let Some(t) = self.jobs.remove(&job) {
            let _ = t.tx.send(Update::End(ending));
        }
    }

    /// Runs squeue for these jobs. Jobs it does not list are missing from the map.
    fn query(&mut self, jobs: &[u32]) -> Result<HashMap<u32, Row>, String> {
        let list = jobs
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        loop {
            let (flag, format) = if self.legacy {
                ("-o", SQUEUE_LEGACY_FORMAT)
            } else {
                ("-O", SQUEUE_FORMAT)
            };
            let out = Command::new(&self.opts.squeue)
                .args(["-h", "-t", "all", "-j", &list, flag, format])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", self.opts.squeue.display()))?;
            if out.status.success() {
                return Ok(parse_squeue(&out.stdout, self.legacy));
            }
            let err = one_line(&out.stderr);
            if err.contains("Invalid job id") {
                // Every one of them is unknown (squeue lists the known ones otherwise).
                return Ok(HashMap::new());
            }
            if self.legacy || !err.to_ascii_lowercase().contains("format") {
                return Err(format!("squeue failed: {err}"));
            }
            log::info!("squeue cannot print exit codes ({err}); asking scontrol instead");
            self.legacy = true;
        }
    }

    /// Legacy squeue: the exit code of a finished job from `scontrol show job`.
    fn scontrol_exit(&self, job: u32) -> Option<Exit> {
        let out = Command::new(&self.opts.scontrol)
            .args(["-o", "show", "job", &job.to_string()])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("ExitCode="))
            .and_then(exit_from_pair)
    }

    /// squeue no longer knows the job (purged after `MinJobAge`, or lost): ask accounting.
    fn gone(&self, job: u32) -> Ending {
        let last = self
            .jobs
            .get(&job)
            .map_or("PENDING".to_owned(), |t| t.state.clone());
        let out = Command::new(&self.opts.sacct)
            .args(["-n", "-P", "-X", "-o", "State,ExitCode,NodeList", "-j"])
            .arg(job.to_string())
            .stdin(Stdio::null())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let mut f = text.lines().next().unwrap_or("").split('|');
                // "CANCELLED by 0" -> CANCELLED
                let state = f.next().and_then(|s| s.split_whitespace().next());
                match state {
                    Some(s) if is_final(s) => {
                        return Ending {
                            state: s.to_owned(),
                            reason: String::new(),
                            exit: f.next().and_then(exit_from_pair),
                            ran: f.next().is_some_and(nodes_given),
                            lost: None,
                        }
                    }
                    Some(s) => format!("sacct reports it as {s}"),
                    None => "sacct does not know it either".to_owned(),
                }
            }
            Ok(o) => format!("sacct: {}", one_line(&o.stderr)),
            Err(e) => format!("cannot run {}: {e}", self.opts.sacct.display()),
        };
        Ending::lost(
            &last,
            format!(
                "Slurm job {job} vanished from Slurm's view (squeue: Invalid job id; {why}); \
                 how it ended is unknown"
            ),
        )
    }
}
