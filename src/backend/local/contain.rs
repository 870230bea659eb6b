//! What holds one local attempt's processes besides its process group (issue 15): a fresh
//! cgroup per attempt (`Containment::Cgroup`), or a marker in its environment by which its
//! orphans adopted by the host are recognised (`Containment::Subreaper`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Containment};
use crate::job::JobCore;
use crate::record::ResourceUsage;
use crate::sys::cgroup::{CgroupRoot, CgroupUsage, JobCgroup};
use crate::sys::subreaper::{marker_entry, Adopted};

/// How long the end of a job waits for its killed cgroup to empty, or for its adopted orphans
/// to die (a process in uninterruptible sleep can take longer: it is then logged and left).
const END_BOUND: Duration = Duration::from_secs(2);

/// One attempt's containment beyond its process group. Dropped without [`Scope::end`] (a
/// panic on the worker), it kills what it holds: the cgroup's `Drop` kills and removes it,
/// the subreaper's orphans are killed and reaped.
pub(super) enum Scope {
    Group,
    /// The attempt's cgroup, and the root it goes back to when it can be reused.
    Cgroup(JobCgroup, Arc<CgroupRoot>),
    Subreaper(Orphans),
}

/// A subreaper attempt's marker token; dropped while armed, it kills the adopted orphans.
pub(super) struct Orphans {
    token: String,
    armed: bool,
}

impl Drop for Orphans {
    fn drop(&mut self) {
        if self.armed {
            let _ = Adopted::new(&self.token).kill_all(&|_| false, END_BOUND);
        }
    }
}

impl Scope {
    /// An empty cgroup for this attempt (never one that was killed before: the kernel kills a
    /// child cloned into such a cgroup at birth; see `CgroupRoot::recycle` for which are
    /// reused) with the job's limits set, or the marker token. Fails with a message for the
    /// record (the attempt then fails to spawn).
    pub(super) fn new(config: &Config, core: &JobCore, attempt: u32) -> Result<Scope, String> {
        match (config.containment, &config.cgroups) {
            (Containment::Cgroup, Some(root)) => {
                let cg = root
                    .job()
                    .map_err(|e| format!("cannot create the job's cgroup: {e}"))?;
                if let Some(bytes) = core.memory_limit {
                    cg.set_memory_max(bytes)
                        .map_err(|e| format!("cannot set the memory limit: {e}"))?;
                }
                if let Some(w) = core.cpu_weight {
                    cg.set_cpu_weight(w)
                        .map_err(|e| format!("cannot set the CPU weight: {e}"))?;
                }
                Ok(Scope::Cgroup(cg, root.clone()))
            }
            (Containment::Subreaper, _) => Ok(Scope::Subreaper(Orphans {
                token: format!("{}-{}-{attempt}", std::process::id(), core.id),
                armed: true,
            })),
            _ => Ok(Scope::Group),
        }
    }

    /// The cgroup the program must start in.
    pub(super) fn cgroup(&self) -> Option<&JobCgroup> {
        match self {
            Scope::Cgroup(cg, _) => Some(cg),
            _ => None,
        }
    }

    /// The environment entry (`PROCMAN_CONTAIN=<token>`) the program must get.
    pub(super) fn marker(&self) -> Option<String> {
        match self {
            Scope::Subreaper(o) => Some(marker_entry(&o.token)),
            _ => None,
        }
    }

    /// SIGKILLs everything the scope holds but the leader `pid` (which the caller signals
    /// through its group and reaps): `cgroup.kill`, or the adopted orphans. Failures are
    /// logged.
    pub(super) fn kill(&self, id: crate::record::JobId, leader: u32) {
        match self {
            Scope::Group => {}
            Scope::Cgroup(cg, _) => {
                if let Err(e) = cg.kill() {
                    log::warn!("job {id}: cannot kill its cgroup {}: {e}", cg_path(cg));
                }
            }
            Scope::Subreaper(o) => kill_adopted(id, &o.token, leader),
        }
    }

    /// The attempt's program was reaped: kills what is left (unless the job keeps its
    /// leftovers), waits for the cgroup to empty, reads its accounting into `usage`, removes
    /// it. Returns the reason the job ended when the cgroup says the OOM killer ended one of
    /// its processes. Never blocks much beyond [`END_BOUND`].
    pub(super) fn end(
        self,
        core: &JobCore,
        leader: u32,
        usage: &mut ResourceUsage,
    ) -> Option<String> {
        match self {
            Scope::Group => None,
            Scope::Subreaper(mut o) => {
                if core.kill_leftovers {
                    kill_adopted(core.id, &o.token, leader);
                }
                o.armed = false;
                None
            }
            Scope::Cgroup(cg, root) => end_cgroup(core, (cg, &root), usage),
        }
    }
}

fn cg_path(cg: &JobCgroup) -> String {
    cg.path().display().to_string()
}

fn kill_adopted(id: crate::record::JobId, token: &str, leader: u32) {
    let mut adopted = Adopted::new(token);
    match adopted.kill_all(&|pid| pid == leader, END_BOUND) {
        Ok(0) => {}
        Ok(n) => log::debug!("job {id}: killed {n} adopted orphan(s)"),
        Err(e) => log::warn!("job {id}: cannot end its adopted orphans: {e}"),
    }
}

/// [`Scope::end`] for a cgroup.
fn end_cgroup(
    core: &JobCore,
    (cg, root): (JobCgroup, &CgroupRoot),
    usage: &mut ResourceUsage,
) -> Option<String> {
    let id = core.id;
    if !core.kill_leftovers {
        // Its leftovers keep running in it: account for what is known, leave it in place.
        if let Ok(u) = cg.usage() {
            merge(usage, u);
        }
        cg.abandon();
        return None;
    }
    // Most jobs leave nothing: one read of cgroup.events, no kill, no wait.
    if cg.populated().unwrap_or(true) {
        if let Err(e) = cg.kill() {
            log::warn!("job {id}: cannot kill its cgroup: {e}");
        }
        match cg.wait_empty(END_BOUND) {
            Ok(true) => {}
            Ok(false) => log::warn!("job {id}: its cgroup did not empty within {END_BOUND:?}"),
            Err(e) => log::warn!("job {id}: cannot read its cgroup's state: {e}"),
        }
    }
    let mut why = None;
    let mut last = None;
    match cg.usage() {
        Ok(u) => {
            last = Some(u);
            if let Some(n @ 1..) = u.oom_kills {
                why = Some(format!(
                    "the out-of-memory killer ended {n} process(es) of the job (memory limit \
                     {})",
                    core.memory_limit
                        .map_or("of the host".to_owned(), |b| format!("{b} bytes"))
                ));
            }
            merge(usage, u);
        }
        Err(e) => log::warn!("job {id}: cannot read its cgroup's accounting: {e}"),
    }
    // Kept for another attempt where that is safe (it never was killed, has no limit, is
    // empty), else removed.
    let mut cg = match last {
        Some(u) => match root.recycle(cg, u) {
            None => return why,
            Some(cg) => cg,
        },
        None => cg,
    };
    if let Err(e) = cg.remove() {
        log::warn!("job {id}: cannot remove its cgroup: {e}");
    }
    why
}

/// The whole tree's figures from the cgroup replace the leader's (`wait4`) where present.
fn merge(usage: &mut ResourceUsage, u: CgroupUsage) {
    if u.user_cpu.is_some() {
        usage.user_cpu = u.user_cpu;
    }
    if u.system_cpu.is_some() {
        usage.system_cpu = u.system_cpu;
    }
    if u.memory_peak.is_some() {
        usage.peak_memory = u.memory_peak;
    }
}
