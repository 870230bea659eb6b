//! SIGINT, SIGTERM and SIGHUP, taken by a dedicated `sigwait` thread.
//!
//! [`block`] runs first thing in `main`, before any thread exists, so every thread (the
//! manager's included) inherits the blocked mask and the signals stay pending until the
//! `sigwait` thread takes them: no handler runs, nothing async-signal-unsafe can happen.
//! Jobs do not inherit the mask: std resets the signal mask in the child before `exec`.

use std::thread;

use crossbeam_channel::Sender;

/// The signals the tool handles.
const HANDLED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The set of handled signals, blocked in the calling thread (and the threads it creates).
#[derive(Clone, Copy)]
pub struct Blocked(libc::sigset_t);

/// Blocks the handled signals. Call before creating any thread.
pub fn block() -> Blocked {
    // SAFETY: sigemptyset/sigaddset/pthread_sigmask on a local, initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in HANDLED {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        Blocked(set)
    }
}

/// Starts the thread that waits for the blocked signals and sends each one's number to `tx`
/// (converted by `wrap`). The thread lives until the process exits.
pub fn forward<T: Send + 'static>(blocked: Blocked, tx: Sender<T>, wrap: fn(i32) -> T) {
    let spawned = thread::Builder::new()
        .name("procman-signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: the set is initialised and `sig` is writable.
            let r = unsafe { libc::sigwait(&blocked.0, &mut sig) };
            if r == 0 && tx.send(wrap(sig)).is_err() {
                return;
            }
        });
    if let Err(e) = spawned {
        // Without the thread the signals stay blocked: say so, the tool still works.
        eprintln!("procman: cannot start the signal thread ({e}); SIGINT/SIGTERM are ignored");
    }
}
