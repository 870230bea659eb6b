//! "Output is never held in memory" (README, DESIGN.md "Output"), measured: the host's peak RSS
//! grows by less than 16 MiB while an observed job writes a 100 MB line or a multi-GiB stream,
//! in both observe modes.
//!
//! The peak is the process's `VmHWM` (`/proc/self/status`), which is process-wide: this test
//! binary holds one test, which runs the cases one after another, so nothing else runs in the
//! process meanwhile. Before each job the high-water mark is reset to the current RSS
//! (`/proc/self/clear_refs`, "5"), so each case's growth is measured from the RSS it starts at
//! (where the reset is not allowed, from the peak so far).
//!
//! The stream is 2 GiB by default (5-10 s per mode measured in a debug build on a loaded 2-core
//! machine); `PROCMAN_MEMORY_GIB=N` runs N GiB instead. The log files go to `/dev/shm` when it
//! has room (tmpfs pages are not the test process's RSS) and are deleted after each case.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use common::kid;
use procman::{JobSpec, JobStatus, ObserveMode, ProcessManager, Stream, OBSERVER_LINE_CAP};

const MIB: u64 = 1024 * 1024;
/// The most the host's peak RSS may grow over one job.
const BOUND: u64 = 16 * MIB;

/// A field of /proc/self/status in bytes (the kernel gives kB).
fn status_bytes(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kib * 1024
}

/// Resets the peak RSS to the current RSS (Linux 4.0+) and returns it. Where the reset is not
/// allowed, returns the peak so far: growth is then measured from it, which still shows any
/// buffering larger than the test process's earlier peak (a few MiB above its RSS here).
fn reset_peak() -> (u64, bool) {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    (status_bytes("VmHWM:"), reset)
}

/// What the observer was given, counted, never kept.
#[derive(Default)]
struct Counted {
    bytes: AtomicU64,
    pieces: AtomicU64,
    longest: AtomicUsize,
    stderr: AtomicU64,
}

impl Counted {
    fn observer(self: &Arc<Self>) -> impl Fn(procman::JobId, Stream, &[u8]) + Send + Sync {
        let c = self.clone();
        move |_, stream, piece| {
            if stream == Stream::Stderr {
                c.stderr.fetch_add(1, Ordering::Relaxed);
            }
            c.bytes.fetch_add(piece.len() as u64, Ordering::Relaxed);
            c.pieces.fetch_add(1, Ordering::Relaxed);
            c.longest.fetch_max(piece.len(), Ordering::Relaxed);
        }
    }
}

/// A directory for the big logs, removed when dropped: in /dev/shm when it has room for
/// `bytes` twice over, else under the system temp dir.
struct BigDir(PathBuf);

impl BigDir {
    fn new(bytes: u64) -> BigDir {
        let c = std::ffi::CString::new("/dev/shm").unwrap();
        // SAFETY: a valid C string and a zeroed statvfs for the kernel to fill.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        let room = (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
            .then(|| st.f_bavail as u64 * st.f_frsize as u64);
        let parent = if room.is_some_and(|r| r > 2 * bytes) {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let p = parent.join(format!("procman-test-memory-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        BigDir(p)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for BigDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `spec` observed by a counting observer; returns the record, what was observed, and
/// how much the peak RSS grew over the job.
fn measured(m: &ProcessManager, spec: JobSpec) -> (procman::JobRecord, Arc<Counted>, u64) {
    let counted = Arc::new(Counted::default());
    let spec = spec.observe(counted.observer());
    let (before, _) = reset_peak();
    let r = m.run(spec).unwrap();
    let peak = status_bytes("VmHWM:");
    (r, counted, peak.saturating_sub(before))
}

#[test]
fn observed_output_is_never_held_in_memory() {
    // The measurement itself: touching 32 MiB between a reset and a read shows as growth.
    let (_, reset) = reset_peak();
    if reset {
        let (before, _) = reset_peak();
        let v = vec![1u8; 32 * MIB as usize];
        std::hint::black_box(&v);
        let grown = status_bytes("VmHWM:").saturating_sub(before);
        assert!(grown >= 30 * MIB, "the peak did not see 32 MiB: {grown}");
    } else {
        eprintln!("cannot reset VmHWM (/proc/self/clear_refs): growth is measured from the peak");
    }
    let gib: u64 = std::env::var("PROCMAN_MEMORY_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // Lines of 1000 bytes (999 and a newline), a whole number of them.
    let line_len = 1000u64;
    let stream_bytes = gib * 1024 * MIB / line_len * line_len;
    let dir = BigDir::new(stream_bytes);
    let long_line = 100_000_000u64;
    for mode in [ObserveMode::Files, ObserveMode::Pipes] {
        let m = ProcessManager::builder()
            .observe_mode(mode)
            .build()
            .unwrap();
        // A warm-up job: the first job's one-off allocations (reader thread, buffers) are not
        // what this test is about, but they are under the bound anyway.
        m.run(JobSpec::new("true").observe(|_, _, _| {})).unwrap();

        // (a) One 100 MB line: the observer gets it in capped pieces, nothing holds it whole.
        let log = dir.join(&format!("line-{mode:?}.log"));
        let t = Instant::now();
        let (r, c, grown) = measured(
            &m,
            JobSpec::new(kid())
                .args(["long-line", &long_line.to_string()])
                .log_file(&log),
        );
        let size = std::fs::metadata(&log).unwrap().len();
        std::fs::remove_file(&log).unwrap();
        eprintln!(
            "{mode:?}: 100 MB line in {:?}, peak RSS +{:.1} MiB",
            t.elapsed(),
            grown as f64 / MIB as f64
        );
        assert!(
            grown < BOUND,
            "{mode:?}: a 100 MB line grew the peak RSS by {grown} bytes"
        );
        assert_eq!(
            r.status,
            JobStatus::Finished,
            "{mode:?}: {}",
            r.describe_end()
        );
        assert_eq!(size, long_line + 1);
        assert_eq!(c.bytes.load(Ordering::Relaxed), long_line, "{mode:?}");
        assert!(c.longest.load(Ordering::Relaxed) <= OBSERVER_LINE_CAP);

        // (b) A stream of GiBs in 1000-byte lines.
        let log = dir.join(&format!("stream-{mode:?}.log"));
        let line = "y".repeat(line_len as usize - 1);
        let t = Instant::now();
        let (r, c, grown) = measured(
            &m,
            JobSpec::new("sh")
                .args([
                    "-c",
                    "yes \"$1\" | head -c \"$2\"",
                    "sh",
                    &line,
                    &stream_bytes.to_string(),
                ])
                .log_file(&log),
        );
        let size = std::fs::metadata(&log).unwrap().len();
        std::fs::remove_file(&log).unwrap();
        eprintln!(
            "{mode:?}: {gib} GiB stream in {:?}, peak RSS +{:.1} MiB",
            t.elapsed(),
            grown as f64 / MIB as f64
        );
        assert!(
            grown < BOUND,
            "{mode:?}: a {gib} GiB stream grew the peak RSS by {grown} bytes"
        );
        assert_eq!(
            r.status,
            JobStatus::Finished,
            "{mode:?}: {}",
            r.describe_end()
        );
        let lines = stream_bytes / line_len;
        assert_eq!(size, stream_bytes);
        assert_eq!(c.pieces.load(Ordering::Relaxed), lines, "{mode:?}");
        assert_eq!(c.bytes.load(Ordering::Relaxed), stream_bytes - lines);
        assert_eq!(c.stderr.load(Ordering::Relaxed), 0);
    }
}
