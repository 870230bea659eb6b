//! `procman run`: one job, its exit code as ours, a one-line account on stderr.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use crossbeam_channel::unbounded;
use procman::{JobSpec, ProcessManager, Stream, OBSERVER_LINE_CAP};

use crate::args::{Arg, Args, UsageError};
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
        Err(e) => {
            eprintln!("procman: {e}");
            return OWN_ERROR;
        }
    };
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
    // A stream without a file is relayed to ours, line by line, from the reader threads.
    let relay_out = o.log.is_none();
    let relay_err = o.err.is_none();
    if relay_out || relay_err {
        spec = spec.observe(move |_, stream, line| {
            let relay = match stream {
                Stream::Stdout => relay_out,
                Stream::Stderr => relay_err,
            };
            if !relay {
                return;
            }
            // A piece of exactly the cap is (almost always) part of a longer line: no newline.
            let newline: &[u8] = if line.len() == OBSERVER_LINE_CAP {
                b""
            } else {
                b"\n"
            };
            let _ = match stream {
                Stream::Stdout => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(line)
                        .and_then(|_| out.write_all(newline))
                        .and_then(|_| out.flush())
                }
                Stream::Stderr => {
                    let mut err = std::io::stderr().lock();
                    err.write_all(line).and_then(|_| err.write_all(newline))
                }
            };
        });
    }
    if let Some(d) = &o.cwd {
        spec = spec.cwd(d);
    }
    for (k, v) in &o.env {
        spec = spec.env(k, v);
    }
    if let Some(t) = o.timeout {
        spec = spec.timeout(t);
    }
    if let Some(g) = o.grace {
        spec = spec.grace(g);
    }
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
    let _ = std::io::stdout().flush();
    // The handler runs only after the reader threads finished: every relayed line is out.
    if !o.quiet {
        eprintln!("procman: {}", crate::account(&record));
    }
    drop(manager);
    match interrupted {
        Some(s) => 128 + s,
        None => crate::exit_code(&record),
    }
}
