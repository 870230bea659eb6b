//! What putting each job in its own cgroup costs per spawn (issue 15): `/bin/true` N times
//! (each reaped before the next) on each path, wall time and this process's CPU per spawn.
//!
//! ```text
//! cargo run --release --example spawn_cost -- [N=2000] [RSS_MIB=0]
//! ```
//!
//! Linux, as root (or in a delegated cgroup). RSS_MIB > 0 first allocates and touches that much
//! memory, to show how a fork's cost grows with the parent's size (`posix_spawn`'s vfork does
//! not). The paths:
//! * `posix_spawn`: glibc's (`clone(CLONE_VM | CLONE_VFORK)`); procman's process-group path
//!   where `clone3` is refused or off x86_64.
//! * `clone3 vfork, no cgroup`: procman's process-group path on x86_64: the cgroup path's
//!   child without the cgroup.
//! * `clone3 vfork into cgroup`: `clone3(CLONE_VM | CLONE_VFORK | CLONE_INTO_CGROUP)`, the
//!   child on its own stack until it execs (the cgroup path on x86_64).
//! * `clone3 fork into cgroup`: `clone3(CLONE_INTO_CGROUP)`, fork semantics.
//! * `fork + write cgroup.procs`: the fallback for kernels without `CLONE_INTO_CGROUP`.
//! * `std Command + pre_exec`: std's fork path with a hook writing `0` to `cgroup.procs`.
//! * `+ cgroup per job`: the cgroup path as a job runs it: create the job's cgroup, spawn into
//!   it, reap, remove the cgroup.
//!
//! Figures, not assertions.

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn main() {
    use procman::__contain::{CgroupRoot, Entry, PlainSpawn};
    use std::time::{Duration, Instant};

    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let rss: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let ballast: Vec<u8> = vec![1u8; rss << 20];
    std::hint::black_box(&ballast);
    let root = match CgroupRoot::discover() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    };
    let plain = PlainSpawn::new(&["/bin/true"], [None, None, None]).expect("plan");
    let shared = root.job().expect("job cgroup");
    let cpu_of = |who: libc::c_int| {
        // SAFETY: ru is valid writable memory.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    // (this process, its reaped children)
    let cpu = || (cpu_of(libc::RUSAGE_SELF), cpu_of(libc::RUSAGE_CHILDREN));
    let reap = |pid: u32| {
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        assert_eq!(status, 0, "/bin/true failed");
    };
    let measure = |name: &str, spawn: &mut dyn FnMut()| {
        for _ in 0..50 {
            spawn(); // warm up
        }
        let (c0, t0) = (cpu(), Instant::now());
        for _ in 0..n {
            spawn();
        }
        let (wall, c1) = (t0.elapsed(), cpu());
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "{name:<28} {:>8.1} µs wall {:>7.1} µs CPU parent {:>7.1} µs CPU child",
            per(wall),
            per(c1.0.saturating_sub(c0.0)),
            per(c1.1.saturating_sub(c0.1)),
        );
    };
    println!("{n} spawns of /bin/true each, parent RSS ballast {rss} MiB");
    measure("posix_spawn", &mut || reap(plain.posix_spawn().unwrap()));
    measure("clone3 vfork, no cgroup", &mut || {
        reap(plain.spawn().unwrap())
    });
    measure("std Command", &mut || {
        let status = std::process::Command::new("/bin/true")
            .spawn()
            .unwrap()
            .wait()
            .unwrap();
        assert!(status.success());
    });
    measure("clone3 vfork into cgroup", &mut || {
        reap(plain.spawn_via(&shared, Entry::Vfork).unwrap())
    });
    measure("clone3 fork into cgroup", &mut || {
        reap(plain.spawn_via(&shared, Entry::Clone3).unwrap())
    });
    measure("fork + write cgroup.procs", &mut || {
        reap(plain.spawn_via(&shared, Entry::Fork).unwrap())
    });
    measure("std Command + pre_exec", &mut || {
        use std::os::unix::process::CommandExt;
        let fd = shared.procs_fd();
        let mut cmd = std::process::Command::new("/bin/true");
        cmd.process_group(0);
        // SAFETY: the hook only makes one write(2).
        unsafe { cmd.pre_exec(move || procman::__contain::enter_from_child(fd)) };
        let status = cmd.spawn().unwrap().wait().unwrap();
        assert!(status.success());
    });
    measure("+ cgroup per job (vfork)", &mut || {
        let mut cg = root.job().unwrap();
        reap(plain.spawn_in(&cg).unwrap());
        cg.remove().unwrap();
    });
    measure("cgroup create + remove only", &mut || {
        let mut cg = root.job().unwrap();
        cg.remove().unwrap();
    });
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn main() {
    eprintln!("spawn_cost: Linux with glibc only");
}
