//! Shared helpers for procman's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The hostile helper program (tests/support/testkid.rs), a binary of the library package, so
/// only the library's tests have it; the CLI crate's tests include this module too but never
/// call this.
pub fn kid() -> &'static str {
    match option_env!("CARGO_BIN_EXE_procman-testkid") {
        Some(path) => path,
        None => panic!("procman-testkid is built for the library package's tests only"),
    }
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "procman-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fields of /proc/PID/stat: (state, ppid, pgrp).
pub fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Live (not zombie) processes whose process group is `pgid`.
pub fn live_in_group(pgid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| matches!(proc_stat(p), Some((s, _, g)) if g == pgid && s != 'Z' && s != 'X'))
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((s, _, _)) if s != 'Z' && s != 'X')
}

/// Zombie children of this test process.
pub fn zombie_children() -> Vec<u32> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&p| matches!(proc_stat(p), Some(('Z', pp, _)) if pp == me))
        .collect()
}

/// Children (any state) of this test process.
pub fn children() -> Vec<u32> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&p| matches!(proc_stat(p), Some((_, pp, _)) if pp == me))
        .collect()
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Polls `cond` until it holds or `limit` passes. For conditions the kernel offers no way to
/// wait for (a SIGKILLed process disappearing from /proc); the limit is a generous bound.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The byte pattern `procman-testkid write` produces: n bytes of 0..=255 cycling.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 256) as u8).collect()
}

/// A sleep length no other process on the machine uses (30 s and a unique fraction), so a
/// process can be found by its exact argv even after its pid was reused by someone else.
pub fn marker_secs() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "30.{}{:04}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Live (not zombie) processes whose argv is exactly `argv`.
pub fn live_with_argv(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    all_pids()
        .into_iter()
        .filter(|&p| alive(p))
        .filter(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

/// The committed fuzz corpus of `target` (`fuzz/corpus/<target>/*` at the repository root:
/// the library package's folder, the CLI crate's parent), sorted; fails the test if it is
/// missing or empty.
pub fn corpus(target: &str) -> Vec<PathBuf> {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = if crate_dir.join("fuzz").is_dir() {
        crate_dir
    } else {
        crate_dir.parent().expect("the CLI crate's parent folder")
    };
    let dir = root.join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("read the corpus directory").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: no corpus inputs", dir.display());
    files
}

/// The text of a panic payload (`String` or `&str`), or a placeholder.
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("(not a text panic)")
}
