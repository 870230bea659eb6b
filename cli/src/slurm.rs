//! `--slurm` and the cluster options of `procman run` and `procman batch`: read into the
//! library's [`SlurmOptions`] (see docs/slurm.md).

use procman::slurm::SlurmOptions;

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
/// directory, which a cluster shares with the nodes), copied to procman's own stdout and stderr
/// once the job has ended, then removed.
pub struct Spool {
    dir: std::path::PathBuf,
    out: bool,
    err: bool,
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
        };
        if spool.out {
            *log = Some(spool.dir.join("out"));
        }
        if spool.err {
            *err = Some(spool.dir.join("err"));
        }
        Ok(Some(spool))
    }

    /// Copies what the job wrote to procman's stdout and stderr (errors writing are ignored:
    /// the reader went away); dropping it removes the directory.
    pub fn finish(self) {
        use std::io::Write;
        let copy = |name: &str, to: &mut dyn Write| {
            if let Ok(mut f) = std::fs::File::open(self.dir.join(name)) {
                let _ = std::io::copy(&mut f, to);
                let _ = to.flush();
            }
        };
        if self.out {
            copy("out", &mut std::io::stdout().lock());
        }
        if self.err {
            copy("err", &mut std::io::stderr().lock());
        }
    }
}

impl Drop for Spool {
    /// Removes the directory (also on the early returns before the job ends).
    fn drop(&mut self) {
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
