//! Keeps raw `Instant + Duration` (and overflowing `Duration` arithmetic) out of the sources
//! (issue 19; DESIGN.md, "The deadline rule").
//!
//! `Instant + Duration` panics when the sum does not fit, and so do `Duration + Duration` and
//! `Duration * n` on overflow. Every deadline goes through `src/deadline.rs` (`None`: no
//! deadline) and `Duration` sums and products saturate. clippy's `disallowed_methods` cannot
//! see the `+` operator (and `unchecked_time_subtraction`, denied in lib.rs, covers only `-`),
//! so this test reads the library's, the tool's and the Python binding's sources: it strips comments and
//! literals, learns which names are declared as `Instant` or `Duration` (variables, fields,
//! parameters, constants, `let x = Instant::now()`), and flags
//! - `+`, `+=`, `*`, `*=` with such a name, `Instant::now()`, a `Duration` constructor or a
//!   method that returns a `Duration` (`elapsed()`, `duration_since(..)`) on either side;
//! - `.add(`, `.mul(` and `.checked_add(` on such a receiver or on `Instant::now()`, outside
//!   the helper module itself.
//!
//! The names are learnt crate-wide without types, so a new integer variable named like a
//! duration field could be flagged: rename it, or write the arithmetic differently. Unit tests
//! at the end of a file (`#[cfg(test)] mod tests`) are not scanned. The second test shows that
//! each form of raw addition this crate once had is caught, and that the helper's forms are not.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The one module allowed to add to an `Instant`.
const HELPER: &str = "src/deadline.rs";

/// Modules compiled only into the crate's unit tests (`#[cfg(test)] mod …` in lib.rs): their
/// waits are test scaffolding with small, fixed bounds, never a caller's `Duration`.
const TEST_ONLY: &[&str] = &["src/fault.rs"];

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Punct(&'static str),
    Other,
}

/// Blanks out comments, string, byte-string, raw-string and char literals (keeping newlines),
/// and cuts a trailing `#[cfg(test)] mod tests`.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            // Nested block comments.
            let (mut depth, mut j) = (0usize, 0);
            while j < rest.len() {
                if rest[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if rest[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, &rest[..j]);
            i += j;
        } else if let Some(len) = raw_string_len(rest) {
            blank(&mut out, &rest[..len]);
            i += len;
        } else if rest[0] == b'"' || rest.starts_with(b"b\"") {
            let start = usize::from(rest[0] == b'b');
            let mut j = start + 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}', 'é'), or a lifetime/label ('a).
            let len = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else {
                // `i` is at a char boundary: literals and chars are skipped whole.
                src[i + 1..]
                    .chars()
                    .next()
                    .map(char::len_utf8)
                    .filter(|&n| rest.get(1 + n) == Some(&b'\''))
                    .map(|n| n + 2)
            };
            match len {
                Some(n) => {
                    blank(&mut out, &rest[..n]);
                    i += n;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = src[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    if let Some(p) = out.find("#[cfg(test)]\nmod tests") {
        out.truncate(p);
    }
    out
}

/// `r"..."`, `r#"..."#`, `br"..."` and so on: the literal's length.
fn raw_string_len(s: &[u8]) -> Option<usize> {
    let mut j = usize::from(s.first() == Some(&b'b'));
    if s.get(j) != Some(&b'r') {
        return None;
    }
    j += 1;
    let hashes = s[j..].iter().take_while(|&&c| c == b'#').count();
    j += hashes;
    if s.get(j) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat(b'#').take(hashes))
        .collect();
    let end = s[j + 1..].windows(close.len()).position(|w| w == close)?;
    Some(j + 1 + end + close.len())
}

/// Longest first: `==` is not two `=`.
const PUNCTS: [&str; 19] = [
    "::", "+=", "*=", "->", "=>", "==", "!=", "<=", ">=", "+", "*", ".", ":", "(", ")", "&", ",",
    ";", "=",
];

/// Identifiers and the punctuation the rules need, with their line numbers.
fn tokens(src: &str) -> Vec<(Tok, usize)> {
    let b = src.as_bytes();
    let (mut i, mut line, mut out) = (0, 1, vec![]);
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let n = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            out.push((Tok::Ident(src[i..i + n].to_owned()), line));
            i += n;
        } else if c.is_ascii_digit() {
            let n = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            out.push((Tok::Other, line));
            i += n;
        } else if let Some(p) = PUNCTS.iter().find(|p| b[i..].starts_with(p.as_bytes())) {
            out.push((Tok::Punct(p), line));
            i += p.len();
        } else {
            out.push((Tok::Other, line));
            i += src[i..].chars().next().unwrap().len_utf8();
        }
    }
    out
}

fn ident(t: &[(Tok, usize)], i: usize) -> Option<&str> {
    match t.get(i) {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

fn punct(t: &[(Tok, usize)], i: usize, p: &str) -> bool {
    matches!(t.get(i), Some((Tok::Punct(q), _)) if *q == p)
}

/// Names declared as `Instant` or `Duration` (or `Option` of one).
#[derive(Default)]
struct Names {
    /// Struct fields (declared outside parentheses), anywhere in the crate: `x.name`.
    fields: HashSet<String>,
    /// Per file: its parameters and `let`s, and its own fields: a bare `name`.
    local: Vec<HashSet<String>>,
}

impl Names {
    fn field(&self, name: &str) -> bool {
        self.fields.contains(name)
    }

    fn bare(&self, file: usize, name: &str) -> bool {
        self.local[file].contains(name)
    }
}

fn time_names(files: &[Vec<(Tok, usize)>]) -> Names {
    let mut names = Names::default();
    for t in files {
        let mut local = HashSet::new();
        let mut depth = 0usize;
        for i in 0..t.len() {
            if punct(t, i, "(") {
                depth += 1;
            } else if punct(t, i, ")") {
                depth = depth.saturating_sub(1);
            }
            let Some(name) = ident(t, i) else { continue };
            // `name: [&][mut] [Option<] [std::time::] Instant|Duration`
            if punct(t, i + 1, ":") {
                let mut j = i + 2;
                while punct(t, j, "&")
                    || ident(t, j) == Some("mut")
                    || matches!(ident(t, j), Some("std" | "time" | "core"))
                    || punct(t, j, "::")
                {
                    j += 1;
                }
                if ident(t, j) == Some("Option") && matches!(t.get(j + 1), Some((Tok::Other, _))) {
                    j += 2;
                }
                while matches!(ident(t, j), Some("std" | "time" | "core")) || punct(t, j, "::") {
                    j += 1;
                }
                if matches!(ident(t, j), Some("Instant" | "Duration")) {
                    local.insert(name.to_owned());
                    if depth == 0 {
                        names.fields.insert(name.to_owned());
                    }
                }
            }
        }
        names.local.push(local);
    }
    // `let [mut] x = E;` and `let (a, b) = (E1, E2);` where E is a time value: until nothing
    // new is learnt (`let (min, max) = (o.poll_min, o.poll_max); let mut i = min;`).
    for (file, t) in files.iter().enumerate() {
        loop {
            let mut learnt = vec![];
            for i in 0..t.len() {
                if ident(t, i) == Some("let") {
                    learnt.extend(let_bindings(t, i + 1, file, &names));
                }
            }
            learnt.retain(|n| !names.local[file].contains(n));
            if learnt.is_empty() {
                break;
            }
            names.local[file].extend(learnt);
        }
    }
    names
}

/// The time names a `let` binds, from token `i` (just after `let`).
fn let_bindings(t: &[(Tok, usize)], mut i: usize, file: usize, names: &Names) -> Vec<String> {
    let mut vars = vec![];
    let tuple = punct(t, i, "(");
    i += usize::from(tuple);
    loop {
        i += usize::from(ident(t, i) == Some("mut"));
        let Some(v) = ident(t, i) else {
            return vec![];
        };
        vars.push(v.to_owned());
        i += 1;
        if !(tuple && punct(t, i, ",")) {
            break;
        }
        i += 1;
    }
    let expect: &[&str] = if tuple { &[")", "=", "("] } else { &["="] };
    for p in expect {
        if !punct(t, i, p) {
            return vec![];
        }
        i += 1;
    }
    let mut out = vec![];
    for v in vars {
        let end = time_expr_end(t, i, file, names);
        let ends_well = |e: usize| {
            if tuple {
                punct(t, e, ",") || punct(t, e, ")")
            } else {
                punct(t, e, ";")
            }
        };
        if end.is_some_and(ends_well) {
            out.push(v);
        }
        // On to the next element: past the next top-level `,`.
        let mut depth = 0usize;
        while i < t.len() {
            if punct(t, i, "(") {
                depth += 1;
            } else if punct(t, i, ")") {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            } else if depth == 0 && (punct(t, i, ",") || punct(t, i, ";")) {
                i += 1;
                break;
            }
            i += 1;
        }
    }
    out
}

/// If a whole time value starts at token `i` (`a.b.name`, `Duration::MAX`, `Instant::now()`,
/// `deadline::from_now(..)`, `x.elapsed()`), the index just past it.
fn time_expr_end(t: &[(Tok, usize)], i: usize, file: usize, names: &Names) -> Option<usize> {
    let typed =
        matches!(ident(t, i), Some("Instant" | "Duration" | "deadline")) && punct(t, i + 1, "::");
    let mut k = i;
    while ident(t, k).is_some() && (punct(t, k + 1, ".") || punct(t, k + 1, "::")) {
        k += 2;
    }
    let last = ident(t, k)?;
    if punct(t, k + 1, "(") {
        let mut depth = 0usize;
        let mut m = k + 1;
        loop {
            if punct(t, m, "(") {
                depth += 1;
            } else if punct(t, m, ")") {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            m += 1;
            if m >= t.len() {
                return None;
            }
        }
        (typed || DURATION_METHODS.contains(&last)).then_some(m + 1)
    } else {
        (typed || time_name(t, k, file, names)).then_some(k + 1)
    }
}

/// Whether the name at token `k` is a time value: a field access (`x.name`) of a time field,
/// or a bare time name of this file.
fn time_name(t: &[(Tok, usize)], k: usize, file: usize, names: &Names) -> bool {
    let Some(name) = ident(t, k) else {
        return false;
    };
    if k > 0 && punct(t, k - 1, ".") {
        names.field(name)
    } else {
        names.bare(file, name)
    }
}

/// Methods whose result is a `Duration`.
const DURATION_METHODS: [&str; 4] = [
    "elapsed",
    "duration_since",
    "saturating_duration_since",
    "checked_duration_since",
];

/// Whether the operand that ends just before token `i` is a time value.
fn timeish_before(t: &[(Tok, usize)], i: usize, file: usize, names: &Names) -> bool {
    if i == 0 {
        return false;
    }
    if ident(t, i - 1).is_some() {
        let duration_const = i >= 3 && punct(t, i - 2, "::") && ident(t, i - 3) == Some("Duration");
        return duration_const || time_name(t, i - 1, file, names);
    }
    if !punct(t, i - 1, ")") {
        return false;
    }
    // Back to the matching `(`, then the callee.
    let mut depth = 0;
    let mut j = i - 1;
    loop {
        if punct(t, j, ")") {
            depth += 1;
        } else if punct(t, j, "(") {
            depth -= 1;
            if depth == 0 {
                break;
            }
        }
        if j == 0 {
            return false;
        }
        j -= 1;
    }
    let Some(callee) = j.checked_sub(1).and_then(|k| ident(t, k)) else {
        return false;
    };
    let path_of = |ty: &str| j >= 3 && punct(t, j - 2, "::") && ident(t, j - 3) == Some(ty);
    DURATION_METHODS.contains(&callee) || path_of("Instant") || path_of("Duration")
}

/// Whether the operand that starts at token `i` is a time value: a path or field chain
/// (`a.b.c`, `Duration::X`) whose last name is a time name, or a `Duration`/`Instant` path.
fn timeish_after(t: &[(Tok, usize)], mut i: usize, file: usize, names: &Names) -> bool {
    while punct(t, i, "&") {
        i += 1;
    }
    if matches!(ident(t, i), Some("Duration" | "Instant")) && punct(t, i + 1, "::") {
        return true;
    }
    let mut last = None;
    while let Some(name) = ident(t, i) {
        last = Some((name, i));
        if punct(t, i + 1, ".") || punct(t, i + 1, "::") {
            i += 2;
        } else {
            break;
        }
    }
    match last {
        Some((name, k)) if punct(t, k + 1, "(") => DURATION_METHODS.contains(&name),
        Some((_, k)) => time_name(t, k, file, names),
        None => false,
    }
}

/// Every raw time arithmetic in one file: (line, what).
fn findings(t: &[(Tok, usize)], file: usize, names: &Names, helper: bool) -> Vec<(usize, String)> {
    let mut found = vec![];
    for i in 0..t.len() {
        let line = t[i].1;
        if let Tok::Punct(op @ ("+" | "+=" | "*" | "*=")) = t[i].0 {
            // `T: Send + Sync` and `impl Fn() + Send` have no time names around them.
            if timeish_before(t, i, file, names) || timeish_after(t, i + 1, file, names) {
                found.push((line, format!("`{op}` on an Instant or a Duration")));
            }
        }
        if punct(t, i, ".") {
            if let Some(m @ ("add" | "mul" | "checked_add")) = ident(t, i + 1) {
                if punct(t, i + 2, "(") && !helper && timeish_before(t, i, file, names) {
                    found.push((line, format!("`.{m}(` on an Instant or a Duration")));
                }
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn scan(files: &[(String, String)]) -> Vec<String> {
    let toks: Vec<_> = files.iter().map(|(_, s)| tokens(&strip(s))).collect();
    let names = time_names(&toks);
    let mut out = vec![];
    for (file, ((name, _), t)) in files.iter().zip(&toks).enumerate() {
        for (line, what) in findings(t, file, &names, name == HELPER) {
            out.push(format!("{name}:{line}: {what}"));
        }
    }
    out
}

#[test]
fn no_raw_instant_or_duration_arithmetic_in_the_sources() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = vec![];
    rust_files(&root.join("src"), &mut paths);
    rust_files(&root.join("python/src"), &mut paths);
    rust_files(&root.join("cli/src"), &mut paths);
    paths.sort();
    let files: Vec<(String, String)> = paths
        .iter()
        .filter(|p| !TEST_ONLY.iter().any(|t| p.ends_with(t)))
        .map(|p| {
            let name = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(p).unwrap())
        })
        .collect();
    // A test-only module must stay test-only to be skipped.
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    for t in TEST_ONLY {
        let module = Path::new(t).file_stem().unwrap().to_string_lossy();
        assert!(
            lib.contains(&format!("#[cfg(test)]\nmod {module};")),
            "{t} is skipped as test-only, but lib.rs does not declare it under #[cfg(test)]"
        );
    }
    let found = scan(&files);
    assert!(
        found.is_empty(),
        "raw Instant/Duration arithmetic (use crate::deadline::after/from_now for deadlines, \
         saturating_add/saturating_mul for durations; see DESIGN.md, \"The deadline rule\"):\n{}",
        found.join("\n")
    );
    assert!(
        paths.iter().any(|p| p.ends_with(HELPER)),
        "the helper module {HELPER} is missing"
    );
}

/// One file of the crate: `src/x.rs` with `text`.
fn one(text: &str) -> Vec<String> {
    scan(&[("src/x.rs".to_owned(), text.to_owned())])
}

#[test]
fn the_scan_catches_each_raw_form_and_passes_the_helpers() {
    let decls = "struct Core { timeout: Option<Duration>, grace: std::time::Duration }
                 struct Retry { backoff: Duration }
                 struct T { term_sent: Option<Instant> }
                 const SLICE: Duration = Duration::from_millis(10);
                 fn f(spawned: Instant, bound: Duration, interval: Duration) {}\n";
    // The forms this crate had before issue 19, and a few more.
    let raw = [
        "let d = core.timeout.map(|t| spawned + t);",
        "let at = t + self.grace;",
        "let at = Instant::now() + retry.backoff;",
        "let deadline = Instant::now() + bound;",
        "let deadline = timeout.map(|t| std::time::Instant::now() + t);",
        "let soon = Instant::now()+min;",
        "let n = (interval * 2).min(max);",
        "let n = 2 * interval;",
        "let total = timeout + grace + poll_max + Duration::from_secs(60);",
        "let x = spawned.elapsed() + SLICE;",
        "let mut w = SLICE; w += bound;",
        "let x = spawned.checked_add(bound);",
        "let x = Instant::now().checked_add(bound);",
        "let x = spawned.add(bound);",
        "let x = Duration::MAX + bound;",
        "let x = s + Duration::MAX;",
        "let (lo, hi) = (self.o.grace, 1); let mut i = lo; i = i * 2;",
        "let s = Instant::now(); let e = s + bound;",
        "let w = deadline::from_now(bound); let x = w.checked_add(bound);",
    ];
    for line in raw {
        let found = one(&format!("{decls}fn g() {{ {line} }}"));
        assert!(!found.is_empty(), "not caught: {line}");
    }
    // The helper's forms, and arithmetic that is not on time values.
    let fine = [
        "let d = core.timeout.and_then(|t| deadline::after(spawned, t));",
        "let at = deadline::from_now(retry.backoff);",
        "let n = interval.saturating_mul(2).min(max);",
        "let total = timeout.saturating_add(grace);",
        "let x = now - t;",
        "let n = count + 1; let m = a * b;",
        "fn h<T: Send + Sync>(x: impl Fn() + Send) {}",
        "let s = \"Instant::now() + grace\"; // spawned + t",
        "/* t + self.grace */ let c = '+'; let l: &'static str = \"\";",
        "let x = r#\"a + grace\"#;",
        "let (lo, hi) = (self.o.grace, 1); let j = hi + 1;",
        "let n = s.elapsed().as_secs() + 1; let m = spawned.elapsed().as_millis() * 2;",
    ];
    for line in fine {
        let found = one(&format!("{decls}fn g() {{ {line} }}"));
        assert!(found.is_empty(), "{line}: {found:?}");
    }
    // A parameter is a time name only in its own file; a field anywhere, as a field.
    let two = scan(&[
        (
            "src/a.rs".to_owned(),
            "fn f(submitted: Instant) {}".to_owned(),
        ),
        (
            "src/b.rs".to_owned(),
            "fn g() { gate.submitted += 1; let k = submitted + 1; }".to_owned(),
        ),
    ]);
    assert!(two.is_empty(), "{two:?}");
    let two = scan(&[
        ("src/a.rs".to_owned(), "struct S { at: Instant }".to_owned()),
        (
            "src/b.rs".to_owned(),
            "fn g() { let k = s.at + d; }".to_owned(),
        ),
    ]);
    assert_eq!(two.len(), 1, "{two:?}");
    // `checked_add` is the helper's own tool; unit tests at the end of a file are not read.
    let helper = scan(&[(
        HELPER.to_owned(),
        "fn after(start: Instant, d: Duration) -> Option<Instant> { start.checked_add(d) }"
            .to_owned(),
    )]);
    assert!(helper.is_empty(), "{helper:?}");
    let tests = one(&format!(
        "{decls}\n#[cfg(test)]\nmod tests {{ fn t() {{ let x = Instant::now() + bound; }} }}"
    ));
    assert!(tests.is_empty(), "{tests:?}");
}
