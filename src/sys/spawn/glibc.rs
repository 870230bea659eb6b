//! glibc's `posix_spawn` with the file actions procman needs, looked up at run time.

use std::io;

use super::{path_candidates, Lookup, SpawnPlan, DEFAULT_PATH};

type AddClosefrom =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, libc::c_int) -> libc::c_int;
type AddChdir =
    unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const libc::c_char) -> libc::c_int;

/// The glibc extensions the path needs, when this glibc has them.
struct SpawnFns {
    /// glibc 2.34+.
    closefrom: Option<AddClosefrom>,
    /// glibc 2.29+.
    chdir: Option<AddChdir>,
}

/// Looked up once, at run time (a dynamically linked program must still load where glibc is
/// older than 2.34; it then takes std's path); a static build links them from its own glibc.
fn spawn_fns() -> &'static SpawnFns {
    static FNS: std::sync::OnceLock<SpawnFns> = std::sync::OnceLock::new();
    FNS.get_or_init(|| {
        #[cfg(target_feature = "crt-static")]
        {
            SpawnFns {
                closefrom: Some(libc::posix_spawn_file_actions_addclosefrom_np as AddClosefrom),
                chdir: Some(libc::posix_spawn_file_actions_addchdir_np as AddChdir),
            }
        }
        #[cfg(not(target_feature = "crt-static"))]
        {
            // SAFETY: dlsym with RTLD_DEFAULT (null) and a NUL-terminated name only looks up;
            // a non-null answer is the glibc function of that name, whose C signature the
            // types above spell.
            unsafe {
                let closefrom = libc::dlsym(
                    std::ptr::null_mut(),
                    c"posix_spawn_file_actions_addclosefrom_np".as_ptr(),
                );
                let chdir = libc::dlsym(
                    std::ptr::null_mut(),
                    c"posix_spawn_file_actions_addchdir_np".as_ptr(),
                );
                SpawnFns {
                    closefrom: (!closefrom.is_null())
                        .then(|| std::mem::transmute::<*mut libc::c_void, AddClosefrom>(closefrom)),
                    chdir: (!chdir.is_null())
                        .then(|| std::mem::transmute::<*mut libc::c_void, AddChdir>(chdir)),
                }
            }
        }
    })
}

/// Whether [`posix_spawn`] can do a spawn that needs a working directory (`chdir`) and closing
/// the inherited descriptors (`closefrom`) with this glibc.
pub(crate) fn posix_spawn_can(chdir: bool, closefrom: bool) -> bool {
    let f = spawn_fns();
    (!chdir || f.chdir.is_some()) && (!closefrom || f.closefrom.is_some())
}

fn check_spawn(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// Owns initialised file actions; destroys them when dropped. Never moved after `init`.
struct FileActions(libc::posix_spawn_file_actions_t);

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: only built by `posix_spawn` after a successful init.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

/// Owns initialised spawn attributes; destroys them when dropped.
struct SpawnAttr(libc::posix_spawnattr_t);

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: only built by `posix_spawn` after a successful init.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// Starts `plan` with glibc's `posix_spawn`: the child leads a new process group, has an empty
/// signal mask, SIGPIPE and SIGXFSZ at their default action (runtimes such as Rust's and
/// Python's ignore them for themselves; other dispositions are inherited as with std), its
/// stdio as planned, and (when asked) no other descriptor. The caller has checked
/// [`posix_spawn_can`]; without the functions it needs this fails with `ENOSYS`. Returns the
/// child's pid; the errors are the kernel's for the `chdir` or `exec` that failed, as std's.
pub(crate) fn posix_spawn(plan: &SpawnPlan) -> io::Result<u32> {
    let argv = c_ptrs(&plan.argv);
    let envp = plan.envp.pointers();
    // SAFETY: all-zero structures are what the init functions take; each is initialised
    // before use, stays where it is, and is destroyed once (Drop).
    let mut fa = FileActions(unsafe { std::mem::zeroed() });
    add_file_actions(&mut fa, plan)?;
    let mut attr = SpawnAttr(unsafe { std::mem::zeroed() });
    set_attributes(&mut attr)?;
    let spawner = Spawner {
        fa: &fa,
        attr: &attr,
        envp: &envp,
        plan,
    };
    let pid = match &plan.lookup {
        Lookup::Direct => spawner.spawn_at(&plan.program, false, &argv)?,
        Lookup::HostPath => spawner.spawn_at(&plan.program, true, &argv)?,
        Lookup::Candidates(paths) => spawner.first_of(paths, &argv)?,
    };
    Ok(pid as u32)
}

/// A NULL-terminated array of pointers to `v`'s strings, valid while `v` is.
fn c_ptrs(v: &[std::ffi::CString]) -> Vec<*mut libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr() as *mut libc::c_char)
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// Initialises `fa` with the plan's working directory, stdio and (when asked) the closing of
/// every other descriptor.
fn add_file_actions(fa: &mut FileActions, plan: &SpawnPlan) -> io::Result<()> {
    let fns = spawn_fns();
    let nosys = || io::Error::from_raw_os_error(libc::ENOSYS);
    // SAFETY: `fa` is initialised first; every pointer passed (the plan's C strings, the
    // literal path) outlives the calls, which copy what they need.
    unsafe {
        check_spawn(libc::posix_spawn_file_actions_init(&mut fa.0))?;
        if let Some(dir) = &plan.cwd {
            let chdir = fns.chdir.ok_or_else(nosys)?;
            check_spawn(chdir(&mut fa.0, dir.as_ptr()))?;
        }
        for (target, fd) in plan.stdio.iter().enumerate() {
            let target = target as libc::c_int;
            match fd {
                Some(fd) => check_spawn(libc::posix_spawn_file_actions_adddup2(
                    &mut fa.0, *fd, target,
                ))?,
                None => check_spawn(libc::posix_spawn_file_actions_addopen(
                    &mut fa.0,
                    target,
                    c"/dev/null".as_ptr(),
                    if target == 0 {
                        libc::O_RDONLY
                    } else {
                        libc::O_WRONLY
                    },
                    0,
                ))?,
            }
        }
        if plan.close_from_3 {
            let closefrom = fns.closefrom.ok_or_else(nosys)?;
            check_spawn(closefrom(&mut fa.0, 3))?;
        }
    }
    Ok(())
}

/// Initialises `attr`: a new process group, an empty signal mask, SIGPIPE and SIGXFSZ at their
/// default action.
fn set_attributes(attr: &mut SpawnAttr) -> io::Result<()> {
    // SAFETY: `attr` is initialised first; the signal set is a local, initialised by
    // sigemptyset before use.
    unsafe {
        check_spawn(libc::posix_spawnattr_init(&mut attr.0))?;
        let flags = libc::POSIX_SPAWN_SETPGROUP
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF;
        check_spawn(libc::posix_spawnattr_setflags(&mut attr.0, flags as _))?;
        check_spawn(libc::posix_spawnattr_setpgroup(&mut attr.0, 0))?;
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        check_spawn(libc::posix_spawnattr_setsigmask(&mut attr.0, &set))?;
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::sigaddset(&mut set, libc::SIGXFSZ);
        check_spawn(libc::posix_spawnattr_setsigdefault(&mut attr.0, &set))?;
    }
    Ok(())
}

/// What every try of one spawn shares: the initialised file actions and attributes, the
/// environment, the plan.
struct Spawner<'a> {
    fa: &'a FileActions,
    attr: &'a SpawnAttr,
    envp: &'a [*const libc::c_char],
    plan: &'a SpawnPlan,
}

impl Spawner<'_> {
    /// One `posix_spawn` (or `posix_spawnp`, `search`) of `path` with `argv`: the child's pid.
    fn spawn_with(
        &self,
        path: &std::ffi::CStr,
        search: bool,
        argv: &[*mut libc::c_char],
    ) -> io::Result<libc::pid_t> {
        let f = if search {
            libc::posix_spawnp
        } else {
            libc::posix_spawn
        };
        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer points to initialised memory that outlives the call (the
        // path, the NULL-terminated argument and environment arrays and their strings, the
        // initialised file actions and attributes).
        check_spawn(unsafe {
            f(
                &mut pid,
                path.as_ptr(),
                &self.fa.0,
                &self.attr.0,
                argv.as_ptr(),
                self.envp.as_ptr() as *const *mut libc::c_char,
            )
        })?;
        Ok(pid)
    }

    /// [`Spawner::spawn_with`], and as execvp (and std's fork path): a file the kernel will not
    /// execute (ENOEXEC: a script without a `#!` line) runs as `/bin/sh FILE ARGS...`. glibc's
    /// posix_spawn no longer does this itself.
    fn spawn_at(
        &self,
        path: &std::ffi::CStr,
        search: bool,
        argv: &[*mut libc::c_char],
    ) -> io::Result<libc::pid_t> {
        match self.spawn_with(path, search, argv) {
            Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
                let found = if search {
                    search_host_path(path)
                } else {
                    Some(path.to_owned())
                };
                let Some(found) = found else { return Err(e) };
                let sh: Vec<*mut libc::c_char> = [c"/bin/sh".as_ptr(), found.as_ptr()]
                    .into_iter()
                    .chain(self.plan.argv.iter().skip(1).map(|a| a.as_ptr()))
                    .map(|p| p as *mut libc::c_char)
                    .chain(std::iter::once(std::ptr::null_mut()))
                    .collect();
                self.spawn_with(c"/bin/sh", false, &sh)
            }
            r => r,
        }
    }

    /// As execvp: tries `paths` in turn. A name not found, or not a directory on the way, goes
    /// on to the next entry; EACCES too, but it is what is reported when nothing ran.
    fn first_of(
        &self,
        paths: &[std::ffi::CString],
        argv: &[*mut libc::c_char],
    ) -> io::Result<libc::pid_t> {
        let mut denied = false;
        for path in paths {
            match self.spawn_at(path, false, argv) {
                Ok(pid) => return Ok(pid),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EACCES) => denied = true,
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV) => {}
                    _ => return Err(e),
                },
            }
        }
        Err(io::Error::from_raw_os_error(if denied {
            libc::EACCES
        } else {
            libc::ENOENT
        }))
    }
}

/// The first executable regular file named `name` in this process's PATH (glibc's default
/// when there is none), as `posix_spawnp` found it: only for the rare ENOEXEC retry.
fn search_host_path(name: &std::ffi::CStr) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let host = std::env::var_os("PATH");
    let path = host.as_ref().map_or(DEFAULT_PATH, |p| p.as_bytes());
    let found = path_candidates(path, name.to_bytes()).find(|full| {
        std::fs::metadata(std::ffi::OsStr::from_bytes(full))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    found.and_then(|full| std::ffi::CString::new(full).ok())
}
