//! `procman`: run one program as a managed job, or a batch of them in the spirit of GNU parallel.
//!
//! ```text
//! procman run [options] [--] PROGRAM [ARGS...]
//! procman batch [options] [FILE|-]
//! procman status --joblog FILE [--log-dir DIR] [--top N]
//! ```
//!
//! See `procman --help`, README.md and DESIGN.md ("The procman tool").

mod args;
mod batch;
mod halt;
mod inputs;
mod relay;
mod run;
mod sig;
mod status;

use std::ffi::OsString;
use std::time::Duration;

use procman::{JobRecord, JobStatus};

const HEADER: &str = "\
procman: run programs as managed jobs

USAGE:
    procman run [OPTIONS] [--] PROGRAM [ARGS...]
    procman batch [OPTIONS] [FILE|-]
    procman batch [OPTIONS] [--] COMMAND [ARGS...] (::: ARGS... | :::: FILE)...
    procman status --joblog FILE [--log-dir DIR] [--top N]
    procman VERB --help
";

pub const RUN_USAGE: &str = "\
procman run [OPTIONS] [--] PROGRAM [ARGS...]

run: one job; exits with its exit code (124 on timeout, 128+N when ended by signal N,
     125 for procman's own errors, 126/127 when the program cannot be run/found).
    --log FILE        the job's stdout to FILE (default: procman's stdout, byte for byte;
                      when its reader goes away the job gets SIGPIPE, as under `timeout`)
    --err FILE        the job's stderr to FILE (default: procman's stderr, likewise)
    --input FILE      the job's stdin from FILE (default: /dev/null; /dev/stdin to pass ours)
                      --err naming the --log file merges the two; an --input that is the
                      --log or --err file is refused (it would be truncated)
    --timeout DUR     end the job's process group after DUR (5, 2.5s, 100ms, 3m, 1h;
                      0 means no timeout, as for `timeout`)
    --grace DUR       time between SIGTERM and SIGKILL (default 2s)
    --cwd DIR         the job's working directory
    --env K=V         set an environment variable (repeatable)
    -q, --quiet       no one-line account on stderr
    -h, --help        this help
";

pub const BATCH_USAGE: &str = include_str!("batch_usage.txt");

pub const STATUS_USAGE: &str = "\
procman status --joblog FILE [--log-dir DIR] [--top N]

status: summarise a joblog (counts, failures with their log files, slowest jobs).
    --joblog FILE     the joblog to read (required)
    --log-dir DIR     where the batch wrote its logs (default: procman-logs)
    --top N           how many slowest jobs to list (default 5)
    -h, --help        this help
";

const FOOTER: &str = "
Durations (DUR, and \"timeout\" in job files): seconds, or a number with a suffix ms, s, m,
h or d (5, 2.5s, 100ms, 3m, 1h, 1d), up to 18446744073709551615s (about 585 billion years);
0 means no timeout, and one too long for the clock means no limit. Exponents (1e3) and larger
values are refused: exit status 125 (run) or 255 (batch), or an invalid job line.

Logging: RUST_LOG=debug (or info, warn; default warn) shows procman's own messages.
";

fn usage() -> String {
    format!("{HEADER}\n{RUN_USAGE}\n{BATCH_USAGE}\n{STATUS_USAGE}{FOOTER}")
}

fn main() {
    // Before any thread exists, so every thread inherits the mask (see sig.rs).
    let blocked = sig::block();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    let mut argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let verb = if argv.is_empty() {
        None
    } else {
        Some(argv.remove(0))
    };
    let code = match verb.as_ref().and_then(|v| v.to_str()) {
        Some("run") => run::main(argv, blocked),
        Some("batch") => batch::main(argv, blocked),
        Some("status") => status::main(argv),
        Some("-h" | "--help" | "help") => {
            print_help(&usage());
            0
        }
        Some("-V" | "--version") => {
            println!("procman {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(other) => {
            eprintln!("procman: unknown command {other:?}\n\n{}", usage());
            2
        }
        None => {
            eprint!("{}", usage());
            2
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
            let e = record.error.as_deref().unwrap_or("");
            if !e.starts_with("cannot start") || e.contains("working directory") {
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
