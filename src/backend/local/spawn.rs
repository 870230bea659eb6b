//! Building a local job's spawn: glibc's `posix_spawn` where it can (a plan made in the parent,
//! no hook in the child), else std's `Command` (with a `pre_exec` hook only when the host needs
//! one); either way the program leads a new process group.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::process::{Child, Command, Stdio};

use super::contain::Scope;
use crate::config::{Config, WaitMode};
use crate::job::JobCore;
use crate::spec::EnvEdit;
use crate::sys;

/// std's spawn: the portable path (other platforms and C libraries, a glibc older than 2.34,
/// a host whose stdio descriptors are closed, `WaitMode::Portable`). A host setting that the
/// child must not inherit needs a `pre_exec` hook here, which makes std fork.
fn build_command(core: &JobCore, close_inherited_fds: bool) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = match &core.interpreter {
        Some(interp) => {
            let mut c = Command::new(interp);
            c.arg(&core.program);
            c
        }
        None => Command::new(&core.program),
    };
    cmd.args(&core.args).process_group(0);
    // Only when the host has a descriptor a child would inherit (DESIGN.md, "Descriptors").
    let close_inherited_fds = close_inherited_fds && sys::host_may_leak_fds();
    // The child inherits this worker's signal mask (the host's, when it created the manager)
    // and std does not reset it: a job with SIGTERM blocked would only die by SIGKILL.
    sys::child_setup(&mut cmd, close_inherited_fds, sys::signals_blocked());
    if let Some(dir) = &core.cwd {
        cmd.current_dir(dir);
    }
    for edit in &core.env {
        match edit {
            EnvEdit::Set(k, v) => {
                cmd.env(k, v);
            }
            EnvEdit::Remove(k) => {
                cmd.env_remove(k);
            }
            EnvEdit::Clear => {
                cmd.env_clear();
            }
        }
    }
    cmd
}

/// The job's spawn for glibc's `posix_spawn`, or `None` when this spawn must take std's path:
/// this glibc lacks a function it needs, or one of the child's stdio descriptors is below 3
/// (the host closed its own stdio; the dup2 file actions could then overwrite one another).
/// Off glibc, always `None` (`sys::posix_spawn_can`).
fn spawn_plan(
    core: &JobCore,
    stdio: [Option<std::os::fd::RawFd>; 3],
    close_inherited_fds: bool,
    marker: Option<&str>,
) -> Option<std::io::Result<sys::SpawnPlan>> {
    if !sys::posix_spawn_can(core.cwd.is_some(), close_inherited_fds)
        || stdio.iter().flatten().any(|&fd| fd < 3)
    {
        return None;
    }
    let plan = || -> std::io::Result<sys::SpawnPlan> {
        let file = core.interpreter.as_ref().unwrap_or(&core.program);
        let argv = argv(core, file.as_bytes())?;
        let (mut envp, lookup) = environment(core, file.as_bytes(), marker.is_some())?;
        if let Some(m) = marker {
            envp.push(cstr(m.as_bytes().to_vec())?);
        }
        Ok(sys::SpawnPlan {
            program: cstr(file.as_bytes().to_vec())?,
            argv,
            envp,
            lookup,
            cwd: match &core.cwd {
                Some(d) => Some(cstr(d.as_os_str().as_bytes().to_vec())?),
                None => None,
            },
            stdio,
            close_from_3: close_inherited_fds,
        })
    };
    Some(plan())
}

/// A C string, or the error std gives for a NUL byte.
fn cstr(bytes: Vec<u8>) -> std::io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    })
}

/// The argument vector: the file run (the interpreter, or the program), then the program when
/// an interpreter runs it, then the arguments.
fn argv(core: &JobCore, file: &[u8]) -> std::io::Result<Vec<CString>> {
    let mut argv = Vec::with_capacity(core.args.len() + 2);
    argv.push(cstr(file.to_vec())?);
    if core.interpreter.is_some() {
        argv.push(cstr(core.program.as_bytes().to_vec())?);
    }
    for a in &core.args {
        argv.push(cstr(a.as_bytes().to_vec())?);
    }
    Ok(argv)
}

/// `NAME=value` as a C string.
fn env_pair(k: OsString, v: &OsStr) -> std::io::Result<CString> {
    let mut kv = k.into_vec();
    kv.reserve_exact(v.len() + 2);
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    cstr(kv)
}

/// The child's environment as std builds it (the host's unless cleared, then the edits in
/// order), and how `file` is found: as it is when it holds a '/', else in the host's PATH, or
/// in the child's when the edits touch PATH (as `execvp` in the child would). `no_marker`:
/// leave out the host's own containment marker (the caller adds the job's).
fn environment(
    core: &JobCore,
    file: &[u8],
    no_marker: bool,
) -> std::io::Result<(sys::Envp, sys::Lookup)> {
    let direct = file.contains(&b'/');
    let keep = |k: &OsStr| !(no_marker && k == sys::subreaper::MARKER_VAR);
    if core.env.is_empty() {
        // The common case: the host's environment as it is, not even copied (as std passes
        // it); without the host's containment marker, one C string per variable.
        let envp = if no_marker && std::env::var_os(sys::subreaper::MARKER_VAR).is_some() {
            let mut envp = Vec::with_capacity(64);
            for (k, v) in std::env::vars_os().filter(|(k, _)| keep(k)) {
                envp.push(env_pair(k, &v)?);
            }
            sys::Envp::Own(envp)
        } else {
            sys::Envp::Host
        };
        let lookup = if direct {
            sys::Lookup::Direct
        } else {
            sys::Lookup::HostPath
        };
        return Ok((envp, lookup));
    }
    let mut env = std::collections::BTreeMap::<OsString, OsString>::new();
    let mut path_changed = false;
    if !core.env.iter().any(|e| matches!(e, EnvEdit::Clear)) {
        env.extend(std::env::vars_os().filter(|(k, _)| keep(k)));
    }
    for edit in &core.env {
        match edit {
            EnvEdit::Set(k, v) => {
                path_changed |= k == "PATH";
                env.insert(k.clone(), v.clone());
            }
            EnvEdit::Remove(k) => {
                path_changed |= k == "PATH";
                env.remove(k);
            }
            EnvEdit::Clear => {
                path_changed = true;
                env.clear();
            }
        }
    }
    let lookup = if direct {
        sys::Lookup::Direct
    } else if path_changed {
        // execvp's search in the child's PATH; without one, glibc's default.
        let path = env
            .get(OsStr::new("PATH"))
            .map_or(sys::DEFAULT_PATH, |p| p.as_bytes());
        let paths = sys::path_candidates(path, file)
            .map(cstr)
            .collect::<std::io::Result<_>>()?;
        sys::Lookup::Candidates(paths)
    } else {
        sys::Lookup::HostPath
    };
    let mut envp = Vec::with_capacity(env.len());
    for (k, v) in env {
        envp.push(env_pair(k, &v)?);
    }
    Ok((sys::Envp::Own(envp), lookup))
}

/// A started child: std's handle (portable path) or a bare pid (`posix_spawn` path, glibc only).
pub(super) enum Spawned {
    Std(Child),
    Pid(u32),
}

impl Spawned {
    pub(super) fn pid(&self) -> u32 {
        match self {
            Spawned::Std(c) => c.id(),
            Spawned::Pid(p) => *p,
        }
    }
}

/// Starts the job's program with its stdio, inside the scope's cgroup from its first
/// instruction and with its marker (`Scope`); the parent's copies of the stdio are dropped
/// when this returns (readers must see EOF when the job's processes close their ends).
pub(super) fn spawn(
    config: &Config,
    core: &JobCore,
    streams: StdioFiles,
    scope: &Scope,
) -> std::io::Result<Spawned> {
    let close = config.close_inherited_fds;
    let marker = scope.marker();
    if config.wait_mode == WaitMode::Pidfd {
        use std::os::fd::AsRawFd;
        let fds = [&streams.0, &streams.1, &streams.2].map(|f| f.as_ref().map(|f| f.as_raw_fd()));
        if let Some(plan) = spawn_plan(core, fds, close, marker.as_deref()) {
            let plan = plan?;
            return sys::spawn_job(&plan, scope.cgroup()).map(Spawned::Pid);
        }
    }
    let null_or = |f: Option<std::fs::File>| f.map_or_else(Stdio::null, Stdio::from);
    let mut cmd = build_command(core, close);
    if let Some((k, v)) = marker.as_deref().and_then(|m| m.split_once('=')) {
        cmd.env(k, v);
    }
    if let Some(cg) = scope.cgroup() {
        sys::cgroup::enter_on_spawn(&mut cmd, cg);
    }
    cmd.stdin(null_or(streams.0))
        .stdout(null_or(streams.1))
        .stderr(null_or(streams.2));
    cmd.spawn().map(Spawned::Std)
}

/// The child's stdin, stdout, stderr (`None`: `/dev/null`).
pub(super) type StdioFiles = (
    Option<std::fs::File>,
    Option<std::fs::File>,
    Option<std::fs::File>,
);

/// Why the spawn failed, naming the program (and the working directory when it is at fault).
pub(super) fn spawn_error_text(core: &JobCore, e: &std::io::Error) -> String {
    let what = core.interpreter.as_ref().unwrap_or(&core.program);
    match &core.cwd {
        Some(dir) if !dir.is_dir() => format!(
            "cannot start {:?}: working directory {} is not usable ({e})",
            what,
            dir.display()
        ),
        _ => format!("cannot start {what:?}: {e}"),
    }
}
