//! CPU time and peak memory of ended Slurm jobs from Slurm's accounting: one
//! `sacct -n -P -j ID,ID,... -o JobID,UserCPU,SystemCPU,MaxRSS` for the jobs that ended in one
//! round of the poller. Without accounting (`sacct` says it is disabled, or is missing) procman
//! asks no more and the records carry the wall time only.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::array::SlurmId;
use super::follow::one_line;
use super::SlurmOptions;
use crate::record::ResourceUsage;

/// What the accounting says of one job.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Accounted {
    pub(super) user: Option<Duration>,
    pub(super) system: Option<Duration>,
    /// The largest MaxRSS of the job's steps, in bytes.
    pub(super) peak: Option<u64>,
}

impl Accounted {
    pub(super) fn fill(&self, usage: &mut ResourceUsage) {
        usage.user_cpu = self.user.or(usage.user_cpu);
        usage.system_cpu = self.system.or(usage.system_cpu);
        usage.peak_memory = self.peak.or(usage.peak_memory);
    }
}

/// Asks `sacct` about `jobs`. `Err(true)`: accounting is not there (ask no more); `Err(false)`:
/// a failure that may pass (the database restarting).
pub(super) fn query(
    opts: &SlurmOptions,
    jobs: &[SlurmId],
) -> Result<HashMap<SlurmId, Accounted>, bool> {
    let list = jobs
        .iter()
        .map(SlurmId::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new(&opts.sacct)
        .args([
            "-n",
            "-P",
            "-o",
            "JobID,UserCPU,SystemCPU,MaxRSS",
            "-j",
            &list,
        ])
        .stdin(Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            log::info!(
                "cannot run {} ({e}): no CPU times or peak memory from Slurm",
                opts.sacct.display()
            );
            return Err(true);
        }
    };
    if !out.status.success() {
        let msg = one_line(&out.stderr);
        let gone = msg.contains("disabled");
        if gone {
            log::info!("Slurm has no accounting ({msg}): records carry the wall time only");
        } else {
            log::warn!("sacct failed: {msg}");
        }
        return Err(gone);
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `sacct -n -P -o JobID,UserCPU,SystemCPU,MaxRSS`: the job's own line gives the CPU
/// times, its steps' lines (`ID.batch`, `ID.0`) the peak memory.
pub(super) fn parse(text: &str) -> HashMap<SlurmId, Accounted> {
    let mut m: HashMap<SlurmId, Accounted> = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let [id, user, system, rss, ..] = f[..] else {
            continue;
        };
        let (base, step) = match id.split_once('.') {
            Some((b, s)) => (b, Some(s)),
            None => (id, None),
        };
        let Some(base) = SlurmId::parse(base) else {
            continue;
        };
        let a = m.entry(base).or_default();
        if step.is_none() {
            a.user = duration(user);
            a.system = duration(system);
        }
        if let Some(b) = bytes(rss) {
            a.peak = Some(a.peak.map_or(b, |p| p.max(b)));
        }
    }
    m
}

/// Slurm's `[D-][HH:]MM:SS[.mmm]`.
fn duration(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().ok()?, r),
        None => (0, s),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (h, m, sec) = match parts[..] {
        [m, s] => (0, m.parse::<u64>().ok()?, s),
        [h, m, s] => (h.parse::<u64>().ok()?, m.parse::<u64>().ok()?, s),
        _ => return None,
    };
    let sec: f64 = sec.parse().ok()?;
    let whole = days
        .saturating_mul(86_400)
        .saturating_add(h.saturating_mul(3_600))
        .saturating_add(m.saturating_mul(60));
    Duration::try_from_secs_f64(sec)
        .ok()
        .map(|d| d.saturating_add(Duration::from_secs(whole)))
}

/// Slurm's memory figures: a number with a K, M, G or T suffix (1024-based), or bytes.
fn bytes(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (num, mult) = match s.as_bytes()[s.len() - 1] {
        b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        b'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sacct_lines_give_cpu_times_and_peak_memory() {
        let m = parse(
            "2053|00:02.064|00:00.080|\n2053.batch|00:02.064|00:00.080|96888K\n\
             2054|1-02:03:04|01:00:00|\n2054.batch|||2G\n2054.0|||3.5G\nbad|x|y|z\n\
             77_3|00:01.000|00:00.000|\n77_3.batch|||1M\n",
        );
        assert_eq!(
            m[&SlurmId::from(2053)],
            Accounted {
                user: Some(Duration::from_millis(2064)),
                system: Some(Duration::from_millis(80)),
                peak: Some(96888 << 10),
            }
        );
        assert_eq!(
            m[&SlurmId::from(2054)].user,
            Some(Duration::from_secs(86_400 + 7_384))
        );
        assert_eq!(
            m[&SlurmId::from(2054)].system,
            Some(Duration::from_secs(3_600))
        );
        assert_eq!(m[&SlurmId::from(2054)].peak, Some(3758096384));
        let task = SlurmId::parse("77_3").unwrap();
        assert_eq!(m[&task].peak, Some(1 << 20));
        assert_eq!(duration(""), None);
        assert!(duration("99999999999999999-00:00:00").is_some());
        assert_eq!(bytes("12"), Some(12));
        assert_eq!(bytes("-1K"), None);
    }
}
