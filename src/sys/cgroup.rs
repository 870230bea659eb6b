//! cgroup v2 per job (issue 15): find a cgroup procman may create children under, make one leaf
//! cgroup per job, put the child in it before it execs ([`spawn_in_cgroup`]), kill the whole
//! tree through `cgroup.kill`, read its accounting, remove it.
//!
//! Layout: `<own v2 cgroup>/procman-<pid>-<n>/job-<m>`. The manager's own process stays in its
//! own cgroup; only the job cgroups (leaves) hold processes, so the v2 "no internal processes"
//! rule holds for the `procman-…` parent, which enables in its `cgroup.subtree_control` the
//! controllers its own cgroup already delegates to it (`cgroup.controllers`). procman never
//! writes its own cgroup's `subtree_control` (that would fail with EBUSY in a cgroup holding
//! processes, and would change the host's setup at the root). A memory limit or CPU weight is
//! therefore available only when the host delegates that controller; otherwise setting one
//! fails with a clear error.
//!
//! Everything here is Linux; elsewhere [`CgroupRoot::discover`] answers "not available" and
//! nothing else can be reached (no value of the other types can be made).

// Off Linux only the "not available" answers are compiled; the parsers stay for the tests.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

/// Why procman cannot use cgroups here; the caller falls back to another containment mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    /// What was looked at and what was wrong, for a log line or an error message.
    pub reason: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cgroups not available: {}", self.reason)
    }
}

impl Unavailable {
    fn new(reason: impl Into<String>) -> Unavailable {
        Unavailable {
            reason: reason.into(),
        }
    }
}

/// A job cgroup's accounting, as far as the host's cgroup files tell (`None`: the file or the
/// field is not there, e.g. `memory.peak` without the memory controller).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// `cpu.stat` `usage_usec`: CPU time of every process that ran in the cgroup.
    pub cpu: Option<std::time::Duration>,
    /// `cpu.stat` `user_usec`.
    pub user_cpu: Option<std::time::Duration>,
    /// `cpu.stat` `system_usec`.
    pub system_cpu: Option<std::time::Duration>,
    /// `memory.peak` in bytes (Linux 5.19+, memory controller enabled).
    pub memory_peak: Option<u64>,
    /// `memory.events` `oom_kill`: processes the OOM killer ended in the cgroup (and below).
    pub oom_kills: Option<u64>,
}

/// The cgroup2 mount points in a `/proc/self/mountinfo` text, each with the cgroup path it
/// shows (its "root" field: `/` unless it is a bind mount or from another cgroup namespace).
pub(crate) fn cgroup2_mounts(mountinfo: &str) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // id parent maj:min root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let f: Vec<&str> = left.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        out.push((PathBuf::from(unescape(f[4])), unescape(f[3])));
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup v2 path from a `/proc/self/cgroup` text (the `0::` line).
pub(crate) fn own_v2_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end_matches(" (deleted)").to_string())
}

/// The directory of this process's own v2 cgroup: the first cgroup2 mount whose root is a
/// prefix of the own path (`/sys/fs/cgroup` on a v2 host, `/sys/fs/cgroup/unified` on a hybrid
/// one) joined with the rest of that path.
pub(crate) fn own_cgroup_dir(mountinfo: &str, proc_cgroup: &str) -> Result<PathBuf, Unavailable> {
    let own = own_v2_path(proc_cgroup)
        .ok_or_else(|| Unavailable::new("/proc/self/cgroup has no cgroup v2 (0::) line"))?;
    let mounts = cgroup2_mounts(mountinfo);
    if mounts.is_empty() {
        return Err(Unavailable::new(
            "no cgroup2 file system is mounted (/proc/self/mountinfo)",
        ));
    }
    for (mount, root) in &mounts {
        let rest = if root == "/" {
            Some(own.as_str())
        } else {
            own.strip_prefix(root.as_str())
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        if let Some(rest) = rest {
            let dir = mount.join(rest.trim_start_matches('/'));
            if dir.join("cgroup.procs").exists() {
                return Ok(dir);
            }
        }
    }
    Err(Unavailable::new(format!(
        "this process's cgroup {own} is not under a cgroup2 mount ({})",
        mounts
            .iter()
            .map(|(m, _)| m.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

fn io_reason(what: &str, path: &Path, e: &io::Error) -> Unavailable {
    Unavailable::new(format!("{what} {}: {e}", path.display()))
}

#[cfg(not(target_os = "linux"))]
mod stub {
    use super::*;

    /// Not Linux: cgroups are never available; no value of this type can exist.
    #[derive(Debug)]
    pub enum CgroupRoot {}

    impl CgroupRoot {
        /// Always "not available" off Linux.
        pub fn discover() -> Result<CgroupRoot, Unavailable> {
            Err(Unavailable::new("cgroups are a Linux feature"))
        }

        /// Always "not available" off Linux.
        pub fn under(_base: &Path) -> Result<CgroupRoot, Unavailable> {
            Self::discover()
        }

        /// Unreachable: no root exists.
        pub fn controllers(&self) -> &[String] {
            match *self {}
        }

        /// Unreachable: no root exists.
        pub fn job(&self) -> io::Result<JobCgroup> {
            match *self {}
        }

        /// Unreachable: no root exists.
        pub fn recycle(&self, _cg: JobCgroup, _last: CgroupUsage) -> Option<JobCgroup> {
            match *self {}
        }
    }

    /// Not Linux: no value of this type can exist (see [`CgroupRoot`]).
    #[derive(Debug)]
    pub enum JobCgroup {}

    #[allow(missing_docs)]
    impl JobCgroup {
        pub fn path(&self) -> &Path {
            match *self {}
        }
        pub fn kill(&self) -> io::Result<()> {
            match *self {}
        }
        pub fn wait_empty(&self, _t: std::time::Duration) -> io::Result<bool> {
            match *self {}
        }
        pub fn usage(&self) -> io::Result<CgroupUsage> {
            match *self {}
        }
        pub fn set_memory_max(&self, _b: u64) -> io::Result<()> {
            match *self {}
        }
        pub fn set_cpu_weight(&self, _w: u32) -> io::Result<()> {
            match *self {}
        }
        pub fn remove(&mut self) -> io::Result<()> {
            match *self {}
        }
        pub fn abandon(self) {
            match self {}
        }
    }

    /// Unreachable: no cgroup exists.
    pub(crate) fn enter_on_spawn(_cmd: &mut std::process::Command, cgroup: &JobCgroup) {
        match *cgroup {}
    }
}
#[cfg(not(target_os = "linux"))]
pub use stub::*;

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn mountinfo_finds_cgroup2_mounts_only() {
        assert_eq!(
            cgroup2_mounts(HYBRID),
            vec![(PathBuf::from("/sys/fs/cgroup/unified"), "/".to_string())]
        );
        let odd = "50 1 0:40 /a\\040b /mnt/c\\134g rw shared:1 - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mounts(odd),
            vec![(PathBuf::from("/mnt/c\\g"), "/a b".to_string())]
        );
        assert!(cgroup2_mounts("garbage\n\n - \n1 2 3 - cgroup2").is_empty());
    }

    #[test]
    fn own_path_is_the_0_line() {
        let text = "4:memory:/x\n0::/user.slice/u.scope\n";
        assert_eq!(own_v2_path(text).as_deref(), Some("/user.slice/u.scope"));
        assert_eq!(own_v2_path("1:cpu:/\n"), None);
        assert_eq!(
            own_v2_path("0::/gone (deleted)\n").as_deref(),
            Some("/gone")
        );
    }

    #[test]
    fn a_host_without_cgroup2_is_unavailable_with_a_reason() {
        let e = own_cgroup_dir("1 1 0:1 / / rw - ext4 /dev/sda rw\n", "0::/\n").unwrap_err();
        assert!(e.reason.contains("no cgroup2"), "{e}");
        let e = own_cgroup_dir(HYBRID, "1:cpu:/\n").unwrap_err();
        assert!(e.reason.contains("0::"), "{e}");
        // A mount showing another subtree than ours.
        let ns = "41 31 0:38 /other /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let e = own_cgroup_dir(ns, "0::/mine\n").unwrap_err();
        assert!(e.reason.contains("not under"), "{e}");
    }
}
