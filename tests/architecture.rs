//! The module graph has no cycles: between the top-level modules of `src/` (an edge `a → b` is
//! a `crate::b` path in a file of `a`), and between the step modules of `src/steps/` (a
//! `super::x` or `crate::steps::x` path in `steps/y.rs`). The edges are read from the source
//! text, leaving out comments and `#[cfg(test)]` items, `tests.rs` files and the test-only
//! builders in [`TEST_ONLY`]: tests may reach anywhere.
//!
//! When this fails it names the cycle and, for each edge, a file that makes it. Break it by
//! moving what both sides need into a module below both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files that only tests and benches use, although they are not `#[cfg(test)]`.
const TEST_ONLY: [&str; 1] = ["observe/fixtures.rs"];

/// `from → to → a file (relative to src/) that makes the edge`.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comment lines and without the items marked `#[cfg(test)]`.
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        if t.starts_with("#[cfg(test)]") {
            skip_item(&mut lines);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Skip the item after an attribute: up to a `;` before any `{`, or to the matching `}`.
fn skip_item<'a>(lines: &mut impl Iterator<Item = &'a str>) {
    let mut depth = 0i64;
    let mut opened = false;
    for line in lines {
        let t = line.trim_start();
        if t.starts_with("//") || (!opened && t.starts_with("#[")) {
            continue;
        }
        for c in code_chars(line) {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                ';' if !opened => return,
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return;
        }
    }
}

/// The characters of a line outside string and character literals and `//` comments.
fn code_chars(line: &str) -> Vec<char> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            '\'' if chars.get(i + 1) == Some(&'\\') => {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
            }
            '\'' if chars.get(i + 2) == Some(&'\'') => i += 2,
            '/' if chars.get(i + 1) == Some(&'/') => break,
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Every non-test source file: its path relative to src/ and its code.
fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let rel = p
                .strip_prefix(src())
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            let test_only = rel.ends_with("/tests.rs") || TEST_ONLY.contains(&rel.as_str());
            if test_only {
                return None;
            }
            let text = std::fs::read_to_string(&p).ok()?;
            Some((rel, non_test_code(&text)))
        })
        .collect()
}

/// The module path of a file relative to src/: `plan/transform/mod.rs` → `plan::transform`,
/// `lib.rs` and `main.rs` → the crate root (empty).
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The paths of a use tree at the start of `s`: `a::{b, c::d}` → `a::b`, `a::c::d`.
fn use_tree(s: &str) -> Vec<Vec<String>> {
    fn tree(s: &[char], i: &mut usize) -> Vec<Vec<String>> {
        let skip_ws = |i: &mut usize| {
            while *i < s.len() && s[*i].is_whitespace() {
                *i += 1;
            }
        };
        skip_ws(i);
        if s.get(*i) == Some(&'{') {
            *i += 1;
            let mut out = Vec::new();
            loop {
                out.extend(tree(s, i));
                skip_ws(i);
                match s.get(*i) {
                    Some(',') => *i += 1,
                    Some('}') => {
                        *i += 1;
                        return out;
                    }
                    _ => return out,
                }
                skip_ws(i);
                if s.get(*i) == Some(&'}') {
                    *i += 1;
                    return out;
                }
            }
        }
        let start = *i;
        while *i < s.len() && (s[*i].is_alphanumeric() || s[*i] == '_') {
            *i += 1;
        }
        let seg: String = s[start..*i].iter().collect();
        if seg.is_empty() {
            return vec![vec![]];
        }
        if s.get(*i) == Some(&':') && s.get(*i + 1) == Some(&':') {
            *i += 2;
            let rest = tree(s, i);
            return rest
                .into_iter()
                .map(|mut r| {
                    r.insert(0, seg.clone());
                    r
                })
                .collect();
        }
        vec![vec![seg]]
    }
    let chars: Vec<char> = s.chars().take(2000).collect();
    tree(&chars, &mut 0)
}

/// Every module path the code of the file `rel` names, made absolute: `crate::a::b`,
/// `super::x` (from `rel`'s parent), `super::super::y`, `use` groups expanded.
fn referenced_paths(rel: &str, code: &str) -> Vec<Vec<String>> {
    let here = module_path(rel);
    let mut out = Vec::new();
    for prefix in ["crate::", "super::"] {
        for (i, _) in code.match_indices(prefix) {
            let before = code[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut base: Vec<String> = if prefix == "crate::" {
                Vec::new()
            } else {
                here[..here.len().saturating_sub(1)].to_vec()
            };
            let paths = use_tree(&code[i + prefix.len()..]);
            for p in paths {
                let mut abs = base.clone();
                for seg in p {
                    match seg.as_str() {
                        "super" => {
                            abs.pop();
                        }
                        "self" => {}
                        _ => abs.push(seg),
                    }
                }
                out.push(abs);
            }
            base.clear();
        }
    }
    out
}

/// The edges between the submodules of the folder `dir` (a module path; empty for src/): an
/// edge `a → b` when a file of `a` names a path into `b`.
fn folder_graph(files: &[(String, String)], dir: &[String]) -> Graph {
    let child =
        |m: &[String]| (m.len() > dir.len() && m.starts_with(dir)).then(|| m[dir.len()].clone());
    let names: BTreeSet<String> = files
        .iter()
        .filter_map(|(rel, _)| child(&module_path(rel)))
        .collect();
    let mut g = Graph::new();
    for (rel, code) in files {
        let Some(from) = child(&module_path(rel)) else {
            continue;
        };
        for p in referenced_paths(rel, code) {
            if let Some(to) = child(&p).filter(|t| names.contains(t)) {
                add(&mut g, &from, &to, rel);
            }
        }
    }
    g
}

fn add(g: &mut Graph, from: &str, to: &str, rel: &str) {
    if from != to {
        g.entry(from.into())
            .or_default()
            .entry(to.into())
            .or_insert_with(|| rel.into());
    }
}

/// Every folder of src/ (as module paths), the crate root first.
fn folders(files: &[(String, String)]) -> BTreeSet<Vec<String>> {
    files
        .iter()
        .filter_map(|(rel, _)| {
            let m = module_path(rel);
            let is_dir = rel.contains('/') || m.is_empty();
            is_dir.then(|| {
                let depth = rel.matches('/').count();
                m[..depth.min(m.len())].to_vec()
            })
        })
        .collect()
}

/// A cycle as `a → b (file) → … → a`, if there is one.
fn find_cycle(g: &Graph) -> Option<String> {
    fn visit(g: &Graph, n: &str, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> bool {
        if let Some(at) = stack.iter().position(|s| s == n) {
            stack.drain(..at);
            return true;
        }
        if done.contains(n) {
            return false;
        }
        stack.push(n.to_string());
        for next in g.get(n).into_iter().flat_map(|e| e.keys()) {
            if visit(g, next, stack, done) {
                return true;
            }
        }
        stack.pop();
        done.insert(n.to_string());
        false
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        let mut stack = Vec::new();
        if visit(g, n, &mut stack, &mut done) {
            let mut words = vec![stack[0].clone()];
            for (i, from) in stack.iter().enumerate() {
                let to = &stack[(i + 1) % stack.len()];
                words.push(format!("→ {to} ({})", g[from][to]));
            }
            return Some(words.join(" "));
        }
    }
    None
}

#[test]
fn no_folder_of_src_has_a_module_cycle() {
    let files = sources();
    let dirs = folders(&files);
    let covered: Vec<String> = dirs
        .iter()
        .map(|d| format!("src/{}", d.join("/")))
        .collect();
    for must in [
        "src/",
        "src/plan",
        "src/plan/transform",
        "src/diff",
        "src/config",
        "src/steps",
    ] {
        assert!(
            covered.iter().any(|c| c == must),
            "{must} not read: {covered:?}"
        );
    }
    let root = folder_graph(&files, &[]);
    assert!(root.contains_key("cli"), "no edges read: {root:?}");
    let steps = folder_graph(&files, &["steps".to_string()]);
    assert!(steps.contains_key("rewind"), "no edges read: {steps:?}");
    let mut cycles = Vec::new();
    for d in &dirs {
        if let Some(c) = find_cycle(&folder_graph(&files, d)) {
            cycles.push(format!("src/{}: {c}", d.join("/")));
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_sees_a_cycle_and_skips_tests() {
    let files = vec![
        (
            "a/mod.rs".to_string(),
            non_test_code("use crate::{b::X, units};\n"),
        ),
        (
            "b/mod.rs".to_string(),
            non_test_code(
                "// crate::c in a comment\nuse crate::a::Y;\n#[cfg(test)]\nmod tests {\n    \
                 fn f() { let _ = '{'; crate::c::z(); }\n}\nfn g() {}\n",
            ),
        ),
        (
            "c.rs".to_string(),
            non_test_code("#[cfg(test)]\nmod tests;\n"),
        ),
    ];
    let g = folder_graph(&files, &[]);
    let nested = referenced_paths(
        "x/y/z.rs",
        "use super::super::w::{V, u::T};\nsuper::q::f();",
    );
    assert_eq!(
        nested,
        vec![
            vec!["x", "w", "V"],
            vec!["x", "w", "u", "T"],
            vec!["x", "y", "q", "f"]
        ]
    );
    assert_eq!(
        find_cycle(&g).as_deref(),
        Some("a → b (a/mod.rs) → a (b/mod.rs)")
    );
    assert!(!g["b"].contains_key("c"), "{g:?}");
    assert!(files[1].1.contains("fn g()"), "{}", files[1].1);
}
