//! `procman status --joblog FILE`: a readable summary of a batch run from its joblog.
//!
//! A job that ran more than once (a run resumed with `--resume`) is judged by its latest entry.
//! Exit status: 0 when every job in the joblog succeeded, 1 when some failed, 2 when the joblog
//! could not be read or the options are wrong.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use procman_cli::{lines, parse_joblog_line, JoblogEntry, JoblogError};

use crate::args::{Arg, Args, UsageError};
use crate::batch::DEFAULT_LOG_DIR;

struct Options {
    joblog: PathBuf,
    log_dir: PathBuf,
    top: usize,
}

fn parse(argv: Vec<OsString>) -> Result<Options, UsageError> {
    let mut joblog = None;
    let mut log_dir = PathBuf::from(DEFAULT_LOG_DIR);
    let mut top = 5;
    let mut a = Args::new(argv);
    while let Some(arg) = a.next()? {
        match arg {
            Arg::Opt(name) => match name.as_str() {
                "joblog" => joblog = Some(a.path()?),
                "log-dir" => log_dir = a.path()?,
                "top" => top = a.number()?,
                "h" | "help" => return Err(UsageError::help()),
                _ => return Err(a.unknown("status")),
            },
            Arg::Word(w) if joblog.is_none() => joblog = Some(PathBuf::from(w)),
            Arg::Word(w) => {
                return Err(UsageError(format!(
                    "status: unexpected argument {:?}",
                    w.to_string_lossy()
                )))
            }
            Arg::EndOfOptions => {}
        }
    }
    let joblog = joblog.ok_or_else(|| UsageError("status: --joblog FILE is required".into()))?;
    Ok(Options {
        joblog,
        log_dir,
        top,
    })
}

/// How a joblog entry ended, in words.
fn describe(e: &JoblogEntry) -> String {
    match (e.exitval, e.signal) {
        (0, 0) => "succeeded".into(),
        (-1, 0) => "ended by procman (timed out or killed)".into(),
        (-1, s) => format!("timed out or killed, {}", procman::describe_signal(s)),
        (_, s) if s != 0 => procman::describe_signal(s),
        (127, _) => "exited with code 127 (procman: could not be started)".into(),
        (c, _) => format!("exited with code {c}"),
    }
}

fn succeeded(e: &JoblogEntry) -> bool {
    e.exitval == 0 && e.signal == 0
}

fn secs(x: f64) -> String {
    crate::fmt_duration(Duration::try_from_secs_f64(x.max(0.0)).unwrap_or_default())
}

pub fn main(argv: Vec<OsString>) -> i32 {
    let o = match parse(argv) {
        Ok(o) => o,
        Err(e) if e.is_help() => {
            crate::print_help(crate::STATUS_USAGE);
            return 0;
        }
        Err(e) => {
            eprintln!("procman: {e}");
            return 2;
        }
    };
    let (latest, runs, bad) = match read_joblog(&o.joblog) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("procman: cannot open joblog {}: {e}", o.joblog.display());
            return 2;
        }
    };
    let ok = latest.values().filter(|e| succeeded(e)).count();
    let failed: Vec<&JoblogEntry> = latest.values().filter(|e| !succeeded(e)).collect();
    let mut out = format!(
        "{}: {} job{}, {ok} succeeded, {} failed",
        o.joblog.display(),
        latest.len(),
        if latest.len() == 1 { "" } else { "s" },
        failed.len()
    );
    if runs > latest.len() {
        out.push_str(&format!(
            " ({runs} runs: some jobs ran again after --resume)"
        ));
    }
    if bad > 0 {
        out.push_str(&format!("; {bad} unreadable line(s) skipped"));
    }
    println!("{out}");
    if let (Some(first), Some(last)) = (
        latest
            .values()
            .map(|e| e.start_time)
            .min_by(|a, b| a.total_cmp(b)),
        latest
            .values()
            .map(|e| e.start_time + e.runtime)
            .max_by(|a, b| a.total_cmp(b)),
    ) {
        let busy: f64 = latest.values().map(|e| e.runtime).sum();
        println!(
            "time: {} from the first start to the last end, {} of job run time",
            secs(last - first),
            secs(busy)
        );
    }
    if !failed.is_empty() {
        print_failed(&failed, &o.log_dir);
    }
    if o.top > 0 && !latest.is_empty() {
        print_slowest(&latest, o.top);
    }
    i32::from(!failed.is_empty())
}

/// The latest entry of each job in the joblog at `path`, the number of entries (runs) and of
/// unreadable lines (each reported on stderr). `Err`: the joblog cannot be opened.
fn read_joblog(path: &Path) -> io::Result<(BTreeMap<u64, JoblogEntry>, usize, usize)> {
    let file = File::open(path)?;
    let mut latest: BTreeMap<u64, JoblogEntry> = BTreeMap::new();
    let mut runs = 0usize;
    let mut bad = 0usize;
    for item in lines(BufReader::new(file)) {
        match item {
            Ok((n, text)) => match parse_joblog_line(&text) {
                Ok(e) => {
                    runs += 1;
                    latest.insert(e.seq, e);
                }
                Err(JoblogError::Header) => {}
                Err(_) if text.is_empty() => {}
                Err(e) => {
                    bad += 1;
                    eprintln!("procman: {}: line {n}: {e}", path.display());
                }
            },
            Err(e) => {
                bad += 1;
                eprintln!("procman: {}: {e}", path.display());
            }
        }
    }
    Ok((latest, runs, bad))
}

/// The failed jobs, each with its log files that exist in `log_dir`.
fn print_failed(failed: &[&JoblogEntry], log_dir: &Path) {
    println!("failed:");
    for e in failed {
        println!("  job {}: {}: {}", e.seq, describe(e), e.command);
        let mut logs = Vec::new();
        for name in [format!("{}.log", e.seq), format!("{}_err.txt", e.seq)] {
            let p = log_dir.join(name);
            if Path::new(&p).exists() {
                logs.push(p.display().to_string());
            }
        }
        if !logs.is_empty() {
            println!("      {}", logs.join(", "));
        }
    }
}

/// The `top` slowest jobs, slowest first.
fn print_slowest(latest: &BTreeMap<u64, JoblogEntry>, top: usize) {
    let mut by_time: Vec<&JoblogEntry> = latest.values().collect();
    by_time.sort_by(|a, b| b.runtime.total_cmp(&a.runtime).then(a.seq.cmp(&b.seq)));
    println!("slowest:");
    for e in by_time.iter().take(top) {
        println!("  job {:<5} {:>10}  {}", e.seq, secs(e.runtime), e.command);
    }
}
