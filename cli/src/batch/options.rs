//! `procman batch`'s command line: the options, the job file or the command template.

use std::ffi::OsString;
use std::path::PathBuf;
use std::thread;

use super::{Options, Output, Resume, DEFAULT_LOG_DIR};
use crate::args::{Arg, Args, UsageError};
use crate::halt;

/// Whether words after the first mean a command template rather than a job file and options.
fn is_command(rest: &[OsString]) -> bool {
    rest.iter().any(|w| w == ":::" || w == "::::")
        || rest
            .first()
            .is_some_and(|w| !w.as_encoded_bytes().starts_with(b"-"))
}

/// Reads `procman batch`'s arguments (after the verb).
pub(super) fn parse(argv: Vec<OsString>) -> Result<Options, UsageError> {
    let mut o = Options {
        jobs: thread::available_parallelism().map_or(1, |n| n.get()),
        timeout: None,
        grace: None,
        retries: 0,
        log_dir: Some(PathBuf::from(DEFAULT_LOG_DIR)),
        joblog: None,
        resume: None,
        halt: None,
        progress: None,
        quiet: false,
        file: None,
        command: None,
        nul: false,
        output: Output::Files,
        tag: false,
    };
    let mut a = Args::new(argv);
    let mut words = Vec::new();
    while let Some(arg) = a.next()? {
        match arg {
            Arg::EndOfOptions => {
                let rest = a.rest();
                if rest.len() > 1 || is_command(&rest) {
                    o.command = Some(rest);
                } else {
                    words.extend(rest);
                }
            }
            Arg::Word(w) => {
                // `procman batch [OPTIONS] COMMAND ARGS... [::: ...]`: the rest is the command.
                // `procman batch FILE [OPTIONS]`: options may follow the job file.
                let rest = a.rest();
                if is_command(&rest) {
                    o.command = Some(std::iter::once(w).chain(rest).collect());
                } else {
                    words.push(w);
                    a = Args::new(rest);
                }
            }
            Arg::Opt(name) => option(&mut o, &mut a, &name)?,
        }
    }
    if words.len() > 1 {
        return Err(UsageError(format!(
            "batch: one job file expected, got {} ({})",
            words.len(),
            words
                .iter()
                .map(|w| w.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    o.file = words.pop();
    if o.tag && o.output == Output::Files {
        return Err(UsageError(
            "option --tag: the output goes to log files only; add --group or --line-buffer".into(),
        ));
    }
    if o.resume.is_some() && o.joblog.is_none() {
        return Err(UsageError(
            "option --resume needs --joblog FILE (so does --resume-failed)".into(),
        ));
    }
    Ok(o)
}

/// One option `name` (its value, if any, read from `a`) into `o`.
fn option(o: &mut Options, a: &mut Args, name: &str) -> Result<(), UsageError> {
    match name {
        "0" | "null" => o.nul = true,
        "group" => o.output = Output::Group,
        "line-buffer" | "lb" => o.output = Output::Lines,
        "tag" => o.tag = true,
        "j" | "jobs" => {
            o.jobs = a.number()?;
            if o.jobs == 0 {
                return Err(UsageError("option --jobs: must be at least 1".into()));
            }
        }
        "timeout" => o.timeout = Some(a.duration()?),
        "grace" => o.grace = Some(a.duration()?),
        "retries" => o.retries = a.number()?,
        "log-dir" => o.log_dir = Some(a.path()?),
        "no-logs" => o.log_dir = None,
        "joblog" => o.joblog = Some(a.path()?),
        "resume" => o.resume = Some(Resume::All),
        "resume-failed" => o.resume = Some(Resume::Failed),
        "halt" | "halt-on-error" => {
            // `--halt=V`, `--halt V` (when V reads as a halt rule), or a bare `--halt`.
            let v = a.optional_value(halt::looks_like_value);
            let v = v.map_or(Ok("soon".to_owned()), |v| {
                v.into_string()
                    .map_err(|v| UsageError(format!("option --halt: {v:?} is not UTF-8")))
            })?;
            o.halt = halt::parse(&v).map_err(UsageError)?;
        }
        "progress" => o.progress = Some(true),
        "no-progress" => o.progress = Some(false),
        "q" | "quiet" => o.quiet = true,
        "h" | "help" => return Err(UsageError::help()),
        _ => return Err(a.unknown("batch")),
    }
    Ok(())
}
