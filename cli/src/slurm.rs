//! `--slurm` and the cluster options of `procman run` and `procman batch`: read into the
//! library's [`SlurmOptions`] (see docs/slurm.md).

use procman::slurm::{SlurmOptions, SlurmWay};

use crate::args::{self, UsageError};

/// The Slurm options shared by `run` and `batch` (flattened into both).
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "Slurm")]
pub struct SlurmArgs {
    /// Run the job(s) on Slurm; optionally with options in SlurmOptions' text form, e.g.
    /// --slurm=partition=short,qos=low,poll_max_ms=500 (see docs/slurm.md)
    #[arg(
        long,
        value_name = "K=V,...",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = ""
    )]
    pub slurm: Option<String>,
    /// Slurm partition to submit to (implies --slurm)
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub partition: Option<String>,
    /// Slurm account to charge (implies --slurm)
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub account: Option<String>,
    /// Slurm quality of service (implies --slurm)
    #[arg(long, value_name = "NAME", allow_hyphen_values = true)]
    pub qos: Option<String>,
    /// Slurm's own time limit of each job, in sbatch's form (30, 1:00:00, 2-0); procman's
    /// --timeout is enforced by procman (implies --slurm)
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub time_limit: Option<String>,
    /// One more sbatch argument for every submission, e.g. --sbatch-arg=--gres=gpu:1
    /// (repeatable; implies --slurm)
    #[arg(long, value_name = "ARG", action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,
    /// Run the jobs as job steps (srun --exact) in an allocation: the one procman runs in when
    /// SLURM_JOB_ID is set (inside an sbatch script), else one of N CPUs procman requests and
    /// releases at the end (implies --slurm)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub steps: Option<String>,
    /// Submit the jobs in Slurm arrays (sbatch --array): the jobs ready together go to Slurm
    /// in one submission per CPU/memory/time request instead of one each (implies --slurm)
    #[arg(long)]
    pub array: bool,
}

/// `batch`'s Slurm options that take a value (for `cli::batch_prepass`).
pub const VALUED: [&str; 6] = [
    "partition",
    "account",
    "qos",
    "time-limit",
    "sbatch-arg",
    "steps",
];

/// How many jobs `batch` has on Slurm at once without `-j`: Slurm queues and schedules
/// them, so the local machine's CPUs say nothing of it. Batch jobs and arrays: 1,000 (one full
/// array, so an array batch makes one `sbatch` call per 1,000 jobs); steps: the CPUs of the
/// allocation procman requests, or of the one it runs in (`SLURM_CPUS_ON_NODE`). `None`:
/// the local default (a given allocation, or no Slurm).
pub fn default_jobs(slurm: Option<&SlurmOptions>) -> Option<usize> {
    match slurm?.way() {
        SlurmWay::Jobs | SlurmWay::Arrays(_) => Some(IN_FLIGHT),
        SlurmWay::Steps(cpus) => usize::try_from(cpus).ok(),
        SlurmWay::StepsInOwnAllocation => std::env::var("SLURM_CPUS_ON_NODE")
            .ok()?
            .trim()
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0),
        SlurmWay::StepsIn(_) => None,
    }
}

/// [`default_jobs`] for batch jobs and arrays.
const IN_FLIGHT: usize = 1000;

/// The library's options from the command line, or `None` when no Slurm option was given
/// (the jobs run locally). Any cluster option implies `--slurm`.
pub fn options(a: SlurmArgs) -> Result<Option<SlurmOptions>, UsageError> {
    let any = a.partition.is_some()
        || a.account.is_some()
        || a.qos.is_some()
        || a.time_limit.is_some()
        || !a.sbatch_arg.is_empty()
        || a.steps.is_some()
        || a.array;
    if a.slurm.is_none() && !any {
        return Ok(None);
    }
    let mut o: SlurmOptions = a
        .slurm
        .as_deref()
        .unwrap_or("")
        .parse()
        .map_err(|e| UsageError(format!("option --slurm: {e}")))?;
    let nonempty = |name: &str, v: String| {
        if v.is_empty() {
            Err(UsageError(format!("option --{name}: must not be empty")))
        } else {
            Ok(v)
        }
    };
    if let Some(p) = a.partition {
        o = o.partition(nonempty("partition", p)?);
    }
    if let Some(acc) = a.account {
        o = o.account(nonempty("account", acc)?);
    }
    if let Some(q) = a.qos {
        o = o.sbatch_arg(format!("--qos={}", nonempty("qos", q)?));
    }
    if let Some(t) = a.time_limit {
        o = o.sbatch_arg(format!("--time={}", nonempty("time-limit", t)?));
    }
    for arg in a.sbatch_arg {
        o = o.sbatch_arg(nonempty("sbatch-arg", arg)?);
    }
    if a.array && a.steps.is_some() {
        return Err(UsageError(
            "options --array and --steps exclude each other".into(),
        ));
    }
    if let Some(n) = a.steps {
        let n: u32 = args::number("--steps", &n)?;
        if n == 0 {
            return Err(UsageError("option --steps: must be at least 1".into()));
        }
        o = o.steps(n);
    }
    if a.array {
        o = o.array(1000);
    }
    Ok(Some(o))
}

/// Where `procman run --slurm` has the job write the streams it would otherwise hand on
/// directly: files in a directory beside the job (`.procman-run.<pid>` in its working
/// directory, which a cluster shares with the nodes). A relay thread copies them to procman's
/// own stdout and stderr as they grow, byte for byte (raw bytes, not lines: a last line
/// without a newline stays so), every [`SPOOL_PACE`]; once the job has ended the files are
/// opened again (a network file system's client then fetches their size) and copied to their
/// end, and the directory is removed.
pub struct Spool {
    dir: std::path::PathBuf,
    out: bool,
    err: bool,
    relay: Option<(crossbeam_channel::Sender<()>, std::thread::JoinHandle<()>)>,
}

/// How often the relay of `procman run --slurm` looks at the spooled files.
pub const SPOOL_PACE: std::time::Duration = std::time::Duration::from_millis(50);

/// One spooled file being copied to one of procman's streams.
struct Spooled {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    to: Box<dyn std::io::Write + Send>,
    /// The writer went away (EPIPE): nothing more is copied.
    gone: bool,
}

impl Spooled {
    /// Copies what the file gained since the last call.
    fn copy_new(&mut self) {
        if self.gone {
            return;
        }
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        if let Some(f) = self.file.as_mut() {
            if std::io::copy(f, &mut self.to).is_err() || self.to.flush().is_err() {
                self.gone = true;
            }
        }
    }

    /// The job ended: the file opened again where it was read up to, and copied to its end.
    fn copy_rest(&mut self) {
        use std::io::{Seek, SeekFrom};
        if let Some(f) = self.file.as_mut() {
            let at = f.stream_position();
            if let (Ok(at), Ok(mut again)) = (at, std::fs::File::open(&self.path)) {
                if again.seek(SeekFrom::Start(at)).is_ok() {
                    *f = again;
                }
            }
        }
        self.copy_new();
    }
}

impl Spool {
    /// Makes the directory and points `log`/`err` that are unset into it. Fails when the
    /// directory cannot be made (the message says where).
    pub fn make(
        cwd: Option<&std::path::Path>,
        log: &mut Option<std::path::PathBuf>,
        err: &mut Option<std::path::PathBuf>,
    ) -> Result<Option<Spool>, String> {
        if log.is_some() && err.is_some() {
            return Ok(None);
        }
        let base = match cwd {
            Some(d) => d.to_path_buf(),
            None => std::env::current_dir().map_err(|e| format!("no working directory: {e}"))?,
        };
        let dir = base.join(format!(".procman-run.{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot make {} for the job's output: {e}", dir.display()))?;
        let spool = Spool {
            out: log.is_none(),
            err: err.is_none(),
            dir,
            relay: None,
        };
        if spool.out {
            *log = Some(spool.dir.join("out"));
        }
        if spool.err {
            *err = Some(spool.dir.join("err"));
        }
        Ok(Some(spool))
    }

    /// Starts relaying the job's output live (call once the job was submitted: its files
    /// exist). Without a thread (none can be made) the output is copied at the end only.
    pub fn start(&mut self) {
        let mut files = Vec::new();
        let spooled = |name: &str, to: Box<dyn std::io::Write + Send>| Spooled {
            path: self.dir.join(name),
            file: None,
            to,
            gone: false,
        };
        if self.out {
            files.push(spooled("out", Box::new(std::io::stdout())));
        }
        if self.err {
            files.push(spooled("err", Box::new(std::io::stderr())));
        }
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        let relay = std::thread::Builder::new()
            .name("procman-spool".into())
            .spawn(move || {
                // Until told the job ended (or procman drops the sender).
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(SPOOL_PACE)
                {
                    files.iter_mut().for_each(Spooled::copy_new);
                }
                files.iter_mut().for_each(Spooled::copy_rest);
            });
        match relay {
            Ok(t) => self.relay = Some((tx, t)),
            Err(e) => log::warn!("cannot relay the job's output live ({e}); it comes at the end"),
        }
    }

    /// The job has ended: copies the rest of what it wrote to procman's stdout and stderr
    /// (errors writing are ignored: the reader went away); dropping it removes the directory.
    pub fn finish(mut self) {
        if self.relay.is_none() {
            self.start();
        }
        self.stop();
    }

    /// Tells the relay the job ended and waits for its last copy.
    fn stop(&mut self) {
        if let Some((tx, t)) = self.relay.take() {
            drop(tx);
            let _ = t.join();
        }
    }
}

impl Drop for Spool {
    /// Removes the directory (also on the early returns before the job ends).
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_option_means_local_and_any_option_means_slurm() {
        assert!(options(SlurmArgs::default()).unwrap().is_none());
        let a = SlurmArgs {
            slurm: Some(String::new()),
            ..SlurmArgs::default()
        };
        assert!(options(a).unwrap().is_some());
        let a = SlurmArgs {
            partition: Some("debug".into()),
            sbatch_arg: vec!["--nice=5".into()],
            ..SlurmArgs::default()
        };
        let o = format!("{:?}", options(a).unwrap().unwrap());
        assert!(o.contains("debug") && o.contains("--nice=5"), "{o}");
        let a = SlurmArgs {
            array: true,
            ..SlurmArgs::default()
        };
        let o = format!("{:?}", options(a).unwrap().unwrap());
        assert!(o.contains("array: 1000"), "{o}");
    }

    #[test]
    fn batch_default_jobs_follow_the_way_onto_slurm() {
        assert_eq!(default_jobs(None), None);
        let of = |text: &str| default_jobs(Some(&text.parse().unwrap()));
        assert_eq!(of(""), Some(1000));
        assert_eq!(of("array=yes"), Some(1000));
        assert_eq!(of("steps=6"), Some(6));
        assert_eq!(of("steps_in=42"), None);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for a in [
            SlurmArgs {
                slurm: Some("colour=red".into()),
                ..SlurmArgs::default()
            },
            SlurmArgs {
                steps: Some("0".into()),
                ..SlurmArgs::default()
            },
            SlurmArgs {
                steps: Some("many".into()),
                ..SlurmArgs::default()
            },
            SlurmArgs {
                qos: Some(String::new()),
                ..SlurmArgs::default()
            },
            SlurmArgs {
                steps: Some("2".into()),
                array: true,
                ..SlurmArgs::default()
            },
        ] {
            assert!(options(a).is_err());
        }
    }
}
