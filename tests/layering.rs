//! The one-way rule (DESIGN.md, "Layers"): a module of the library may refer (`crate::...`, in a
//! `use` or in a path in code) only to modules of its own layer or a lower one, and the graph of
//! the top-level modules has no cycle. This test reads every file under `src/` (but `lib.rs`, the
//! crate root that re-exports, `bin/`, which is another crate, and `fault.rs`, test-only fault
//! injection), maps it to its top-level module, collects every `crate::` reference outside
//! comments, strings and character literals, and fails with the list of those that point up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom (0) to top. A module may use only its own layer or lower ones.
const LAYERS: &[(&str, u32)] = &[
    // 0: platform code and utilities
    ("sys", 0),
    ("deadline", 0),
    // 1: plain data
    ("record", 1),
    ("spec", 1),
    ("error", 1),
    ("events", 1),
    ("config", 1),
    ("job", 1),
    ("watch", 1),
    // 2: a job's streams
    ("output", 2),
    // 3: where a job runs
    ("backend", 3),
    // 4: the engine (lock, condvars, channels, threads, scheduler)
    ("engine", 4),
    // 5: the public API
    ("manager", 5),
    // 6: built on the API
    ("plugin", 6),
    ("signal", 6),
];

/// References that point up today and are known, each as (from, to): the test fails if one
/// disappears (remove it here) or a new one appears. Empty: the rule holds everywhere.
const KNOWN: &[(&str, &str)] = &[];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source with comments, string literals and character literals blanked out (so that a
/// doc link such as `[x](crate::ProcessManager)` is no dependency).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !is_ident(b[i - 1]))
        {
            // A raw string: r"...", r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat(b'#').take(hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A character literal ('x', '\n', '\'', '"'), else a lifetime ('a).
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 3;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&b'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                // A multi-byte character literal, or a lifetime.
                let len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                if b.get(i + 1 + len) == Some(&b'\'') {
                    i += len + 2;
                    out.push_str("' '");
                } else {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let len = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn ident_at(s: &str) -> &str {
    let end = s.bytes().position(|c| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// The first segment of every `crate::` path in `code`, grouped ones (`crate::{a, b::c}`)
/// included.
fn crate_refs(code: &str) -> Vec<String> {
    let mut refs = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        let before = code[..start].bytes().next_back();
        if before.is_some_and(|c| is_ident(c) || c == b'$') {
            continue;
        }
        let rest = code[from..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // The top-level items of the group, up to its closing brace.
            let mut depth = 0;
            let mut item_start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 0 => {
                        item_start = false;
                        let id = ident_at(&group[k..]);
                        if !id.is_empty() {
                            refs.push(id.to_owned());
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let id = ident_at(rest);
            if !id.is_empty() {
                refs.push(id.to_owned());
            }
        }
    }
    refs
}

/// The first segment after every `super::` chain in `code` that climbs out of the crate's
/// top-level modules, for a file at `depth` (1: `src/a.rs` or `src/a/mod.rs`; 2: `src/a/b.rs`):
/// `super::manager::Handle` in `src/engine/mod.rs` is a reference to `manager`. Only names of
/// top-level modules (`modules`) count: a `mod tests` inside a file adds a level this count
/// does not see, and its `super::item` stays in the file's own module.
fn super_refs(code: &str, depth: usize, modules: &BTreeSet<String>) -> Vec<String> {
    let mut refs = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("super::") {
        let start = from + at;
        from = start + "super::".len();
        let adjacent = code[..start].bytes().next_back().is_some_and(is_ident);
        if adjacent || code[..start].trim_end().ends_with("::") {
            continue;
        }
        let mut ups = 1;
        let mut rest = &code[from..];
        while let Some(r) = rest.trim_start().strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        from = code.len() - rest.len();
        if ups < depth {
            continue;
        }
        let id = ident_at(rest.trim_start());
        if modules.contains(id) {
            refs.push(id.to_owned());
        }
    }
    refs
}

/// The crate's top-level modules, as `lib.rs` declares them (`mod x;`, `pub mod x;`, inline
/// `pub mod x { ... }`).
fn root_modules(lib: &str) -> BTreeSet<String> {
    let code = code_only(lib);
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .filter(|w| w[0] == "mod")
        .map(|w| w[1].to_owned())
        .collect()
}

/// What the crate root re-exports, by name: `pub use engine::retain::Retention` gives
/// `Retention -> engine`. A path `crate::Retention` depends on that module.
fn root_exports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let code = code_only(lib);
    for stmt in code.split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path.trim().trim_start_matches("crate::");
        let module = ident_at(path).to_owned();
        let names: Vec<&str> = match (path.find('{'), path.rfind('}')) {
            (Some(a), Some(b)) => path[a + 1..b].split(',').collect(),
            _ => vec![path.rsplit("::").next().unwrap_or("")],
        };
        for n in names {
            let n = n.trim().rsplit("::").next().unwrap_or("").trim();
            if !n.is_empty() {
                map.insert(n.to_owned(), module.clone());
            }
        }
    }
    map
}

/// The top-level module a file belongs to (`src/backend/slurm/poll.rs` -> `backend`), or `None`
/// for the files this test does not judge.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    if rel.components().count() == 1 {
        let name = first.strip_suffix(".rs")?;
        return match name {
            "lib" | "fault" => None,
            _ => Some(name.to_owned()),
        };
    }
    (first != "bin").then(|| first.to_owned())
}

/// How deep the module of `file` is: 1 for `src/a.rs` and `src/a/mod.rs`, 2 for `src/a/b.rs`
/// and `src/a/b/mod.rs`.
fn module_depth(src: &Path, file: &Path) -> usize {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let parts = rel.components().count();
    if rel.file_name().is_some_and(|n| n == "mod.rs") {
        parts - 1
    } else {
        parts
    }
}

/// One reference: (from module, to module) -> the files and paths that make it.
type Edges = BTreeMap<(String, String), BTreeSet<String>>;

fn edges() -> Edges {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let exports = root_exports(&lib);
    let modules = root_modules(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut edges = Edges::new();
    for file in files {
        let Some(from) = module_of(&src, &file) else {
            continue;
        };
        let code = code_only(&std::fs::read_to_string(&file).expect("a readable source file"));
        let depth = module_depth(&src, &file);
        let refs = crate_refs(&code)
            .into_iter()
            .chain(super_refs(&code, depth, &modules));
        for first in refs {
            let to = exports.get(&first).cloned().unwrap_or(first.clone());
            // `fault` is test-only fault injection, called from `#[cfg(test)]` lines anywhere.
            if to == from || to == "self" || to == "fault" {
                continue;
            }
            let rel = file
                .strip_prefix(&src)
                .unwrap_or(&file)
                .display()
                .to_string();
            edges
                .entry((from.clone(), to))
                .or_default()
                .insert(format!("{rel}: crate::{first}"));
        }
    }
    edges
}

/// A cycle in the module graph, if there is one: the modules around it, first one repeated.
fn find_cycle(edges: &Edges) -> Option<Vec<String>> {
    let mut graph: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().push(to);
    }
    // 0 unseen, 1 on the current path, 2 done.
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        mark: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match mark.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = path.iter().position(|&p| p == n).unwrap_or(0);
                let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        mark.insert(n, 1);
        path.push(n);
        for &m in graph.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(c) = visit(m, graph, mark, path) {
                return Some(c);
            }
        }
        path.pop();
        mark.insert(n, 2);
        None
    }
    let mut mark = BTreeMap::new();
    let nodes: Vec<&str> = graph.keys().copied().collect();
    nodes
        .into_iter()
        .find_map(|n| visit(n, &graph, &mut mark, &mut Vec::new()))
}

#[test]
fn no_module_refers_to_a_higher_layer() {
    let edges = edges();
    let mut unknown = Vec::new();
    let mut upward = BTreeSet::new();
    let mut report = String::new();
    for ((from, to), sites) in &edges {
        match (layer(from), layer(to)) {
            (Some(f), Some(t)) if t > f => {
                upward.insert((from.as_str(), to.as_str()));
                if !KNOWN.contains(&(from.as_str(), to.as_str())) {
                    report.push_str(&format!(
                        "\n{from} (layer {f}) -> {to} (layer {t}):\n    {}",
                        sites.iter().cloned().collect::<Vec<_>>().join("\n    ")
                    ));
                }
            }
            (Some(_), Some(_)) => {}
            (None, _) => unknown.push(from.clone()),
            (_, None) => unknown.push(to.clone()),
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(
        unknown.is_empty(),
        "modules missing from LAYERS in tests/layering.rs (give each a layer): {unknown:?}"
    );
    assert!(
        report.is_empty(),
        "modules that refer to a higher layer (see the table in tests/layering.rs):{report}"
    );
    let gone: Vec<_> = KNOWN.iter().filter(|k| !upward.contains(k)).collect();
    assert!(
        gone.is_empty(),
        "known upward references that are gone (remove them from KNOWN): {gone:?}"
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    let edges = edges();
    if let Some(cycle) = find_cycle(&edges) {
        let mut msg = format!("a cycle of modules: {}", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            if let Some(sites) = edges.get(&(pair[0].clone(), pair[1].clone())) {
                msg.push_str(&format!(
                    "\n{} -> {}:\n    {}",
                    pair[0],
                    pair[1],
                    sites.iter().cloned().collect::<Vec<_>>().join("\n    ")
                ));
            }
        }
        panic!("{msg}");
    }
}

#[test]
fn references_are_found_in_groups_and_paths_but_not_in_comments() {
    let code = code_only(
        "use crate::{a, b::{c, d}, e::f};\n// crate::commented\n/// [x](crate::doc)\n\
         let s = \"crate::string\"; let c = '\"'; fn f<'a>() { crate::g::h(); }\n\
         $crate::macro_path; my_crate::other;",
    );
    assert_eq!(crate_refs(&code), ["a", "b", "e", "g"]);
    let modules: BTreeSet<String> = ["engine", "manager"].map(String::from).into();
    let code = code_only(
        "use super::manager::Handle; use super::super::engine::Inner; use super::{x, y};\n\
         fn f() { self::super::manager::g(); super::engine::h() }",
    );
    // From `src/engine/sched.rs` (depth 2) only the double climb leaves `engine`; from
    // `src/engine/mod.rs` (depth 1) every climb does.
    assert_eq!(super_refs(&code, 2, &modules), ["engine"]);
    assert_eq!(
        super_refs(&code, 1, &modules),
        ["manager", "engine", "engine"]
    );
    assert!(root_modules("mod a;\n#[cfg(test)]\nmod b;\npub mod c { pub use x; }").len() == 3);
    let exports =
        root_exports("pub use engine::retain::Retention;\npub use record::{JobId, JobRecord};");
    assert_eq!(exports["Retention"], "engine");
    assert_eq!(exports["JobRecord"], "record");
}
