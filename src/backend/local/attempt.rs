//! One local attempt from spawn to reaping: open the job's streams, spawn, report it started,
//! start the output readers, wait for the program with its deadline (ending its group on
//! timeout or kill: `terminate.rs`), reap it exactly once, and collect the readers.
//!
//! Only the worker that spawned a process ever signals or reaps it, and it signals only before
//! reaping: a pid is never signalled after it could have been reused. Other threads ask for a
//! kill by setting `JobCore::kill_requested` and waking the worker.

use std::process::Child;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::contain::Scope;
use super::sample::Sampler;
use super::spawn::{spawn, spawn_error_text, Spawned};
use super::watch::Watch;
use crate::backend::terminate::{Signals, Termination};
use crate::backend::{spawn_failed, Report};
use crate::config::{ObserveMode, WaitMode};
use crate::job::{AttemptEnd, JobCore, Work};
use crate::output::{open_streams, with_progress, JobKill, ProgressSlot, Readers};
use crate::record::ResourceUsage;
use crate::spec::Observer;
use crate::sys::{self, Exit, Waker};

/// Owns a spawned job's process group until its leader is reaped. Dropped while still armed
/// (the worker unwinding from a panic, or a wait that failed without reaping), it SIGKILLs the
/// group and reaps the leader: no process of the group survives, no zombie is left. The group
/// is signalled only while its leader is unreaped, so its id cannot have been reused. The
/// attempt's `Scope`, dropped right after it, then kills the rest: its cgroup (every process,
/// `setsid` or not; then removed) or its adopted orphans.
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

/// How the wait for the program ended: its exit, its usage, whether it timed out.
type Waited = std::io::Result<(Option<Exit>, ResourceUsage, bool)>;

/// Runs one attempt from spawn to reaping.
pub(super) fn run_attempt(
    report: &dyn Report,
    work: Work,
    waker: Waker,
    sampler: Option<&Arc<Sampler>>,
) -> AttemptEnd {
    let core = &*work.core;
    let config = report.config();
    #[cfg(test)]
    crate::fault::hit(&core.args, crate::fault::WORKER_BEFORE_SPAWN);
    if sys::sigchld_ignored() {
        let msg = "the host process ignores SIGCHLD (SIG_IGN or SA_NOCLDWAIT), so the kernel \
                   would discard the job's exit status; restore SIGCHLD's default disposition";
        return spawn_failed(core, None, msg.into());
    }
    let (observer, progress) = observer_of(core, &waker);
    let streams = match open_streams(
        &core.input,
        core.log_file.as_deref(),
        core.merge_error,
        core.error_file.as_deref(),
        observer.as_ref(),
        config.observe_mode == ObserveMode::Files,
    ) {
        Ok(s) => s,
        Err((msg, file)) => return spawn_failed(core, file, msg),
    };
    // Before the reaper, so dropped after it (a panic): its cgroup, or its adopted orphans,
    // are killed once the leader is reaped.
    let scope = match Scope::new(config, core, work.attempt) {
        Ok(s) => s,
        Err(msg) => return spawn_failed(core, None, msg),
    };
    let spawned = Instant::now();
    let stdio = (streams.stdin, streams.stdout, streams.stderr);
    let mut child = match spawn(config, core, stdio, &scope) {
        Ok(c) => c,
        Err(e) => return spawn_failed(core, None, spawn_error_text(core, &e)),
    };
    let pid = child.pid();
    let mut reaper = Reaper { pid, armed: true };
    log::debug!(
        "job {}: spawned pid {pid} (attempt {})",
        core.id,
        work.attempt
    );
    report.started(core.id, pid, work.attempt, spawned, waker.clone());
    // After the reaper, so dropped before it: the slot is closed before any reap.
    let watch = Watch::start(report, &work, (pid, spawned), &waker, sampler, progress);
    let mut error = None;
    let readers: Option<Readers> = match streams.observed.map(|o| {
        let kill = JobKill::new(work.core.clone(), waker.clone());
        o.start(core.id, report.key(), kill)
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
    let waited = wait(
        config.wait_mode,
        (core, &scope),
        &mut child,
        spawned,
        &waker,
        &watch,
    );
    // Reaped; or ECHILD: the kernel reaped it (SIGCHLD ignored), so its group must not be
    // signalled. Any other failure left it unreaped: kill and reap it now, before the readers
    // wait for its output to end.
    watch.close();
    match &waited {
        Err(e) if e.raw_os_error() != Some(libc::ECHILD) => reaper.kill_and_reap(),
        _ => reaper.disarm(),
    }
    // Before the readers wait for EOF: a leftover holding the output is gone by then.
    let waited = waited.map(|(exit, mut usage, timed_out)| {
        if let Some(why) = scope.end(core, pid, &mut usage) {
            error.get_or_insert(why);
        }
        (exit, usage, timed_out)
    });
    let end = finish(report, core, waited, readers, error, spawned);
    // The progress in the output read after the exit.
    watch.deliver();
    end
}

/// The job's observer for this attempt, and its progress slot: a progress parser makes the
/// job observed (its lines go to the parser, then to the user's observer), its results wait in
/// the slot for this worker, woken through `waker`.
fn observer_of(core: &JobCore, waker: &Waker) -> (Option<Observer>, Option<Arc<ProgressSlot>>) {
    match &core.progress {
        Some(parser) => {
            let slot = ProgressSlot::new(waker.clone());
            let observer = with_progress(core.observer.clone(), parser.clone(), slot.clone());
            (Some(observer), Some(slot))
        }
        None => (core.observer.clone(), None),
    }
}

/// Waits for the child as the wait mode and the platform allow.
fn wait(
    mode: WaitMode,
    (core, scope): (&JobCore, &Scope),
    child: &mut Spawned,
    spawned: Instant,
    waker: &Waker,
    watch: &Watch,
) -> Waited {
    match child {
        // Portable mode, or no handler-free wait on this system.
        Spawned::Std(child) if mode == WaitMode::Portable || !sys::HANDLER_FREE_WAIT => {
            wait_portable((core, scope), child, spawned, watch)
        }
        // Not made without the handler-free wait (the posix_spawn path is glibc's): a plain
        // blocking reap.
        Spawned::Pid(pid) if !sys::HANDLER_FREE_WAIT => {
            sys::wait4(*pid).map(|(e, u)| (Some(e), usage(u), false))
        }
        // Without an eventfd or a pidfd (no descriptor left, or a kernel before 5.3), poll in
        // slices rather than fall back to wait-timeout: Pidfd mode never installs a handler.
        // (A bare pid comes from the posix_spawn path, taken in Pidfd mode only.)
        child => {
            let pid = child.pid();
            match (waker.fd(), sys::pidfd_open(pid)) {
                (Some(w), Ok(pidfd)) => {
                    wait_pidfd((core, scope), pid, spawned, (&pidfd, w, waker), watch)
                }
                _ => wait_sliced((core, scope), pid, spawned, watch),
            }
        }
    }
}

/// The attempt's end once its program was reaped (or could not be): the exit, the usage, the
/// first error, and the readers' results.
fn finish(
    report: &dyn Report,
    core: &JobCore,
    waited: Waited,
    readers: Option<Readers>,
    mut error: Option<String>,
    spawned: Instant,
) -> AttemptEnd {
    let drain_bound = report.config().drain_bound;
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
        let (copy_error, cut, panicked) = r.finish(drain_bound);
        if let Some(msg) = panicked {
            // Its processes are reaped; the job ends as an internal error.
            return AttemptEnd::Internal(msg);
        }
        if cut {
            log::warn!(
                "job {}: a process outside its group kept the output open; stopped reading after {:?}",
                core.id,
                drain_bound
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

/// The kernel's figures as a record's usage (the wall time is set by the caller).
fn usage(u: sys::Rusage) -> ResourceUsage {
    ResourceUsage {
        wall: Duration::ZERO,
        user_cpu: Some(u.user_cpu),
        system_cpu: Some(u.system_cpu),
        peak_memory: Some(u.peak_memory),
    }
}

/// TERM and KILL for a local job: to its process group, whose leader is not reaped yet; KILL
/// also to its scope (`cgroup.kill`: every descendant, `setsid` or not; or its adopted orphans).
struct Group<'a> {
    core: &'a JobCore,
    pgid: u32,
    scope: &'a Scope,
}

impl Group<'_> {
    fn send(&self, signal: libc::c_int) {
        if let Err(e) = sys::signal_group(self.pgid, signal) {
            log::warn!(
                "job {}: cannot signal process group {}: {e}",
                self.core.id,
                self.pgid
            );
        }
    }
}

impl Signals for Group<'_> {
    fn term(&mut self) {
        self.send(libc::SIGTERM);
    }

    fn kill(&mut self) {
        self.send(libc::SIGKILL);
        self.scope.kill(self.core.id, self.pgid);
    }

    fn what(&self) -> String {
        match self.scope {
            Scope::Cgroup(..) => "its process group, then its cgroup".into(),
            _ => "its process group".into(),
        }
    }
}

/// Linux: poll the pidfd and the worker's eventfd (`waker_fd`, of `waker`); the child is reaped
/// with `wait4` (for its resource usage) only after it has exited and its leftover group
/// members were killed.
fn wait_pidfd(
    (core, scope): (&JobCore, &Scope),
    pid: u32,
    spawned: Instant,
    (pidfd, waker_fd, waker): (&std::os::fd::OwnedFd, std::os::fd::RawFd, &Waker),
    watch: &Watch,
) -> Waited {
    use std::os::fd::AsRawFd;
    let mut term = Termination::running_since(core, spawned);
    let mut group = Group {
        core,
        pgid: pid,
        scope,
    };
    loop {
        let wait = term.step(core, &mut group);
        let ready = sys::poll_readable(&[pidfd.as_raw_fd(), waker_fd], wait)?;
        if ready[0] {
            break;
        }
        if ready[1] {
            waker.drain();
            watch.deliver();
        }
    }
    reap_exited(core, pid, &term, watch)
}

/// Linux: the child `pid` has exited and is not reaped yet. Ends what it left in its group
/// (the zombie leader still holds the group id, so it cannot have been reused), then reaps it,
/// once, with `wait4` for its resource usage. std's `Child` is never used to wait; dropping it
/// does not wait either.
fn reap_exited(core: &JobCore, pid: u32, term: &Termination, watch: &Watch) -> Waited {
    watch.close();
    if core.kill_leftovers {
        let _ = sys::signal_group(pid, libc::SIGKILL);
    }
    let (exit, u) = sys::wait4(pid)?;
    Ok((Some(exit), usage(u), term.timed_out()))
}

/// Linux, Pidfd mode without a pidfd or an eventfd: `waitid(WNOWAIT)` every 10 ms. The child
/// stays unreaped until its leftovers are killed, as in `wait_pidfd`; no descriptor, no signal
/// handler. Kill requests are noticed within one slice.
fn wait_sliced(
    (core, scope): (&JobCore, &Scope),
    pid: u32,
    spawned: Instant,
    watch: &Watch,
) -> Waited {
    const SLICE: Duration = Duration::from_millis(10);
    let mut term = Termination::running_since(core, spawned);
    let mut group = Group {
        core,
        pgid: pid,
        scope,
    };
    loop {
        let wait = term.step(core, &mut group).map_or(SLICE, |w| w.min(SLICE));
        if sys::has_exited(pid)? {
            break;
        }
        watch.deliver();
        std::thread::sleep(wait);
    }
    reap_exited(core, pid, &term, watch)
}

/// Any Unix, `WaitMode::Portable` only: `wait-timeout` in slices. Its first use installs a
/// process-wide SIGCHLD handler in the host (SA_RESTART | SA_NOCLDSTOP | SA_SIGINFO, calling
/// the previous handler; tests/host_safety.rs pins this) and creates a socket pair, and it
/// panics if that fails; Pidfd mode never comes here. Kill requests are noticed within one
/// slice. Leftover group members are not killed here: after the leader is reaped its group id
/// may be reused.
fn wait_portable(
    (core, scope): (&JobCore, &Scope),
    child: &mut Child,
    spawned: Instant,
    watch: &Watch,
) -> Waited {
    use wait_timeout::ChildExt;
    const SLICE: Duration = Duration::from_millis(10);
    let mut term = Termination::running_since(core, spawned);
    let mut group = Group {
        core,
        pgid: child.id(),
        scope,
    };
    loop {
        let wait = term.step(core, &mut group).map_or(SLICE, |w| w.min(SLICE));
        watch.deliver();
        if let Some(status) = child.wait_timeout(wait)? {
            return Ok((
                Some(Exit::from_std(status)),
                ResourceUsage::default(),
                term.timed_out(),
            ));
        }
    }
}
