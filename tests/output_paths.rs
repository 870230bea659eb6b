//! Output paths cannot silently destroy output (issue 19, section 4): an error file that is the
//! log file, by path or by device and inode, merges the streams; an input file that is also an
//! output is refused and left as it was.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TempDir;
use procman::{JobSpec, JobStatus, ObserveMode, ProcessManager, RetryOn, StartError, Stream};

/// Lines each stream writes in the merge tests.
const N: usize = 300;

/// Writes `out i` and `err i` alternately, one `write` each: the program's own order.
fn interleaving(n: usize) -> String {
    format!("i=1; while [ $i -le {n} ]; do echo out $i; echo err $i >&2; i=$((i+1)); done")
}

/// What `interleaving` writes, in its order.
fn interleaved(n: usize) -> String {
    (1..=n).map(|i| format!("out {i}\nerr {i}\n")).collect()
}

fn lines_of(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Everything an observer saw, in arrival order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(Stream, String)>>>);

impl Seen {
    fn observer(&self) -> impl Fn(procman::JobId, Stream, &[u8]) + Send + Sync + 'static {
        let seen = self.0.clone();
        move |_, s, l| {
            seen.lock()
                .unwrap()
                .push((s, String::from_utf8_lossy(l).into_owned()))
        }
    }

    fn of(&self, stream: Stream) -> Vec<String> {
        let v = self.0.lock().unwrap();
        v.iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, l)| l.clone())
            .collect()
    }
}

fn manager(mode: Option<ObserveMode>) -> ProcessManager {
    ProcessManager::builder()
        .observe_mode(mode.unwrap_or(ObserveMode::Files))
        .build()
        .unwrap()
}

/// Checks a merged log of `interleaving(n)` (and what the observer saw). Unobserved or
/// following the files, the log is byte-exact in the program's order and observed as stdout.
/// Through pipes two readers copy into the one file, so only each stream's own order holds.
fn check_merged(mode: Option<ObserveMode>, log: &Path, seen: &Seen, n: usize, what: &str) {
    let text = std::fs::read_to_string(log).unwrap();
    let want = interleaved(n);
    let outs: Vec<String> = (1..=n).map(|i| format!("out {i}")).collect();
    let errs: Vec<String> = (1..=n).map(|i| format!("err {i}")).collect();
    match mode {
        None | Some(ObserveMode::Files) => {
            assert!(
                text == want,
                "{what}, {mode:?}: the log is not the merged output:\n{text}"
            );
        }
        Some(_) => {
            assert_eq!(text.len(), want.len(), "{what}, {mode:?}: {text}");
            assert_eq!(lines_of(&text, "out "), outs, "{what}, {mode:?}");
            assert_eq!(lines_of(&text, "err "), errs, "{what}, {mode:?}");
        }
    }
    match mode {
        None => {}
        Some(ObserveMode::Files) => {
            let all: Vec<String> = want.lines().map(str::to_owned).collect();
            assert_eq!(seen.of(Stream::Stdout), all, "{what}: observed as the log");
            assert!(seen.of(Stream::Stderr).is_empty(), "{what}");
        }
        Some(_) => {
            assert_eq!(seen.of(Stream::Stdout), outs, "{what}");
            assert_eq!(seen.of(Stream::Stderr), errs, "{what}");
        }
    }
}

/// Ways of naming one file twice: (name, log path, error path), made in `dir`. The log file
/// exists and holds stale bytes, which must be gone afterwards.
fn aliases(dir: &Path) -> Vec<(&'static str, PathBuf, PathBuf)> {
    let f = |n: &str| dir.join(n);
    std::fs::create_dir_all(f("sub")).unwrap();
    for n in [
        "same",
        "dot",
        "dotdot",
        "symlink",
        "symlinked-log",
        "hardlink",
    ] {
        std::fs::write(f(&format!("{n}.log")), "stale bytes, longer than a line\n").unwrap();
    }
    std::os::unix::fs::symlink(f("symlink.log"), f("symlink.link")).unwrap();
    std::os::unix::fs::symlink(f("symlinked-log.log"), f("symlinked-log.link")).unwrap();
    std::fs::hard_link(f("hardlink.log"), f("hardlink.hard")).unwrap();
    vec![
        ("same path", f("same.log"), f("same.log")),
        ("./ alias", f("dot.log"), dir.join(".").join("dot.log")),
        (
            "../ alias",
            f("dotdot.log"),
            f("sub").join("..").join("dotdot.log"),
        ),
        ("symbolic link", f("symlink.log"), f("symlink.link")),
        (
            "log through a symbolic link",
            f("symlinked-log.link"),
            f("symlinked-log.log"),
        ),
        ("hard link", f("hardlink.log"), f("hardlink.hard")),
    ]
}

#[test]
fn an_error_file_that_is_the_log_file_merges_the_streams_in_every_mode() {
    for mode in [None, Some(ObserveMode::Files), Some(ObserveMode::Pipes)] {
        let dir = TempDir::new("merge-alias");
        let m = manager(mode);
        for (what, log, err) in aliases(dir.path()) {
            let seen = Seen::default();
            let mut spec = JobSpec::new("sh")
                .args(["-c", &interleaving(N)])
                .log_file(&log)
                .error_file(&err);
            if mode.is_some() {
                spec = spec.observe(seen.observer());
            }
            let r = m.run(spec).unwrap();
            assert_eq!(
                r.status,
                JobStatus::Finished,
                "{what}: {}",
                r.describe_end()
            );
            assert_eq!(r.error, None, "{what}");
            check_merged(mode, &log, &seen, N, what);
            assert!(
                std::fs::read(&err).unwrap() == std::fs::read(&log).unwrap(),
                "{what}: the error path names the same file"
            );
        }
    }
}

#[test]
fn a_merged_alias_is_kept_once_per_attempt_with_retries() {
    // Each attempt writes its number to both streams and fails; one retry. The previous
    // attempt's merged file is kept as `.attempt1`, whole.
    let script = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; \
                  echo out $n; echo err $n >&2; exit 1";
    for mode in [None, Some(ObserveMode::Files), Some(ObserveMode::Pipes)] {
        let dir = TempDir::new("merge-retry");
        let m = manager(mode);
        for (what, log, err) in aliases(dir.path()) {
            let work = dir.join(&format!("work-{}", what.replace(['/', ' ', '.'], "_")));
            std::fs::create_dir_all(&work).unwrap();
            let mut spec = JobSpec::new("sh")
                .args(["-c", script])
                .cwd(&work)
                .log_file(&log)
                .error_file(&err)
                .retries(1, Duration::ZERO, RetryOn::default());
            if mode.is_some() {
                spec = spec.observe(|_, _, _| {});
            }
            let r = m.run(spec).unwrap();
            assert_eq!(r.status, JobStatus::Failed, "{what}: {}", r.describe_end());
            assert_eq!(r.attempts, 2, "{what}");
            let is_link = |p: &Path| p.symlink_metadata().unwrap().file_type().is_symlink();
            // The file's real name is the one renamed.
            let mut kept = if is_link(&log) {
                err.clone()
            } else {
                log.clone()
            }
            .into_os_string();
            kept.push(".attempt1");
            let first = std::fs::read_to_string(&kept)
                .unwrap_or_else(|e| panic!("{what}, {mode:?}: {kept:?}: {e}"));
            let sorted = |t: &str| {
                let mut v: Vec<&str> = t.lines().collect();
                v.sort();
                v.join("\n")
            };
            assert_eq!(
                sorted(&first),
                "err 1\nout 1",
                "{what}, {mode:?}: attempt 1 kept whole"
            );
            let last = std::fs::read_to_string(&log).unwrap();
            if what == "hard link" {
                // The new attempt's log is a new file; the hard link was renamed with the old
                // one (so it was not truncated) and names a file of its own now.
                assert_eq!(last, "out 2\n", "{what}, {mode:?}");
                assert_eq!(std::fs::read_to_string(&err).unwrap(), "err 2\n");
            } else {
                assert_eq!(
                    sorted(&last),
                    "err 2\nout 2",
                    "{what}, {mode:?}: merged again"
                );
                if what.contains("symbolic") {
                    assert!(
                        is_link(&log) || is_link(&err),
                        "{what}: the link is still a link"
                    );
                }
            }
        }
    }
}

const INPUT: &str = "the only copy of the keywords\n";

#[test]
fn an_input_file_named_as_an_output_is_refused_at_submission_and_left_untouched() {
    let dir = TempDir::new("input-path");
    let input = dir.join("in.txt");
    std::fs::write(&input, INPUT).unwrap();
    let m = ProcessManager::new();
    let cases = [
        ("log", JobSpec::new("cat").log_file(&input)),
        (
            "./ log",
            JobSpec::new("cat").log_file(dir.path().join(".").join("in.txt")),
        ),
        (
            "error file",
            JobSpec::new("cat")
                .log_file(dir.join("out.log"))
                .error_file(&input),
        ),
        // The default error file of `in.log` is `in_err.txt`.
        (
            "default error file",
            JobSpec::new("cat").log_file(dir.join("in.log")),
        ),
    ];
    for (what, spec) in cases {
        let spec_input = if what == "default error file" {
            dir.join("in_err.txt")
        } else {
            input.clone()
        };
        std::fs::write(&spec_input, INPUT).unwrap();
        let e = m.start_process(spec.input_file(&spec_input)).unwrap_err();
        assert!(
            matches!(&e, StartError::InputIsOutput { path, .. } if *path == spec_input),
            "{what}: {e:?}"
        );
        assert!(e.to_string().contains("input"), "{what}: {e}");
        assert_eq!(
            std::fs::read_to_string(&spec_input).unwrap(),
            INPUT,
            "{what}"
        );
    }
}

#[test]
fn an_input_file_that_is_an_output_under_another_name_fails_the_job_and_is_left_untouched() {
    for mode in [None, Some(ObserveMode::Files), Some(ObserveMode::Pipes)] {
        let dir = TempDir::new("input-alias");
        let f = |n: &str| dir.join(n);
        let input = f("in.txt");
        std::fs::write(&input, INPUT).unwrap();
        std::fs::create_dir_all(f("sub")).unwrap();
        std::os::unix::fs::symlink(&input, f("sym")).unwrap();
        std::fs::hard_link(&input, f("hard")).unwrap();
        let dotdot = f("sub").join("..").join("in.txt");
        // (name, log, error file, where the message must be)
        let cases: Vec<(&str, PathBuf, Option<PathBuf>, Option<PathBuf>)> = vec![
            (
                "log symlink",
                f("sym"),
                Some(f("e1.txt")),
                Some(f("e1.txt")),
            ),
            (
                "log hard link",
                f("hard"),
                Some(f("e2.txt")),
                Some(f("e2.txt")),
            ),
            (
                "log ../",
                dotdot.clone(),
                Some(f("e3.txt")),
                Some(f("e3.txt")),
            ),
            (
                "error file symlink",
                f("o4.log"),
                Some(f("sym")),
                Some(f("o4.log")),
            ),
            (
                "error file hard link",
                f("o5.log"),
                Some(f("hard")),
                Some(f("o5.log")),
            ),
            ("both", f("sym"), Some(f("hard")), None),
        ];
        let m = manager(mode);
        for (what, log, err, message_in) in cases {
            let mut spec = JobSpec::new("cat")
                .input_file(&input)
                .log_file(&log)
                // A spawn failure is retried: the retry must not rename or touch the input.
                .retries(1, Duration::ZERO, RetryOn::default());
            if let Some(e) = &err {
                spec = spec.error_file(e);
            }
            if mode.is_some() {
                spec = spec.observe(|_, _, _| {});
            }
            let r = m.run(spec).unwrap();
            assert_eq!(r.status, JobStatus::SpawnFailed, "{what}, {mode:?}");
            let why = r.error.clone().unwrap_or_default();
            assert!(why.contains("is the input file"), "{what}: {why}");
            assert_eq!(
                std::fs::read_to_string(&input).unwrap(),
                INPUT,
                "{what}, {mode:?}: the input was touched"
            );
            let mut moved = input.as_os_str().to_owned();
            moved.push(".attempt1");
            assert!(!Path::new(&moved).exists(), "{what}: the input was renamed");
            if let Some(p) = message_in {
                let text = std::fs::read_to_string(&p).unwrap();
                assert!(
                    text.contains("is the input file"),
                    "{what}: {p:?} holds {text:?}"
                );
            }
        }
        // Still links to the input, which still reads the same through each of them.
        for n in ["sym", "hard"] {
            assert_eq!(std::fs::read_to_string(f(n)).unwrap(), INPUT, "{mode:?}");
        }
    }
}

#[test]
fn dev_null_may_be_both_the_input_and_an_output() {
    let dir = TempDir::new("devnull");
    std::os::unix::fs::symlink("/dev/null", dir.join("null")).unwrap();
    let m = ProcessManager::new();
    for (log, err) in [
        (PathBuf::from("/dev/null"), PathBuf::from("/dev/null")),
        (dir.join("null"), dir.join("e.txt")),
    ] {
        let r = m
            .run(
                JobSpec::new("sh")
                    .args(["-c", "cat; echo err >&2"])
                    .input_file("/dev/null")
                    .log_file(&log)
                    .error_file(&err),
            )
            .unwrap();
        assert_eq!(
            r.status,
            JobStatus::Finished,
            "{log:?}: {}",
            r.describe_end()
        );
    }
    assert_eq!(std::fs::read_to_string(dir.join("e.txt")).unwrap(), "err\n");
}
