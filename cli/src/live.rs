//! The live state of a running batch: what the dashboard draws, and what the batch publishes
//! next to its joblog (`JOBLOG.live.json`) for `procman status --follow` in another terminal.
//!
//! Published as one JSON object, rewritten atomically (a temporary file renamed over it) at
//! each redraw (5 times a second) and removed when the batch ends:
//!
//! ```json
//! {"version": 1, "pid": 4242, "elapsed": 12.5, "total": 40, "input_done": true,
//!  "done": 12, "succeeded": 10, "failed": 2, "running": 3, "sample_interval": 0.5,
//!  "jobs": [{"seq": 13, "label": "job 13 (line 13)", "command": "refmac5 ...", "pid": 4250,
//!            "elapsed": 1.2, "cpu_percent": 98.5, "rss": 52428800, "progress": 0.3,
//!            "progress_message": "cycle 3 of 10", "last_line": "R factor 0.3"}],
//!  "recent_failures": ["job 2 (line 2) exited with code 3"]}
//! ```
//!
//! `elapsed` in seconds since the batch (or the job's current attempt) started; `total` counts
//! the jobs known so far (`input_done` false: more may come). `sample_interval`: seconds
//! between samples, `null` when sampling is off. `cpu_percent` (of one CPU over the last
//! interval: 250 is two and a half CPUs) and `rss` (bytes, the job's whole process tree) are
//! `null` before a job's first sample and when sampling is off; `progress` (0 to 1) and
//! `progress_message` are `null` until the job's output told its progress
//! (`--progress-pattern`). Readers must accept `null` for them and ignore fields they do not
//! know; a change that breaks them bumps the version (filling these fields and adding
//! `sample_interval` did not: version 1 always allowed both).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// Version of the published format.
const VERSION: u64 = 1;
/// How many recent failures the view keeps.
pub const RECENT_FAILURES: usize = 5;

/// A running job as the live view shows it. The live figures are `None` until the library
/// provides them (shown as "–").
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobView {
    pub seq: u64,
    pub label: String,
    pub command: String,
    pub pid: u32,
    /// Seconds since its current attempt was spawned.
    pub elapsed: f64,
    pub cpu_percent: Option<f64>,
    /// Resident memory in bytes.
    pub rss: Option<u64>,
    /// Fraction done, 0 to 1.
    pub progress: Option<f64>,
    pub progress_message: Option<String>,
    /// The last line of its log file (only where the job writes one).
    pub last_line: Option<String>,
}

/// The whole batch at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LiveState {
    pub pid: u32,
    /// Seconds since the batch started.
    pub elapsed: f64,
    pub total: u64,
    pub input_done: bool,
    /// Finished jobs, skipped and invalid lines included.
    pub done: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub running: u64,
    /// Jobs waiting in a cluster's queue (Slurm's PENDING): submitted, not yet running.
    pub queued: u64,
    /// Seconds between samples of the running jobs; `None`: not sampled.
    pub sample_interval: Option<f64>,
    pub jobs: Vec<JobView>,
    pub recent_failures: Vec<String>,
}

impl LiveState {
    /// Jobs per second over the batch so far, and the time left once the total is known.
    pub fn rate_and_eta(&self) -> (f64, Option<Duration>) {
        let rate = if self.elapsed > 0.0 {
            self.done as f64 / self.elapsed
        } else {
            0.0
        };
        let eta = (self.input_done && rate > 0.0 && self.total >= self.done)
            .then(|| Duration::try_from_secs_f64((self.total - self.done) as f64 / rate))
            .and_then(Result::ok);
        (rate, eta)
    }

    pub fn to_json(&self) -> Value {
        let jobs: Vec<Value> = self
            .jobs
            .iter()
            .map(|j| {
                json!({
                    "seq": j.seq, "label": j.label, "command": j.command, "pid": j.pid,
                    "elapsed": j.elapsed, "cpu_percent": j.cpu_percent, "rss": j.rss,
                    "progress": j.progress, "progress_message": j.progress_message,
                    "last_line": j.last_line,
                })
            })
            .collect();
        json!({
            "version": VERSION, "pid": self.pid, "elapsed": self.elapsed, "total": self.total,
            "input_done": self.input_done, "done": self.done, "succeeded": self.succeeded,
            "failed": self.failed, "running": self.running, "queued": self.queued,
            "sample_interval": self.sample_interval, "jobs": jobs,
            "recent_failures": self.recent_failures,
        })
    }

    /// Reads the published form; `None` when it is not (a newer, unknown version included).
    pub fn from_json(v: &Value) -> Option<LiveState> {
        if v.get("version")?.as_u64()? != VERSION {
            return None;
        }
        let u = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let jobs = v
            .get("jobs")?
            .as_array()?
            .iter()
            .map(|j| {
                let s = |k: &str| j.get(k).and_then(Value::as_str).map(str::to_owned);
                JobView {
                    seq: j.get("seq").and_then(Value::as_u64).unwrap_or(0),
                    label: s("label").unwrap_or_default(),
                    command: s("command").unwrap_or_default(),
                    pid: j.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32,
                    elapsed: j.get("elapsed").and_then(Value::as_f64).unwrap_or(0.0),
                    cpu_percent: j.get("cpu_percent").and_then(Value::as_f64),
                    rss: j.get("rss").and_then(Value::as_u64),
                    progress: j.get("progress").and_then(Value::as_f64),
                    progress_message: s("progress_message"),
                    last_line: s("last_line"),
                }
            })
            .collect();
        Some(LiveState {
            pid: u("pid") as u32,
            elapsed: v.get("elapsed").and_then(Value::as_f64).unwrap_or(0.0),
            total: u("total"),
            input_done: v
                .get("input_done")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            done: u("done"),
            succeeded: u("succeeded"),
            failed: u("failed"),
            running: u("running"),
            queued: u("queued"),
            sample_interval: v.get("sample_interval").and_then(Value::as_f64),
            jobs,
            recent_failures: v
                .get("recent_failures")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// Where the live state of the batch with joblog `joblog` is published: `JOBLOG.live.json`.
pub fn live_path(joblog: &Path) -> PathBuf {
    let mut s = joblog.as_os_str().to_owned();
    s.push(".live.json");
    PathBuf::from(s)
}

/// Publishes the state: a temporary file beside it, renamed over it (readers never see half).
pub fn publish(path: &Path, state: &LiveState) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, state.to_json().to_string())?;
    std::fs::rename(&tmp, path)
}

/// Reads a published state. `Ok(None)`: no file (no batch running); `Err`: unreadable.
pub fn read(path: &Path) -> io::Result<Option<LiveState>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            LiveState::from_json(&v).map(Some).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "not a live state of version 1")
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last non-empty line of a file's last 4 KiB, lossily and without control characters
/// (so a job's output cannot move the cursor); `None` when there is none.
pub fn last_line(path: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 4096;
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut buf = Vec::new();
    f.take(TAIL).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let line = text
        .split(['\n', '\r'])
        .rev()
        .find(|l| !l.trim().is_empty())?;
    Some(line.chars().filter(|c| !c.is_control()).collect())
}

/// The view as lines of at most `width` characters, `height` lines at most: the progress bar
/// and counts, then (when `table`) the running jobs, then the recent failures.
pub fn render(s: &LiveState, width: usize, height: usize, table: bool) -> Vec<String> {
    let width = width.max(20);
    let fit = |l: String| crate::report::clip(&l, width);
    let mut out = Vec::new();
    let (rate, eta) = s.rate_and_eta();
    let more = if s.input_done { "" } else { "+" };
    let frac = if s.total > 0 {
        s.done as f64 / s.total as f64
    } else {
        0.0
    };
    let bar_w = 30.min(width.saturating_sub(10));
    let filled = ((frac * bar_w as f64).round() as usize).min(bar_w);
    let eta = eta.map_or(String::new(), |e| {
        format!(", ETA {}", crate::fmt_duration(e))
    });
    out.push(fit(format!(
        "[{}{}] {:>3.0}%  {}/{}{more} done, {} running,{} {} failed, {rate:.1} jobs/s{eta}",
        "#".repeat(filled),
        ".".repeat(bar_w - filled),
        frac * 100.0,
        s.done,
        s.total,
        s.running,
        queued_text(s.queued),
        s.failed
    )));
    if table {
        out.push(fit(format!(
            "{:<8} {:>8} {:>5} {:>9} {:>5}  {:<30} {}",
            "JOB", "ELAPSED", "CPU%", "RSS", "PROG", "COMMAND", "LAST OUTPUT"
        )));
        // Room for the failures below (a heading and up to RECENT_FAILURES lines).
        let room =
            height.saturating_sub(out.len() + 2 + s.recent_failures.len().min(RECENT_FAILURES));
        let dash = || "–".to_owned();
        for j in s.jobs.iter().take(room.max(1)) {
            out.push(fit(format!(
                "{:<8} {:>8} {:>5} {:>9} {:>5}  {:<30} {}",
                format!("#{}", j.seq),
                crate::fmt_duration(Duration::from_secs_f64(j.elapsed.max(0.0))),
                j.cpu_percent.map_or_else(dash, |c| format!("{c:.0}")),
                j.rss.map_or_else(dash, crate::fmt_bytes),
                j.progress
                    .map_or_else(dash, |p| format!("{:.0}%", p * 100.0)),
                crate::report::clip(&j.command, 30),
                j.last_line.clone().unwrap_or_else(dash),
            )));
        }
        if s.jobs.len() > room.max(1) {
            out.push(format!(
                "... and {} more running",
                s.jobs.len() - room.max(1)
            ));
        }
    }
    if !s.recent_failures.is_empty() {
        out.push("recent failures:".into());
        for f in s.recent_failures.iter().rev().take(RECENT_FAILURES) {
            out.push(fit(format!("  {f}")));
        }
    }
    out.truncate(height.max(1));
    out
}

/// " N queued," when jobs wait in a cluster's queue, else nothing.
pub fn queued_text(queued: u64) -> String {
    if queued == 0 {
        String::new()
    } else {
        format!(" {queued} queued,")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LiveState {
        LiveState {
            pid: 7,
            elapsed: 10.0,
            total: 20,
            input_done: true,
            done: 5,
            succeeded: 4,
            failed: 1,
            running: 1,
            queued: 0,
            sample_interval: None,
            jobs: vec![JobView {
                seq: 6,
                label: "job 6 (line 6)".into(),
                command: "sleep 100".into(),
                pid: 99,
                elapsed: 2.5,
                last_line: Some("cycle 3 of 10".into()),
                ..JobView::default()
            }],
            recent_failures: vec!["job 2 (line 2) exited with code 3".into()],
        }
    }

    #[test]
    fn the_published_form_reads_back_the_same() {
        let s = state();
        assert_eq!(LiveState::from_json(&s.to_json()), Some(s));
        let s = sampled();
        assert_eq!(LiveState::from_json(&s.to_json()), Some(s));
    }

    #[test]
    fn queued_jobs_are_published_and_shown_apart_from_running_ones() {
        let mut s = state();
        s.queued = 3;
        assert_eq!(LiveState::from_json(&s.to_json()), Some(s.clone()));
        let lines = render(&s, 120, 40, true);
        assert!(
            lines[0].contains("1 running, 3 queued, 1 failed"),
            "{lines:?}"
        );
    }

    /// The state with a sampled job reporting its progress.
    fn sampled() -> LiveState {
        let mut s = state();
        s.sample_interval = Some(0.5);
        let j = &mut s.jobs[0];
        j.cpu_percent = Some(98.6);
        j.rss = Some(50 << 20);
        j.progress = Some(0.3);
        j.progress_message = Some("cycle 3 of 10".into());
        s
    }

    #[test]
    fn a_sampled_job_shows_its_cpu_memory_and_progress() {
        let lines = render(&sampled(), 120, 40, true);
        let row = &lines[2];
        assert!(
            row.contains(" 99 ") && row.contains("50.0 MiB") && row.contains("30%"),
            "{row}"
        );
        assert!(!row.contains('–'), "{row}");
        let v = sampled().to_json();
        assert_eq!(v["sample_interval"], 0.5);
        assert_eq!(v["jobs"][0]["rss"], 50u64 << 20);
        assert_eq!(v["jobs"][0]["progress_message"], "cycle 3 of 10");
    }

    #[test]
    fn the_view_has_a_bar_a_row_per_running_job_and_the_failures() {
        let lines = render(&state(), 120, 40, true);
        assert!(
            lines[0].contains("5/20 done, 1 running, 1 failed, 0.5 jobs/s, ETA 30.000s"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("#6") && lines[2].contains("sleep 100"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains('–') && lines[2].contains("cycle 3 of 10"),
            "{lines:?}"
        );
        assert!(lines.iter().any(|l| l.contains("exited with code 3")));
        let lines = render(&state(), 120, 40, false);
        assert!(!lines.iter().any(|l| l.contains("sleep 100")), "{lines:?}");
        assert!(render(&state(), 30, 3, true)
            .iter()
            .all(|l| l.chars().count() <= 30));
    }
}
