//! A host whose logger panics (a bug in the host, or a logger that cannot write) cannot lose a
//! completion or stall the pool: the panic rule (DESIGN.md) covers the log lines procman writes
//! while it ends a job and while it grows its worker pool. Its own process: the logger is global.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use procman::{JobSpec, JobStatus, ProcessManager};

struct PanickingLogger;

impl log::Log for PanickingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let text = record.args().to_string();
        if text.contains(" ended: ") {
            panic!("the host's logger panics on: {text}");
        }
    }
    fn flush(&self) {}
}

#[test]
fn a_logger_that_panics_as_jobs_end_loses_no_handler_call_and_no_dependant() {
    log::set_boxed_logger(Box::new(PanickingLogger)).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let m = ProcessManager::builder().limit(2).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = |spec: JobSpec| {
        let calls = calls.clone();
        spec.on_finish(move |_| {
            calls.fetch_add(1, Ordering::SeqCst);
        })
    };
    let first = m.start_process(counted(JobSpec::new("false"))).unwrap();
    let second = m
        .start_process(counted(JobSpec::new("true").after(first)))
        .unwrap();
    let third = m.start_process(counted(JobSpec::new("true"))).unwrap();
    let bound = Duration::from_secs(30);
    let status = |id| m.wait_timeout(id, bound).map(|r| r.status);
    assert_eq!(status(first), Ok(JobStatus::Failed));
    assert_eq!(status(second), Ok(JobStatus::DependencyFailed));
    assert_eq!(status(third), Ok(JobStatus::Finished));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The pool still serves jobs after the panics.
    assert_eq!(
        m.run(JobSpec::new("true")).unwrap().status,
        JobStatus::Finished
    );
}
