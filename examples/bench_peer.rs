//! procman as a peer of the job-manager benchmark harness (../shared/bench/README.md).
//!
//! ```text
//! cargo build --release --example bench_peer
//! bench_peer WORKLOAD N CONCURRENCY LOGDIR
//! ```
//!
//! Runs N jobs of WORKLOAD's command through procman's public API: a manager with
//! `limit(CONCURRENCY)`, one `JobSpec` per job (`log_file(LOGDIR/job-<i>.log)`,
//! `merge_error_into_log()`, stdin /dev/null (procman's default), the workload's timeout with
//! `grace(0)` so the kill is a SIGKILL at once), a trivial `on_finish` handler, then `wait_all`.
//! Last stderr line: `BENCH_SELF maxrss_kb=<VmHWM> utime_s= stime_s= wall_s= ...`.
//!
//! procman always starts a job as the leader of its own process group and kills the group, so
//! `BENCH_KILL=group` changes nothing here (it is accepted and reported).
//!
//! Environment switches (for measurements; unset = procman's defaults):
//! * `PROCMAN_OBSERVE=1`: attach a line observer (counts lines and bytes); the job still writes
//!   its log itself and one reader thread per job follows it (`ObserveMode::Files`, Linux);
//! * `PROCMAN_OBSERVE=pipes`: the same observer with `ObserveMode::Pipes`: output flows through
//!   pipes and two reader threads per job that copy it to the log;
//! * `PROCMAN_CLOSE_FDS=0|1`: `Builder::close_inherited_fds(false|true)`;
//! * `PROCMAN_PRIORITY=1`: give every job a priority (i % 7), the scheduling-option path;
//! * `PROCMAN_AFTER=1`: job i runs after job i-CONCURRENCY (one dependency chain per slot);
//! * `PROCMAN_WAIT=portable`: `WaitMode::Portable` instead of pidfds;
//! * `PROCMAN_SUBMIT=stream`: submit while running, keeping at most 3×CONCURRENCY jobs
//!   submitted and unfinished, instead of submitting all N at once;
//! * `PROCMAN_HOST_FD=1`: first open a descriptor a child would inherit (no `FD_CLOEXEC`), as
//!   servers and GUIs hold them;
//! * `PROCMAN_HOST_BLOCK=1`: first block SIGINT, SIGTERM and SIGHUP in the thread that builds
//!   the manager (so in its threads), as the `procman` tool does;
//! * `PROCMAN_SAMPLE=MS`: sample every running job's process group every MS milliseconds
//!   (`Builder::sample_interval`), to measure what live sampling costs;
//! * `PROCMAN_CONTAINMENT=cgroup|group|subreaper`: `Builder::containment` (unset: `Auto`, a
//!   cgroup per job where the host allows), to measure what a cgroup per job costs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procman::{JobSpec, JobStatus, ObserveMode, ProcessManager, Stream, WaitMode};

fn workload(name: &str) -> Option<(&'static [&'static str], Option<Duration>)> {
    let ms = Duration::from_millis;
    Some(match name {
        "w1" => (&["/bin/true"], None),
        "w2" => (
            &[
                "sh",
                "-c",
                "head -c 52428800 /dev/zero; head -c 5242880 /dev/zero >&2",
            ],
            None,
        ),
        "w3" => (&["head", "-c", "1073741824", "/dev/zero"], None),
        "w4" => (&["sleep", "30.0424242"], Some(ms(200))),
        "w5" => (
            &["sh", "-c", "sleep 30.0515151 & sleep 30.0525252"],
            Some(ms(200)),
        ),
        _ => return None,
    })
}

fn vm_hwm_kb() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(-1)
}

fn self_cpu() -> (f64, f64) {
    // SAFETY: getrusage fills a zeroed rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).map(|v| v == value).unwrap_or(false)
}

#[derive(Default)]
struct Stats {
    done: AtomicUsize,
    failed: AtomicUsize,
    timed_out: AtomicUsize,
    lines: AtomicU64,
    observed_bytes: AtomicU64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: {} WORKLOAD N CONCURRENCY LOGDIR", args[0]);
        std::process::exit(2);
    }
    let Some((argv, timeout)) = workload(&args[1]) else {
        eprintln!("unknown workload {}", args[1]);
        std::process::exit(2);
    };
    let n: usize = args[2].parse().expect("N");
    let conc: usize = args[3].parse().expect("CONCURRENCY");
    let logdir = PathBuf::from(&args[4]);
    std::fs::create_dir_all(&logdir).expect("create LOGDIR");
    let observe = env_is("PROCMAN_OBSERVE", "1") || env_is("PROCMAN_OBSERVE", "pipes");
    let priority = env_is("PROCMAN_PRIORITY", "1");
    let after = env_is("PROCMAN_AFTER", "1");
    let stream = env_is("PROCMAN_SUBMIT", "stream");
    let group = env_is("BENCH_KILL", "group");

    let _host_fd = env_is("PROCMAN_HOST_FD", "1").then(|| {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("/dev/null").expect("/dev/null");
        // SAFETY: F_SETFD on a descriptor we own: clears FD_CLOEXEC.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFD, 0) };
        f
    });
    if env_is("PROCMAN_HOST_BLOCK", "1") {
        // SAFETY: a local set, filled and installed as this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
    }

    let t0 = Instant::now();
    let mut builder = ProcessManager::builder().limit(conc.max(1));
    match std::env::var("PROCMAN_CONTAINMENT").as_deref() {
        Ok("cgroup") => builder = builder.containment(procman::Containment::Cgroup),
        Ok("group") => builder = builder.containment(procman::Containment::ProcessGroup),
        Ok("subreaper") => builder = builder.containment(procman::Containment::Subreaper),
        _ => {}
    }
    match std::env::var("PROCMAN_CLOSE_FDS").as_deref() {
        Ok("0") => builder = builder.close_inherited_fds(false),
        Ok("1") => builder = builder.close_inherited_fds(true),
        _ => {}
    }
    if env_is("PROCMAN_OBSERVE", "pipes") {
        builder = builder.observe_mode(ObserveMode::Pipes);
    }
    if env_is("PROCMAN_WAIT", "portable") {
        builder = builder.wait_mode(WaitMode::Portable);
    }
    if let Some(ms) = std::env::var("PROCMAN_SAMPLE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        builder = builder.sample_interval(Duration::from_millis(ms));
    }
    let manager = builder.build().expect("manager");
    let stats = Arc::new(Stats::default());
    let observer: procman::Observer = {
        let stats = stats.clone();
        Arc::new(move |_id, _stream: Stream, line: &[u8]| {
            stats.lines.fetch_add(1, Ordering::Relaxed);
            stats
                .observed_bytes
                .fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
        })
    };

    let make = |i: usize, ids: &[procman::JobId]| {
        let mut spec = JobSpec::new(argv[0])
            .args(&argv[1..])
            .log_file(logdir.join(format!("job-{i}.log")))
            .merge_error_into_log();
        if let Some(t) = timeout {
            spec = spec.timeout(t).grace(Duration::ZERO);
        }
        if observe {
            spec = spec.observer(observer.clone());
        }
        if priority {
            spec = spec.priority((i % 7) as i32);
        }
        if after && i >= conc {
            spec = spec.after(ids[i - conc]);
        }
        let stats = stats.clone();
        spec.on_finish(move |r| {
            stats.done.fetch_add(1, Ordering::Relaxed);
            match r.status {
                JobStatus::Finished => {}
                JobStatus::TimedOut => {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let mut ids = Vec::with_capacity(n);
    if stream {
        // At most 3×CONCURRENCY jobs submitted and unfinished: the handler count tells.
        for i in 0..n {
            while i >= stats.done.load(Ordering::Relaxed) + 3 * conc {
                std::thread::sleep(Duration::from_micros(200));
            }
            ids.push(manager.start_process(make(i, &ids)).expect("submit"));
        }
    } else {
        for i in 0..n {
            ids.push(manager.start_process(make(i, &ids)).expect("submit"));
        }
    }
    manager.wait_all();
    let wall = t0.elapsed().as_secs_f64();
    drop(manager);
    let (ut, st) = self_cpu();
    eprintln!(
        "BENCH_SELF maxrss_kb={} utime_s={ut:.3} stime_s={st:.3} wall_s={wall:.3} done={} failed={} timed_out={} observed_lines={} observed_bytes={} observe={} group={}",
        vm_hwm_kb(),
        stats.done.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.timed_out.load(Ordering::Relaxed),
        stats.lines.load(Ordering::Relaxed),
        stats.observed_bytes.load(Ordering::Relaxed),
        observe as u8,
        group as u8,
    );
}
