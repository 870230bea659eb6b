//! [`SlurmOptions`]: how procman submits to and follows a Slurm cluster.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How procman submits to and follows a Slurm cluster (see
/// [`Builder::slurm`](crate::Builder::slurm)).
///
/// ```
/// use procman::slurm::SlurmOptions;
/// use std::time::Duration;
///
/// let options = SlurmOptions::new()
///     .partition("short")
///     .account("ccp4")
///     .sbatch_arg("--qos=normal")
///     .poll_interval(Duration::from_millis(100), Duration::from_secs(2));
/// # drop(options);
/// ```
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    pub(super) partition: Option<OsString>,
    pub(super) account: Option<OsString>,
    pub(super) extra: Vec<OsString>,
    pub(super) poll_min: Duration,
    pub(super) poll_max: Duration,
    pub(super) confirm: Duration,
    pub(super) submitters: usize,
    /// Run jobs as job steps (`steps.rs`).
    pub(super) steps: bool,
    pub(super) steps_in: Option<u32>,
    pub(super) steps_cpus: u32,
    /// Submit first attempts in arrays of at most this many tasks (0: one job each;
    /// `array.rs`).
    pub(super) array: u32,
    pub(super) srun: PathBuf,
    pub(super) sbatch: PathBuf,
    pub(super) squeue: PathBuf,
    pub(super) scancel: PathBuf,
    pub(super) scontrol: PathBuf,
    pub(super) sacct: PathBuf,
    pub(super) output_lag: Duration,
    /// How long an ended job waits for its line in Slurm's accounting (`usage.rs`).
    pub(super) accounting_wait: Duration,
}

impl Default for SlurmOptions {
    fn default() -> SlurmOptions {
        SlurmOptions {
            partition: None,
            account: None,
            extra: Vec::new(),
            poll_min: Duration::from_millis(100),
            poll_max: Duration::from_secs(2),
            confirm: Duration::from_secs(60),
            submitters: 4,
            steps: false,
            steps_in: None,
            steps_cpus: 1,
            array: 0,
            srun: "srun".into(),
            sbatch: "sbatch".into(),
            squeue: "squeue".into(),
            scancel: "scancel".into(),
            scontrol: "scontrol".into(),
            sacct: "sacct".into(),
            output_lag: Duration::from_millis(100),
            accounting_wait: Duration::from_secs(10),
        }
    }
}

impl SlurmOptions {
    /// The defaults: Slurm's default partition and account, no extra `sbatch` arguments, a poll
    /// interval between 100 ms and 2 s, and the Slurm commands found in `PATH`.
    pub fn new() -> SlurmOptions {
        SlurmOptions::default()
    }

    /// Submits to this partition (`--partition`).
    pub fn partition(mut self, partition: impl AsRef<OsStr>) -> SlurmOptions {
        self.partition = Some(partition.as_ref().to_owned());
        self
    }

    /// Charges this account (`--account`).
    pub fn account(mut self, account: impl AsRef<OsStr>) -> SlurmOptions {
        self.account = Some(account.as_ref().to_owned());
        self
    }

    /// Appends one argument to every `sbatch` command line (for example `--qos=low`,
    /// `--constraint=avx2`, `--begin=now+60`). They come after procman's own options, so they
    /// override them.
    pub fn sbatch_arg(mut self, arg: impl AsRef<OsStr>) -> SlurmOptions {
        self.extra.push(arg.as_ref().to_owned());
        self
    }

    /// The bounds of the poller's adaptive interval (default 100 ms to 2 s): after any change
    /// it polls at `min`, and the interval doubles up to `max` while nothing changes. A job's
    /// timeout starts when the poller sees it running, so it can start up to `max` late.
    /// Both are kept between 10 ms and one hour: a longer interval would leave a
    /// job's end (and so its handler, and the manager's shutdown) unseen for that long.
    pub fn poll_interval(mut self, min: Duration, max: Duration) -> SlurmOptions {
        self.poll_min = min.clamp(Duration::from_millis(10), POLL_CAP);
        self.poll_max = max.clamp(self.poll_min, POLL_CAP);
        self
    }

    /// How long a worker waits for Slurm to report the end of a job it cancelled before it
    /// gives up and ends the attempt with an error (default 60 s; the job may then linger in
    /// Slurm). A time too long for the clock (`Duration::MAX`) never gives up.
    pub fn cancel_confirm_timeout(mut self, timeout: Duration) -> SlurmOptions {
        self.confirm = timeout;
        self
    }

    /// For jobs whose output is observed ([`JobSpec::observe`](crate::JobSpec::observe),
    /// [`JobSpec::progress`](crate::JobSpec::progress)): how long after a job's end its log
    /// files are still read until nothing new comes (default 100 ms), as a network file system
    /// may show the last output late. The job completes that much later; a file not there yet
    /// is waited for at most 2 s more. On NFS, the client's attribute cache time (`acregmax`,
    /// often 3 to 60 s) bounds its lag.
    pub fn output_lag(mut self, lag: Duration) -> SlurmOptions {
        self.output_lag = lag.min(POLL_CAP);
        self
    }

    /// On a cluster with accounting (`sacct` works): how long an ended job waits for Slurm's
    /// accounting to record its end, for its CPU times and peak memory (default 10 s). slurmdbd
    /// records a job's end a moment after the controller (here: usually before the first
    /// `sacct`, once more than 3 s later under load); a job whose line is there ends at once,
    /// one still missing after this ends with its wall time only, so its handler runs up to
    /// this much later. For batch jobs and array tasks a failing `sacct` is asked again (every
    /// 300 ms) within the same wait; job steps that a failing `sacct` was asked about end at
    /// once without figures (`docs/slurm.md`). Zero ends every job with the figures of the
    /// first `sacct`. Kept at most one hour.
    pub fn accounting_wait(mut self, wait: Duration) -> SlurmOptions {
        self.accounting_wait = wait.min(POLL_CAP);
        self
    }

    /// At most this many submissions (`sbatch` calls) run at once, each on a worker thread of
    /// the manager (default 4, at least 1). A submitted job holds no thread while it is queued
    /// or runs: one poller thread follows them all, so the manager's threads stay this many
    /// plus a few whatever its job limit.
    pub fn submit_threads(mut self, n: usize) -> SlurmOptions {
        self.submitters = n.max(1);
        self
    }

    /// Runs each job as a job step (`srun --exact -n1 -c CPUS`) in one allocation instead of as
    /// a batch job of its own: Slurm starts a step in tens of milliseconds, where batch jobs wait
    /// for its scheduling passes (200 short jobs: a few seconds instead of about 95 s on the
    /// one-node Slurm of docs/slurm.md). The allocation is the one procman runs in
    /// (`SLURM_JOB_ID` set, as inside an `sbatch` script), else one of `cpus` CPUs that procman
    /// requests with `sbatch` (partition, account and the extra `sbatch` arguments apply) when
    /// the first job needs it, and cancels at shutdown. Jobs that do not fit the allocation's
    /// free CPUs wait for them in `srun` (set the manager's limit to the allocation's CPUs).
    /// Each job keeps its own files, timeout, kill and handler; its `pid` is `srun`'s.
    pub fn steps(mut self, cpus: u32) -> SlurmOptions {
        self.steps = true;
        self.array = 0;
        self.steps_cpus = cpus.max(1);
        self
    }

    /// Runs each job as a job step (see [`steps`](Self::steps)) in this allocation (a running
    /// Slurm job id), which procman neither requests nor cancels.
    pub fn steps_in(mut self, allocation: u32) -> SlurmOptions {
        self.steps = true;
        self.array = 0;
        self.steps_in = Some(allocation);
        self
    }

    /// Submits jobs in Slurm arrays (`sbatch --array`) of at most `max_tasks` jobs (at least 1;
    /// Slurm's default `MaxArraySize` of 1001 allows 1,000, the value of `array=yes` in the
    /// text form): the first attempts that become ready within a short window (50 ms without a
    /// new one, 500 ms at most) go to Slurm in one `sbatch` call per group of jobs asking for
    /// the same CPUs, memory and time limit, instead of one call each. Each job keeps its own
    /// files, environment, queued state, timeout, kill (`scancel` of its task alone), handler
    /// and accounting; its `pid` is the array's job id and its `array_task` its task
    /// (`ARRAYID_TASK` in Slurm's commands). A refusal by `sbatch` ends every job of that array as `SpawnFailed`; retries
    /// are submitted one job each. The manager's [`limit`](crate::Builder::limit) caps the
    /// jobs released to Slurm: up to 10,000 more go into the same arrays held
    /// (`sbatch --hold`, read as `Queued`) and are released (`scontrol release`) as slots
    /// free, so a batch larger than the limit still makes about one `sbatch` per `max_tasks`
    /// jobs. Replaces [`steps`](Self::steps) (the later call wins).
    pub fn array(mut self, max_tasks: u32) -> SlurmOptions {
        self.array = max_tasks.max(1);
        self.steps = false;
        self.steps_in = None;
        self
    }

    /// How jobs go onto Slurm: what [`steps`](Self::steps), [`steps_in`](Self::steps_in) and
    /// [`array`](Self::array) chose. Does not block.
    pub fn way(&self) -> SlurmWay {
        match (self.steps, self.steps_in, self.steps_cpus) {
            (true, Some(id), _) => SlurmWay::StepsIn(id),
            (true, None, 0) => SlurmWay::StepsInOwnAllocation,
            (true, None, cpus) => SlurmWay::Steps(cpus),
            _ if self.array > 0 => SlurmWay::Arrays(self.array),
            _ => SlurmWay::Jobs,
        }
    }

    /// The `srun` program (default `srun`; used for job steps).
    pub fn srun_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.srun = path.as_ref().to_owned();
        self
    }

    /// The `sbatch` program (default `sbatch`, looked up in `PATH`).
    pub fn sbatch_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.sbatch = path.as_ref().to_owned();
        self
    }

    /// The `squeue` program (default `squeue`).
    pub fn squeue_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.squeue = path.as_ref().to_owned();
        self
    }

    /// The `scancel` program (default `scancel`).
    pub fn scancel_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.scancel = path.as_ref().to_owned();
        self
    }

    /// The `scontrol` program (default `scontrol`; used only when `squeue` cannot print exit
    /// codes, before Slurm 20.11).
    pub fn scontrol_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.scontrol = path.as_ref().to_owned();
        self
    }

    /// The `sacct` program (default `sacct`; asked about jobs that `squeue` no longer knows).
    pub fn sacct_program(mut self, path: impl AsRef<Path>) -> SlurmOptions {
        self.sacct = path.as_ref().to_owned();
        self
    }
}

/// How jobs go onto Slurm ([`SlurmOptions::way`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlurmWay {
    /// One batch job (`sbatch`) per job: the default.
    Jobs,
    /// Arrays of at most this many jobs ([`SlurmOptions::array`]).
    Arrays(u32),
    /// Job steps in an allocation of this many CPUs that procman requests
    /// ([`SlurmOptions::steps`]).
    Steps(u32),
    /// Job steps in the allocation procman runs in (`SLURM_JOB_ID`; `steps=yes`).
    StepsInOwnAllocation,
    /// Job steps in this allocation ([`SlurmOptions::steps_in`]).
    StepsIn(u32),
}

impl std::str::FromStr for SlurmOptions {
    type Err = String;

    /// Options from one line of text, as the `PROCMAN_SLURM` environment variable of the Python
    /// package and command-line tools give them: comma-separated `key=value` items, each key at
    /// most once but `sbatch_arg`. Keys: `partition`, `account`, `qos` (`--qos=`), `time`
    /// (`--time=`, Slurm's own limit), `sbatch_arg` (any `sbatch` argument), `steps` (CPUs of
    /// an allocation procman requests, or `yes` for the allocation procman runs in: see
    /// [`SlurmOptions::steps`]), `steps_in` (an allocation's job id), `array` (`yes` for arrays
    /// of up to 1,000 jobs, or the largest array, `no` or `0` for none: see
    /// [`SlurmOptions::array`]), `poll_min_ms`, `poll_max_ms`, `submit_threads`,
    /// `output_lag_ms`, `accounting_wait_ms`. An empty text, `1` or `yes` is the defaults. Values
    /// cannot hold a comma.
    ///
    /// ```
    /// use procman::slurm::SlurmOptions;
    /// let o: SlurmOptions = "partition=short,qos=low,steps=8".parse().unwrap();
    /// assert!("colour=blue".parse::<SlurmOptions>().is_err());
    /// # drop(o);
    /// ```
    ///
    /// # Errors
    /// An unknown key, an item without `=`, or a value that is not a number where one is
    /// needed: the message names it.
    fn from_str(text: &str) -> Result<SlurmOptions, String> {
        let mut o = SlurmOptions::new();
        let text = text.trim();
        if matches!(text, "" | "1" | "yes" | "true") {
            return Ok(o);
        }
        let (mut min, mut max) = (o.poll_min, o.poll_max);
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("Slurm option {item:?} is not key=value"))?;
            let (key, value) = (key.trim(), value.trim());
            let number = |what: &str| {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("Slurm option {what}={value:?} is not a number"))
            };
            o = match key {
                "partition" => o.partition(value),
                "account" => o.account(value),
                "qos" => o.sbatch_arg(format!("--qos={value}")),
                "time" => o.sbatch_arg(format!("--time={value}")),
                "sbatch_arg" => o.sbatch_arg(value),
                "steps" if matches!(value, "yes" | "true") => {
                    let mut o = o.steps(1);
                    o.steps_cpus = 0;
                    o
                }
                "steps" => o.steps(u32::try_from(number(key)?).unwrap_or(u32::MAX)),
                "steps_in" => o.steps_in(u32::try_from(number(key)?).unwrap_or(u32::MAX)),
                "array" => match value.to_ascii_lowercase().as_str() {
                    "yes" | "true" => o.array(ARRAY_DEFAULT),
                    "no" | "false" | "0" => {
                        o.array = 0;
                        o
                    }
                    _ => o.array(u32::try_from(number(key)?).unwrap_or(u32::MAX)),
                },
                "poll_min_ms" => {
                    min = Duration::from_millis(number(key)?);
                    o
                }
                "poll_max_ms" => {
                    max = Duration::from_millis(number(key)?);
                    o
                }
                "output_lag_ms" => o.output_lag(Duration::from_millis(number(key)?)),
                "accounting_wait_ms" => o.accounting_wait(Duration::from_millis(number(key)?)),
                "submit_threads" => {
                    o.submit_threads(usize::try_from(number(key)?).unwrap_or(usize::MAX))
                }
                _ => return Err(format!("unknown Slurm option {key:?} in {item:?}")),
            };
        }
        Ok(o.poll_interval(min, max.max(min)))
    }
}

/// The largest array of `array=yes`: Slurm's default `MaxArraySize` (1001) allows indices
/// 0 to 1000.
const ARRAY_DEFAULT: u32 = 1000;

/// The longest poll interval [`SlurmOptions::poll_interval`] accepts.
const POLL_CAP: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_from_text() {
        let o: SlurmOptions =
            " partition=short, qos=low,sbatch_arg=--begin=now+1,steps=8,poll_max_ms=500"
                .parse()
                .unwrap();
        assert_eq!(o.partition.as_deref(), Some(OsStr::new("short")));
        assert_eq!(o.extra, ["--qos=low", "--begin=now+1"]);
        assert!(o.steps && o.steps_cpus == 8 && o.steps_in.is_none());
        assert_eq!(o.poll_max, Duration::from_millis(500));
        let o: SlurmOptions = "output_lag_ms=3000,accounting_wait_ms=0".parse().unwrap();
        assert_eq!(o.output_lag, Duration::from_secs(3));
        assert_eq!(o.accounting_wait, Duration::ZERO);
        let o = SlurmOptions::new().accounting_wait(Duration::MAX);
        assert_eq!(o.accounting_wait, POLL_CAP);
        let o: SlurmOptions = "steps_in=42".parse().unwrap();
        assert_eq!(o.steps_in, Some(42));
        assert!("yes"
            .parse::<SlurmOptions>()
            .is_ok_and(|o| !o.steps && o.array == 0));
        let o: SlurmOptions = "steps=4,array=yes".parse().unwrap();
        assert!(!o.steps && o.array == 1000);
        let o: SlurmOptions = "array=True".parse().unwrap();
        assert_eq!(o.array, 1000);
        assert_eq!("array=50".parse::<SlurmOptions>().unwrap().array, 50);
        assert_eq!("array=no".parse::<SlurmOptions>().unwrap().array, 0);
        assert_eq!("array=0".parse::<SlurmOptions>().unwrap().array, 0);
        assert!("array=many"
            .parse::<SlurmOptions>()
            .unwrap_err()
            .contains("array"));
        assert!("steps=many"
            .parse::<SlurmOptions>()
            .unwrap_err()
            .contains("steps"));
        assert!("colour=blue"
            .parse::<SlurmOptions>()
            .unwrap_err()
            .contains("colour"));
        assert!("partition".parse::<SlurmOptions>().is_err());
    }

    #[test]
    fn poll_intervals_stay_between_10_ms_and_an_hour() {
        let o = SlurmOptions::new().poll_interval(Duration::MAX, Duration::MAX);
        assert_eq!((o.poll_min, o.poll_max), (POLL_CAP, POLL_CAP));
        let o = SlurmOptions::new().poll_interval(Duration::ZERO, Duration::ZERO);
        let ten = Duration::from_millis(10);
        assert_eq!((o.poll_min, o.poll_max), (ten, ten));
        let o = SlurmOptions::new().poll_interval(Duration::from_secs(1), Duration::MAX);
        assert_eq!((o.poll_min, o.poll_max), (Duration::from_secs(1), POLL_CAP));
    }
}
