//! Where `procman batch` gets its jobs: job lines (a file or stdin), or a command template
//! filled with arguments in GNU parallel's manner (`::: ARGS`, `:::: FILES`, or stdin).
//!
//! Everything is bytes (`OsString`) from the input to the job's argv: a file name that is not
//! UTF-8 reaches the job unchanged; messages show it lossily.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::Duration;

use procman_cli::{join_words, parse_job_line, split_words_bytes, BatchJob};

/// One job to run, from a job line or from the template and its arguments.
#[derive(Debug, Default)]
pub struct Job {
    pub name: Option<String>,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub input: Option<PathBuf>,
    pub log: Option<PathBuf>,
    pub err: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub priority: Option<i32>,
    pub after: Vec<String>,
    pub retries: Option<u32>,
    /// `cpus` and `memory` of a JSON job line.
    pub cpus: Option<u32>,
    pub memory: Option<u64>,
    /// What `--tag` puts before each line: the arguments (template) or the command.
    pub tag: String,
}

impl Job {
    /// The command as shell words, for the joblog and messages (lossy where not UTF-8).
    pub fn command(&self) -> String {
        join_words(
            std::iter::once(&self.program)
                .chain(&self.args)
                .map(|w| w.to_string_lossy().into_owned()),
        )
    }
}

impl From<BatchJob> for Job {
    fn from(b: BatchJob) -> Job {
        let mut job = Job {
            name: b.name,
            program: b.program.into(),
            args: b.args.into_iter().map(OsString::from).collect(),
            input: b.input,
            log: b.log,
            err: b.err,
            cwd: b.cwd,
            env: b.env,
            timeout: b.timeout,
            priority: b.priority,
            after: b.after,
            retries: b.retries,
            cpus: b.cpus,
            memory: b.memory,
            tag: String::new(),
        };
        job.tag = job.name.clone().unwrap_or_else(|| job.command());
        job
    }
}

/// One item of the input, numbered by line (job lines) or by argument set (template).
pub enum Item {
    Job(usize, Box<Job>),
    /// A blank or comment line.
    Blank,
    /// Not a valid job; the message names the line.
    Invalid(String),
    /// The input cannot be read further.
    ReadError(String),
}

/// The lines of a reader as bytes, 1-based, without `\n` or `\r\n` (nor a UTF-8 BOM on line 1).
fn raw_lines<R: BufRead>(mut reader: R) -> impl Iterator<Item = io::Result<(usize, Vec<u8>)>> {
    let mut n = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = Vec::new();
        n += 1;
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => {
                done = true;
                None
            }
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                    if buf.last() == Some(&b'\r') {
                        buf.pop();
                    }
                }
                if n == 1 && buf.starts_with("\u{feff}".as_bytes()) {
                    buf.drain(..3);
                }
                Some(Ok((n, buf)))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

/// One job line, UTF-8 or not: a line that is not UTF-8 is shell words over bytes (a JSON job
/// must be UTF-8).
pub fn job_line(n: usize, bytes: &[u8]) -> Item {
    match std::str::from_utf8(bytes) {
        Ok(text) => match parse_job_line(n, text) {
            Ok(None) => Item::Blank,
            Ok(Some(job)) => Item::Job(n, Box::new(job.into())),
            Err(e) => Item::Invalid(e.to_string()),
        },
        Err(e) => {
            let start = bytes
                .iter()
                .position(|b| !b" \t\r\n".contains(b))
                .unwrap_or(bytes.len());
            let trimmed = &bytes[start..];
            if trimmed.starts_with(b"{") || trimmed.starts_with(b"#") || trimmed.is_empty() {
                if trimmed.starts_with(b"#") {
                    return Item::Blank;
                }
                return Item::Invalid(format!(
                    "line {n}: a JSON job must be UTF-8 (invalid byte at byte {})",
                    e.valid_up_to() + 1
                ));
            }
            let mut words = match split_words_bytes(bytes) {
                Ok(w) => w.into_iter(),
                Err(e) => return Item::Invalid(format!("line {n}: {e}")),
            };
            let Some(program) = words.next() else {
                return Item::Blank;
            };
            let mut job = Job {
                program,
                args: words.collect(),
                ..Job::default()
            };
            if job.program.is_empty() {
                return Item::Invalid(format!("line {n}: \"program\" must not be empty"));
            }
            if std::iter::once(&job.program)
                .chain(&job.args)
                .any(|w| w.as_bytes().contains(&0))
            {
                return Item::Invalid(format!("line {n}: a word contains a NUL character"));
            }
            job.tag = job.command();
            Item::Job(n, Box::new(job))
        }
    }
}

/// The items of a job file.
pub fn job_lines<R: BufRead + Send + 'static>(reader: R) -> Box<dyn Iterator<Item = Item> + Send> {
    Box::new(raw_lines(reader).map(|r| match r {
        Ok((n, bytes)) => job_line(n, &bytes),
        Err(e) => Item::ReadError(e.to_string()),
    }))
}

/// The records of a reader: lines (without `\n`), or NUL-terminated with `-0`.
pub fn records<R: BufRead + Send + 'static>(
    mut reader: R,
    nul: bool,
) -> impl Iterator<Item = io::Result<OsString>> + Send {
    let sep = if nul { 0 } else { b'\n' };
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = Vec::new();
        match reader.read_until(sep, &mut buf) {
            Ok(0) => {
                done = true;
                None
            }
            Ok(_) => {
                if buf.last() == Some(&sep) {
                    buf.pop();
                }
                Some(Ok(OsString::from_vec(buf)))
            }
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

/// A command template (`refmac5 HKLIN {}`) and where its arguments come from.
pub struct Template {
    pub words: Vec<OsString>,
    /// One list per `:::`/`::::` source; jobs are their product (the first varies slowest).
    pub sources: Vec<Vec<OsString>>,
}

impl Template {
    /// Splits `words` at `:::` (arguments follow) and `::::` (files of arguments follow).
    pub fn parse(words: Vec<OsString>, nul: bool) -> Result<Template, String> {
        let mut it = words.into_iter().peekable();
        let mut template = Vec::new();
        while let Some(w) = it.next_if(|w| w != ":::" && w != "::::") {
            template.push(w);
        }
        if template.is_empty() {
            return Err("batch: no command before ::: or ::::".into());
        }
        let mut sources = Vec::new();
        while let Some(sep) = it.next() {
            let mut items = Vec::new();
            while let Some(w) = it.next_if(|w| w != ":::" && w != "::::") {
                items.push(w);
            }
            if sep == ":::" {
                sources.push(items);
            } else {
                if items.is_empty() {
                    return Err("batch: :::: needs at least one file".into());
                }
                for file in items {
                    let reader: Box<dyn BufRead + Send> = if file == "-" {
                        Box::new(io::BufReader::new(io::stdin()))
                    } else {
                        let f = std::fs::File::open(&file).map_err(|e| {
                            format!("cannot open argument file {}: {e}", file.to_string_lossy())
                        })?;
                        Box::new(io::BufReader::new(f))
                    };
                    let args = records(reader, nul)
                        .collect::<io::Result<Vec<_>>>()
                        .map_err(|e| {
                            format!("cannot read argument file {}: {e}", file.to_string_lossy())
                        })?;
                    sources.push(args);
                }
            }
        }
        Ok(Template {
            words: template,
            sources,
        })
    }

    /// The argument sets, in order: the product of the sources.
    pub fn arg_sets(&self) -> Box<dyn Iterator<Item = Vec<OsString>> + Send> {
        let sources = self.sources.clone();
        if sources.iter().any(Vec::is_empty) {
            return Box::new(std::iter::empty());
        }
        let mut index = vec![0usize; sources.len()];
        let mut done = false;
        Box::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let set = index
                .iter()
                .zip(&sources)
                .map(|(&i, s)| s[i].clone())
                .collect();
            // Advance like an odometer, the last source fastest.
            done = true;
            for k in (0..index.len()).rev() {
                index[k] += 1;
                if index[k] < sources[k].len() {
                    done = false;
                    break;
                }
                index[k] = 0;
            }
            Some(set)
        }))
    }

    /// The job for argument set `args`, job number `seq`.
    pub fn job(&self, args: &[OsString], seq: u64) -> Job {
        let mut replaced = false;
        let mut words: Vec<OsString> = self
            .words
            .iter()
            .map(|w| expand(w, args, seq, &mut replaced))
            .collect();
        if !replaced {
            words.extend(args.iter().cloned());
        }
        let program = words.remove(0);
        let tag = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        Job {
            program,
            args: words,
            tag,
            ..Job::default()
        }
    }
}

/// Items from a template: its `:::`/`::::` argument sets, or else stdin's records.
pub fn template_items(
    template: Template,
    stdin: bool,
    nul: bool,
) -> Box<dyn Iterator<Item = Item> + Send> {
    let sets: Box<dyn Iterator<Item = io::Result<Vec<OsString>>> + Send> = if stdin {
        Box::new(records(io::BufReader::new(io::stdin()), nul).map(|r| r.map(|a| vec![a])))
    } else {
        Box::new(template.arg_sets().map(Ok))
    };
    Box::new(sets.enumerate().map(move |(i, set)| match set {
        Ok(args) => Item::Job(i + 1, Box::new(template.job(&args, i as u64 + 1))),
        Err(e) => Item::ReadError(e.to_string()),
    }))
}

/// `dir/name.ext` pieces, on bytes.
fn basename(a: &[u8]) -> &[u8] {
    match a.iter().rposition(|&b| b == b'/') {
        Some(i) => &a[i + 1..],
        None => a,
    }
}

fn dirname(a: &[u8]) -> &[u8] {
    match a.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(i) => &a[..i],
        None => b".",
    }
}

/// Without the extension of the last component (`a/b.tar.gz` → `a/b.tar`; `.bashrc` kept).
fn no_extension(a: &[u8]) -> &[u8] {
    let base_start = a.len() - basename(a).len();
    match a[base_start..].iter().rposition(|&b| b == b'.') {
        Some(i) if i > 0 => &a[..base_start + i],
        _ => a,
    }
}

/// Replaces GNU parallel's basic replacement strings in one word: `{}` the argument, `{.}`
/// without extension, `{/}` basename, `{//}` directory, `{/.}` basename without extension,
/// `{#}` the job number, and `{N}`, `{N.}`, `{N/}`, `{N//}`, `{N/.}` for source N. With several
/// sources `{}` is all the arguments joined by spaces. Anything else is left as it is.
fn expand(word: &OsStr, args: &[OsString], seq: u64, replaced: &mut bool) -> OsString {
    let w = word.as_bytes();
    let joined: Vec<u8> = args
        .iter()
        .map(|a| a.as_bytes())
        .collect::<Vec<_>>()
        .join(&b' ');
    let mut out = Vec::with_capacity(w.len());
    let mut i = 0;
    while i < w.len() {
        if w[i] == b'{' {
            if let Some(len) = w[i..].iter().position(|&b| b == b'}') {
                let inner = &w[i + 1..i + len];
                let digits = inner.iter().take_while(|b| b.is_ascii_digit()).count();
                let (pos, op) = inner.split_at(digits);
                let arg: Option<&[u8]> = if pos.is_empty() {
                    Some(&joined)
                } else {
                    std::str::from_utf8(pos)
                        .ok()
                        .and_then(|p| p.parse::<usize>().ok())
                        .and_then(|p| p.checked_sub(1))
                        .and_then(|p| args.get(p))
                        .map(|a| a.as_bytes())
                };
                let value: Option<Vec<u8>> = match (op, arg) {
                    (b"#", _) if pos.is_empty() => Some(seq.to_string().into_bytes()),
                    (b"", Some(a)) => Some(a.to_vec()),
                    (b".", Some(a)) => Some(no_extension(a).to_vec()),
                    (b"/", Some(a)) => Some(basename(a).to_vec()),
                    (b"//", Some(a)) => Some(dirname(a).to_vec()),
                    (b"/.", Some(a)) => Some(no_extension(basename(a)).to_vec()),
                    _ => None,
                };
                if let Some(v) = value {
                    out.extend_from_slice(&v);
                    *replaced = true;
                    i += len + 1;
                    continue;
                }
            }
        }
        out.push(w[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn replacement_strings() {
        let t = Template {
            words: os(&[
                "conv", "{}", "{.}.out", "{/}", "{//}", "{/.}", "#{#}", "{x}",
            ]),
            sources: vec![],
        };
        let job = t.job(&os(&["dir/sub/in.tar.gz"]), 7);
        assert_eq!(job.program, "conv");
        assert_eq!(
            job.args,
            os(&[
                "dir/sub/in.tar.gz",
                "dir/sub/in.tar.out",
                "in.tar.gz",
                "dir/sub",
                "in.tar",
                "#7",
                "{x}"
            ])
        );
        let t = Template {
            words: os(&["cp", "{1}", "{2/}", "{}"]),
            sources: vec![],
        };
        let job = t.job(&os(&["a/b", "c/d.e"]), 1);
        assert_eq!(job.args, os(&["a/b", "d.e", "a/b c/d.e"]));
        // No replacement string: the arguments are appended.
        let t = Template {
            words: os(&["echo", "x"]),
            sources: vec![],
        };
        assert_eq!(t.job(&os(&["1", "2"]), 1).args, os(&["x", "1", "2"]));
        assert_eq!(dirname(b"name"), b".");
        assert_eq!(dirname(b"/name"), b"/");
        assert_eq!(no_extension(b".bashrc"), b".bashrc");
        assert_eq!(no_extension(b"a.b/c"), b"a.b/c");
    }

    #[test]
    fn sources_multiply_in_order() {
        let t = Template::parse(os(&["echo", ":::", "a", "b", ":::", "1", "2"]), false).unwrap();
        let sets: Vec<_> = t.arg_sets().collect();
        assert_eq!(
            sets,
            vec![
                os(&["a", "1"]),
                os(&["a", "2"]),
                os(&["b", "1"]),
                os(&["b", "2"])
            ]
        );
        let t = Template::parse(os(&["echo", ":::"]), false).unwrap();
        assert_eq!(t.arg_sets().count(), 0);
    }

    #[test]
    fn non_utf8_job_lines_keep_their_bytes() {
        let Item::Job(3, job) = job_line(3, b"cat 'caf\xe9 menu' x\xff") else {
            panic!("a job")
        };
        assert_eq!(job.program, "cat");
        assert_eq!(job.args[0].as_bytes(), b"caf\xe9 menu");
        assert_eq!(job.args[1].as_bytes(), b"x\xff");
        assert!(matches!(
            job_line(4, b"{\"program\": \"\xff\"}"),
            Item::Invalid(_)
        ));
        assert!(matches!(job_line(5, b"  # caf\xe9"), Item::Blank));
    }
}
