//! Watching jobs from Python: live usage samples (`Usage`), their summary in a record
//! (`UsageSummary`), progress (`Progress`), the event stream (`Event`, iterated with `Events`),
//! and the progress parser that calls a Python function on each output line.
//!
//! GIL: `Events.__next__` waits with the GIL released, in slices of at most 100 ms, checking
//! signals between them (Ctrl-C interrupts it); `Events.pending()` never blocks. A progress
//! parser runs on procman's reader thread and attaches to the interpreter for each line.

use std::time::Duration;

use procman::{
    Event as CoreEvent, Progress as CoreProgress, Usage as CoreUsage, UsageSummary as CoreSummary,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyFloat, PyInt, PyString, PyTuple};

use crate::{report, Record, SLICE};

/// One sample of a running job's whole process group (every process of it, not only those it
/// waits for). Sizes in bytes, times in seconds, CPU in per cent of one CPU.
#[pyclass(frozen, module = "procman._procman")]
#[derive(Clone)]
pub struct Usage {
    /// Seconds from the attempt's spawn to the sample.
    #[pyo3(get)]
    elapsed: f64,
    /// CPU seconds (user + system) of the group so far, children it waited for included.
    #[pyo3(get)]
    cpu: f64,
    /// CPU use since the previous sample, in per cent of one CPU (250.0: 2.5 CPUs busy).
    #[pyo3(get)]
    cpu_percent: f64,
    /// Resident memory of the group's processes now.
    #[pyo3(get)]
    rss: u64,
    /// The largest `rss` of this attempt so far.
    #[pyo3(get)]
    peak_rss: u64,
    #[pyo3(get)]
    processes: u32,
    #[pyo3(get)]
    threads: u32,
    /// Bytes read through system calls so far (`rchar`), None where unreadable.
    #[pyo3(get)]
    read_bytes: Option<u64>,
    /// Bytes written so far (`wchar`), None where unreadable.
    #[pyo3(get)]
    written_bytes: Option<u64>,
}

impl From<&CoreUsage> for Usage {
    fn from(u: &CoreUsage) -> Usage {
        Usage {
            elapsed: u.elapsed.as_secs_f64(),
            cpu: u.cpu.as_secs_f64(),
            cpu_percent: u.cpu_percent,
            rss: u.rss,
            peak_rss: u.peak_rss,
            processes: u.processes,
            threads: u.threads,
            read_bytes: u.read_bytes,
            written_bytes: u.written_bytes,
        }
    }
}

#[pymethods]
impl Usage {
    fn __repr__(&self) -> String {
        format!(
            "Usage(cpu={:.2}, cpu_percent={:.1}, rss={}, peak_rss={}, processes={})",
            self.cpu, self.cpu_percent, self.rss, self.peak_rss, self.processes
        )
    }
}

/// What a job's samples came to (the last attempt's): `Record.sampled`.
#[pyclass(frozen, module = "procman._procman")]
#[derive(Clone)]
pub struct UsageSummary {
    #[pyo3(get)]
    samples: u32,
    #[pyo3(get)]
    peak_rss: u64,
    #[pyo3(get)]
    mean_rss: u64,
    #[pyo3(get)]
    peak_cpu_percent: f64,
    /// CPU seconds over wall seconds from the spawn to the last sample, in per cent.
    #[pyo3(get)]
    mean_cpu_percent: f64,
    #[pyo3(get)]
    peak_processes: u32,
    #[pyo3(get)]
    peak_threads: u32,
    /// CPU seconds at the last sample.
    #[pyo3(get)]
    cpu: f64,
    #[pyo3(get)]
    read_bytes: Option<u64>,
    #[pyo3(get)]
    written_bytes: Option<u64>,
}

impl From<&CoreSummary> for UsageSummary {
    fn from(s: &CoreSummary) -> UsageSummary {
        UsageSummary {
            samples: s.samples,
            peak_rss: s.peak_rss,
            mean_rss: s.mean_rss,
            peak_cpu_percent: s.peak_cpu_percent,
            mean_cpu_percent: s.mean_cpu_percent,
            peak_processes: s.peak_processes,
            peak_threads: s.peak_threads,
            cpu: s.cpu.as_secs_f64(),
            read_bytes: s.read_bytes,
            written_bytes: s.written_bytes,
        }
    }
}

#[pymethods]
impl UsageSummary {
    fn __repr__(&self) -> String {
        format!(
            "UsageSummary(samples={}, peak_rss={}, mean_rss={}, peak_cpu_percent={:.1}, cpu={:.2})",
            self.samples, self.peak_rss, self.mean_rss, self.peak_cpu_percent, self.cpu
        )
    }
}

/// How far a job has got, as its progress parser read it from its output.
#[pyclass(frozen, module = "procman._procman")]
#[derive(Clone)]
pub struct Progress {
    /// 0.0 to 1.0, or None.
    #[pyo3(get)]
    fraction: Option<f64>,
    #[pyo3(get)]
    message: Option<String>,
}

impl From<&CoreProgress> for Progress {
    fn from(p: &CoreProgress) -> Progress {
        Progress {
            fraction: p.fraction,
            message: p.message.clone(),
        }
    }
}

#[pymethods]
impl Progress {
    /// A progress a parser may return: `Progress(0.5, "cycle 5 of 10")`.
    #[new]
    #[pyo3(signature = (fraction=None, message=None))]
    fn new(fraction: Option<f64>, message: Option<String>) -> Progress {
        Progress::from(&with(fraction, message))
    }

    fn __repr__(&self) -> String {
        format!(
            "Progress(fraction={:?}, message={:?})",
            self.fraction, self.message
        )
    }
}

/// Something that happened to a job. `kind` says what, and which other attributes are set:
/// 'queued' (id), 'started' (id, attempt, pid), 'retrying' (id, attempt, status), 'usage'
/// (id, attempt, usage), 'progress' (id, attempt, progress), 'finished' (id, record, status),
/// 'lost' (lost: how many events were dropped because the consumer was too slow).
#[pyclass(frozen, module = "procman._procman")]
pub struct Event {
    #[pyo3(get)]
    kind: &'static str,
    #[pyo3(get)]
    id: Option<u64>,
    #[pyo3(get)]
    attempt: Option<u32>,
    #[pyo3(get)]
    pid: Option<u32>,
    #[pyo3(get)]
    status: Option<&'static str>,
    #[pyo3(get)]
    record: Option<Py<Record>>,
    #[pyo3(get)]
    usage: Option<Usage>,
    #[pyo3(get)]
    progress: Option<Progress>,
    #[pyo3(get)]
    lost: Option<u64>,
}

impl Event {
    fn of(kind: &'static str, id: Option<u64>) -> Event {
        Event {
            kind,
            id,
            attempt: None,
            pid: None,
            status: None,
            record: None,
            usage: None,
            progress: None,
            lost: None,
        }
    }

    fn from_core(py: Python<'_>, e: CoreEvent) -> PyResult<Event> {
        Ok(match e {
            CoreEvent::Queued { id } => Event::of("queued", Some(id.0)),
            CoreEvent::Started { id, pid, attempt } => Event {
                attempt: Some(attempt),
                pid: Some(pid),
                ..Event::of("started", Some(id.0))
            },
            CoreEvent::Retrying {
                id,
                attempt,
                status,
            } => Event {
                attempt: Some(attempt),
                status: Some(status.as_str()),
                ..Event::of("retrying", Some(id.0))
            },
            CoreEvent::Usage { id, attempt, usage } => Event {
                attempt: Some(attempt),
                usage: Some(Usage::from(&usage)),
                ..Event::of("usage", Some(id.0))
            },
            CoreEvent::Progress {
                id,
                attempt,
                progress,
            } => Event {
                attempt: Some(attempt),
                progress: Some(Progress::from(&progress)),
                ..Event::of("progress", Some(id.0))
            },
            CoreEvent::Finished(r) => Event {
                status: Some(r.status.as_str()),
                record: Some(Py::new(py, Record::from(&*r))?),
                ..Event::of("finished", Some(r.id.0))
            },
            CoreEvent::Lost(n) => Event {
                lost: Some(n),
                ..Event::of("lost", None)
            },
            // A kind this binding does not know yet.
            _ => Event::of("other", None),
        })
    }
}

#[pymethods]
impl Event {
    fn __repr__(&self) -> String {
        match self.id {
            Some(id) => format!("Event(kind='{}', id={id})", self.kind),
            None => format!("Event(kind='{}')", self.kind),
        }
    }
}

/// What one wait on the subscription gave.
pub(crate) enum Next {
    Event(CoreEvent),
    Timeout,
    Closed,
}

/// A wait of at most the given time on a subscription.
pub(crate) type Recv = Box<dyn Fn(Duration) -> Next + Send + Sync>;

/// A manager's events, from `Manager.events()`: iterate to get each `Event` in order (the GIL
/// is released while waiting; Ctrl-C interrupts). The iteration ends once the manager has shut
/// down and every event was taken. At most `capacity` events wait here; beyond that they are
/// dropped and counted (an `Event` of kind 'lost'), so a slow reader never slows the jobs.
/// Dropping the object unsubscribes.
#[pyclass(frozen, module = "procman._procman")]
pub struct Events {
    recv: Recv,
}

impl Events {
    pub(crate) fn new(recv: Recv) -> Events {
        Events { recv }
    }
}

#[pymethods]
impl Events {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Event>> {
        loop {
            match py.detach(|| (self.recv)(SLICE)) {
                Next::Event(e) => return Event::from_core(py, e).map(Some),
                Next::Timeout => py.check_signals()?,
                Next::Closed => return Ok(None),
            }
        }
    }

    /// The events waiting now, in order; never blocks (for a GUI's timer).
    fn pending(&self, py: Python<'_>) -> PyResult<Vec<Event>> {
        let mut v = Vec::new();
        while let Next::Event(e) = (self.recv)(Duration::ZERO) {
            v.push(Event::from_core(py, e)?);
        }
        Ok(v)
    }
}

/// A progress parser calling `callable(line: bytes)` on procman's reader thread. It may
/// return None (the line tells nothing), a number (the fraction done, 0.0 to 1.0), a str (a
/// message), a `(fraction, message)` tuple (either may be None) or a `Progress`. Anything else,
/// or an exception, is reported on the `procman` logger and read as None.
pub(crate) fn python_progress(
    callable: Py<PyAny>,
) -> impl Fn(&[u8]) -> Option<CoreProgress> + Send + Sync + 'static {
    move |line: &[u8]| {
        Python::try_attach(|py| {
            let got = callable.bind(py).call1((PyBytes::new(py, line),));
            match got.and_then(|v| progress_of(&v)) {
                Ok(p) => p,
                Err(e) => {
                    report(py, "the progress parser failed", e);
                    None
                }
            }
        })
        .flatten()
    }
}

fn progress_of(v: &Bound<'_, PyAny>) -> PyResult<Option<CoreProgress>> {
    if v.is_none() {
        return Ok(None);
    }
    if let Ok(p) = v.cast::<Progress>() {
        let p = p.get();
        return Ok(Some(with(p.fraction, p.message.clone())));
    }
    if v.is_instance_of::<PyFloat>() || v.is_instance_of::<PyInt>() {
        return Ok(Some(CoreProgress::fraction(v.extract::<f64>()?)));
    }
    if v.is_instance_of::<PyString>() {
        return Ok(Some(CoreProgress::message(v.extract::<String>()?)));
    }
    if let Ok(t) = v.cast::<PyTuple>() {
        if t.len() == 2 {
            let fraction: Option<f64> = t.get_item(0)?.extract()?;
            let message: Option<String> = t.get_item(1)?.extract()?;
            return Ok(Some(with(fraction, message)));
        }
    }
    Err(pyo3::exceptions::PyTypeError::new_err(
        "a progress parser returns None, a fraction, a message, (fraction, message) or a Progress",
    ))
}

fn with(fraction: Option<f64>, message: Option<String>) -> CoreProgress {
    let mut p = fraction.map_or_else(CoreProgress::default, CoreProgress::fraction);
    p.message = message;
    p
}
