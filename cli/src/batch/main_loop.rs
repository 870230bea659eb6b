//! The main thread of a batch: receives every message (finished jobs, invalid lines, the end of
//! the input, signals), keeps the counts, the joblog and the display, stops the batch when told
//! to (`--halt`, a signal), and ends with the summary and the exit status.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use procman::{JobStatus, ProcessManager, ShutdownMode};

use super::gate::Shared;
use super::joblog::{joblog_entry, Joblog};
use super::ui::{paths_of, Counts, Ui};
use super::{Finished, Labels, Msg, Options, Resume};
use super::{MAX_FAILED_STATUS, OWN_ERROR, REDRAW};
use crate::dash::{Dash, Key};
use crate::halt::{Tally, When};
use crate::live::{self, JobView, LiveState};
use crate::report;
use crate::sampling::{self, Series};

/// At most this many running jobs in the live state.
const MAX_VIEW: usize = 100;

/// The main loop's state.
pub(super) struct Batch {
    o: Options,
    manager: ProcessManager,
    rx: Receiver<Msg>,
    gate: Arc<Shared>,
    labels: Labels,
    /// `None` without `--joblog`, and once writing it failed.
    joblog: Option<Joblog>,
    /// Where the live state is published (`JOBLOG.live.json`); `None` without `--joblog` or
    /// once publishing failed.
    live_file: Option<PathBuf>,
    ui: Ui,
    c: Counts,
    input_done: bool,
    own_error: bool,
    interrupted: Option<i32>,
    stopping: bool,
    failures: Vec<String>,
    /// The status of the job (or invalid line) the batch halted on.
    halt_status: Option<i32>,
    /// `--report`: every finished job, for the page written at the end.
    report_jobs: Vec<report::ReportJob>,
    /// `--report` with sampling: usage over time of the jobs, from the manager's events.
    series: Option<Series>,
    invalid: Vec<String>,
    started: SystemTime,
}

impl Batch {
    pub(super) fn new(
        o: Options,
        manager: ProcessManager,
        (tx, rx): (Sender<Msg>, Receiver<Msg>),
        gate: Arc<Shared>,
        labels: Labels,
        (joblog, series): (Option<Joblog>, Option<Series>),
    ) -> Batch {
        let live = o.live();
        let start = Instant::now();
        // The dashboard where the live line would be; keys only when stdin is a terminal that
        // the batch does not read jobs from.
        let dash = o.dashboard().then(|| {
            let reads_stdin = o.command.is_none() && o.file.as_deref().map_or(true, |f| f == "-");
            let keys = (io::stdin().is_terminal() && !reads_stdin)
                .then_some((tx, Msg::Key as fn(Key) -> Msg));
            Dash::start(keys)
        });
        let live_file = o.joblog.as_deref().map(live::live_path);
        Batch {
            o,
            manager,
            rx,
            gate,
            labels,
            joblog,
            live_file,
            ui: Ui {
                live,
                dash,
                shown: false,
                start,
                last_draw: start,
            },
            c: Counts::default(),
            input_done: false,
            own_error: false,
            interrupted: None,
            stopping: false,
            failures: Vec::new(),
            halt_status: None,
            report_jobs: Vec::new(),
            series,
            invalid: Vec::new(),
            started: SystemTime::now(),
        }
    }

    /// Runs until every submitted job has reported (after the end of the input, or once
    /// stopping), then prints the summary and returns the exit status.
    pub(super) fn run(mut self) -> i32 {
        loop {
            let submitted = self.gate.lock().submitted;
            if (self.input_done || self.stopping) && self.c.done == submitted {
                break;
            }
            // On a terminal or publishing, wake up in time to redraw the live state.
            let msg = if self.ticking() {
                let wait = REDRAW.saturating_sub(self.ui.last_draw.elapsed());
                match self.rx.recv_timeout(wait) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match self.rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                }
            };
            let halt_now = msg.is_some_and(|m| self.handle(m));
            if self.stopping {
                self.stop(halt_now);
            }
            if self.ticking() && (self.ui.last_draw.elapsed() >= REDRAW) {
                self.tick();
            }
        }
        if self.ticking() {
            self.tick();
        }
        self.finish()
    }

    /// Whether the main loop redraws or publishes the live state, or takes in the usage
    /// events, every [`REDRAW`].
    fn ticking(&self) -> bool {
        self.ui.live || self.live_file.is_some() || self.series.is_some()
    }

    /// Draws the dashboard or the live line, publishes the live state, takes in the events.
    fn tick(&mut self) {
        if let Some(s) = self.series.as_mut() {
            s.drain();
        }
        if !self.ui.live && self.live_file.is_none() {
            self.ui.last_draw = Instant::now();
            return;
        }
        let state = self.live_state();
        if let Some(path) = &self.live_file {
            if let Err(e) = live::publish(path, &state) {
                let msg = format!(
                    "cannot publish the live state to {}: {e}; status --follow will not see this batch",
                    path.display()
                );
                self.live_file = None;
                self.ui.say(&msg);
            }
        }
        if let Some(d) = self.ui.dash.as_mut() {
            d.draw(&state);
            self.ui.last_draw = Instant::now();
        } else {
            let total = state.total;
            self.ui.draw(
                &self.c,
                total,
                self.input_done,
                (state.running as usize, state.queued),
            );
        }
        self.ui.last_draw = Instant::now();
    }

    /// The batch now: counts, the running jobs (at most [`MAX_VIEW`], by number, with the last
    /// line of their log file), recent failures.
    fn live_state(&self) -> LiveState {
        let snap = self.manager.snapshot();
        let c = &self.c;
        let submitted = self.gate.lock().submitted;
        let mut jobs: Vec<JobView> = {
            let labels = self.labels.lock().expect("labels");
            // `live` lists the same jobs in the same order as `running`.
            snap.running
                .iter()
                .zip(snap.live.iter().map(Some).chain(std::iter::repeat(None)))
                .filter_map(|((id, pid, elapsed), figures)| {
                    let l = labels.get(&id.0)?;
                    let mut view = JobView {
                        seq: l.seq,
                        label: l.text.clone(),
                        command: l.command.clone(),
                        pid: *pid,
                        elapsed: elapsed.as_secs_f64(),
                        last_line: l.log.as_deref().and_then(live::last_line),
                        ..JobView::default()
                    };
                    if let Some(f) = figures.filter(|f| f.id == *id) {
                        sampling::fill(&mut view, f);
                    }
                    Some(view)
                })
                .take(MAX_VIEW)
                .collect()
        };
        jobs.sort_by_key(|j| j.seq);
        let ran = c.ok + c.failed + c.not_run + c.interrupted;
        let recent = self.failures.len().saturating_sub(live::RECENT_FAILURES);
        LiveState {
            pid: std::process::id(),
            elapsed: self.ui.start.elapsed().as_secs_f64(),
            total: submitted + c.skipped + c.invalid,
            input_done: self.input_done,
            done: ran + c.skipped + c.invalid,
            succeeded: c.ok,
            failed: c.failed + c.invalid,
            running: snap.running.len() as u64,
            queued: snap
                .counts
                .iter()
                .find(|(s, _)| *s == procman::JobStatus::Queued)
                .map_or(0, |(_, n)| *n as u64),
            sample_interval: self.o.sample_interval.map(|d| d.as_secs_f64()),
            jobs,
            recent_failures: self.failures[recent..].to_vec(),
        }
    }

    /// Takes in one message. Returns whether the batch must halt now (kill the running jobs).
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Skipped => self.c.skipped += 1,
            Msg::Warning(w) => self.ui.say(&w),
            Msg::Invalid(m, halts) => {
                self.c.invalid += 1;
                self.ui.say(&format!("invalid job, {m}"));
                self.failures.push(format!("invalid job, {m}"));
                if self.o.report.is_some() {
                    self.invalid.push(m);
                }
                if let Some(when) = halts {
                    self.stopping = true;
                    self.halt_status = Some(1);
                    self.ui.say("--halt: starting no new job");
                    return when == When::Now;
                }
            }
            Msg::InputDone => self.input_done = true,
            Msg::ReadError(e) => {
                self.ui
                    .say(&format!("cannot read the job file further: {e}"));
                self.input_done = true;
                self.own_error = true;
            }
            Msg::Signal(s) if self.interrupted.is_none() => {
                self.interrupted = Some(s);
                self.ui.say(&format!(
                    "{}: stopping; killing the running jobs",
                    procman::signal_name(s).unwrap_or("signal")
                ));
                self.stopping = true;
                return true;
            }
            // A second signal while stopping changes nothing: the kills are under way.
            Msg::Signal(_) => {}
            // `q` on the dashboard: as Ctrl-C.
            Msg::Key(Key::Quit) => return self.handle(Msg::Signal(libc::SIGINT)),
            Msg::Key(Key::ToggleTable) => {
                if let Some(d) = self.ui.dash.as_mut() {
                    d.toggle_table();
                }
                // Redraw at once.
                self.ui.last_draw = self.ui.start;
            }
            Msg::Done(f) => return self.done(f),
        }
        false
    }

    /// A finished job: counts, joblog, its line on the display, and `--halt`. Returns whether
    /// the batch must halt now.
    fn done(&mut self, mut f: Box<Finished>) -> bool {
        self.c.done += 1;
        if f.record.status == JobStatus::DependencyFailed {
            if let Some(e) = f.record.error.as_deref() {
                if let Some(named) = name_dependency(e, &self.labels) {
                    f.record.error = Some(named);
                }
            }
        }
        self.write_joblog(&f);
        // A template's jobs have no lines: job N is the N-th argument set.
        let head = if self.o.command.is_some() {
            format!("job {}", f.seq)
        } else {
            format!("job {} (line {})", f.seq, f.line)
        };
        self.count(&f, &head);
        if self.o.report.is_some() {
            // The label names a JSON job's name too: `job 3 (line 3, "prep")`.
            let label = self
                .labels
                .lock()
                .expect("labels")
                .get(&f.record.id.0)
                .map(|l| l.text.clone());
            let mut job = report::ReportJob::of(
                f.seq,
                label.unwrap_or_else(|| head.clone()),
                f.command.clone(),
                &f.record,
                self.started,
            );
            // The job's usage events came before its end (its handler sent this message).
            if let Some(s) = self.series.as_mut() {
                s.drain();
                job.samples = s.take(&f.record, self.started);
            }
            self.report_jobs.push(job);
        }
        let Some(when) = f.halts else {
            return false;
        };
        let r = &f.record;
        self.stopping = true;
        self.halt_status = Some(if r.status.is_success() {
            0
        } else {
            crate::exit_code(r)
        });
        self.ui.say(&format!(
            "--halt: {head} ends the batch; starting no new job"
        ));
        when == When::Now
    }

    /// Writes the job's joblog entry, if it has one; a failure stops the joblog.
    fn write_joblog(&mut self, f: &Finished) {
        if let (Some(log), Some(entry)) = (self.joblog.as_mut(), joblog_entry(f)) {
            if let Err(e) = log.record(&entry) {
                self.ui.say(&format!(
                    "cannot write the joblog: {e}; it is no longer written"
                ));
                self.joblog = None;
                self.own_error = true;
            }
        }
    }

    /// Counts a finished job and shows its line (`head` names it).
    fn count(&mut self, f: &Finished, head: &str) {
        let r = &f.record;
        let not_run = r.status == JobStatus::Cancelled
            || (self.stopping && r.status == JobStatus::DependencyFailed);
        // Killed because we were told to stop: interrupted, not a failure of its own
        // (the joblog still records it, so --resume runs it again).
        let interrupted_job = self.stopping && r.status == JobStatus::Killed;
        if not_run {
            self.c.not_run += 1;
        } else if interrupted_job {
            self.c.interrupted += 1;
            self.ui.say(&format!("{head} interrupted: {}", f.command));
        } else if r.status.is_success() {
            self.c.ok += 1;
            if !self.ui.live && !self.o.quiet {
                self.ui.say(&format!(
                    "{head} ok, {}: {}",
                    crate::fmt_duration(r.usage.map_or(Duration::ZERO, |u| u.wall)),
                    f.command
                ));
            }
        } else {
            self.c.failed += 1;
            if r.status == JobStatus::TimedOut {
                self.c.timed_out += 1;
            }
            let text = format!(
                "{head} FAILED, {}: {}{}",
                crate::account(r),
                f.command,
                paths_of(r)
            );
            self.ui.say(&text);
            self.failures
                .push(format!("{head} {}{}", r.describe_end(), paths_of(r)));
        }
    }

    /// Stops submitting; `now`: cancels the batch (kills the running jobs), else cancels only
    /// the jobs that would wait for ever.
    fn stop(&mut self, now: bool) {
        self.gate.stop();
        if now {
            // Blocks for at most the grace period; every handler has sent its record when
            // it returns, so the loop then drains them all.
            self.ui.clear();
            self.manager.shutdown(ShutdownMode::Cancel, None);
        } else {
            // The manager is paused: jobs waiting for a dependency or a retry would wait for
            // ever, so they are cancelled. Not the other pending ones: those were admitted
            // before the halt and are being spawned (a job handed to a worker is still
            // "pending" until it has spawned); `soon` lets them run.
            let labels = self.labels.lock().expect("labels");
            for id in self.manager.pending_processes() {
                if labels.get(&id.0).is_some_and(|l| l.may_wait) {
                    // The batch never deletes jobs, so every listed id is known.
                    let _ = self.manager.kill_process(id);
                }
            }
        }
    }

    /// The summary and the failures on stderr; then the exit status: 128+N after signal N,
    /// 255 after procman's own error, the `--halt` rule's, else the number of failures (at
    /// most 101).
    fn finish(mut self) -> i32 {
        self.ui.end();
        if let Some(path) = self.live_file.take() {
            let _ = std::fs::remove_file(path);
        }
        let summary = self.summary();
        if !self.o.quiet || !self.failures.is_empty() || self.interrupted.is_some() {
            self.ui.say(&summary);
        }
        for f in self.failures.iter().take(20) {
            self.ui.say(&format!("  {f}"));
        }
        if self.failures.len() > 20 {
            self.ui
                .say(&format!("  ... and {} more", self.failures.len() - 20));
        }
        if let Some(path) = self.o.report.clone() {
            self.write_report(&path, summary);
        }
        drop(self.manager);
        let c = &self.c;
        if let Some(s) = self.interrupted {
            return 128 + s;
        }
        if self.own_error {
            return OWN_ERROR;
        }
        if let Some(rule) = self.o.halt {
            let tally = Tally {
                failed: c.failed + c.invalid,
                succeeded: c.ok,
            };
            return rule.exit_status(self.halt_status, tally, self.gate.lock().total);
        }
        (c.failed + c.invalid).min(MAX_FAILED_STATUS) as i32
    }

    /// `--report FILE`: the page; a failure to write it is procman's own error.
    fn write_report(&mut self, path: &std::path::Path, summary: String) {
        let mut jobs = std::mem::take(&mut self.report_jobs);
        jobs.sort_by_key(|j| j.seq);
        let page = report::Report {
            title: format!("procman batch report: {}", self.input_name()),
            wall: self.ui.start.elapsed().as_secs_f64(),
            jobs,
            invalid: std::mem::take(&mut self.invalid),
            summary,
            error_hook: self.o.report_error_hook,
            lost_samples: self.series.as_ref().map_or(0, |s| s.lost),
        };
        if let Err(e) = report::write(path, &page) {
            self.ui
                .say(&format!("cannot write the report {}: {e}", path.display()));
            self.own_error = true;
        }
    }

    /// The job file or the command, for the report's title.
    fn input_name(&self) -> String {
        match (&self.o.command, &self.o.file) {
            (Some(words), _) => words
                .iter()
                .map(|w| w.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            (None, Some(f)) => f.to_string_lossy().into_owned(),
            (None, None) => "stdin".into(),
        }
    }

    /// "N jobs: N succeeded, N failed (N timed out), ... in T".
    fn summary(&self) -> String {
        let c = &self.c;
        let total = c.ok + c.failed + c.not_run + c.interrupted + c.skipped + c.invalid;
        let mut summary = format!(
            "{total} job{}: {} succeeded, {} failed",
            if total == 1 { "" } else { "s" },
            c.ok,
            c.failed + c.invalid
        );
        if c.timed_out > 0 {
            summary.push_str(&format!(" ({} timed out)", c.timed_out));
        }
        if c.invalid > 0 {
            summary.push_str(&format!(
                ", {} invalid line{}",
                c.invalid,
                if c.invalid == 1 { "" } else { "s" }
            ));
        }
        if c.skipped > 0 {
            summary.push_str(&format!(
                ", {} skipped ({})",
                c.skipped,
                match self.o.resume {
                    Some(Resume::Failed) => "succeeded before",
                    _ => "in the joblog",
                }
            ));
        }
        if c.interrupted > 0 {
            summary.push_str(&format!(", {} interrupted", c.interrupted));
        }
        if c.not_run > 0 {
            summary.push_str(&format!(", {} not run", c.not_run));
        }
        summary.push_str(&format!(
            " in {}",
            crate::fmt_duration(self.ui.start.elapsed())
        ));
        summary
    }
}

/// Rewrites "job <id>, which it runs after, ..." (the library's words for a failed dependency)
/// with the dependency's label.
fn name_dependency(error: &str, labels: &Labels) -> Option<String> {
    let rest = error.strip_prefix("job ")?;
    let (id, tail) = rest.split_once(',')?;
    let id: u64 = id.parse().ok()?;
    let label = labels.lock().expect("labels").get(&id)?.text.clone();
    Some(format!("{label},{tail}"))
}
