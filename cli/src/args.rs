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

/// `--contain MODE`: auto, cgroup, group or subreaper.
pub fn opt_containment(v: Option<&str>) -> Result<Option<procman::Containment>, UsageError> {
    use procman::Containment;
    v.map(|v| match v {
        "auto" => Ok(Containment::Auto),
        "cgroup" => Ok(Containment::Cgroup),
        "group" => Ok(Containment::ProcessGroup),
        "subreaper" => Ok(Containment::Subreaper),
        _ => Err(UsageError(format!(
            "option --contain: {v:?} is not one of auto, cgroup, group, subreaper"
        ))),
    })
    .transpose()
}

/// A size option in bytes: a whole number with an optional K, M, G or T suffix (powers of
/// 1024; `KiB`, `k`, `MB`... alike), e.g. `512M`.
pub fn opt_size(opt: &str, v: Option<&str>) -> Result<Option<u64>, UsageError> {
    let Some(v) = v else { return Ok(None) };
    let t = v.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => u32::MAX,
    };
    let bytes = n
        .parse::<u64>()
        .ok()
        .filter(|_| shift != u32::MAX)
        .and_then(|n| n.checked_mul(1u64.checked_shl(shift)?))
        .filter(|&b| b > 0);
    match bytes {
        Some(b) => Ok(Some(b)),
        None => Err(UsageError(format!(
            "option {opt}: {v:?} is not a size (a number of bytes above 0, with K, M, G or T)"
        ))),
    }
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
        assert_eq!(
            opt_size("--memory-limit", Some("512M")).unwrap(),
            Some(512 << 20)
        );
        assert_eq!(
            opt_size("--memory-limit", Some("4096")).unwrap(),
            Some(4096)
        );
        assert_eq!(
            opt_size("--memory-limit", Some("2GiB")).unwrap(),
            Some(2 << 30)
        );
        for bad in ["", "0", "-1", "1.5G", "12X", "99999999999T"] {
            assert!(opt_size("--memory-limit", Some(bad)).is_err(), "{bad:?}");
        }
        assert!(opt_containment(Some("group")).unwrap().is_some());
        assert!(opt_containment(Some("pgroup")).is_err());
        assert!(number::<usize>("--jobs", "x")
            .unwrap_err()
            .0
            .contains("not a valid number"));
        assert!(path("--log-dir", OsString::new()).is_err());
    }
}
