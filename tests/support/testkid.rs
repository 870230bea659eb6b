//! `procman-testkid`: a program with hostile and measurable behaviours for procman's tests.
//!
//! Usage: `procman-testkid MODE [ARGS...]`, modes:
//! - `exit N`: exit with code N.
//! - `sleep SECS`: sleep, then exit 0.
//! - `ignore-term SECS`: ignore SIGTERM and SIGINT, print `ready`, sleep.
//! - `log-term SECS`: catch SIGTERM and SIGINT with a handler that writes `TERM` or `INT` (one
//!   line) to stdout and does nothing else, print `ready`, sleep: a program that ignores them
//!   and shows that it got them.
//! - `grandchild SECS`: fork a grandchild that sleeps SECS holding stdout and stderr; print its
//!   pid and exit at once.
//! - `setsid-grandchild SECS`: the same, but the grandchild calls setsid() first (it escapes
//!   the job's process group); its pid is printed only once it has.
//! - `tree DEPTH WIDTH SECS`: fork a tree of processes (each node forks WIDTH children down to
//!   DEPTH), every node prints its pid and sleeps; the root exits at once.
//! - `fds`: print the open file descriptors, one per line (the listing's own excluded).
//! - `write OUT ERR`: write OUT bytes to stdout and ERR bytes to stderr (bytes 0..=255 cycling).
//! - `cat`: copy stdin to stdout.
//! - `lines N`: print `line 1` .. `line N`.
//! - `long-line BYTES`: print one line of BYTES `x` bytes.
//! - `segv`: die by SIGSEGV.
//! - `alloc MIB`: allocate and touch MIB mebibytes, then exit 0.
//! - `close-stdout`: close stdout, write `still here` to stderr, exit 0.
//! - `exhaust-fds`: open /dev/null until EMFILE, print how many, exit 0.
//! - `spin SECS`: burn CPU for SECS seconds.
//! - `spin-cpu SECS`: burn CPU until this process has used SECS seconds of CPU time (however
//!   loaded the machine is).
//! - `env NAME`: print the value of NAME, or `<unset>`.
//! - `pwd`: print the working directory (its raw bytes).
//! - `args`: print each argument after the mode as raw bytes, one per line (non-UTF-8 kept).
//! - `meet DIR NAME N SECS`: create the file DIR/NAME, then wait until DIR holds N entries
//!   (N jobs running at once met there); exit 0 once they do, 3 if SECS pass first.
//! - `ready-sleep SECS`: print `ready`, then sleep (a job that is surely running).
//! - `orphan-burn CPU MIB`: a known load in a process the job never waits for: fork a child
//!   that forks the burner and exits at once (the burner is re-parented outside the job, in
//!   its process group still); the burner touches MIB mebibytes, writes 1 MiB to /dev/null,
//!   burns CPU seconds of CPU time, and exits. The job's own process prints the burner's pid,
//!   waits for its end (its pipe's EOF) without using CPU, and exits 0.
//! - `cycles M SECS`: print `refinement cycle N of M` for N in 1..=M, SECS apart, each
//!   followed by a line of noise.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn arg(args: &[String], i: usize) -> String {
    args.get(i).cloned().unwrap_or_else(|| {
        eprintln!("procman-testkid: missing argument {i}");
        std::process::exit(2)
    })
}

fn num(args: &[String], i: usize) -> f64 {
    arg(args, i).parse().unwrap_or_else(|_| {
        eprintln!("procman-testkid: argument {i} is not a number");
        std::process::exit(2)
    })
}

fn sleep(secs: f64) {
    std::thread::sleep(Duration::from_secs_f64(secs));
}

fn fork() -> i32 {
    // SAFETY: the test program is single-threaded when it forks.
    unsafe { libc::fork() }
}

/// The `log-term` handler: writes one line naming the signal; write(2) is async-signal-safe.
extern "C" fn log_signal(sig: libc::c_int) {
    let line: &[u8] = if sig == libc::SIGTERM {
        b"TERM\n"
    } else {
        b"INT\n"
    };
    // SAFETY: writes from a valid static buffer to fd 1.
    unsafe { libc::write(1, line.as_ptr().cast(), line.len()) };
}

/// This process's CPU time so far.
fn cpu_used() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is valid, writable memory.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `orphan-burn`: see the header.
fn orphan_burn(cpu: f64, mib: usize) {
    let mut fds = [0; 2];
    // SAFETY: fds is valid for two ints.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        std::process::exit(2);
    }
    let [read_end, write_end] = fds;
    let middle = fork();
    if middle == 0 {
        if fork() == 0 {
            // The burner: holds the pipe's write end until it exits.
            // SAFETY: closes this process's copy of the read end.
            unsafe { libc::close(read_end) };
            println!("{}", std::process::id());
            let _ = std::io::stdout().flush();
            let n = mib * 1024 * 1024;
            let mut v = vec![0u8; n];
            for i in (0..n).step_by(4096) {
                v[i] = 1;
            }
            if let Ok(mut null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
                let _ = null.write_all(&vec![0u8; 1024 * 1024]);
            }
            let want = Duration::from_secs_f64(cpu);
            let mut x = 0u64;
            while cpu_used() < want {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            std::hint::black_box(&v);
            // SAFETY: ends the burner without running the parent's exit handlers twice.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: the middle process ends at once: the burner is re-parented.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closes this process's write end; reaps the middle process, which exits at once.
    unsafe {
        libc::close(write_end);
        libc::waitpid(middle, std::ptr::null_mut(), 0);
    }
    let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(read_end) };
    let _ = f.read_to_end(&mut Vec::new());
}

fn tree(depth: u32, width: u32, secs: f64) {
    println!("{}", std::process::id());
    let _ = std::io::stdout().flush();
    if depth == 0 {
        return;
    }
    for _ in 0..width {
        if fork() == 0 {
            tree(depth - 1, width, secs);
            sleep(secs);
            std::process::exit(0);
        }
    }
}

fn main() {
    // Arguments may be non-UTF-8 (`args` mode); the other modes read them lossily.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args: Vec<String> = raw
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mode = arg(&args, 1);
    let mut out = std::io::stdout();
    match mode.as_str() {
        "exit" => std::process::exit(num(&args, 2) as i32),
        "sleep" => sleep(num(&args, 2)),
        "ignore-term" => {
            // SAFETY: setting a signal to SIG_IGN is always sound.
            unsafe {
                libc::signal(libc::SIGTERM, libc::SIG_IGN);
                libc::signal(libc::SIGINT, libc::SIG_IGN);
            }
            println!("ready");
            let _ = out.flush();
            sleep(num(&args, 2));
        }
        "log-term" => {
            // SAFETY: installs a handler that only calls write(2). SA_RESTART: the sleep below
            // goes on (std's sleep resumes after EINTR anyway).
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = log_signal as *const () as usize;
                sa.sa_flags = libc::SA_RESTART;
                libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
                libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
            }
            println!("ready");
            let _ = out.flush();
            sleep(num(&args, 2));
        }
        "grandchild" | "setsid-grandchild" => {
            let secs = num(&args, 2);
            // The grandchild reports through a pipe once it is set up (after setsid), so the
            // parent exits only then: no race between setsid and the leftover kill.
            let mut fds = [0; 2];
            // SAFETY: fds has room for two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let pid = fork();
            if pid == 0 {
                if mode == "setsid-grandchild" {
                    // SAFETY: setsid has no preconditions.
                    unsafe { libc::setsid() };
                }
                // SAFETY: writes one byte from a valid buffer; closes our own descriptors.
                unsafe {
                    libc::write(fds[1], b"x".as_ptr().cast(), 1);
                    libc::close(fds[0]);
                    libc::close(fds[1]);
                }
                sleep(secs);
                std::process::exit(0);
            }
            let mut b = 0u8;
            // SAFETY: reads one byte into a valid buffer.
            unsafe { libc::read(fds[0], (&mut b as *mut u8).cast(), 1) };
            println!("{pid}");
        }
        "tree" => {
            tree(num(&args, 2) as u32, num(&args, 3) as u32, num(&args, 4));
        }
        "fds" => {
            let dir = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd");
            let mut fds: Vec<i32> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            fds.sort();
            for fd in fds {
                // The directory stream's own descriptor is gone once read_dir is done.
                // SAFETY: F_GETFD only queries.
                if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
                    println!("{fd}");
                }
            }
        }
        "write" => {
            let pattern: Vec<u8> = (0..=255u8).collect();
            let emit = |n: u64, w: &mut dyn Write| {
                let mut left = n;
                while left > 0 {
                    let k = left.min(256) as usize;
                    w.write_all(&pattern[..k]).expect("write");
                    left -= k as u64;
                }
            };
            emit(num(&args, 2) as u64, &mut out);
            out.flush().expect("flush");
            emit(num(&args, 3) as u64, &mut std::io::stderr());
        }
        "cat" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).expect("stdin");
            out.write_all(&buf).expect("stdout");
        }
        "lines" => {
            for i in 1..=num(&args, 2) as u64 {
                writeln!(out, "line {i}").expect("stdout");
            }
        }
        "long-line" => {
            let n = num(&args, 2) as usize;
            out.write_all(&vec![b'x'; n]).expect("stdout");
            out.write_all(b"\n").expect("stdout");
        }
        "segv" => {
            // SAFETY: raising a signal is sound; SIGSEGV's default action ends the process.
            // Rust's runtime installs a SIGSEGV handler (stack-overflow detection) that ignores
            // a raised signal: restore the default action first.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
        }
        "alloc" => {
            let n = num(&args, 2) as usize * 1024 * 1024;
            let mut v = vec![0u8; n];
            for i in (0..n).step_by(4096) {
                v[i] = 1;
            }
            std::hint::black_box(&v);
        }
        "close-stdout" => {
            // SAFETY: closing fd 1 only affects this process.
            unsafe { libc::close(1) };
            eprintln!("still here");
        }
        "exhaust-fds" => {
            let mut n = 0;
            let mut keep = Vec::new();
            while let Ok(f) = std::fs::File::open("/dev/null") {
                keep.push(f);
                n += 1;
            }
            println!("{n}");
        }
        "spin" => {
            let end = Instant::now() + Duration::from_secs_f64(num(&args, 2));
            let mut x = 0u64;
            while Instant::now() < end {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "spin-cpu" => {
            let want = Duration::from_secs_f64(num(&args, 2));
            let used = || {
                let mut ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: ts is valid, writable memory.
                unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
                Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
            };
            let mut x = 0u64;
            while used() < want {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
        }
        "env" => {
            let name = arg(&args, 2);
            match std::env::var_os(&name) {
                Some(v) => println!("{}", v.to_string_lossy()),
                None => println!("<unset>"),
            }
        }
        "pwd" => {
            use std::os::unix::ffi::OsStrExt;
            let dir = std::env::current_dir().expect("cwd");
            out.write_all(dir.as_os_str().as_bytes()).expect("stdout");
            out.write_all(b"\n").expect("stdout");
        }
        "args" => {
            use std::os::unix::ffi::OsStrExt;
            for a in &raw[2..] {
                out.write_all(a.as_bytes()).expect("stdout");
                out.write_all(b"\n").expect("stdout");
            }
        }
        "meet" => {
            let dir = std::path::PathBuf::from(arg(&args, 2));
            std::fs::write(dir.join(arg(&args, 3)), b"").expect("the meeting marker");
            let n = num(&args, 4) as usize;
            let end = Instant::now() + Duration::from_secs_f64(num(&args, 5));
            // The others' markers are files, not signals: poll the directory.
            while std::fs::read_dir(&dir).map_or(0, |d| d.count()) < n {
                if Instant::now() > end {
                    println!("alone");
                    std::process::exit(3);
                }
                sleep(0.005);
            }
            println!("met");
        }
        "ready-sleep" => {
            println!("ready");
            let _ = out.flush();
            sleep(num(&args, 2));
        }
        "orphan-burn" => orphan_burn(num(&args, 2), num(&args, 3) as usize),
        "cycles" => {
            let m = num(&args, 2) as u32;
            for n in 1..=m {
                sleep(num(&args, 3));
                println!("refinement cycle {n} of {m}");
                println!("R factor 0.{n}");
                let _ = out.flush();
            }
        }
        other => {
            eprintln!("procman-testkid: unknown mode {other}");
            std::process::exit(2);
        }
    }
}
