//! `procman status --follow --joblog FILE`: the live view of a batch running elsewhere, read
//! from the state it publishes beside its joblog (`FILE.live.json`, see `live.rs`), redrawn
//! every 250 ms until the batch ends (the file goes away, or the process that wrote it is
//! gone) or `q` is pressed (which stops following only: the batch goes on). On a terminal it is
//! the batch's own dashboard; otherwise one progress line each time the counts change.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;

use crate::dash::{Dash, Key};
use crate::live::{self, LiveState};

/// How often the published state is read.
const POLL: Duration = Duration::from_millis(250);
/// How long to wait for a batch that has not published yet (one just starting).
const FIRST_WAIT: Duration = Duration::from_secs(2);

/// Follows until the batch ends or `q`; messages say why it stopped. Never fails: a state that
/// cannot be read is reported and following stops.
pub fn follow(joblog: &Path) {
    let path = live::live_path(joblog);
    let (tx, rx) = unbounded();
    let mut dash: Option<Dash> = None;
    let mut last_counts = None;
    let began = Instant::now();
    let mut seen = false;
    let why = loop {
        match live::read(&path) {
            Ok(Some(state)) => {
                seen = true;
                if !alive(state.pid) {
                    break format!(
                        "the batch (pid {}) is gone; {} is left from it",
                        state.pid,
                        path.display()
                    );
                }
                show(&state, &mut dash, &mut last_counts, &tx);
            }
            Ok(None) if seen => break "the batch has ended".into(),
            Ok(None) if began.elapsed() >= FIRST_WAIT => {
                break format!(
                    "no batch is running with this joblog ({} does not exist)",
                    path.display()
                )
            }
            Ok(None) => {}
            // A state being replaced is never half-written (rename), so this is a real error.
            Err(e) => break format!("cannot read {}: {e}", path.display()),
        }
        match rx.recv_timeout(POLL) {
            Ok(Key::Quit) => break "stopped following; the batch goes on".into(),
            Ok(Key::ToggleTable) => {
                if let Some(d) = dash.as_mut() {
                    d.toggle_table();
                }
            }
            Err(_) => {}
        }
    };
    if let Some(mut d) = dash {
        d.end();
    }
    let _ = writeln!(io::stderr(), "procman: {why}");
}

/// Draws the state: the dashboard on a terminal (started at the first state), else the
/// progress line when the counts changed.
fn show(
    state: &LiveState,
    dash: &mut Option<Dash>,
    last: &mut Option<(u64, u64, u64)>,
    tx: &crossbeam_channel::Sender<Key>,
) {
    if io::stderr().is_terminal() {
        let d = dash.get_or_insert_with(|| {
            let keys = io::stdin()
                .is_terminal()
                .then(|| (tx.clone(), (|k| k) as fn(Key) -> Key));
            Dash::start(keys)
        });
        d.draw(state);
        return;
    }
    let counts = (state.done, state.running, state.total);
    if *last != Some(counts) {
        *last = Some(counts);
        let line = live::render(state, 200, 1, false).remove(0);
        let _ = writeln!(io::stderr(), "procman: {line}");
    }
}

/// Whether process `pid` exists (signal 0 checks without sending).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks; no memory is involved.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
