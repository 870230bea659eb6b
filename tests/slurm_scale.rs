//! Issue 13: "a 10,000-job array in flight costs the manager a bounded number of threads and
//! ≤ 1 KiB of memory per job", against the real one-node Slurm.
//!
//! `PROCMAN_SCALE_JOBS` jobs (default 10,000) go to Slurm as arrays (`SlurmOptions::array`),
//! held (`sbatch --hold`) so that all of them stay queued while they are counted; a cancelling
//! shutdown then cancels them all. Asserted: every job queued, in arrays of 100 jobs or more
//! on average (each closes when full, 1,000, or after its 500 ms gathering window), a
//! bounded number of threads, nothing left in Slurm, and at most [`HEAP_PER_JOB`] (1 KiB) of
//! the manager's heap per job in flight: this binary's global allocator counts the bytes live
//! before the first `start_process` and, once all are queued, every 100 ms for 3 s: the
//! lowest sample is what the manager keeps (the job's table entry, record and core, the
//! poller's entry), the highest (printed) adds a poll round's transient `squeue` answer; the
//! specs' own memory is not counted, their vector is kept and their log paths handed over
//! without spare capacity. RSS per job is printed only.
//! The CI cluster's `MaxJobCount` is 100,000 (`.ci/start-slurm.sh`): Slurm's default 10,000
//! also counts the finished jobs it keeps for `MinJobAge` (an hour), and refused part of a
//! 10,000 run.
//!
//! `#[ignore = "needs Slurm"]` like tests/slurm.rs: `cargo test --test slurm_scale --
//! --ignored --nocapture` after `.ci/start-slurm.sh` (`.ci/run` does).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use procman::slurm::SlurmOptions;
use procman::{JobId, JobSpec, JobStatus, ProcessManager, ShutdownMode};

/// Issue 13: "≤ 1 KiB of memory per job" in flight.
const HEAP_PER_JOB: isize = 1024;

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn jobs_wanted() -> usize {
    std::env::var("PROCMAN_SCALE_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn threads_now() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn vm_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn slurm_up() {
    let ok = Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    assert!(
        ok,
        "no Slurm is reachable: start one with `sudo .ci/start-slurm.sh`"
    );
}

#[test]
#[ignore = "needs Slurm: bash .ci/start-slurm.sh, then cargo test --test slurm_scale -- --ignored"]
fn array_jobs_in_flight_hold_a_bounded_number_of_threads() {
    slurm_up();
    #[allow(non_snake_case)]
    let N = jobs_wanted();
    let dir = std::env::temp_dir().join(format!("procman-slurm-scale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("procman-scale-{}", std::process::id());
    let threads_before = threads_now();
    let m = ProcessManager::builder()
        .limit(N)
        .slurm(
            SlurmOptions::new()
                .array(1000)
                .sbatch_arg("--hold")
                .sbatch_arg(format!("--job-name={name}")),
        )
        .build()
        .unwrap();
    // The jobs' specs are made first: what is counted is what the manager keeps. Their vector
    // stays allocated (drained, not consumed) and their log paths have no spare capacity
    // (`join` leaves some), so that freeing neither is counted as the manager's saving.
    let mut specs: Vec<JobSpec> = (0..N)
        .map(|i| {
            let log = dir.join(format!("job-{i}.log")).into_boxed_path();
            JobSpec::new("true").log_file(PathBuf::from(log))
        })
        .collect();
    let mut ids: Vec<JobId> = Vec::with_capacity(N);
    let (heap_before, rss_before) = (LIVE.load(Ordering::Relaxed), vm_rss());
    for spec in specs.drain(..) {
        ids.push(m.start_process(spec).unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut most = threads_now();
    loop {
        most = most.max(threads_now());
        let s = m.snapshot();
        if s.count(JobStatus::Queued) == N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all {N} queued within 600 s: {s:?}"
        );
        // Polling the manager's snapshot for a count (no event says "all queued").
        std::thread::sleep(Duration::from_millis(100));
    }
    // A few poller rounds over all of them (their squeue answers are transient memory).
    let settle = Instant::now() + Duration::from_secs(3);
    // The heap is sampled meanwhile: what the manager keeps is the lowest sample (between
    // rounds); a round's squeue answer adds a transient peak, printed too.
    let (mut heap, mut peak) = (isize::MAX, 0);
    while Instant::now() < settle {
        most = most.max(threads_now());
        let live = LIVE.load(Ordering::Relaxed) - heap_before;
        (heap, peak) = (heap.min(live), peak.max(live));
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss = vm_rss().saturating_sub(rss_before);
    drop(specs);
    // Each array's id and how many jobs it holds.
    let mut arrays: std::collections::BTreeMap<u32, usize> = Default::default();
    for &id in &ids {
        if let Some(pid) = m.job_data(id).ok().and_then(|r| r.pid) {
            *arrays.entry(pid).or_default() += 1;
        }
    }
    eprintln!(
        "{N} array jobs in flight ({} arrays): {} more threads, heap {} B per job (during a \
         poll round up to {} B), RSS {} B per job",
        arrays.len(),
        most - threads_before,
        heap / N as isize,
        peak / N as isize,
        rss / N as u64
    );
    let t = Instant::now();
    m.shutdown(ShutdownMode::Cancel, None);
    eprintln!("cancelling shutdown: {:.1} s", t.elapsed().as_secs_f64());
    let sizes: Vec<usize> = arrays.values().copied().collect();
    eprintln!("jobs per array: {sizes:?}");
    let left = Command::new("squeue")
        .args(["-h", "-r", "-n", &name, "-o", "%i"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout).lines().count();
    if left > 0 {
        let _ = Command::new("scancel").args(["-n", &name]).status();
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(
        heap / N as isize <= HEAP_PER_JOB,
        "{} B of heap per job in flight, over {HEAP_PER_JOB}",
        heap / N as isize
    );
    // Arrays close when full (1,000) or after their 500 ms gathering window: a stream of
    // jobs arriving slower than 2,000 a second fills them in part. A job each would be N.
    assert!(
        arrays.len() <= N.div_ceil(100),
        "{} arrays for {N} jobs: {sizes:?}",
        arrays.len()
    );
    assert!(
        most - threads_before <= 16,
        "{} threads for {N} jobs in flight",
        most - threads_before
    );
    assert_eq!(left, 0, "jobs left in Slurm after the cancelling shutdown");
}
