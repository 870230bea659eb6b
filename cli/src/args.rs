//! Checks of option values that clap hands over as text, worded as the tool always worded them
//! (`option --timeout: ...`), so messages and exit statuses stay what users and tests know.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use procman_cli::parse_duration;

/// A usage error: the message names the option and what was wrong.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A duration option's value (`opt` as written, `--timeout`).
pub fn duration(opt: &str, v: &str) -> Result<Duration, UsageError> {
    parse_duration(v).map_err(|e| UsageError(format!("option {opt}: {e}")))
}

/// A number option's value (surrounding blanks allowed).
pub fn number<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T, UsageError> {
    v.trim()
        .parse()
        .map_err(|_| UsageError(format!("option {opt}: {v:?} is not a valid number")))
}

/// A path option's value: not empty.
pub fn path(opt: &str, v: OsString) -> Result<PathBuf, UsageError> {
    if v.is_empty() {
        return Err(UsageError(format!("option {opt} needs a non-empty path")));
    }
    Ok(PathBuf::from(v))
}

/// An optional path option.
pub fn opt_path(opt: &str, v: Option<OsString>) -> Result<Option<PathBuf>, UsageError> {
    v.map(|v| path(opt, v)).transpose()
}

/// An optional duration option.
pub fn opt_duration(opt: &str, v: Option<&str>) -> Result<Option<Duration>, UsageError> {
    v.map(|v| duration(opt, v)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_with_the_options_name() {
        assert_eq!(duration("--timeout", "2s").unwrap(), Duration::from_secs(2));
        assert!(duration("--timeout", "soon")
            .unwrap_err()
            .0
            .starts_with("option --timeout: "));
        assert_eq!(number::<usize>("--jobs", " 4 ").unwrap(), 4);
        assert!(number::<usize>("--jobs", "x")
            .unwrap_err()
            .0
            .contains("not a valid number"));
        assert!(path("--log-dir", OsString::new()).is_err());
    }
}
