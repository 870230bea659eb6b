//! `--halt`: GNU parallel's rule for when a batch stops early, and its exit status.
//!
//! `--halt WHEN,WHY=N` or `WHEN,WHY=P%`: WHEN is `soon` (start no new job, let running ones
//! finish) or `now` (also kill the running ones); WHY is `fail`, `success` or `done` (jobs that
//! failed, succeeded, or finished either way); N a count, P a percentage of all the batch's
//! jobs. Also parallel's short forms: `0`/`never`, `1` = `soon,fail=1`, `2` = `now,fail=1`,
//! `-1` = `soon,success=1`, `-2` = `now,success=1`, `P%` = `soon,fail=P%`; and procman's own
//! `soon` and `now` (`fail=1`), and a bare `--halt` (`soon,fail=1`).

/// Whether running jobs are killed when the batch halts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Start no new job; running jobs finish.
    Soon,
    /// Kill the running jobs too.
    Now,
}

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    Fail,
    Success,
    Done,
}

/// How many.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    Count(u64),
    /// A percentage (0 < p ≤ 100) of all the batch's jobs.
    Percent(f64),
}

/// One `--halt` rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    pub when: When,
    pub why: Why,
    pub threshold: Threshold,
}

/// Whether a word after `--halt` (separated by a space) is its value rather than the job file.
pub fn looks_like_value(s: &str) -> bool {
    matches!(s, "never" | "soon" | "now" | "0" | "1" | "2" | "-1" | "-2")
        || s.starts_with("soon,")
        || s.starts_with("now,")
        || (s.ends_with('%') && s[..s.len() - 1].parse::<f64>().is_ok())
}

/// Parses a `--halt` value; `Ok(None)` for `never`/`0`.
pub fn parse(s: &str) -> Result<Option<Rule>, String> {
    let rule = |when, why, threshold| {
        Ok(Some(Rule {
            when,
            why,
            threshold,
        }))
    };
    match s {
        "never" | "0" => return Ok(None),
        "soon" | "1" => return rule(When::Soon, Why::Fail, Threshold::Count(1)),
        "now" | "2" => return rule(When::Now, Why::Fail, Threshold::Count(1)),
        "-1" => return rule(When::Soon, Why::Success, Threshold::Count(1)),
        "-2" => return rule(When::Now, Why::Success, Threshold::Count(1)),
        _ => {}
    }
    let expected = || {
        format!(
            "option --halt: expected WHEN,WHY=N or WHEN,WHY=P% (WHEN: soon or now; WHY: fail, \
             success or done), or never, soon, now, 0, 1, 2, -1, -2, P%; got {s:?}"
        )
    };
    let (when, rest) = match s.split_once(',') {
        Some(("soon", rest)) => (When::Soon, rest),
        Some(("now", rest)) => (When::Now, rest),
        Some(_) => return Err(expected()),
        // `P%` alone: soon,fail=P%.
        None => (When::Soon, s),
    };
    let (why, n) = match rest.split_once('=') {
        Some(("fail", n)) => (Why::Fail, n),
        Some(("success", n)) => (Why::Success, n),
        Some(("done", n)) => (Why::Done, n),
        None if rest.ends_with('%') && when == When::Soon && rest == s => (Why::Fail, rest),
        _ => return Err(expected()),
    };
    let threshold = match n.strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Threshold::Percent(p),
            _ => {
                return Err(format!(
                    "option --halt: {n:?} is not a percentage in (0, 100]"
                ))
            }
        },
        None => match n.trim().parse::<u64>() {
            Ok(c) if c > 0 => Threshold::Count(c),
            _ => return Err(format!("option --halt: {n:?} is not a count of at least 1")),
        },
    };
    rule(when, why, threshold)
}

/// What has finished so far, counted as the rule needs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub failed: u64,
    pub succeeded: u64,
}

impl Rule {
    /// Whether the rule holds after `tally`, of `total` jobs (known when percentages are used).
    pub fn met(&self, tally: Tally, total: u64) -> bool {
        let n = match self.why {
            Why::Fail => tally.failed,
            Why::Success => tally.succeeded,
            Why::Done => tally.failed + tally.succeeded,
        };
        match self.threshold {
            Threshold::Count(c) => n >= c,
            Threshold::Percent(p) => total > 0 && n as f64 * 100.0 >= p * total as f64,
        }
    }

    /// GNU parallel's exit status: for `fail=1` and `done=1` the halting job's own status
    /// (`job_status`, if the rule was met), for `success` 0 once met, for a percentage rule the
    /// percentage of jobs that failed, else the number of failed jobs (at most 101).
    pub fn exit_status(&self, met: Option<i32>, tally: Tally, total: u64) -> i32 {
        match (self.why, self.threshold, met) {
            (Why::Success, _, Some(_)) => 0,
            (Why::Fail | Why::Done, Threshold::Count(1), Some(status)) => status,
            (_, Threshold::Percent(_), _) if total > 0 => {
                ((tally.failed as f64 * 100.0 / total as f64).round() as i32).min(100)
            }
            _ => tally.failed.min(101) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_forms_parse() {
        let r = |when, why, threshold| {
            Some(Rule {
                when,
                why,
                threshold,
            })
        };
        use Threshold::*;
        assert_eq!(
            parse("now,fail=1").unwrap(),
            r(When::Now, Why::Fail, Count(1))
        );
        assert_eq!(
            parse("soon,fail=3").unwrap(),
            r(When::Soon, Why::Fail, Count(3))
        );
        assert_eq!(
            parse("soon,fail=3%").unwrap(),
            r(When::Soon, Why::Fail, Percent(3.0))
        );
        assert_eq!(
            parse("now,success=2").unwrap(),
            r(When::Now, Why::Success, Count(2))
        );
        assert_eq!(
            parse("now,done=1").unwrap(),
            r(When::Now, Why::Done, Count(1))
        );
        assert_eq!(parse("2").unwrap(), r(When::Now, Why::Fail, Count(1)));
        assert_eq!(parse("-1").unwrap(), r(When::Soon, Why::Success, Count(1)));
        assert_eq!(
            parse("25%").unwrap(),
            r(When::Soon, Why::Fail, Percent(25.0))
        );
        assert_eq!(parse("now").unwrap(), r(When::Now, Why::Fail, Count(1)));
        assert_eq!(parse("never").unwrap(), None);
        for bad in [
            "later",
            "now,fail=0",
            "now,fail=x",
            "soon,oops=1",
            "now,fail=101%",
            "now,",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(looks_like_value("now,fail=1") && looks_like_value("5%"));
        assert!(!looks_like_value("jobs.txt") && !looks_like_value("-"));
    }

    #[test]
    fn thresholds_and_exit_statuses() {
        let rule = parse("soon,fail=50%").unwrap().unwrap();
        let t = |failed, succeeded| Tally { failed, succeeded };
        assert!(!rule.met(t(1, 5), 4));
        assert!(rule.met(t(2, 0), 4));
        assert_eq!(rule.exit_status(Some(3), t(2, 0), 4), 50);
        let rule = parse("now,fail=1").unwrap().unwrap();
        assert_eq!(rule.exit_status(Some(7), t(1, 0), 9), 7);
        assert_eq!(rule.exit_status(None, t(0, 3), 3), 0);
        let rule = parse("now,success=1").unwrap().unwrap();
        assert_eq!(rule.exit_status(Some(0), t(2, 1), 9), 0);
        let rule = parse("soon,fail=2").unwrap().unwrap();
        assert_eq!(rule.exit_status(Some(5), t(2, 0), 9), 2);
    }
}
