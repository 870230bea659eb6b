//! The command line, read by clap (derive): the verbs, their options and help texts, shell
//! completions. Values whose messages tests and users rely on (durations, numbers, paths,
//! `--halt`, `--env`) are taken as text here and checked by the verbs, which word their errors
//! as before (`option --timeout: ...`).
//!
//! `batch` keeps a small pre-pass ([`batch_prepass`]) for what clap cannot express: options
//! after a job file (`procman batch jobs.txt --joblog x`), telling a command template
//! (`procman batch CMD ARGS... ::: ...`, whose words are the command's, options or not) from a
//! job file, and `--halt`'s optional value written after a space (`--halt now,fail=1`, taken
//! only when it reads as a rule, so `--halt jobs.txt` stays a bare `--halt` and a file).

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand, ValueEnum};

const FOOTER: &str = "\
Durations (DUR, and \"timeout\" in job files): seconds, or a number with a suffix ms, s, m,
h or d (5, 2.5s, 100ms, 3m, 1h, 1d), up to 18446744073709551615s (about 585 billion years);
0 means no timeout, and one too long for the clock means no limit. Exponents (1e3) and larger
values are refused: exit status 125 (run) or 255 (batch), or an invalid job line.

Logging: RUST_LOG=debug (or info, warn; default warn) shows procman's own messages.";

/// Help layout: the usage line first (tests and users read `procman run [OPTIONS]` there).
const TEMPLATE: &str = "{usage}\n\n{about-with-newline}\n{all-args}{after-help}\n";

/// `procman`: run programs as managed jobs.
#[derive(Parser, Debug)]
#[command(
    name = "procman",
    version,
    about = "procman: run programs as managed jobs",
    after_help = FOOTER,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Run one program as a managed job; exit with its exit code.
    Run(RunArgs),
    /// Run a batch of jobs: one per line of a job file, or a command per argument (GNU parallel).
    Batch(BatchArgs),
    /// Summarise a joblog, or follow a running batch's live state (--follow).
    Status(StatusArgs),
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    #[command(help_template = TEMPLATE)]
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// The shells `procman completions` writes for.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

impl Shell {
    pub fn clap(self) -> clap_complete::Shell {
        match self {
            Shell::Bash => clap_complete::Shell::Bash,
            Shell::Zsh => clap_complete::Shell::Zsh,
            Shell::Fish => clap_complete::Shell::Fish,
        }
    }
}

/// `procman run`'s command line.
#[derive(Args, Debug, Default)]
#[command(
    override_usage = "procman run [OPTIONS] [--] PROGRAM [ARGS...]",
    help_template = TEMPLATE,
    args_override_self = true,
    after_help = "Exits with the job's exit code: 124 on timeout, 128+N when ended by signal N, \
                  125 for procman's own errors, 126/127 when the program cannot be run/found."
)]
pub struct RunArgs {
    /// Slurm: --slurm and the cluster options.
    #[command(flatten)]
    pub slurm: crate::slurm::SlurmArgs,
    /// The job's stdout to FILE (default: procman's stdout, byte for byte; when its reader goes
    /// away the job gets SIGPIPE, as under `timeout`)
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub log: Option<OsString>,
    /// The job's stderr to FILE (default: procman's stderr, likewise); naming the --log file
    /// merges the two
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub err: Option<OsString>,
    /// The job's stdin from FILE (default: /dev/null; /dev/stdin to pass ours); one that is the
    /// --log or --err file is refused (it would be truncated)
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub input: Option<OsString>,
    /// End the job's process group after DUR (5, 2.5s, 100ms, 3m, 1h; 0 means no timeout)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Time between SIGTERM and SIGKILL (default 2s)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub grace: Option<String>,
    /// How the job's processes are kept together: auto (a cgroup per job where the host
    /// allows, else the process group), cgroup, group or subreaper
    #[arg(long, value_name = "MODE", allow_hyphen_values = true)]
    pub contain: Option<String>,
    /// Limit the memory of the job's whole process tree (512M, 2G; needs a cgroup with the
    /// memory controller)
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_limit: Option<String>,
    /// The job's working directory
    #[arg(long, value_name = "DIR", allow_hyphen_values = true)]
    pub cwd: Option<OsString>,
    /// Set an environment variable (repeatable)
    #[arg(long, value_name = "K=V", action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub env: Vec<OsString>,
    /// On a terminal, show the live dashboard (elapsed time, usage) instead of only the
    /// one-line account at the end
    #[arg(long)]
    pub watch: bool,
    /// How often the running job's CPU and memory are sampled, for --watch and --report
    /// (default 500ms when either is used, else never; 0: never)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub sample_interval: Option<String>,
    /// Read the job's progress from its output lines: PATTERN is text with {n} and {m} (steps
    /// done, in all) or {p} (a percentage), e.g. 'cycle {n} of {m}', '{n}/{m}', '{p}%', or
    /// auto (those three)
    #[arg(long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub progress_pattern: Option<String>,
    /// Write a self-contained HTML report of the job (timeline, usage over time) to FILE
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub report: Option<OsString>,
    /// No one-line account on stderr
    #[arg(short, long)]
    pub quiet: bool,
    /// The program and its arguments (everything after the program is its own, --help too)
    #[arg(trailing_var_arg = true, value_name = "PROGRAM")]
    pub command: Vec<OsString>,
}

/// `procman batch`'s command line (after [`batch_prepass`]).
#[derive(Args, Debug, Default)]
#[command(
    override_usage = "procman batch [OPTIONS] [FILE|-]\n       \
                      procman batch [OPTIONS] [--] COMMAND [ARGS...] [::: ARGS... | :::: FILES...]...",
    help_template = TEMPLATE,
    args_override_self = true,
    after_help = include_str!("batch_about.txt")
)]
pub struct BatchArgs {
    /// Slurm: --slurm and the cluster options.
    #[command(flatten)]
    pub slurm: crate::slurm::SlurmArgs,
    /// Run at most N jobs at once (default: number of CPUs; on Slurm, 1000 jobs queued or
    /// running at once, or the CPUs of the allocation for --steps)
    #[arg(short, long, value_name = "N", allow_hyphen_values = true)]
    pub jobs: Option<String>,
    /// Default timeout per job (0: none)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Time between SIGTERM and SIGKILL (default 2s)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub grace: Option<String>,
    /// How each job's processes are kept together: auto (a cgroup per job where the host
    /// allows, else the process group), cgroup, group or subreaper
    #[arg(long, value_name = "MODE", allow_hyphen_values = true)]
    pub contain: Option<String>,
    /// Limit the memory of each job's whole process tree (512M, 2G; needs a cgroup with the
    /// memory controller)
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_limit: Option<String>,
    /// Default number of retries of a failed job (default 0)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub retries: Option<String>,
    /// Job N's output to DIR/N.log and DIR/N_err.txt (default: procman-logs)
    #[arg(
        long,
        value_name = "DIR",
        overrides_with = "no_logs",
        allow_hyphen_values = true
    )]
    pub log_dir: Option<OsString>,
    /// Discard the jobs' output (unless a JSON job names its own log)
    #[arg(long, overrides_with = "log_dir")]
    pub no_logs: bool,
    /// Also print each job's output (stdout, stderr) whole when it ends
    #[arg(long, overrides_with = "line_buffer")]
    pub group: bool,
    /// Also print the jobs' output line by line as it comes (never mid-line)
    #[arg(long, alias = "lb", overrides_with = "group")]
    pub line_buffer: bool,
    /// With --group/--line-buffer: start each line with the job's arguments (its name or
    /// command for a job file) and a TAB
    #[arg(long)]
    pub tag: bool,
    /// Arguments from stdin and :::: files end with NUL, not newline
    #[arg(short = '0', long)]
    pub null: bool,
    /// Record each finished job in GNU parallel's joblog format; while the batch runs, its live
    /// state is in FILE.live.json (see `procman status --follow`)
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub joblog: Option<OsString>,
    /// Skip the jobs FILE records, whatever their outcome (needs --joblog)
    #[arg(long, overrides_with = "resume_failed")]
    pub resume: bool,
    /// Skip the jobs FILE records as succeeded; run the others again
    #[arg(long, overrides_with = "resume")]
    pub resume_failed: bool,
    /// Stop early, as GNU parallel: RULE is WHEN,WHY=N or WHEN,WHY=P% with WHEN soon (start
    /// no new job) or now (also kill running ones), WHY fail, success or done (N jobs, or P% of
    /// all jobs); also now, soon (fail=1), 1, 2, -1, -2, P%. A bare --halt is soon,fail=1.
    /// Exit status: the halting job's for fail=1 and done=1, 0 for success, the failed
    /// percentage for P%, else the number of failed jobs
    #[arg(
        long,
        alias = "halt-on-error",
        value_name = "RULE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "soon",
        allow_hyphen_values = true
    )]
    pub halt: Option<String>,
    /// Force the live display (the dashboard on a terminal, else the progress line)
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,
    /// Plain lines only: one per finished job
    #[arg(long, overrides_with = "progress")]
    pub no_progress: bool,
    /// Write a self-contained HTML report of the run (timeline, usage, failures) to FILE
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub report: Option<OsString>,
    /// Test only: the report also records JavaScript errors in the page (for headless checks)
    #[arg(long, hide = true)]
    pub report_error_hook: bool,
    /// How often running jobs' CPU and memory are sampled, for the dashboard, FILE.live.json
    /// and --report (default 500ms when one of them is used, else never; 0: never)
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    pub sample_interval: Option<String>,
    /// Read each job's progress from its output lines: PATTERN is text with {n} and {m} (steps
    /// done, in all) or {p} (a percentage), e.g. 'cycle {n} of {m}', '{n}/{m}', '{p}%', or
    /// auto (those three)
    #[arg(long, value_name = "PATTERN", allow_hyphen_values = true)]
    pub progress_pattern: Option<String>,
    /// No progress, no line per finished job, no summary unless a job failed
    #[arg(short, long)]
    pub quiet: bool,
    /// The job file (or - for stdin), or the command template and its argument sources
    #[arg(trailing_var_arg = true, value_name = "FILE|COMMAND")]
    pub words: Vec<OsString>,
}

/// `procman status`'s command line.
#[derive(Args, Debug, Default)]
#[command(
    override_usage = "procman status --joblog FILE [--log-dir DIR] [--top N] [--follow]",
    help_template = TEMPLATE,
    args_override_self = true,
    after_help = "Exit status: 0 when every job succeeded, 1 when some failed, 2 on error."
)]
pub struct StatusArgs {
    /// The joblog to read (required)
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub joblog: Option<OsString>,
    /// Where the batch wrote its logs (default: procman-logs)
    #[arg(long, value_name = "DIR", allow_hyphen_values = true)]
    pub log_dir: Option<OsString>,
    /// How many slowest jobs to list (default 5)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub top: Option<String>,
    /// Show the live view of the batch writing this joblog (from FILE.live.json) until it
    /// ends, then the summary; q stops following (the batch goes on)
    #[arg(short, long)]
    pub follow: bool,
    /// The joblog, as a word instead of --joblog
    #[arg(value_name = "FILE")]
    pub file: Vec<OsString>,
}

/// What the pre-pass made of `batch`'s words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// Words are job files (at most one is valid).
    #[default]
    Files,
    /// Words are a command template and its sources.
    Command,
}

/// Whether words after the first mean a command template rather than a job file and options.
fn is_command(rest: &[OsString]) -> bool {
    rest.iter().any(|w| w == ":::" || w == "::::")
        || rest
            .first()
            .is_some_and(|w| !w.as_encoded_bytes().starts_with(b"-"))
}

/// `batch`'s long options that take a value (written after a space unless after `=`).
const BATCH_VALUED: [&str; 9] = [
    "jobs",
    "timeout",
    "grace",
    "retries",
    "log-dir",
    "joblog",
    "report",
    "contain",
    "memory-limit",
];

/// More of `batch`'s valued options (kept apart from [`BATCH_VALUED`] so that options added
/// at the same time by different changes do not touch the same line).
const BATCH_VALUED_WATCH: [&str; 2] = ["sample-interval", "progress-pattern"];

/// Rewrites `batch`'s arguments (after the verb) into options, `--`, then the job file(s) or
/// the command template, and says which: clap then reads the options and takes the words
/// after `--` as they are. Options may follow a job file; a word followed by `:::`/`::::` or
/// by a word not starting with `-` starts a command template (everything from it on is the
/// command's); `--halt VALUE` becomes `--halt=VALUE` when VALUE reads as a rule.
pub fn batch_prepass(argv: Vec<OsString>) -> (Vec<OsString>, Shape) {
    let mut opts: Vec<OsString> = Vec::new();
    let mut words: Vec<OsString> = Vec::new();
    let mut shape = Shape::Files;
    let mut i = 0;
    while i < argv.len() {
        let w = &argv[i];
        let rest = &argv[i + 1..];
        match w.to_str() {
            Some("--") => {
                if rest.len() > 1 || is_command(rest) {
                    shape = Shape::Command;
                }
                words.extend_from_slice(rest);
                break;
            }
            Some(s) if s.starts_with("--") => {
                let name = &s[2..];
                let halt = name == "halt" || name == "halt-on-error";
                match rest.first().and_then(|v| v.to_str()) {
                    Some(v) if halt && crate::halt::looks_like_value(v) => {
                        opts.push(format!("{s}={v}").into());
                        i += 1;
                    }
                    _ if BATCH_VALUED.contains(&name)
                        || BATCH_VALUED_WATCH.contains(&name)
                        || crate::slurm::VALUED.contains(&name) =>
                    {
                        opts.push(w.clone());
                        opts.extend(rest.first().cloned());
                        i += 1;
                    }
                    _ => opts.push(w.clone()),
                }
            }
            Some(s) if s.len() > 1 && s.starts_with('-') => {
                opts.push(w.clone());
                if s == "-j" {
                    opts.extend(rest.first().cloned());
                    i += 1;
                }
            }
            _ if is_command(rest) => {
                shape = Shape::Command;
                words.extend_from_slice(&argv[i..]);
                break;
            }
            _ => words.push(w.clone()),
        }
        i += 1;
    }
    opts.push("--".into());
    opts.extend(words);
    (opts, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(v: &[&str]) -> (Vec<String>, Shape) {
        let (out, shape) = batch_prepass(v.iter().map(OsString::from).collect());
        (
            out.into_iter().map(|w| w.into_string().unwrap()).collect(),
            shape,
        )
    }

    #[test]
    fn options_may_follow_a_job_file() {
        assert_eq!(
            pre(&["jobs.txt", "--joblog", "x", "-j", "2"]),
            (
                vec!["--joblog", "x", "-j", "2", "--", "jobs.txt"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
                Shape::Files
            )
        );
    }

    #[test]
    fn a_template_keeps_its_words_and_halt_takes_a_rule_after_a_space() {
        let (out, shape) = pre(&["--halt", "now,fail=1", "-0", "echo", "-n", "{}", ":::", "a"]);
        assert_eq!(shape, Shape::Command);
        assert_eq!(
            out,
            [
                "--halt=now,fail=1",
                "-0",
                "--",
                "echo",
                "-n",
                "{}",
                ":::",
                "a"
            ]
        );
        let (out, shape) = pre(&["--halt", "jobs.txt"]);
        assert_eq!(
            (out, shape),
            (
                vec!["--halt".into(), "--".into(), "jobs.txt".into()],
                Shape::Files
            )
        );
        let (out, shape) = pre(&["--", "cmd", "-x"]);
        assert_eq!(
            (out, shape),
            (vec!["--".into(), "cmd".into(), "-x".into()], Shape::Command)
        );
        // As the hand-written reader did: one word after `--` is a command reading stdin.
        let (_, shape) = pre(&["--", "jobs.txt"]);
        assert_eq!(shape, Shape::Command);
    }

    #[test]
    fn the_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
