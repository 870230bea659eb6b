//! The baseline of `bench/run.sh`: what a careful program does without procman.
//!
//! ```text
//! cargo build --release --example bench_raw
//! bench_raw WORKLOAD N CONCURRENCY LOGDIR
//! ```
//!
//! CONCURRENCY threads take job numbers from a crossbeam channel; each job is a
//! `std::process::Command` whose stdout and stderr are one log file, `LOGDIR/job-<i>.log`
//! (handed to the child, nothing copied), stdin `/dev/null`; the thread waits for it with
//! `status()` and calls a trivial completion handler. No timeouts, no process groups, no
//! records: the cost of a spawn and a wait, and nothing else. The arguments are those of
//! `examples/bench_peer.rs` (procman's peer), so the two run the same jobs. Only the workload
//! `w1` (`/bin/true`) is known. Exits 0 when every job ran and exited 0, 1 otherwise.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn usage(program: &str) -> ! {
    eprintln!("usage: {program} w1 N CONCURRENCY LOGDIR");
    std::process::exit(2);
}

/// Runs job `i`: `/bin/true` writing into its own log file. True when it exited 0.
fn run_job(logdir: &std::path::Path, i: usize) -> bool {
    let Ok(log) = File::create(logdir.join(format!("job-{i}.log"))) else {
        return false;
    };
    let Ok(err) = log.try_clone() else {
        return false;
    };
    Command::new("/bin/true")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 || args[1] != "w1" {
        usage(&args[0]);
    }
    let (Ok(n), Ok(conc)) = (args[2].parse::<usize>(), args[3].parse::<usize>()) else {
        usage(&args[0]);
    };
    let logdir = PathBuf::from(&args[4]);
    if let Err(e) = std::fs::create_dir_all(&logdir) {
        eprintln!("cannot create {}: {e}", logdir.display());
        std::process::exit(2);
    }

    let t0 = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    // The trivial completion handler every peer calls once per job.
    let on_finish = {
        let (done, failed) = (done.clone(), failed.clone());
        move |ok: bool| {
            done.fetch_add(1, Ordering::Relaxed);
            if !ok {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let (tx, rx) = crossbeam_channel::unbounded::<usize>();
    for i in 0..n {
        tx.send(i).expect("the receiver is alive");
    }
    drop(tx);
    std::thread::scope(|s| {
        for _ in 0..conc.clamp(1, n.max(1)) {
            let (rx, logdir, on_finish) = (rx.clone(), &logdir, on_finish.clone());
            s.spawn(move || {
                for i in rx {
                    on_finish(run_job(logdir, i));
                }
            });
        }
    });
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "BENCH_SELF wall_s={:.3} done={} failed={failed}",
        t0.elapsed().as_secs_f64(),
        done.load(Ordering::Relaxed)
    );
    std::process::exit(i32::from(failed > 0));
}
