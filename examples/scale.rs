//! Scale figures for procman (issue 7): pending-job memory and submission rate at 100,000 jobs,
//! the dispatcher's latency from a child's exit to its handler, and what priorities and a
//! 10,000-job dependency graph cost the scheduler.
//!
//! ```text
//! cargo run --release --example scale -- [all|pending|latency|sched] [N]
//! ```
//!
//! * `pending [N=100000]`: a paused manager takes N jobs (`/bin/true`, a log file, stderr merged,
//!   a handler), plain and with priorities, then with a dependency on an earlier job. Prints the
//!   time per `start_process` and the manager's memory per pending job: heap bytes (a counting
//!   allocator: exact) and RSS growth (what the OS sees, allocator slack included).
//! * `latency [N=2000]`: 10 jobs running at a time (limit 10); each job is this program in
//!   `--child` mode, which sleeps 20..60 ms (so that the children's own start-up, ~1.5 ms of
//!   CPU each here, does not saturate the 2 cores), then writes the wall clock (ns) to its log
//!   and exits.
//!   The handler reads the same clock: latency = handler call − child's last instant (the
//!   child's exit and reaping included). p50/p90/p99/max.
//! * `sched [N=10000]`: N `/bin/true` jobs three ways: plain, random priorities, a random
//!   dependency graph (each job after 1–3 earlier ones). Wall and manager CPU per job, plus the
//!   lock-held time of one kill that cascades `DependencyFailed` through a whole N-job graph.
//!
//! Timings are figures, not assertions: they belong in DESIGN.md, never in tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use procman::{JobId, JobSpec, ProcessManager};

/// Counts live heap bytes (requested sizes; malloc's own headers are not counted).
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn heap() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(-1)
}

fn cpu_s() -> f64 {
    // SAFETY: getrusage fills a zeroed rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(ru.ru_utime) + s(ru.ru_stime)
}

/// The wall clock in ns: the only clock a record carries (`finished_at`), so child, worker and
/// handler stamps all use it (a clock step during the run would show as an outlier).
fn wall_ns(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// xorshift: deterministic "random" numbers without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn logdir(tag: &str) -> std::path::PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("procman-scale-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Plain,
    Priority,
    After,
}

fn pending(n: usize, shape: Shape) {
    let dir = logdir("pending");
    let m = ProcessManager::builder().limit(10).build().unwrap();
    m.pause().unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    // One job to depend on, so `After` jobs stay waiting rather than ready.
    let anchor = m.start_process(JobSpec::new("/bin/true")).unwrap();
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let (h0, r0) = (heap(), rss_kb());
    let specs: Vec<JobSpec> = (0..n)
        .map(|i| {
            let d = done.clone();
            let mut s = JobSpec::new("/bin/true")
                .log_file(dir.join(format!("job-{i}.log")))
                .merge_error_into_log()
                .on_finish(move |_| {
                    d.fetch_add(1, Ordering::Relaxed);
                });
            match shape {
                Shape::Plain => {}
                Shape::Priority => s = s.priority(rng.below(100) as i32),
                Shape::After => s = s.after(anchor),
            }
            s
        })
        .collect();
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for s in specs {
        ids.push(m.start_process(s).unwrap());
    }
    let dt = t.elapsed();
    let (h1, r1) = (heap(), rss_kb());
    let ids_bytes = (ids.capacity() * std::mem::size_of::<JobId>()) as isize;
    let name = match shape {
        Shape::Plain => "plain",
        Shape::Priority => "priority",
        Shape::After => "after(1 dep)",
    };
    println!(
        "| pending {name:<12} | {n} | {:.2} µs | {:.0} /s | {:.0} B | {:.0} B | {} |",
        dt.as_secs_f64() * 1e6 / n as f64,
        n as f64 / dt.as_secs_f64(),
        (h1 - h0 - ids_bytes) as f64 / n as f64,
        (r1 - r0) as f64 * 1024.0 / n as f64,
        load()
    );
    let t = Instant::now();
    drop(m); // cancels every pending job; every handler runs once
    let cancel = t.elapsed();
    assert_eq!(done.load(Ordering::Relaxed), n);
    eprintln!("  (cancelling {n} pending jobs and running their handlers: {cancel:.2?})");
    let _ = std::fs::remove_dir_all(&dir);
}

fn latency(n: usize) {
    let dir = logdir("latency");
    let me = std::env::current_exe().unwrap();
    let m = ProcessManager::builder().limit(10).build().unwrap();
    // (job, when its record became final (set under the manager's lock by the worker that
    // reaped it), when its handler was called): the wall clock, as the child's own stamp.
    let calls: Arc<Mutex<Vec<(JobId, u64, u64)>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let mut rng = Rng(12345);
    let mut logs = Vec::with_capacity(n);
    for i in 0..n {
        let log = dir.join(format!("job-{i}.log"));
        let c = calls.clone();
        let id = m
            .start_process(
                JobSpec::new(&me)
                    .args(["--child", &(20_000 + rng.below(40_000)).to_string()])
                    .log_file(&log)
                    .merge_error_into_log()
                    .on_finish(move |r| {
                        let now = wall_ns(std::time::SystemTime::now());
                        let fin = wall_ns(r.finished_at.unwrap());
                        c.lock().unwrap().push((r.id, fin, now));
                    }),
            )
            .unwrap();
        logs.push((id, log));
    }
    m.wait_all();
    let calls = calls.lock().unwrap();
    let at: std::collections::HashMap<JobId, (u64, u64)> =
        calls.iter().map(|&(id, f, h)| (id, (f, h))).collect();
    let exits: Vec<(JobId, u64)> = logs
        .iter()
        .filter_map(|(id, log)| {
            Some((*id, std::fs::read_to_string(log).ok()?.trim().parse().ok()?))
        })
        .collect();
    let show = |what: &str, mut lat: Vec<f64>| {
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "| {what}, 10 running | {} | p50 {:.0} µs | p90 {:.0} µs | p99 {:.0} µs | max {:.0} µs | {} |",
            lat.len(),
            q(0.5),
            q(0.9),
            q(0.99),
            lat[lat.len() - 1],
            load()
        );
    };
    let us = |a: u64, b: u64| (a as f64 - b as f64) / 1e3;
    show(
        "child exit → handler call",
        exits.iter().map(|(id, x)| us(at[id].1, *x)).collect(),
    );
    show(
        "child exit → record final (worker)",
        exits.iter().map(|(id, x)| us(at[id].0, *x)).collect(),
    );
    show(
        "record final → handler call (dispatcher hop)",
        exits.iter().map(|(id, _)| us(at[id].1, at[id].0)).collect(),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn sched(n: usize, shape: Shape) {
    let dir = logdir("sched");
    let m = ProcessManager::builder().limit(10).build().unwrap();
    let mut rng = Rng(777);
    let mut ids: Vec<JobId> = Vec::with_capacity(n);
    m.pause().unwrap();
    let t = Instant::now();
    for i in 0..n {
        let mut s = JobSpec::new("/bin/true")
            .log_file(dir.join(format!("job-{i}.log")))
            .merge_error_into_log()
            .on_finish(|_| {});
        match shape {
            Shape::Plain => {}
            Shape::Priority => s = s.priority(rng.below(100) as i32),
            Shape::After => {
                if i > 0 {
                    let k = 1 + rng.below(3) as usize;
                    for _ in 0..k {
                        s = s.after(ids[rng.below(i as u64) as usize]);
                    }
                }
            }
        }
        ids.push(m.start_process(s).unwrap());
    }
    let submit = t.elapsed();
    let (c0, t0) = (cpu_s(), Instant::now());
    m.resume().unwrap();
    m.wait_all();
    let (wall, cpu) = (t0.elapsed(), cpu_s() - c0);
    let name = match shape {
        Shape::Plain => "plain",
        Shape::Priority => "priorities",
        Shape::After => "graph (1-3 deps)",
    };
    println!(
        "| run {name:<16} | {n} | submit {:.2} µs/job | {:.0} jobs/s | mgr CPU {:.0} µs/job | {} |",
        submit.as_secs_f64() * 1e6 / n as f64,
        n as f64 / wall.as_secs_f64(),
        cpu * 1e6 / n as f64,
        load()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One kill that cancels a root and fails its whole graph: all under the manager's lock.
fn cascade(n: usize) {
    let m = ProcessManager::builder().limit(10).build().unwrap();
    m.pause().unwrap();
    let mut rng = Rng(4242);
    let root = m.start_process(JobSpec::new("/bin/true")).unwrap();
    let mut ids = vec![root];
    for i in 1..n {
        let k = 1 + rng.below(3) as usize;
        let mut s = JobSpec::new("/bin/true");
        for _ in 0..k {
            s = s.after(ids[rng.below(i as u64) as usize]);
        }
        ids.push(m.start_process(s).unwrap());
    }
    let t = Instant::now();
    m.kill_process(root).unwrap();
    let dt = t.elapsed();
    m.wait_all();
    println!(
        "| cascade: kill the root of a {n}-job graph | {:.2} ms under the lock ({:.2} µs/job) | {} |",
        dt.as_secs_f64() * 1e3,
        dt.as_secs_f64() * 1e6 / n as f64,
        load()
    );
}

fn child(us: &str) {
    let us: u64 = us.parse().unwrap_or(0);
    std::thread::sleep(Duration::from_micros(us));
    println!("{}", wall_ns(std::time::SystemTime::now()));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(args.get(2).map(String::as_str).unwrap_or("0"));
    }
    if args.get(1).map(String::as_str) == Some("--pending-one") {
        let shape = match args[2].as_str() {
            "priority" => Shape::Priority,
            "after" => Shape::After,
            _ => Shape::Plain,
        };
        return pending(args[3].parse().unwrap(), shape);
    }
    let what = args.get(1).map(String::as_str).unwrap_or("all");
    let n = |d: usize| args.get(2).and_then(|s| s.parse().ok()).unwrap_or(d);
    println!("load average at start: {}", load());
    // procman forks (pre_exec) instead of posix_spawn once the process has such descriptors.
    let leaky: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&fd| {
                    fd > 2 && unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC == 0
                })
                .map(|fd| fd.to_string())
                .collect()
        })
        .unwrap_or_default();
    println!(
        "inheritable descriptors >= 3 in this process: [{}] -> procman spawns with {}",
        leaky.join(", "),
        if leaky.is_empty() {
            "posix_spawn"
        } else {
            "fork + pre_exec (close_inherited_fds)"
        }
    );
    if matches!(what, "all" | "pending") {
        println!(
            "| what | N | per submission | submissions/s | heap per job | RSS per job | load |"
        );
        println!("|---|---|---|---|---|---|---|");
        // Each shape in a fresh process, so none reuses memory another freed.
        let k = n(100_000).to_string();
        for shape in ["plain", "priority", "after"] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--pending-one", shape, &k])
                .output()
                .expect("run myself");
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    if matches!(what, "all" | "latency") {
        latency(n(2000));
    }
    if matches!(what, "all" | "sched") {
        let k = n(10_000);
        sched(k, Shape::Plain);
        sched(k, Shape::Priority);
        sched(k, Shape::After);
        cascade(k);
    }
}
