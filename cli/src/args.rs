//! A small hand-written argument reader: `--name value`, `--name=value`, `-j N`, `-jN`, flags,
//! and `--` to end the options. No crate: the tool has three verbs and a dozen options.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use procman_cli::parse_duration;

/// A usage error: the message names the option and what was wrong.
#[derive(Debug)]
pub struct UsageError(pub String);

/// What [`UsageError::help`] holds: not an error, `-h`/`--help` was asked for.
const HELP: &str = "\0help";

impl UsageError {
    /// `-h` or `--help`: the verb prints its help on stdout and exits 0.
    pub fn help() -> UsageError {
        UsageError(HELP.into())
    }

    pub fn is_help(&self) -> bool {
        self.0 == HELP
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One thing read from the command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Arg {
    /// An option's name as written without dashes' value attached (`jobs`, `j`, `timeout`).
    Opt(String),
    /// A word that is not an option (or anything after `--`).
    Word(OsString),
    /// `--` was seen; everything after it is a word.
    EndOfOptions,
}

/// Reads options one at a time; the caller asks for an option's value when the option takes one.
pub struct Args {
    items: std::vec::IntoIter<OsString>,
    /// A value attached to the last option (`--name=value` or `-jN`).
    attached: Option<OsString>,
    /// The last option read, for messages.
    last: String,
    ended: bool,
}

impl Args {
    pub fn new(items: Vec<OsString>) -> Args {
        Args {
            items: items.into_iter(),
            attached: None,
            last: String::new(),
            ended: false,
        }
    }

    /// The next option or word; `None` at the end.
    pub fn next(&mut self) -> Result<Option<Arg>, UsageError> {
        if let Some(v) = self.attached.take() {
            return Err(UsageError(format!(
                "option {} takes no value (got {:?})",
                self.last,
                v.to_string_lossy()
            )));
        }
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        if self.ended {
            return Ok(Some(Arg::Word(item)));
        }
        let Some(s) = item.to_str() else {
            return Ok(Some(Arg::Word(item)));
        };
        if s == "--" {
            self.ended = true;
            return Ok(Some(Arg::EndOfOptions));
        }
        if let Some(long) = s.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((n, v)) => (n, Some(OsString::from(v))),
                None => (long, None),
            };
            self.last = format!("--{name}");
            self.attached = value;
            return Ok(Some(Arg::Opt(name.to_owned())));
        }
        if s.len() > 1 && s.starts_with('-') && s != "-" {
            let mut chars = s[1..].chars();
            let c = chars.next().expect("checked non-empty");
            let rest = chars.as_str();
            self.last = format!("-{c}");
            self.attached = (!rest.is_empty()).then(|| OsString::from(rest));
            return Ok(Some(Arg::Opt(c.to_string())));
        }
        Ok(Some(Arg::Word(item)))
    }

    /// The value of the option just read.
    pub fn value(&mut self) -> Result<OsString, UsageError> {
        if let Some(v) = self.attached.take() {
            return Ok(v);
        }
        self.items
            .next()
            .ok_or_else(|| UsageError(format!("option {} needs a value", self.last)))
    }

    /// The next item, unread, if it is a word that `accept` takes as this option's value (for an
    /// optional value written after a space, like `--halt now`); it is then consumed.
    pub fn optional_value(&mut self, accept: impl Fn(&str) -> bool) -> Option<OsString> {
        if let Some(v) = self.attached.take() {
            return Some(v);
        }
        let next = self.items.as_slice().first()?;
        if !next.to_str().is_some_and(accept) {
            return None;
        }
        self.items.next()
    }

    pub fn string(&mut self) -> Result<String, UsageError> {
        let v = self.value()?;
        v.into_string()
            .map_err(|v| UsageError(format!("option {}: {v:?} is not UTF-8", self.last)))
    }

    pub fn path(&mut self) -> Result<PathBuf, UsageError> {
        let v = self.value()?;
        if v.is_empty() {
            return Err(UsageError(format!(
                "option {} needs a non-empty path",
                self.last
            )));
        }
        Ok(PathBuf::from(v))
    }

    pub fn duration(&mut self) -> Result<Duration, UsageError> {
        let v = self.string()?;
        parse_duration(&v).map_err(|e| UsageError(format!("option {}: {e}", self.last)))
    }

    pub fn number<T: std::str::FromStr>(&mut self) -> Result<T, UsageError> {
        let v = self.string()?;
        v.trim()
            .parse()
            .map_err(|_| UsageError(format!("option {}: {v:?} is not a valid number", self.last)))
    }

    /// The remaining items, unread (after `--` or the first word of `run`'s command).
    pub fn rest(&mut self) -> Vec<OsString> {
        self.items.by_ref().collect()
    }

    /// An error for an option the verb does not know.
    pub fn unknown(&self, verb: &str) -> UsageError {
        UsageError(format!(
            "{verb}: unknown option {} (see procman --help)",
            self.last
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::new(v.iter().map(OsString::from).collect())
    }

    #[test]
    fn long_short_attached_and_separate_values() {
        let mut a = args(&[
            "-j4",
            "--timeout=2s",
            "--log-dir",
            "d",
            "-j",
            "2",
            "f",
            "--",
            "-x",
        ]);
        assert_eq!(a.next().unwrap(), Some(Arg::Opt("j".into())));
        assert_eq!(a.number::<usize>().unwrap(), 4);
        assert_eq!(a.next().unwrap(), Some(Arg::Opt("timeout".into())));
        assert_eq!(a.duration().unwrap(), Duration::from_secs(2));
        assert_eq!(a.next().unwrap(), Some(Arg::Opt("log-dir".into())));
        assert_eq!(a.path().unwrap(), PathBuf::from("d"));
        assert_eq!(a.next().unwrap(), Some(Arg::Opt("j".into())));
        assert_eq!(a.number::<usize>().unwrap(), 2);
        assert_eq!(a.next().unwrap(), Some(Arg::Word("f".into())));
        assert_eq!(a.next().unwrap(), Some(Arg::EndOfOptions));
        assert_eq!(a.next().unwrap(), Some(Arg::Word("-x".into())));
        assert_eq!(a.next().unwrap(), None);
    }

    #[test]
    fn a_flag_with_a_value_and_a_missing_value_are_errors() {
        let mut a = args(&["--resume=yes"]);
        a.next().unwrap();
        assert!(a.next().unwrap_err().0.contains("--resume takes no value"));
        let mut a = args(&["--timeout"]);
        a.next().unwrap();
        assert!(a
            .duration()
            .unwrap_err()
            .0
            .contains("--timeout needs a value"));
        let mut a = args(&["--timeout", "soon"]);
        a.next().unwrap();
        assert!(a.duration().is_err());
    }

    #[test]
    fn a_lone_dash_is_a_word() {
        let mut a = args(&["-"]);
        assert_eq!(a.next().unwrap(), Some(Arg::Word("-".into())));
    }
}
