//! Reading processes' figures from `/proc` (Linux): which processes are in a set of process
//! groups, and each one's CPU time, resident memory, threads and I/O counts. Elsewhere
//! [`scan_groups`] reports "unavailable". Reading only: nothing here signals or waits.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// One process of a scanned group, as `/proc/PID/stat` and `/proc/PID/io` showed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProcFigures {
    pub(crate) pid: u32,
    /// Its process group.
    pub(crate) pgrp: u32,
    /// Its start time in clock ticks since boot: with `pid`, names one process for good.
    pub(crate) start: u64,
    /// User + system CPU time of the process and of the children it waited for, in ticks.
    pub(crate) cpu_ticks: u64,
    pub(crate) threads: u32,
    pub(crate) rss_bytes: u64,
    /// `rchar` and `wchar` of `/proc/PID/io`, when readable (the owner's processes, or with
    /// `CAP_SYS_PTRACE`; kernels with task I/O accounting).
    pub(crate) io: Option<(u64, u64)>,
}

/// How many times `/proc` was scanned by this process (tests check that sampling off reads
/// nothing).
static SCANS: AtomicU64 = AtomicU64::new(0);

/// How many scans [`scan_groups`] has made so far.
#[cfg(test)]
pub(crate) fn proc_scans() -> u64 {
    SCANS.load(Ordering::Relaxed)
}

/// Held by the unit tests that scan `/proc` or count the scans.
#[cfg(test)]
pub(crate) static SCAN_TEST_LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// The parts of `/proc/PID/stat` that are used, from its text. `None` for text that is not a
/// stat line (a process that vanished mid-read, a truncated read).
pub(crate) fn parse_stat(pid: u32, text: &[u8], page: u64) -> Option<ProcFigures> {
    // The command name (field 2) is in parentheses and may contain anything, ')' included:
    // the fields that follow start after the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    // rest's fields, 0-based: field n of proc(5) is index n - 3.
    let f: Vec<&str> = rest.split_ascii_whitespace().take(22).collect();
    let num = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    let signed = |field: usize| -> Option<u64> {
        let v: i64 = f.get(field - 3)?.parse().ok()?;
        Some(v.max(0) as u64)
    };
    let cpu = [num(14)?, num(15)?, signed(16)?, signed(17)?]
        .iter()
        .fold(0u64, |a, &b| a.saturating_add(b));
    Some(ProcFigures {
        pid,
        pgrp: u32::try_from(signed(5)?).ok()?,
        start: num(22)?,
        cpu_ticks: cpu,
        threads: u32::try_from(signed(20)?).unwrap_or(u32::MAX),
        rss_bytes: signed(24)?.saturating_mul(page),
        io: None,
    })
}

/// `rchar` and `wchar` from the text of `/proc/PID/io`.
pub(crate) fn parse_io(text: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(text).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .parse()
            .ok()
    };
    Some((field("rchar")?, field("wchar")?))
}

/// The clock ticks per second that `/proc` counts CPU time in.
pub(crate) fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a system setting.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system setting.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// Linux: every process whose process group is one of `pgids` (sorted), with its figures,
/// appended to `out`: one pass over `/proc` whatever the number of groups, reading each
/// process's `stat` and, for members only, its `io`. A process that ends during the scan is
/// left out. Fails only when `/proc` cannot be listed. Never blocks on anything but `/proc`.
#[cfg(target_os = "linux")]
pub(crate) fn scan_groups(pgids: &[u32], out: &mut Vec<ProcFigures>) -> io::Result<()> {
    use std::fmt::Write;
    use std::io::Read;
    SCANS.fetch_add(1, Ordering::Relaxed);
    let page = page_size();
    let mut buf = Vec::with_capacity(512);
    let mut path = String::with_capacity(32);
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        path.clear();
        let _ = write!(path, "/proc/{pid}/stat");
        buf.clear();
        let read = std::fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut buf));
        let Some(mut figures) = read.ok().and_then(|_| parse_stat(pid, &buf, page)) else {
            continue;
        };
        if pgids.binary_search(&figures.pgrp).is_err() {
            continue;
        }
        path.truncate(path.len() - "stat".len());
        path.push_str("io");
        buf.clear();
        figures.io = std::fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .ok()
            .and_then(|_| parse_io(&buf));
        out.push(figures);
    }
    Ok(())
}

/// Not available here: no `/proc` to read.
#[cfg(not(target_os = "linux"))]
pub(crate) fn scan_groups(_pgids: &[u32], _out: &mut Vec<ProcFigures>) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "not available on this system",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_any_command_name() {
        let line = b"4242 (a) b (c)) S 1 4240 4240 0 -1 4194304 100 0 0 0 30 12 5 3 20 0 3 0 \
                     98765 1000000 250 18446744073709551615";
        let f = parse_stat(4242, line, 4096).unwrap();
        assert_eq!(f.pgrp, 4240);
        assert_eq!(f.cpu_ticks, 30 + 12 + 5 + 3);
        assert_eq!(f.threads, 3);
        assert_eq!(f.start, 98765);
        assert_eq!(f.rss_bytes, 250 * 4096);
        assert_eq!(parse_stat(1, b"1 (x) S 0 1", 4096), None);
        assert_eq!(parse_stat(1, b"", 4096), None);
    }

    #[test]
    fn io_parses() {
        let text = b"rchar: 10\nwchar: 20\nsyscr: 1\nread_bytes: 0\n";
        assert_eq!(parse_io(text), Some((10, 20)));
        assert_eq!(parse_io(b"syscr: 1\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn our_own_group_is_found() {
        let _one = SCAN_TEST_LOCK.lock();
        // SAFETY: getpgrp has no failure mode.
        let me = unsafe { libc::getpgrp() } as u32;
        let mut out = Vec::new();
        scan_groups(&[me], &mut out).unwrap();
        let own = out.iter().find(|f| f.pid == std::process::id()).unwrap();
        assert!(own.threads >= 1 && own.rss_bytes > 0);
        assert!(own.io.is_some());
    }
}
