//! `procman batch`'s command line: clap's reading (after `cli::batch_prepass`) checked and
//! turned into [`Options`]: the options, the job file or the command template.

use std::thread;

use super::{Options, Output, Resume, DEFAULT_LOG_DIR};
use crate::args::{self, UsageError};
use crate::cli::{BatchArgs, Shape};
use crate::halt;
use crate::sampling;

/// Checks `procman batch`'s arguments; `shape` says whether the words are a command template.
pub(super) fn parse(a: BatchArgs, shape: Shape) -> Result<Options, UsageError> {
    let slurm = crate::slurm::options(a.slurm)?;
    let jobs = match &a.jobs {
        Some(j) => {
            let n: usize = args::number("--jobs", j)?;
            if n == 0 {
                return Err(UsageError("option --jobs: must be at least 1".into()));
            }
            n
        }
        None => crate::slurm::default_jobs(slurm.as_ref())
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let halt = match &a.halt {
        Some(v) => halt::parse(v).map_err(UsageError)?,
        None => None,
    };
    let log_dir = if a.no_logs {
        None
    } else {
        Some(args::opt_path("--log-dir", a.log_dir)?.unwrap_or_else(|| DEFAULT_LOG_DIR.into()))
    };
    let output = match (a.group, a.line_buffer) {
        (true, _) => Output::Group,
        (_, true) => Output::Lines,
        _ => Output::Files,
    };
    let (command, file) = match shape {
        Shape::Command => (Some(a.words), None),
        Shape::Files if a.words.len() > 1 => {
            return Err(UsageError(format!(
                "batch: one job file expected, got {} ({})",
                a.words.len(),
                a.words
                    .iter()
                    .map(|w| w.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            )))
        }
        Shape::Files => (None, a.words.into_iter().next()),
    };
    let mut o = Options {
        jobs,
        timeout: args::opt_duration("--timeout", a.timeout.as_deref())?,
        grace: args::opt_duration("--grace", a.grace.as_deref())?,
        contain: args::opt_containment(a.contain.as_deref())?,
        slurm,
        memory_limit: args::opt_size("--memory-limit", a.memory_limit.as_deref())?,
        retries: a.retries.map_or(Ok(0), |r| args::number("--retries", &r))?,
        log_dir,
        joblog: args::opt_path("--joblog", a.joblog)?,
        resume: match (a.resume, a.resume_failed) {
            (true, _) => Some(Resume::All),
            (_, true) => Some(Resume::Failed),
            _ => None,
        },
        halt,
        progress: match (a.progress, a.no_progress) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        quiet: a.quiet,
        file,
        command,
        nul: a.null,
        output,
        tag: a.tag,
        report: args::opt_path("--report", a.report)?,
        report_error_hook: a.report_error_hook,
        sample_interval: None,
        progress_parser: sampling::parser(a.progress_pattern.as_deref())?,
    };
    // Sampled where the figures are shown: the dashboard, the live file, the report.
    let shown = o.dashboard() || o.joblog.is_some() || o.report.is_some();
    o.sample_interval = sampling::interval(a.sample_interval.as_deref(), shown)?;
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
