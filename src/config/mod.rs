//! Topology file → validated [`Desired`] topology.
//!
//! Two stages, as in ripgrep's argument parsing, and every problem of every stage is collected
//! and reported at once as miette diagnostics:
//!
//! 1. [`yaml`]: the text is parsed with yaml-rust2's marked event parser into a tree in which
//!    every key and value carries a byte span ([`yaml::SpanIndex`] maps `nodes.n2.upstream` to
//!    them). Malformed YAML stops here with a labelled diagnostic.
//! 2. [`structure`] walks that tree along the JSON Schema generated from [`TopologyFile`] (unknown
//!    keys, missing keys, wrong types, bad enum values, sizes, durations, inline passwords) and
//!    [`rules`] checks the topology itself (one primary, upstreams, addresses, synchronous
//!    standbys, owned settings, hba trust). Both read the tree leniently, so one run reports a
//!    misspelt key of one node together with a second primary elsewhere.
//!
//! Only when nothing was found does serde deserialise the text into [`TopologyFile`] (its
//! `deny_unknown_fields` model stays the authority; a disagreement still comes out as a labelled
//! diagnostic), and [`resolve`] fills in defaults to produce [`Desired`].
//!
//! IO: [`load`] reads the file it is given; resolution may look for the default bin directory
//! (see [`resolve`]). Nothing else. Secrets: an inline password is refused and its text is masked
//! in the source shown by every diagnostic (see [`diag`]).

pub mod archive;
pub mod archive_rules;
pub mod diag;
pub mod logical;
pub mod model;
pub mod names;
pub mod pooler;
pub mod pooler_rules;
pub mod preferences;
pub mod resolve;
pub mod rules;
pub mod rules_tls;
pub mod secret;
pub mod service;
pub mod ssh;
pub mod structure;
pub mod sync_names;
pub mod write;
pub mod yaml;

pub use model::*;
pub use secret::Secret;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::NamedSource;
use sha2::{Digest, Sha256};

use diag::{ConfigError, Source};
use resolve::BinDirProbe;
use yaml::{Node, Span, Value};

/// Read, parse and validate a topology file. On error the report holds every diagnostic.
pub fn load(path: &Path) -> Result<Desired, miette::Report> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| {
        let (why, help) = match e.kind() {
            std::io::ErrorKind::NotFound => (
                "it does not exist".to_string(),
                "create it, or point pgtopo at another file with -f/--file or PGTOPO_FILE",
            ),
            std::io::ErrorKind::PermissionDenied => (
                "permission denied".to_string(),
                "make the file readable by the user running pgtopo",
            ),
            _ => (
                e.to_string(),
                "check the path given with -f/--file or PGTOPO_FILE",
            ),
        };
        diag::report(
            &name,
            None,
            vec![ConfigError::new(
                "unreadable",
                format!("cannot read the topology file {name}: {why}"),
            )
            .help(help)],
        )
    })?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
            let at = lossy
                .char_indices()
                .map(|(i, _)| i)
                .find(|i| *i >= at)
                .unwrap_or(lossy.len());
            let source = source(&name, &lossy, &diag::password_spans_by_line(&lossy));
            return Err(diag::report(
                &name,
                Some(&source),
                vec![
                    ConfigError::new("encoding", format!("{name} is not UTF-8 text"))
                        .label(Span::new(at, at + 1), "invalid byte here")
                        .help("save the topology file as UTF-8"),
                ],
            ));
        }
    };
    load_with(&name, path, &text, resolve::default_bin_dir)
}

/// Validate topology text as if read from `file_name` (for tests and tools). `source_path` is
/// `file_name`; `sha256` is the hash of the text's bytes.
pub fn load_str(file_name: &str, text: &str) -> Result<Desired, miette::Report> {
    load_with(
        file_name,
        Path::new(file_name),
        text,
        resolve::default_bin_dir,
    )
}

/// [`load_str`] with the default bin directory given instead of looked for: no IO at all.
pub fn load_str_with(
    file_name: &str,
    text: &str,
    default_bin_dir: BinDirProbe,
) -> Result<Desired, miette::Report> {
    load_with(file_name, Path::new(file_name), text, default_bin_dir)
}

fn source(name: &str, text: &str, secrets: &[Span]) -> Source {
    NamedSource::new(name, Arc::new(diag::mask(text, secrets))).with_language("yaml")
}

fn load_with(
    name: &str,
    path: &Path,
    text: &str,
    probe: BinDirProbe,
) -> Result<Desired, miette::Report> {
    let doc = match yaml::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let src = source(name, text, &diag::password_spans_by_line(text));
            let err = ConfigError::new("yaml", e.message)
                .label(e.span, "here")
                .help(e.help);
            return Err(diag::report(name, Some(&src), vec![err]));
        }
    };
    let Some(root) = doc.root else {
        return Err(diag::report(
            name,
            None,
            vec![ConfigError::new("empty", format!("{name} is empty"))
                .help("declare at least `cluster:` and `nodes:`; see `pgtopo schema`")],
        ));
    };
    let (secret_spans, secret_texts) = inline_secrets(&root);
    let src = source(name, text, &secret_spans);
    if !matches!(root.value, Value::Map(_)) {
        let err = ConfigError::new(
            "wrong_type",
            format!(
                "a topology file is a mapping of keys (cluster, nodes, …), found {}",
                root.describe()
            ),
        )
        .label(
            Span::new(root.span.start, root.span.start),
            "expected `key: value` lines",
        )
        .help("start with `cluster: NAME` and `nodes:`; see `pgtopo schema`");
        return Err(diag::report(name, Some(&src), vec![err]));
    }
    let mut errors: Vec<ConfigError> = doc
        .problems
        .into_iter()
        .map(|p| {
            let err = ConfigError::new("yaml", p.message);
            match p.also {
                Some(first) => err
                    .label(first, "first set here")
                    .label(p.span, "set again here"),
                None => err.label(p.span, "here"),
            }
            .help(p.help)
        })
        .collect();
    errors.extend(structure::check(&root));
    errors.extend(rules::check(&root));
    errors.extend(preferences::check(&root));
    if !errors.is_empty() {
        return Err(diag::report(name, Some(&src), errors));
    }
    let file: TopologyFile = serde_yaml::from_str(text).map_err(|e| {
        let span = e
            .location()
            .map(|l| {
                let at = byte_offset(text, l.line(), l.column());
                Span::new(at, at)
            })
            .unwrap_or_default();
        let message = diag::redact(&e.to_string(), &secret_texts);
        diag::report(
            name,
            Some(&src),
            vec![ConfigError::new("serde", message)
                .label(span, "here")
                .help("fix the value at this place; `pgtopo schema` describes every key")],
        )
    })?;
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    Ok(resolve::resolve(file, PathBuf::from(path), sha256, probe))
}

/// Spans and texts of secret-looking scalars: a value written under a `password` key anywhere in
/// the document, and inside such a value every scalar but the `env` / `file` reference names.
fn inline_secrets(root: &Node) -> (Vec<Span>, Vec<String>) {
    fn secret(node: &Node, spans: &mut Vec<Span>, texts: &mut Vec<String>) {
        match &node.value {
            Value::Scalar(s, _) => {
                if !node.is_null() {
                    spans.push(node.span);
                    texts.push(s.clone());
                }
            }
            Value::Seq(items) => items.iter().for_each(|n| secret(n, spans, texts)),
            Value::Map(entries) => {
                for e in entries {
                    let reference = matches!(e.key.as_str(), "env" | "file")
                        && matches!(e.value.value, Value::Scalar(..));
                    if !reference {
                        secret(&e.value, spans, texts);
                    }
                }
            }
        }
    }
    fn walk(node: &Node, spans: &mut Vec<Span>, texts: &mut Vec<String>) {
        match &node.value {
            Value::Scalar(..) => {}
            Value::Seq(items) => items.iter().for_each(|n| walk(n, spans, texts)),
            Value::Map(entries) => {
                for e in entries {
                    if e.key.eq_ignore_ascii_case("password") {
                        secret(&e.value, spans, texts);
                    } else {
                        walk(&e.value, spans, texts);
                    }
                }
            }
        }
    }
    let (mut spans, mut texts) = (Vec::new(), Vec::new());
    walk(root, &mut spans, &mut texts);
    (spans, texts)
}

/// 1-based line and column (in characters) → byte offset.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[line_start.min(text.len())..];
    line_start
        + rest
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_locations_become_byte_offsets() {
        let text = "a: 1\nbé: \"x\"\n";
        assert_eq!(byte_offset(text, 1, 1), 0);
        assert_eq!(&text[byte_offset(text, 2, 5)..], "\"x\"\n");
        assert_eq!(byte_offset(text, 9, 9), text.len());
    }

    #[test]
    fn secrets_are_found_under_password_keys_only() {
        let doc = yaml::parse(
            "connect: {password: s1}\nreplication:\n  password: {env: E, other: s2}\nx: {env: ok}\n",
        )
        .unwrap();
        let (spans, texts) = inline_secrets(&doc.root.unwrap());
        assert_eq!(texts, ["s1", "s2"]);
        assert_eq!(spans.len(), 2);
    }
}
