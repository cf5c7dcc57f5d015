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

/// The modules named right after `prefix` in the code: `b` in `crate::b::c`, and `b`, `c` in
/// `super::{b, c::D}`.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| {
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        s[..end].to_string()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(inner.split(',').map(|item| ident(item.trim())));
            }
            None => out.push(ident(rest)),
        }
    }
    out.retain(|m| !m.is_empty());
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

/// The module a file belongs to at the level below `dir` ("" for src/ itself).
fn module_under(rel: &str, dir: &str) -> Option<String> {
    let rest = if dir.is_empty() {
        rel
    } else {
        rel.strip_prefix(dir)?.strip_prefix('/')?
    };
    let first = rest.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "mod")).then(|| name.to_string())
}

fn add(g: &mut Graph, from: &str, to: &str, rel: &str) {
    if from != to {
        g.entry(from.into())
            .or_default()
            .entry(to.into())
            .or_insert_with(|| rel.into());
    }
}

fn top_level_graph(files: &[(String, String)]) -> Graph {
    let mut g = Graph::new();
    for (rel, code) in files {
        let Some(from) = module_under(rel, "") else {
            continue;
        };
        for to in paths_after(code, "crate::") {
            add(&mut g, &from, &to, rel);
        }
    }
    g
}

/// Edges between the submodules of `src/<dir>/`.
fn submodule_graph(files: &[(String, String)], dir: &str) -> Graph {
    let names: BTreeSet<String> = files
        .iter()
        .filter_map(|(rel, _)| module_under(rel, dir))
        .collect();
    let mut g = Graph::new();
    let crate_prefix = format!("crate::{dir}::");
    for (rel, code) in files {
        let Some(from) = module_under(rel, dir) else {
            continue;
        };
        let mut targets = paths_after(code, "super::");
        targets.extend(paths_after(code, &crate_prefix));
        for to in targets.iter().filter(|t| names.contains(*t)) {
            add(&mut g, &from, to, rel);
        }
    }
    g
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
fn top_level_modules_have_no_cycle() {
    let g = top_level_graph(&sources());
    assert!(g.contains_key("cli"), "no edges read: {g:?}");
    if let Some(c) = find_cycle(&g) {
        panic!("module cycle: {c}");
    }
}

#[test]
fn step_modules_have_no_cycle() {
    let g = submodule_graph(&sources(), "steps");
    assert!(g.contains_key("rewind"), "no edges read: {g:?}");
    if let Some(c) = find_cycle(&g) {
        panic!("steps module cycle: {c}");
    }
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
    let g = top_level_graph(&files);
    assert_eq!(
        find_cycle(&g).as_deref(),
        Some("a → b (a/mod.rs) → a (b/mod.rs)")
    );
    assert!(!g["b"].contains_key("c"), "{g:?}");
    assert!(files[1].1.contains("fn g()"), "{}", files[1].1);
}
