//! The batch script: `exec` of the job's command line, every word shell-quoted, through `env`
//! when the job edits its environment.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::job::JobCore;
use crate::spec::EnvEdit;

/// The name of the shell variable that holds a carriage return in the batch script.
const CR_VAR: &[u8] = b"procman_cr";

/// Quotes one word for `/bin/sh`: single quotes, with `'` as `'\''`. A carriage return is
/// written as `"$procman_cr"` (set by the script), because sbatch refuses scripts that contain
/// a DOS line break. Any other byte (but NUL, which a word cannot hold) stands for itself.
pub(super) fn shell_quote(word: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(word.len() + 2);
    out.push(b'\'');
    for &b in word {
        match b {
            b'\'' => out.extend_from_slice(b"'\\''"),
            b'\r' => {
                out.extend_from_slice(b"'\"$");
                out.extend_from_slice(CR_VAR);
                out.extend_from_slice(b"\"'");
            }
            _ => out.push(b),
        }
    }
    out.push(b'\'');
    out
}

/// The batch script: `exec` of the job's command line, through `env` when the job edits its
/// environment. Slurm starts it in `--chdir` with the submitting process's environment.
#[cfg(test)]
pub(super) fn batch_script(core: &JobCore) -> Vec<u8> {
    batch_script_marking(core, None)
}

/// [`batch_script`], which first checks that the program can be found on the node when the job
/// leaves the environment (and so `PATH`) as it is: if not, it writes the node's name to
/// `missing` and exits 127, so that procman tells a program missing on the node from one that
/// failed (`poller.rs`).
pub(super) fn batch_script_marking(core: &JobCore, missing: Option<&std::path::Path>) -> Vec<u8> {
    let mut words: Vec<Vec<u8>> = Vec::new();
    let mut command: Vec<&OsStr> = Vec::new();
    if let Some(i) = &core.interpreter {
        command.push(i);
    }
    command.push(&core.program);
    command.extend(core.args.iter().map(OsString::as_os_str));

    // The environment edits, in order, reduced to: start empty or not, unset these, set these.
    let mut clear = false;
    let mut edits: Vec<(&OsStr, Option<&OsStr>)> = Vec::new();
    for edit in &core.env {
        match edit {
            EnvEdit::Clear => {
                clear = true;
                edits.clear();
            }
            EnvEdit::Set(k, v) => {
                edits.retain(|(name, _)| name != k);
                edits.push((k, Some(v)));
            }
            EnvEdit::Remove(k) => {
                edits.retain(|(name, _)| name != k);
                if !clear {
                    edits.push((k, None));
                }
            }
        }
    }
    let first = command[0].as_bytes();
    let use_env = clear || !edits.is_empty() || first.starts_with(b"-");
    if use_env {
        words.push(b"/usr/bin/env".to_vec());
        if clear {
            words.push(b"-i".to_vec());
        }
        for (k, v) in &edits {
            if v.is_none() {
                words.push(b"-u".to_vec());
                words.push(k.as_bytes().to_vec());
            }
        }
        words.push(b"--".to_vec());
        for (k, v) in &edits {
            if let Some(v) = v {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                words.push(kv);
            }
        }
        if first.contains(&b'=') {
            // env would take it for an assignment: let a shell run it.
            words.push(b"/bin/sh".to_vec());
            words.push(b"-c".to_vec());
            words.push(b"exec \"$0\" \"$@\"".to_vec());
        }
    }
    words.extend(command.iter().map(|w| w.as_bytes().to_vec()));

    let mut script = format!(
        "#!/bin/sh\n# procman job {}: the program replaces this shell\n",
        core.id
    )
    .into_bytes();
    if words.iter().any(|w| w.contains(&b'\r')) {
        script.extend_from_slice(CR_VAR);
        script.extend_from_slice(b"=$(printf '\\015')\n");
    }
    if let (Some(marker), false) = (missing, use_env) {
        let prog = shell_quote(command[0].as_bytes());
        script.extend_from_slice(b"command -v -- ");
        script.extend_from_slice(&prog);
        script.extend_from_slice(b" >/dev/null 2>&1 || { hostname >");
        script.extend_from_slice(&shell_quote(marker.as_os_str().as_bytes()));
        script.extend_from_slice(b" 2>/dev/null; echo \"procman: \"");
        script.extend_from_slice(&prog);
        script.extend_from_slice(b"\": not found on $(hostname)\" >&2; exit 127; }\n");
    }
    script.extend_from_slice(b"exec");
    for w in &words {
        script.push(b' ');
        script.extend_from_slice(&shell_quote(w));
    }
    script.push(b'\n');
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::slurm::test_core as core;
    use proptest::prelude::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Runs a batch script with /bin/sh (no Slurm) and returns its standard output.
    fn run_script(script: &[u8]) -> Vec<u8> {
        let mut child = Command::new("/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/bin/sh runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script)
            .expect("the script is written");
        let out = child.wait_with_output().unwrap();
        // (printf with no argument after the format still prints it once: tests pass one.)
        assert!(out.status.success(), "script failed: {out:?}");
        out.stdout
    }

    /// argv as the program sees it: printf prints each argument followed by a NUL.
    fn argv_of(script: &[u8]) -> Vec<Vec<u8>> {
        run_script(script)
            .split(|&b| b == 0)
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, rest)| rest.to_vec())
            .unwrap_or_default()
    }

    fn printf_core(args: &[&[u8]]) -> JobCore {
        let mut all: Vec<&[u8]> = vec![b"%s\\0"];
        all.extend_from_slice(args);
        core("printf", &all, vec![])
    }

    #[test]
    fn odd_bytes_reach_the_program_unchanged() {
        let odd: Vec<&[u8]> = vec![
            b"",
            b" ",
            b"'",
            b"''\\''",
            b"\"$HOME\" `id` $(id) ${x:-y} \\ \\n",
            b"a\nb\r\nc\rd",
            b"\xff\xfe non-UTF-8 \x80",
            b"*?[a] ~ # ; & | < > ( ) { }",
            b"-n",
            b"#SBATCH --mem=1",
            b"\x01\x1b[31m\x7f",
        ];
        let script = batch_script(&printf_core(&odd));
        assert!(
            !script.windows(2).any(|w| w == b"\r\n"),
            "no DOS line break"
        );
        let got = argv_of(&script);
        let want: Vec<Vec<u8>> = odd.iter().map(|a| a.to_vec()).collect();
        assert_eq!(got, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn any_bytes_but_nul_survive_quoting(
            args in proptest::collection::vec(
                proptest::collection::vec(1u8..=255, 0..24), 1..4)
        ) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let script = batch_script(&printf_core(&refs));
            prop_assert!(!script.windows(2).any(|w| w == b"\r\n"));
            prop_assert_eq!(argv_of(&script), args);
        }
    }

    #[test]
    fn environment_edits_apply_in_order() {
        let env = vec![
            EnvEdit::Set("A".into(), "1 '2'".into()),
            EnvEdit::Set("GONE".into(), "x".into()),
            EnvEdit::Remove("GONE".into()),
            EnvEdit::Remove("HOME".into()),
        ];
        let c = core(
            "sh",
            &[
                b"-c",
                b"printf '%s|%s|%s' \"$A\" \"${GONE-unset}\" \"${HOME-unset}\"",
            ],
            env,
        );
        assert_eq!(run_script(&batch_script(&c)), b"1 '2'|unset|unset");
        let env = vec![
            EnvEdit::Set("LOST".into(), "x".into()),
            EnvEdit::Clear,
            EnvEdit::Set("ONLY".into(), "y".into()),
        ];
        let c = core("/usr/bin/env", &[], env);
        assert_eq!(run_script(&batch_script(&c)), b"ONLY=y\n");
    }

    #[test]
    fn a_program_name_with_an_equals_sign_still_runs() {
        let dir = std::env::temp_dir().join(format!("procman-slurm-eq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prog = dir.join("a=b");
        std::fs::write(&prog, "#!/bin/sh\necho \"ran $X\"\n").unwrap();
        std::fs::set_permissions(&prog, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let c = core(
            prog.to_str().unwrap(),
            &[],
            vec![EnvEdit::Set("X".into(), "yes".into())],
        );
        assert_eq!(run_script(&batch_script(&c)), b"ran yes\n");
        std::fs::remove_dir_all(&dir).ok();
    }
}
