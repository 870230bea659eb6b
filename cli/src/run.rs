//! `procman run`: one job, its exit code as ours, a one-line account on stderr.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError};
use procman::{JobId, JobRecord, JobSpec, ProcessManager};

use crate::args::{self, UsageError};
use crate::cli::RunArgs;
use crate::dash::{Dash, Key};
use crate::live::{self, JobView, LiveState};
use crate::relay;
use crate::report;
use crate::sampling::{self, Series};
use crate::sig;

/// How often `--watch` redraws.
const REDRAW: Duration = Duration::from_millis(200);

/// Exit status for procman's own errors (coreutils `timeout` uses 125 too).
const OWN_ERROR: i32 = 125;

#[derive(Default)]
struct Options {
    log: Option<PathBuf>,
    err: Option<PathBuf>,
    input: Option<PathBuf>,
    timeout: Option<std::time::Duration>,
    grace: Option<std::time::Duration>,
    contain: Option<procman::Containment>,
    slurm: Option<procman::slurm::SlurmOptions>,
    memory_limit: Option<u64>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    quiet: bool,
    /// `--watch`: the dashboard while the job runs (see [`watching`]).
    watch: bool,
    /// `--sample-interval`, as given (resolved once `--watch` is known to apply).
    sample_interval: Option<String>,
    progress_parser: Option<procman::ProgressParser>,
    /// `--report FILE`: the HTML report of the job.
    report: Option<PathBuf>,
    command: Vec<OsString>,
}

/// The options from clap's reading, checked (paths not empty, durations, `--env` pairs).
fn parse(a: RunArgs) -> Result<Options, UsageError> {
    let mut o = Options {
        log: args::opt_path("--log", a.log)?,
        err: args::opt_path("--err", a.err)?,
        input: args::opt_path("--input", a.input)?,
        timeout: args::opt_duration("--timeout", a.timeout.as_deref())?,
        grace: args::opt_duration("--grace", a.grace.as_deref())?,
        contain: args::opt_containment(a.contain.as_deref())?,
        slurm: crate::slurm::options(a.slurm)?,
        memory_limit: args::opt_size("--memory-limit", a.memory_limit.as_deref())?,
        cwd: args::opt_path("--cwd", a.cwd)?,
        quiet: a.quiet,
        watch: a.watch,
        sample_interval: a.sample_interval,
        progress_parser: sampling::parser(a.progress_pattern.as_deref())?,
        report: args::opt_path("--report", a.report)?,
        command: a.command,
        ..Options::default()
    };
    // Checked here, so that a bad value is a usage error whether or not it is used.
    sampling::interval(o.sample_interval.as_deref(), false)?;
    for kv in a.env {
        o.env.push(env_pair(&kv)?);
    }
    if o.command.is_empty() {
        return Err(UsageError(
            "run: no program given (procman run [OPTIONS] -- PROGRAM [ARGS...])".into(),
        ));
    }
    Ok(o)
}

/// `NAME=VALUE` (bytes kept; the value may hold `=`).
fn env_pair(kv: &OsStr) -> Result<(OsString, OsString), UsageError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = kv.as_bytes();
    match bytes.iter().position(|&b| b == b'=') {
        Some(k) if k > 0 => Ok((
            OsStr::from_bytes(&bytes[..k]).to_owned(),
            OsStr::from_bytes(&bytes[k + 1..]).to_owned(),
        )),
        _ => Err(UsageError(format!(
            "option --env: expected NAME=VALUE, got {:?}",
            kv.to_string_lossy()
        ))),
    }
}

enum Msg {
    Done(Box<procman::JobRecord>),
    Signal(i32),
    Key(Key),
}

/// `--watch` draws the dashboard only on a terminal (stderr) that none of the job's own output
/// reaches (`--log` and `--err`, or procman's stdout/stderr redirected): the two would garble
/// each other. Otherwise the option is ignored, with a note.
fn watching(o: &Options) -> bool {
    use std::io::IsTerminal;
    if !o.watch || !std::io::stderr().is_terminal() {
        return false;
    }
    let clear = o.err.is_some() && (o.log.is_some() || !std::io::stdout().is_terminal());
    if !clear {
        let _ = writeln!(
            std::io::stderr(),
            "procman: --watch: the job writes to this terminal; give --log and --err to watch it"
        );
    }
    clear
}

/// The one job as the dashboard shows it.
fn live_state(manager: &ProcessManager, o: &Options, started: Instant) -> LiveState {
    let command = procman_cli::join_words(
        o.command
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
    );
    let snap = manager.snapshot();
    let jobs: Vec<JobView> = snap
        .running
        .iter()
        .zip(snap.live.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|((id, pid, elapsed), figures)| {
            let mut view = JobView {
                seq: 1,
                label: "job".into(),
                command: command.clone(),
                pid: *pid,
                elapsed: elapsed.as_secs_f64(),
                last_line: o.log.as_deref().and_then(live::last_line),
                ..JobView::default()
            };
            if let Some(f) = figures.filter(|f| f.id == *id) {
                sampling::fill(&mut view, f);
            }
            view
        })
        .collect();
    LiveState {
        pid: std::process::id(),
        elapsed: started.elapsed().as_secs_f64(),
        total: 1,
        input_done: true,
        running: jobs.len() as u64,
        jobs,
        ..LiveState::default()
    }
}

pub fn main(argv: RunArgs, blocked: sig::Blocked) -> i32 {
    let mut o = match parse(argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("procman: {e}");
            return OWN_ERROR;
        }
    };
    // On Slurm the job runs on a node: its output comes back through files (see `Spool`).
    let mut spool = match o.slurm.is_some() {
        true => match crate::slurm::Spool::make(o.cwd.as_deref(), &mut o.log, &mut o.err) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("procman: {e}");
                return OWN_ERROR;
            }
        },
        false => None,
    };
    let (mut spec, relays) = match job_spec(&o) {
        Ok(spec_and_relays) => spec_and_relays,
        Err(message) => {
            eprintln!("procman: {message}");
            return OWN_ERROR;
        }
    };
    let (tx, rx) = unbounded();
    let done = tx.clone();
    spec = spec.on_finish(move |r| {
        let _ = done.send(Msg::Done(Box::new(r.clone())));
    });
    let watch = watching(&o);
    // Parsed before: cannot fail.
    let every = sampling::interval(o.sample_interval.as_deref(), watch || o.report.is_some())
        .unwrap_or(None);
    let mut builder = ProcessManager::builder().limit(1);
    if let Some(every) = every {
        builder = builder.sample_interval(every);
    }
    if let Some(c) = o.contain {
        builder = builder.containment(c);
    }
    if let Some(s) = o.slurm.clone() {
        builder = builder.slurm(s);
    }
    let manager = match builder.build() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("procman: cannot start: {e}");
            return OWN_ERROR;
        }
    };
    let mut series = (o.report.is_some() && every.is_some()).then(|| Series::subscribe(&manager));
    let started = SystemTime::now();
    let mut dash = watch.then(|| {
        use std::io::IsTerminal;
        let keys =
            std::io::stdin().is_terminal() && o.input.as_deref() != Some(Path::new("/dev/stdin"));
        Dash::start(keys.then_some((tx.clone(), Msg::Key as fn(Key) -> Msg)))
    });
    sig::forward(blocked, tx, Msg::Signal);
    let id = match manager.start_process(spec) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("procman: {e}");
            return OWN_ERROR;
        }
    };
    // On Slurm, the job's output as it comes (the local job writes procman's own streams).
    if let Some(s) = spool.as_mut() {
        s.start();
    }
    let Some((record, interrupted)) = wait(&manager, id, &rx, dash.as_mut(), &o, series.as_mut())
    else {
        // Cannot happen: the job's handler holds a sender until it has sent the record.
        return OWN_ERROR;
    };
    if let Some(mut d) = dash.take() {
        d.end();
    }
    // The job has ended: the relays copy what is left in their pipes.
    for r in relays {
        r.finish();
    }
    if let Some(s) = spool {
        s.finish();
    }
    if !o.quiet {
        // Not eprintln!, which panics when stderr is gone (`2>&1 | head -1`).
        let _ = writeln!(std::io::stderr(), "procman: {}", crate::account(&record));
    }
    let own_error = !report_if_asked(&o, &record, started, series.as_mut());
    drop(manager);
    if own_error && interrupted.is_none() {
        return OWN_ERROR;
    }
    match interrupted {
        Some(s) => 128 + s,
        None => crate::exit_code(&record),
    }
}

/// Waits for the job's record, killing the job on a signal (or `q`) and drawing the dashboard
/// meanwhile; the record and the signal that interrupted it. `None`: the channel closed.
fn wait(
    manager: &ProcessManager,
    id: JobId,
    rx: &Receiver<Msg>,
    mut dash: Option<&mut Dash>,
    o: &Options,
    mut series: Option<&mut Series>,
) -> Option<(Box<JobRecord>, Option<i32>)> {
    let mut interrupted = None;
    let started = Instant::now();
    loop {
        if let Some(s) = series.as_mut() {
            s.drain();
        }
        // Woken at each redraw, or (for the report's subscription) as often.
        let ticking = dash.is_some() || series.is_some();
        let msg = if ticking {
            match rx.recv_timeout(REDRAW) {
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(d) = dash.as_mut() {
                        d.draw(&live_state(manager, o, started));
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return None,
                Ok(m) => m,
            }
        } else {
            rx.recv().ok()?
        };
        match msg {
            Msg::Done(r) => return Some((r, interrupted)),
            Msg::Key(Key::ToggleTable) => {
                if let Some(d) = dash.as_mut() {
                    d.toggle_table();
                }
            }
            // `q` on the dashboard: as Ctrl-C.
            Msg::Signal(_) | Msg::Key(Key::Quit) if interrupted.is_some() => {}
            Msg::Signal(s) => {
                log::info!("signal {s}: killing the job");
                interrupted = Some(s);
                // The job is never deleted: its id is known.
                let _ = manager.kill_process(id);
            }
            Msg::Key(Key::Quit) => {
                interrupted = Some(libc::SIGINT);
                let _ = manager.kill_process(id);
            }
        }
    }
}

/// Writes the report when `--report` asks for one; false when it could not (said on stderr).
fn report_if_asked(
    o: &Options,
    record: &JobRecord,
    started: SystemTime,
    series: Option<&mut Series>,
) -> bool {
    let Some(path) = &o.report else {
        return true;
    };
    let written = write_report(path, o, record, started, series);
    if let Err(e) = &written {
        let _ = writeln!(
            std::io::stderr(),
            "procman: cannot write the report {}: {e}",
            path.display()
        );
    }
    written.is_ok()
}

/// `--report FILE`: the page of the one job, with its usage over time.
fn write_report(
    path: &Path,
    o: &Options,
    record: &JobRecord,
    started: SystemTime,
    series: Option<&mut Series>,
) -> std::io::Result<()> {
    let command = procman_cli::join_words(
        o.command
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
    );
    let mut job = report::ReportJob::of(1, "job".into(), command.clone(), record, started);
    let mut lost = 0;
    if let Some(s) = series {
        // The job's usage events came before its end.
        s.drain();
        job.samples = s.take(record, started);
        lost = s.lost;
    }
    let wall = SystemTime::now()
        .duration_since(started)
        .map_or(0.0, |d| d.as_secs_f64());
    report::write(
        path,
        &report::Report {
            title: format!("procman run report: {command}"),
            wall,
            jobs: vec![job],
            invalid: Vec::new(),
            summary: crate::account(record),
            error_hook: false,
            lost_samples: lost,
        },
    )
}

/// The job as the options give it, and the relays that copy its output where procman's own
/// goes (see `relay.rs`). `Err`: why a stream cannot be relayed.
fn job_spec(o: &Options) -> Result<(JobSpec, Vec<relay::Relay>), String> {
    let mut spec = JobSpec::new(&o.command[0]).args(&o.command[1..]);
    match &o.input {
        Some(p) => spec = spec.input_file(p),
        None => spec = spec.stdin_null(),
    }
    if let Some(p) = &o.log {
        spec = spec.log_file(p);
    }
    match &o.err {
        Some(p) => spec = spec.error_file(p),
        None => spec = spec.error_null(),
    }
    // A stream without a file goes where procman's own goes: handed to the job directly where
    // it can be reopened (see `relay.rs`), else copied through a pipe byte for byte.
    let mut relays = Vec::new();
    if o.log.is_none() {
        match relay::Dest::of(libc::STDOUT_FILENO) {
            Ok(dest) => {
                if let Some(path) = dest.path() {
                    spec = spec.log_file(path);
                }
                relays.extend(dest.into_relay());
            }
            Err(e) => return Err(format!("cannot relay the job's output: {e}")),
        }
    }
    if o.err.is_none() {
        match relay::Dest::of(libc::STDERR_FILENO) {
            Ok(dest) => {
                if let Some(path) = dest.path() {
                    spec = spec.error_file(path);
                }
                relays.extend(dest.into_relay());
            }
            Err(e) => return Err(format!("cannot relay the job's errors: {e}")),
        }
    }
    if let Some(d) = &o.cwd {
        spec = spec.cwd(d);
    }
    for (k, v) in &o.env {
        spec = spec.env(k, v);
    }
    // 0 means no timeout, as for coreutils `timeout`.
    if let Some(t) = o.timeout.filter(|t| !t.is_zero()) {
        spec = spec.timeout(t);
    }
    if let Some(bytes) = o.memory_limit {
        spec = spec.memory_limit(bytes);
    }
    if let Some(g) = o.grace {
        spec = spec.grace(g);
    }
    if let Some(p) = &o.progress_parser {
        spec = spec.progress_parser(p.clone());
    }
    Ok((spec, relays))
}
