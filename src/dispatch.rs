//! The dispatcher thread: calls completion handlers one at a time, in completion order, outside
//! every lock and after the job's slot was released. A panicking handler is caught, logged and
//! recorded on the job; the dispatcher goes on.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_channel::Receiver;

use crate::manager::Inner;
use crate::sched::DispatchMsg;

pub(crate) fn dispatcher_loop(inner: Arc<Inner>, rx: Receiver<DispatchMsg>) {
    for msg in rx {
        let done = match msg {
            DispatchMsg::Stop => break,
            DispatchMsg::Done(d) => d,
        };
        let panic = done.handler.and_then(|handler| {
            catch_unwind(AssertUnwindSafe(|| handler(&done.record)))
                .err()
                .map(|p| panic_message(&*p))
        });
        if let Some(msg) = &panic {
            log::error!("job {}: the completion handler panicked: {msg}", done.id);
        }
        inner.handler_returned(done.id, panic);
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}
