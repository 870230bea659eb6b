//! How a job step's `srun` runs the job: the program itself (`srun ... -- PROG ARGS`) wherever
//! `srun` can carry everything the job asks for, else the batch script through `/bin/sh -c`
//! (`script.rs`), which costs a shell per step (docs/slurm.md, the figures).
//!
//! The direct way carries the job's environment edits in `srun`'s own environment, which
//! `srun` passes to the task (its `--export` cannot: it does not override a variable `srun`
//! already has, nor unset one). The script is kept for what that cannot say exactly: clearing
//! the environment, editing a variable that `srun` or `slurmstepd` reads or sets themselves
//! (`SLURM_*`, `PATH`, `TMPDIR`, `LD_*`, ...), and a program name that `slurmstepd` would also
//! look for in the working directory (it tries there after `PATH`, where `exec` would not).
//!
//! A program that cannot be started is told from one that failed by `slurmstepd`'s own line in
//! the task's standard error, `slurmstepd-NODE: error: execve(): PROG: No such file or
//! directory` (the task then exits with the `errno`): the step's error file, the log when
//! merged, or a file of procman's in the job's directory when the job does not keep its
//! standard error (`steps.rs`).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::job::JobCore;
use crate::spec::EnvEdit;

/// The job as `srun` runs it directly: its command line and the changes to `srun`'s
/// environment.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Direct {
    /// The interpreter (if any), the program and its arguments, exactly as given.
    pub(super) argv: Vec<OsString>,
    /// Variables to set in `srun`'s environment, in order.
    pub(super) set: Vec<(OsString, OsString)>,
    /// Variables to take out of `srun`'s environment.
    pub(super) remove: Vec<OsString>,
}

/// The job as `srun` can run it directly from `cwd` (its working directory, absolute), or
/// `None` when only the batch script says exactly what the job asks for.
pub(super) fn direct(core: &JobCore, cwd: &Path) -> Option<Direct> {
    let mut argv: Vec<OsString> = Vec::with_capacity(core.args.len() + 2);
    argv.extend(core.interpreter.as_deref().map(OsStr::to_os_string));
    argv.push(core.program.to_os_string());
    argv.extend(core.args.iter().cloned());
    let first = argv[0].as_bytes();
    if first.is_empty() || argv.iter().any(|a| a.as_bytes().contains(&0)) {
        return None;
    }
    // slurmstepd runs `./PROG` when PATH has no PROG; exec (and so the script) would not.
    if !first.contains(&b'/') && cwd.join(&argv[0]).symlink_metadata().is_ok() {
        return None;
    }
    // The edits reduced to: set these, unset these (in order, the last word on a name wins).
    let mut edits: Vec<(&OsStr, Option<&OsStr>)> = Vec::new();
    for edit in &core.env {
        let (name, value) = match edit {
            EnvEdit::Clear => return None,
            EnvEdit::Set(k, v) => (k.as_os_str(), Some(v.as_os_str())),
            EnvEdit::Remove(k) => (k.as_os_str(), None),
        };
        if !srun_may_carry(name) || value.is_some_and(|v| v.as_bytes().contains(&0)) {
            return None;
        }
        edits.retain(|(n, _)| *n != name);
        edits.push((name, value));
    }
    let mut d = Direct {
        argv,
        set: Vec::new(),
        remove: Vec::new(),
    };
    for (name, value) in edits {
        match value {
            Some(v) => d.set.push((name.to_owned(), v.to_owned())),
            None => d.remove.push(name.to_owned()),
        }
    }
    Some(d)
}

/// Whether `srun`'s environment can carry an edit of this variable to the task unchanged:
/// not a variable that `srun`, `slurmstepd` or the loader read or set themselves.
fn srun_may_carry(name: &OsStr) -> bool {
    let n = name.as_bytes();
    const PREFIXES: [&[u8]; 8] = [
        b"SLURM", b"SRUN", b"SALLOC_", b"SBATCH_", b"PMI", b"LD_", b"GLIBC_", b"MALLOC_",
    ];
    !n.is_empty()
        && !n.contains(&b'=')
        && !n.contains(&0)
        && !matches!(n, b"PATH" | b"TMPDIR" | b"PWD")
        && !PREFIXES.iter().any(|p| n.starts_with(p))
}

/// `slurmstepd`'s line saying that `program` could not be started, when it is the first line
/// of the task's standard error (`srun`'s own lines aside: nothing ran to write before it),
/// names `program` (as given, or resolved to a path ending with it) and gives the `strerror`
/// of the task's exit `code`: the node (when the line names it) and the reason, e.g.
/// (`Some("node7")`, `"No such file or directory"`).
pub(super) fn cannot_start(
    text: &[u8],
    program: &OsStr,
    code: i32,
) -> Option<(Option<String>, String)> {
    let text = String::from_utf8_lossy(text);
    let line = text.lines().find(|l| !l.starts_with("srun: "))?;
    let (who, rest) = line.split_once(": error: execve(): ")?;
    let node = match who.strip_prefix("slurmstepd") {
        Some("") => None,
        Some(n) => Some(n.strip_prefix('-').filter(|n| !n.is_empty())?.to_owned()),
        None => return None,
    };
    let (path, reason) = rest.rsplit_once(": ")?;
    let given = program.to_string_lossy();
    let names_it = path == given || path.strip_suffix(&*given).is_some_and(|p| p.ends_with('/'));
    let strerror = std::io::Error::from_raw_os_error(code).to_string();
    let strerror = strerror.split(" (os error").next().unwrap_or_default();
    (names_it && code > 0 && reason.trim() == strerror).then(|| (node, reason.trim().to_owned()))
}

/// Undoes `submit.rs`'s `%` → `%%` of a path for `srun`'s file options.
pub(super) fn unescape_path(p: &OsStr) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::with_capacity(p.len());
    let mut b = p.as_bytes().iter().peekable();
    while let Some(&c) = b.next() {
        out.push(c);
        if c == b'%' && b.peek() == Some(&&b'%') {
            b.next();
        }
    }
    OsString::from_vec(out).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::slurm::test_core as core;

    #[test]
    fn a_plain_job_runs_directly_with_its_bytes_unchanged() {
        let odd: Vec<&[u8]> = vec![
            b"",
            b" ",
            b"'",
            b"\"$HOME\" `id` $(id) ${x:-y} \\ \\n",
            b"a\nb\r\nc\rd",
            b"\xff\xfe non-UTF-8 \x80",
            b"*?[a] ~ # ; & | < > ( ) { }",
            b"-n",
            b"--export=NONE",
        ];
        let c = core("printf", &odd, vec![]);
        let d = direct(&c, Path::new("/nonexistent-procman-dir")).unwrap();
        let mut want = vec![OsString::from("printf")];
        want.extend(
            odd.iter()
                .map(|a| <OsString as std::os::unix::ffi::OsStringExt>::from_vec(a.to_vec())),
        );
        assert_eq!(d.argv, want);
        assert!(d.set.is_empty() && d.remove.is_empty());
    }

    #[test]
    fn environment_edits_go_into_sruns_environment_or_to_the_script() {
        let env = vec![
            EnvEdit::Set("A".into(), "1,2 \n'x'".into()),
            EnvEdit::Set("GONE".into(), "x".into()),
            EnvEdit::Remove("GONE".into()),
            EnvEdit::Set("A".into(), "last".into()),
        ];
        let d = direct(&core("true", &[], env), Path::new("/")).unwrap();
        assert_eq!(d.set, vec![("A".into(), "last".into())]);
        assert_eq!(d.remove, vec![OsString::from("GONE")]);
        for env in [
            vec![EnvEdit::Clear],
            vec![EnvEdit::Set("PATH".into(), "/x".into())],
            vec![EnvEdit::Remove("TMPDIR".into())],
            vec![EnvEdit::Set("SLURM_CPUS_PER_TASK".into(), "4".into())],
            vec![EnvEdit::Set("LD_PRELOAD".into(), "x.so".into())],
            vec![EnvEdit::Set("A=B".into(), "x".into())],
        ] {
            assert_eq!(
                direct(&core("true", &[], env.clone()), Path::new("/")),
                None
            );
        }
    }

    #[test]
    fn a_program_slurmstepd_would_find_in_the_directory_takes_the_script() {
        let dir = std::env::temp_dir();
        let name = format!("procman-launch-{}", std::process::id());
        std::fs::write(dir.join(&name), "").unwrap();
        assert_eq!(direct(&core(&name, &[], vec![]), &dir), None);
        let with_slash = dir.join(&name);
        assert!(direct(&core(with_slash.to_str().unwrap(), &[], vec![]), &dir).is_some());
        std::fs::remove_file(dir.join(&name)).unwrap();
        assert!(direct(&core(&name, &[], vec![]), &dir).is_some());
        assert_eq!(direct(&core("", &[], vec![]), &dir), None);
    }

    #[test]
    fn slurmstepds_execve_line_says_why_and_where() {
        let m = b"srun: launching StepId=12.3 on host vm, 1 tasks: 0\n\
                  slurmstepd-vm: error: execve(): no-such: No such file or directory\n\
                  srun: error: vm: task 0: Exited with exit code 2\n";
        let p = OsStr::new;
        assert_eq!(
            cannot_start(m, p("no-such"), 2),
            Some((Some("vm".into()), "No such file or directory".into()))
        );
        // Not the errno of the exit, not this program, not the first line: the program ran.
        assert_eq!(cannot_start(m, p("no-such"), 127), None);
        assert_eq!(cannot_start(m, p("such"), 2), None);
        assert_eq!(
            cannot_start(&[b"ran\n".as_slice(), m].concat(), p("no-such"), 2),
            None
        );
        assert_eq!(
            cannot_start(
                b"slurmstepd: error: execve(): /a/./b: c: Permission denied\n",
                p("./b: c"),
                13
            ),
            Some((None, "Permission denied".into()))
        );
        assert_eq!(
            cannot_start(b"my: error: execve(): x: y\n", p("x"), 2),
            None
        );
        assert_eq!(cannot_start(b"", p("x"), 2), None);
        assert_eq!(
            unescape_path(OsStr::new("/a/100%%/l%%j")),
            Path::new("/a/100%/l%j")
        );
    }
}
