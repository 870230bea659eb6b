//! The worker threads: each takes one admitted attempt at a time from the work channel, spawns
//! the program as the leader of a new process group, waits for it with a deadline, ends its
//! group on timeout or kill (SIGTERM, grace, SIGKILL), reaps it exactly once, and reports.
//!
//! Only the worker that spawned a process ever signals or reaps it, and it signals only before
//! reaping: a pid is never signalled after it could have been reused. Other threads ask for a
//! kill by setting `JobCore::kill_requested` and waking the worker.

use std::fs::OpenOptions;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::backend::{Backend, WorkerWaker};
use crate::config::{ObserveMode, WaitMode};
use crate::deadline;
use crate::engine::dispatch::panic_message;
use crate::engine::sched::WorkMsg;
use crate::engine::Inner;
use crate::job::{AttemptEnd, JobCore, Work};
use crate::output::{open_streams, FileId, JobKill, Readers};
use crate::record::ResourceUsage;
use crate::spec::{EnvEdit, Input};
use crate::sys::{self, Exit};

/// The worker thread's body: runs attempts until told to stop.
///
/// The panic rule (DESIGN.md): an attempt runs inside `catch_unwind`. A panic anywhere in it
/// (the backend, the wait, reader set-up) unwinds through the attempt's [`Reaper`], which kills
/// the job's process group and reaps its leader; the job then ends as `InternalError` through
/// the ordinary `end_attempt` (slot freed, handler once), and this thread takes the next attempt.
pub(crate) fn worker_loop(inner: Arc<Inner>, rx: Receiver<WorkMsg>) {
    #[cfg(not(target_os = "linux"))]
    let waker: WorkerWaker = None;
    #[cfg(target_os = "linux")]
    let waker: WorkerWaker = match inner.config.wait_mode {
        WaitMode::Pidfd => match sys::Waker::new() {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                log::warn!("cannot create an eventfd ({e}); this worker uses the portable wait");
                None
            }
        },
        WaitMode::Portable => None,
    };
    for msg in rx {
        match msg {
            WorkMsg::Stop => break,
            WorkMsg::Job(work) => {
                inner.worker_took_attempt();
                let id = work.core.id;
                let attempt = work.attempt;
                let end = catch_unwind(AssertUnwindSafe(|| match before_attempt(&work) {
                    Some(end) => end,
                    None => inner.backend.run_attempt(&inner, work, waker.clone()),
                }))
                .unwrap_or_else(|p| {
                    let msg = format!(
                        "internal error: the worker thread panicked: {}",
                        panic_message(&*p)
                    );
                    log::error!("job {id}: {msg}; its processes were killed");
                    AttemptEnd::Internal(msg)
                });
                // Idle before the report, whose admissions it may take itself.
                inner.worker_done();
                // The scheduler never panics (fuzzed and property-tested); should it, the job
                // still ends (as an internal error, slot freed, handler once) and this worker
                // goes on serving the others.
                if let Err(p) =
                    catch_unwind(AssertUnwindSafe(|| inner.end_attempt(id, attempt, end)))
                {
                    let msg = format!(
                        "internal error: the scheduler panicked ending its attempt: {}",
                        panic_message(&*p)
                    );
                    log::error!("job {id}: {msg}");
                    let _ = catch_unwind(AssertUnwindSafe(|| inner.abandon(id, msg)));
                }
                // The completion just woke the dispatcher; a woken thread waits for a CPU while
                // its waker runs on (here: straight into the next spawn), which made the
                // dispatcher hop the largest part of the exit-to-handler latency. Let it run.
                std::thread::yield_now();
            }
        }
    }
}

/// What every backend's attempt starts with: keep the previous attempt's output, and end here
/// if a kill arrived before the program was started.
fn before_attempt(work: &Work) -> Option<AttemptEnd> {
    let core = &*work.core;
    if work.attempt > 1 {
        rotate_outputs(core, work.attempt - 1);
    }
    core.kill_requested
        .load(Ordering::SeqCst)
        .then_some(AttemptEnd::NotStarted)
}

/// Keeps an earlier attempt's output: `log.txt` → `log.txt.attempt1`, and the error file
/// likewise. An error file merged into the log (asked, or the same file under another path)
/// goes with it: once the log is renamed, a textual alias or a symbolic link to it names nothing
/// and is left alone; a hard link still names the old file and is renamed too, so that the next
/// attempt does not truncate it. When one of them is a symbolic link to the other, the real name
/// is renamed first, which keeps the link pointing at the new attempt's file (still merged).
/// A file that is the job's input is never renamed: its attempt was refused and wrote nothing.
fn rotate_outputs(core: &JobCore, attempt: u32) {
    let input = match &core.input {
        Input::File(p) => FileId::at(p),
        _ => None,
    };
    let (log, err) = (core.log_file.as_deref(), core.error_file.as_deref());
    let is_link = |p: Option<&Path>| {
        p.and_then(|p| p.symlink_metadata().ok())
            .is_some_and(|m| m.file_type().is_symlink())
    };
    let order = if is_link(log) && !is_link(err) {
        [err, log]
    } else {
        [log, err]
    };
    for p in order.into_iter().flatten() {
        if input.is_none() || FileId::at(p) != input {
            rotate(p, attempt);
        }
    }
}

/// Renames `path` (if it names an existing file) to `path.attempt<N>`.
fn rotate(p: &Path, attempt: u32) {
    let mut to = p.as_os_str().to_owned();
    to.push(format!(".attempt{attempt}"));
    if p.exists() {
        if let Err(e) = std::fs::rename(p, &to) {
            log::warn!(
                "cannot keep attempt {attempt}'s output {}: {e}",
                p.display()
            );
        }
    }
}

/// Writes a spawn failure where the user looks first: `file` (the job's error file or log, as
/// opened for this attempt), else the error file's path, appended to; never into a file that is
/// the job's input file (a refused alias of it must be left as it was).
pub(crate) fn report_spawn_failure(core: &JobCore, file: Option<std::fs::File>, msg: &str) {
    let input = match &core.input {
        Input::File(p) => FileId::at(p),
        _ => None,
    };
    let file = file.or_else(|| {
        let f = core
            .error_path()
            .and_then(|p| OpenOptions::new().append(true).create(true).open(p).ok())?;
        (input.is_none() || FileId::of(&f) != input).then_some(f)
    });
    if let Some(mut f) = file {
        let _ = writeln!(f, "procman: job {} could not start: {msg}", core.id);
    }
}

/// std's spawn: the portable path (other platforms and C libraries, a glibc older than 2.34,
/// a host whose stdio descriptors are closed, `WaitMode::Portable`). A host setting that the
/// child must not inherit needs a `pre_exec` hook here, which makes std fork.
fn build_command(core: &JobCore, close_inherited_fds: bool) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = match &core.interpreter {
        Some(interp) => {
            let mut c = Command::new(interp);
            c.arg(&core.program);
            c
        }
        None => Command::new(&core.program),
    };
    cmd.args(&core.args).process_group(0);
    // Only when the host has a descriptor a child would inherit (DESIGN.md, "Descriptors").
    let close_inherited_fds = close_inherited_fds && sys::host_may_leak_fds();
    // The child inherits this worker's signal mask (the host's, when it created the manager)
    // and std does not reset it: a job with SIGTERM blocked would only die by SIGKILL.
    let unblock = sys::signals_blocked();
    if close_inherited_fds || unblock {
        // SAFETY: the closure only calls async-signal-safe functions (see `cloexec_from` and
        // `unblock_all_signals`).
        unsafe {
            cmd.pre_exec(move || {
                if close_inherited_fds {
                    sys::cloexec_from(3);
                }
                if unblock {
                    sys::unblock_all_signals();
                }
                Ok(())
            });
        }
    }
    if let Some(dir) = &core.cwd {
        cmd.current_dir(dir);
    }
    for edit in &core.env {
        match edit {
            EnvEdit::Set(k, v) => {
                cmd.env(k, v);
            }
            EnvEdit::Remove(k) => {
                cmd.env_remove(k);
            }
            EnvEdit::Clear => {
                cmd.env_clear();
            }
        }
    }
    cmd
}

/// The job's spawn for glibc's `posix_spawn`, or `None` when this spawn must take std's path:
/// this glibc lacks a function it needs, or one of the child's stdio descriptors is below 3
/// (the host closed its own stdio; the dup2 file actions could then overwrite one another).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn spawn_plan(
    core: &JobCore,
    stdio: [Option<std::os::fd::RawFd>; 3],
    close_inherited_fds: bool,
) -> Option<std::io::Result<sys::SpawnPlan>> {
    use std::ffi::{CString, OsString};
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    if !sys::posix_spawn_can(core.cwd.is_some(), close_inherited_fds)
        || stdio.iter().flatten().any(|&fd| fd < 3)
    {
        return None;
    }
    let cstr = |bytes: Vec<u8>| {
        CString::new(bytes).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "nul byte found in provided data",
            )
        })
    };
    let file = core.interpreter.as_ref().unwrap_or(&core.program);
    let finish = |argv: Vec<CString>,
                  envp: Vec<CString>,
                  lookup: sys::Lookup|
     -> std::io::Result<sys::SpawnPlan> {
        Ok(sys::SpawnPlan {
            program: cstr(file.as_bytes().to_vec())?,
            argv,
            envp,
            lookup,
            cwd: match &core.cwd {
                Some(d) => Some(cstr(d.as_os_str().as_bytes().to_vec())?),
                None => None,
            },
            stdio,
            close_from_3: close_inherited_fds,
        })
    };
    let plan = || -> std::io::Result<sys::SpawnPlan> {
        let mut argv = Vec::with_capacity(core.args.len() + 2);
        argv.push(cstr(file.as_bytes().to_vec())?);
        if core.interpreter.is_some() {
            argv.push(cstr(core.program.as_bytes().to_vec())?);
        }
        for a in &core.args {
            argv.push(cstr(a.as_bytes().to_vec())?);
        }
        // The environment as std builds it: the host's unless cleared, then the edits in order.
        let kv = |k: OsString, v: &std::ffi::OsStr| {
            let mut kv = k.into_vec();
            kv.reserve_exact(v.len() + 2);
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(kv)
        };
        let direct = file.as_bytes().contains(&b'/');
        if core.env.is_empty() {
            // The common case, in the host's order, without a map (~20 µs less per spawn with
            // 40 variables): one C string per variable.
            let mut envp = Vec::with_capacity(64);
            for (k, v) in std::env::vars_os() {
                envp.push(kv(k, &v)?);
            }
            let lookup = if direct {
                sys::Lookup::Direct
            } else {
                sys::Lookup::HostPath
            };
            return finish(argv, envp, lookup);
        }
        let mut env = std::collections::BTreeMap::<OsString, OsString>::new();
        let mut path_changed = false;
        if !core.env.iter().any(|e| matches!(e, EnvEdit::Clear)) {
            env.extend(std::env::vars_os());
        }
        for edit in &core.env {
            match edit {
                EnvEdit::Set(k, v) => {
                    path_changed |= k == "PATH";
                    env.insert(k.clone(), v.clone());
                }
                EnvEdit::Remove(k) => {
                    path_changed |= k == "PATH";
                    env.remove(k);
                }
                EnvEdit::Clear => {
                    path_changed = true;
                    env.clear();
                }
            }
        }
        let lookup = if direct {
            sys::Lookup::Direct
        } else if path_changed {
            // execvp's search in the child's PATH; without one, glibc's default.
            let path = env
                .get(std::ffi::OsStr::new("PATH"))
                .map_or(sys::DEFAULT_PATH, |p| p.as_bytes());
            let paths = sys::path_candidates(path, file.as_bytes())
                .map(cstr)
                .collect::<std::io::Result<_>>()?;
            sys::Lookup::Candidates(paths)
        } else {
            sys::Lookup::HostPath
        };
        let mut envp = Vec::with_capacity(env.len());
        for (k, v) in env {
            envp.push(kv(k, &v)?);
        }
        finish(argv, envp, lookup)
    };
    Some(plan())
}

/// A started child: std's handle (portable path) or a bare pid (`posix_spawn` path).
enum Spawned {
    Std(Child),
    #[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
    Pid(u32),
}

impl Spawned {
    fn pid(&self) -> u32 {
        match self {
            Spawned::Std(c) => c.id(),
            Spawned::Pid(p) => *p,
        }
    }
}

/// Starts the job's program with its stdio; the parent's copies of the stdio are dropped when
/// this returns (readers must see EOF when the job's processes close their ends).
fn spawn(inner: &Inner, core: &JobCore, streams: StdioFiles) -> std::io::Result<Spawned> {
    let close = inner.config.close_inherited_fds;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if inner.config.wait_mode == WaitMode::Pidfd {
        use std::os::fd::AsRawFd;
        let fds = [&streams.0, &streams.1, &streams.2].map(|f| f.as_ref().map(|f| f.as_raw_fd()));
        if let Some(plan) = spawn_plan(core, fds, close) {
            return sys::posix_spawn(&plan?).map(Spawned::Pid);
        }
    }
    let null_or = |f: Option<std::fs::File>| f.map_or_else(Stdio::null, Stdio::from);
    let mut cmd = build_command(core, close);
    cmd.stdin(null_or(streams.0))
        .stdout(null_or(streams.1))
        .stderr(null_or(streams.2));
    cmd.spawn().map(Spawned::Std)
}

/// The child's stdin, stdout, stderr (`None`: `/dev/null`).
type StdioFiles = (
    Option<std::fs::File>,
    Option<std::fs::File>,
    Option<std::fs::File>,
);

fn spawn_error_text(core: &JobCore, e: &std::io::Error) -> String {
    let what = core.interpreter.as_ref().unwrap_or(&core.program);
    match &core.cwd {
        Some(dir) if !dir.is_dir() => format!(
            "cannot start {:?}: working directory {} is not usable ({e})",
            what,
            dir.display()
        ),
        _ => format!("cannot start {what:?}: {e}"),
    }
}

/// The default backend: the job's program runs on this machine, as a process-group leader.
pub(crate) struct Local;

impl Backend for Local {
    fn run_attempt(&self, inner: &Inner, work: Work, waker: WorkerWaker) -> AttemptEnd {
        run_attempt(inner, work, waker)
    }
}

/// Owns a spawned job's process group until its leader is reaped. Dropped while still armed
/// (the worker unwinding from a panic, or a wait that failed without reaping), it SIGKILLs the
/// group and reaps the leader: no process of the group survives, no zombie is left. The group
/// is signalled only while its leader is unreaped, so its id cannot have been reused.
struct Reaper {
    pid: u32,
    armed: bool,
}

impl Reaper {
    /// The leader was reaped (or the kernel reaped it: nothing is left to signal safely).
    fn disarm(&mut self) {
        self.armed = false;
    }

    fn kill_and_reap(&mut self) {
        if std::mem::take(&mut self.armed) {
            let _ = sys::signal_group(self.pid, libc::SIGKILL);
            if let Err(e) = sys::wait4(self.pid) {
                log::warn!("cannot reap process {}: {e}", self.pid);
            }
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Runs one attempt from spawn to reaping.
fn run_attempt(inner: &Inner, work: Work, waker: WorkerWaker) -> AttemptEnd {
    let core = &*work.core;
    #[cfg(test)]
    crate::fault::hit(&core.args, crate::fault::WORKER_BEFORE_SPAWN);
    if sys::sigchld_ignored() {
        let msg = "the host process ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT), so the kernel \
                   would discard the job's exit status; restore SIGCHLD's default disposition";
        report_spawn_failure(core, None, msg);
        return AttemptEnd::SpawnFailed(msg.into());
    }
    let streams = match open_streams(
        &core.input,
        core.log_file.as_deref(),
        core.merge_error,
        core.error_file.as_deref(),
        core.observer.as_ref(),
        inner.config.observe_mode == ObserveMode::Files,
    ) {
        Ok(s) => s,
        Err((msg, file)) => {
            report_spawn_failure(core, file, &msg);
            return AttemptEnd::SpawnFailed(msg);
        }
    };
    let spawned = Instant::now();
    let stdio = (streams.stdin, streams.stdout, streams.stderr);
    let mut child = match spawn(inner, core, stdio) {
        Ok(c) => c,
        Err(e) => {
            let msg = spawn_error_text(core, &e);
            report_spawn_failure(core, None, &msg);
            return AttemptEnd::SpawnFailed(msg);
        }
    };
    let pid = child.pid();
    let mut reaper = Reaper { pid, armed: true };
    log::debug!(
        "job {}: spawned pid {pid} (attempt {})",
        core.id,
        work.attempt
    );
    inner.started(
        core.id,
        pid,
        work.attempt,
        spawned,
        #[cfg(target_os = "linux")]
        waker.clone(),
    );
    let mut error = None;
    let readers: Option<Readers> = match streams.observed.map(|o| {
        let kill = JobKill::new(
            work.core.clone(),
            #[cfg(target_os = "linux")]
            waker.clone(),
        );
        o.start(core.id, inner.key, kill)
    }) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            // Without readers the pipes would fill and block the job: end it.
            error = Some(format!("cannot start output reader threads: {e}"));
            core.kill_requested.store(true, Ordering::SeqCst);
            None
        }
    };
    #[cfg(target_os = "linux")]
    let waited = match (inner.config.wait_mode, &mut child) {
        (WaitMode::Portable, Spawned::Std(child)) => wait_portable(core, child, spawned),
        // Without an eventfd or a pidfd (no descriptor left, or a kernel before 5.3), poll in
        // slices rather than fall back to wait-timeout: Pidfd mode never installs a handler.
        // (A bare pid comes from the posix_spawn path, taken in Pidfd mode only.)
        (WaitMode::Pidfd, _) | (WaitMode::Portable, Spawned::Pid(_)) => {
            match (&waker, sys::pidfd_open(pid)) {
                (Some(w), Ok(pidfd)) => wait_pidfd(core, pid, spawned, &pidfd, w),
                _ => wait_sliced(core, pid, spawned),
            }
        }
    };
    #[cfg(not(target_os = "linux"))]
    let waited = {
        let _ = waker;
        match &mut child {
            Spawned::Std(child) => wait_portable(core, child, spawned),
            // Not made here (the posix_spawn path is Linux-only); a plain blocking reap.
            Spawned::Pid(pid) => sys::wait4(*pid).map(|(e, u)| (Some(e), u, false)),
        }
    };
    // Reaped; or ECHILD: the kernel reaped it (SIGCHLD ignored), so its group must not be
    // signalled. Any other failure left it unreaped: kill and reap it now, before the readers
    // wait for its output to end.
    match &waited {
        Err(e) if e.raw_os_error() != Some(libc::ECHILD) => reaper.kill_and_reap(),
        _ => reaper.disarm(),
    }
    let (exit, mut usage, timed_out) = match waited {
        Ok(x) => x,
        Err(e) => {
            let lost = e.raw_os_error() == Some(libc::ECHILD) && sys::sigchld_ignored();
            error.get_or_insert(if lost {
                "the job's exit status was lost: the host process started ignoring SIGCHLD \
                 (SIG_IGN or SA_NOCLDWAIT) while it ran, so the kernel reaped it"
                    .to_owned()
            } else {
                format!("cannot reap the job's process: {e}")
            });
            (
                None,
                ResourceUsage {
                    wall: spawned.elapsed(),
                    ..ResourceUsage::default()
                },
                false,
            )
        }
    };
    if let Some(r) = readers {
        let (copy_error, cut, panicked) = r.finish(inner.config.drain_bound);
        if let Some(msg) = panicked {
            // Its processes are reaped; the job ends as an internal error.
            return AttemptEnd::Internal(msg);
        }
        if cut {
            log::warn!(
                "job {}: a process outside its group kept the output open; stopped reading after {:?}",
                core.id,
                inner.config.drain_bound
            );
        }
        if let Some(e) = copy_error {
            error.get_or_insert(e);
        }
    }
    usage.wall = spawned.elapsed();
    AttemptEnd::Exited {
        exit,
        usage,
        timed_out,
        error,
    }
}

/// What the wait loop decides about signals, shared by both wait paths.
struct Termination {
    deadline: Option<Instant>,
    grace: Duration,
    timed_out: bool,
    term_sent: Option<Instant>,
    kill_sent: bool,
}

impl Termination {
    fn new(core: &JobCore, spawned: Instant) -> Termination {
        Termination {
            deadline: core.timeout.and_then(|t| deadline::after(spawned, t)),
            grace: core.grace,
            timed_out: false,
            term_sent: None,
            kill_sent: false,
        }
    }

    /// Sends what is due to the group `pgid` (whose leader is not reaped yet) and returns how
    /// long the caller may wait before calling again (`None`: until the child exits or a wake).
    fn step(&mut self, core: &JobCore, pgid: u32) -> Option<Duration> {
        let now = Instant::now();
        if !self.timed_out && self.term_sent.is_none() {
            if let Some(d) = self.deadline {
                if now >= d {
                    self.timed_out = true;
                    log::info!("job {}: timed out; ending its process group", core.id);
                }
            }
        }
        let wants_end = self.timed_out || core.kill_requested.load(Ordering::SeqCst);
        #[cfg(test)]
        if wants_end {
            crate::fault::hit(&core.args, crate::fault::WORKER_RUNNING);
        }
        if wants_end && self.term_sent.is_none() {
            self.term_sent = Some(now);
            if self.grace.is_zero() {
                self.send(pgid, libc::SIGKILL, core);
                self.kill_sent = true;
            } else {
                self.send(pgid, libc::SIGTERM, core);
            }
        }
        if let (Some(t), false) = (self.term_sent, self.kill_sent) {
            // A grace too long for the clock: SIGKILL is never due.
            if let Some(at) = deadline::after(t, self.grace) {
                if now >= at {
                    log::info!(
                        "job {}: still alive after the grace period; SIGKILL",
                        core.id
                    );
                    self.send(pgid, libc::SIGKILL, core);
                    self.kill_sent = true;
                } else {
                    return Some(at.saturating_duration_since(now));
                }
            }
        }
        match (self.term_sent, self.deadline) {
            (None, Some(d)) => Some(d.saturating_duration_since(now)),
            _ => None,
        }
    }

    fn send(&self, pgid: u32, signal: libc::c_int, core: &JobCore) {
        if let Err(e) = sys::signal_group(pgid, signal) {
            log::warn!("job {}: cannot signal process group {pgid}: {e}", core.id);
        }
    }
}

/// Linux: poll the pidfd and the worker's eventfd; the child is reaped with `wait4` (for its
/// resource usage) only after it has exited and its leftover group members were killed.
#[cfg(target_os = "linux")]
fn wait_pidfd(
    core: &JobCore,
    pid: u32,
    spawned: Instant,
    pidfd: &std::os::fd::OwnedFd,
    waker: &sys::Waker,
) -> std::io::Result<(Option<Exit>, ResourceUsage, bool)> {
    use std::os::fd::AsRawFd;
    let mut term = Termination::new(core, spawned);
    loop {
        let wait = term.step(core, pid);
        let ready = sys::poll_readable(&[pidfd.as_raw_fd(), waker.raw()], wait)?;
        if ready[0] {
            break;
        }
        if ready[1] {
            waker.drain();
        }
    }
    reap_exited(core, pid, &term)
}

/// Linux: the child `pid` has exited and is not reaped yet. Ends what it left in its group
/// (the zombie leader still holds the group id, so it cannot have been reused), then reaps it,
/// once, with `wait4` for its resource usage. std's `Child` is never used to wait; dropping it
/// does not wait either.
#[cfg(target_os = "linux")]
fn reap_exited(
    core: &JobCore,
    pid: u32,
    term: &Termination,
) -> std::io::Result<(Option<Exit>, ResourceUsage, bool)> {
    if core.kill_leftovers {
        let _ = sys::signal_group(pid, libc::SIGKILL);
    }
    let (exit, usage) = sys::wait4(pid)?;
    Ok((Some(exit), usage, term.timed_out))
}

/// Linux, Pidfd mode without a pidfd or an eventfd: `waitid(WNOWAIT)` every 10 ms. The child
/// stays unreaped until its leftovers are killed, as in `wait_pidfd`; no descriptor, no signal
/// handler. Kill requests are noticed within one slice.
#[cfg(target_os = "linux")]
fn wait_sliced(
    core: &JobCore,
    pid: u32,
    spawned: Instant,
) -> std::io::Result<(Option<Exit>, ResourceUsage, bool)> {
    const SLICE: Duration = Duration::from_millis(10);
    let mut term = Termination::new(core, spawned);
    loop {
        let wait = term.step(core, pid).map_or(SLICE, |w| w.min(SLICE));
        if sys::has_exited(pid)? {
            break;
        }
        std::thread::sleep(wait);
    }
    reap_exited(core, pid, &term)
}

/// Any Unix, `WaitMode::Portable` only: `wait-timeout` in slices. Its first use installs a
/// process-wide SIGCHLD handler in the host (SA_RESTART | SA_NOCLDSTOP | SA_SIGINFO, calling
/// the previous handler; tests/host_safety.rs pins this) and creates a socket pair, and it
/// panics if that fails; Pidfd mode never comes here. Kill requests are noticed within one
/// slice. Leftover group members are not killed here: after the leader is reaped its group id
/// may be reused.
fn wait_portable(
    core: &JobCore,
    child: &mut Child,
    spawned: Instant,
) -> std::io::Result<(Option<Exit>, ResourceUsage, bool)> {
    use wait_timeout::ChildExt;
    const SLICE: Duration = Duration::from_millis(10);
    let pid = child.id();
    let mut term = Termination::new(core, spawned);
    loop {
        let wait = term.step(core, pid).map_or(SLICE, |w| w.min(SLICE));
        if let Some(status) = child.wait_timeout(wait)? {
            return Ok((
                Some(Exit::from_std(status)),
                ResourceUsage::default(),
                term.timed_out,
            ));
        }
    }
}
