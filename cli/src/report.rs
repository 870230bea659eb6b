//! `--report FILE.html`: a self-contained page about a finished batch (no server, no network:
//! inline CSS and SVG, a few lines of inline JavaScript for a filter). A timeline of every job
//! (waiting, running, ended; coloured by how it ended), CPU and memory per job, the counts, and
//! each failure with the tail of its error file.
//!
//! Everything taken from jobs (names, commands, paths, output) goes through [`esc`].
//! CPU and memory come from each job's final usage (`wait4`), from the summary of its samples
//! ([`JobRecord::sampled`]: peak and mean CPU % and resident memory of its whole process
//! tree), and over time from the samples themselves ([`ReportJob::samples`], drawn as two small
//! lines per job; a break in a line where samples were lost).

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use procman::{JobRecord, JobStatus, UsageSummary};

/// How much of a failed job's error file the report shows (its end).
const ERR_TAIL_BYTES: u64 = 2048;
/// Rows of the timeline beyond which jobs are left out (the page stays light).
const MAX_ROWS: usize = 2000;

/// One usage sample of a running job: seconds since the batch started, CPU % and RSS.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub t: f64,
    pub cpu_percent: Option<f64>,
    pub rss: Option<u64>,
    /// Samples before this one may be missing: the line breaks here.
    pub gap: bool,
}

/// One job as the report shows it.
#[derive(Clone, Debug)]
pub struct ReportJob {
    pub seq: u64,
    /// How the user knows it: `job 3 (line 5)`.
    pub label: String,
    pub command: String,
    pub status: JobStatus,
    /// How it ended, in words (`exited with code 2`).
    pub ended: String,
    /// Seconds since the batch started.
    pub queued: f64,
    pub started: Option<f64>,
    pub finished: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub peak_rss: Option<u64>,
    pub log_file: Option<PathBuf>,
    pub error_file: Option<PathBuf>,
    /// Usage over time (empty when sampling was off or the job ran too briefly).
    pub samples: Vec<Sample>,
    /// What its samples came to (peaks and means); `None` when it was not sampled.
    pub sampled: Option<UsageSummary>,
}

impl ReportJob {
    /// From a finished job's record; `start` is the batch's start.
    pub fn of(seq: u64, label: String, command: String, r: &JobRecord, start: SystemTime) -> Self {
        let at = |t: SystemTime| t.duration_since(start).map_or(0.0, |d| d.as_secs_f64());
        let cpu = r
            .usage
            .and_then(|u| Some(u.user_cpu?.saturating_add(u.system_cpu?).as_secs_f64()));
        ReportJob {
            seq,
            label,
            command,
            status: r.status,
            ended: r.describe_end(),
            queued: at(r.queued_at),
            started: r.started_at.map(at),
            finished: r.finished_at.map(at),
            cpu_seconds: cpu,
            peak_rss: r.usage.and_then(|u| u.peak_memory),
            log_file: r.log_file.clone(),
            error_file: r.error_file.clone(),
            samples: Vec::new(),
            sampled: r.sampled.as_deref().cloned(),
        }
    }
}

/// What the whole page shows.
pub struct Report {
    pub title: String,
    pub wall: f64,
    pub jobs: Vec<ReportJob>,
    /// Lines that were not valid jobs (their messages).
    pub invalid: Vec<String>,
    /// The summary line (`12 jobs: 10 succeeded, 2 failed in 3.2s`).
    pub summary: String,
    /// Test only: a script that records JavaScript errors in the page's title and body.
    pub error_hook: bool,
    /// Usage samples lost (the tool's subscription was full): the lines have gaps.
    pub lost_samples: u64,
}

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The CSS class (and colour) of a job's bar.
fn class_of(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Finished => "ok",
        JobStatus::TimedOut => "timeout",
        JobStatus::Cancelled | JobStatus::DependencyFailed => "notrun",
        JobStatus::Killed => "killed",
        _ => "failed",
    }
}

const STYLE: &str = "body{font:14px sans-serif;margin:1.5em;color:#222;background:#fff}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}\
.counts span{display:inline-block;margin-right:1.2em;padding:.3em .6em;border-radius:4px;background:#eee}\
.ok{fill:#2e9d4c;background:#c9efd3}.failed{fill:#d0342c;background:#f6c9c6}\
.timeout{fill:#e08a00;background:#fbe1b4}.killed{fill:#7a4fb0;background:#e2d5f3}\
.notrun{fill:#9a9a9a;background:#e4e4e4}.wait{fill:#cfd8e3}\
svg text{font:11px monospace;fill:#333}table{border-collapse:collapse}\
td,th{border-bottom:1px solid #ddd;padding:.2em .6em;text-align:left;font-size:13px}\
td.num{text-align:right;font-family:monospace}pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:14em}\
.cmd{font-family:monospace;max-width:40em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}";

/// The test-only error hook: the first thing in the page, so it sees every later error.
const ERROR_HOOK: &str = "<script>window.__errors=[];window.addEventListener('error',function(e){\
window.__errors.push(String(e.message));document.title='JSERROR '+e.message;});</script>";

/// A filter: hide jobs that succeeded (rows of the timeline and the usage table).
const SCRIPT: &str = "<script>(function(){var b=document.getElementById('only-failed');\
if(!b)return;b.addEventListener('change',function(){var h=b.checked;\
document.querySelectorAll('[data-ok=\"1\"]').forEach(function(n){n.style.display=h?'none':'';});});})();</script>";

/// The page.
pub fn render(r: &Report) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    if r.error_hook {
        h.push_str(ERROR_HOOK);
    }
    let _ = write!(
        h,
        "<title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>",
        esc(&r.title),
        esc(&r.title)
    );
    let _ = write!(h, "<p>{}</p>", esc(&r.summary));
    counts(&mut h, r);
    h.push_str("<p><label><input type=\"checkbox\" id=\"only-failed\"> only jobs that did not succeed</label></p>");
    h.push_str("<h2>Timeline</h2>");
    timeline(&mut h, r);
    h.push_str("<h2>CPU and memory</h2>");
    h.push_str(
        "<p>CPU time and peak memory from the end of each job (its largest process); \
         sampled: CPU % (of one CPU) and resident memory of its whole process tree while it \
         ran, peak and mean; over time: <span style=\"color:#2e9d4c\">CPU %</span> and \
         <span style=\"color:#7a4fb0\">memory</span>, each scaled to its own peak.</p>",
    );
    if r.lost_samples > 0 {
        let _ = write!(
            h,
            "<p>{} usage samples were lost while the batch ran (the report's reader fell \
             behind): the lines over time have gaps.</p>",
            r.lost_samples
        );
    }
    usage_table(&mut h, r);
    failures(&mut h, r);
    h.push_str(SCRIPT);
    h.push_str("</body></html>\n");
    h
}

fn counts(h: &mut String, r: &Report) {
    let n = |c: &str| r.jobs.iter().filter(|j| class_of(j.status) == c).count();
    h.push_str("<p class=\"counts\">");
    for (class, name) in [
        ("ok", "succeeded"),
        ("failed", "failed"),
        ("timeout", "timed out"),
        ("killed", "killed"),
        ("notrun", "not run"),
    ] {
        let _ = write!(h, "<span class=\"{class}\">{} {name}</span>", n(class));
    }
    if !r.invalid.is_empty() {
        let _ = write!(
            h,
            "<span class=\"failed\">{} invalid lines</span>",
            r.invalid.len()
        );
    }
    h.push_str("</p>");
}

/// One row per job: waiting (queued → started) in pale blue, running in its status colour.
fn timeline(h: &mut String, r: &Report) {
    const LEFT: f64 = 220.0;
    const WIDTH: f64 = 900.0;
    const ROW: f64 = 16.0;
    let end = r
        .jobs
        .iter()
        .filter_map(|j| j.finished.or(j.started))
        .fold(r.wall, f64::max)
        .max(0.001);
    let x = |t: f64| LEFT + (t / end).clamp(0.0, 1.0) * WIDTH;
    let rows = r.jobs.len().min(MAX_ROWS);
    let height = 30.0 + rows as f64 * ROW;
    let _ = write!(
        h,
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\">",
        LEFT + WIDTH + 20.0
    );
    // The time axis: five ticks.
    for i in 0..=4 {
        let t = end * i as f64 / 4.0;
        let _ = write!(
            h,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"14\" y2=\"{height}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"11\" text-anchor=\"middle\">{1:.1}s</text>",
            x(t),
            t
        );
    }
    for (i, j) in r.jobs.iter().take(rows).enumerate() {
        let y = 20.0 + i as f64 * ROW;
        let class = class_of(j.status);
        let _ = write!(
            h,
            "<g data-ok=\"{}\"><title>{} {}: {}</title><text x=\"0\" y=\"{:.1}\">{}</text>",
            u8::from(class == "ok"),
            esc(&j.label),
            esc(&j.ended),
            esc(&j.command),
            y + 11.0,
            esc(&clip(&format!("#{} {}", j.seq, j.command), 28))
        );
        let start = j.started.unwrap_or(j.finished.unwrap_or(j.queued));
        let _ = write!(
            h,
            "<rect class=\"wait\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\"/>",
            x(j.queued),
            y + 1.0,
            (x(start) - x(j.queued)).max(0.0)
        );
        if let Some(s) = j.started {
            let f = j.finished.unwrap_or(end);
            let _ = write!(
                h,
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\"/>",
                x(s),
                y + 1.0,
                (x(f) - x(s)).max(3.0)
            );
        }
        h.push_str("</g>");
    }
    h.push_str("</svg>");
    if r.jobs.len() > rows {
        let _ = write!(h, "<p>{} more jobs not drawn.</p>", r.jobs.len() - rows);
    }
}

/// CPU time, mean CPU % over the run, peak memory, as numbers and bars; samples as lines.
fn usage_table(h: &mut String, r: &Report) {
    let max_rss = r
        .jobs
        .iter()
        .filter_map(|j| j.peak_rss)
        .max()
        .unwrap_or(1)
        .max(1);
    let max_cpu = r
        .jobs
        .iter()
        .filter_map(|j| j.cpu_seconds)
        .fold(0.0, f64::max)
        .max(1e-9);
    h.push_str(
        "<table id=\"usage\"><tr><th>job</th><th>command</th><th>ended</th><th>wall</th>\
                <th>CPU time</th><th>mean CPU</th><th>peak memory</th>\
                <th>sampled CPU peak / mean</th><th>sampled memory peak / mean</th>\
                <th>over time</th></tr>",
    );
    for j in r.jobs.iter().take(MAX_ROWS) {
        let wall = match (j.started, j.finished) {
            (Some(s), Some(f)) => Some(f - s),
            _ => None,
        };
        let pct = match (j.cpu_seconds, wall) {
            // Below 10 ms of wall time the clocks' granularity makes a percentage meaningless.
            (Some(c), Some(w)) if w >= 0.01 => format!("{:.0}%", 100.0 * c / w),
            _ => "–".into(),
        };
        let bar = |v: f64, class: &str| {
            format!(
                "<svg width=\"80\" height=\"10\"><rect class=\"{class}\" width=\"{:.1}\" height=\"10\"/></svg>",
                80.0 * v.clamp(0.0, 1.0)
            )
        };
        let _ = write!(
            h,
            "<tr data-ok=\"{}\"><td>{}</td><td class=\"cmd\">{}</td><td>{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{} {}</td><td class=\"num\">{pct}</td><td class=\"num\">{} {}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            u8::from(class_of(j.status) == "ok"),
            esc(&j.label),
            esc(&j.command),
            esc(&j.ended),
            wall.map_or("–".into(), |w| format!("{w:.2}s")),
            j.cpu_seconds.map_or("–".into(), |c| format!("{c:.2}s")),
            bar(j.cpu_seconds.unwrap_or(0.0) / max_cpu, "ok"),
            j.peak_rss.map_or("–".into(), crate::fmt_bytes),
            bar(j.peak_rss.unwrap_or(0) as f64 / max_rss as f64, "killed"),
            j.sampled.as_ref().map_or("–".into(), |s| format!(
                "{:.0}% / {:.0}%",
                s.peak_cpu_percent, s.mean_cpu_percent
            )),
            j.sampled.as_ref().map_or("–".into(), |s| format!(
                "{} / {}",
                crate::fmt_bytes(s.peak_rss),
                crate::fmt_bytes(s.mean_rss)
            )),
            sparkline(j),
        );
    }
    h.push_str("</table>");
}

/// Size of the lines over time.
const SPARK_W: f64 = 160.0;
const SPARK_H: f64 = 24.0;

/// CPU % (green) and RSS (purple) over the job's run as small lines ("–" without samples).
fn sparkline(j: &ReportJob) -> String {
    let (t0, t1) = match (j.started, j.finished, j.samples.first(), j.samples.last()) {
        (Some(s), Some(f), _, _) if f > s => (s, f),
        (_, _, Some(a), Some(b)) => (a.t, b.t),
        _ => return "–".into(),
    };
    let cpu = line_of(&j.samples, (t0, t1), |s| s.cpu_percent, "#2e9d4c");
    let rss = line_of(&j.samples, (t0, t1), |s| s.rss.map(|r| r as f64), "#7a4fb0");
    if cpu.is_empty() && rss.is_empty() {
        return "–".into();
    }
    format!(
        "<svg class=\"spark\" width=\"{SPARK_W}\" height=\"{SPARK_H}\">\
         <rect width=\"{SPARK_W}\" height=\"{SPARK_H}\" fill=\"#f4f4f4\"/>{cpu}{rss}</svg>"
    )
}

/// Polylines of a sampled value over `span` (seconds), scaled to the sparkline's box with the
/// value's peak at the top; a new polyline after each gap. Empty with fewer than two points.
fn line_of(
    samples: &[Sample],
    (t0, t1): (f64, f64),
    value: impl Fn(&Sample) -> Option<f64>,
    colour: &str,
) -> String {
    let pts: Vec<(f64, f64, bool)> = samples
        .iter()
        .filter_map(|s| Some((s.t, value(s)?, s.gap)))
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    if pts.len() < 2 {
        return String::new();
    }
    let span = (t1 - t0).max(1e-9);
    let top = pts.iter().map(|p| p.1).fold(1e-9, f64::max);
    let mut segments: Vec<String> = vec![String::new()];
    for (t, v, gap) in pts {
        if gap && !segments.last().is_some_and(String::is_empty) {
            segments.push(String::new());
        }
        if let Some(seg) = segments.last_mut() {
            let _ = write!(
                seg,
                "{:.1},{:.1} ",
                SPARK_W * ((t - t0) / span).clamp(0.0, 1.0),
                SPARK_H - 1.0 - (SPARK_H - 2.0) * (v / top).clamp(0.0, 1.0)
            );
        }
    }
    segments
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
                s.trim_end()
            )
        })
        .collect()
}

fn failures(h: &mut String, r: &Report) {
    let failed: Vec<&ReportJob> = r
        .jobs
        .iter()
        .filter(|j| matches!(class_of(j.status), "failed" | "timeout"))
        .collect();
    if failed.is_empty() && r.invalid.is_empty() {
        return;
    }
    h.push_str("<h2>Failures</h2>");
    for j in failed {
        let _ = write!(
            h,
            "<h3>{}: {}</h3><p class=\"cmd\">{}</p>",
            esc(&j.label),
            esc(&j.ended),
            esc(&j.command)
        );
        for (what, p) in [("log", &j.log_file), ("errors", &j.error_file)] {
            if let Some(p) = p {
                let _ = write!(
                    h,
                    "<p>{what}: <code>{}</code></p>",
                    esc(&p.to_string_lossy())
                );
            }
        }
        if let Some(tail) = j.error_file.as_deref().and_then(tail_of) {
            let _ = write!(h, "<pre>{}</pre>", esc(&tail));
        }
    }
    for m in &r.invalid {
        let _ = write!(h, "<p>invalid job, {}</p>", esc(m));
    }
}

/// The last [`ERR_TAIL_BYTES`] of a file, lossily as text; `None` when empty or unreadable.
fn tail_of(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len == 0 {
        return None;
    }
    f.seek(SeekFrom::Start(len.saturating_sub(ERR_TAIL_BYTES)))
        .ok()?;
    let mut buf = Vec::new();
    f.take(ERR_TAIL_BYTES).read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// At most `n` characters, with an ellipsis when cut.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Writes the page atomically (a temporary file renamed over `path`).
pub fn write(path: &Path, r: &Report) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, render(r))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_text_cannot_inject_markup() {
        let job = ReportJob {
            seq: 1,
            label: "<script>alert(1)</script>".into(),
            command: "echo '<img src=x onerror=alert(2)>' \"&\"".into(),
            status: JobStatus::Failed,
            ended: "exited with code 1".into(),
            queued: 0.0,
            started: Some(0.1),
            finished: Some(0.5),
            cpu_seconds: Some(0.1),
            peak_rss: Some(1 << 20),
            log_file: Some("</pre><script>x()</script>".into()),
            error_file: None,
            samples: vec![],
            sampled: None,
        };
        let page = render(&Report {
            title: "t".into(),
            wall: 1.0,
            jobs: vec![job],
            invalid: vec!["line 2: <b>bad</b>".into()],
            summary: "s".into(),
            error_hook: false,
            lost_samples: 0,
        });
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>bad"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The only scripts are the page's own filter.
        assert_eq!(page.matches("<script>").count(), 1, "{page}");
    }

    #[test]
    fn samples_are_drawn_as_lines_broken_at_gaps() {
        let sample = |t: f64, gap: bool| Sample {
            t,
            cpu_percent: Some(50.0 + t),
            rss: Some(1 << 20),
            gap,
        };
        let mut job = ReportJob {
            seq: 1,
            label: "job 1".into(),
            command: "burn".into(),
            status: JobStatus::Finished,
            ended: "exited with code 0".into(),
            queued: 0.0,
            started: Some(0.0),
            finished: Some(4.0),
            cpu_seconds: None,
            peak_rss: None,
            log_file: None,
            error_file: None,
            samples: vec![],
            sampled: None,
        };
        assert_eq!(sparkline(&job), "–");
        job.samples = vec![sample(1.0, false), sample(2.0, false), sample(3.0, false)];
        let svg = sparkline(&job);
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        // Placed over the job's run: t=1 of 0..4 is a quarter of the width, the peak on top.
        assert!(svg.contains("points=\"40.0,"), "{svg}");
        assert!(
            svg.contains("160.0,1.0") || svg.contains("120.0,1.0"),
            "{svg}"
        );
        // A gap: each of the two lines in two pieces.
        job.samples[2].gap = true;
        let svg = sparkline(&job);
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
    }
}
