//! The engine below the public API: the one lock over the scheduler's state, the condition
//! variables waits sleep on, the work and completion channels, and the manager's threads
//! (workers, handler threads, the retry timer).

pub(crate) mod dispatch;
pub(crate) mod sched;
mod workers;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::backend::Backend;
use crate::config::{Config, ShutdownMode};
use crate::deadline;
use crate::engine::dispatch::dispatcher_loop;
use crate::engine::sched::{DispatchMsg, Settings, State, TimerStep, WorkMsg};
use crate::engine::workers::worker_loop;
use crate::job::AttemptEnd;
use crate::record::JobId;
use crate::sys;
#[derive(Default)]
struct Threads {
    workers: Vec<JoinHandle<()>>,
    /// At most this many workers (what the system allows, estimated once the pool is large).
    worker_cap: Option<usize>,
    dispatchers: Vec<JoinHandle<()>>,
    timer: Option<JoinHandle<()>>,
}

/// Up to this many workers the pool grows without asking the system (`sys::thread_room`).
const WORKERS_BEFORE_CAP: usize = 1024;

/// Waits made inside handlers that wait for another job's handler too (only with more than one
/// handler thread; see `RecordHold::wait_until`). Guarded by its own mutex, never taken with
/// the state lock held.
#[derive(Default)]
struct HandlerWaits {
    /// How many such waits are in progress: kept below the number of handler threads, so one
    /// thread is always free to run the handlers they wait for.
    blocked: usize,
    /// The jobs whose handlers are in such a wait (with how many): a handler never waits for
    /// the handler of one of these, so no cycle of handlers waiting for each other can form.
    waiting: HashMap<JobId, usize>,
}

/// Shared by the public handles and the manager's threads.
pub(crate) struct Inner {
    state: Mutex<State>,
    /// Notified whenever a job becomes final or its handler returns.
    pub(crate) changed: Condvar,
    /// Notified when an update leaves no live job: `wait_all` and `shutdown` wait on this one,
    /// so they are not woken twice per job to find that jobs are still running.
    pub(crate) idle: Condvar,
    /// Notified when a retry timer is added or the manager stops.
    timer_cv: Condvar,
    pub(crate) config: Config,
    pub(crate) backend: Arc<dyn Backend>,
    work_rx: Receiver<WorkMsg>,
    work_tx: Sender<WorkMsg>,
    done_tx: Sender<DispatchMsg>,
    threads: Mutex<Threads>,
    /// Workers waiting for an attempt (or just finishing one): see [`Inner::grow_workers`].
    idle_workers: AtomicUsize,
    /// A refused worker thread was reported (once per manager).
    worker_refused: AtomicBool,
    handler_waits: Mutex<HandlerWaits>,
    /// Held by the shutdown in progress (see [`Inner::shutdown`]); never with the state lock.
    shutdown_gate: Mutex<()>,
    stopped: AtomicBool,
    /// Tells this manager from every other one in the process (reader threads are marked with
    /// it and the job they observe: `output::observing`).
    pub(crate) key: u64,
}

/// Where manager keys come from.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

impl Inner {
    /// Creates the engine and its first threads: the handler threads and one worker (more
    /// workers come as attempts need them: [`Inner::grow_workers`]).
    ///
    /// # Errors
    /// The OS refused one of those threads.
    pub(crate) fn start(
        settings: Settings,
        config: Config,
        backend: Arc<dyn Backend>,
    ) -> std::io::Result<Arc<Inner>> {
        let (work_tx, work_rx) = unbounded();
        let (done_tx, done_rx) = unbounded();
        let handler_threads = config.handler_threads;
        let inner = Arc::new(Inner {
            state: Mutex::new(State::new(settings, work_tx.clone(), done_tx.clone())),
            changed: Condvar::new(),
            idle: Condvar::new(),
            timer_cv: Condvar::new(),
            config,
            backend,
            work_rx,
            work_tx,
            done_tx,
            threads: Mutex::new(Threads::default()),
            idle_workers: AtomicUsize::new(0),
            worker_refused: AtomicBool::new(false),
            handler_waits: Mutex::new(HandlerWaits::default()),
            shutdown_gate: Mutex::new(()),
            stopped: AtomicBool::new(false),
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
        });
        for i in 0..handler_threads {
            let (d, rx) = (inner.clone(), done_rx.clone());
            let name = if handler_threads == 1 {
                "procman-dispatch".to_owned()
            } else {
                format!("procman-dispatch-{i}")
            };
            let dispatcher = thread::Builder::new()
                .name(name)
                .spawn(move || dispatcher_loop(d, rx));
            match dispatcher {
                Ok(t) => inner.threads.lock().dispatchers.push(t),
                Err(e) => {
                    inner.shutdown(ShutdownMode::Cancel, None);
                    return Err(e);
                }
            }
        }
        let mut threads = inner.threads.lock();
        let first = inner.add_worker(&mut threads);
        drop(threads);
        if let Err(e) = first {
            inner.shutdown(ShutdownMode::Cancel, None);
            return Err(e);
        }
        Ok(inner)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// True on any of this manager's handler threads, that is inside a handler.
    pub(crate) fn on_dispatcher(&self) -> bool {
        crate::engine::dispatch::on_handler_thread(self.key)
    }

    /// Inside a handler, before waiting for job `target`: whether the wait may also wait for
    /// `target`'s handler without risking a deadlock. Yes only with more than one handler
    /// thread, when `target` is not the job whose handler calls, when another handler thread
    /// stays free (fewer than `handler_threads - 1` such waits in progress), and when
    /// `target`'s handler is not itself in such a wait (no cycle). A yes is a reservation,
    /// released by `release_handler_wait`.
    pub(crate) fn reserve_handler_wait(&self, target: JobId) -> bool {
        if self.config.handler_threads <= 1 {
            return false;
        }
        let Some(me) = crate::engine::dispatch::current_handler_job(self.key) else {
            return false;
        };
        if me == target {
            return false;
        }
        let mut w = self.handler_waits.lock();
        if w.blocked + 1 >= self.config.handler_threads || w.waiting.contains_key(&target) {
            return false;
        }
        w.blocked += 1;
        *w.waiting.entry(me).or_insert(0) += 1;
        true
    }

    /// Ends a wait that `reserve_handler_wait` allowed, made by the handler of job `me`.
    pub(crate) fn release_handler_wait(&self, me: JobId) {
        let mut w = self.handler_waits.lock();
        w.blocked = w.blocked.saturating_sub(1);
        if let Some(n) = w.waiting.get_mut(&me) {
            *n -= 1;
            if *n == 0 {
                w.waiting.remove(&me);
            }
        }
    }

    /// The job of this manager whose output observer runs on this thread, if any.
    pub(crate) fn observed_here(&self) -> Option<JobId> {
        crate::output::observing()
            .filter(|&(key, _)| key == self.key)
            .map(|(_, id)| id)
    }

    /// Runs `f` under the lock, then wakes waiters (`f` may have made jobs final).
    pub(crate) fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (r, idle) = {
            let mut s = self.lock();
            let r = f(&mut s);
            (r, s.no_live_jobs())
        };
        self.changed.notify_all();
        if idle {
            self.idle.notify_all();
        }
        r
    }

    pub(crate) fn started(
        &self,
        id: JobId,
        pid: u32,
        attempt: u32,
        spawned: Instant,
        waker: sys::Waker,
    ) {
        self.lock().started(id, pid, attempt, spawned, waker);
    }

    /// See [`State::queued`].
    pub(crate) fn queued(&self, id: JobId, cluster_id: u32, task: Option<u32>, attempt: u32) {
        self.lock().queued(id, cluster_id, task, attempt);
    }

    /// The backend reports the job's raw state (see [`JobRecord::backend_state`]).
    pub(crate) fn set_backend_state(&self, id: JobId, state: &str) {
        self.lock().set_backend_state(id, state);
    }

    pub(crate) fn end_attempt(self: &Arc<Self>, id: JobId, attempt: u32, end: AttemptEnd) {
        if self.update(|s| s.end_attempt(id, attempt, end)).is_some() {
            self.ensure_timer();
            self.timer_cv.notify_all();
        }
    }

    /// See [`State::abandon`].
    pub(crate) fn abandon(&self, id: JobId, msg: String) {
        self.update(|s| s.abandon(id, msg));
    }

    pub(crate) fn handler_returned(&self, id: JobId, panic: Option<String>) {
        self.update(|s| s.handler_returned(id, panic));
    }

    /// Adds workers until one is idle for each attempt queued for a worker plus one spare, and
    /// at most `limit` (plus the backend's stage window) exist: called by a worker that just took an attempt, and when the limit
    /// is raised. Workers are created as jobs need them and then stay. Never blocks but on the
    /// thread creations (tens of µs each). A refused thread is not an error: the pool stays as
    /// it is (reported once, as a warning), the attempts wait for a worker, and at most as many
    /// jobs run at once as there are workers. Returns the first refusal, if any.
    pub(crate) fn grow_workers(self: &Arc<Self>) -> Option<std::io::Error> {
        // Staged attempts (`Backend::stage_window`) are handed to workers too.
        let limit = self
            .lock()
            .limit()
            .saturating_add(self.backend.stage_window());
        // A backend whose attempts continue without their worker (Slurm) needs only a few.
        let limit = self
            .backend
            .max_workers()
            .map_or(limit, |m| limit.min(m.max(1)));
        let mut threads = self.threads.lock();
        loop {
            let n = threads.workers.len();
            if self.stopped.load(Ordering::SeqCst) || n >= limit {
                return None;
            }
            let wanted = self.work_rx.len() + 1;
            if self.idle_workers.load(Ordering::SeqCst) >= wanted {
                return None;
            }
            // Only a large pool asks what the system allows (reading /proc once).
            if n >= WORKERS_BEFORE_CAP && threads.worker_cap.is_none() {
                threads.worker_cap = Some(sys::thread_room().map_or(usize::MAX, |r| n + r));
            }
            let refused = match threads.worker_cap {
                Some(cap) if n >= cap => Err(std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    "no room for more threads (vm.max_map_count, kernel.threads-max)",
                )),
                _ => self.add_worker(&mut threads),
            };
            if let Err(e) = refused {
                if !self.worker_refused.swap(true, Ordering::SeqCst) {
                    log::warn!(
                        "the job limit {limit} is beyond what this system allows for threads: \
                         cannot add worker {} ({e}); at most {n} jobs run at once",
                        n + 1
                    );
                }
                return Some(e);
            }
        }
    }

    fn add_worker(self: &Arc<Self>, threads: &mut Threads) -> std::io::Result<()> {
        let inner = self.clone();
        let rx = self.work_rx.clone();
        let n = threads.workers.len();
        // Counted idle before it runs, so that the next look at the pool sees it.
        self.idle_workers.fetch_add(1, Ordering::SeqCst);
        match thread::Builder::new()
            .name(format!("procman-worker-{n}"))
            .spawn(move || worker_loop(inner, rx))
        {
            Ok(t) => {
                threads.workers.push(t);
                Ok(())
            }
            Err(e) => {
                self.idle_workers.fetch_sub(1, Ordering::SeqCst);
                Err(e)
            }
        }
    }

    /// A worker took an attempt: it is busy, and the pool grows if no worker is left idle.
    pub(crate) fn worker_took_attempt(self: &Arc<Self>) {
        self.idle_workers.fetch_sub(1, Ordering::SeqCst);
        // Outside the attempt's own catch: a panic here (a host logger that panics on the
        // growth warning) must not end the worker while it holds an admitted attempt. The pool
        // just does not grow this time (the panic rule).
        let _ = catch_unwind(AssertUnwindSafe(|| self.grow_workers()));
    }

    /// A worker is done with its attempt (about to report it and take the next).
    pub(crate) fn worker_done(&self) {
        self.idle_workers.fetch_add(1, Ordering::SeqCst);
    }

    fn ensure_timer(self: &Arc<Self>) {
        let mut threads = self.threads.lock();
        if threads.timer.is_some() || self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let inner = self.clone();
        match thread::Builder::new()
            .name("procman-timer".into())
            .spawn(move || inner.timer_loop())
        {
            Ok(t) => threads.timer = Some(t),
            Err(e) => {
                // Without a timer the retries would wait forever: requeue them now instead.
                log::error!("cannot create the retry timer thread ({e}); retrying without backoff");
                self.update(State::retry_all_now);
            }
        }
    }

    /// The retry timer's body. A panic in it (the panic rule, DESIGN.md) is caught: retries
    /// that lost their timer in it are queued at once, and the timer goes on.
    fn timer_loop(&self) {
        while let Err(p) = catch_unwind(AssertUnwindSafe(|| self.timer_rounds())) {
            log::error!(
                "internal error: the retry timer thread panicked: {}; it goes on",
                crate::error::panic_message(&*p)
            );
            self.update(|s| s.requeue_orphaned_retries());
        }
    }

    fn timer_rounds(&self) {
        let mut s = self.lock();
        while !self.stopped.load(Ordering::SeqCst) {
            match s.next_timer(Instant::now()) {
                TimerStep::Fired => {}
                TimerStep::Until(at) => {
                    self.timer_cv.wait_until(&mut s, at);
                }
                TimerStep::Idle => self.timer_cv.wait(&mut s),
            }
        }
    }

    /// Blocks until `done(state)` holds or the deadline passes; true if it holds.
    /// `cv` is `changed`, or `idle` when `done` can only hold once no job is live.
    pub(crate) fn wait_for(
        &self,
        cv: &Condvar,
        deadline: Option<Instant>,
        mut done: impl FnMut(&State) -> bool,
    ) -> bool {
        let mut s = self.lock();
        loop {
            if done(&s) {
                return true;
            }
            match deadline {
                Some(d) => {
                    if cv.wait_until(&mut s, d).timed_out() {
                        return done(&s);
                    }
                }
                None => cv.wait(&mut s),
            }
        }
    }

    /// Stops the engine: see `Handle::shutdown` for what each mode does and when this blocks.
    pub(crate) fn shutdown(&self, mode: ShutdownMode, timeout: Option<Duration>) {
        if let Some(id) = self.observed_here() {
            log::warn!("shutdown called from the output observer of job {id}: not waiting");
            self.update(|s| s.close_from_observer(mode == ShutdownMode::Cancel));
            return;
        }
        let in_handler = self.on_dispatcher();
        if mode == ShutdownMode::Cancel {
            // At once, even while another shutdown (a drain, say) holds the gate below.
            self.update(State::close_and_cancel);
        }
        // One shutdown at a time: a second caller returns only once the first has joined the
        // threads. A handler never blocks on the gate (the shutdown holding it may be waiting
        // for that very handler): it waits for the jobs to end, as a shutdown inside a handler
        // does, and leaves the rest to the holder.
        let _gate = if in_handler {
            match self.shutdown_gate.try_lock() {
                Some(gate) => gate,
                None => {
                    self.update(State::close);
                    self.wait_for(&self.idle, None, |s| s.settled(true));
                    return;
                }
            }
        } else {
            self.shutdown_gate.lock()
        };
        if self.stopped.load(Ordering::SeqCst) {
            self.finish_earlier_shutdown();
            return;
        }
        let settled = |s: &State| s.settled(in_handler);
        self.update(State::close);
        if mode == ShutdownMode::Drain {
            // Draining a paused queue would wait for ever (or until the timeout): resume it.
            self.update(State::close_for_drain);
            let deadline = timeout.and_then(deadline::from_now);
            if !self.wait_for(&self.idle, deadline, settled) {
                log::info!("shutdown: drain timed out; cancelling the rest");
            }
        }
        self.update(State::close_and_cancel);
        self.wait_for(&self.idle, None, settled);
        self.stop_threads(in_handler);
    }

    /// An earlier shutdown may have run inside a handler: it could neither wait for the
    /// handlers queued behind it nor join its own thread. Outside a handler, finish that.
    fn finish_earlier_shutdown(&self) {
        if self.on_dispatcher() {
            return;
        }
        self.wait_for(&self.idle, None, |s| s.settled(false));
        let left = std::mem::take(&mut *self.threads.lock());
        for t in left.workers.into_iter().chain(left.dispatchers) {
            let _ = t.join();
        }
    }

    /// Once every job ended: tells every thread to stop and joins them (inside a handler, not
    /// the handler threads).
    fn stop_threads(&self, in_handler: bool) {
        self.stopped.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut *self.threads.lock());
        for _ in &threads.workers {
            let _ = self.work_tx.send(WorkMsg::Stop);
        }
        for _ in &threads.dispatchers {
            let _ = self.done_tx.send(DispatchMsg::Stop);
        }
        {
            let mut state = self.lock();
            // Every job ended: no event can come any more; receivers' iterations end.
            state.end_events();
            self.timer_cv.notify_all();
        }
        self.backend.shutdown();
        for t in threads.workers.into_iter().chain(threads.timer) {
            let _ = t.join();
        }
        if in_handler {
            // Inside a handler, no handler thread is joined: another one may be waiting for a
            // handler that only this thread, once it returns, can run (a wait inside a handler
            // with several handler threads). They end on their Stop; a later shutdown or the
            // owner's drop, outside a handler, joins them.
            self.threads.lock().dispatchers.extend(threads.dispatchers);
        } else {
            for t in threads.dispatchers {
                let _ = t.join();
            }
        }
    }
}
