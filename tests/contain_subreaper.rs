//! The child-subreaper containment (issue 15), in a test binary of its own: the attribute is
//! the whole test process's, so these tests run one at a time ([`ONE`]) and apart from the
//! cgroup tests. Real processes; each carries a unique marker argument and is killed by pid
//! when its test ends ([`Marked`]).
#![cfg(all(target_os = "linux", target_env = "gnu"))]

mod common;
#[path = "common/marked.rs"]
mod marked;

use std::sync::Mutex;
use std::time::Duration;

use common::{eventually, kid, proc_stat};
use marked::{exited, pidfd, Marked};
use procman::__contain::{is_child_subreaper, set_child_subreaper, Adopted};
use procman::{Containment, JobSpec, JobStatus, ProcessManager};

/// Serialises the tests: each sets or clears the process's subreaper attribute.
static ONE: Mutex<()> = Mutex::new(());

/// Through `ProcessManager` in `Containment::Subreaper`: a `setsid` grandchild and a
/// double-forked daemon of a job are killed and reaped when the job is killed, and when its
/// leader exits; the manager's process is a subreaper from `build` on.
#[test]
fn the_subreaper_mode_ends_a_jobs_orphans() {
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let pm = ProcessManager::builder()
        .containment(Containment::Subreaper)
        .grace(Duration::from_millis(300))
        .build()
        .unwrap();
    assert_eq!(pm.containment(), Containment::Subreaper);
    assert!(is_child_subreaper().unwrap());
    // Killed: the leader ignores SIGTERM, the setsid grandchild and the daemon left its group.
    let m = Marked::new("sr-kill");
    let script = format!(
        "{k} setsid-grandchild 300 {m} >/dev/null; ( setsid {k} sleep 300 {m} & ) ; \
         exec {k} ignore-term 300 {m}",
        k = kid(),
        m = m.marker
    );
    let id = pm
        .start_process(JobSpec::new("/bin/sh").args(["-c", &script]))
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || m.live().len() >= 3));
    let before: Vec<_> = m.live().into_iter().filter_map(pidfd).collect();
    pm.kill_process(id).unwrap();
    let rec = pm.wait(id).unwrap();
    assert_eq!(rec.status, JobStatus::Killed);
    assert_eq!(m.live(), Vec::<u32>::new(), "survivors after the kill");
    assert!(before.iter().all(exited));
    assert!(
        common::zombie_children().is_empty(),
        "adopted orphans left unreaped"
    );
    // The leader exits at once: what it left is ended with the job.
    let m = Marked::new("sr-exit");
    let script = format!("( setsid {} sleep 300 {} & ) ; sleep 0.3", kid(), m.marker);
    let rec = pm
        .run(JobSpec::new("/bin/sh").args(["-c", &script]))
        .unwrap();
    assert_eq!(rec.status, JobStatus::Finished, "{rec:?}");
    assert_eq!(m.live(), Vec::<u32>::new(), "survivors after the exit");
    drop(pm);
    set_child_subreaper(false).unwrap();
}

/// A job's grandchild that its parent left (setsid, then the parent exits) is re-parented to
/// this process while it is a child subreaper; `Adopted` finds it by the job's marker and ends
/// and reaps it by its pid, and leaves alone a child of the host's own that has no marker.
#[test]
fn the_subreaper_ends_an_orphaned_grandchild() {
    use procman::__contain::{marker_entry, MARKER_VAR};
    use std::io::BufRead;
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut m = Marked::new("subreaper");
    let token = m.marker.clone();
    set_child_subreaper(true).unwrap();
    assert!(is_child_subreaper().unwrap());
    assert_eq!(marker_entry("x"), format!("{MARKER_VAR}=x"));
    let mut job = std::process::Command::new(kid())
        .args(["setsid-grandchild", "300", &m.marker])
        .env(MARKER_VAR, &token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    m.leaders.push(job.id());
    let mut line = String::new();
    std::io::BufReader::new(job.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let orphan: u32 = line.trim().parse().unwrap();
    job.wait().unwrap();
    m.leaders.clear();
    // The host's own child, unmarked: never touched.
    let mut own = std::process::Command::new(kid())
        .args(["sleep", "300", &m.marker])
        .spawn()
        .unwrap();
    let me = std::process::id();
    assert!(
        eventually(
            Duration::from_secs(10),
            || matches!(proc_stat(orphan), Some((_, pp, _)) if pp == me)
        ),
        "the orphan was not re-parented to the subreaper"
    );
    let fd = pidfd(orphan).unwrap();
    let mut adopted = Adopted::new(&token);
    assert_eq!(adopted.scan(&|_| false).unwrap(), 1);
    assert_eq!(adopted.pids(), vec![orphan]);
    let ended = adopted
        .kill_all(&|_| false, Duration::from_secs(10))
        .unwrap();
    assert_eq!(ended, 1);
    assert!(exited(&fd));
    assert!(proc_stat(orphan).is_none(), "the orphan was not reaped");
    assert!(common::alive(own.id()), "the host's own child was touched");
    set_child_subreaper(false).unwrap();
    own.kill().unwrap();
    own.wait().unwrap();
}
