//! The reader thread: reads the job lines (or a template's argument sets), numbers them,
//! turns each into a `JobSpec` and submits it, so jobs start while a slow input is still being
//! read.

use std::collections::HashMap;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Sender;
use procman::{Handle, JobId, JobSpec, JobStatus, RetryOn, StartError, Stream, OBSERVER_LINE_CAP};

use super::gate::Shared;
use super::{Finished, Label, Labels, Msg, Options, Output};
use crate::halt::{self, Threshold};
use crate::inputs::{self, Item};

/// Reads the input and submits its jobs; runs on a thread of its own ([`Reader::run`]).
pub(super) struct Reader {
    pub(super) labels: Labels,
    pub(super) manager: Handle,
    pub(super) tx: Sender<Msg>,
    pub(super) gate: Arc<Shared>,
    pub(super) options: Options,
    /// seq → command of the jobs to skip (`--resume`, `--resume-failed`).
    pub(super) succeeded: HashMap<u64, String>,
}

/// What a job name in `after` refers to.
enum Named {
    Job(JobId),
    /// Skipped by `--resume` or `--resume-failed`: it ran before, so nothing to wait for.
    AlreadySucceeded,
    Invalid(usize),
}

/// A job's output gathered for `--group`, printed whole when it ends.
#[derive(Default)]
struct Grouped {
    out: Mutex<Vec<u8>>,
    err: Mutex<Vec<u8>>,
}

impl Grouped {
    fn print(&self) {
        for (buf, mut to) in [
            (&self.out, Box::new(io::stdout().lock()) as Box<dyn Write>),
            (&self.err, Box::new(io::stderr().lock())),
        ] {
            let buf = std::mem::take(&mut *buf.lock().expect("group"));
            if !buf.is_empty() {
                let _ = to.write_all(&buf).and_then(|_| to.flush());
            }
        }
    }
}

impl Reader {
    /// With `--group` or `--line-buffer`, observes the job's output and prints it (with the tag
    /// for `--tag`): each line is written with one `write` under the stream's lock, so lines of
    /// different jobs never mix. A piece of exactly the library's line cap is part of a longer
    /// line and gets no newline; a last line without one gets one.
    fn terminal_output(&self, spec: JobSpec, tag: &str) -> (JobSpec, Option<Arc<Grouped>>) {
        let mode = self.options.output;
        if mode == Output::Files {
            return (spec, None);
        }
        let prefix: Vec<u8> = if self.options.tag {
            format!("{tag}\t").into_bytes()
        } else {
            Vec::new()
        };
        let grouped = (mode == Output::Group).then(|| Arc::new(Grouped::default()));
        let sink = grouped.clone();
        let spec = spec.observe(move |_, stream, line| {
            let mut buf = Vec::with_capacity(prefix.len() + line.len() + 1);
            buf.extend_from_slice(&prefix);
            buf.extend_from_slice(line);
            if line.len() != OBSERVER_LINE_CAP {
                buf.push(b'\n');
            }
            match (&sink, stream) {
                (Some(g), Stream::Stdout) => g.out.lock().expect("group").extend(buf),
                (Some(g), Stream::Stderr) => g.err.lock().expect("group").extend(buf),
                (None, Stream::Stdout) => {
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(&buf).and_then(|_| out.flush());
                }
                (None, Stream::Stderr) => {
                    let _ = io::stderr().lock().write_all(&buf);
                }
            }
        });
        (spec, grouped)
    }

    /// Reports an invalid line; it counts as a failure for `--halt`.
    fn invalid(&self, msg: String) {
        let halts = self
            .gate
            .settle(self.options.halt, true, false, &self.manager);
        let _ = self.tx.send(Msg::Invalid(msg, halts));
    }

    /// Reads every item of `input` and submits its jobs, then sends `InputDone`; returns early
    /// once the batch stops (or the input cannot be read further: `ReadError`).
    pub(super) fn run(self, input: Box<dyn Iterator<Item = Item> + Send>) {
        let mut seq = 0u64;
        let mut names = Names::new();
        for item in self.whole_input_for_a_percentage(input) {
            if self.gate.lock().stopped {
                return;
            }
            let (line_no, job) = match item {
                Item::Job(n, job) => (n, job),
                Item::Blank => continue,
                Item::Invalid(msg) => {
                    seq += 1;
                    self.invalid(msg);
                    continue;
                }
                Item::ReadError(e) => {
                    let _ = self.tx.send(Msg::ReadError(e));
                    return;
                }
            };
            seq += 1;
            if self.job(seq, line_no, *job, &mut names).is_break() {
                return;
            }
        }
        let _ = self.tx.send(Msg::InputDone);
    }

    /// With a percentage `--halt` rule, reads the whole input first (a percentage is of all the
    /// jobs) and gives the gate the number of job lines; otherwise `items` as they are.
    fn whole_input_for_a_percentage(
        &self,
        items: Box<dyn Iterator<Item = Item> + Send>,
    ) -> Box<dyn Iterator<Item = Item> + Send> {
        if !matches!(
            self.options.halt,
            Some(halt::Rule {
                threshold: Threshold::Percent(_),
                ..
            })
        ) {
            return items;
        }
        let all: Vec<Item> = items.collect();
        let total = all
            .iter()
            .filter(|item| matches!(item, Item::Job(..) | Item::Invalid(_)))
            .count();
        self.gate.lock().total = total as u64;
        Box::new(all.into_iter())
    }

    /// Job `seq`, from line `line_no`: checks its name, skips it when the joblog says so
    /// (`--resume`), resolves its `after` names and submits it. `Break`: stop reading (the batch
    /// stopped, or the manager shut down).
    fn job(
        &self,
        seq: u64,
        line_no: usize,
        job: inputs::Job,
        names: &mut Names,
    ) -> ControlFlow<()> {
        let command = job.command();
        let invalid = |msg: String| format!("line {line_no}: {msg}");
        if let Some(name) = &job.name {
            if let Some((_, other)) = names.get(name) {
                self.invalid(invalid(format!(
                    "job name {name:?} is already used by line {other}"
                )));
                return ControlFlow::Continue(());
            }
        }
        let register = |names: &mut Names, what: Named| {
            if let Some(name) = &job.name {
                names.insert(name.clone(), (what, line_no));
            }
        };
        if let Some(before) = self.succeeded.get(&seq) {
            if *before == command {
                register(names, Named::AlreadySucceeded);
                let _ = self.tx.send(Msg::Skipped);
                return ControlFlow::Continue(());
            }
            let _ = self.tx.send(Msg::Warning(format!(
                "line {line_no}: the joblog's job {seq} ran another command ({before}); running this one"
            )));
        }
        let spec = JobSpec::new(&job.program).args(&job.args);
        let (spec, print) = self.terminal_output(spec, &job.tag);
        let spec = match after(spec, &job.after, names) {
            Ok(spec) => spec,
            Err(msg) => {
                register(names, Named::Invalid(line_no));
                self.invalid(invalid(msg));
                return ControlFlow::Continue(());
            }
        };
        let retries = job.retries.unwrap_or(self.options.retries);
        let spec = self.settings(spec, seq, &job, retries);
        let spec = self.on_finish(spec, seq, line_no, command.clone(), print);
        let label = Label {
            text: match &job.name {
                Some(name) => format!("job {seq} (line {line_no}, {name:?})"),
                None => format!("job {seq} (line {line_no})"),
            },
            may_wait: !job.after.is_empty() || retries > 0,
            seq,
            command,
            log: self.log_of(seq, &job),
        };
        match self.submit(spec, label) {
            None | Some(Err(StartError::ShutDown)) => return ControlFlow::Break(()),
            Some(Ok(id)) => register(names, Named::Job(id)),
            Some(Err(e)) => {
                register(names, Named::Invalid(line_no));
                self.invalid(invalid(e.to_string()));
            }
        }
        ControlFlow::Continue(())
    }

    /// The job's files, environment and limits: its own, else the batch's options.
    /// Where job `seq` writes its output: its own `log`, else `DIR/N.log` (none with `--no-logs`).
    fn log_of(&self, seq: u64, job: &inputs::Job) -> Option<PathBuf> {
        job.log.clone().or_else(|| {
            self.options
                .log_dir
                .as_ref()
                .map(|d| d.join(format!("{seq}.log")))
        })
    }

    fn settings(&self, mut spec: JobSpec, seq: u64, job: &inputs::Job, retries: u32) -> JobSpec {
        let log = self.log_of(seq, job);
        if let Some(log) = &log {
            spec = spec.log_file(log);
        }
        match &job.err {
            Some(err) => spec = spec.error_file(err),
            None if log.is_none() => spec = spec.error_null(),
            None => {} // the CCP4i2 convention: <log without extension>_err.txt
        }
        if let Some(input) = &job.input {
            spec = spec.input_file(input);
        }
        if let Some(cwd) = &job.cwd {
            spec = spec.cwd(cwd);
        }
        for (k, v) in &job.env {
            spec = spec.env(k, v);
        }
        // 0 means no timeout, as for coreutils `timeout` (a job's own 0 overrides --timeout).
        if let Some(t) = job
            .timeout
            .or(self.options.timeout)
            .filter(|t| !t.is_zero())
        {
            spec = spec.timeout(t);
        }
        if let Some(g) = self.options.grace {
            spec = spec.grace(g);
        }
        if let Some(bytes) = self.options.memory_limit {
            spec = spec.memory_limit(bytes);
        }
        if let Some(p) = job.priority {
            spec = spec.priority(p);
        }
        if let Some(n) = job.cpus {
            spec = spec.cpus(n);
        }
        if let Some(bytes) = job.memory {
            spec = spec.memory(bytes);
        }
        if retries > 0 {
            spec = spec.retries(retries, Duration::ZERO, RetryOn::default());
        }
        if let Some(p) = &self.options.progress_parser {
            spec = spec.progress_parser(p.clone());
        }
        spec
    }

    /// The job's completion handler: prints its `--group`ed output, counts it for `--halt`
    /// (returning its permit) and sends its record to the main thread.
    fn on_finish(
        &self,
        spec: JobSpec,
        seq: u64,
        line: usize,
        command: String,
        print: Option<Arc<Grouped>>,
    ) -> JobSpec {
        let tx = self.tx.clone();
        let shared = self.gate.clone();
        let rule = self.options.halt;
        let manager = self.manager.clone();
        spec.on_finish(move |record| {
            if let Some(print) = print {
                print.print();
            }
            let failed = !record.status.is_success() && record.status != JobStatus::Cancelled;
            let halts = shared.settle(rule, failed, rule.is_some(), &manager);
            let _ = tx.send(Msg::Done(Box::new(Finished {
                seq,
                line,
                command,
                record: record.clone(),
                halts,
            })));
        })
    }

    /// Submits `spec` once the gate lets it (with `--halt`, a permit: see `Gate::permits`) and
    /// labels it. `None`: the batch stopped first.
    fn submit(&self, spec: JobSpec, label: Label) -> Option<Result<JobId, StartError>> {
        let mut gate = self.gate.lock();
        while !gate.stopped && gate.permits == Some(0) {
            gate = self.gate.freed.wait(gate).expect("gate");
        }
        if gate.stopped {
            return None;
        }
        let started = self.manager.start_process(spec);
        if let Ok(id) = started {
            self.labels.lock().expect("labels").insert(id.0, label);
            gate.submitted += 1;
            if let Some(p) = gate.permits.as_mut() {
                *p -= 1;
            }
        }
        Some(started)
    }
}

/// A job line's name → what it became, and its line.
type Names = HashMap<String, (Named, usize)>;

/// Makes `spec` run after the jobs `after` names, or says why one of them cannot be waited for
/// (its line is invalid, or no earlier line defines it).
fn after(mut spec: JobSpec, after: &[String], names: &Names) -> Result<JobSpec, String> {
    for name in after {
        match names.get(name) {
            Some((Named::Job(id), _)) => spec = spec.after(*id),
            Some((Named::AlreadySucceeded, _)) => {}
            Some((Named::Invalid(l), _)) => {
                return Err(format!(
                    "\"after\" names job {name:?}, whose line {l} is invalid"
                ));
            }
            None => {
                return Err(format!(
                    "\"after\" names job {name:?}, which no earlier line defines \
                     (a job can only run after jobs on lines above it)"
                ));
            }
        }
    }
    Ok(spec)
}
