//! The tool as its users meet it on a terminal and in a browser (issue 14): clap's help and
//! suggestions, shell completions, the live dashboard and `status --follow` driven under tmux
//! (the screen captured as text), and the HTML report opened in headless Chromium.
//!
//! tmux runs on a socket of this test process's own (`-L`), so no other session is touched.
//! Every job carries a unique marker argument; leftovers are found by it and killed by PID.
//! The tmux and Chromium tests skip, saying why, only where those programs are absent.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{eventually, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_procman");

/// Whether the shell has written the status file whole (`echo $? > FILE` creates the file
/// before it writes to it: existing is not enough; CI once read it empty).
fn written(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.ends_with('\n'))
}

fn procman() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RUST_LOG");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether `program` runs here (`--version`).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[test]
fn each_verb_has_its_help_and_a_misspelt_option_gets_a_suggestion() {
    for (verb, option) in [
        ("run", "--timeout <DUR>"),
        ("batch", "--halt[=<RULE>]"),
        ("status", "--follow"),
        ("completions", "bash"),
    ] {
        let out = run(procman().args([verb, "--help"]));
        assert_eq!(out.status.code(), Some(0), "{verb}");
        assert!(
            text(&out.stdout).contains(option),
            "{verb}: {}",
            text(&out.stdout)
        );
    }
    // Each verb's own usage status: 125 as `timeout`, 255 as parallel, 2 for status.
    for (args, status, suggestion) in [
        (&["batch", "--jbos", "2", "x"][..], 255, "--jobs"),
        (&["run", "--tiemout", "1", "true"][..], 125, "--timeout"),
        (&["status", "--jobolg", "x"][..], 2, "--joblog"),
    ] {
        let out = run(procman().args(args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {err}");
        assert!(
            err.contains(&format!("a similar argument exists: '{suggestion}'")),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn completion_scripts_are_written_and_bash_sources_its_own() {
    let dir = TempDir::new("watch-completions");
    for shell in ["bash", "zsh", "fish"] {
        let out = run(procman().args(["completions", shell]));
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(text(&out.stdout).contains("procman"), "{shell}");
        std::fs::write(dir.join(shell), &out.stdout).unwrap();
    }
    let script = format!(
        "source {} && complete -p procman",
        dir.join("bash").display()
    );
    let out = run(Command::new("bash").args(["--norc", "-c", &script]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    assert!(text(&out.stdout).contains("procman"));
    let out = run(procman().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2));
}

/// A tmux server of this test's own, killed (by its socket) when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(tag: &str) -> Tmux {
        Tmux {
            socket: format!("procman-test-{tag}-{}", std::process::id()),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    /// Starts `shell_command` in a new window (the first call: a new session, 160×40).
    fn window(&self, first: bool, shell_command: &str) {
        let mut c = self.cmd();
        if first {
            c.args(["new-session", "-d", "-s", "t", "-x", "160", "-y", "40"]);
        } else {
            c.args(["new-window", "-t", "t"]);
        }
        let out = run(c.arg(shell_command));
        assert!(out.status.success(), "tmux: {}", text(&out.stderr));
    }

    fn screen(&self, window: u32) -> String {
        text(
            &run(self
                .cmd()
                .args(["capture-pane", "-p", "-t", &format!("t:{window}")]))
            .stdout,
        )
    }

    fn keys(&self, window: u32, keys: &str) {
        run(self
            .cmd()
            .args(["send-keys", "-t", &format!("t:{window}"), keys]));
    }

    /// Waits until window `window`'s screen satisfies `cond`; the last screen either way.
    fn wait_for(&self, window: u32, cond: impl Fn(&str) -> bool) -> (bool, String) {
        let mut last = String::new();
        let ok = eventually(Duration::from_secs(20), || {
            last = self.screen(window);
            cond(&last)
        });
        (ok, last)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").stderr(Stdio::null()).status();
    }
}

/// PIDs of processes whose command line holds `marker`; kills them (leftovers) by PID.
fn leftovers(marker: &str) -> Vec<u32> {
    let out = run(Command::new("pgrep").args(["-f", marker]));
    let pids: Vec<u32> = text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for pid in &pids {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    pids
}

/// Kills, when dropped (a failed assertion included), whatever still runs with the marker.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        leftovers(&self.0);
    }
}

/// `sh -c 'echo $0 > FILE'`: the exit status of the shell command before it, for tmux windows.
fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}

#[test]
fn the_dashboard_shows_progress_and_running_jobs_and_q_stops_the_batch_as_ctrl_c() {
    if !have("tmux") {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let dir = TempDir::new("watch-dash");
    let marker = format!("1000.{}271828", std::process::id());
    let _cleanup = Cleanup(marker.clone());
    let jobs = dir.join("jobs.txt");
    std::fs::write(
        &jobs,
        format!(
            "sh -c 'echo cycle 1 of 9; exec sleep {marker}'\nsleep {marker}\ntrue\nsleep {marker}\n"
        ),
    )
    .unwrap();
    let status = dir.join("status");
    let tmux = Tmux::new("dash");
    tmux.window(
        true,
        &format!(
            "{BIN} batch -j 3 --log-dir {} {}; echo $? > {}; sleep 60",
            quoted(&dir.join("logs")),
            quoted(&jobs),
            quoted(&status)
        ),
    );
    let (ok, screen) = tmux.wait_for(0, |s| {
        s.contains("3 running") && s.contains("cycle 1 of 9") && s.contains("#4")
    });
    assert!(ok, "{screen}");
    // The progress bar, the table's header and a running job's row with its last output.
    assert!(
        screen.contains("[##") && screen.contains("1/4 done"),
        "{screen}"
    );
    assert!(
        screen.contains("JOB") && screen.contains("ELAPSED"),
        "{screen}"
    );
    let row = screen
        .lines()
        .find(|l| l.starts_with("#1 "))
        .unwrap_or_else(|| panic!("no row of job 1: {screen}"));
    assert!(
        row.contains("sh -c") && row.contains("cycle 1 of 9") && row.contains('–'),
        "{row}"
    );
    // t hides the table, t shows it again.
    tmux.keys(0, "t");
    let (ok, screen) = tmux.wait_for(0, |s| !s.contains("ELAPSED"));
    assert!(ok, "t did not hide the table: {screen}");
    tmux.keys(0, "t");
    let (ok, screen) = tmux.wait_for(0, |s| s.contains("ELAPSED"));
    assert!(ok, "t did not show the table again: {screen}");
    // q: as Ctrl-C, the running jobs are killed and the status is 130.
    tmux.keys(0, "q");
    let ended = eventually(Duration::from_secs(20), || written(&status));
    let screen = tmux.screen(0);
    assert!(ended, "q did not end the batch: {screen}");
    let code = std::fs::read_to_string(&status).unwrap();
    assert_eq!(code.trim(), "130", "{screen}");
    assert!(screen.contains("3 interrupted"), "{screen}");
    let left = leftovers(&marker);
    assert!(left.is_empty(), "jobs left running after q: {left:?}");
}

#[test]
fn status_follow_shows_a_batch_running_in_another_window_until_it_ends() {
    if !have("tmux") {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let dir = TempDir::new("watch-follow");
    let marker = format!("2.{}314159", std::process::id());
    let _cleanup = Cleanup(marker.clone());
    let jobs = dir.join("jobs.txt");
    std::fs::write(
        &jobs,
        format!("sleep {marker}\nsh -c 'exit 3'\nsleep {marker}\n"),
    )
    .unwrap();
    let joblog = dir.join("joblog");
    let (batch_status, follow_status) = (dir.join("batch-status"), dir.join("follow-status"));
    let tmux = Tmux::new("follow");
    // The batch's stderr is not a terminal here: it still publishes its live state.
    tmux.window(
        true,
        &format!(
            "{BIN} batch -j 2 --log-dir {} --joblog {} {} 2> {}; echo $? > {}; sleep 60",
            quoted(&dir.join("logs")),
            quoted(&joblog),
            quoted(&jobs),
            quoted(&dir.join("batch-stderr")),
            quoted(&batch_status)
        ),
    );
    tmux.window(
        false,
        &format!(
            "{BIN} status --follow --joblog {} --log-dir {}; echo $? > {}; sleep 60",
            quoted(&joblog),
            quoted(&dir.join("logs")),
            quoted(&follow_status)
        ),
    );
    let (ok, screen) = tmux.wait_for(1, |s| s.contains("running") && s.contains(&marker));
    assert!(ok, "{screen}");
    assert!(
        screen.contains("JOB") && screen.contains("done"),
        "{screen}"
    );
    let ended = eventually(Duration::from_secs(20), || written(&follow_status));
    let screen = tmux.screen(1);
    assert!(
        ended,
        "status --follow did not end with the batch: {screen}"
    );
    assert!(screen.contains("the batch has ended"), "{screen}");
    assert!(screen.contains("3 jobs, 2 succeeded, 1 failed"), "{screen}");
    assert_eq!(std::fs::read_to_string(&follow_status).unwrap().trim(), "1");
    assert_eq!(std::fs::read_to_string(&batch_status).unwrap().trim(), "1");
    // The live state is gone with the batch.
    let mut live = joblog.into_os_string();
    live.push(".live.json");
    assert!(!PathBuf::from(live).exists());
    assert!(leftovers(&marker).is_empty());
}

/// The dashboard row of job `seq` (`#1 ...`) in a captured screen.
fn row_of(screen: &str, seq: u32) -> Option<String> {
    let head = format!("#{seq} ");
    screen
        .lines()
        .find(|l| l.starts_with(&head))
        .map(str::to_owned)
}

/// A row's CPU %, RSS and progress columns (the table's fixed widths: job 8, elapsed 8,
/// CPU % 5, RSS 9, progress 5, one space between).
fn figures(row: &str) -> (String, String, String) {
    let chars: Vec<char> = row.chars().collect();
    let col = |from: usize, to: usize| {
        chars
            .get(from..to.min(chars.len()))
            .map_or(String::new(), |c| {
                c.iter().collect::<String>().trim().to_owned()
            })
    };
    (col(18, 23), col(24, 33), col(34, 39))
}

/// Whether a row shows a sampled job: a CPU % that is a number of at least `min_cpu`, an RSS
/// in KiB or MiB, and (when `progress`) a progress percentage.
fn shows_figures(row: &str, min_cpu: f64, progress: Option<&str>) -> bool {
    let (cpu, rss, prog) = figures(row);
    cpu.parse::<f64>().is_ok_and(|c| c >= min_cpu)
        && (rss.ends_with("KiB") || rss.ends_with("MiB"))
        && progress.map_or(true, |p| prog == p)
}

#[test]
fn the_dashboard_and_status_follow_show_live_cpu_memory_and_progress() {
    if !have("tmux") {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let dir = TempDir::new("watch-figures");
    let marker = format!("figures-{}-577215", std::process::id());
    let _cleanup = Cleanup(marker.clone());
    // A CPU burner, and refmac-style progress as the test helper's `cycles` mode prints it
    // (one cycle a second, each followed by a line of noise; the CLI's tests have no test
    // helper binary: `procman-testkid` is built for the library's tests only).
    let jobs = dir.join("jobs.txt");
    std::fs::write(
        &jobs,
        format!(
            "sh -c 'while :; do :; done' {marker}\n\
             sh -c 'n=0; while [ $n -lt 60 ]; do n=$((n+1)); \
             sleep 1; echo refinement cycle $n of 60; echo R factor 0.$n; done' {marker}\n"
        ),
    )
    .unwrap();
    let joblog = dir.join("joblog");
    let status = dir.join("status");
    let tmux = Tmux::new("figures");
    tmux.window(
        true,
        &format!(
            "{BIN} batch -j 2 --log-dir {} --joblog {} --progress-pattern 'cycle {{n}} of {{m}}' {}; \
             echo $? > {}; sleep 60",
            quoted(&dir.join("logs")),
            quoted(&joblog),
            quoted(&jobs),
            quoted(&status)
        ),
    );
    tmux.window(
        false,
        &format!(
            "{BIN} status --follow --joblog {}; sleep 60",
            quoted(&joblog)
        ),
    );
    // The burner's CPU % is a number (at least 10: it is busy, on however loaded a machine),
    // its RSS is shown; the cycles job shows its progress (after cycle 1: 2%, 3%, ...).
    let ready = |s: &str| {
        row_of(s, 1).is_some_and(|r| shows_figures(&r, 10.0, None))
            && row_of(s, 2).is_some_and(|r| {
                let (_, _, prog) = figures(&r);
                shows_figures(&r, 0.0, None) && prog.ends_with('%') && prog != "0%"
            })
    };
    for window in [0, 1] {
        let (ok, screen) = tmux.wait_for(window, ready);
        assert!(ok, "window {window}: {screen}");
        let row = row_of(&screen, 2).unwrap();
        assert!(row.contains("R factor 0."), "{row}");
    }
    // The live file has the figures too.
    let mut live = joblog.clone().into_os_string();
    live.push(".live.json");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(PathBuf::from(&live)).unwrap()).unwrap();
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["sample_interval"], 0.5, "{v}");
    let burner = &v["jobs"][0];
    assert!(
        burner["cpu_percent"].as_f64().is_some_and(|c| c > 0.0),
        "{v}"
    );
    assert!(burner["rss"].as_u64().is_some_and(|r| r > 0), "{v}");
    let cycles = &v["jobs"][1];
    assert!(
        cycles["progress"]
            .as_f64()
            .is_some_and(|p| p > 0.0 && p < 1.0),
        "{v}"
    );
    assert!(
        cycles["progress_message"]
            .as_str()
            .is_some_and(|m| m.starts_with("cycle ") && m.ends_with(" of 60")),
        "{v}"
    );
    tmux.keys(0, "q");
    assert!(
        eventually(Duration::from_secs(20), || written(&status)),
        "{}",
        tmux.screen(0)
    );
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "130");
    let left = leftovers(&marker);
    assert!(left.is_empty(), "jobs left running after q: {left:?}");
}

#[test]
fn sample_interval_0_turns_sampling_off_and_a_bad_pattern_is_a_usage_error() {
    let dir = TempDir::new("watch-nosample");
    let page = dir.join("report.html");
    let out = run(procman()
        .args(["batch", "--no-logs", "--sample-interval", "0", "--report"])
        .arg(&page)
        .args(["--", "sh", "-c", "sleep 1.2", ":::", "x"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<polyline"), "{html}");
    for (verb, status) in [("batch", 255), ("run", 125)] {
        let out = run(procman().args([verb, "--progress-pattern", "{n} done", "--", "true"]));
        assert_eq!(out.status.code(), Some(status), "{verb}");
        assert!(
            text(&out.stderr).contains("option --progress-pattern: {n} and {m} go together"),
            "{verb}: {}",
            text(&out.stderr)
        );
        let out = run(procman().args([verb, "--sample-interval", "often", "--", "true"]));
        assert_eq!(out.status.code(), Some(status), "{verb}");
        assert!(text(&out.stderr).contains("option --sample-interval: "));
    }
}

#[test]
fn run_report_has_the_jobs_usage_over_time() {
    let dir = TempDir::new("watch-run-report");
    let page = dir.join("report.html");
    let out = run(procman()
        .args(["run", "-q", "--report"])
        .arg(&page)
        .args(["--", "sh", "-c", BURN]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_polylines(&html, 1);
}

/// A job that burns CPU for 2 to 3 seconds (the shell, and the `date`s it runs): at the
/// default interval, 4 samples or more.
const BURN: &str = "end=$(($(date +%s)+3)); while [ $(date +%s) -lt $end ]; do :; done";

/// The report draws at least `jobs` jobs' CPU and memory lines over time, each of 3 points
/// or more, and a sampled peak CPU % for the burner.
fn assert_polylines(html: &str, jobs: usize) {
    let lines: Vec<&str> = html
        .split("<polyline")
        .skip(1)
        .filter_map(|l| l.split("points=\"").nth(1)?.split('"').next())
        .collect();
    assert!(lines.len() >= 2 * jobs, "{html}");
    assert!(
        lines.iter().all(|pts| pts.split(' ').count() >= 3),
        "{lines:?}"
    );
    assert!(html.contains("sampled CPU peak / mean"), "{html}");
    let peak = html
        .split("<td class=\"num\">")
        .filter_map(|c| c.split_once("% / ")?.0.parse::<f64>().ok())
        .fold(0.0, f64::max);
    assert!(peak >= 10.0, "no busy sampled peak: {html}");
}

/// Runs headless Chromium on `page` with `args`; its output, or `None` when it hung.
fn chromium(dir: &TempDir, page: &Path, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium-profile").display()
        ))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    out
}

#[test]
fn the_report_renders_in_headless_chromium_without_errors_and_escapes_job_text() {
    let dir = TempDir::new("watch-report");
    let jobs = dir.join("jobs.txt");
    std::fs::write(
        &jobs,
        concat!(
            "sleep 0.3\n",
            "{\"name\": \"<script>alert(1)</script>\", \"program\": \"sh\", \"args\": [\"-c\", ",
            "\"echo '<img src=x onerror=alert(2)>' >&2; exit 4\"]}\n",
            "sh -c 'sleep 0.2'\n",
            "sleep 0.5\n",
        ),
    )
    .unwrap();
    // And a CPU burner, whose usage over time the report draws.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&jobs)
        .unwrap();
    std::io::Write::write_all(&mut f, format!("sh -c '{BURN}'\n").as_bytes()).unwrap();
    let page = dir.join("report.html");
    let out = run(procman()
        .args(["batch", "-j", "2", "--log-dir"])
        .arg(dir.join("logs"))
        .arg("--report")
        .arg(&page)
        .arg("--report-error-hook")
        .arg(&jobs));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    // Escaped, not injected; the tail of the failure's error file is there, escaped.
    assert!(
        !html.contains("<script>alert") && !html.contains("<img"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    // Self-contained: nothing fetched.
    assert!(!html.contains("http://") || html.matches("http://").count() == 1); // the SVG xmlns
    for fetch in ["https://", "src=\"", "<link", "@import", "url("] {
        assert!(!html.contains(fetch), "{fetch}: {html}");
    }
    assert_polylines(&html, 1);
    if !have("chromium") {
        eprintln!(
            "SKIPPED (the Chromium part): chromium is not installed (apt-get install chromium)"
        );
        return;
    }
    // The page's own scripts run without an error (the hook would put it in the title).
    let dom = text(&chromium(&dir, &page, &["--dump-dom"]).stdout);
    assert!(dom.contains("id=\"timeline\""), "{dom}");
    assert!(!dom.contains("<title>JSERROR"), "{dom}");
    assert_eq!(
        dom.matches("<script").count(),
        2,
        "only the page's own scripts: {dom}"
    );
    // No console errors, and a screenshot that shows the timeline.
    let shot = dir.join("shot.png");
    let out = chromium(
        &dir,
        &page,
        &[
            "--window-size=1200,800",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let log = text(&out.stderr);
    assert!(
        !log.contains("Uncaught")
            && !log
                .lines()
                .any(|l| l.contains("CONSOLE(") && l.contains("rror")),
        "{log}"
    );
    let colours = colours_of(&shot);
    assert!(
        colours.len() > 10,
        "the screenshot is blank: {} colours",
        colours.len()
    );
    // The bars: green (succeeded) and red (failed) pixels from the timeline.
    assert!(colours.contains(&[0x2e, 0x9d, 0x4c]), "no green bar");
    assert!(colours.contains(&[0xd0, 0x34, 0x2c]), "no red bar");
}

/// The distinct RGB colours of a PNG.
fn colours_of(path: &Path) -> std::collections::HashSet<[u8; 3]> {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("screenshot"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let step = info.color_type.samples();
    assert!(step >= 3, "{:?}", info.color_type);
    buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

#[test]
fn run_watch_shows_the_job_and_q_kills_it_as_ctrl_c() {
    if !have("tmux") {
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let dir = TempDir::new("watch-run");
    let marker = format!("1000.{}161803", std::process::id());
    let _cleanup = Cleanup(marker.clone());
    let status = dir.join("status");
    // The marker in a script, not on the window's command line (whose shell stays).
    let script = dir.join("job.sh");
    std::fs::write(&script, format!("echo step 2 of 5; exec sleep {marker}\n")).unwrap();
    let tmux = Tmux::new("run");
    tmux.window(
        true,
        &format!(
            "{BIN} run --watch --progress-pattern '{{n}} of {{m}}' --log {} --err {} -- sh {}; \
             echo $? > {}; sleep 60",
            quoted(&dir.join("log")),
            quoted(&dir.join("err")),
            quoted(&script),
            quoted(&status)
        ),
    );
    let (ok, screen) = tmux.wait_for(0, |s| s.contains("1 running") && s.contains("step 2 of 5"));
    assert!(ok, "{screen}");
    // Sampled (CPU % and RSS) and its progress read from its output: 2 of 5.
    let (ok, screen) = tmux.wait_for(0, |s| {
        row_of(s, 1).is_some_and(|r| shows_figures(&r, 0.0, Some("40%")))
    });
    assert!(ok, "{screen}");
    tmux.keys(0, "q");
    assert!(
        eventually(Duration::from_secs(20), || written(&status)),
        "{}",
        tmux.screen(0)
    );
    assert_eq!(std::fs::read_to_string(&status).unwrap().trim(), "130");
    assert!(leftovers(&marker).is_empty());
}
