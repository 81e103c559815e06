//! The code's shape holds: no file compiled twice (`#[path]`), no `Result<_, String>` in
//! library code, thin mains, and inside every crate the modules form a DAG: no module
//! uses a sibling that uses it back, directly or through others, at any level.
//!
//! The module graph is read from the sources: every `crate::…`, `super::…` and
//! `self::…` path outside `#[cfg(test)]` code, `use` groups included, is resolved to the
//! deepest module it names, and each edge is counted between the two siblings under the
//! modules' common ancestor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose modules must form a DAG.
const CRATES: &[&str] = &["common", "agent", "aggregator"];
/// The binaries' entry points, each at most this many lines.
const MAIN_FILES: &[&str] =
    &["agent/src/main.rs", "aggregator/src/main.rs", "aggregator/src/bin/klaxon/main.rs"];
const MAX_MAIN_LINES: usize = 60;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// A file's text before its first `#[cfg(test)]`, comments removed.
fn non_test_code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read source");
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module path of a library file: `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`.
/// Binaries (`main.rs`, `src/bin/`) are not part of the library's graph.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let relative = file.strip_prefix(src).ok()?;
    if relative.starts_with("bin") || relative == Path::new("main.rs") {
        return None;
    }
    let mut parts: Vec<String> =
        relative.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned()).collect();
    if parts.last().is_some_and(|last| last == "mod" || last == "lib") {
        parts.pop();
    }
    Some(parts)
}

/// The paths a `use` tree names, expanded: `crate::{a, b::{c, d}}` → `crate::a`, …
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else { return vec![tree] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (index, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.is_empty())
        .flat_map(|item| expand_use_tree(&format!("{prefix}{item}")))
        .collect()
}

/// Every path in `code` that starts at `crate`, `super` or `self`, as written.
fn relative_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for statement in code.split(';') {
        if let Some(at) = statement.find("use ") {
            let tree = statement[at + 4..].trim();
            if tree.starts_with("crate::")
                || tree.starts_with("super::")
                || tree.starts_with("self::")
            {
                paths.extend(expand_use_tree(tree));
                continue;
            }
        }
        let bytes = statement.as_bytes();
        for start in ["crate::", "super::"] {
            let mut from = 0;
            while let Some(found) = statement[from..].find(start) {
                let begin = from + found;
                let end = statement[begin..]
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .map_or(statement.len(), |e| begin + e);
                // `$crate::`, `other::super::` and `my_crate::` are not paths from here.
                let inside = begin > 0 && {
                    let before = bytes[begin - 1];
                    before.is_ascii_alphanumeric() || matches!(before, b'_' | b'$' | b':')
                };
                if !inside {
                    paths.push(statement[begin..end].trim_end_matches(':').to_owned());
                }
                from = end.max(begin + 1);
            }
        }
    }
    paths
}

/// `path` as written in module `from`, as an absolute list of segments.
fn resolve(from: &[String], path: &str) -> Vec<String> {
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    let mut base: Vec<String> = from.to_vec();
    let mut out = Vec::new();
    let mut first = true;
    for segment in segments.by_ref() {
        match segment {
            "crate" if first => base.clear(),
            "self" if first => {}
            "super" => {
                base.pop();
            }
            other => {
                out.push(other.to_owned());
                break;
            }
        }
        first = false;
    }
    out.extend(segments.map(str::to_owned));
    base.extend(out);
    base
}

/// The crate's module graph: edges between siblings, keyed by their parent.
fn sibling_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<(String, String)>> {
    let files = rust_files(src);
    let modules: BTreeSet<Vec<String>> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in &files {
        let Some(from) = module_of(src, file) else { continue };
        for path in relative_paths(&non_test_code(file)) {
            let absolute = resolve(&from, &path);
            let target = (0..=absolute.len())
                .rev()
                .map(|len| absolute[..len].to_vec())
                .find(|prefix| modules.contains(prefix))
                .unwrap_or_default();
            let common = from.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if from.len() > common && target.len() > common {
                edges
                    .entry(from[..common].to_vec())
                    .or_default()
                    .insert((from[common].clone(), target[common].clone()));
            }
        }
    }
    edges
}

/// The groups of modules that reach each other through `edges` (each group a cycle).
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<BTreeSet<String>> {
    let reaches = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut pending = vec![from.clone()];
        while let Some(node) = pending.pop() {
            for (_, next) in edges.iter().filter(|(a, _)| *a == node) {
                if seen.insert(next.clone()) {
                    pending.push(next.clone());
                }
            }
        }
        seen
    };
    let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let reach: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|node| (*node, reaches(node))).collect();
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for node in &nodes {
        if !reach[node].contains(*node) || groups.iter().any(|g| g.contains(*node)) {
            continue;
        }
        let group = reach[node].iter().filter(|other| reach[other].contains(*node)).cloned();
        groups.push(group.collect());
    }
    groups
}

#[test]
fn modules_form_a_dag_in_every_crate() {
    let mut found = Vec::new();
    for name in CRATES {
        let src = workspace().join(name).join("src");
        for (parent, edges) in sibling_edges(&src) {
            for group in cycles(&edges) {
                let parent = if parent.is_empty() { "crate".to_owned() } else { parent.join("::") };
                let members: Vec<String> = group.into_iter().collect();
                let uses: Vec<String> = edges
                    .iter()
                    .filter(|(a, b)| members.contains(a) && members.contains(b))
                    .map(|(a, b)| format!("{a} uses {b}"))
                    .collect();
                found.push(format!("{name}, under {parent}: {}", uses.join(", ")));
            }
        }
    }
    assert!(found.is_empty(), "modules in a cycle:\n{}", found.join("\n"));
}

#[test]
fn the_cycle_check_sees_a_cycle_through_use_groups_and_super() {
    let dir = tempfile::tempdir().expect("dir");
    let src = dir.path();
    std::fs::create_dir_all(src.join("tail")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "pub mod tail;\npub mod ship;\n").expect("write");
    std::fs::write(src.join("tail/mod.rs"), "pub mod reader;\n").expect("write");
    std::fs::write(src.join("tail/reader.rs"), "use crate::{ship::{batch::Batch}, x};\n")
        .expect("write");
    std::fs::write(src.join("ship.rs"), "fn f() { let _ = crate::tail::reader::read(); }\n")
        .expect("write");
    let edges = sibling_edges(src);
    let both: BTreeSet<String> = ["ship".to_owned(), "tail".to_owned()].into();
    assert_eq!(cycles(&edges[&Vec::new()]), [both]);
    // Only one direction: no cycle.
    std::fs::write(src.join("ship.rs"), "fn f() {}\n#[cfg(test)]\nuse crate::tail::reader;\n")
        .expect("write");
    assert!(sibling_edges(src).values().all(|edges| cycles(edges).is_empty()));
    assert_eq!(resolve(&["a".into(), "b".into()], "super::super::c::d"), ["c", "d"]);
}

/// Whether `line` names a `Result<T, String>`: the error argument at the top level of
/// the `Result`'s own brackets is `String` (`Result<BTreeMap<String, String>, E>` is not).
fn returns_string_error(line: &str) -> bool {
    let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    compact.match_indices("Result<").any(|(at, found)| {
        let (mut depth, mut arguments, mut current) = (1, Vec::new(), String::new());
        for c in compact[at + found.len()..].chars() {
            match c {
                '<' | '(' => depth += 1,
                '>' | ')' => depth -= 1,
                ',' if depth == 1 => {
                    arguments.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            if depth == 0 {
                arguments.push(current);
                break;
            }
            current.push(c);
        }
        arguments.len() == 2 && arguments[1] == "String"
    })
}

#[test]
fn the_string_error_check_reads_the_result_brackets() {
    assert!(returns_string_error("pub fn f() -> Result<(), String> {"));
    assert!(returns_string_error(".collect::<Result<_, String>>()?;"));
    assert!(returns_string_error("fn g() -> Result<Vec<u8>, String>"));
    assert!(!returns_string_error("fn h(m: &BTreeMap<String, String>) -> Result<M, MatcherError>"));
    assert!(!returns_string_error("fn i() -> Result<String, Error>"));
}

#[test]
fn no_file_is_compiled_twice_and_libraries_return_typed_errors() {
    let mut found = Vec::new();
    for name in ["common", "agent", "aggregator", "tests"] {
        for file in rust_files(&workspace().join(name)) {
            let text = std::fs::read_to_string(&file).expect("read");
            let shown = file.strip_prefix(workspace()).unwrap_or(&file).display().to_string();
            if text.contains(&format!("#[{} =", "path")) {
                found.push(format!("{shown}: #[path]"));
            }
            let library = file.components().any(|c| c.as_os_str() == "src")
                && !file.components().any(|c| c.as_os_str() == "bin")
                && name != "tests"
                && file.file_name().is_some_and(|f| f != "main.rs");
            if library {
                let stringly = non_test_code(&file)
                    .lines()
                    .filter(|l| returns_string_error(l))
                    .map(|l| format!("{shown}: {}", l.trim()))
                    .collect::<Vec<_>>();
                found.extend(stringly);
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn every_main_is_thin() {
    let long: Vec<String> = MAIN_FILES
        .iter()
        .map(|file| (file, std::fs::read_to_string(workspace().join(file)).expect("read main")))
        .filter(|(_, text)| text.lines().count() > MAX_MAIN_LINES)
        .map(|(file, text)| format!("{file}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "over {MAX_MAIN_LINES} lines: {}", long.join(", "));
}
