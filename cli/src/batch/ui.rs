//! The batch's display on stderr: a live progress line on a terminal, plain lines otherwise,
//! and what the main thread counts for it and for the summary.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use procman::JobRecord;

use crate::dash::Dash;

/// What the main thread counts.
#[derive(Default)]
pub(super) struct Counts {
    pub(super) ok: u64,
    pub(super) failed: u64,
    pub(super) timed_out: u64,
    /// Cancelled (halt, interrupt) or whose dependency was cancelled: not run.
    pub(super) not_run: u64,
    /// Killed by a halt or an interrupt while running.
    pub(super) interrupted: u64,
    pub(super) skipped: u64,
    pub(super) invalid: u64,
    /// Done messages received (every submitted job sends exactly one).
    pub(super) done: u64,
}

/// The display: the dashboard or a live line on a terminal, plain lines otherwise.
pub(super) struct Ui {
    pub(super) live: bool,
    /// The dashboard (on a terminal, job output to files only); `None`: the progress line.
    pub(super) dash: Option<Dash>,
    pub(super) shown: bool,
    pub(super) start: Instant,
    pub(super) last_draw: Instant,
}

impl Ui {
    pub(super) fn say(&mut self, text: &str) {
        if let Some(d) = self.dash.as_mut() {
            d.say(text);
            return;
        }
        let mut err = io::stderr().lock();
        if self.shown {
            let _ = write!(err, "\r\x1b[K");
            self.shown = false;
        }
        let _ = writeln!(err, "procman: {text}");
    }

    pub(super) fn draw(
        &mut self,
        c: &Counts,
        total: u64,
        input_done: bool,
        (running, queued): (usize, u64),
    ) {
        if !self.live {
            return;
        }
        self.last_draw = Instant::now();
        // Skipped and invalid lines count as done but not in the rate of jobs that ran.
        let ran = c.ok + c.failed + c.not_run + c.interrupted;
        let finished = ran + c.skipped + c.invalid;

        let elapsed = self.start.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 {
            ran as f64 / elapsed
        } else {
            0.0
        };
        let eta = if input_done && rate > 0.0 && total >= finished {
            format!(
                ", ETA {}",
                crate::fmt_duration(
                    Duration::try_from_secs_f64((total - finished) as f64 / rate)
                        .unwrap_or(Duration::MAX)
                )
            )
        } else {
            String::new()
        };
        let more = if input_done { "" } else { "+" };
        let mut err = io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Kprocman: {finished}/{total}{more} done, {running} running,{} {} failed, {rate:.1} jobs/s{eta}",
            crate::live::queued_text(queued),
            c.failed + c.invalid
        );
        let _ = err.flush();
        self.shown = true;
    }

    /// Ends the dashboard (its last picture stays) or clears the live line.
    pub(super) fn end(&mut self) {
        if let Some(mut d) = self.dash.take() {
            d.end();
        }
        self.clear();
    }

    pub(super) fn clear(&mut self) {
        if self.shown {
            let _ = write!(io::stderr().lock(), "\r\x1b[K");
            self.shown = false;
        }
    }
}

/// "; log FILE; errors FILE" for a failed job's line.
pub(super) fn paths_of(r: &JobRecord) -> String {
    let mut s = String::new();
    if let Some(l) = &r.log_file {
        s.push_str(&format!("; log {}", l.display()));
    }
    if let Some(e) = &r.error_file {
        if Some(e) != r.log_file.as_ref() {
            s.push_str(&format!("; errors {}", e.display()));
        }
    }
    s
}
