//! The JSON form of a job line (a line starting with `{`): one object whose fields fill a
//! [`BatchJob`]; every field is checked for its type, range, emptiness and NUL characters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::duration::parse_duration;
use crate::job_line::{check_nonempty_no_nul, BatchJob, JobLineErrorKind};

/// The fields a JSON job may have (an unknown one is an error, so typos are caught).
pub(crate) const KNOWN_FIELDS: &[&str] = &[
    "program", "args", "input", "log", "err", "cwd", "env", "timeout", "priority", "after", "id",
    "name", "retries", "cpus", "memory",
];

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn want_string(field: &str, v: Value) -> Result<String, JobLineErrorKind> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(JobLineErrorKind::WrongType {
            field: field.to_owned(),
            expected: "a string",
            found: json_type(&other),
        }),
    }
}

/// A non-empty string without NUL.
fn want_name(field: &str, v: Value) -> Result<String, JobLineErrorKind> {
    let s = want_string(field, v)?;
    check_nonempty_no_nul(field, &s)?;
    Ok(s)
}

fn want_path(field: &str, v: Value) -> Result<PathBuf, JobLineErrorKind> {
    want_name(field, v).map(PathBuf::from)
}

fn want_string_array(
    field: &str,
    v: Value,
    element_expected: &'static str,
    nonempty: bool,
) -> Result<Vec<String>, JobLineErrorKind> {
    let Value::Array(items) = v else {
        return Err(JobLineErrorKind::WrongType {
            field: field.to_owned(),
            expected: "an array of strings",
            found: json_type(&v),
        });
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let name = format!("{field}[{i}]");
        let Value::String(s) = item else {
            return Err(JobLineErrorKind::WrongType {
                field: name,
                expected: element_expected,
                found: json_type(&item),
            });
        };
        if nonempty && s.is_empty() {
            return Err(JobLineErrorKind::Empty(name));
        }
        if s.contains('\0') {
            return Err(JobLineErrorKind::Nul(name));
        }
        out.push(s);
    }
    Ok(out)
}

fn want_env(v: Value) -> Result<BTreeMap<String, String>, JobLineErrorKind> {
    let Value::Object(map) = v else {
        return Err(JobLineErrorKind::WrongType {
            field: "env".to_owned(),
            expected: "an object of strings",
            found: json_type(&v),
        });
    };
    let mut env = BTreeMap::new();
    for (name, value) in map {
        if name.is_empty() || name.contains('=') {
            return Err(JobLineErrorKind::BadEnvName(name));
        }
        let field = format!("env.{name}");
        if name.contains('\0') {
            return Err(JobLineErrorKind::Nul(field));
        }
        let value = want_string(&field, value)?;
        if value.contains('\0') {
            return Err(JobLineErrorKind::Nul(field));
        }
        env.insert(name, value);
    }
    Ok(env)
}

/// `memory`: a positive number of bytes, or a string of digits with a K, M, G or T suffix
/// (powers of 1024, e.g. `"8G"`).
fn want_memory(v: Value) -> Result<u64, JobLineErrorKind> {
    let bad = |value: String| JobLineErrorKind::OutOfRange {
        field: "memory".into(),
        value,
    };
    let s = match v {
        Value::String(s) => s,
        other => {
            let n: u64 = want_integer("memory", other, "a number of bytes or a size like \"8G\"")?;
            return if n == 0 { Err(bad("0".into())) } else { Ok(n) };
        }
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad(s)),
    };
    n.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .filter(|&b| b > 0)
        .ok_or_else(|| bad(s.clone()))
}

fn want_integer<T: TryFrom<i64> + TryFrom<u64>>(
    field: &str,
    v: Value,
    expected: &'static str,
) -> Result<T, JobLineErrorKind> {
    let Value::Number(n) = v else {
        return Err(JobLineErrorKind::WrongType {
            field: field.to_owned(),
            expected,
            found: json_type(&v),
        });
    };
    let out_of_range = || JobLineErrorKind::OutOfRange {
        field: field.to_owned(),
        value: n.to_string(),
    };
    if let Some(u) = n.as_u64() {
        T::try_from(u).map_err(|_| out_of_range())
    } else if let Some(i) = n.as_i64() {
        T::try_from(i).map_err(|_| out_of_range())
    } else {
        // A float: 3.0 or 1e3 are still rejected, to keep the format simple.
        Err(JobLineErrorKind::WrongType {
            field: field.to_owned(),
            expected,
            found: "a non-integer number",
        })
    }
}

fn want_timeout(v: Value) -> Result<Duration, JobLineErrorKind> {
    match v {
        Value::String(s) => parse_duration(&s).map_err(JobLineErrorKind::Timeout),
        Value::Number(n) => {
            let invalid = || JobLineErrorKind::TimeoutSeconds(n.to_string());
            if let Some(u) = n.as_u64() {
                Ok(Duration::from_secs(u))
            } else {
                let secs = n.as_f64().ok_or_else(invalid)?;
                Duration::try_from_secs_f64(secs).map_err(|_| invalid())
            }
        }
        other => Err(JobLineErrorKind::WrongType {
            field: "timeout".to_owned(),
            expected: "a duration string or a number of seconds",
            found: json_type(&other),
        }),
    }
}

pub(crate) fn parse_json_job(text: &str) -> Result<BatchJob, JobLineErrorKind> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| JobLineErrorKind::Json(e.to_string()))?;
    let map: Map<String, Value> = match value {
        Value::Object(map) => map,
        // A text starting with '{' that parses is an object; kept for safety.
        other => {
            return Err(JobLineErrorKind::WrongType {
                field: "job".to_owned(),
                expected: "an object",
                found: json_type(&other),
            })
        }
    };
    let mut job = BatchJob::default();
    let mut program = None;
    let mut seen_id = false;
    for (key, value) in map {
        if value.is_null() {
            if !KNOWN_FIELDS.contains(&key.as_str()) {
                return Err(JobLineErrorKind::UnknownField(key));
            }
            continue;
        }
        match key.as_str() {
            "program" => program = Some(want_name("program", value)?),
            "args" => job.args = want_string_array("args", value, "a string", false)?,
            "input" => job.input = Some(want_path("input", value)?),
            "log" => job.log = Some(want_path("log", value)?),
            "err" => job.err = Some(want_path("err", value)?),
            "cwd" => job.cwd = Some(want_path("cwd", value)?),
            "env" => job.env = want_env(value)?,
            "timeout" => job.timeout = Some(want_timeout(value)?),
            "priority" => job.priority = Some(want_integer("priority", value, "an integer")?),
            "after" => {
                job.after = want_string_array("after", value, "a string (a job name)", true)?
            }
            "id" | "name" => {
                if seen_id {
                    return Err(JobLineErrorKind::IdAndName);
                }
                seen_id = true;
                job.name = Some(want_name(&key, value)?);
            }
            "retries" => {
                job.retries = Some(want_integer("retries", value, "a non-negative integer")?)
            }
            "cpus" => {
                let n: u32 = want_integer("cpus", value, "a positive integer")?;
                if n == 0 {
                    return Err(JobLineErrorKind::OutOfRange {
                        field: key,
                        value: "0".into(),
                    });
                }
                job.cpus = Some(n);
            }
            "memory" => job.memory = Some(want_memory(value)?),
            _ => return Err(JobLineErrorKind::UnknownField(key)),
        }
    }
    job.program = program.ok_or(JobLineErrorKind::MissingProgram)?;
    Ok(job)
}
