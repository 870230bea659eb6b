//! Every link in the user-facing documents resolves, and every repository path they name exists.
//!
//! Documents: `README.md`, `DESIGN.md`, `docs/*.md`, `python/README.md`. Outside fenced code
//! blocks (```` ``` ````), the test checks:
//!
//! 1. **Links.** Each inline link or image `[text](target)` and each reference definition
//!    `[label]: target` whose target has no URL scheme (`https:`, `mailto:`...) is relative: its
//!    path, resolved against the document's folder, must exist, and must stay inside the
//!    repository (no `../shared/...`). A `#anchor` (after a path, or alone for the document
//!    itself) must be the GitHub slug of a heading of the target Markdown file: lower case,
//!    spaces to `-`, every character other than letters, digits, `-` and `_` dropped, a repeated
//!    heading numbered `-1`, `-2`...
//! 2. **Paths in backticks.** An inline code span that is a repository path is checked to
//!    exist. The rule, kept narrow so prose and shell commands are not mistaken for paths: the
//!    span's text starts with one of the repository's top folders (`src/`, `tests/`,
//!    `examples/`, `bench/`, `docs/`, `python/`, `fuzz/`, `.ci/`), has no blank and none of
//!    `* < > { } $ |`; a Rust item after `::` or a line number after `:` is cut off
//!    (`tests/watch.rs::name` checks `tests/watch.rs`). It may be relative to the repository
//!    root or to the document's folder. Spans inside fenced code blocks are not checked, nor
//!    build outputs (under a rooted entry of `.gitignore`, such as `/fuzz/target`), nor the
//!    paths of other projects listed in `NOT_OURS`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TOP_FOLDERS: &[&str] = &[
    "src/",
    "tests/",
    "examples/",
    "bench/",
    "docs/",
    "python/",
    "fuzz/",
    ".ci/",
];

/// Paths in other projects that the documents name (CCP4i2's own test files).
const NOT_OURS: &[&str] = &["tests/async/"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The documents checked, relative to the repository root.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![
        PathBuf::from("README.md"),
        PathBuf::from("DESIGN.md"),
        PathBuf::from("python/README.md"),
    ];
    if let Ok(entries) = std::fs::read_dir(root().join("docs")) {
        let mut more: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| PathBuf::from("docs").join(e.file_name()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        more.sort();
        docs.extend(more);
    }
    docs
}

/// The document's lines outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// GitHub's anchor for a heading's text.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The anchors of a Markdown document's headings (duplicates numbered as GitHub does).
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let n = seen.entry(base.clone()).or_insert(0);
        out.push(if *n == 0 { base } else { format!("{base}-{n}") });
        *n += 1;
    }
    out
}

/// Splits a line into its text outside inline code and its inline code spans.
fn split_code_spans(line: &str) -> (String, Vec<&str>) {
    let mut prose = String::new();
    let mut spans = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('`') {
        prose.push_str(&rest[..open]);
        let ticks = rest[open..].chars().take_while(|&c| c == '`').count();
        let after = &rest[open + ticks..];
        let fence = &rest[open..open + ticks];
        match after.find(fence) {
            Some(close) => {
                spans.push(after[..close].trim());
                rest = &after[close + ticks..];
            }
            None => {
                rest = after;
            }
        }
    }
    prose.push_str(rest);
    (prose, spans)
}

/// The link targets of a line's prose: `[text](target)` and `[label]: target`.
fn link_targets(prose: &str) -> Vec<String> {
    let mut out = Vec::new();
    let t = prose.trim_start();
    if t.starts_with('[') {
        if let Some(end) = t.find("]:") {
            if let Some(target) = t[end + 2..].split_whitespace().next() {
                out.push(target.to_string());
            }
        }
    }
    let mut rest = prose;
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let Some(close) = after.find(')') else { break };
        let inner = after[..close].trim();
        let target = inner
            .strip_prefix('<')
            .and_then(|s| s.split('>').next())
            .unwrap_or_else(|| inner.split_whitespace().next().unwrap_or(""));
        out.push(target.to_string());
        rest = &after[close..];
    }
    out
}

fn has_scheme(target: &str) -> bool {
    match target.find(':') {
        Some(i) => {
            i > 0
                && target[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        }
        None => false,
    }
}

/// Whether `path` (relative to the repository root) lies inside the repository.
fn inside_repository(path: &Path) -> bool {
    let mut depth: i32 = 0;
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

fn check_link(
    doc: &Path,
    text_of: &dyn Fn(&Path) -> Option<String>,
    target: &str,
) -> Option<String> {
    if target.is_empty() {
        return Some("an empty link".into());
    }
    if has_scheme(target) {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let folder = doc.parent().unwrap_or(Path::new(""));
    let file = if path.is_empty() {
        doc.to_path_buf()
    } else {
        folder.join(path)
    };
    if !inside_repository(&file) {
        return Some(format!("`{target}` points outside the repository"));
    }
    if file != doc && !root().join(&file).exists() {
        return Some(format!("`{target}`: no such file ({})", file.display()));
    }
    let anchor = anchor?;
    let Some(text) = text_of(&file) else {
        return Some(format!(
            "`{target}`: an anchor into a file that is not Markdown"
        ));
    };
    if anchors(&text).iter().any(|a| a == anchor) {
        None
    } else {
        Some(format!(
            "`{target}`: no heading of {} has the anchor #{anchor}",
            file.display()
        ))
    }
}

/// The repository path a code span names, if it follows the rule in the module docs.
fn code_path(span: &str) -> Option<&str> {
    if !TOP_FOLDERS.iter().any(|t| span.starts_with(t)) {
        return None;
    }
    if span
        .chars()
        .any(|c| c.is_whitespace() || "*<>{}$|".contains(c))
    {
        return None;
    }
    let path = span.split("::").next().unwrap_or(span);
    Some(path.split(':').next().unwrap_or(path))
}

/// The rooted entries of `.gitignore` (build outputs), without their leading `/`.
fn ignored_prefixes() -> Vec<String> {
    std::fs::read_to_string(root().join(".gitignore"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix('/'))
        .map(str::to_string)
        .collect()
}

fn check_code_path(doc: &Path, path: &str) -> Option<String> {
    if NOT_OURS.iter().any(|p| path.starts_with(p))
        || ignored_prefixes()
            .iter()
            .any(|p| path.starts_with(p.as_str()))
    {
        return None;
    }
    let folder = doc.parent().unwrap_or(Path::new(""));
    if root().join(path).exists() || root().join(folder).join(path).exists() {
        None
    } else {
        Some(format!("`{path}`: no such file or folder"))
    }
}

/// Every problem in one document, as `file:line: problem`.
fn problems_in(doc: &Path, text: &str) -> Vec<String> {
    let text_of = |p: &Path| {
        if p == doc {
            Some(text.to_string())
        } else if p.extension().is_some_and(|x| x == "md") {
            std::fs::read_to_string(root().join(p)).ok()
        } else {
            None
        }
    };
    let mut out = Vec::new();
    for (n, line) in prose_lines(text) {
        let (prose, spans) = split_code_spans(line);
        for target in link_targets(&prose) {
            if let Some(p) = check_link(doc, &text_of, &target) {
                out.push(format!("{}:{n}: {p}", doc.display()));
            }
        }
        for span in spans {
            if let Some(path) = code_path(span) {
                if let Some(p) = check_code_path(doc, path) {
                    out.push(format!("{}:{n}: {p}", doc.display()));
                }
            }
        }
    }
    out
}

#[test]
fn every_link_and_repository_path_in_the_documents_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(root().join(&doc))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
        problems.extend(problems_in(&doc, &text));
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected README.md, DESIGN.md, python/README.md and docs/"
    );
    assert!(
        problems.is_empty(),
        "{} broken link(s) or path(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_checker_sees_what_it_is_meant_to_see() {
    let doc = Path::new("docs/example.md");
    let text = "# Title\n\n## A `code` heading, again!\n\n\
        [ok](../README.md) [ok](performance.md) [self](#title) [web](https://example.org/x)\n\
        [bad](missing.md) [out](../../shared/bench/README.md) [anchor](#nope)\n\
        [heading](#a-code-heading-again)\n\
        `src/lib.rs` `tests/doc_links.rs::name` `src/nowhere.rs` `cargo test` `src/*.rs`\n\
        `fuzz/target/nosan` `tests/async/test_x.py` `src/lib.rs:12`\n\
        ```sh\n[fenced](nowhere.md) `src/fenced.rs`\n```\n\
        [ref]: nowhere-either.md\n";
    let found = problems_in(doc, text);
    let wanted = [
        "missing.md",
        "../../shared/bench/README.md",
        "#nope",
        "src/nowhere.rs",
        "nowhere-either.md",
    ];
    for w in wanted {
        assert!(
            found.iter().any(|p| p.contains(w)),
            "{w} not reported: {found:#?}"
        );
    }
    assert_eq!(found.len(), wanted.len(), "{found:#?}");
    assert_eq!(slug(" A `code` heading, again!"), "a-code-heading-again");
    assert_eq!(anchors("# A\n## A\n```\n# not\n```\n"), ["a", "a-1"]);
}

/// Source files under `root/dir`, relative to `root`.
fn sources(root: &Path, dir: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for e in entries.flatten() {
        let name = format!("{dir}/{}", e.file_name().to_string_lossy());
        if e.path().is_dir() {
            sources(root, &name, out);
        } else if name.ends_with(".rs") {
            out.push(name);
        }
    }
}

#[test]
fn designs_layout_names_every_source_file() {
    // DESIGN.md's layout is one line per file: each file of the library and the tool is named
    // in it (in backticks), or its folder is (`cli/src/batch/`, whose files the line lists).
    let root = root();
    let design = std::fs::read_to_string(root.join("DESIGN.md")).unwrap();
    let mut files = vec![];
    sources(&root, "src", &mut files);
    sources(&root, "cli/src", &mut files);
    assert!(files.len() > 40, "found only {files:?}");
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| {
            let folder = format!("{}/", Path::new(f).parent().unwrap().display());
            !design.contains(&format!("`{f}`")) && !design.contains(&format!("`{folder}`"))
        })
        .collect();
    assert!(missing.is_empty(), "not in DESIGN.md's layout: {missing:?}");
}
