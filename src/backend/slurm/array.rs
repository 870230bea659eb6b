//! Slurm arrays ([`SlurmOptions::array`]): the first attempts that become ready within a short
//! window are submitted together, as **one** `sbatch --array=0-(N-1)` per group of jobs that
//! ask for the same resources, instead of one `sbatch` each.
//!
//! - *gathering*: the worker that finds no gathering under way leads one: it waits until no
//!   new attempt arrived for [`QUIET`] (at most [`WINDOW`] in all, or until the array is full),
//!   while the other workers add theirs and return at once. A lone job is delayed by [`QUIET`]
//!   only. No thread waits for a job in flight: the leader returns once `sbatch` answered.
//! - *one script, a branch per task*: the array's batch script is a `case` on
//!   `$SLURM_ARRAY_TASK_ID`; each branch opens its job's own log, error and input files (the
//!   files a single batch job gets from `--output`/`--error`/`--input`), changes to its working
//!   directory and runs the job's own batch script (`script.rs`: environment edits, the
//!   missing-program check, `exec`). Nothing is written beside the jobs for the array.
//! - *groups*: jobs go into one array only when the rest of their `sbatch` options (CPUs,
//!   memory, the `--time` backstop from their timeout) are the same.
//! - *each task is a job*: the poller follows `ARRAYID_TASK` (squeue's `JobArrayID`) as it
//!   follows a job id, so each task keeps its queued state, timeout, kill (`scancel` of that
//!   task alone), `sacct` figures and its own end through its own [`Later`].
//! - A refusal by `sbatch` ends every job of that array as `SpawnFailed` with Slurm's message;
//!   a retry is submitted as a job of its own.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{SendError, Sender};
use parking_lot::{Condvar, Mutex};

use super::follow::{cancel, CancelOnDrop};
use super::poller::{Ctl, Handover};
use super::script::{batch_script_marking, shell_quote};
use super::submit::{sbatch, Submission};
use super::tail::Tail;
use super::{SlurmBackend, SlurmOptions};
use crate::backend::{spawn_failed, Attempt, Later, Report};
use crate::deadline;
use crate::job::{AttemptEnd, JobCore, Work};

/// A gathering ends when no attempt arrived for this long.
const QUIET: Duration = Duration::from_millis(50);
/// A gathering ends at the latest this long after it began.
const WINDOW: Duration = Duration::from_millis(500);
/// How many jobs beyond the manager's limit go into Slurm held, waiting for a slot
/// ([`Backend::stage_window`](crate::backend::Backend::stage_window)).
pub(super) const STAGE: usize = 10_000;
/// An array's script stays under this size (but for a single task's): Slurm refuses batch
/// scripts over its `max_script_size`, 4 MB by default.
const SCRIPT_CAP: usize = 2 << 20;

/// What the poller follows: a Slurm job, or one task of an array (`ARRAYID_TASK`, as `squeue`,
/// `scancel` and `sacct` take and print it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct SlurmId {
    /// The job id (an array's own id for its tasks).
    pub(super) job: u32,
    pub(super) task: Option<u32>,
}

impl From<u32> for SlurmId {
    fn from(job: u32) -> SlurmId {
        SlurmId { job, task: None }
    }
}

impl fmt::Display for SlurmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.task {
            Some(t) => write!(f, "{}_{t}", self.job),
            None => write!(f, "{}", self.job),
        }
    }
}

impl SlurmId {
    /// `1234` or `1234_5`; anything else (`1234_[5-9]`, `1234.batch`) is `None`.
    pub(super) fn parse(s: &str) -> Option<SlurmId> {
        let (job, task) = match s.trim().split_once('_') {
            Some((j, t)) => (j, Some(t.parse().ok()?)),
            None => (s.trim(), None),
        };
        Some(SlurmId {
            job: job.parse().ok()?,
            task,
        })
    }
}

/// An attempt waiting to be submitted in an array.
struct Task {
    core: Arc<JobCore>,
    sub: Submission,
    later: Later,
    tracker: Sender<Ctl>,
}

/// The attempts being gathered, and whether a worker leads the gathering.
#[derive(Default)]
pub(super) struct Gatherer {
    state: Mutex<Gathered>,
    arrived: Condvar,
}

#[derive(Default)]
struct Gathered {
    tasks: Vec<Task>,
    leader: bool,
    last: Option<Instant>,
}

impl SlurmBackend {
    /// [`SlurmOptions::array`]: the attempt joins the gathering; the worker that leads it
    /// submits the arrays. The attempt continues (ends through its [`Later`]) unless it cannot
    /// even be prepared. A worker that joins returns at once; the leader blocks for the
    /// gathering (at most [`WINDOW`]) and its `sbatch` calls, then returns.
    pub(super) fn start_in_array(&self, engine: &Weak<dyn Report>, work: Work) -> Attempt {
        let core = &*work.core;
        let (sub, tracker) = match self.prepare(core, work.attempt, false) {
            Ok(p) => p,
            Err(msg) => return Attempt::Ended(spawn_failed(core, None, msg)),
        };
        let task = Task {
            later: Later::new(engine, core.id, work.attempt),
            core: work.core.clone(),
            sub,
            tracker,
        };
        let max = self.opts.array as usize;
        let mut g = self.gather.state.lock();
        g.tasks.push(task);
        g.last = Some(Instant::now());
        if g.leader {
            self.gather.arrived.notify_one();
            return Attempt::Continues;
        }
        loop {
            g.leader = true;
            let began = Instant::now();
            while g.tasks.len() < max {
                let quiet = deadline::after(g.last.unwrap_or(began), QUIET);
                let Some(until) = deadline::earliest(quiet, deadline::after(began, WINDOW)) else {
                    break;
                };
                if Instant::now() >= until {
                    break;
                }
                self.gather.arrived.wait_until(&mut g, until);
            }
            // Whole arrays only: the few that arrived after the array filled (the other
            // workers add theirs while this one wakes) stay for the next gathering, instead of
            // going to Slurm as an array of their own.
            let n = g.tasks.len();
            let take = if n >= max { n - n % max } else { n };
            let tasks: Vec<Task> = g.tasks.drain(..take).collect();
            g.leader = false;
            drop(g);
            submit_all(&self.opts, tasks);
            // Those left behind are led by the next worker that adds one, or, when none came
            // meanwhile, by this one (they have waited their gathering already: they go at once
            // unless more arrive).
            g = self.gather.state.lock();
            if g.leader || g.tasks.is_empty() {
                return Attempt::Continues;
            }
        }
    }
}

/// Submits the gathered attempts: one array per group of the same `sbatch` options, at most
/// [`SlurmOptions::array`] tasks each.
fn submit_all(opts: &SlurmOptions, mut tasks: Vec<Task>) {
    // Task i of an array is the i-th of its jobs submitted (workers add them in any order).
    tasks.sort_by_key(|t| t.core.id);
    let mut groups: Vec<(Vec<OsString>, Group)> = Vec::new();
    let mut index: HashMap<Vec<OsString>, usize> = HashMap::new();
    for t in tasks {
        // Killed while gathered: never submitted.
        if t.core.kill_requested.load(Ordering::SeqCst) {
            t.sub.cleanup();
            t.later.end(AttemptEnd::NotStarted);
            continue;
        }
        let (key, files) = split_args(t.sub.args());
        let body = task_body(&t.core, &t.sub.missing.path(), &files);
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push((t, body));
    }
    let max = (opts.array as usize).max(1);
    for (key, group) in groups {
        let mut array: Group = Vec::new();
        let mut bytes = 0;
        for (t, body) in group {
            if array.len() == max || (!array.is_empty() && bytes + body.len() > SCRIPT_CAP) {
                submit_array(opts, &key, std::mem::take(&mut array));
                bytes = 0;
            }
            bytes += body.len();
            array.push((t, body));
        }
        if !array.is_empty() {
            submit_array(opts, &key, array);
        }
    }
}

/// One `sbatch --array` for these tasks; hands each task to the poller, or ends them all as
/// `SpawnFailed` with Slurm's message.
fn submit_array(opts: &SlurmOptions, key: &[OsString], tasks: Group) {
    let n = tasks.len();
    let mut args: Vec<OsString> = vec![
        format!("--array=0-{}", n - 1).into(),
        format!("--job-name=procman-array.{}", std::process::id()).into(),
        "--output=/dev/null".into(),
        "--error=/dev/null".into(),
    ];
    args.extend(key.iter().cloned());
    let script = array_script(tasks.iter().map(|(_, body)| body.as_slice()));
    let submitted = Instant::now();
    let array = match sbatch(opts, &args, &script) {
        Ok(id) => id,
        Err(msg) => {
            for (t, _) in tasks {
                t.sub.cleanup();
                t.later.end(spawn_failed(&t.core, None, msg.clone()));
            }
            return;
        }
    };
    log::debug!("Slurm array {array}: {n} jobs");
    // Should this worker unwind before every task is with the poller, the array is cancelled.
    let mut guard = CancelOnDrop {
        opts,
        job: array,
        armed: true,
    };
    // The tasks' directory, shared by those with the same one (`MissingNote`).
    let mut dir = None;
    for (task, (t, _)) in (0u32..).zip(tasks) {
        let id = SlurmId {
            job: array,
            task: Some(task),
        };
        if let Some(report) = t.later.report() {
            report.queued(t.core.id, array, Some(task), t.later.attempt());
            report.set_backend_state(t.core.id, "PENDING");
        }
        let tail = Tail::new(&t.core, t.sub.followed.clone()).map(Box::new);
        let handover = Handover {
            job: id,
            core: t.core,
            later: t.later,
            submitted_at: submitted,
            stdin_file: t.sub.stdin_file.clone(),
            missing: t.sub.missing.sharing(&mut dir),
            tail,
            held: t.sub.held,
        };
        if let Err(SendError(Ctl::Track(h))) = t.tracker.send(Ctl::Track(Box::new(handover))) {
            // The poller is gone (a shutdown under way): this task is cancelled and ends here.
            cancel(opts, id, true);
            t.sub.cleanup();
            h.missing.remove();
            h.later.end(AttemptEnd::Internal(format!(
                "internal error: procman's Slurm poller stopped before following Slurm job \
                 {id}; it was cancelled"
            )));
        }
    }
    guard.armed = false;
}

/// The tasks of one array, each with its branch of the array's script.
type Group = Vec<(Task, Vec<u8>)>;

/// A task's own files and directory, from its single submission's options.
#[derive(Default)]
struct TaskFiles {
    output: Vec<u8>,
    /// `None`: into the output (merged).
    error: Option<Vec<u8>>,
    input: Vec<u8>,
    chdir: Vec<u8>,
}

/// A single job's `sbatch` options split into those every task of an array shares (the key of
/// its group: the user's extra arguments, including a `--job-name` of theirs, stay) and its
/// own files, with Slurm's `%%` turned back into `%`.
fn split_args(args: &[OsString]) -> (Vec<OsString>, TaskFiles) {
    let mut key = Vec::new();
    let mut f = TaskFiles {
        output: b"/dev/null".to_vec(),
        input: b"/dev/null".to_vec(),
        chdir: b".".to_vec(),
        ..TaskFiles::default()
    };
    // procman's own name for the single job (the first); a later one is the user's.
    let mut named = false;
    for a in args {
        let b = a.as_bytes();
        let value = |name: &[u8]| b.strip_prefix(name).map(unpercent);
        if let Some(v) = value(b"--output=") {
            f.output = v;
        } else if let Some(v) = value(b"--error=") {
            f.error = Some(v);
        } else if let Some(v) = value(b"--input=") {
            f.input = v;
        } else if let Some(v) = value(b"--chdir=") {
            f.chdir = v;
        } else if b.starts_with(b"--job-name=") && !named {
            named = true;
        } else {
            key.push(a.clone());
        }
    }
    (key, f)
}

/// Slurm's file-name patterns undone: `%%` is `%` (the only `%` that `submit.rs` writes).
fn unpercent(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        out.push(v[i]);
        i += if v[i] == b'%' && v.get(i + 1) == Some(&b'%') {
            2
        } else {
            1
        };
    }
    out
}

/// The array's batch script: a `case` on the task id, one branch (a [`task_body`]) per task.
fn array_script<'a>(bodies: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut s = b"#!/bin/sh\n# procman: an array of jobs, one branch per task\n\
                  procman_cr=$(printf '\\015')\ncase \"$SLURM_ARRAY_TASK_ID\" in\n"
        .to_vec();
    for (i, body) in bodies.enumerate() {
        s.extend_from_slice(format!("{i})\n").as_bytes());
        s.extend_from_slice(body);
        s.extend_from_slice(b";;\n");
    }
    s.extend_from_slice(
        b"esac\necho \"procman: no job for array task $SLURM_ARRAY_TASK_ID\" >&2\nexit 125\n",
    );
    s
}

/// One task's branch of the array's script: opens its job's files, enters its directory and
/// runs the job's own batch script (with the note of a missing program at `missing`).
fn task_body(core: &JobCore, missing: &Path, f: &TaskFiles) -> Vec<u8> {
    let mut s = b"exec >".to_vec();
    s.extend_from_slice(&shell_quote(&f.output));
    match &f.error {
        Some(e) => {
            s.extend_from_slice(b" 2>");
            s.extend_from_slice(&shell_quote(e));
        }
        None => s.extend_from_slice(b" 2>&1"),
    }
    s.extend_from_slice(b" <");
    s.extend_from_slice(&shell_quote(&f.input));
    s.extend_from_slice(b" || exit 126\ncd -- ");
    s.extend_from_slice(&shell_quote(&f.chdir));
    s.extend_from_slice(b" || exit 126\n");
    s.extend_from_slice(&batch_script_marking(core, Some(missing)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::slurm::test_core as core;

    #[test]
    fn slurm_ids_read_and_print_as_slurm_writes_them() {
        let t = SlurmId::parse("4361_2").unwrap();
        assert_eq!(
            t,
            SlurmId {
                job: 4361,
                task: Some(2)
            }
        );
        assert_eq!(t.to_string(), "4361_2");
        assert_eq!(SlurmId::parse(" 17 "), Some(SlurmId::from(17)));
        assert_eq!(SlurmId::from(17).to_string(), "17");
        for bad in ["4361_[0-2]", "x", "", "1_", "_1", "1.batch"] {
            assert_eq!(SlurmId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn options_split_into_the_group_key_and_the_task_files() {
        let args: Vec<OsString> = [
            "--parsable",
            "--job-name=true.1000",
            "--chdir=/w d",
            "--output=/w d/100%%.log",
            "--input=/dev/null",
            "--cpus-per-task=2",
            "--time=3",
            "--job-name=users",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let (key, f) = split_args(&args);
        let key: Vec<Vec<u8>> = key.iter().map(|k| k.as_bytes().to_vec()).collect();
        assert_eq!(
            key,
            [
                b"--parsable".to_vec(),
                b"--cpus-per-task=2".to_vec(),
                b"--time=3".to_vec(),
                b"--job-name=users".to_vec()
            ]
        );
        assert_eq!(f.output, b"/w d/100%.log");
        assert_eq!(f.error, None);
        assert_eq!(f.chdir, b"/w d");
        assert_eq!(unpercent(b"%%%%j%"), b"%%j%");
    }

    /// The array's script run by `/bin/sh` for each task id: each branch writes its own files
    /// from its own directory, and an unknown task id fails.
    #[test]
    fn each_task_of_the_script_runs_its_own_job() {
        let dir = std::env::temp_dir().join(format!("procman-array-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut tasks = Vec::new();
        for i in 0..3u8 {
            let c = core("sh", &[b"-c", b"pwd; echo err >&2; cat"], vec![]);
            let files = TaskFiles {
                output: dir.join(format!("out{i}")).as_os_str().as_bytes().to_vec(),
                error: Some(dir.join(format!("err{i}")).as_os_str().as_bytes().to_vec()),
                input: b"/etc/hostname".to_vec(),
                chdir: b"/tmp".to_vec(),
            };
            tasks.push((c, dir.join(format!("missing{i}")), files));
        }
        let bodies: Vec<Vec<u8>> = tasks.iter().map(|(c, m, f)| task_body(c, m, f)).collect();
        let script = array_script(bodies.iter().map(Vec::as_slice));
        for i in 0..3 {
            let ok = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(std::ffi::OsStr::from_bytes(&script))
                .env("SLURM_ARRAY_TASK_ID", i.to_string())
                .status()
                .unwrap();
            assert!(ok.success());
            let out = std::fs::read_to_string(dir.join(format!("out{i}"))).unwrap();
            assert_eq!(
                out,
                format!(
                    "/tmp\n{}",
                    std::fs::read_to_string("/etc/hostname").unwrap()
                )
            );
            let err = std::fs::read_to_string(dir.join(format!("err{i}"))).unwrap();
            assert_eq!(err, "err\n");
        }
        let st = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(std::ffi::OsStr::from_bytes(&script))
            .env("SLURM_ARRAY_TASK_ID", "3")
            .output()
            .unwrap();
        assert_eq!(st.status.code(), Some(125));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
