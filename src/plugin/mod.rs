//! The plugin / pipeline layer: CCP4i2's `CPluginScript` in Rust form.
//!
//! A [`Task`] says what one step does (CCP4i2's overridable methods:
//! [`check_input_data`](Task::check_input_data),
//! [`make_command_and_script`](Task::make_command_and_script),
//! [`process_output_files`](Task::process_output_files)). A [`Plugin`] runs a task once through a
//! [`ProcessManager`] and announces the end on its [`finished`](Plugin::finished) signal. A
//! [`Pipeline`] makes child plugins ([`make_plugin_object`](Pipeline::make_plugin_object)),
//! chains them through their `finished` signals ([`connect_signal`](Pipeline::connect_signal),
//! [`connect_all`](Pipeline::connect_all)) and ends with a status of its own.
//! [`ProgramTask`] is the common task: a program fed a keyword script on stdin, with required
//! input files and expected output files.
//!
//! # When `finished` is emitted
//!
//! Exactly once per run, and only after the program has ended (the manager's record is final)
//! and post-processing has returned. CCP4i2's plugin base emitted it twice, once too early; here
//! the run is a small state machine (`Idle → Starting → Running → Finishing → Done`) and only the
//! path that wins `Finishing` emits. A run that never starts (bad input, a command that cannot be
//! built or submitted, a kill before the start) still emits `finished`, once, with `FAILED` or
//! `INTERRUPTED`; that emit happens on the thread that called [`Plugin::process`], before it
//! returns.
//!
//! # Threads
//!
//! [`Plugin::process`] returns at once; the job's completion handler post-processes and emits
//! `finished` **on the manager's dispatcher thread**, so slots (and the pipeline handlers they
//! call) run there too and must not block for long: starting the next child is fine, waiting for
//! it is not ([`Plugin::wait`] refuses there with [`PluginWaitError::InHandler`]).
//! [`Plugin::process_sync`] does everything on the calling thread. A pipeline creates no thread,
//! except one watchdog per [`Pipeline::set_timeout`].
//!
//! # Example: a two-step pipeline
//!
//! ```
//! use procman::{Pipeline, PluginInfo, PluginStatus, ProcessManager, ProgramTask};
//!
//! let manager = ProcessManager::new();
//! let dir = std::env::temp_dir().join(format!("procman-plugin-doc-{}", std::process::id()));
//! let pipeline = Pipeline::new(&manager, PluginInfo::new("demo", "1", &dir));
//!
//! let first = pipeline
//!     .make_plugin_object(ProgramTask::new("echo").arg("step one").output_file("log.txt"))
//!     .unwrap();
//! pipeline.connect_signal(&first, |pipeline, _first, _status| {
//!     // Runs on the dispatcher thread once `first` has ended and was checked.
//!     let Ok(second) = pipeline.make_plugin_object(ProgramTask::new("echo").arg("step two"))
//!     else { return };
//!     pipeline.connect_signal(&second, |pipeline, _, _| {
//!         pipeline.report_status(PluginStatus::Succeeded, "both steps ran");
//!     });
//!     second.process().unwrap();
//! });
//! first.process().unwrap();
//!
//! let end = pipeline.wait().unwrap();
//! assert_eq!(end.finish_status, PluginStatus::Succeeded);
//! assert_eq!(pipeline.child_count(), 2);
//! assert_eq!(std::fs::read_to_string(dir.join("job_2/log.txt")).unwrap(), "step two\n");
//! # std::fs::remove_dir_all(&dir).ok();
//! ```

mod pipeline;
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
