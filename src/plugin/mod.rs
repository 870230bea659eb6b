//! The plugin / pipeline layer (layer 6, on top of the manager): CCP4i2's `CPluginScript` in
//! Rust form. Private: its items are re-exported at the crate root, where their docs are.
//!
//! - `status.rs`: [`PluginStatus`] (CCP4i2's numbered constants), [`FinishStatus`] (what
//!   `finished` carries).
//! - `task.rs`: [`Task`] (CCP4i2's overridable methods), [`PluginInfo`] (name, job number,
//!   work directory), [`ProgramTask`] (a program fed a keyword script).
//! - `plugin.rs`: [`Plugin`], one task run once as a job (the run state machine,
//!   `Idle → Starting → Running → Finishing → Done`), and [`AlreadyStarted`].
//! - `pipeline.rs`: [`Pipeline`], children chained through their `finished` signals, and
//!   [`PipelineFinished`].
//! - `wait.rs`: [`PluginWaitError`] and the one wait loop `Plugin` and `Pipeline` share.

mod pipeline;
// plugin/plugin.rs holds `Plugin`, as pipeline.rs holds `Pipeline`: files named for what they hold.
#[allow(clippy::module_inception)]
mod plugin;
mod status;
mod task;
mod wait;

pub use pipeline::{Pipeline, PipelineFinished};
pub use plugin::{AlreadyStarted, Plugin};
pub use status::{FinishStatus, PluginStatus};
pub use task::{PluginInfo, ProgramTask, Task};
pub use wait::PluginWaitError;
