//! CCP4i2's prosmart_refmac pipeline on stand-in programs (examples/standins/, POSIX sh):
//! restraint generation (prosmart), a four-way parallel refmac weight scan that keeps the
//! lowest Rfree, water building, a second refinement at the best weight, then validation.
//!
//! ```text
//! cargo run --example refinement_pipeline -- [--fail STEP] [WORK_DIR]
//! ```
//!
//! `--fail STEP` (prosmart, scan, waters, refine, validate) makes that step's program fail
//! (for `scan`, one of the four runs): the pipeline then ends FAILED and the later steps are
//! never created. The work directory defaults to a new temporary one. While it runs, prints the
//! refmac runs' progress as the manager reports it (their "Refinement cycle N of M" lines, read
//! by a progress parser, [`refmac_progress`]); then one line per step (job number, status,
//! time, peak memory of its process tree from live sampling, parsed statistics), and exits
//! with 1 if the pipeline failed. `REFMAC_PACE` (seconds, default 0.1 here) spaces the
//! stand-in refmac's cycles so that the progress can be seen.
//!
//! tests/plugin.rs includes this file as a module and runs [`run_refinement`] itself.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use procman::{
    Event, FinishStatus, JobRecord, Pipeline, Plugin, PluginInfo, PluginStatus, ProcessManager,
    ProgramTask, Progress, Task,
};

/// The steps, in order, as `--fail` names them.
pub const STEPS: [&str; 5] = ["prosmart", "scan", "waters", "refine", "validate"];

/// The weights the scan tries, four refmac runs at once.
pub const SCAN_WEIGHTS: [f64; 4] = [0.1, 0.2, 0.3, 0.5];

/// The weight of the scan run that `--fail scan` breaks.
const FAILING_SCAN_WEIGHT: f64 = 0.2;

/// One step's task: a stand-in program plus what its log said.
pub struct Step {
    /// Which of [`STEPS`] this is.
    pub step: &'static str,
    /// How the summary names it ("refmac w=0.30").
    pub label: String,
    program: ProgramTask,
    /// Statistics parsed from the log, in print order.
    pub stats: Vec<String>,
    /// refmac: the last cycle's Rfree.
    pub rfree: Option<f64>,
}

impl Task for Step {
    fn check_input_data(&mut self, info: &PluginInfo) -> Result<(), String> {
        self.program.check_input_data(info)
    }

    fn make_command_and_script(&mut self, info: &PluginInfo) -> Result<procman::JobSpec, String> {
        let spec = self.program.make_command_and_script(info)?;
        Ok(if self.label.starts_with("refmac") {
            spec.progress(refmac_progress)
        } else {
            spec
        })
    }

    fn process_output_files(
        &mut self,
        info: &PluginInfo,
        record: &JobRecord,
    ) -> Result<PluginStatus, String> {
        self.program.process_output_files(info, record)?;
        let log = std::fs::read_to_string(info.log_file()).map_err(|e| format!("log: {e}"))?;
        let cycles: Vec<(f64, f64)> = log.lines().filter_map(parse_cycle).collect();
        if let (Some(first), Some(last)) = (cycles.first(), cycles.last()) {
            self.rfree = Some(last.1);
            self.stats.push(format!(
                "Rfact {:.4} -> {:.4}  Rfree {:.4} -> {:.4}  ({} cycles)",
                first.0,
                last.0,
                first.1,
                last.1,
                cycles.len()
            ));
            if last.1 > first.1 {
                return Ok(PluginStatus::Unsatisfactory); // refinement made it worse
            }
        }
        for line in log.lines() {
            if let Some((key, value)) = line.split_once(": ") {
                if value.starts_with(|c: char| c.is_ascii_digit()) {
                    self.stats.push(format!("{} {value}", key.trim()));
                }
            }
        }
        Ok(PluginStatus::Succeeded)
    }
}

/// refmac's progress: ` Refinement cycle 3 of 5` → 3 of 5 (60 %). No regex: words.
pub fn refmac_progress(line: &[u8]) -> Option<Progress> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = &text[text.find("cycle ")? + "cycle ".len()..];
    let mut words = rest.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    (words.next()? == "of").then_some(())?;
    let m: u64 = words.next()?.parse().ok()?;
    Some(Progress::steps(n, m, format!("cycle {n} of {m}")))
}

/// `Cycle  3  Rfact 0.2310  Rfree 0.2720` → (0.2310, 0.2720).
fn parse_cycle(line: &str) -> Option<(f64, f64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["Cycle", _, "Rfact", r, "Rfree", f] => Some((r.parse().ok()?, f.parse().ok()?)),
        _ => None,
    }
}

/// One line of the summary.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// Which of [`STEPS`].
    pub step: &'static str,
    /// "refmac w=0.30".
    pub label: String,
    /// The child's job number ("1.3").
    pub job: String,
    /// How it ended.
    pub status: PluginStatus,
    /// Wall-clock seconds, when a program ran.
    pub seconds: Option<f64>,
    /// The peak resident memory of its process tree in bytes, when it was sampled.
    pub peak_memory: Option<u64>,
    /// Parsed statistics, or why it failed (with the last line of its error file).
    pub detail: String,
}

/// What [`run_refinement`] did.
#[derive(Debug)]
pub struct Report {
    /// The pipeline's work directory.
    pub work_dir: PathBuf,
    /// The steps that ran, in job order.
    pub steps: Vec<StepReport>,
    /// The steps that were never created.
    pub skipped: Vec<&'static str>,
    /// The weight the scan kept.
    pub best_weight: Option<f64>,
    /// What the pipeline's `finished` carried.
    pub end: FinishStatus,
}

struct Ctx {
    standins: PathBuf,
    fail: Option<String>,
    model: PathBuf,
    reached: Mutex<Vec<&'static str>>,
    reports: Mutex<Vec<(u32, StepReport)>>,
    best_weight: Mutex<Option<f64>>,
}

impl Ctx {
    /// A step running `program` from the stand-ins, writing `output` in its work directory.
    fn step(&self, step: &'static str, program: &str, output: &str, keywords: &[String]) -> Step {
        let mut task = ProgramTask::new(self.standins.join(program))
            .interpreter("sh")
            .arg(output)
            .output_file(output);
        for k in keywords {
            task = task.script_line(k);
        }
        Step {
            step,
            label: program.to_string(),
            program: task,
            stats: Vec::new(),
            rfree: None,
        }
    }

    fn fails(&self, step: &str) -> bool {
        self.fail.as_deref() == Some(step)
    }

    /// Makes the child and records its end in the summary (before the chain's handler runs).
    fn make(self: &Arc<Self>, pipeline: &Pipeline, step: Step) -> Option<Arc<Plugin<Step>>> {
        let name = step.step;
        let child = pipeline.make_plugin_object(step).ok()?;
        {
            let mut reached = self.reached.lock().unwrap();
            if !reached.contains(&name) {
                reached.push(name);
            }
        }
        let ctx = Arc::clone(self);
        let weak = Arc::downgrade(&child);
        child.finished().connect_with_priority(1, move |end| {
            if let Some(child) = weak.upgrade() {
                ctx.record(&child, end);
            }
        });
        Some(child)
    }

    fn record(&self, child: &Plugin<Step>, end: &FinishStatus) {
        let task = child.task();
        let detail = if end.finish_status.is_success() {
            task.stats.join("; ")
        } else {
            let err = std::fs::read_to_string(child.info().work_dir.join("log_err.txt"))
                .ok()
                .and_then(|e| e.lines().last().map(str::to_owned));
            match err {
                Some(line) => format!("{} ({line})", end.message),
                None => end.message.clone(),
            }
        };
        let index = end.job_id.rsplit('.').next().and_then(|n| n.parse().ok());
        let report = StepReport {
            step: task.step,
            label: task.label.clone(),
            job: end.job_id.clone(),
            status: end.finish_status,
            seconds: child
                .record()
                .and_then(|r| r.usage)
                .map(|u| u.wall.as_secs_f64()),
            peak_memory: child.record().and_then(|r| r.sampled).map(|s| s.peak_rss),
            detail,
        };
        self.reports
            .lock()
            .unwrap()
            .push((index.unwrap_or(0), report));
    }
}

/// Runs the whole pipeline in `work_dir` and blocks until it has finished. `fail` names one of
/// [`STEPS`] whose program is told to fail. Needs a manager that runs at least four jobs at
/// once for a parallel scan (fewer just queue).
pub fn run_refinement(manager: &ProcessManager, work_dir: &Path, fail: Option<&str>) -> Report {
    std::fs::create_dir_all(work_dir).expect("cannot create the work directory");
    let work_dir = work_dir.canonicalize().expect("the work directory exists");
    let model = work_dir.join("input.pdb");
    std::fs::write(&model, INPUT_MODEL).expect("cannot write the input model");
    let ctx = Arc::new(Ctx {
        standins: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/standins"),
        fail: fail.map(str::to_owned),
        model,
        reached: Mutex::new(Vec::new()),
        reports: Mutex::new(Vec::new()),
        best_weight: Mutex::new(None),
    });
    let pipeline = Pipeline::new(manager, PluginInfo::new("prosmart_refmac", "1", &work_dir));
    prosmart(&pipeline, &ctx);
    let end = pipeline.wait().expect("not called from a handler");

    let mut steps = std::mem::take(&mut *ctx.reports.lock().unwrap());
    steps.sort_by_key(|(index, _)| *index);
    let reached = ctx.reached.lock().unwrap();
    let best_weight = *ctx.best_weight.lock().unwrap();
    Report {
        work_dir,
        steps: steps.into_iter().map(|(_, r)| r).collect(),
        skipped: STEPS.into_iter().filter(|s| !reached.contains(s)).collect(),
        best_weight,
        end,
    }
}

fn prosmart(pipeline: &Pipeline, ctx: &Arc<Ctx>) {
    let mut keywords = vec![format!("XYZIN {}", ctx.model.display())];
    if ctx.fails("prosmart") {
        keywords.push("FAIL yes".into());
    }
    let task = ctx.step("prosmart", "prosmart", "restraints.txt", &keywords);
    let Some(child) = ctx.make(pipeline, task) else {
        return;
    };
    let ctx2 = Arc::clone(ctx);
    pipeline.connect_signal(&child, move |pipeline, child, _| {
        scan(pipeline, &ctx2, child.info().path("restraints.txt"));
    });
    child.process().expect("a new plugin");
}

fn scan(pipeline: &Pipeline, ctx: &Arc<Ctx>, restraints: PathBuf) {
    let mut runs = Vec::new();
    for weight in SCAN_WEIGHTS {
        let mut keywords = vec![
            format!("XYZIN {}", ctx.model.display()),
            format!("LIBIN {}", restraints.display()),
            format!("WEIGHT {weight:.2}"),
            "NCYCLES 5".into(),
        ];
        if ctx.fails("scan") && weight == FAILING_SCAN_WEIGHT {
            keywords.push("FAIL yes".into());
        }
        let mut task = ctx.step("scan", "refmac", "refined.pdb", &keywords);
        task.label = format!("refmac w={weight:.2}");
        match ctx.make(pipeline, task) {
            Some(child) => runs.push((weight, child)),
            None => return,
        }
    }
    // The handler gets the children as an argument: capturing them would make a reference
    // cycle through their `finished` signals.
    let (weights, children): (Vec<f64>, Vec<_>) = runs.into_iter().unzip();
    let ctx2 = Arc::clone(ctx);
    pipeline.connect_all(&children, move |pipeline, children| {
        // Keep the run with the lowest Rfree.
        let best = weights
            .iter()
            .zip(children)
            .filter_map(|(w, c)| c.task().rfree.map(|r| (r, *w, c)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let Some((_, weight, best)) = best else {
            pipeline.report_status(PluginStatus::Failed, "the scan parsed no Rfree");
            return;
        };
        *ctx2.best_weight.lock().unwrap() = Some(weight);
        waters(
            pipeline,
            &ctx2,
            best.info().path("refined.pdb"),
            restraints,
            weight,
        );
    });
    for child in &children {
        child.process().expect("a new plugin");
    }
}

fn waters(pipeline: &Pipeline, ctx: &Arc<Ctx>, model: PathBuf, restraints: PathBuf, weight: f64) {
    let mut keywords = vec![format!("XYZIN {}", model.display())];
    if ctx.fails("waters") {
        keywords.push("FAIL yes".into());
    }
    let task = ctx.step("waters", "waters", "waters.pdb", &keywords);
    let Some(child) = ctx.make(pipeline, task) else {
        return;
    };
    let ctx2 = Arc::clone(ctx);
    pipeline.connect_signal(&child, move |pipeline, child, _| {
        refine(
            pipeline,
            &ctx2,
            child.info().path("waters.pdb"),
            &restraints,
            weight,
        );
    });
    child.process().expect("a new plugin");
}

fn refine(pipeline: &Pipeline, ctx: &Arc<Ctx>, model: PathBuf, restraints: &Path, weight: f64) {
    let mut keywords = vec![
        format!("XYZIN {}", model.display()),
        format!("LIBIN {}", restraints.display()),
        format!("WEIGHT {weight:.2}"),
        "NCYCLES 8".into(),
    ];
    if ctx.fails("refine") {
        keywords.push("FAIL yes".into());
    }
    let mut task = ctx.step("refine", "refmac", "refined.pdb", &keywords);
    task.label = format!("refmac w={weight:.2}");
    let Some(child) = ctx.make(pipeline, task) else {
        return;
    };
    let ctx2 = Arc::clone(ctx);
    pipeline.connect_signal(&child, move |pipeline, child, _| {
        let rfree = child.task().rfree;
        validate(pipeline, &ctx2, child.info().path("refined.pdb"), rfree);
    });
    child.process().expect("a new plugin");
}

fn validate(pipeline: &Pipeline, ctx: &Arc<Ctx>, model: PathBuf, rfree: Option<f64>) {
    let mut keywords = vec![format!("XYZIN {}", model.display())];
    if ctx.fails("validate") {
        keywords.push("FAIL yes".into());
    }
    let task = ctx.step("validate", "validate", "validation.txt", &keywords);
    let Some(child) = ctx.make(pipeline, task) else {
        return;
    };
    pipeline.connect_signal(&child, move |pipeline, _, _| {
        let rfree = rfree.map_or("?".into(), |r| format!("{r:.4}"));
        pipeline.report_status(PluginStatus::Succeeded, format!("final Rfree {rfree}"));
    });
    child.process().expect("a new plugin");
}

/// A tiny fake starting model.
const INPUT_MODEL: &str = "\
REMARK   1 PROCMAN STAND-IN MODEL
ATOM      1  CA  ALA A   1      11.104  13.207   2.100  1.00 20.00           C
ATOM      2  CA  GLY A   2      12.560  13.890   4.320  1.00 20.00           C
ATOM      3  CA  SER A   3      13.770  12.600   6.410  1.00 20.00           C
END
";

/// Prints the summary.
pub fn print_report(report: &Report) {
    println!("prosmart_refmac (job 1) in {}", report.work_dir.display());
    println!(
        "  {:<5} {:<14} {:<14} {:>7} {:>7}  statistics",
        "job", "step", "status", "time", "memory"
    );
    for s in &report.steps {
        let time = s
            .seconds
            .map_or("-".into(), |t| format!("{:.0}ms", t * 1000.0));
        let memory = s
            .peak_memory
            .map_or("-".into(), |m| format!("{:.1}M", m as f64 / 1048576.0));
        let status = s.status.to_string();
        println!(
            "  {:<5} {:<14} {:<14} {:>7} {:>7}  {}",
            s.job, s.label, status, time, memory, s.detail
        );
    }
    for step in &report.skipped {
        println!("  {:<5} {:<14} {:<14} {:>7}", "-", step, "skipped", "-");
    }
    if let Some(w) = report.best_weight {
        println!("weight scan kept w={w:.2}");
    }
    println!(
        "pipeline: {} ({})",
        report.end.finish_status, report.end.message
    );
}

fn main() {
    let mut fail = None;
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--fail" => match args.next() {
                Some(step) if STEPS.contains(&step.as_str()) => fail = Some(step),
                _ => usage(),
            },
            "-h" | "--help" => usage(),
            _ if dir.is_none() && !arg.starts_with('-') => dir = Some(PathBuf::from(arg)),
            _ => usage(),
        }
    }
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("procman-refinement-{}", std::process::id()))
    });
    if std::env::var_os("REFMAC_PACE").is_none() {
        // Still one thread: the manager is not built yet.
        std::env::set_var("REFMAC_PACE", "0.1");
    }
    let manager = ProcessManager::builder()
        .limit(4)
        .sample_interval(Duration::from_millis(100))
        .build()
        .expect("a limit of 4 is valid");
    // The progress as the manager reports it, until the manager is gone.
    let events = manager.subscribe(1024);
    let printer = std::thread::spawn(move || {
        for event in events {
            if let Event::Progress { id, progress, .. } = event {
                let percent = progress.fraction.map_or(0.0, |f| f * 100.0);
                let message = progress.message.unwrap_or_default();
                println!("  job {id}: {message} ({percent:.0}%)");
            }
        }
    });
    let report = run_refinement(&manager, &dir, fail.as_deref());
    drop(manager);
    let _ = printer.join();
    print_report(&report);
    if !report.end.finish_status.is_success() {
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: refinement_pipeline [--fail {}] [WORK_DIR]",
        STEPS.join("|")
    );
    std::process::exit(2);
}
