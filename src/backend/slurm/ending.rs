//! How a Slurm job ended: reading `squeue`'s rows, `scontrol`'s and `sacct`'s exit codes, and
//! judging Slurm's final state into the attempt's exit, timeout and error.

use std::borrow::Cow;
use std::collections::HashMap;

use super::array::SlurmId;
use crate::sys::Exit;

/// States in which the job's program has started (for the timeout and for kill vs cancel).
pub(super) fn has_started(state: &str) -> bool {
    matches!(
        state,
        "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
    )
}

/// Slurm's final job states.
pub(super) fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "TIMEOUT"
            | "CANCELLED"
            | "NODE_FAIL"
            | "BOOT_FAIL"
            | "OUT_OF_MEMORY"
            | "PREEMPTED"
            | "DEADLINE"
            | "REVOKED"
    )
}

/// Every job state Slurm names (`squeue`'s `%T`, `sacct`'s `State`).
const STATES: [&str; 24] = [
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "COMPLETING",
    "CONFIGURING",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PENDING",
    "PREEMPTED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "RESV_DEL_HOLD",
    "REVOKED",
    "RUNNING",
    "SIGNALING",
    "SPECIAL_EXIT",
    "STAGE_OUT",
    "STOPPED",
    "SUSPENDED",
    "TIMEOUT",
];

/// A job's state as the poller keeps it while the job is in flight: Slurm's own names are
/// static (no allocation per job), only a name procman does not know is copied.
pub(super) fn kept_state(state: &str) -> Cow<'static, str> {
    match STATES.iter().find(|&&s| s == state) {
        Some(&s) => Cow::Borrowed(s),
        None => Cow::Owned(state.to_owned()),
    }
}

/// How Slurm says a job ended, as the poller found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Ending {
    /// Slurm's state (the last one known, for a job that vanished).
    pub(super) state: String,
    /// Slurm's reason field.
    pub(super) reason: String,
    pub(super) exit: Option<Exit>,
    /// The job was given nodes (it started).
    pub(super) ran: bool,
    /// Set when Slurm could not tell how the job ended: why.
    pub(super) lost: Option<String>,
}

impl Ending {
    /// A job cancelled before it started, which Slurm keeps no record of (a pending array
    /// task cancelled alone).
    pub(super) fn cancelled_pending() -> Ending {
        Ending {
            state: "CANCELLED".into(),
            reason: String::new(),
            exit: None,
            ran: false,
            lost: None,
        }
    }

    pub(super) fn lost(state: &str, why: String) -> Ending {
        Ending {
            state: state.to_owned(),
            reason: String::new(),
            exit: None,
            ran: has_started(state),
            lost: Some(why),
        }
    }

    /// (exit, timed out, error) for the attempt. `ended_by_procman`: procman cancelled or
    /// signalled the job (the scheduler then makes it `Killed` or `TimedOut`).
    pub(super) fn judge(
        self,
        job: impl std::fmt::Display,
        ended_by_procman: bool,
        timed_out: bool,
    ) -> (Option<Exit>, bool, Option<String>) {
        if let Some(why) = self.lost {
            return (None, timed_out, Some(why));
        }
        let reason = if self.reason.is_empty() || self.reason == "None" {
            String::new()
        } else {
            format!(", reason {}", self.reason)
        };
        let plain = |e: &str| {
            Some(format!(
                "Slurm job {job} ended as {}{reason}: {e}",
                self.state
            ))
        };
        match self.state.as_str() {
            "COMPLETED" => (self.exit, timed_out, None),
            "FAILED" => match self.exit {
                Some(Exit { code: Some(0), .. }) | None => (
                    None,
                    timed_out,
                    plain("Slurm gave no exit status (the batch job failed to launch?)"),
                ),
                x => (x, timed_out, None),
            },
            "TIMEOUT" if !timed_out => (
                self.exit,
                true,
                plain("Slurm's own time limit (--time) ended it"),
            ),
            "TIMEOUT" => (self.exit, true, None),
            "CANCELLED" if ended_by_procman => (self.exit, timed_out, None),
            "CANCELLED" => (
                not_success(self.exit),
                timed_out,
                plain("cancelled outside procman (scancel by a user or an administrator)"),
            ),
            "OUT_OF_MEMORY" => (
                not_success(self.exit),
                timed_out,
                plain("it used more memory than it was given (--mem)"),
            ),
            "NODE_FAIL" | "BOOT_FAIL" => (None, timed_out, plain("its node failed")),
            "PREEMPTED" => (None, timed_out, plain("Slurm preempted it")),
            "DEADLINE" => (None, timed_out, plain("it reached its --deadline")),
            _ => (None, timed_out, plain("not a state procman knows")),
        }
    }
}

/// An exit status for a job that did not succeed: a reported code 0 (which would make the
/// job `Finished`) is dropped, so the job ends as `Failed` with its error.
fn not_success(exit: Option<Exit>) -> Option<Exit> {
    exit.filter(|x| x.code != Some(0))
}

/// Decodes squeue's `exit_code`: a wait status (code << 8 | signal), as `waitpid` gives.
fn exit_from_wait_status(status: i64) -> Exit {
    // Only the low 16 bits hold the code and the signal.
    Exit::from_wait_status((status & 0xffff) as i32)
}

/// Decodes `scontrol`'s and `sacct`'s `ExitCode=code:signal`.
pub(super) fn exit_from_pair(s: &str) -> Option<Exit> {
    let (code, signal) = s.trim().split_once(':')?;
    let (code, signal): (i32, i32) = (code.parse().ok()?, signal.parse().ok()?);
    Some(if signal != 0 {
        Exit {
            code: None,
            signal: Some(signal),
        }
    } else {
        Exit {
            code: Some(code),
            signal: None,
        }
    })
}

pub(super) fn nodes_given(nodes: &str) -> bool {
    let n = nodes.trim();
    !n.is_empty() && n != "(null)" && n != "None assigned"
}

/// One row of `squeue` output.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Row {
    pub(super) state: String,
    pub(super) exit: Option<Exit>,
    pub(super) nodes: String,
    pub(super) reason: String,
}

/// `squeue -O` fields (Slurm 20.11 and later print `exit_code`, a wait status).
/// `JobArrayID` is the job id, or `ARRAYID_TASK` for a task of an array (`JobID` would be the
/// array's own id for every task still pending).
pub(super) const SQUEUE_FORMAT: &str = "JobArrayID:|,State:|,exit_code:|,NodeList:|,Reason:|";
/// Older `squeue`: no exit code; `scontrol` is asked for finished jobs.
pub(super) const SQUEUE_LEGACY_FORMAT: &str = "%i|%T|%N|%r";

/// Parses `squeue -h` output in procman's formats into rows by job id.
pub(super) fn parse_squeue(out: &[u8], legacy: bool) -> HashMap<SlurmId, Row> {
    let text = String::from_utf8_lossy(out);
    let mut rows = HashMap::new();
    for line in text.lines() {
        let mut f = line.splitn(if legacy { 4 } else { 5 }, '|').map(str::trim);
        let (Some(id), Some(state)) = (f.next(), f.next()) else {
            continue;
        };
        let Some(id) = SlurmId::parse(id) else {
            continue;
        };
        let exit = if legacy {
            None
        } else {
            f.next()
                .and_then(|s| s.parse::<i64>().ok())
                .map(exit_from_wait_status)
        };
        let nodes = f.next().unwrap_or("").to_owned();
        let reason = f
            .next()
            .unwrap_or("")
            .trim_end_matches('|')
            .trim()
            .to_owned();
        // squeue prints e.g. "CANCELLED by 0" in some versions: keep the state word.
        let state = state.split_whitespace().next().unwrap_or("").to_owned();
        rows.insert(
            id,
            Row {
                state,
                exit,
                nodes,
                reason,
            },
        );
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_slurm_has_are_kept_without_a_copy() {
        for s in STATES {
            assert!(matches!(kept_state(s), Cow::Borrowed(k) if k == s), "{s}");
        }
        assert!(matches!(kept_state("NEW_STATE"), Cow::Owned(k) if k == "NEW_STATE"));
        // Every state procman judges is one of them.
        for s in [
            "RUNNING",
            "COMPLETING",
            "SUSPENDED",
            "STOPPED",
            "SIGNALING",
            "STAGE_OUT",
        ] {
            assert!(has_started(s) && STATES.contains(&s), "{s}");
        }
        assert_eq!(STATES.iter().filter(|s| is_final(s)).count(), 10);
    }

    #[test]
    fn squeue_rows_are_parsed() {
        let out = b"5|RUNNING|0|vm|None|\n6|FAILED|768|vm|NonZeroExitCode|\n\
                    7|CANCELLED|0||BeginTime|\n8|TIMEOUT|15|vm|TimeLimit|\nbad line\n\
                    9_2|PENDING|0||Priority|\n9_[3-4]|PENDING|0||Priority|\n";
        let rows = parse_squeue(out, false);
        assert_eq!(rows.len(), 5);
        let task = SlurmId {
            job: 9,
            task: Some(2),
        };
        assert_eq!(rows[&task].state, "PENDING");
        assert_eq!(rows[&SlurmId::from(5)].state, "RUNNING");
        assert_eq!(
            rows[&SlurmId::from(6)].exit,
            Some(Exit {
                code: Some(3),
                signal: None
            })
        );
        assert_eq!(rows[&SlurmId::from(6)].reason, "NonZeroExitCode");
        assert!(!nodes_given(&rows[&SlurmId::from(7)].nodes));
        assert!(nodes_given(&rows[&SlurmId::from(8)].nodes));
        assert_eq!(
            rows[&SlurmId::from(8)].exit,
            Some(Exit {
                code: None,
                signal: Some(15)
            })
        );
        let legacy = parse_squeue(b"9|PENDING|(null)|Priority\n", true);
        assert_eq!(legacy[&SlurmId::from(9)].state, "PENDING");
        assert_eq!(legacy[&SlurmId::from(9)].exit, None);
        assert_eq!(legacy[&SlurmId::from(9)].reason, "Priority");
        assert_eq!(
            exit_from_pair("0:15"),
            Some(Exit {
                code: None,
                signal: Some(15)
            })
        );
        assert_eq!(
            exit_from_pair("3:0"),
            Some(Exit {
                code: Some(3),
                signal: None
            })
        );
    }

    #[test]
    fn endings_map_onto_statuses() {
        let e = |state: &str, exit: Option<Exit>, ran: bool| Ending {
            state: state.into(),
            reason: "None".into(),
            exit,
            ran,
            lost: None,
        };
        let code = |c| {
            Some(Exit {
                code: Some(c),
                signal: None,
            })
        };
        let sig = |s| {
            Some(Exit {
                code: None,
                signal: Some(s),
            })
        };
        assert_eq!(
            e("COMPLETED", code(0), true).judge(1, false, false),
            (code(0), false, None)
        );
        assert_eq!(
            e("FAILED", code(3), true).judge(1, false, false),
            (code(3), false, None)
        );
        let (x, _, err) = e("FAILED", code(0), true).judge(1, false, false);
        assert!(x.is_none() && err.unwrap().contains("no exit status"));
        let (x, t, err) = e("TIMEOUT", sig(15), true).judge(1, false, false);
        assert!(t && x == sig(15) && err.unwrap().contains("--time"));
        assert_eq!(
            e("CANCELLED", sig(15), true).judge(1, true, false),
            (sig(15), false, None)
        );
        let (x, _, err) = e("CANCELLED", sig(15), true).judge(1, false, false);
        assert!(x == sig(15) && err.unwrap().contains("outside procman"));
        // Cancelled outside procman while pending: 0:0 must not read as success.
        let (x, _, err) = e("CANCELLED", code(0), false).judge(1, false, false);
        assert!(x.is_none() && err.is_some());
        let (x, _, _) = e("OUT_OF_MEMORY", code(0), true).judge(1, false, false);
        assert!(x.is_none());
        let (x, _, err) = e("NODE_FAIL", code(0), true).judge(1, false, false);
        assert!(x.is_none() && err.unwrap().contains("node failed"));
        let (_, _, err) = e("OUT_OF_MEMORY", sig(9), true).judge(1, false, false);
        assert!(err.unwrap().contains("memory"));
        let lost = Ending::lost("RUNNING", "gone".into());
        assert!(lost.ran);
        assert_eq!(
            lost.judge(1, false, false),
            (None, false, Some("gone".into()))
        );
    }
}
