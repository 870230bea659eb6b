//! Job steps in an allocation ([`SlurmOptions::steps`]): each attempt runs as
//! `srun --jobid=ALLOC --exact -n1 -c CPUS -v -- PROG ARGS` (or, where `srun` cannot carry what
//! the job asks for, `... /bin/sh -c SCRIPT`: `launch.rs`), a child process of procman that
//! the poller follows (no thread per job). Slurm launches a step in tens of milliseconds, where
//! a batch job waits for a scheduling pass: on the one-node Slurm here 1,000 short jobs take
//! about 19 s as steps and about 475 s as batch jobs (docs/slurm.md).
//!
//! - The allocation: the one given ([`SlurmOptions::steps_in`]), else the one procman runs in
//!   (`SLURM_JOB_ID`), else one procman requests (`sbatch -n CPUS --wrap 'exec sleep
//!   infinity'`) when the first job needs it, waits for, and cancels at shutdown.
//! - The step's files are `srun`'s `--output`/`--error`/`--input`, opened and checked as for a
//!   batch job (`submit.rs`); `srun`'s own messages go to a file of their own, read when it
//!   exits: "task 0: Exited with exit code N" or "task 0: Segmentation fault" give the exit,
//!   "launching StepId=ALLOC.N" the step's id (for TERM and `sacct`: `usage.rs`).
//! - TERM: `scancel --signal=TERM` of the step (its id, else found by its unique name); KILL: SIGKILL to
//!   `srun`'s process group (Slurm then ends the step within seconds).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::follow::one_line;
use super::launch;
use super::SlurmOptions;
use crate::backend::terminate::Signals;
use crate::job::JobCore;
use crate::sys::{self, Exit};

/// The allocation steps run in.
pub(super) struct Allocation {
    pub(super) id: u32,
    /// Requested by procman: cancelled at shutdown.
    pub(super) owned: bool,
    /// Seen running (steps can be created).
    pub(super) running: bool,
}

/// How long to wait between looks at a requested allocation that is not running yet.
const ALLOC_POLL: Duration = Duration::from_millis(200);

/// Finds or requests the allocation, and waits until it runs. Blocks the calling worker (the
/// other workers wait on the caller's lock); gives up when `core`'s kill request is set
/// (`Ok(None)`).
///
/// # Errors
/// Slurm's message when the allocation cannot be requested or ended before it ran.
pub(super) fn allocation(
    slot: &mut Option<Allocation>,
    opts: &SlurmOptions,
    core: &JobCore,
) -> Result<Option<u32>, String> {
    if slot.is_none() {
        let given = opts
            .steps_in
            .or_else(|| std::env::var("SLURM_JOB_ID").ok()?.trim().parse().ok());
        *slot = Some(match given {
            Some(id) => Allocation {
                id,
                owned: false,
                running: true,
            },
            None if opts.steps_cpus == 0 => {
                return Err(
                    "job steps in the allocation procman runs in were asked for \
                            (steps=yes), but SLURM_JOB_ID is not set"
                        .into(),
                )
            }
            None => Allocation {
                id: request(opts)?,
                owned: true,
                running: false,
            },
        });
    }
    let Some(a) = slot.as_mut() else {
        return Ok(None);
    };
    while !a.running {
        if core
            .kill_requested
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(None);
        }
        let out = Command::new(&opts.squeue)
            .args(["-h", "-t", "all", "-o", "%T", "-j", &a.id.to_string()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", opts.squeue.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.trim() {
            "RUNNING" => a.running = true,
            "PENDING" | "CONFIGURING" | "" => std::thread::sleep(ALLOC_POLL),
            other => {
                let id = a.id;
                *slot = None;
                return Err(format!(
                    "the Slurm allocation {id} that procman requested for its job steps is {other}"
                ));
            }
        }
    }
    Ok(Some(a.id))
}

/// `sbatch` of the allocation: `-n CPUS` tasks of one CPU, holding the CPUs until cancelled.
fn request(opts: &SlurmOptions) -> Result<u32, String> {
    let mut cmd = Command::new(&opts.sbatch);
    cmd.args(["--parsable", "--no-requeue", "--job-name=procman-steps"])
        .arg(format!("--ntasks={}", opts.steps_cpus.max(1)))
        .args(["--output=/dev/null", "--error=/dev/null"]);
    if let Some(p) = &opts.partition {
        cmd.arg(format!("--partition={}", p.to_string_lossy()));
    }
    if let Some(a) = &opts.account {
        cmd.arg(format!("--account={}", a.to_string_lossy()));
    }
    cmd.args(&opts.extra)
        .args(["--wrap", "exec sleep infinity"])
        .stdin(Stdio::null());
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {}: {e}", opts.sbatch.display()))?;
    if !out.status.success() {
        return Err(format!(
            "sbatch refused procman's allocation for job steps: {}",
            one_line(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .lines()
        .next()
        .and_then(|l| l.split(';').next())
        .and_then(|id| id.trim().parse::<u32>().ok())
        .ok_or_else(|| format!("sbatch printed no job id: {:?}", text.trim()))?;
    log::info!("job steps run in the Slurm allocation {id} that procman requested");
    Ok(id)
}

/// A running step: its `srun`, and where `srun`'s own messages go.
pub(super) struct Step {
    pub(super) child: Child,
    pub(super) alloc: u32,
    pub(super) name: String,
    pub(super) messages: PathBuf,
    /// What `srun` runs: the program (`launch.rs`), or `/bin/sh` and the script.
    direct: bool,
    /// The program (or interpreter) `srun` runs, for messages.
    program: OsString,
    /// Where the task's standard error goes, which holds `slurmstepd`'s line when the program
    /// cannot be started.
    stderr: Stderr,
}

/// Where a step's task writes its standard error.
enum Stderr {
    /// Into a file of procman's in the job's directory (the job does not keep its standard
    /// error; the directory is one the node sees), removed when the step ends.
    Own(PathBuf),
    File(PathBuf),
    /// Nowhere procman can read.
    Lost,
}

/// How a step ended, from `srun`'s exit and its messages.
pub(super) struct StepEnd {
    pub(super) exit: Option<Exit>,
    /// `srun` failed on its own: its messages.
    pub(super) error: Option<String>,
    /// The program could not be started on the node: why, for `SpawnFailed`.
    pub(super) cannot_start: Option<String>,
    /// The step's id (`ALLOC.N`), from `srun -v`'s "launching StepId=" line.
    pub(super) step_id: Option<String>,
}

impl Step {
    /// Starts `srun` with `args` (the step's options, from `submit.rs`) and runs the program
    /// directly where it can (`launch.rs`), else the job's script with `/bin/sh -c`.
    pub(super) fn spawn(
        opts: &SlurmOptions,
        alloc: u32,
        core: &JobCore,
        attempt: u32,
        args: &[OsString],
        script: Vec<u8>,
    ) -> Result<Step, String> {
        use std::os::unix::process::CommandExt;
        let name = format!("procman.{}.{}.{attempt}", std::process::id(), core.id);
        let messages = std::env::temp_dir().join(format!(".{name}.srun"));
        let file = std::fs::File::create(&messages)
            .map_err(|e| format!("cannot create {}: {e}", messages.display()))?;
        let cwd = args
            .iter()
            .find_map(|a| a.as_bytes().strip_prefix(b"--chdir="))
            .map(|p| PathBuf::from(OsStr::from_bytes(p)))
            .unwrap_or_default();
        let mut cmd = Command::new(&opts.srun);
        cmd.arg(format!("--jobid={alloc}"))
            .args([
                "--exact",
                "--ntasks=1",
                "--nodes=1",
                "--kill-on-bad-exit=1",
                "-v",
            ])
            .arg(format!("--job-name={name}"));
        let (direct, program, stderr) = match launch::direct(core, &cwd) {
            Some(d) => {
                let own = cwd.join(format!(
                    ".procman-{}-{}-{attempt}.stderr",
                    std::process::id(),
                    core.id
                ));
                let stderr = direct_files(&mut cmd, args, own);
                cmd.envs(d.set.iter().map(|(k, v)| (k, v)));
                for k in &d.remove {
                    cmd.env_remove(k);
                }
                cmd.arg("--").args(&d.argv);
                (true, d.argv[0].clone(), stderr)
            }
            None => {
                cmd.args(args)
                    .args(["/bin/sh", "-c"])
                    .arg(OsString::from_vec(script));
                (false, OsString::new(), Stderr::Lost)
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_file(&messages);
                format!("cannot run {}: {e}", opts.srun.display())
            })?;
        Ok(Step {
            child,
            alloc,
            name,
            messages,
            direct,
            program,
            stderr,
        })
    }

    /// How the step ended, once `srun` exited with `status`: the task's exit from `srun`'s
    /// messages, else `srun`'s own status; `srun`'s messages when it failed otherwise; why
    /// the program could not be started, when `slurmstepd` said so. Removes its files
    /// ([`Step::cleanup`]).
    pub(super) fn ended(&self, status: std::process::ExitStatus) -> StepEnd {
        let text = read_bounded(&self.messages);
        let step_id = step_id_in(&text);
        let (exit, error) = exit_in(&text, status);
        let code = exit.and_then(|e| e.code).filter(|&c| c != 0 && self.direct);
        let cannot_start = code
            .and_then(|c| match &self.stderr {
                Stderr::Own(p) | Stderr::File(p) => {
                    launch::cannot_start(&read_head(p), &self.program, c)
                }
                Stderr::Lost => None,
            })
            .map(|(node, why)| {
                let why = if why == "No such file or directory" {
                    "not found".to_owned()
                } else {
                    why.to_lowercase()
                };
                format!(
                    "cannot run {} on node {}: {why} (job step {})",
                    std::path::Path::new(&self.program).display(),
                    node.as_deref().unwrap_or("?"),
                    self.name
                )
            });
        self.cleanup();
        StepEnd {
            exit,
            error,
            cannot_start,
            step_id,
        }
    }

    /// Removes the step's files of procman's (`srun`'s messages, the standard error the job
    /// does not keep).
    pub(super) fn cleanup(&self) {
        let _ = std::fs::remove_file(&self.messages);
        if let Stderr::Own(p) = &self.stderr {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The direct way's file options: `args` as given, but a standard error that would go to
/// `/dev/null` goes to `own` (in the job's directory, which the node sees) instead, where
/// `slurmstepd`'s line on a program it cannot start can be read. Where the task's standard
/// error goes.
fn direct_files(cmd: &mut Command, args: &[OsString], own: PathBuf) -> Stderr {
    let mut stderr = None;
    let mut output = None;
    for a in args {
        let b = a.as_bytes();
        if let Some(p) = b.strip_prefix(b"--error=") {
            if p == b"/dev/null" {
                let o = own.as_os_str().as_bytes();
                if !o.contains(&b'\\') {
                    let mut arg = b"--error=".to_vec();
                    for &c in o {
                        if c == b'%' {
                            arg.push(b'%');
                        }
                        arg.push(c);
                    }
                    cmd.arg(OsString::from_vec(arg));
                    stderr = Some(Stderr::Own(own.clone()));
                    continue;
                }
                stderr = Some(Stderr::Lost);
            } else {
                stderr = Some(Stderr::File(launch::unescape_path(OsStr::from_bytes(p))));
            }
        } else if let Some(p) = b.strip_prefix(b"--output=") {
            output = Some(launch::unescape_path(OsStr::from_bytes(p)));
        }
        cmd.arg(a);
    }
    // No --error: merged into the log.
    stderr.unwrap_or_else(|| output.map_or(Stderr::Lost, Stderr::File))
}

/// The file's first 16 KiB and, when longer, its last 32 KiB (`srun`'s last words).
fn read_bounded(p: &std::path::Path) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    const HEAD: u64 = 16 << 10;
    const TAIL: u64 = 32 << 10;
    let Ok(mut f) = std::fs::File::open(p) else {
        return Vec::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let mut out = Vec::new();
    if len <= HEAD + TAIL {
        let _ = f.read_to_end(&mut out);
        return out;
    }
    let _ = (&mut f).take(HEAD).read_to_end(&mut out);
    out.push(b'\n');
    if f.seek(SeekFrom::Start(len - TAIL)).is_ok() {
        let _ = f.take(TAIL).read_to_end(&mut out);
    }
    out
}

/// The file's first 4 KiB (where slurmstepd's line is when the program never ran).
fn read_head(p: &std::path::Path) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    if let Ok(f) = std::fs::File::open(p) {
        let _ = f.take(4096).read_to_end(&mut out);
    }
    out
}

/// The step's id from `srun -v`'s "launching StepId=ALLOC.N on host ..." line.
pub(super) fn step_id_in(text: &[u8]) -> Option<String> {
    String::from_utf8_lossy(text).lines().find_map(|l| {
        let id = l
            .split_once("launching StepId=")?
            .1
            .split_whitespace()
            .next()?;
        let (a, n) = id.split_once('.')?;
        (a.parse::<u32>().is_ok() && n.parse::<u32>().is_ok()).then(|| id.to_owned())
    })
}

/// The task's exit from `srun`'s messages ("task 0: Exited with exit code N", "task 0:
/// Segmentation fault"), else `srun`'s own status, with `srun`'s messages when it failed.
fn exit_in(text: &[u8], status: std::process::ExitStatus) -> (Option<Exit>, Option<String>) {
    let text = String::from_utf8_lossy(text);
    let own = Exit::from_std(status);
    for line in text.lines().rev() {
        let Some((_, what)) = line.split_once("task 0: ") else {
            continue;
        };
        if let Some(code) = what.strip_prefix("Exited with exit code ") {
            if let Ok(code) = code.trim().parse() {
                return (
                    Some(Exit {
                        code: Some(code),
                        signal: None,
                    }),
                    None,
                );
            }
        }
        if let Some(sig) = signal_named(what.trim()) {
            return (
                Some(Exit {
                    code: None,
                    signal: Some(sig),
                }),
                None,
            );
        }
    }
    match own {
        Exit { code: Some(0), .. } => (Some(own), None),
        // Ended by procman's SIGKILL, or srun failed on its own.
        Exit {
            signal: Some(_), ..
        } => (Some(own), None),
        _ => {
            let mut said: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("error:") || l.contains("fatal:"))
                .collect();
            if said.is_empty() {
                // No error line: srun's last words.
                said.extend(text.lines().last());
            }
            (
                Some(own),
                Some(format!(
                    "srun failed: {}",
                    one_line(said.join("\n").as_bytes())
                )),
            )
        }
    }
}

/// The signal of `srun`'s "task 0: <description>" line (`strsignal`'s words).
fn signal_named(what: &str) -> Option<i32> {
    Some(match what {
        "Hangup" => libc::SIGHUP,
        "Interrupt" => libc::SIGINT,
        "Quit" => libc::SIGQUIT,
        "Illegal instruction" => libc::SIGILL,
        "Trace/breakpoint trap" => libc::SIGTRAP,
        "Aborted" => libc::SIGABRT,
        "Bus error" => libc::SIGBUS,
        "Floating point exception" => libc::SIGFPE,
        "Killed" => libc::SIGKILL,
        "User defined signal 1" => libc::SIGUSR1,
        "Segmentation fault" => libc::SIGSEGV,
        "User defined signal 2" => libc::SIGUSR2,
        "Broken pipe" => libc::SIGPIPE,
        "Alarm clock" => libc::SIGALRM,
        "Terminated" => libc::SIGTERM,
        _ => return None,
    })
}

/// TERM and KILL for a step: `scancel --signal=TERM` of the step, SIGKILL to `srun`'s group.
pub(super) struct StepSignals<'a> {
    pub(super) opts: &'a SlurmOptions,
    pub(super) step: &'a Step,
}

impl StepSignals<'_> {
    /// The step's id (`ALLOC.N`): from `srun -v`'s messages, else found by its name with
    /// `squeue`; `None` while it is not created.
    fn step_id(&self) -> Option<String> {
        if let Some(id) = step_id_in(&read_head(&self.step.messages)) {
            return Some(id);
        }
        let out = Command::new(&self.opts.squeue)
            .args(["-h", "-s", "-o", "%i|%j"])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let prefix = format!("{}.", self.step.alloc);
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let (id, name) = l.split_once('|')?;
            (id.starts_with(&prefix) && name.trim() == self.step.name).then(|| id.to_owned())
        })
    }
}

impl Signals for StepSignals<'_> {
    fn term(&mut self) {
        match self.step_id() {
            Some(id) => {
                let out = Command::new(&self.opts.scancel)
                    .args(["--signal=TERM", "--full", &id])
                    .stdin(Stdio::null())
                    .output();
                match out {
                    Ok(o) if !o.status.success() => {
                        log::warn!("scancel of step {id} failed: {}", one_line(&o.stderr));
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("cannot run {}: {e}", self.opts.scancel.display()),
                }
            }
            // Not created yet (waiting for CPUs): nothing runs to end gracefully.
            None => self.kill(),
        }
    }

    fn kill(&mut self) {
        if let Err(e) = sys::signal_group(self.step.child.id(), libc::SIGKILL) {
            log::warn!("cannot signal srun {}: {e}", self.step.child.id());
        }
    }

    fn what(&self) -> String {
        format!("the job step {} (srun)", self.step.name)
    }
}

/// When a step whose `srun` is gone is known to have ended.
pub(super) fn reaped(step: &mut Step) -> Option<(std::process::ExitStatus, Instant)> {
    match step.child.try_wait() {
        Ok(Some(status)) => Some((status, Instant::now())),
        Ok(None) => None,
        Err(e) => {
            log::warn!("cannot wait for srun {}: {e}", step.child.id());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srun_messages_give_the_exit() {
        assert_eq!(signal_named("Segmentation fault"), Some(libc::SIGSEGV));
        assert_eq!(signal_named("Killed"), Some(libc::SIGKILL));
        assert_eq!(signal_named("Exited with exit code 3"), None);
        use std::os::unix::process::ExitStatusExt;
        let v = b"srun: jobid 4358: nodes(1):`vm', cpu counts: 2(x1)\n\
                  srun: launching StepId=4358.13 on host vm, 1 tasks: 0\n\
                  srun: launch/slurm: _task_finish: Received task exit notification for 1 task \
                  of StepId=4358.13 (status=0x0300).\n\
                  srun: error: vm: task 0: Exited with exit code 3\n";
        assert_eq!(step_id_in(v).as_deref(), Some("4358.13"));
        let (exit, error) = exit_in(v, std::process::ExitStatus::from_raw(3 << 8));
        assert_eq!((exit.and_then(|e| e.code), error), (Some(3), None));
        let (exit, error) = exit_in(
            b"srun: verbose\nsrun: error: Unable to create step: Invalid job id\n",
            std::process::ExitStatus::from_raw(1 << 8),
        );
        assert_eq!(exit.and_then(|e| e.code), Some(1));
        assert_eq!(
            error.as_deref(),
            Some("srun failed: srun: error: Unable to create step: Invalid job id")
        );
        assert_eq!(step_id_in(b"srun: launching StepId=x.1 on host"), None);
    }
}
