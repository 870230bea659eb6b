//! The scheduler driven as a pure state machine: no threads, no processes. Each test plays
//! the engine's part by hand: it submits specs, reads the attempts `pump` hands to the work
//! channel, reports them started and ended as a worker would, and reads the completions
//! `finalize` hands to the dispatch channel.

use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};

use super::retain::Retention;
use super::{DispatchMsg, Settings, State, TimerStep, WorkMsg};
use crate::error::{BuildError, ShutDown, StartError, UnknownJob, WaitTimeoutError};
use crate::job::AttemptEnd;
use crate::record::{JobId, JobStatus, KillOutcome, ResourceUsage};
use crate::spec::{JobSpec, RetryOn};
use crate::sys::Exit;

/// The state and the two channels the engine would read.
struct Rig {
    s: State,
    work: Receiver<WorkMsg>,
    done: Receiver<DispatchMsg>,
    /// The cores of the attempts read by [`Rig::admitted_held`].
    cores: Vec<std::sync::Arc<crate::job::JobCore>>,
}

fn rig(limit: usize) -> Rig {
    rig_with(limit, 8, 1 << 30)
}

fn rig_with(limit: usize, cpus: u32, memory: u64) -> Rig {
    rig_staging(limit, 0, cpus, memory)
}

/// A scheduler whose backend holds up to `stage` jobs beyond the limit.
fn rig_staging(limit: usize, stage: usize, cpus: u32, memory: u64) -> Rig {
    let (work_tx, work) = unbounded();
    let (done_tx, done) = unbounded();
    let settings = Settings {
        limit,
        stage,
        cpu_capacity: cpus,
        memory_capacity: memory,
        grace: Duration::from_secs(1),
        kill_leftovers: true,
        retention: Retention::keep_all(),
    };
    Rig {
        s: State::new(settings, work_tx, done_tx),
        work,
        done,
        cores: Vec::new(),
    }
}

fn job() -> JobSpec {
    JobSpec::new("true")
}

fn exited(code: i32) -> AttemptEnd {
    AttemptEnd::Exited {
        exit: Some(Exit {
            code: Some(code),
            signal: None,
        }),
        usage: ResourceUsage::default(),
        timed_out: false,
        error: None,
    }
}

impl Rig {
    fn submit(&mut self, spec: JobSpec) -> JobId {
        self.s.submit(spec).expect("a valid spec")
    }

    /// The attempts handed to workers since the last call: (job, attempt number).
    fn admitted(&self) -> Vec<(JobId, u32)> {
        self.work
            .try_iter()
            .filter_map(|m| match m {
                WorkMsg::Job(w) => Some((w.core.id, w.attempt)),
                WorkMsg::Stop => None,
            })
            .collect()
    }

    /// Like [`Rig::admitted`], with whether each was staged (its core's `held` flag now), and
    /// keeps the cores so that `held` can be read later ([`Rig::held`]).
    fn admitted_held(&mut self) -> Vec<(JobId, bool)> {
        let works: Vec<_> = self
            .work
            .try_iter()
            .filter_map(|m| match m {
                WorkMsg::Job(w) => Some(w),
                WorkMsg::Stop => None,
            })
            .collect();
        let out = works
            .iter()
            .map(|w| {
                (
                    w.core.id,
                    w.core.held.load(std::sync::atomic::Ordering::SeqCst),
                )
            })
            .collect();
        self.cores.extend(works.into_iter().map(|w| w.core));
        out
    }

    /// The ids of the jobs handed out so far whose `held` flag is set, in id order.
    fn held(&self) -> Vec<JobId> {
        let mut v: Vec<JobId> = self
            .cores
            .iter()
            .filter(|c| c.held.load(std::sync::atomic::Ordering::SeqCst))
            .map(|c| c.id)
            .collect();
        v.sort();
        v
    }

    /// The completions handed to the dispatcher since the last call: (job, final status).
    fn completed(&self) -> Vec<(JobId, JobStatus)> {
        self.done
            .try_iter()
            .filter_map(|m| match m {
                DispatchMsg::Done(d) => Some((d.id, d.record.status)),
                DispatchMsg::Stop => None,
            })
            .collect()
    }

    /// The worker spawned attempt `attempt` of `id`.
    fn spawned(&mut self, id: JobId, attempt: u32) {
        self.s
            .started(id, 4242, attempt, Instant::now(), crate::sys::Waker::none());
    }

    fn status(&self, id: JobId) -> JobStatus {
        self.s.record(id).expect("a known job").status
    }

    /// Runs `id`'s admitted attempt to an exit with `code` and lets its handler return.
    fn run_to_exit(&mut self, id: JobId, attempt: u32, code: i32) {
        self.spawned(id, attempt);
        assert_eq!(self.s.end_attempt(id, attempt, exited(code)), None);
    }
}

#[test]
fn the_limit_holds_and_each_end_admits_the_next_in_order() {
    let mut r = rig(2);
    let ids: Vec<JobId> = (0..5).map(|_| r.submit(job())).collect();
    assert_eq!(r.admitted(), vec![(ids[0], 1), (ids[1], 1)]);
    r.run_to_exit(ids[0], 1, 0);
    assert_eq!(r.admitted(), vec![(ids[2], 1)]);
    r.run_to_exit(ids[1], 1, 0);
    r.run_to_exit(ids[2], 1, 0);
    assert_eq!(r.admitted(), vec![(ids[3], 1), (ids[4], 1)]);
    assert_eq!(
        r.completed(),
        vec![
            (ids[0], JobStatus::Finished),
            (ids[1], JobStatus::Finished),
            (ids[2], JobStatus::Finished)
        ]
    );
    assert_eq!(
        r.s.running_since().len(),
        0,
        "admitted, not spawned: not running"
    );
    // Admitted but not spawned yet still reads Pending (DESIGN.md, state machine).
    assert_eq!(r.s.pending_ids(), vec![ids[3], ids[4]]);
}

/// `Backend::stage_window`: jobs beyond the limit go to the backend held, at most `stage` of
/// them; a freed slot goes to the oldest staged job (its flag clears, no new attempt), then a
/// new job is staged; at no moment do more than `limit` handed-out jobs lack the flag.
#[test]
fn staged_jobs_wait_held_and_take_freed_slots_first() {
    let mut r = rig_staging(2, 3, 8, 1 << 30);
    let ids: Vec<JobId> = (0..8).map(|_| r.submit(job())).collect();
    let first = r.admitted_held();
    assert_eq!(
        first,
        vec![
            (ids[0], false),
            (ids[1], false),
            (ids[2], true),
            (ids[3], true),
            (ids[4], true)
        ]
    );
    assert_eq!(r.held(), vec![ids[2], ids[3], ids[4]]);
    // A staged job is queued in the backend, killed there, never started: Cancelled.
    r.s.queued(ids[3], 77, None, 1);
    assert_eq!(r.status(ids[3]), JobStatus::Queued);
    assert_eq!(r.s.kill_job(ids[3]), Ok(KillOutcome::Killing));
    r.s.end_attempt(ids[3], 1, AttemptEnd::NotStarted);
    assert_eq!(r.completed(), vec![(ids[3], JobStatus::Cancelled)]);
    // Its room in the stage goes to the next job.
    assert_eq!(r.admitted_held(), vec![(ids[5], true)]);
    // A slot frees: the oldest staged job (ids[2]) takes it without a new attempt, and the
    // stage takes one more.
    r.run_to_exit(ids[0], 1, 0);
    assert_eq!(r.admitted_held(), vec![(ids[6], true)]);
    assert_eq!(r.held(), vec![ids[4], ids[5], ids[6]]);
    // A staged job the backend reports started anyway (released outside procman) holds a
    // slot beyond the limit; nothing more is released until slots are below the limit.
    r.spawned(ids[5], 1);
    assert_eq!(r.held(), vec![ids[4], ids[6]]);
    r.run_to_exit(ids[1], 1, 0);
    assert_eq!(r.admitted_held(), vec![(ids[7], true)]);
    assert_eq!(r.held(), vec![ids[4], ids[6], ids[7]], "2 slots taken of 2");
    r.run_to_exit(ids[2], 1, 0);
    assert_eq!(r.held(), vec![ids[6], ids[7]]);
    // A higher limit releases at once.
    r.s.set_limit(10).unwrap();
    assert!(r.held().is_empty());
    assert!(r.admitted_held().is_empty());
}

#[test]
fn higher_priority_goes_first_and_the_head_of_the_queue_blocks_smaller_jobs() {
    let mut r = rig_with(10, 4, 1 << 30);
    let wide = r.submit(job().cpus(3));
    assert_eq!(r.admitted(), vec![(wide, 1)]);
    // One CPU is free. The head of the queue (`big`, 2 CPUs) does not fit; `small` (1 CPU)
    // behind it would, but must wait: no backfill.
    let big = r.submit(job().cpus(2));
    let small = r.submit(job().cpus(1));
    assert!(
        r.admitted().is_empty(),
        "nothing passes the head of the queue"
    );
    // A higher priority goes to the head and fits the free CPU.
    let urgent = r.submit(job().cpus(1).priority(5));
    assert_eq!(r.admitted(), vec![(urgent, 1)]);
    r.run_to_exit(urgent, 1, 0);
    assert!(r.admitted().is_empty(), "`big` still heads the queue");
    r.run_to_exit(wide, 1, 0);
    // Four CPUs free: `big` (2), then `small` (1), in submission order.
    assert_eq!(r.admitted(), vec![(big, 1), (small, 1)]);
}

#[test]
fn a_failed_dependency_cancels_the_chain_with_one_completion_each() {
    let mut r = rig(4);
    let first = r.submit(job());
    let second = r.submit(job().after(first));
    let third = r.submit(job().after(second));
    assert_eq!(r.admitted(), vec![(first, 1)]);
    assert_eq!(r.status(third), JobStatus::Pending);
    r.run_to_exit(first, 1, 3);
    assert!(r.admitted().is_empty(), "nothing runs after a failure");
    let mut done = r.completed();
    done.sort_by_key(|d| d.0);
    assert_eq!(
        done,
        vec![
            (first, JobStatus::Failed),
            (second, JobStatus::DependencyFailed),
            (third, JobStatus::DependencyFailed)
        ]
    );
    // A job submitted after a failed one fails at once, with one completion.
    let late = r.submit(job().after(first));
    assert_eq!(r.completed(), vec![(late, JobStatus::DependencyFailed)]);
    assert_eq!(
        r.s.submit(job().after(JobId(1))),
        Err(StartError::UnknownDependency(JobId(1)))
    );
}

#[test]
fn kills_cancel_pending_jobs_and_ask_running_ones_to_die_once() {
    let mut r = rig(1);
    let running = r.submit(job());
    let queued = r.submit(job());
    assert_eq!(r.admitted(), vec![(running, 1)]);
    r.spawned(running, 1);
    assert_eq!(r.s.kill_job(queued), Ok(KillOutcome::Cancelled));
    assert_eq!(r.completed(), vec![(queued, JobStatus::Cancelled)]);
    assert_eq!(r.s.kill_job(running), Ok(KillOutcome::Killing));
    assert_eq!(r.s.kill_job(running), Ok(KillOutcome::AlreadyFinished));
    assert!(
        r.completed().is_empty(),
        "not final before its worker reports"
    );
    // The program died of the kill: the job reads Killed, not Crashed.
    let end = AttemptEnd::Exited {
        exit: Some(Exit {
            code: None,
            signal: Some(15),
        }),
        usage: ResourceUsage::default(),
        timed_out: false,
        error: None,
    };
    r.s.end_attempt(running, 1, end);
    assert_eq!(r.completed(), vec![(running, JobStatus::Killed)]);
    // A second report of the same attempt changes nothing (one completion per job).
    r.s.end_attempt(running, 1, exited(0));
    assert!(r.completed().is_empty());
    assert_eq!(r.status(running), JobStatus::Killed);
    assert_eq!(r.s.kill_job(JobId(7)), Err(UnknownJob(JobId(7))));
}

#[test]
fn a_kill_before_the_spawn_cancels_and_does_not_count_an_attempt() {
    let mut r = rig(1);
    let id = r.submit(job());
    assert_eq!(r.admitted(), vec![(id, 1)]);
    assert_eq!(r.s.kill_job(id), Ok(KillOutcome::Killing));
    r.s.end_attempt(id, 1, AttemptEnd::NotStarted);
    assert_eq!(r.completed(), vec![(id, JobStatus::Cancelled)]);
    assert_eq!(r.s.record(id).unwrap().attempts, 0);
}

#[test]
fn retries_wait_for_their_backoff_then_run_again() {
    let mut r = rig(1);
    let backoff = Duration::from_secs(60);
    let id = r.submit(job().retries(1, backoff, RetryOn::default()));
    assert_eq!(r.admitted(), vec![(id, 1)]);
    r.spawned(id, 1);
    let at =
        r.s.end_attempt(id, 1, exited(1))
            .expect("a retry with a backoff");
    assert!(r.completed().is_empty() && r.admitted().is_empty());
    assert_eq!(r.status(id), JobStatus::Pending);
    let before = at.checked_sub(Duration::from_secs(1)).unwrap();
    assert!(matches!(r.s.next_timer(before), TimerStep::Until(t) if t == at));
    assert!(matches!(r.s.next_timer(at), TimerStep::Fired));
    assert!(matches!(r.s.next_timer(at), TimerStep::Idle));
    assert_eq!(r.admitted(), vec![(id, 2)]);
    r.run_to_exit(id, 2, 1);
    // One retry only: the second failure is final.
    assert_eq!(r.completed(), vec![(id, JobStatus::Failed)]);
    assert_eq!(r.s.record(id).unwrap().attempts, 2);
}

#[test]
fn pause_stops_admission_and_resume_restarts_it() {
    let mut r = rig(2);
    r.s.pause().unwrap();
    let id = r.submit(job());
    assert!(r.admitted().is_empty());
    assert_eq!(r.s.pending_ids(), vec![id]);
    r.s.resume().unwrap();
    assert_eq!(r.admitted(), vec![(id, 1)]);
}

#[test]
fn raising_the_limit_admits_at_once_and_lower_capacities_fail_what_cannot_fit() {
    let mut r = rig_with(1, 4, 1 << 30);
    let a = r.submit(job().cpus(1));
    let b = r.submit(job().cpus(1));
    let wide = r.submit(job().cpus(4));
    assert_eq!(r.admitted(), vec![(a, 1)]);
    r.s.set_limit(3).unwrap();
    assert_eq!(
        r.admitted(),
        vec![(b, 1)],
        "`wide` needs 4 CPUs, 2 are held"
    );
    r.s.set_capacities(2, 1 << 30).unwrap();
    assert_eq!(r.completed(), vec![(wide, JobStatus::SpawnFailed)]);
    assert_eq!(
        r.s.submit(job().cpus(3)).unwrap_err(),
        StartError::NeverFits {
            asked: "3 CPUs and 0 bytes of memory".into(),
            capacity: format!("2 CPUs and {} bytes of memory", 1u64 << 30),
        }
    );
}

#[test]
fn closing_refuses_new_work_and_cancelling_ends_every_job() {
    let mut r = rig(1);
    let retries = |spec: JobSpec| spec.retries(5, Duration::ZERO, RetryOn::default());
    let running = r.submit(retries(job()));
    let queued = r.submit(retries(job()));
    assert_eq!(r.admitted(), vec![(running, 1)]);
    r.spawned(running, 1);
    r.s.pause().unwrap();
    r.s.close();
    assert_eq!(r.s.submit(job()), Err(StartError::ShutDown));
    assert!(matches!(r.s.set_limit(4), Err(BuildError::ShutDown)));
    assert_eq!(r.s.pause(), Err(ShutDown));
    assert!(!r.s.no_live_jobs());
    r.s.close_and_cancel();
    assert_eq!(r.completed(), vec![(queued, JobStatus::Cancelled)]);
    // The running job is asked to die; its worker's report ends it, never retried (the kill
    // stops the retry; a cancelling shutdown would too).
    assert_eq!(r.s.end_attempt(running, 1, exited(1)), None);
    assert_eq!(r.completed(), vec![(running, JobStatus::Killed)]);
    assert!(r.admitted().is_empty());
    assert!(r.s.snapshot().paused, "cancelling does not unpause");
    assert!(r.s.no_live_jobs());
    assert!(!r.s.settled(false), "two handlers have not returned");
    assert!(r.s.settled(true));
    r.s.handler_returned(queued, None);
    r.s.handler_returned(running, None);
    assert!(r.s.settled(false));
}

#[test]
fn deleting_hides_a_job_at_once_and_a_wait_then_finds_it_unknown() {
    let mut r = rig(1);
    let running = r.submit(job());
    let done = r.submit(job().after(running));
    assert_eq!(r.admitted(), vec![(running, 1)]);
    r.spawned(running, 1);
    r.s.delete(running).unwrap();
    assert!(r.s.record(running).is_none());
    assert_eq!(r.s.delete(running), Err(UnknownJob(running)));
    assert!(matches!(
        r.s.wait_result(running, false),
        Some(Err(WaitTimeoutError::UnknownJob(id))) if id == running
    ));
    // Deleted, it was still killed, and its completion still goes out once.
    r.s.end_attempt(running, 1, exited(0));
    let mut completed = r.completed();
    completed.sort_by_key(|d| d.0);
    assert_eq!(
        completed,
        vec![
            (running, JobStatus::Killed),
            (done, JobStatus::DependencyFailed)
        ]
    );
    r.s.handler_returned(running, None);
    r.s.handler_returned(done, None);
    // A final record whose handler returned is removed at once.
    r.s.delete(done).unwrap();
    assert!(r.s.records(false).is_empty());
}

#[test]
fn a_wait_ends_on_the_final_record_only_once_the_handler_returned() {
    let mut r = rig(1);
    let id = r.submit(job());
    assert_eq!(r.admitted(), vec![(id, 1)]);
    assert!(r.s.wait_result(id, true).is_none());
    r.run_to_exit(id, 1, 0);
    assert!(
        r.s.wait_result(id, false).is_none(),
        "the handler has not returned"
    );
    let inside_a_handler = r.s.wait_result(id, true).unwrap().unwrap();
    assert_eq!(inside_a_handler.status, JobStatus::Finished);
    assert!(r.s.records(true).is_empty(), "the handler has not returned");
    r.s.handler_returned(id, Some("boom".into()));
    let record = r.s.wait_result(id, false).unwrap().unwrap();
    assert_eq!(record.handler_error.as_deref(), Some("boom"));
    let finals = r.s.records(true);
    assert_eq!(finals.len(), 1);
    assert_eq!(
        (finals[0].id, finals[0].handler_error.clone()),
        (record.id, record.handler_error)
    );
}

#[test]
fn eviction_keeps_the_outcome_for_later_dependents_and_hands_the_record_to_holders() {
    let mut r = rig(1);
    r.s.set_retention(Retention::keep_all().max_records(Some(0)));
    let ok = r.submit(job());
    let bad = r.submit(job());
    r.s.hold(ok);
    r.admitted();
    r.run_to_exit(ok, 1, 0);
    r.admitted();
    r.run_to_exit(bad, 1, 2);
    r.s.handler_returned(ok, None);
    r.s.handler_returned(bad, None);
    assert!(r.s.record(ok).is_none(), "evicted");
    assert_eq!(r.s.held_record(ok).unwrap().status, JobStatus::Finished);
    assert!(r.s.held_record(bad).is_none(), "not held");
    r.s.release(ok);
    assert!(r.s.held_record(ok).is_none());
    let after_ok = r.submit(job().after(ok));
    assert_eq!(r.admitted(), vec![(after_ok, 1)]);
    let after_bad = r.submit(job().after(bad));
    r.completed();
    assert_eq!(r.status(after_bad), JobStatus::DependencyFailed);
    let evicted = r.s.snapshot().evicted;
    assert!(
        evicted.contains(&(JobStatus::Finished, 1)) && evicted.contains(&(JobStatus::Failed, 1))
    );
}

#[test]
fn a_final_job_deleted_before_its_handler_returned_goes_when_the_handler_returns() {
    let mut r = rig(1);
    r.s.set_retention(Retention::keep_all().max_records(Some(1)));
    let id = r.submit(job());
    r.admitted();
    r.run_to_exit(id, 1, 0);
    assert_eq!(r.completed(), vec![(id, JobStatus::Finished)]);
    r.s.delete(id).unwrap();
    assert!(r.s.record(id).is_none() && r.s.records(false).is_empty());
    assert!(!r.s.settled(false), "its handler still runs");
    r.s.handler_returned(id, None);
    assert!(r.s.settled(false));
    // The retention count was not disturbed: the next record is kept (limit 1).
    let next = r.submit(job());
    r.admitted();
    r.run_to_exit(next, 1, 0);
    r.s.handler_returned(next, None);
    assert_eq!(r.s.records(false).len(), 1);
}

/// The stage window under arbitrary operation sequences (submissions, ends of attempts as a
/// backend would report them, kills, limit changes, pause and resume): at every step the jobs
/// handed out without the `held` flag, and not ended, are at most the limit they were let in
/// under; at most `stage` are held; a held job is let go only in the order jobs were staged,
/// and only when a slot is free; no slot stays idle while a job waits held (unless paused);
/// and once everything is ended, each job completed exactly once.
mod staging {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    #[derive(Clone, Debug)]
    enum Op {
        Submit,
        /// Ends the outstanding attempt at this index (modulo their count).
        End(usize),
        Kill(usize),
        Limit(usize),
        Pause,
        Resume,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Submit),
            4 => any::<usize>().prop_map(Op::End),
            1 => any::<usize>().prop_map(Op::Kill),
            1 => (1usize..5).prop_map(Op::Limit),
            1 => Just(Op::Pause),
            1 => Just(Op::Resume),
        ]
    }

    /// An attempt handed out and not ended: its core (for `held`), attempt number, and when
    /// it was staged (`None`: it had a slot).
    struct Out {
        core: Arc<crate::job::JobCore>,
        attempt: u32,
        staged_at: Option<u64>,
    }

    fn run(limit: usize, stage: usize, ops: &[Op]) -> Result<(), TestCaseError> {
        let mut r = rig_staging(limit, stage, 64, 1 << 40);
        let mut limit = limit;
        let mut paused = false;
        let mut out: Vec<Out> = Vec::new();
        let mut submitted: Vec<JobId> = Vec::new();
        let mut completed: HashMap<JobId, usize> = HashMap::new();
        let mut seq = 0u64;
        let take = |r: &Rig, out: &mut Vec<Out>, seq: &mut u64| {
            for m in r.work.try_iter() {
                if let WorkMsg::Job(w) = m {
                    let held = w.core.held.load(Ordering::SeqCst);
                    *seq += 1;
                    out.push(Out {
                        core: w.core,
                        attempt: w.attempt,
                        staged_at: held.then_some(*seq),
                    });
                }
            }
        };
        for op in ops {
            let slots_before = out
                .iter()
                .filter(|o| !o.core.held.load(Ordering::SeqCst))
                .count();
            match *op {
                Op::Submit => submitted.push(r.submit(job())),
                Op::End(i) if !out.is_empty() => {
                    let o = out.remove(i % out.len());
                    // A held job never ran: the backend ends it as cancelled outside procman
                    // would (never started); one with a slot exits.
                    let end = if o.core.held.load(Ordering::SeqCst) {
                        AttemptEnd::NotStarted
                    } else {
                        exited(0)
                    };
                    r.s.end_attempt(o.core.id, o.attempt, end);
                }
                Op::End(_) => {}
                Op::Kill(i) if !submitted.is_empty() => {
                    let _ = r.s.kill_job(submitted[i % submitted.len()]);
                }
                Op::Kill(_) => {}
                Op::Limit(n) => {
                    r.s.set_limit(n).unwrap();
                    limit = n;
                }
                Op::Pause => {
                    r.s.pause().unwrap();
                    paused = true;
                }
                Op::Resume => {
                    r.s.resume().unwrap();
                    paused = false;
                }
            }
            take(&r, &mut out, &mut seq);
            for (id, _) in r.completed() {
                *completed.entry(id).or_default() += 1;
            }
            let (held, free): (Vec<&Out>, Vec<&Out>) =
                out.iter().partition(|o| o.core.held.load(Ordering::SeqCst));
            // Slots taken only while one is free: more than before only up to the limit.
            prop_assert!(
                free.len() <= slots_before.max(limit),
                "{} jobs with a slot, limit {limit}, before {slots_before}",
                free.len()
            );
            prop_assert!(held.len() <= stage, "{} held", held.len());
            // Let go in staging order: every job still held was staged after every staged
            // job already let go.
            let newest_let_go = free.iter().filter_map(|o| o.staged_at).max();
            let oldest_held = held.iter().filter_map(|o| o.staged_at).min();
            if let (Some(a), Some(b)) = (newest_let_go, oldest_held) {
                prop_assert!(a < b, "a job staged later was let go first");
            }
            if !paused && !held.is_empty() {
                prop_assert!(free.len() >= limit, "a slot idles while jobs wait held");
            }
        }
        // Drain: resume, lift the limit and end everything.
        r.s.resume().unwrap();
        r.s.set_limit(1 << 20).unwrap();
        take(&r, &mut out, &mut seq);
        while let Some(o) = out.pop() {
            prop_assert!(
                !o.core.held.load(Ordering::SeqCst),
                "held after the limit lifted"
            );
            r.s.end_attempt(o.core.id, o.attempt, exited(0));
            take(&r, &mut out, &mut seq);
        }
        for (id, _) in r.completed() {
            *completed.entry(id).or_default() += 1;
        }
        for id in &submitted {
            prop_assert_eq!(completed.get(id).copied(), Some(1), "job {}", id);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn the_stage_window_keeps_the_limit_and_the_order(
            limit in 1usize..4,
            stage in 0usize..6,
            ops in proptest::collection::vec(op(), 0..120),
        ) {
            run(limit, stage, &ops)?;
        }
    }
}
