//! The checks made when a job is submitted, before the scheduler sees it.

use crate::error::StartError;
use crate::spec::{same_path, EnvEdit, ErrorOutput, Input, JobSpec};

/// Checks what can be checked without the file system (but for one `stat` when an input path
/// is an output path).
pub(super) fn validate(spec: &JobSpec) -> Result<(), StartError> {
    use std::os::unix::ffi::OsStrExt;
    if spec.program.is_empty() {
        return Err(StartError::EmptyProgram);
    }
    // The name is built only for an error: no allocation per argument on the way in.
    let nul = |what: &dyn Fn() -> String, s: &std::ffi::OsStr| {
        if s.as_bytes().contains(&0) {
            Err(StartError::NulByte(what()))
        } else {
            Ok(())
        }
    };
    nul(&|| "the program".into(), &spec.program)?;
    if let Some(i) = &spec.interpreter {
        nul(&|| "the interpreter".into(), i)?;
    }
    for (n, a) in spec.args.iter().enumerate() {
        nul(&|| format!("argument {}", n + 1), a)?;
    }
    for (what, p) in [
        ("the log file path", spec.log_file.as_deref()),
        ("the working directory", spec.cwd.as_deref()),
    ] {
        if let Some(p) = p {
            nul(&|| what.into(), p.as_os_str())?;
        }
    }
    if let Input::File(p) = &spec.input {
        nul(&|| "the input file path".into(), p.as_os_str())?;
    }
    if let ErrorOutput::File(p) = &spec.error_output {
        nul(&|| "the error file path".into(), p.as_os_str())?;
    }
    if let Input::File(input) = &spec.input {
        let outputs = [
            ("log file", spec.log_file.clone()),
            ("error file", spec.resolved_error_file()),
        ];
        // Only a regular file can be destroyed by writing it: `/dev/null` or a terminal may
        // be both (one `stat`, only when the paths are equal).
        let regular = || std::fs::metadata(input).map_or(true, |m| m.is_file());
        for (output, p) in outputs {
            if p.is_some_and(|p| same_path(&p, input)) && regular() {
                return Err(StartError::InputIsOutput {
                    path: input.clone(),
                    output,
                });
            }
        }
    }
    for edit in &spec.env {
        let (k, v) = match edit {
            EnvEdit::Set(k, v) => (k, Some(v)),
            EnvEdit::Remove(k) => (k, None),
            EnvEdit::Clear => continue,
        };
        if k.is_empty() || k.as_bytes().contains(&b'=') {
            return Err(StartError::BadEnvName(k.to_string_lossy().into_owned()));
        }
        nul(
            &|| format!("environment variable {}", k.to_string_lossy()),
            k,
        )?;
        if let Some(v) = v {
            nul(&|| format!("the value of {}", k.to_string_lossy()), v)?;
        }
    }
    Ok(())
}
