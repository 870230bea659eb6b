//! `procman run`: one job, its exit code as ours, a one-line account on stderr.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use crossbeam_channel::unbounded;
use procman::{JobSpec, ProcessManager};

use crate::args::{Arg, Args, UsageError};
use crate::relay;
use crate::sig;

/// Exit status for procman's own errors (coreutils `timeout` uses 125 too).
const OWN_ERROR: i32 = 125;

#[derive(Default)]
struct Options {
    log: Option<PathBuf>,
    err: Option<PathBuf>,
    input: Option<PathBuf>,
    timeout: Option<std::time::Duration>,
    grace: Option<std::time::Duration>,
    cwd: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    quiet: bool,
    command: Vec<OsString>,
}

fn parse(argv: Vec<OsString>) -> Result<Options, UsageError> {
    let mut o = Options::default();
    let mut a = Args::new(argv);
    while let Some(arg) = a.next()? {
        match arg {
            Arg::EndOfOptions => {
                o.command = a.rest();
                break;
            }
            Arg::Word(w) => {
                // The first word is the program: everything after it is its arguments.
                o.command = std::iter::once(w).chain(a.rest()).collect();
                break;
            }
            Arg::Opt(name) => match name.as_str() {
                "log" => o.log = Some(a.path()?),
                "err" => o.err = Some(a.path()?),
                "input" => o.input = Some(a.path()?),
                "timeout" => o.timeout = Some(a.duration()?),
                "grace" => o.grace = Some(a.duration()?),
                "cwd" => o.cwd = Some(a.path()?),
                "env" => {
                    let kv = a.value()?;
                    let s = kv.to_string_lossy();
                    match s.split_once('=') {
                        Some((k, _)) if !k.is_empty() => {
                            use std::os::unix::ffi::OsStrExt;
                            let bytes = kv.as_bytes();
                            let (k, v) = bytes.split_at(k.len());
                            o.env.push((
                                std::ffi::OsStr::from_bytes(k).to_owned(),
                                std::ffi::OsStr::from_bytes(&v[1..]).to_owned(),
                            ));
                        }
                        _ => {
                            return Err(UsageError(format!(
                                "option --env: expected NAME=VALUE, got {s:?}"
                            )))
                        }
                    }
                }
                "q" | "quiet" => o.quiet = true,
                "h" | "help" => return Err(UsageError::help()),
                _ => return Err(a.unknown("run")),
            },
        }
    }
    if o.command.is_empty() {
        return Err(UsageError(
            "run: no program given (procman run [OPTIONS] -- PROGRAM [ARGS...])".into(),
        ));
    }
    Ok(o)
}

enum Msg {
    Done(Box<procman::JobRecord>),
    Signal(i32),
}

pub fn main(argv: Vec<OsString>, blocked: sig::Blocked) -> i32 {
    let o = match parse(argv) {
        Ok(o) => o,
        Err(e) if e.is_help() => {
            crate::print_help(crate::RUN_USAGE);
            return 0;
        }
        Err(e) => {
            eprintln!("procman: {e}");
            return OWN_ERROR;
        }
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
    let manager = match ProcessManager::builder().limit(1).build() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("procman: cannot start: {e}");
            return OWN_ERROR;
        }
    };
    sig::forward(blocked, tx, Msg::Signal);
    let id = match manager.start_process(spec) {
        Ok(id) => id,
        Err(e) => {
            eprintln!("procman: {e}");
            return OWN_ERROR;
        }
    };
    let mut interrupted = None;
    let record = loop {
        match rx.recv() {
            Ok(Msg::Done(r)) => break r,
            Ok(Msg::Signal(s)) => {
                if interrupted.is_none() {
                    log::info!("signal {s}: killing the job");
                    interrupted = Some(s);
                    // The job is never deleted: its id is known.
                    let _ = manager.kill_process(id);
                }
            }
            // Cannot happen: the job's handler holds a sender until it has sent the record.
            Err(_) => return OWN_ERROR,
        }
    };
    // The job has ended: the relays copy what is left in their pipes.
    for r in relays {
        r.finish();
    }
    if !o.quiet {
        // Not eprintln!, which panics when stderr is gone (`2>&1 | head -1`).
        let _ = writeln!(std::io::stderr(), "procman: {}", crate::account(&record));
    }
    drop(manager);
    match interrupted {
        Some(s) => 128 + s,
        None => crate::exit_code(&record),
    }
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
    if let Some(g) = o.grace {
        spec = spec.grace(g);
    }
    Ok((spec, relays))
}
