//! `procman._procman`: the native half of procman's Python bindings.
//!
//! GIL rules (python/README.md, "Threads and the GIL"):
//! - Every call that can block (`wait`, `run`, `wait_all`, `shutdown`) detaches from the
//!   interpreter and waits in slices of at most 100 ms, calling `check_signals` between slices,
//!   so other Python threads run meanwhile and Ctrl-C interrupts the wait.
//! - Quick calls (`start`, `job`, `kill`, ...) keep the GIL: procman holds its own lock only for
//!   microseconds and never takes the GIL under it, so no lock-order inversion is possible.
//! - Handlers run on procman's handler threads, observers on its reader threads; each attaches
//!   to the interpreter for the call (`Python::try_attach`: skipped once the interpreter is
//!   shutting down). A handler may call back into the manager, including `wait` and `run`.
//! - A Python exception in a handler is logged to the `procman` logger and recorded in the
//!   job's `handler_error`; the handler thread goes on.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use procman::slurm::SlurmOptions;
use procman::{
    BuildError, Containment, Handle, JobId, JobRecord, JobSpec as CoreSpec, JobStatus, KillOutcome,
    ProcessManager, RecordHold, Retention, ShutdownMode, StartError as CoreStartError, Stream,
    WaitTimeoutError,
};
mod watch;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTimeoutError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

pyo3::create_exception!(
    _procman,
    StartError,
    PyValueError,
    "The manager refused a job: empty program, NUL byte, bad environment name, unknown \
     dependency, a job that can never fit, or a manager that is shut down."
);

/// How long one detached wait lasts before signals are checked again.
const SLICE: Duration = Duration::from_millis(100);

fn start_error(e: CoreStartError) -> PyErr {
    StartError::new_err(e.to_string())
}

fn epoch(t: Option<SystemTime>) -> Option<f64> {
    t.map(|t| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    })
}

/// A final or in-progress snapshot of one job (procman's `JobRecord`), read-only.
#[pyclass(frozen, module = "procman._procman")]
pub struct Record {
    /// The job id (from 1000 up).
    #[pyo3(get)]
    id: u64,
    #[pyo3(get)]
    program: OsString,
    #[pyo3(get)]
    args: Vec<OsString>,
    #[pyo3(get)]
    interpreter: Option<OsString>,
    /// 'pending', 'running', 'finished', 'failed', 'timeout', 'crashed', 'killed',
    /// 'cancelled', 'spawn_failed', 'dependency_failed' or 'internal_error'.
    #[pyo3(get)]
    status: &'static str,
    #[pyo3(get)]
    exit_code: Option<i32>,
    #[pyo3(get)]
    signal: Option<i32>,
    /// The OS process id of the last attempt (also its process group id).
    #[pyo3(get)]
    pid: Option<u32>,
    /// On Slurm arrays: the job's task in the array whose id is `pid` (Slurm names it
    /// `PID_TASK`); None otherwise.
    #[pyo3(get)]
    array_task: Option<u32>,
    #[pyo3(get)]
    queued_at: Option<f64>,
    #[pyo3(get)]
    started_at: Option<f64>,
    #[pyo3(get)]
    finished_at: Option<f64>,
    #[pyo3(get)]
    log_file: Option<OsString>,
    #[pyo3(get)]
    error_file: Option<OsString>,
    #[pyo3(get)]
    error: Option<String>,
    #[pyo3(get)]
    attempts: u32,
    #[pyo3(get)]
    handler_error: Option<String>,
    #[pyo3(get)]
    priority: i32,
    #[pyo3(get)]
    after: Vec<u64>,
    #[pyo3(get)]
    wall_time: Option<f64>,
    #[pyo3(get)]
    user_cpu: Option<f64>,
    #[pyo3(get)]
    system_cpu: Option<f64>,
    #[pyo3(get)]
    peak_memory: Option<u64>,
    /// The summary of the job's live samples (peaks and means of its whole process group), when
    /// its manager samples (`Manager(sample_interval=...)`); so far while it runs.
    #[pyo3(get)]
    sampled: Option<watch::UsageSummary>,
    /// CCP4i2's success flag (`JobRecord::ccp4i2_exit_status`): 0 when the job finished
    /// successfully, else 1. The Python name stays `exit_status` (what CCP4i2 reads).
    #[pyo3(get)]
    exit_status: i32,
    #[pyo3(get)]
    is_final: bool,
    #[pyo3(get)]
    is_success: bool,
    describe: String,
}

impl From<&JobRecord> for Record {
    fn from(r: &JobRecord) -> Record {
        Record {
            id: r.id.0,
            program: r.program.clone(),
            args: r.args.clone(),
            interpreter: r.interpreter.clone(),
            status: r.status.as_str(),
            exit_code: r.exit_code,
            signal: r.signal,
            pid: r.pid,
            array_task: r.array_task,
            queued_at: epoch(Some(r.queued_at)),
            started_at: epoch(r.started_at),
            finished_at: epoch(r.finished_at),
            log_file: r.log_file.clone().map(Into::into),
            error_file: r.error_file.clone().map(Into::into),
            error: r.error.clone(),
            attempts: r.attempts,
            handler_error: r.handler_error.clone(),
            priority: r.priority,
            after: r.after.iter().map(|j| j.0).collect(),
            wall_time: r.usage.map(|u| u.wall.as_secs_f64()),
            user_cpu: r.usage.and_then(|u| u.user_cpu).map(|d| d.as_secs_f64()),
            system_cpu: r.usage.and_then(|u| u.system_cpu).map(|d| d.as_secs_f64()),
            peak_memory: r.usage.and_then(|u| u.peak_memory),
            sampled: r.sampled.as_deref().map(watch::UsageSummary::from),
            exit_status: r.ccp4i2_exit_status(),
            is_final: r.status.is_final(),
            is_success: r.status.is_success(),
            describe: r.describe_end(),
        }
    }
}

#[pymethods]
impl Record {
    /// A sentence describing how the job ended ("exited with code 3", "timed out", ...).
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn __repr__(&self) -> String {
        let code = self.exit_code.map_or("None".to_owned(), |c| c.to_string());
        format!(
            "Record(id={}, program='{}', status='{}', exit_code={code})",
            self.id,
            self.program.to_string_lossy(),
            self.status
        )
    }
}

/// What to run and how. Every attribute may be changed until the spec is started; values are
/// checked when the job is started (`start`/`run`), not here.
#[pyclass(module = "procman._procman")]
pub struct JobSpec {
    /// The program (looked up in PATH when it has no '/'): str or os.PathLike.
    #[pyo3(get, set)]
    program: Py<PyAny>,
    /// The arguments: a sequence of str, bytes or os.PathLike (int and float are turned into str).
    #[pyo3(get, set)]
    args: Py<PyAny>,
    /// argv = [interpreter, program, *args] when set.
    #[pyo3(get, set)]
    interpreter: Py<PyAny>,
    /// Standard input from this file (streamed, never read into memory). Default /dev/null.
    #[pyo3(get, set)]
    input_file: Py<PyAny>,
    /// Standard input from these bytes (instead of input_file).
    #[pyo3(get, set)]
    input_bytes: Py<PyAny>,
    /// Standard output to this file; stderr then defaults to `<log without suffix>_err.txt`.
    #[pyo3(get, set)]
    log_file: Py<PyAny>,
    /// Standard error to this file instead of the default.
    #[pyo3(get, set)]
    error_file: Py<PyAny>,
    /// Standard error into the log file, interleaved.
    #[pyo3(get, set)]
    merge_stderr: bool,
    #[pyo3(get, set)]
    cwd: Py<PyAny>,
    /// A mapping that replaces the whole environment (None: inherit).
    #[pyo3(get, set)]
    env: Py<PyAny>,
    /// A mapping of variables set on top of the inherited (or replaced) environment.
    #[pyo3(get, set)]
    env_update: Py<PyAny>,
    /// Seconds (float or datetime.timedelta); None for none.
    #[pyo3(get, set)]
    timeout: Py<PyAny>,
    /// Seconds between SIGTERM and SIGKILL on timeout or kill; None for the manager's.
    #[pyo3(get, set)]
    grace: Py<PyAny>,
    /// Called once as `on_finish(record)` on one of procman's handler threads.
    #[pyo3(get, set)]
    on_finish: Py<PyAny>,
    /// Called as `observe(job_id, 'stdout' | 'stderr', line: bytes)` on a reader thread.
    #[pyo3(get, set)]
    observe: Py<PyAny>,
    /// Called as `progress(line: bytes)` on a reader thread for each output line; returns None,
    /// a fraction (0.0 to 1.0), a message, `(fraction, message)` or a `Progress`. The latest
    /// is in `Manager.progress(id)` and the events.
    #[pyo3(get, set)]
    progress: Py<PyAny>,
    #[pyo3(get, set)]
    priority: i32,
    /// Job ids this job runs after (it starts only if they all finished successfully).
    #[pyo3(get, set)]
    after: Vec<u64>,
    /// Whether processes left in the job's group when it exits are killed (None: manager's).
    #[pyo3(get, set)]
    kill_leftovers: Option<bool>,
    /// Memory limit of the job's whole process tree in bytes (its cgroup's memory.max; needs
    /// cgroup containment with the memory controller, else `start` raises StartError).
    #[pyo3(get, set)]
    memory_limit: Option<u64>,
}

#[pymethods]
impl JobSpec {
    #[new]
    #[pyo3(signature = (program, args=None, *, interpreter=None, input_file=None, input_bytes=None,
        log_file=None, error_file=None, merge_stderr=false, cwd=None, env=None, env_update=None,
        timeout=None, grace=None, on_finish=None, observe=None, progress=None, priority=0,
        after=None, kill_leftovers=None, memory_limit=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        program: Py<PyAny>,
        args: Option<Py<PyAny>>,
        interpreter: Option<Py<PyAny>>,
        input_file: Option<Py<PyAny>>,
        input_bytes: Option<Py<PyAny>>,
        log_file: Option<Py<PyAny>>,
        error_file: Option<Py<PyAny>>,
        merge_stderr: bool,
        cwd: Option<Py<PyAny>>,
        env: Option<Py<PyAny>>,
        env_update: Option<Py<PyAny>>,
        timeout: Option<Py<PyAny>>,
        grace: Option<Py<PyAny>>,
        on_finish: Option<Py<PyAny>>,
        observe: Option<Py<PyAny>>,
        progress: Option<Py<PyAny>>,
        priority: i32,
        after: Option<Vec<u64>>,
        kill_leftovers: Option<bool>,
        memory_limit: Option<u64>,
    ) -> JobSpec {
        let none = || py.None();
        JobSpec {
            program,
            args: args.unwrap_or_else(|| PyList::empty(py).into_any().unbind()),
            interpreter: interpreter.unwrap_or_else(none),
            input_file: input_file.unwrap_or_else(none),
            input_bytes: input_bytes.unwrap_or_else(none),
            log_file: log_file.unwrap_or_else(none),
            error_file: error_file.unwrap_or_else(none),
            merge_stderr,
            cwd: cwd.unwrap_or_else(none),
            env: env.unwrap_or_else(none),
            env_update: env_update.unwrap_or_else(none),
            timeout: timeout.unwrap_or_else(none),
            grace: grace.unwrap_or_else(none),
            on_finish: on_finish.unwrap_or_else(none),
            observe: observe.unwrap_or_else(none),
            progress: progress.unwrap_or_else(none),
            priority,
            after: after.unwrap_or_default(),
            kill_leftovers,
            memory_limit,
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "JobSpec({}, {})",
            self.program.bind(py).repr()?,
            self.args.bind(py).repr()?
        ))
    }
}

/// str, bytes or os.PathLike (and, for arguments, int or float) as an OS string.
fn os_string(ob: &Bound<'_, PyAny>, numbers: bool) -> PyResult<OsString> {
    let py = ob.py();
    if numbers
        && !ob.is_instance_of::<pyo3::types::PyBool>()
        && (ob.is_instance_of::<pyo3::types::PyInt>()
            || ob.is_instance_of::<pyo3::types::PyFloat>())
    {
        return Ok(ob.str()?.to_string().into());
    }
    if let Ok(s) = ob.cast::<PyString>() {
        // The common case without a call into Python: a str that is valid UTF-8 (one with
        // surrogate escapes fails here and goes through os.fsencode below).
        if let Ok(text) = s.to_cow() {
            return Ok(OsString::from(text.into_owned()));
        }
    }
    let bytes = py.import("os")?.getattr("fsencode")?.call1((ob,))?;
    Ok(OsString::from_vec(
        bytes.cast::<PyBytes>()?.as_bytes().to_vec(),
    ))
}

fn opt_os(ob: &Py<PyAny>, py: Python<'_>) -> PyResult<Option<OsString>> {
    let b = ob.bind(py);
    if b.is_none() {
        Ok(None)
    } else {
        os_string(b, false).map(Some)
    }
}

/// Seconds as a float or a datetime.timedelta; None stays None; negative is an error.
fn seconds(ob: &Py<PyAny>, py: Python<'_>, what: &str) -> PyResult<Option<Duration>> {
    let b = ob.bind(py);
    if b.is_none() {
        return Ok(None);
    }
    if let Ok(s) = b.extract::<f64>() {
        return Duration::try_from_secs_f64(s).map(Some).map_err(|_| {
            PyValueError::new_err(format!(
                "{what} must be a non-negative number of seconds, not {s}"
            ))
        });
    }
    b.extract::<Duration>()
        .map(Some)
        .map_err(|_| PyTypeError::new_err(format!("{what} must be seconds (float) or a timedelta")))
}

fn env_pairs(ob: &Py<PyAny>, py: Python<'_>) -> PyResult<Option<Vec<(OsString, OsString)>>> {
    let b = ob.bind(py);
    if b.is_none() {
        return Ok(None);
    }
    let dict = PyDict::new(py);
    dict.call_method1("update", (b,))?;
    let mut out = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        out.push((os_string(&k, false)?, os_string(&v, false)?));
    }
    Ok(Some(out))
}

/// Calls a Python handler on a handler thread. Its exception is logged and handed to procman
/// as a handler error (a silent unwind, caught by the handler thread).
///
/// `keep_thread_state`: the handler runs on a thread that lives as long as the process (the
/// process-wide manager's), which then keeps its interpreter thread state between handlers.
fn python_handler(
    callable: Py<PyAny>,
    keep_thread_state: bool,
) -> impl FnOnce(&JobRecord) + Send + 'static {
    move |record: &JobRecord| {
        // Made before the GIL is taken: the other handler threads wait for it less.
        let snapshot = Record::from(record);
        let failure = Python::try_attach(|py| {
            if keep_thread_state {
                keep_this_threads_state(py);
            }
            let result = callable.bind(py).call1((snapshot,));
            let failure = result.err().map(|e| {
                report(
                    py,
                    &format!("job {}: the completion handler raised", record.id),
                    e,
                )
            });
            drop(callable);
            failure
        })
        .flatten();
        if let Some(message) = failure {
            std::panic::resume_unwind(Box::new(message));
        }
    }
}

thread_local! {
    static THREAD_STATE_KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Keeps the calling thread's Python thread state for the rest of the thread's life. A thread
/// Python did not start gets a new thread state each time it attaches and loses it when it
/// detaches (`PyGILState_Ensure`/`PyGILState_Release`): allocating it, mapping its frame stack
/// and unmapping it again (which flushes every CPU's TLB) cost more than a short handler
/// itself. One extra `PyGILState_Ensure`, never released, keeps the thread state's count above
/// zero, so later attaches only take the GIL. Only for threads that live as long as the
/// process: should one end, its thread state is freed with the interpreter at exit.
fn keep_this_threads_state(_attached: Python<'_>) {
    THREAD_STATE_KEPT.with(|kept| {
        if !kept.get() {
            kept.set(true);
            // SAFETY: the thread is attached (`_attached`), so it has a thread state and holds
            // the GIL; the nested ensure returns PyGILState_LOCKED and only raises the count.
            let _ = unsafe { pyo3::ffi::PyGILState_Ensure() };
        }
    });
}

/// Logs a Python exception to the `procman` logger (falling back to stderr); returns its text.
/// An exception whose `_procman_logged` attribute is true was logged already (by the CCP4i2
/// drop-in, to CCP4i2's logger) and is not logged again.
fn report(py: Python<'_>, what: &str, e: PyErr) -> String {
    let text = e.to_string();
    let already = e
        .value(py)
        .getattr("_procman_logged")
        .and_then(|v| v.is_truthy())
        .unwrap_or(false);
    if already {
        return text;
    }
    let logged = (|| -> PyResult<()> {
        let logger = py
            .import("logging")?
            .call_method1("getLogger", ("procman",))?;
        let kwargs = PyDict::new(py);
        let info = (e.get_type(py), e.value(py), e.traceback(py));
        kwargs.set_item("exc_info", info)?;
        logger.call_method("error", ("%s: %s", what, &text), Some(&kwargs))?;
        Ok(())
    })();
    if logged.is_err() {
        eprintln!("procman: {what}: {text}");
        e.print(py);
    }
    text
}

fn python_observer(callable: Py<PyAny>) -> impl Fn(JobId, Stream, &[u8]) + Send + Sync + 'static {
    move |id: JobId, stream: Stream, line: &[u8]| {
        Python::try_attach(|py| {
            let name = match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            };
            if let Err(e) = callable
                .bind(py)
                .call1((id.0, name, PyBytes::new(py, line)))
            {
                report(py, &format!("job {id}: the output observer raised"), e);
            }
        });
    }
}

/// `global`: the spec is for the process-wide manager (see `python_handler`).
fn build_spec(py: Python<'_>, s: &JobSpec, global: bool) -> PyResult<CoreSpec> {
    let program = os_string(s.program.bind(py), false)?;
    let mut spec = CoreSpec::new(program);
    let args = s.args.bind(py);
    if args.is_instance_of::<PyString>() || args.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "args must be a sequence of arguments, not a string",
        ));
    }
    if !args.is_none() {
        for a in args.try_iter()? {
            spec = spec.arg(os_string(&a?, true)?);
        }
    }
    if let Some(i) = opt_os(&s.interpreter, py)? {
        spec = spec.interpreter(i);
    }
    if let Some(f) = opt_os(&s.input_file, py)? {
        spec = spec.input_file(std::path::PathBuf::from(f));
    }
    let input_bytes = s.input_bytes.bind(py);
    if !input_bytes.is_none() {
        spec = spec.input_bytes(input_bytes.extract::<Vec<u8>>()?);
    }
    if let Some(f) = opt_os(&s.log_file, py)? {
        spec = spec.log_file(std::path::PathBuf::from(f));
    }
    if let Some(f) = opt_os(&s.error_file, py)? {
        spec = spec.error_file(std::path::PathBuf::from(f));
    }
    if s.merge_stderr {
        spec = spec.merge_error_into_log();
    }
    if let Some(d) = opt_os(&s.cwd, py)? {
        spec = spec.cwd(std::path::PathBuf::from(d));
    }
    if let Some(pairs) = env_pairs(&s.env, py)? {
        spec = spec.env_clear();
        for (k, v) in pairs {
            spec = spec.env(k, v);
        }
    }
    if let Some(pairs) = env_pairs(&s.env_update, py)? {
        for (k, v) in pairs {
            spec = spec.env(k, v);
        }
    }
    if let Some(t) = seconds(&s.timeout, py, "timeout")? {
        spec = spec.timeout(t);
    }
    if let Some(g) = seconds(&s.grace, py, "grace")? {
        spec = spec.grace(g);
    }
    let on_finish = s.on_finish.bind(py);
    if !on_finish.is_none() {
        if !on_finish.is_callable() {
            return Err(PyTypeError::new_err("on_finish must be callable"));
        }
        spec = spec.on_finish(python_handler(on_finish.clone().unbind(), global));
    }
    let observe = s.observe.bind(py);
    if !observe.is_none() {
        if !observe.is_callable() {
            return Err(PyTypeError::new_err("observe must be callable"));
        }
        spec = spec.observe(python_observer(observe.clone().unbind()));
    }
    let progress = s.progress.bind(py);
    if !progress.is_none() {
        if !progress.is_callable() {
            return Err(PyTypeError::new_err("progress must be callable"));
        }
        spec = spec.progress(watch::python_progress(progress.clone().unbind()));
    }
    spec = spec.priority(s.priority);
    for &a in &s.after {
        spec = spec.after(JobId(a));
    }
    if let Some(k) = s.kill_leftovers {
        spec = spec.kill_leftovers(k);
    }
    if let Some(bytes) = s.memory_limit {
        spec = spec.memory_limit(bytes);
    }
    Ok(spec)
}

/// `containment=`: "auto", "cgroup", "group" or "subreaper".
fn containment_of(name: &str) -> PyResult<Containment> {
    Ok(match name {
        "auto" => Containment::Auto,
        "cgroup" => Containment::Cgroup,
        "group" => Containment::ProcessGroup,
        "subreaper" => Containment::Subreaper,
        _ => {
            return Err(PyValueError::new_err(format!(
                "containment must be 'auto', 'cgroup', 'group' or 'subreaper', not {name:?}"
            )))
        }
    })
}

/// The core's retention policy from Python's `max_records` and `max_age` (seconds or timedelta).
fn retention(
    py: Python<'_>,
    max_records: Option<usize>,
    max_age: Option<Py<PyAny>>,
) -> PyResult<Retention> {
    let age = match max_age {
        None => None,
        Some(a) => seconds(&a, py, "max_age")?,
    };
    Ok(Retention::keep_all().max_records(max_records).max_age(age))
}

/// Waits for a job (and its handler) with the GIL released, in slices, checking signals.
/// The record is held across the slices, so eviction between two of them cannot lose it.
fn wait_for(py: Python<'_>, pm: &Handle, id: u64, timeout: Option<f64>) -> PyResult<Record> {
    let hold = pm
        .hold(JobId(id))
        .map_err(|_| PyKeyError::new_err(format!("unknown job {id}")))?;
    wait_hold(py, &hold, timeout)
}

/// `wait_for` with no time cap and no record made: for `wait_all`.
fn wait_quiet(py: Python<'_>, pm: &Handle, id: JobId) -> PyResult<()> {
    let hold = pm
        .hold(id)
        .map_err(|_| PyKeyError::new_err(format!("unknown job {id}")))?;
    loop {
        match py.detach(|| hold.wait_timeout(SLICE)) {
            Ok(_) => return Ok(()),
            Err(WaitTimeoutError::UnknownJob(_)) => {
                return Err(PyKeyError::new_err(format!("unknown job {id}")))
            }
            Err(WaitTimeoutError::Timeout) => py.check_signals()?,
            Err(e) => return Err(PyRuntimeError::new_err(e.to_string())),
        }
    }
}

fn wait_hold(py: Python<'_>, hold: &RecordHold, timeout: Option<f64>) -> PyResult<Record> {
    let id = hold.id().0;
    let limit = timeout
        .map(|t| Duration::try_from_secs_f64(t.max(0.0)))
        .transpose()
        .map_err(|_| PyValueError::new_err("bad timeout"))?;
    // Time left measured from the start, never `Instant + Duration`: any limit is accepted.
    let start = Instant::now();
    loop {
        let slice = match limit {
            Some(l) => l.saturating_sub(start.elapsed()).min(SLICE),
            None => SLICE,
        };
        // The record is made with the GIL released too.
        match py.detach(|| hold.wait_timeout(slice).map(|r| Record::from(&r))) {
            Ok(r) => return Ok(r),
            Err(WaitTimeoutError::UnknownJob(_)) => {
                return Err(PyKeyError::new_err(format!("unknown job {id}")))
            }
            Err(WaitTimeoutError::Timeout) => {
                py.check_signals()?;
                if limit.is_some_and(|l| start.elapsed() >= l) {
                    return Err(PyTimeoutError::new_err(format!(
                        "job {id} did not end within {:.3} s",
                        timeout.unwrap_or_default()
                    )));
                }
            }
            // WouldDeadlock (a wait from the job's own observer), and any refusal added later.
            Err(e) => return Err(PyRuntimeError::new_err(e.to_string())),
        }
    }
}

/// Runs jobs: a pool of worker threads, and handler threads (one by default).
///
/// `Manager(limit=10, grace=2.0, kill_leftovers=True, max_records=10000, max_age=None,
/// handler_threads=1, sample_interval=None, containment="auto", slurm=None)` creates a manager of
/// its own, shut down (jobs cancelled and killed) by `shutdown()`, by leaving a `with` block,
/// or when it is garbage collected. `global_manager()` gives the process-wide one (4 handler
/// threads; CCP4i2's singleton uses it), which runs on Slurm when the environment variable
/// `PROCMAN_SLURM` is set (not empty, not `0`) when it is created: its value is read as
/// `slurm=` below.
///
/// Slurm: `slurm=True` runs every job on Slurm with the defaults; a dict (`{"partition":
/// "short", "qos": "low", "sbatch_arg": ["--mem=2G"], "steps": 8}`) or the same as one line of
/// text (`"partition=short,qos=low,sbatch_arg=--mem=2G,steps=8"`) sets the options of
/// procman's `SlurmOptions` (keys: partition, account, qos, time, sbatch_arg, steps,
/// steps_in, array, poll_min_ms, poll_max_ms, submit_threads, output_lag_ms,
/// accounting_wait_ms). A job waiting in Slurm's queue
/// has the status 'queued' ('pending' in the CCP4i2 drop-in's `getJobData`).
///
/// Handler threads: with one, handlers run one at a time in completion order; with more, at
/// once (each still exactly once, after its job's slot was freed). A `wait` or `run` inside a
/// handler then also waits for the job's handler where that cannot deadlock (procman's
/// `ProcessManager::wait`); with one thread it returns once the record is final.
///
/// Retention: finished jobs whose handler has returned are forgotten beyond the newest
/// `max_records` (None: no count limit) and once their handler returned `max_age` seconds ago
/// or more (None: no age limit); `max_records=None, max_age=None` keeps every record until
/// `delete`. A forgotten ("evicted") id reads as unknown (`job` gives None, `wait` raises
/// KeyError), except to a wait already in progress, and `after=[id]` still knows whether it
/// succeeded. See `set_retention` and `evicted`.
#[pyclass(frozen, module = "procman._procman")]
pub struct Manager {
    pm: Handle,
    /// The manager itself when this object made it (not the process-wide one): dropping it
    /// shuts the manager down.
    owner: Option<ProcessManager>,
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Some(pm) = &self.owner {
            // Shutting down waits for handlers, which need the GIL: never hold it meanwhile.
            match Python::try_attach(|py| py.detach(|| pm.shutdown(ShutdownMode::Cancel, None))) {
                Some(()) => {}
                None => pm.shutdown(ShutdownMode::Cancel, None),
            }
        }
    }
}

#[pymethods]
impl Manager {
    #[new]
    // text_signature: PyO3 would show the constant default as `...` (stubtest, python/README.md).
    #[pyo3(signature = (limit=10, grace=2.0, kill_leftovers=true, max_records=Some(Retention::DEFAULT_MAX_RECORDS), max_age=None, handler_threads=1, sample_interval=None, containment="auto", slurm=None),
        text_signature = "(limit=10, grace=2.0, kill_leftovers=True, max_records=10000, max_age=None, handler_threads=1, sample_interval=None, containment='auto', slurm=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        limit: usize,
        grace: f64,
        kill_leftovers: bool,
        max_records: Option<usize>,
        max_age: Option<Py<PyAny>>,
        handler_threads: usize,
        sample_interval: Option<Py<PyAny>>,
        containment: &str,
        slurm: Option<Py<PyAny>>,
    ) -> PyResult<Manager> {
        let grace = Duration::try_from_secs_f64(grace)
            .map_err(|_| PyValueError::new_err("grace must be a non-negative number of seconds"))?;
        let mut builder = ProcessManager::builder()
            .limit(limit)
            .grace(grace)
            .kill_leftovers(kill_leftovers)
            .retention(retention(py, max_records, max_age)?)
            .handler_threads(handler_threads)
            .containment(containment_of(containment)?);
        if let Some(i) = sample_interval {
            if let Some(i) = seconds(&i, py, "sample_interval")? {
                builder = builder.sample_interval(i);
            }
        }
        if let Some(options) = slurm_options(py, slurm)? {
            builder = builder.slurm(options);
        }
        let pm = builder
            .build()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(Manager {
            pm: pm.handle(),
            owner: Some(pm),
        })
    }

    /// How this manager contains its jobs, as resolved when it was made: "cgroup", "group"
    /// or "subreaper" ("auto" resolves to "cgroup" where the host allows, else "group").
    #[getter]
    fn containment(&self) -> &'static str {
        match self.pm.containment() {
            Containment::Cgroup => "cgroup",
            Containment::Subreaper => "subreaper",
            _ => "group",
        }
    }

    /// Changes which finished records are kept (see the class documentation); records the new
    /// policy does not keep are forgotten at once. `max_records=None, max_age=None` keeps all.
    #[pyo3(signature = (max_records=Some(Retention::DEFAULT_MAX_RECORDS), max_age=None),
        text_signature = "($self, max_records=10000, max_age=None)")]
    fn set_retention(
        &self,
        py: Python<'_>,
        max_records: Option<usize>,
        max_age: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.pm.set_retention(retention(py, max_records, max_age)?);
        Ok(())
    }

    /// The retention policy: `(max_records, max_age)`, None for no limit (max_age in seconds).
    #[getter]
    fn retention(&self) -> (Option<usize>, Option<f64>) {
        let r = self.pm.retention();
        (r.records_limit(), r.age_limit().map(|d| d.as_secs_f64()))
    }

    /// How many forgotten (evicted) jobs ended with each status: `{'finished': 9000, ...}`.
    fn evicted(&self) -> std::collections::HashMap<&'static str, usize> {
        self.pm
            .snapshot()
            .evicted
            .into_iter()
            .map(|(s, n)| (s.as_str(), n))
            .collect()
    }

    /// Submits a job; returns its id (from 1000 up) at once.
    fn start(&self, py: Python<'_>, spec: PyRef<'_, JobSpec>) -> PyResult<u64> {
        let core = build_spec(py, &spec, self.owner.is_none())?;
        self.pm
            .start_process(core)
            .map(|id| id.0)
            .map_err(start_error)
    }

    /// Starts a job and waits for it and its handler (GIL released, no time cap; Ctrl-C
    /// interrupts the wait and kills the job).
    fn run(&self, py: Python<'_>, spec: PyRef<'_, JobSpec>) -> PyResult<Record> {
        let core = build_spec(py, &spec, self.owner.is_none())?;
        // Held from the submission on: the record cannot be forgotten before it is read.
        let hold = self.pm.start_held(core).map_err(start_error)?;
        wait_hold(py, &hold, None).inspect_err(|_| {
            let _ = self.pm.kill_process(hold.id());
        })
    }

    /// Waits until the job has ended and its handler returned, and gives its final record.
    /// KeyError for an unknown, deleted or forgotten job; TimeoutError if `timeout` (seconds) passes first
    /// (the job goes on). Inside a handler it returns as soon as the record is final.
    #[pyo3(signature = (id, timeout=None))]
    fn wait(&self, py: Python<'_>, id: u64, timeout: Option<f64>) -> PyResult<Record> {
        wait_for(py, &self.pm, id, timeout)
    }

    /// Waits until no job is pending or running and every handler has returned.
    fn wait_all(&self, py: Python<'_>) -> PyResult<()> {
        // The core has no interruptible wait_all: wait for live jobs in slices first, so that
        // the final uninterruptible call only waits for handlers still queued. One job at a
        // time, the newest live one: jobs mostly end in the order they were submitted, so this
        // thread wakes about once per round instead of once per job (each wake-up takes the
        // GIL from the handler threads). Any order is correct: the loop ends only once no job
        // is live.
        loop {
            let mut live = self.pm.running_processes();
            live.extend(self.pm.pending_processes());
            let Some(newest) = live.into_iter().max() else {
                break;
            };
            match wait_quiet(py, &self.pm, newest) {
                Ok(()) => {}
                Err(e) if e.is_instance_of::<PyKeyError>(py) => {}
                Err(e) => return Err(e),
            }
        }
        py.detach(|| self.pm.wait_all());
        Ok(())
    }

    /// The manager's events, in order, as an iterator (see `Events`): at most `capacity` wait
    /// undelivered (more are dropped and counted). Ends once the manager has shut down.
    #[pyo3(signature = (capacity=1024))]
    fn events(&self, capacity: usize) -> watch::Events {
        let rx = self.pm.subscribe(capacity.max(1));
        watch::Events::new(Box::new(move |d| match rx.recv_timeout(d) {
            Ok(e) => watch::Next::Event(e),
            Err(e) if e.is_timeout() => watch::Next::Timeout,
            Err(_) => watch::Next::Closed,
        }))
    }

    /// The latest sample of a running job's processes; None when it is not running, has not
    /// been sampled yet, or the manager does not sample (`sample_interval`). Never blocks.
    fn usage(&self, id: u64) -> Option<watch::Usage> {
        let snap = self.pm.snapshot();
        let job = snap.live.iter().find(|j| j.id.0 == id)?;
        job.usage.as_ref().map(watch::Usage::from)
    }

    /// The latest progress of a running job (from its `progress` parser); None when it is not
    /// running or told none yet. Never blocks.
    fn progress(&self, id: u64) -> Option<watch::Progress> {
        let snap = self.pm.snapshot();
        let job = snap.live.iter().find(|j| j.id.0 == id)?;
        job.progress.as_ref().map(watch::Progress::from)
    }

    /// A snapshot of the job's record; None for an unknown, deleted or forgotten (evicted) id.
    fn job(&self, id: u64) -> Option<Record> {
        self.pm.job_data(JobId(id)).as_ref().ok().map(Record::from)
    }

    /// Ids of the running jobs.
    fn running(&self) -> Vec<u64> {
        self.pm
            .running_processes()
            .into_iter()
            .map(|j| j.0)
            .collect()
    }

    /// Ids of the pending jobs.
    fn pending(&self) -> Vec<u64> {
        self.pm
            .pending_processes()
            .into_iter()
            .map(|j| j.0)
            .collect()
    }

    /// Kills a job: 'cancelled' (it was pending and never starts), 'killing' (SIGTERM to its
    /// process group, SIGKILL after the grace period), 'already_finished'; None if unknown.
    fn kill(&self, id: u64) -> Option<&'static str> {
        self.pm.kill_process(JobId(id)).ok().map(|k| match k {
            KillOutcome::Cancelled => "cancelled",
            KillOutcome::Killing => "killing",
            KillOutcome::AlreadyFinished => "already_finished",
        })
    }

    /// Forgets a job (killing it first if it is live; its handler still runs once).
    /// False for an unknown id.
    fn delete(&self, id: u64) -> bool {
        self.pm.delete_job(JobId(id)).is_ok()
    }

    /// The limit on jobs running at once.
    #[getter]
    fn get_limit(&self) -> usize {
        self.pm.limit()
    }

    #[setter]
    fn set_limit(&self, limit: usize) -> PyResult<()> {
        self.pm.set_limit(limit).map_err(|e| match e {
            BuildError::ShutDown => PyRuntimeError::new_err(e.to_string()),
            e => PyValueError::new_err(e.to_string()),
        })
    }

    /// Stops starting new jobs (running jobs go on). RuntimeError after shutdown().
    fn pause(&self) -> PyResult<()> {
        self.pm
            .pause()
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Starts jobs again after pause(). RuntimeError after shutdown().
    fn resume(&self) -> PyResult<()> {
        self.pm
            .resume()
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Stops the manager: cancel=True kills running jobs and cancels pending ones; cancel=False
    /// lets them finish (until `timeout` seconds, then cancels). Waits with the GIL released.
    #[pyo3(signature = (cancel=true, timeout=None))]
    fn shutdown(&self, py: Python<'_>, cancel: bool, timeout: Option<f64>) -> PyResult<()> {
        let mode = if cancel {
            ShutdownMode::Cancel
        } else {
            ShutdownMode::Drain
        };
        let timeout = timeout
            .map(|t| Duration::try_from_secs_f64(t.max(0.0)))
            .transpose()
            .map_err(|_| PyValueError::new_err("bad timeout"))?;
        py.detach(|| self.pm.shutdown(mode, timeout));
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.shutdown(py, true, None)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Manager(limit={}, running={}, pending={}, global={})",
            self.pm.limit(),
            self.pm.running_processes().len(),
            self.pm.pending_processes().len(),
            self.owner.is_none()
        )
    }
}

static GLOBAL: OnceLock<Py<Manager>> = OnceLock::new();

/// Handler threads of the process-wide manager: as many as the worker threads of the
/// `ThreadPoolExecutor(max_workers=4)` that ran CCP4i2's handlers.
const GLOBAL_HANDLER_THREADS: usize = 4;

/// The process-wide manager of this Python process (not procman's Rust `global()`: that one has
/// one handler thread), built once.
static GLOBAL_PM: OnceLock<ProcessManager> = OnceLock::new();

/// The process-wide manager (limit 10, 4 handler threads), created on first use by whichever
/// thread touches it first; every call returns the same object.
#[pyfunction]
fn global_manager(py: Python<'_>) -> PyResult<Py<Manager>> {
    if let Some(m) = GLOBAL.get() {
        return Ok(m.clone_ref(py));
    }
    let pm = match GLOBAL_PM.get() {
        Some(pm) => pm,
        None => {
            let mut builder = ProcessManager::builder().handler_threads(GLOBAL_HANDLER_THREADS);
            if let Some(i) = global_sample_interval()? {
                builder = builder.sample_interval(i);
            }
            // The CCP4i2 drop-in's switch to Slurm, without a change to CCP4i2's code.
            match std::env::var("PROCMAN_SLURM") {
                Ok(v) if !v.trim().is_empty() && v.trim() != "0" => {
                    let options: SlurmOptions = v
                        .parse()
                        .map_err(|e| PyValueError::new_err(format!("PROCMAN_SLURM: {e}")))?;
                    builder = builder.slurm(options);
                }
                _ => {}
            }
            let built = builder
                .build()
                .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            // Two threads racing here build two managers; the loser's is dropped (shut down).
            GLOBAL_PM.get_or_init(|| built)
        }
    };
    let created = Py::new(
        py,
        Manager {
            pm: pm.handle(),
            owner: None,
        },
    )?;
    // A race between threads creates two wrappers of the same manager; one is kept.
    Ok(GLOBAL.get_or_init(|| created).clone_ref(py))
}

/// How often the process-wide manager samples its running jobs: `PROCMAN_SAMPLE_INTERVAL`
/// seconds (0 or `off`: never), else every second (CCP4i2's `getJobData` then answers live
/// figures; one thread reads /proc once a second while jobs run).
/// ValueError for a value that is not a number of seconds.
fn global_sample_interval() -> PyResult<Option<Duration>> {
    match std::env::var("PROCMAN_SAMPLE_INTERVAL") {
        Err(_) => Ok(Some(Duration::from_secs(1))),
        Ok(v) if v.trim() == "off" => Ok(None),
        Ok(v) => match v
            .trim()
            .parse::<f64>()
            .ok()
            .map(Duration::try_from_secs_f64)
        {
            Some(Ok(d)) => Ok((!d.is_zero()).then_some(d)),
            _ => Err(PyValueError::new_err(format!(
                "PROCMAN_SAMPLE_INTERVAL={v:?} is not a number of seconds (or 'off')"
            ))),
        },
    }
}

/// `Manager(slurm=...)`: `None`/`False` (not on Slurm), `True` (the defaults), a line of text
/// or a dict of the same keys (a list value gives the key once per item).
fn slurm_options(py: Python<'_>, slurm: Option<Py<PyAny>>) -> PyResult<Option<SlurmOptions>> {
    let Some(obj) = slurm else {
        return Ok(None);
    };
    let obj = obj.bind(py);
    let text = if let Ok(b) = obj.extract::<bool>() {
        if !b {
            return Ok(None);
        }
        String::new()
    } else if let Ok(t) = obj.extract::<String>() {
        t
    } else if let Ok(d) = obj.cast::<PyDict>() {
        let mut items = Vec::new();
        for (k, v) in d.iter() {
            let k: String = k.extract()?;
            match v.extract::<Vec<String>>() {
                Ok(list) if !v.is_instance_of::<PyString>() => {
                    items.extend(list.into_iter().map(|x| format!("{k}={x}")));
                }
                _ => items.push(format!("{k}={}", v.str()?)),
            }
        }
        items.join(",")
    } else {
        return Err(PyTypeError::new_err(
            "slurm must be None, a bool, a str of key=value items or a dict",
        ));
    };
    text.parse::<SlurmOptions>()
        .map(Some)
        .map_err(PyValueError::new_err)
}

/// The lower-case status names, in the order of procman's JobStatus.
#[pyfunction]
fn statuses() -> Vec<&'static str> {
    [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Finished,
        JobStatus::Failed,
        JobStatus::Crashed,
        JobStatus::TimedOut,
        JobStatus::Killed,
        JobStatus::Cancelled,
        JobStatus::SpawnFailed,
        JobStatus::DependencyFailed,
        JobStatus::InternalError,
        JobStatus::Queued,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect()
}

#[pymodule]
fn _procman(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Manager>()?;
    m.add_class::<JobSpec>()?;
    m.add_class::<Record>()?;
    m.add_class::<watch::Usage>()?;
    m.add_class::<watch::UsageSummary>()?;
    m.add_class::<watch::Progress>()?;
    m.add_class::<watch::Event>()?;
    m.add_class::<watch::Events>()?;
    m.add_function(wrap_pyfunction!(global_manager, m)?)?;
    m.add_function(wrap_pyfunction!(statuses, m)?)?;
    m.add("StartError", m.py().get_type::<StartError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
