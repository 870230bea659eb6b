//! Resolving [`Containment`] once, when a manager is built (issue 15).

use std::path::Path;
use std::sync::Arc;

use crate::config::Containment;
use crate::error::{BuildError, StartError};
use crate::spec::JobSpec;
use crate::sys::cgroup::{CgroupRoot, Unavailable};
use crate::sys::subreaper::set_child_subreaper;

/// The mode the manager runs in (never `Auto`) and, for `Cgroup`, the procman parent cgroup.
/// `base` replaces the discovered own cgroup (tests point it at a missing or read-only
/// directory); `remote` (a Slurm backend) makes `Auto` the process group without looking.
pub(super) fn resolve(
    asked: Containment,
    base: Option<&Path>,
    remote: bool,
) -> Result<(Containment, Option<Arc<CgroupRoot>>), BuildError> {
    let cgroups = || -> Result<CgroupRoot, Unavailable> {
        match base {
            Some(b) => CgroupRoot::under(b),
            None => CgroupRoot::discover(),
        }
    };
    match asked {
        Containment::Auto if remote => Ok((Containment::ProcessGroup, None)),
        Containment::Auto => match cgroups() {
            Ok(root) => Ok((Containment::Cgroup, Some(Arc::new(root)))),
            Err(why) => {
                log::info!("containment: process groups ({why})");
                Ok((Containment::ProcessGroup, None))
            }
        },
        Containment::Cgroup => match cgroups() {
            Ok(root) => Ok((Containment::Cgroup, Some(Arc::new(root)))),
            Err(why) => Err(BuildError::Containment(why.to_string())),
        },
        Containment::Subreaper => match set_child_subreaper(true) {
            Ok(()) => Ok((Containment::Subreaper, None)),
            Err(e) => Err(BuildError::Containment(format!(
                "cannot become a child subreaper (PR_SET_CHILD_SUBREAPER): {e}"
            ))),
        },
        Containment::ProcessGroup => Ok((Containment::ProcessGroup, None)),
    }
}

/// Refuses a job whose memory limit or CPU weight this manager can never apply.
pub(super) fn check_limits(
    spec: &JobSpec,
    mode: Containment,
    root: Option<&CgroupRoot>,
) -> Result<(), StartError> {
    let wants = [
        ("a memory limit", "memory", spec.memory_limit.is_some()),
        ("a CPU weight", "cpu", spec.cpu_weight.is_some()),
    ];
    for (what, controller, asked) in wants {
        if !asked {
            continue;
        }
        let Some(root) = root else {
            return Err(StartError::LimitUnavailable(format!(
                "{what} needs cgroup containment, and this manager uses {mode:?}"
            )));
        };
        if !root.controllers().iter().any(|c| c == controller) {
            return Err(StartError::LimitUnavailable(format!(
                "{what} needs the {controller} controller, which the cgroup procman runs in \
                 does not delegate (enabled for its jobs: {:?})",
                root.controllers()
            )));
        }
    }
    if let Some(w) = spec.cpu_weight {
        if !(1..=10_000).contains(&w) {
            return Err(StartError::LimitUnavailable(format!(
                "CPU weight {w} is outside 1..=10000"
            )));
        }
    }
    Ok(())
}
