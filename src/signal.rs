//! A thread-safe, re-entrant callback list: [`Signal<T>`] (layer 6, beside the plugin layer,
//! which uses it for `finished`). Private: its items are re-exported at the crate root.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// Source of connection ids, shared by every signal in the process so that
/// an id is never reused, not even by another signal.
static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Identifies one connection made on a [`Signal`].
///
/// Returned by every `connect*` method and accepted by
/// [`Signal::disconnect`]. Ids are unique for the life of the process (they
/// are never reused, and two signals never hand out the same id), so a stale
/// id can at worst disconnect nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection #{}", self.0)
    }
}

/// A slot that panicked during [`Signal::emit`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlotPanic {
    /// The connection whose slot panicked.
    pub id: ConnectionId,
    /// The panic message, if the payload was a string; otherwise a
    /// placeholder saying that it was not.
    pub message: String,
}

/// What one [`Signal::emit`] did.
///
/// Panics are also logged with [`log::error!`] as they happen, so ignoring
/// the report does not lose them silently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmitReport {
    /// How many slots were called, including those that panicked.
    pub called: usize,
    /// The slots that panicked, in the order they were called.
    pub panicked: Vec<SlotPanic>,
}

impl EmitReport {
    /// `true` if no slot panicked.
    pub fn is_ok(&self) -> bool {
        self.panicked.is_empty()
    }
}

/// A weak connection: calls `slot` with the upgraded receiver, if it still
/// exists.
trait WeakSlot<T>: Send + Sync {
    /// Calls the slot and returns `true`, or returns `false` without calling
    /// it if the receiver has been dropped.
    fn call(&self, arg: &T) -> bool;
    /// Whether the receiver still exists.
    fn receiver_alive(&self) -> bool;
}

struct WeakMethod<R: ?Sized, F> {
    receiver: Weak<R>,
    slot: F,
}

impl<T, R, F> WeakSlot<T> for WeakMethod<R, F>
where
    R: ?Sized + Send + Sync,
    F: Fn(&R, &T) + Send + Sync,
{
    fn call(&self, arg: &T) -> bool {
        match self.receiver.upgrade() {
            Some(receiver) => {
                (self.slot)(&receiver, arg);
                true
            }
            None => false,
        }
    }

    fn receiver_alive(&self) -> bool {
        self.receiver.strong_count() > 0
    }
}

type OnceFn<T> = Box<dyn FnOnce(&T) + Send>;

enum Callback<T> {
    Strong(Box<dyn Fn(&T) + Send + Sync>),
    /// Taken (at most once) by the emit that wins `alive.swap(false)`.
    Once(Mutex<Option<OnceFn<T>>>),
    Weak(Box<dyn WeakSlot<T>>),
}

struct Slot<T> {
    id: ConnectionId,
    priority: i32,
    /// Cleared by `disconnect`, and by the emit that claims a once-only slot.
    alive: AtomicBool,
    callback: Callback<T>,
}

impl<T> Slot<T> {
    /// Whether this connection still counts: not disconnected, not already
    /// fired (once-only), receiver not dropped (weak).
    fn is_live(&self) -> bool {
        self.alive.load(Ordering::Acquire) && self.receiver_alive()
    }

    /// `false` only for a weak connection whose receiver has been dropped.
    fn receiver_alive(&self) -> bool {
        match &self.callback {
            Callback::Weak(weak) => weak.receiver_alive(),
            Callback::Strong(_) | Callback::Once(_) => true,
        }
    }

    /// Clears the alive flag; returns whether the connection was live.
    fn kill(&self) -> bool {
        let was_alive = self.alive.swap(false, Ordering::AcqRel);
        was_alive && self.receiver_alive()
    }
}

/// The slot list, sorted by descending priority then connection order.
/// Copy-on-write: `emit` clones the outer `Arc` (a snapshot) and mutators
/// use `Arc::make_mut`, which copies the vector only while a snapshot is
/// outstanding.
type SlotList<T> = Arc<Vec<Arc<Slot<T>>>>;

/// A list of callbacks ("slots") called in order by [`emit`](Signal::emit).
///
/// It replaces the Python signal type used by CCP4i2, and fixes that type's known faults:
///
/// * **Connection ids are unique and never reused.** [`Signal::disconnect`] removes exactly
///   the connection it names. Ids come from one process-wide counter, so an id from one signal
///   never disconnects a slot of another.
/// * **Weak connections.** [`Signal::connect_weak`] ties a connection to an [`Arc`]-owned
///   receiver without keeping the receiver alive: the connection disappears when the receiver
///   is dropped. This is how to connect a "method" of an object.
/// * **No lock is held while a slot runs.** `emit` takes a snapshot of the slot list under a
///   short internal lock, releases the lock, then calls the slots. A slot may therefore
///   connect, disconnect or emit re-entrantly on the same signal, and a slow slot never blocks
///   another thread's `connect`, `disconnect` or `emit`.
/// * **A panicking slot does not stop the others.** The panic is caught, logged with
///   [`log::error!`] and returned in the [`EmitReport`].
///
/// Slots are connected with [`connect`](Signal::connect),
/// [`connect_with_priority`](Signal::connect_with_priority),
/// [`connect_once`](Signal::connect_once) or
/// [`connect_weak`](Signal::connect_weak), and removed by id with
/// [`disconnect`](Signal::disconnect). `Signal<T>` is `Send + Sync` (slots
/// must be `Send + Sync + 'static`), so it can be shared between threads,
/// typically in an [`Arc`] or as a field of a shared object.
///
/// # Blocking behaviour
///
/// `emit` runs every slot **on the calling thread** and returns only when all
/// of them have returned: a slot that blocks, blocks its emitter (and only its
/// emitter). No threads are created, per emit or otherwise. All other methods
/// take the internal lock only for a bounded amount of bookkeeping (no user
/// code runs under it, not even a slot's destructor), so they never wait for a
/// running slot.
///
/// # Ordering and concurrency guarantees
///
/// * Slots run in descending priority ([`Signal::connect_with_priority`]);
///   slots of equal priority run in connection order. [`Signal::connect`] uses
///   priority 0.
/// * An emit calls the slots that were connected when it took its snapshot.
///   A slot connected during an emit (by a slot or by another thread) is first
///   called by the next emit.
/// * A slot disconnected during an emit, before that emit reached it, is not
///   called (each connection has an "alive" flag that is checked just before
///   the call). Once `disconnect` has returned, no emit that *starts*
///   afterwards calls the slot; `disconnect` does not wait for a call that
///   another thread has already started.
/// * A once-only slot ([`Signal::connect_once`]) runs at most once, even when
///   several threads emit concurrently.
/// * Each emit calls each slot at most once; concurrent emits may run the
///   same slot concurrently on different threads, so slots must be
///   `Send + Sync`.
///
/// # Failure modes
///
/// * A panicking slot is caught with [`std::panic::catch_unwind`] (the panic
///   hook still runs, so by default the message is also printed to stderr).
///   The slot stays connected (unless it was once-only), the remaining slots
///   still run, and the panic is listed in [`EmitReport::panicked`]. State
///   that the slot shared with others may have been left half-updated: the
///   signal makes no unwind-safety promise on the slot's behalf.
/// * A slot that emits the same signal unconditionally recurses without
///   bound and overflows the stack, exactly as a recursive function would.
/// * If the process aborts on panic (`panic = "abort"`), a panicking slot
///   aborts the process; nothing can be reported.
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use procman::Signal;
///
/// /// A receiver with a "method" slot.
/// struct Progress {
///     last: AtomicUsize,
/// }
///
/// impl Progress {
///     fn on_progress(&self, percent: &usize) {
///         self.last.store(*percent, Ordering::SeqCst);
///     }
/// }
///
/// let finished: Signal<usize> = Signal::new();
///
/// // A plain closure, run before everything else thanks to its priority.
/// let log_id = finished.connect_with_priority(10, |percent| {
///     println!("progress: {percent}%");
/// });
///
/// // A weak "method" connection: it does not keep `progress` alive.
/// let progress = Arc::new(Progress { last: AtomicUsize::new(0) });
/// finished.connect_weak(&progress, Progress::on_progress);
///
/// // A slot that panics is reported; the others still run.
/// let bad_id = finished.connect(|_| panic!("broken slot"));
///
/// let report = finished.emit(&50);
/// assert_eq!(report.called, 3);
/// assert_eq!(report.panicked.len(), 1);
/// assert_eq!(report.panicked[0].id, bad_id);
/// assert_eq!(progress.last.load(Ordering::SeqCst), 50);
///
/// assert!(finished.disconnect(bad_id));
/// assert!(!finished.disconnect(bad_id)); // already gone
///
/// // Dropping the receiver removes its connection.
/// drop(progress);
/// assert_eq!(finished.connection_count(), 1);
/// assert!(finished.emit(&100).is_ok());
/// # let _ = log_id;
/// ```
pub struct Signal<T> {
    slots: Mutex<SlotList<T>>,
}

impl<T> Signal<T> {
    /// Creates a signal with no connections.
    pub fn new() -> Self {
        Signal {
            slots: Mutex::new(Arc::new(Vec::new())),
        }
    }

    /// Connects `slot` with priority 0 and returns its id.
    ///
    /// The slot is called by every later [`emit`](Self::emit) until it is
    /// disconnected.
    pub fn connect<F>(&self, slot: F) -> ConnectionId
    where
        F: Fn(&T) + Send + Sync + 'static,
    {
        self.connect_with_priority(0, slot)
    }

    /// Connects `slot` with the given priority and returns its id.
    ///
    /// Higher-priority slots run first; slots of equal priority run in
    /// connection order.
    pub fn connect_with_priority<F>(&self, priority: i32, slot: F) -> ConnectionId
    where
        F: Fn(&T) + Send + Sync + 'static,
    {
        self.insert(priority, Callback::Strong(Box::new(slot)))
    }

    /// Connects a slot that runs at most once, at priority 0.
    ///
    /// The first emit to reach the slot claims it atomically and calls it;
    /// the connection is then gone (it is no longer counted and
    /// [`disconnect`](Self::disconnect) returns `false`). Concurrent emits
    /// never run it twice. If it panics, it still counts as having run.
    pub fn connect_once<F>(&self, slot: F) -> ConnectionId
    where
        F: FnOnce(&T) + Send + 'static,
    {
        self.insert(0, Callback::Once(Mutex::new(Some(Box::new(slot)))))
    }

    /// Connects a slot tied to an `Arc`-owned `receiver`, at priority 0.
    ///
    /// The signal keeps only a [`Weak`] reference: the connection does not
    /// keep the receiver alive and disappears once the receiver is dropped.
    /// While the receiver lives, each emit upgrades the reference and calls
    /// `slot(&receiver, arg)`, so a method such as `Receiver::on_event(&self,
    /// arg: &T)` can be passed directly.
    ///
    /// During the call the emitting thread holds a strong reference; if the
    /// last other owner drops the receiver meanwhile, the receiver is dropped
    /// on the emitting thread when the slot returns.
    pub fn connect_weak<R, F>(&self, receiver: &Arc<R>, slot: F) -> ConnectionId
    where
        R: ?Sized + Send + Sync + 'static,
        F: Fn(&R, &T) + Send + Sync + 'static,
    {
        let weak = WeakMethod {
            receiver: Arc::downgrade(receiver),
            slot,
        };
        self.insert(0, Callback::Weak(Box::new(weak)))
    }

    /// Disconnects the connection `id`.
    ///
    /// Returns `true` if it was connected and live, `false` if `id` is
    /// unknown to this signal, was already disconnected, was a once-only slot
    /// that has already run, or was a weak connection whose receiver has been
    /// dropped.
    ///
    /// After this returns, no emit that starts later calls the slot, and an
    /// emit in progress on this thread (a slot disconnecting a later slot)
    /// skips it. A call already started by another thread is not waited for.
    pub fn disconnect(&self, id: ConnectionId) -> bool {
        let removed = self.remove_where(|slot| slot.id == id);
        // `removed` (and any slot closure it owns) is dropped here, after the
        // lock has been released.
        removed.iter().any(|slot| slot.kill())
    }

    /// Disconnects every connection and returns how many were live.
    pub fn disconnect_all(&self) -> usize {
        let removed = std::mem::replace(&mut *self.slots.lock(), Arc::new(Vec::new()));
        // The lock is released; `removed` is dropped on return.
        removed.iter().filter(|slot| slot.kill()).count()
    }

    /// The number of live connections.
    ///
    /// Once-only slots that have run and weak connections whose receiver has
    /// been dropped are not counted; they are pruned from the list.
    pub fn connection_count(&self) -> usize {
        drop(self.remove_where(|slot| !slot.is_live()));
        self.slots.lock().len()
    }

    /// Calls every connected slot with `arg`, on the calling thread, and
    /// returns what happened.
    ///
    /// Blocks until every slot has returned. No lock is held while a slot
    /// runs: the slot list is snapshotted first, so slots may connect,
    /// disconnect or emit re-entrantly, and other threads may use the signal
    /// meanwhile. Slots connected during this emit are not called by it;
    /// slots disconnected before this emit reaches them are skipped.
    ///
    /// A panicking slot is caught, logged with [`log::error!`] and listed in
    /// [`EmitReport::panicked`]; the remaining slots still run.
    pub fn emit(&self, arg: &T) -> EmitReport {
        let snapshot = Arc::clone(&self.slots.lock());
        let mut report = EmitReport::default();
        let mut prune = false;
        for slot in snapshot.iter() {
            if !slot.alive.load(Ordering::Acquire) {
                continue;
            }
            let outcome = match &slot.callback {
                Callback::Strong(f) => Some(catch_unwind(AssertUnwindSafe(|| f(arg)))),
                Callback::Once(cell) => {
                    // The atomic claim: exactly one emit wins the swap.
                    if slot.alive.swap(false, Ordering::AcqRel) {
                        prune = true;
                        let f = cell.lock().take();
                        f.map(|f| catch_unwind(AssertUnwindSafe(move || f(arg))))
                    } else {
                        None
                    }
                }
                Callback::Weak(weak) => match catch_unwind(AssertUnwindSafe(|| weak.call(arg))) {
                    Ok(true) => Some(Ok(())),
                    Ok(false) => {
                        prune = true;
                        None
                    }
                    Err(payload) => Some(Err(payload)),
                },
            };
            match outcome {
                None => {}
                Some(Ok(())) => report.called += 1,
                Some(Err(payload)) => {
                    report.called += 1;
                    let message = crate::error::panic_message(&*payload);
                    log::error!("signal slot {} panicked: {message}", slot.id);
                    report.panicked.push(SlotPanic {
                        id: slot.id,
                        message,
                    });
                }
            }
        }
        drop(snapshot);
        if prune {
            drop(self.remove_where(|slot| !slot.is_live()));
        }
        report
    }

    /// Inserts a new connection after every slot of priority `>= priority`.
    fn insert(&self, priority: i32, callback: Callback<T>) -> ConnectionId {
        let mut slots = self.slots.lock();
        // Taken under the lock so that ids increase in insertion order.
        let id = ConnectionId(NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed));
        let slot = Arc::new(Slot {
            id,
            priority,
            alive: AtomicBool::new(true),
            callback,
        });
        let slots = Arc::make_mut(&mut slots);
        let position = slots.partition_point(|other| other.priority >= priority);
        slots.insert(position, slot);
        id
    }

    /// Removes the slots matching `doomed` and returns them, so that the
    /// caller drops them (running arbitrary destructors of captured state)
    /// only after the lock has been released.
    fn remove_where(&self, mut doomed: impl FnMut(&Slot<T>) -> bool) -> Vec<Arc<Slot<T>>> {
        let mut slots = self.slots.lock();
        if !slots.iter().any(|slot| doomed(slot)) {
            return Vec::new();
        }
        let mut removed = Vec::new();
        Arc::make_mut(&mut slots).retain(|slot| {
            if doomed(slot) {
                removed.push(Arc::clone(slot));
                false
            } else {
                true
            }
        });
        removed
    }
}

impl<T> Default for Signal<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Signal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Counts without pruning: formatting should not mutate.
        let live = self.slots.lock().iter().filter(|s| s.is_live()).count();
        f.debug_struct("Signal")
            .field("connections", &live)
            .finish_non_exhaustive()
    }
}
