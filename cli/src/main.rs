//! `procman`: run one program as a managed job, or a batch of them in the spirit of GNU parallel.
//!
//! ```text
//! procman run [options] [--] PROGRAM [ARGS...]
//! procman batch [options] [FILE|-]
//! procman status --joblog FILE [--log-dir DIR] [--top N] [--follow]
//! procman completions bash|zsh|fish
//! ```
//!
//! See `procman --help`, README.md and DESIGN.md ("The procman tool").

mod args;
mod batch;
mod cli;
mod dash;
mod follow;
mod halt;
mod inputs;
mod live;
mod relay;
mod report;
mod run;
mod sampling;
mod sig;
mod slurm;
mod status;

use std::ffi::OsString;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use procman::{JobRecord, JobStatus};

fn main() {
    // Before any thread exists, so every thread inherits the mask (see sig.rs).
    let blocked = sig::block();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    // Each verb's own exit status for a usage error (run as `timeout`, batch as parallel).
    let verb = argv.get(1).and_then(|v| v.to_str()).map(str::to_owned);
    let (usage_status, mut shape) = match verb.as_deref() {
        Some("run") => (125, cli::Shape::Files),
        Some("batch") => (255, cli::Shape::Files),
        _ => (2, cli::Shape::Files),
    };
    if verb.as_deref() == Some("batch") {
        let rest = argv.split_off(2);
        let (words, s) = cli::batch_prepass(rest);
        argv.extend(words);
        shape = s;
    }
    let parsed = match cli::Cli::try_parse_from(argv) {
        Ok(p) => p,
        Err(e) => {
            // Help and version go to stdout with status 0; errors to stderr.
            let code = if e.use_stderr() { usage_status } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match parsed.verb {
        cli::Verb::Run(a) => run::main(a, blocked),
        cli::Verb::Batch(a) => batch::main(a, shape, blocked),
        cli::Verb::Status(a) => status::main(a),
        cli::Verb::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell.clap(), &mut cli::Cli::command(), "procman", &mut out);
            print_help(&String::from_utf8_lossy(&out));
            0
        }
    };
    std::process::exit(code);
}

/// Writes a help text to stdout (not `print!`, which panics on a closed pipe: `| head`).
pub fn print_help(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// `1.234s`, `2m03s`, `1h02m`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.3}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// `512 B`, `3.4 KiB`, `210.0 MiB`, `1.2 GiB`.
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The one-line account of a finished job: how it ended, wall time, CPU, peak memory.
pub fn account(record: &JobRecord) -> String {
    let mut s = record.describe_end();
    if let Some(u) = record.usage {
        s.push_str(&format!("; wall {}", fmt_duration(u.wall)));
        if let (Some(user), Some(sys)) = (u.user_cpu, u.system_cpu) {
            s.push_str(&format!(
                ", cpu {} user + {} sys",
                fmt_duration(user),
                fmt_duration(sys)
            ));
        }
        if let Some(m) = u.peak_memory {
            s.push_str(&format!(", peak memory {}", fmt_bytes(m)));
        }
    }
    if record.attempts > 1 {
        s.push_str(&format!(", {} attempts", record.attempts));
    }
    s
}

/// The exit status of `procman run` for a finished job, after coreutils `timeout`:
/// the job's code; 124 for a timeout; 128+N for a signal; 126 when the program could not be
/// executed and 127 when it was not found; 125 for other failures to start it, and for a job
/// that procman's own internal error ended.
pub fn exit_code(record: &JobRecord) -> i32 {
    match record.status {
        JobStatus::Finished => 0,
        JobStatus::InternalError => 125,
        JobStatus::TimedOut => 124,
        JobStatus::SpawnFailed => {
            // The core's messages: "cannot start PROGRAM: <io error>" for the program itself.
            // The Slurm backend's: "cannot run PROGRAM on node N: not found (...)".
            let e = record.error.as_deref().unwrap_or("");
            if e.starts_with("cannot run ") && e.contains(": not found") {
                127
            } else if !e.starts_with("cannot start") || e.contains("working directory") {
                125
            } else if e.contains("(os error 2)") {
                127
            } else {
                126
            }
        }
        _ => match (record.exit_code, record.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 125,
        },
    }
}
