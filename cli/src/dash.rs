//! The live dashboard on a terminal (crossterm): drawn on stderr below the messages, redrawn in
//! place (the lines drawn last are erased first), so messages printed meanwhile scroll up above
//! it and the last picture stays on the screen when the batch ends. What it shows is
//! [`live::render`]'s; this file only draws and reads keys.
//!
//! Keys (when stdin is a terminal not used for input): `q` or Ctrl-C quits, `t` hides or shows
//! the table of running jobs. Reading keys needs the terminal's raw mode (no echo, no line
//! editing, no SIGINT from Ctrl-C: the key is read and handled as SIGINT is); it is restored
//! when the dashboard is dropped (also on a panic's unwinding).

use std::io::{self, Write};
use std::thread;

use crossbeam_channel::Sender;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, queue, terminal};

use crate::live::{self, LiveState};

/// A key that means something to the dashboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// `q` or Ctrl-C: stop, as SIGINT does.
    Quit,
    /// `t`: hide or show the table.
    ToggleTable,
}

/// Where the key thread sends keys, and how it makes them messages.
pub type KeySink<T> = (Sender<T>, fn(Key) -> T);

/// The dashboard's drawing state.
pub struct Dash {
    /// Lines drawn last (erased before the next picture or a message).
    lines: usize,
    table: bool,
    raw: bool,
}

impl Dash {
    /// A dashboard on stderr; with `keys`, raw mode and a thread that sends the keys to it
    /// (`wrap` makes them messages). Without a terminal for keys it only draws.
    pub fn start<T: Send + 'static>(keys: Option<KeySink<T>>) -> Dash {
        let mut raw = false;
        if let Some((tx, wrap)) = keys {
            raw = terminal::enable_raw_mode().is_ok();
            if raw {
                let spawned = thread::Builder::new()
                    .name("procman-keys".into())
                    .spawn(move || read_keys(tx, wrap));
                if spawned.is_err() {
                    let _ = terminal::disable_raw_mode();
                    raw = false;
                }
            }
        }
        Dash {
            lines: 0,
            table: true,
            raw,
        }
    }

    pub fn toggle_table(&mut self) {
        self.table = !self.table;
    }

    /// Erases what was drawn last.
    fn erase(&mut self, err: &mut impl Write) {
        if self.lines > 0 {
            let _ = queue!(err, cursor::MoveToColumn(0));
            if self.lines > 1 {
                let _ = queue!(err, cursor::MoveUp((self.lines - 1) as u16));
            }
            let _ = queue!(err, terminal::Clear(terminal::ClearType::FromCursorDown));
            self.lines = 0;
        }
    }

    /// Draws the state in place of the last picture.
    pub fn draw(&mut self, s: &LiveState) {
        let (cols, rows) = terminal::size().unwrap_or((80, 24));
        // One column and one row spare: a full line would wrap, and the cursor must stay on
        // the picture's last line for the next erase.
        let lines = live::render(
            s,
            usize::from(cols).saturating_sub(1),
            usize::from(rows).saturating_sub(1),
            self.table,
        );
        let mut err = io::stderr().lock();
        self.erase(&mut err);
        let _ = write!(err, "{}", lines.join("\r\n"));
        let _ = err.flush();
        self.lines = lines.len();
    }

    /// A message above the picture (the next draw puts the picture back).
    pub fn say(&mut self, text: &str) {
        let mut err = io::stderr().lock();
        self.erase(&mut err);
        let _ = write!(err, "procman: {text}\r\n");
        let _ = err.flush();
    }

    /// Ends the dashboard: the last picture stays, the cursor goes below it, raw mode ends.
    pub fn end(&mut self) {
        if self.lines > 0 {
            let _ = write!(io::stderr().lock(), "\r\n");
            self.lines = 0;
        }
        if self.raw {
            let _ = terminal::disable_raw_mode();
            self.raw = false;
        }
    }
}

impl Drop for Dash {
    fn drop(&mut self) {
        self.end();
    }
}

/// The key thread: blocks reading terminal events, sends the keys that mean something. Lives
/// until the process exits or the receiver is gone.
fn read_keys<T>(tx: Sender<T>, wrap: fn(Key) -> T) {
    while let Ok(ev) = event::read() {
        let Event::Key(k) = ev else { continue };
        if k.kind != KeyEventKind::Press {
            continue;
        }
        let key = match k.code {
            KeyCode::Char('q') | KeyCode::Char('Q') => Key::Quit,
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
            KeyCode::Char('t') | KeyCode::Char('T') => Key::ToggleTable,
            _ => continue,
        };
        if tx.send(wrap(key)).is_err() {
            return;
        }
    }
}
