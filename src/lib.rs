//! procman
#![deny(missing_docs)]

mod signal;
pub use signal::{ConnectionId, EmitReport, Signal, SlotPanic};
