//! The handler threads (`Builder::handler_threads`, default 1: "the dispatcher"): each takes
//! the next completion from one shared queue, in completion order, and calls its handler outside
//! every lock and after the job's slot was released. With one thread, handlers run one at a
//! time in completion order; with more, a slow handler holds back only its own thread. A
//! completion is taken by exactly one thread, so each handler is called exactly once. A
//! panicking handler is caught, logged and recorded on the job; the thread goes on. So does a
//! panic of the thread's own code (the panic rule, DESIGN.md): the handler is still called
//! exactly once, the completion is still reported, and `JobRecord::handler_error` says
//! "internal error: ...".

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::engine::sched::DispatchMsg;
use crate::engine::Inner;
use crate::record::JobId;

/// Lives in `error`; re-exported here for the callers that still import it from here
/// (`engine/mod.rs`, `plugin/mod.rs`) until they import it from `error` (issue 18).
use crate::error::panic_message;

thread_local! {
    /// On a handler thread: its manager's key (`Inner::key`, never 0) and the job whose handler
    /// runs now. `(0, None)` on every other thread.
    static HANDLER: Cell<(u64, Option<JobId>)> = const { Cell::new((0, None)) };
}

/// True on a handler thread of the manager with this key.
pub(crate) fn on_handler_thread(key: u64) -> bool {
    HANDLER.with(|h| h.get().0 == key)
}

/// On a handler thread of the manager with this key: the job whose handler runs now.
pub(crate) fn current_handler_job(key: u64) -> Option<JobId> {
    HANDLER.with(|h| {
        let (k, job) = h.get();
        if k == key {
            job
        } else {
            None
        }
    })
}

pub(crate) fn dispatcher_loop(inner: Arc<Inner>, rx: Receiver<DispatchMsg>) {
    HANDLER.with(|h| h.set((inner.key, None)));
    for msg in rx {
        let done = match msg {
            DispatchMsg::Stop => break,
            DispatchMsg::Done(d) => d,
        };
        let id = done.id;
        HANDLER.with(|h| h.set((inner.key, Some(id))));
        let record = done.record;
        let mut handler = done.handler;
        // Everything but the handler call itself runs under this catch: should any of it panic,
        // the handler is still called once (below, if the panic came first) and the completion
        // is still reported, so no `wait` and no shutdown waits for ever.
        let body = catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            crate::fault::hit(&record.args, crate::fault::DISPATCHER_BEFORE);
            let panic = call(id, handler.take(), &record);
            #[cfg(test)]
            crate::fault::hit(&record.args, crate::fault::DISPATCHER_AFTER);
            panic
        }));
        let panic = match body {
            Ok(panic) => panic,
            Err(p) => {
                let msg = format!(
                    "internal error: the dispatcher thread panicked: {}",
                    panic_message(&*p)
                );
                log::error!("job {id}: {msg}");
                // Only a handler not called yet is still here.
                let _ = call(id, handler.take(), &record);
                Some(msg)
            }
        };
        HANDLER.with(|h| h.set((inner.key, None)));
        inner.handler_returned(id, panic);
    }
}

/// Calls the handler, if any, catching its panic: returns the panic's message.
fn call(
    id: crate::record::JobId,
    handler: Option<crate::spec::Handler>,
    record: &crate::record::JobRecord,
) -> Option<String> {
    let handler = handler?;
    let msg = catch_unwind(AssertUnwindSafe(|| handler(record)))
        .err()
        .map(|p| panic_message(&*p))?;
    log::error!("job {id}: the completion handler panicked: {msg}");
    Some(msg)
}
