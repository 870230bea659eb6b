//! The Linux side of [`super`]: discovery, the procman parent cgroup, job cgroups.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{io_reason, own_cgroup_dir, CgroupUsage, Unavailable};

/// The controllers procman enables for its job cgroups when its own cgroup delegates them.
const WANTED: &[&str] = &["cpu", "memory", "pids"];

/// How long [`JobCgroup::remove`] retries an `rmdir` that finds the cgroup still populated
/// (the kernel empties a killed cgroup asynchronously, within milliseconds).
const REMOVE_RETRY: Duration = Duration::from_millis(500);

/// How many emptied job cgroups a root keeps for reuse ([`CgroupRoot::recycle`]).
const SPARE_MAX: usize = 64;

/// Numbers the `procman-<pid>-<n>` parents of the managers of this process.
static PARENTS: AtomicU64 = AtomicU64::new(0);

/// procman's parent cgroup for one manager, `<own cgroup>/procman-<pid>-<n>`: created by
/// [`CgroupRoot::discover`] or [`CgroupRoot::under`], removed (when empty) on drop.
#[derive(Debug)]
pub struct CgroupRoot {
    dir: PathBuf,
    controllers: Vec<String>,
    jobs: AtomicU64,
    /// Job cgroups that ended empty, never killed, without limits: reused by [`CgroupRoot::job`].
    spare: Mutex<Vec<JobCgroup>>,
}

impl CgroupRoot {
    /// Finds this process's own cgroup v2 directory through `/proc/self/mountinfo` and
    /// `/proc/self/cgroup` (the `unified` mount of a hybrid host included) and creates the
    /// procman parent under it ([`CgroupRoot::under`]). Never blocks beyond reading those
    /// files and one `mkdir`; every failure is an [`Unavailable`] with its reason.
    pub fn discover() -> Result<CgroupRoot, Unavailable> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|e| io_reason("cannot read", Path::new(p), &e))
        };
        let base = own_cgroup_dir(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?)?;
        CgroupRoot::under(&base)
    }

    /// Creates the procman parent under `base`, which must be this process's own cgroup v2
    /// directory (or an ancestor of it) for processes to be movable into the jobs' cgroups;
    /// tests point it at a fake or read-only directory to see the fallback. Checks that `base`
    /// is a cgroup v2 directory whose `cgroup.procs` this process may write (root, or a
    /// delegated subtree), creates `procman-<pid>-<n>` and enables there the controllers of
    /// [`WANTED`] that `base` delegates. Fails with [`Unavailable`] and a reason, never panics.
    pub fn under(base: &Path) -> Result<CgroupRoot, Unavailable> {
        let procs = base.join("cgroup.procs");
        let controllers_file = base.join("cgroup.controllers");
        if !procs.is_file() || !controllers_file.is_file() {
            return Err(Unavailable::new(format!(
                "{} is not a cgroup v2 directory (no cgroup.procs / cgroup.controllers)",
                base.display()
            )));
        }
        // Moving a process needs write access to cgroup.procs of the common ancestor of its
        // old and new cgroups: `base` itself.
        access_w(&procs)
            .map_err(|e| io_reason("cannot move processes: no write access to", &procs, &e))?;
        sweep_stale(base);
        let n = PARENTS.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("procman-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| io_reason("cannot create", &dir, &e))?;
        let mut root = CgroupRoot {
            dir,
            controllers: Vec::new(),
            jobs: AtomicU64::new(0),
            spare: Mutex::new(Vec::new()),
        };
        if !root.dir.join("cgroup.procs").is_file() {
            // A plain directory (a fake root): not a cgroup file system.
            return Err(Unavailable::new(format!(
                "{} is not on a cgroup v2 file system (mkdir made no cgroup.procs)",
                base.display()
            )));
        }
        root.enable_controllers();
        Ok(root)
    }

    /// Enables the delegated controllers of [`WANTED`] for the job cgroups; one that cannot be
    /// enabled is left out (a limit needing it then fails with a clear error).
    fn enable_controllers(&mut self) {
        let have = std::fs::read_to_string(self.dir.join("cgroup.controllers")).unwrap_or_default();
        for c in WANTED {
            if have.split_whitespace().any(|h| h == *c)
                && write_file(
                    &self.dir.join("cgroup.subtree_control"),
                    format!("+{c}").as_bytes(),
                )
                .is_ok()
            {
                self.controllers.push(c.to_string());
            }
        }
    }

    /// The procman parent's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The controllers enabled for the job cgroups (a subset of cpu, memory, pids).
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// An empty leaf cgroup for one job: a spare one ([`CgroupRoot::recycle`]), else a new
    /// `job-<n>` (one `mkdir`, two `open`s). Fails with the kernel's error (EACCES, ENOSPC at
    /// `cgroup.max.descendants`, EMFILE).
    pub fn job(&self) -> io::Result<JobCgroup> {
        if let Some(cg) = self.spare.lock().ok().and_then(|mut s| s.pop()) {
            return Ok(cg);
        }
        let n = self.jobs.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("job-{n}"));
        std::fs::create_dir(&dir)?;
        let open = || -> io::Result<(OwnedFd, OwnedFd)> {
            let d = File::open(&dir)?;
            let p = OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))?;
            Ok((OwnedFd::from(d), OwnedFd::from(p)))
        };
        match open() {
            Ok((dir_fd, procs)) => Ok(JobCgroup {
                dir,
                dir_fd,
                procs,
                controllers: self.controllers.clone(),
                removed: false,
                killed: AtomicBool::new(false),
                limited: AtomicBool::new(false),
                base: CgroupUsage::default(),
            }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }
}

impl CgroupRoot {
    /// Keeps `cg` for a later [`CgroupRoot::job`] instead of removing it (saving an `rmdir` and
    /// a `mkdir`, most of a job cgroup's cost), when that is safe: it is empty, was never
    /// killed (the kernel kills a child cloned into a once-killed cgroup at birth), has no
    /// limit set, and no memory controller is enabled (`memory.peak` cannot be reset). `last`
    /// is its final [`JobCgroup::usage`]: the next job's figures are counted from there. Gives
    /// `cg` back when it cannot be kept (the caller removes it); `None`: kept.
    pub fn recycle(&self, mut cg: JobCgroup, last: CgroupUsage) -> Option<JobCgroup> {
        let fit = !cg.killed.load(Ordering::Relaxed)
            && !cg.limited.load(Ordering::Relaxed)
            && !self.controllers.iter().any(|c| c == "memory")
            && cg.populated().is_ok_and(|p| !p);
        let Ok(mut spare) = self.spare.lock() else {
            return Some(cg);
        };
        if !fit || spare.len() >= SPARE_MAX {
            return Some(cg);
        }
        cg.base = add(cg.base, last);
        spare.push(cg);
        None
    }
}

/// `a + b`, field by field (a field missing on either side stays missing).
fn add(a: CgroupUsage, b: CgroupUsage) -> CgroupUsage {
    let d =
        |x: Option<Duration>, y: Option<Duration>| Some(x.unwrap_or_default().saturating_add(y?));
    CgroupUsage {
        cpu: d(a.cpu, b.cpu),
        user_cpu: d(a.user_cpu, b.user_cpu),
        system_cpu: d(a.system_cpu, b.system_cpu),
        memory_peak: b.memory_peak,
        oom_kills: b.oom_kills.map(|n| n + a.oom_kills.unwrap_or(0)),
    }
}

impl Drop for CgroupRoot {
    /// Removes the spare job cgroups and the procman parent; the parent stays when a job
    /// cgroup under it was not removed.
    fn drop(&mut self) {
        if let Ok(spare) = self.spare.get_mut() {
            spare.clear();
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            log::warn!("cannot remove cgroup {}: {e}", self.dir.display());
        }
    }
}

/// One job's leaf cgroup. The child enters it before it execs (`sys::spawn_in_cgroup`, or
/// [`enter_from_child`] on a fork path); every process it starts stays in it, `setsid` or not.
/// Dropped without [`JobCgroup::remove`] having succeeded, it kills what is left in it and
/// removes it (bounded: at most about a second).
#[derive(Debug)]
pub struct JobCgroup {
    dir: PathBuf,
    dir_fd: OwnedFd,
    procs: OwnedFd,
    controllers: Vec<String>,
    removed: bool,
    /// `cgroup.kill` was written: never reused.
    killed: AtomicBool,
    /// A limit was set: never reused.
    limited: AtomicBool,
    /// The cgroup's figures when this job got it (non-zero when reused): [`JobCgroup::usage`]
    /// counts from there.
    base: CgroupUsage,
}

impl JobCgroup {
    /// One of the cgroup's files, read whole: opened relative to the cgroup's directory
    /// descriptor, one `read` for the small files read after every job (three system calls
    /// where `read_to_string` of the path takes six, each of which a job waits for).
    fn read(&self, name: &std::ffi::CStr) -> io::Result<String> {
        // SAFETY: openat on a descriptor this value owns and a NUL-terminated name; the new
        // descriptor is owned at once.
        let mut file = unsafe {
            let fd = libc::openat(
                self.dir_fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            File::from(OwnedFd::from_raw_fd(fd))
        };
        let mut buf = [0u8; 1024];
        let mut text = Vec::new();
        loop {
            let n = match io::Read::read(&mut file, &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            text.extend_from_slice(&buf[..n]);
            // A cgroup file gives all it has to one read large enough (one record each).
            if n < buf.len() {
                break;
            }
        }
        String::from_utf8(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A descriptor of the cgroup's directory, for `clone3`'s `CLONE_INTO_CGROUP`.
    pub fn dir_fd(&self) -> RawFd {
        self.dir_fd.as_raw_fd()
    }

    /// The cgroup's `cgroup.procs`, open for writing (close-on-exec): a forked child writes `0`
    /// into it with [`enter_from_child`] before it execs.
    pub fn procs_fd(&self) -> RawFd {
        self.procs.as_raw_fd()
    }

    /// Kills every process in the cgroup and below with SIGKILL: one write of `1` to
    /// `cgroup.kill` (Linux 5.14+), which also kills a process forked while it runs. Where the
    /// file is missing, [`JobCgroup::kill_by_pids`] for up to a second. Returns once the
    /// signals are sent; [`JobCgroup::wait_empty`] waits for the processes to be gone.
    /// A killed cgroup must not be given new processes: make a new one for the next attempt
    /// (on Linux 6.18, a child `clone3`d into a cgroup that was once killed is SIGKILLed at
    /// birth, seen in this crate's tests).
    pub fn kill(&self) -> io::Result<()> {
        self.killed.store(true, Ordering::Relaxed);
        match write_file(&self.dir.join("cgroup.kill"), b"1") {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.kill_by_pids(Duration::from_secs(1)).map(|_| ())
            }
            r => r,
        }
    }

    /// The fallback for kernels without `cgroup.kill` (public so tests reach it on kernels that
    /// have it): freezes the cgroup (where `cgroup.freeze` exists, so nothing forks meanwhile),
    /// SIGKILLs every process listed in its and its descendants' `cgroup.procs` until none is
    /// left or `timeout` passes, then thaws it. Each signal goes through a pidfd taken before a
    /// second listing that still shows the pid, so a pid reused by a process outside the cgroup
    /// is never signalled. Returns whether the cgroup was seen empty.
    pub fn kill_by_pids(&self, timeout: Duration) -> io::Result<bool> {
        let freeze = self.dir.join("cgroup.freeze");
        let frozen = write_file(&freeze, b"1").is_ok();
        let deadline = crate::deadline::from_now(timeout);
        let mut empty = false;
        let mut nap = Duration::from_micros(200);
        loop {
            let first = self.pids()?;
            if first.is_empty() {
                empty = true;
                break;
            }
            let fds: Vec<(u32, OwnedFd)> = first
                .into_iter()
                .filter_map(|p| crate::sys::pidfd_open(p).ok().map(|fd| (p, fd)))
                .collect();
            let again = self.pids()?;
            for (pid, fd) in &fds {
                if again.contains(pid) {
                    let _ = pidfd_send_signal(fd, libc::SIGKILL);
                }
            }
            if crate::deadline::left(deadline, Instant::now()) == Some(Duration::ZERO) {
                break;
            }
            std::thread::sleep(nap);
            nap = nap.saturating_mul(2).min(Duration::from_millis(10));
        }
        if frozen {
            let _ = write_file(&freeze, b"0");
        }
        Ok(empty)
    }

    /// The pids in the cgroup and in any cgroup the job created below it (reads of
    /// `cgroup.procs`; never blocks).
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let mut out = Vec::new();
        collect_pids(&self.dir, &mut out)?;
        Ok(out)
    }

    /// Whether any process is in the cgroup or below it (`cgroup.events` `populated`). A zombie
    /// no longer counts: an exited but unreaped leader leaves the cgroup unpopulated.
    pub fn populated(&self) -> io::Result<bool> {
        let text = self.read(c"cgroup.events")?;
        Ok(field(&text, "populated") == Some(1))
    }

    /// Waits until the cgroup is unpopulated or `timeout` passes (sleeps of 0.2 to 10 ms);
    /// returns whether it emptied. A `timeout` too long for the clock waits for ever.
    pub fn wait_empty(&self, timeout: Duration) -> io::Result<bool> {
        let deadline = crate::deadline::from_now(timeout);
        let mut nap = Duration::from_micros(200);
        loop {
            if !self.populated()? {
                return Ok(true);
            }
            match crate::deadline::left(deadline, Instant::now()) {
                Some(left) if left.is_zero() => return Ok(false),
                left => std::thread::sleep(left.map_or(nap, |l| l.min(nap))),
            }
            nap = nap.saturating_mul(2).min(Duration::from_millis(10));
        }
    }

    /// The cgroup's accounting for this job so far (since [`CgroupRoot::job`] gave it out):
    /// `cpu.stat` (present in every non-root v2 cgroup, the cpu controller or not),
    /// `memory.peak` and `memory.events` where the memory controller is enabled. Final once
    /// the cgroup is empty. Fails only when `cpu.stat` cannot be read.
    pub fn usage(&self) -> io::Result<CgroupUsage> {
        let total = self.usage_total()?;
        let d = |t: Option<Duration>, b: Option<Duration>| {
            t.map(|t| t.saturating_sub(b.unwrap_or_default()))
        };
        Ok(CgroupUsage {
            cpu: d(total.cpu, self.base.cpu),
            user_cpu: d(total.user_cpu, self.base.user_cpu),
            system_cpu: d(total.system_cpu, self.base.system_cpu),
            memory_peak: total.memory_peak,
            oom_kills: total
                .oom_kills
                .map(|n| n.saturating_sub(self.base.oom_kills.unwrap_or(0))),
        })
    }

    /// The cgroup's own cumulative figures (since it was made).
    fn usage_total(&self) -> io::Result<CgroupUsage> {
        let cpu = self.read(c"cpu.stat")?;
        let usec = |k| field(&cpu, k).map(Duration::from_micros);
        // Without the memory controller the files are absent: no failed opens.
        let memory = self.controllers.iter().any(|c| c == "memory");
        let read = |f: &str| {
            memory
                .then(|| std::fs::read_to_string(self.dir.join(f)).ok())
                .flatten()
        };
        Ok(CgroupUsage {
            cpu: usec("usage_usec"),
            user_cpu: usec("user_usec"),
            system_cpu: usec("system_usec"),
            memory_peak: read("memory.peak").and_then(|t| t.trim().parse().ok()),
            oom_kills: read("memory.events").and_then(|t| field(&t, "oom_kill")),
        })
    }

    /// Limits the job's memory (`memory.max`, bytes): past it the kernel reclaims, then the
    /// OOM killer ends a process of the job (seen as `oom_kills` in [`JobCgroup::usage`]).
    /// Fails with `Unsupported` and a message naming the cgroup when the memory controller is
    /// not delegated to procman.
    pub fn set_memory_max(&self, bytes: u64) -> io::Result<()> {
        self.write_limit("memory", "memory.max", bytes.to_string())
    }

    /// Sets the job's CPU weight (`cpu.weight`, 1 to 10000, 100 being the default share).
    /// Fails with `InvalidInput` outside that range, `Unsupported` without the cpu controller.
    pub fn set_cpu_weight(&self, weight: u32) -> io::Result<()> {
        if !(1..=10_000).contains(&weight) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpu weight {weight} is outside 1..=10000"),
            ));
        }
        self.write_limit("cpu", "cpu.weight", weight.to_string())
    }

    fn write_limit(&self, controller: &str, file: &str, value: String) -> io::Result<()> {
        self.limited.store(true, Ordering::Relaxed);
        let path = self.dir.join(file);
        if !self.controllers.iter().any(|c| c == controller) || !path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the {controller} controller is not enabled for procman's cgroups (the \
                     cgroup procman runs in does not delegate it; see cgroup.controllers of {})",
                    self.dir.parent().unwrap_or(&self.dir).display()
                ),
            ));
        }
        write_file(&path, value.as_bytes())
    }

    /// Removes the cgroup (and any the job made below it), deepest first. A cgroup still
    /// populated is retried for up to half a second (a killed cgroup empties within
    /// milliseconds), then EBUSY is returned and the cgroup stays (dropping the value kills
    /// and tries again). Removing twice is a no-op.
    pub fn remove(&mut self) -> io::Result<()> {
        if self.removed {
            return Ok(());
        }
        let deadline = crate::deadline::from_now(REMOVE_RETRY);
        loop {
            match remove_tree(&self.dir) {
                Ok(()) => {
                    self.removed = true;
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    if crate::deadline::left(deadline, Instant::now()) == Some(Duration::ZERO) {
                        return Err(e);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl JobCgroup {
    /// Gives the cgroup up without killing or removing it (the job's leftovers were to be left
    /// running, `kill_leftovers(false)`): its directory stays, and the procman parent with it.
    pub fn abandon(mut self) {
        self.removed = true;
    }
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let _ = self.kill();
        let _ = self.wait_empty(Duration::from_millis(500));
        if let Err(e) = self.remove() {
            log::warn!("cannot remove cgroup {}: {e}", self.dir.display());
        }
    }
}

/// Makes std's spawn of `cmd` put the child in `cgroup` before it execs (a `pre_exec` hook that
/// writes `0` into its `cgroup.procs`; std then forks). The spawn fails with the write's error.
pub(crate) fn enter_on_spawn(cmd: &mut std::process::Command, cgroup: &JobCgroup) {
    use std::os::unix::process::CommandExt;
    let fd = cgroup.procs_fd();
    // SAFETY: the hook makes one write(2), which is async-signal-safe; `fd` stays open until
    // the spawn returns (the caller holds the cgroup).
    unsafe {
        cmd.pre_exec(move || enter_from_child(fd));
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is open as `procs_fd` (a
/// write of `0`). Async-signal-safe: made for a forked child before it execs.
pub fn enter_from_child(procs_fd: RawFd) -> io::Result<()> {
    // SAFETY: writes one byte from a static buffer to a descriptor; no allocation.
    let r = unsafe { libc::write(procs_fd, b"0".as_ptr().cast(), 1) };
    if r == 1 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes the `procman-<pid>-<n>` parents (and their job cgroups) that processes which are gone
/// left under `base`: a process that exits without dropping its manager (a process-wide
/// manager, `exit()`) cannot remove them itself. Only empty cgroups can be removed, so one that
/// still holds processes stays. (A manager in another pid namespace sharing `base` would look
/// gone: its empty spare job cgroups could be removed, and its next job fail to spawn.)
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("procman-"))
            .and_then(|r| r.split_once('-'))
            .and_then(|(p, _)| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            if let Err(e) = remove_tree(&entry.path()) {
                log::debug!("cannot remove stale cgroup {}: {e}", entry.path().display());
            }
        }
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<u32>) -> io::Result<()> {
    let text = match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(t) => t,
        // Removed meanwhile (a nested cgroup the job deleted): nothing in it.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            collect_pids(&entry.path(), out)?;
        }
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> io::Result<()> {
    // The usual case, a leaf: one rmdir, no listing.
    match std::fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    remove_tree(&entry.path())?;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The number after `key ` on a line of a flat-keyed cgroup file (`cpu.stat`, `cgroup.events`).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Opens `path` for writing (no create, no truncate) and writes `bytes` in one `write`, as
/// cgroup files need.
fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(bytes)
}

fn access_w(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated path; access only checks.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `pidfd_send_signal(2)`: signals exactly the process behind `fd`; ESRCH once it has exited.
pub(crate) fn pidfd_send_signal(fd: &OwnedFd, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
