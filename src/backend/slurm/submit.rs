//! Submitting an attempt: `sbatch`'s options (the job's files, checked and opened as for a local
//! job, its input, resources and time limit) and the call to `sbatch`.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::follow::one_line;
use super::script::batch_script_marking;
use super::SlurmOptions;
use crate::job::JobCore;
use crate::output::{create_output_unless, FileId, Output};
use crate::record::JobId;
use crate::spec::{Input, Stream};

/// One attempt's `sbatch` command line and batch script.
pub(super) struct Submission {
    args: Vec<OsString>,
    script: Vec<u8>,
    /// Input bytes written for `--input`; removed when the attempt ends.
    pub(super) stdin_file: Option<PathBuf>,
    /// Where the batch script notes a program missing on the node (in the job's directory).
    pub(super) missing: MissingNote,
    /// The files Slurm writes the job's output into (absolute paths), for its observers
    /// (`tail.rs`): the log as stdout, the error file unless merged into the log as stderr.
    pub(super) followed: Vec<(PathBuf, Stream)>,
    /// Submitted with `--hold`: the scheduler staged the job beyond the job limit
    /// (`JobCore::held`); the poller releases it when its slot comes.
    pub(super) held: bool,
}

impl Submission {
    /// Prepares the attempt's submission: checks the working directory, opens (creates or
    /// truncates) the output files as a local job would, writes input bytes to a file next to
    /// the log, and builds the `sbatch` options. Fails with the message for the record.
    /// `step`: options for `srun` (a job step, `steps.rs`) instead of `sbatch`: no partition,
    /// account or extra `sbatch` arguments, at least one CPU.
    pub(super) fn prepare(
        core: &JobCore,
        attempt: u32,
        opts: &SlurmOptions,
        step: bool,
    ) -> Result<Submission, String> {
        let here = std::env::current_dir()
            .map_err(|e| format!("cannot find procman's current directory: {e}"))?;
        let mut a = Args {
            args: if step {
                Vec::new()
            } else {
                vec!["--parsable".into(), "--no-requeue".into()]
            },
            here,
            followed: Vec::new(),
        };
        let cwd = core
            .cwd
            .as_deref()
            .map_or_else(|| a.here.clone(), |p| a.abs(p));
        if !cwd.is_dir() {
            return Err(format!(
                "working directory {} is not usable (not a directory)",
                cwd.display()
            ));
        }
        if !step {
            a.opt("job-name", OsStr::new(&job_name(core)));
        }
        a.opt("chdir", cwd.as_os_str());
        let log = a.outputs(core)?;
        let stdin_file = a.input(core, attempt, log.as_deref(), &cwd)?;
        a.resources(core, opts, step);
        let followed = std::mem::take(&mut a.followed);
        let mut args = a.args;
        let held = !step && core.held.load(std::sync::atomic::Ordering::SeqCst);
        if held {
            args.push("--hold".into());
        }
        if !step {
            args.extend(opts.extra.iter().cloned());
        }
        let missing = MissingNote {
            dir: cwd.into(),
            job: core.id,
            attempt,
        };
        Ok(Submission {
            args,
            script: batch_script_marking(core, Some(&missing.path())),
            stdin_file,
            missing,
            followed,
            held,
        })
    }

    /// The options for `sbatch` or `srun`.
    pub(super) fn args(&self) -> &[OsString] {
        &self.args
    }

    /// The batch script.
    pub(super) fn script(&self) -> &[u8] {
        &self.script
    }

    /// Runs `sbatch`; the Slurm job id, or Slurm's message.
    pub(super) fn submit(&self, opts: &SlurmOptions) -> Result<u32, String> {
        sbatch(opts, &self.args, &self.script)
    }

    pub(super) fn cleanup(&self) {
        if let Some(p) = &self.stdin_file {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Where an attempt's batch script notes a program missing on the node:
/// `.procman-PID-ID-ATTEMPT.missing` in the job's directory. Its path is made when needed, and
/// the directory is shared by the tasks of an array that run in the same one
/// ([`MissingNote::sharing`]): a job in flight holds no path of its own.
#[derive(Clone)]
pub(super) struct MissingNote {
    dir: Arc<Path>,
    job: JobId,
    attempt: u32,
}

impl MissingNote {
    /// The note's path.
    pub(super) fn path(&self) -> PathBuf {
        self.dir.join(format!(
            ".procman-{}-{}-{}.missing",
            std::process::id(),
            self.job,
            self.attempt
        ))
    }

    /// Removes the note, if the script wrote one.
    pub(super) fn remove(&self) {
        let _ = std::fs::remove_file(self.path());
    }

    /// This note with `shared`'s directory when it is the same (else it becomes `shared`).
    pub(super) fn sharing(&self, shared: &mut Option<Arc<Path>>) -> MissingNote {
        match shared {
            Some(dir) if *dir == self.dir => MissingNote {
                dir: dir.clone(),
                ..self.clone()
            },
            _ => {
                *shared = Some(self.dir.clone());
                self.clone()
            }
        }
    }
}

/// Runs `sbatch` with these options and this batch script (on its standard input); the Slurm
/// job id, or Slurm's message. Blocks until `sbatch` answers.
pub(super) fn sbatch(opts: &SlurmOptions, args: &[OsString], script: &[u8]) -> Result<u32, String> {
    let mut child = Command::new(&opts.sbatch)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", opts.sbatch.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A refusal may come before sbatch reads the script (a broken pipe): its message
        // below says why.
        let _ = stdin.write_all(script);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cannot wait for {}: {e}", opts.sbatch.display()))?;
    if !out.status.success() {
        let msg = one_line(&out.stderr);
        return Err(if msg.is_empty() {
            format!("sbatch refused the job ({})", out.status)
        } else {
            format!("sbatch refused the job: {msg}")
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // --parsable prints "jobid" or "jobid;cluster".
    text.lines()
        .next()
        .and_then(|l| l.split(';').next())
        .and_then(|id| id.trim().parse::<u32>().ok())
        .ok_or_else(|| format!("sbatch printed no job id: {:?}", text.trim()))
}

/// `refmac5.1003`: the program's file name and procman's job id, printable bytes only.
fn job_name(core: &JobCore) -> String {
    let base = Path::new(&core.program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
        .take(40)
        .collect();
    if clean.is_empty() {
        format!("procman.{}", core.id)
    } else {
        format!("{clean}.{}", core.id)
    }
}

/// Bytes in whole MiB, rounded up (`--mem` takes MiB).
fn mebibytes(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Slurm's `--time` backstop in whole minutes, rounded up: procman's timeout plus the grace,
/// plus one poll interval (the timeout starts when procman sees the job running) and one more
/// minute, so that procman's own, precise timeout always comes first. `None` when that is more
/// than Slurm's largest finite limit ([`SLURM_MAX_MINUTES`]): the job gets no `--time`.
fn time_limit_minutes(timeout: Duration, grace: Duration, poll_max: Duration) -> Option<u64> {
    let total = timeout
        .saturating_add(grace)
        .saturating_add(poll_max)
        .saturating_add(Duration::from_secs(60));
    let secs = total
        .as_secs()
        .saturating_add(u64::from(total.subsec_nanos() > 0));
    Some(secs.div_ceil(60)).filter(|&m| m <= SLURM_MAX_MINUTES)
}

/// Slurm keeps time limits in minutes as a `u32`, with `0xffffffff` for INFINITE and
/// `0xfffffffe` for "no value": the largest finite limit is one below.
const SLURM_MAX_MINUTES: u64 = 0xffff_fffd;

/// A path for `--output`/`--error`/`--input`, where Slurm expands `%` patterns: `%` becomes
/// `%%`. Slurm deletes backslashes from these names, so a path with one cannot be given.
fn slurm_path(p: &Path) -> Result<OsString, String> {
    let bytes = p.as_os_str().as_bytes();
    if bytes.contains(&b'\\') {
        return Err(format!(
            "Slurm cannot use the file name {} (it contains a backslash)",
            p.display()
        ));
    }
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'%' {
            out.push(b'%');
        }
        out.push(b);
    }
    Ok(OsString::from_vec(out))
}

/// `sbatch`'s options as they are built, and procman's directory (relative paths are taken
/// from it, as a local job's would be).
struct Args {
    args: Vec<OsString>,
    here: PathBuf,
    /// The output files, as `Submission::followed`.
    followed: Vec<(PathBuf, Stream)>,
}

impl Args {
    fn opt(&mut self, name: &str, value: &OsStr) {
        let mut a = OsString::from(format!("--{name}="));
        a.push(value);
        self.args.push(a);
    }

    fn abs(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.here.join(p)
        }
    }

    /// `--output` and `--error`, their files opened as for a local job: compared with the
    /// input, and with each other, by device and inode before anything is truncated
    /// (`output::open_streams`). Returns the log's absolute path.
    fn outputs(&mut self, core: &JobCore) -> Result<Option<PathBuf>, String> {
        let input_id = match &core.input {
            Input::File(p) if self.abs(p).is_file() => FileId::at(&self.abs(p)),
            _ => None,
        };
        let is_input = |what: &str, p: &Path| {
            format!(
                "the {what} {} is the job's input file: refused, as writing it would destroy \
                 the input (the file is left as it was)",
                p.display()
            )
        };
        let log = core.log_file.as_deref().map(|p| self.abs(p));
        let mut log_id = None;
        match &log {
            Some(p) => match create_output_unless(p, &[input_id]) {
                Ok(Output::New(f)) => {
                    log_id = FileId::of(&f);
                    self.opt("output", &slurm_path(p)?);
                    // Only a regular file can be read back (a FIFO would block the poller).
                    if f.metadata().is_ok_and(|m| m.is_file()) {
                        self.followed.push((p.clone(), Stream::Stdout));
                    }
                }
                Ok(Output::Known(_)) => return Err(is_input("log file", p)),
                Err(e) => return Err(format!("cannot open log file {}: {e}", p.display())),
            },
            None => self.opt("output", OsStr::new("/dev/null")),
        }
        let err = core.error_file.as_deref().map(|p| self.abs(p));
        match (core.merge_error, &err) {
            // Without --error, Slurm writes stderr into --output.
            (true, _) if log.is_some() => {}
            (_, Some(p)) => match create_output_unless(p, &[input_id, log_id]) {
                Ok(Output::New(f)) => {
                    self.opt("error", &slurm_path(p)?);
                    if f.metadata().is_ok_and(|m| m.is_file()) {
                        self.followed.push((p.clone(), Stream::Stderr));
                    }
                }
                Ok(Output::Known(0)) => return Err(is_input("error file", p)),
                // The log's file under another name: into --output, as merged.
                Ok(Output::Known(_)) => {}
                Err(e) => return Err(format!("cannot open error file {}: {e}", p.display())),
            },
            (_, None) => self.opt("error", OsStr::new("/dev/null")),
        }
        Ok(log)
    }

    /// `--input`: `/dev/null`, the input file, or the input bytes written to a file in the
    /// log's directory (else `cwd`), whose path is returned (removed when the attempt ends).
    fn input(
        &mut self,
        core: &JobCore,
        attempt: u32,
        log: Option<&Path>,
        cwd: &Path,
    ) -> Result<Option<PathBuf>, String> {
        match &core.input {
            Input::Null => self.opt("input", OsStr::new("/dev/null")),
            Input::File(p) => {
                let p = self.abs(p);
                std::fs::File::open(&p)
                    .map_err(|e| format!("cannot open input file {}: {e}", p.display()))?;
                self.opt("input", &slurm_path(&p)?);
            }
            Input::Bytes(b) => {
                let dir = log.and_then(Path::parent).unwrap_or(cwd);
                let p = dir.join(format!(
                    ".procman-{}-{}-{attempt}.stdin",
                    std::process::id(),
                    core.id
                ));
                std::fs::write(&p, b)
                    .map_err(|e| format!("cannot write the input bytes to {}: {e}", p.display()))?;
                return match slurm_path(&p) {
                    Ok(a) => {
                        self.opt("input", &a);
                        Ok(Some(p))
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&p);
                        Err(e)
                    }
                };
            }
        }
        Ok(None)
    }

    /// CPUs, memory, the `--time` backstop, partition and account.
    fn resources(&mut self, core: &JobCore, opts: &SlurmOptions, step: bool) {
        if core.cpus > 0 || step {
            self.opt("cpus-per-task", OsStr::new(&core.cpus.max(1).to_string()));
        }
        if core.memory > 0 {
            self.opt("mem", OsStr::new(&format!("{}M", mebibytes(core.memory))));
        }
        // A timeout too long for Slurm's limit is no timeout: no backstop either.
        if let Some(minutes) = core
            .timeout
            .and_then(|t| time_limit_minutes(t, core.grace, opts.poll_max))
        {
            self.opt("time", OsStr::new(&minutes.to_string()));
        }
        if step {
            return;
        }
        if let Some(p) = &opts.partition {
            self.opt("partition", p);
        }
        if let Some(a) = &opts.account {
            self.opt("account", a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::slurm::test_core as core;

    #[test]
    fn an_error_file_aliasing_the_log_is_merged_and_an_aliased_input_refused() {
        let dir = std::env::temp_dir().join(format!("procman-slurm-alias-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (log, link, input) = (dir.join("a.log"), dir.join("link"), dir.join("in.txt"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&log, &link).unwrap();
        std::fs::write(&input, "keywords\n").unwrap();
        let mut c = core("true", &[], vec![]);
        c.log_file = Some(log.clone().into());
        c.error_file = Some(link.clone().into());
        let sub = Submission::prepare(&c, 1, &SlurmOptions::default(), false).unwrap();
        let args: Vec<String> = sub
            .args
            .iter()
            .map(|a| a.to_string_lossy().into())
            .collect();
        assert!(
            args.contains(&format!("--output={}", log.display())),
            "{args:?}"
        );
        // Without --error, Slurm writes stderr into --output: one file, one offset.
        assert!(!args.iter().any(|a| a.starts_with("--error=")), "{args:?}");
        c.input = Input::File(input.clone());
        c.log_file = Some(dir.join("other.log").into());
        c.error_file = Some(dir.join("in.txt").into());
        let e = Submission::prepare(&c, 1, &SlurmOptions::default(), false)
            .err()
            .unwrap();
        assert!(e.contains("is the job's input file"), "{e}");
        assert_eq!(std::fs::read_to_string(&input).unwrap(), "keywords\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn slurm_paths_and_limits() {
        assert_eq!(
            slurm_path(Path::new("/a/100%/log%j.txt")).unwrap(),
            OsString::from("/a/100%%/log%%j.txt")
        );
        assert!(slurm_path(Path::new("/a\\b")).is_err());
        assert_eq!(mebibytes(1), 1);
        assert_eq!(mebibytes(1 << 20), 1);
        assert_eq!(mebibytes((1 << 20) + 1), 2);
        let s = Duration::from_secs;
        // 1 s + 2 s grace + 2 s poll + 60 s = 65 s -> 2 minutes
        assert_eq!(time_limit_minutes(s(1), s(2), s(2)), Some(2));
        // exactly 120 s -> 2 minutes
        assert_eq!(time_limit_minutes(s(56), s(2), s(2)), Some(2));
        assert_eq!(
            time_limit_minutes(s(56), s(2), s(2) + Duration::from_millis(1)),
            Some(3)
        );
        assert_eq!(time_limit_minutes(s(3600), s(0), s(0)), Some(61));
        // Any Duration: past Slurm's largest limit (or past Duration::MAX in the sum) there is
        // no --time; just under it, the limit itself.
        let max = Duration::MAX;
        assert_eq!(time_limit_minutes(max, s(2), s(2)), None);
        assert_eq!(time_limit_minutes(s(1), max, s(2)), None);
        assert_eq!(time_limit_minutes(s(1), s(2), max), None);
        assert_eq!(time_limit_minutes(max, max, max), None);
        let last = s(SLURM_MAX_MINUTES * 60 - 60);
        assert_eq!(
            time_limit_minutes(last, s(0), s(0)),
            Some(SLURM_MAX_MINUTES)
        );
        assert_eq!(time_limit_minutes(last + s(1), s(0), s(0)), None);
    }
}
