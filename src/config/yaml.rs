//! The YAML document as a tree with byte spans, and the span index built from it.
//!
//! yaml-rust2's marked event parser gives the start [`Marker`] of every event, counted in
//! characters. This module turns the event stream into a small tree ([`Node`]) whose every key and
//! value carries a byte span ([`Span`], what miette wants), resolves aliases, and rejects what the
//! rest of the loader cannot represent (complex keys, several documents, absurd nesting). The tree
//! is what the structural checker and the semantic rules read, so they can point at the exact
//! offending key or value even when serde would have stopped at the first problem.
//!
//! Scalar end positions are not reported by the parser; they are recovered from the source text:
//! a plain scalar ends where its value ends on the line, a quoted one at its closing quote, and
//! anything else (block scalars, multi-line plain scalars) at the end of its first line.

use std::collections::{BTreeMap, HashMap};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A byte range of the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start,
            end: end.max(start),
        }
    }

    /// From the start of `self` to the end of `other`.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> Self {
        (s.start, s.end - s.start).into()
    }
}

/// How a scalar was written: it decides whether `5` is a number or `"5"` a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unquoted, untagged: resolved by the YAML 1.2 core schema (null, bool, int, float, string).
    Plain,
    /// Quoted, block or `!!str`: always a string.
    Quoted,
}

/// A value of the document.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(String, Style),
    Map(Vec<Entry>),
    Seq(Vec<Node>),
}

/// A value with the span it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// One `key: value` pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Entry {
    /// From the start of the key to the end of the value (`role: primary`).
    pub fn span(&self) -> Span {
        self.key_span.to(self.value.span)
    }
}

/// What a scalar resolves to under the YAML 1.2 core schema (what serde_yaml does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

impl Node {
    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The entry at a path of mapping keys.
    pub fn at(&self, path: &[&str]) -> Option<&Entry> {
        let (first, rest) = path.split_first()?;
        let mut entry = self.get(first)?;
        for k in rest {
            entry = entry.value.get(k)?;
        }
        Some(entry)
    }

    pub fn entries(&self) -> &[Entry] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    /// The resolved kind of a scalar; `None` for mappings and sequences.
    pub fn scalar_kind(&self) -> Option<ScalarKind> {
        match &self.value {
            Value::Scalar(s, Style::Quoted) => {
                let _ = s;
                Some(ScalarKind::Str)
            }
            Value::Scalar(s, Style::Plain) => Some(resolve_plain(s)),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.scalar_kind() == Some(ScalarKind::Null)
    }

    /// The text of a scalar that is not null (any non-null scalar reads as a string, as in serde_yaml).
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s, _) if !self.is_null() => Some(s),
            _ => None,
        }
    }

    /// An integer scalar.
    pub fn as_int(&self) -> Option<i128> {
        match &self.value {
            Value::Scalar(s, Style::Plain) => parse_int(s),
            _ => None,
        }
    }

    /// A boolean scalar.
    pub fn as_bool(&self) -> Option<bool> {
        match &self.value {
            Value::Scalar(s, Style::Plain) => parse_bool(s),
            _ => None,
        }
    }

    /// A short description of what the value is, for "found …" messages. Never the value itself.
    pub fn describe(&self) -> &'static str {
        match (&self.value, self.scalar_kind()) {
            (Value::Map(_), _) => "a mapping",
            (Value::Seq(_), _) => "a list",
            (_, Some(ScalarKind::Null)) => "nothing (null)",
            (_, Some(ScalarKind::Bool)) => "a boolean",
            (_, Some(ScalarKind::Int)) => "an integer",
            (_, Some(ScalarKind::Float)) => "a number",
            _ => "a string",
        }
    }
}

fn resolve_plain(s: &str) -> ScalarKind {
    if matches!(s, "" | "~" | "null" | "Null" | "NULL") {
        ScalarKind::Null
    } else if parse_bool(s).is_some() {
        ScalarKind::Bool
    } else if parse_int(s).is_some() {
        ScalarKind::Int
    } else if parse_float(s) {
        ScalarKind::Float
    } else {
        ScalarKind::Str
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_int(s: &str) -> Option<i128> {
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let v = if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i128::from_str_radix(oct, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

fn parse_float(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let t = lower.trim_start_matches(['+', '-']);
    if matches!(t, ".inf" | ".nan") {
        return true;
    }
    t.bytes().any(|b| b.is_ascii_digit())
        && t.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
        && s.parse::<f64>().is_ok()
}

/// A problem found while reading the YAML itself.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
    pub help: String,
    /// A second place involved (the first occurrence of a duplicate key).
    pub also: Option<Span>,
}

/// The parsed document: the root node (absent for an empty file) and structural complaints that
/// do not stop parsing (duplicate keys, complex keys).
#[derive(Debug, Clone)]
pub struct Document {
    pub root: Option<Node>,
    pub problems: Vec<SyntaxError>,
}

/// Nesting deeper than this is refused (serde_yaml refuses at 128 too).
const MAX_DEPTH: usize = 100;
/// Alias expansion budget, against "billion laughs" documents.
const MAX_NODES: usize = 200_000;

/// Parse `text` into a [`Document`]; a syntax error stops parsing.
pub fn parse(text: &str) -> Result<Document, SyntaxError> {
    let offsets = CharOffsets::new(text);
    let mut builder = Builder {
        text,
        offsets: &offsets,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        documents: 0,
        problems: Vec::new(),
        fatal: None,
        nodes: 0,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let at = offsets.byte(e.marker().index());
        return Err(SyntaxError {
            message: format!("malformed YAML: {}", e.info()),
            span: Span::new(at, at + next_char_len(text, at)),
            help: "fix the YAML syntax at this point (indentation, a missing `:` or quote, \
                   tabs used for indentation)"
                .into(),
            also: None,
        });
    }
    if let Some(fatal) = builder.fatal {
        return Err(fatal);
    }
    Ok(Document {
        root: builder.root,
        problems: builder.problems,
    })
}

fn next_char_len(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|s| s.chars().next())
        .map_or(0, char::len_utf8)
}

/// Character index → byte offset.
struct CharOffsets {
    bytes: Vec<usize>,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let mut bytes: Vec<usize> = text.char_indices().map(|(b, _)| b).collect();
        bytes.push(text.len());
        CharOffsets { bytes }
    }
    fn byte(&self, char_index: usize) -> usize {
        self.bytes
            .get(char_index)
            .copied()
            .unwrap_or_else(|| *self.bytes.last().unwrap_or(&0))
    }
}

enum Frame {
    Map {
        start: usize,
        flow: bool,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<Node>,
    },
    Seq {
        start: usize,
        flow: bool,
        anchor: usize,
        items: Vec<Node>,
    },
}

struct Builder<'a> {
    text: &'a str,
    offsets: &'a CharOffsets,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    documents: usize,
    problems: Vec<SyntaxError>,
    fatal: Option<SyntaxError>,
    nodes: usize,
}

impl Builder<'_> {
    fn fail(&mut self, message: &str, span: Span, help: &str) {
        if self.fatal.is_none() {
            self.fatal = Some(SyntaxError {
                message: message.into(),
                span,
                help: help.into(),
                also: None,
            });
        }
    }

    fn scalar_end(&self, start: usize, value: &str, style: TScalarStyle) -> usize {
        let rest = &self.text[start.min(self.text.len())..];
        let line_end = start + rest.find('\n').unwrap_or(rest.len());
        let quoted_end = |q: u8, backslash: bool| -> Option<usize> {
            let bytes = rest.as_bytes();
            if bytes.first() != Some(&q) {
                return None;
            }
            let mut i = 1;
            while i < bytes.len() {
                let b = bytes[i];
                if backslash && b == b'\\' {
                    i += 2;
                    continue;
                }
                if b == q {
                    if !backslash && bytes.get(i + 1) == Some(&q) {
                        i += 2;
                        continue;
                    }
                    return Some(start + i + 1);
                }
                i += 1;
            }
            None
        };
        let end = match style {
            TScalarStyle::Plain if value.is_empty() => Some(start),
            TScalarStyle::Plain if rest.starts_with(value) => Some(start + value.len()),
            TScalarStyle::SingleQuoted => quoted_end(b'\'', false),
            TScalarStyle::DoubleQuoted => quoted_end(b'"', true),
            _ => None,
        };
        end.unwrap_or_else(|| {
            start
                + self.text[start.min(self.text.len())..line_end]
                    .trim_end()
                    .len()
        })
    }

    fn push(&mut self, node: Node) {
        self.nodes += 1;
        match self.stack.last_mut() {
            None => {
                if self.documents <= 1 {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    let key_span = k.span;
                    let key_text = match (&k.value, k.is_null()) {
                        (Value::Scalar(s, _), false) => s.clone(),
                        _ => {
                            let problem = SyntaxError {
                                message: "a key must be a plain name".into(),
                                span: key_span,
                                help: "write keys as plain words (`host: …`); lists, mappings \
                                       and empty keys cannot be keys here"
                                    .into(),
                                also: None,
                            };
                            self.problems.push(problem);
                            return;
                        }
                    };
                    if let Some(first) = entries.iter().find(|e| e.key == key_text) {
                        let first_span = first.key_span;
                        self.problems.push(SyntaxError {
                            message: format!("duplicate key `{key_text}`"),
                            span: key_span,
                            help: format!("`{key_text}` may be set once here; keep one of them"),
                            also: Some(first_span),
                        });
                        return;
                    }
                    entries.push(Entry {
                        key: key_text,
                        key_span,
                        value: node,
                    });
                }
            },
        }
    }

    fn remember(&mut self, anchor: usize, node: &Node, size: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.fatal.is_some() {
            return;
        }
        let at = self.offsets.byte(mark.index());
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail(
                        "more than one YAML document in the topology file",
                        Span::new(at, at + 3),
                        "keep a single document: remove the `---` separator and what follows",
                    );
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                self.scalar(value, style, anchor, tag.as_ref(), at)
            }
            Event::MappingStart(anchor, _) => self.collection_start(true, anchor, at),
            Event::SequenceStart(anchor, _) => self.collection_start(false, anchor, at),
            Event::MappingEnd | Event::SequenceEnd => self.collection_end(at),
            Event::Alias(id) => self.alias(id, at),
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

impl Builder<'_> {
    /// A scalar at byte `at`, with its span and its style (plain, or a string).
    fn scalar(
        &mut self,
        value: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<&Tag>,
        at: usize,
    ) {
        // An empty plain scalar (`host:` with nothing after it) is reported at the start
        // of the next token; place it right after the `:` or `-` that introduced it.
        let at = if value.is_empty() && style == TScalarStyle::Plain {
            if self.text.as_bytes().get(at) == Some(&b':') {
                at + 1
            } else {
                self.text[..at.min(self.text.len())].trim_end().len()
            }
        } else {
            at
        };
        let end = self.scalar_end(at, &value, style);
        let is_str_tag = tag.is_some_and(|t| t.suffix == "str");
        let st = if style == TScalarStyle::Plain && !is_str_tag {
            Style::Plain
        } else {
            Style::Quoted
        };
        let node = Node {
            value: Value::Scalar(value, st),
            span: Span::new(at, end),
        };
        self.remember(anchor, &node, 1);
        self.push(node);
    }

    /// A mapping (`map`) or a sequence opens at byte `at`, unless nesting is too deep.
    fn collection_start(&mut self, map: bool, anchor: usize, at: usize) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(
                "the document is nested too deeply",
                Span::new(at, at + 1),
                "a topology file needs only a few levels of nesting",
            );
            return;
        }
        let flow = matches!(self.text.as_bytes().get(at), Some(b'{' | b'['));
        self.stack.push(if map {
            Frame::Map {
                start: at,
                flow,
                anchor,
                entries: Vec::new(),
                key: None,
            }
        } else {
            Frame::Seq {
                start: at,
                flow,
                anchor,
                items: Vec::new(),
            }
        });
    }

    /// The innermost collection closes at byte `at`: it becomes a node of its parent.
    fn collection_end(&mut self, at: usize) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let (value, start, flow, anchor, first, last) = match frame {
            Frame::Map {
                start,
                flow,
                anchor,
                entries,
                ..
            } => {
                let first = entries.first().map(|e| e.key_span);
                let last = entries.last().map(|e| e.value.span);
                (Value::Map(entries), start, flow, anchor, first, last)
            }
            Frame::Seq {
                start,
                flow,
                anchor,
                items,
            } => {
                let first = items.first().map(|n| n.span);
                let last = items.last().map(|n| n.span);
                (Value::Seq(items), start, flow, anchor, first, last)
            }
        };
        let span = if flow {
            Span::new(start, at + 1)
        } else {
            // A block collection: from its start (the `-` of a list, the first key of a
            // mapping) to the end of its last value.
            let s = match (&value, first) {
                (Value::Map(_), Some(f)) => f.start,
                _ => start,
            };
            Span::new(s, last.map_or(s, |l| l.end))
        };
        let node = Node { value, span };
        let size = count(&node);
        self.remember(anchor, &node, size);
        self.push(node);
    }

    /// An alias at byte `at`: a copy of its anchor's node, within the expansion budget.
    fn alias(&mut self, id: usize, at: usize) {
        let name_len = self.text[at.min(self.text.len())..]
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ']' | '}'))
            .unwrap_or(self.text.len() - at.min(self.text.len()));
        let span = Span::new(at, at + name_len);
        match self.anchors.get(&id).cloned() {
            Some((mut node, size)) => {
                self.nodes += size;
                if self.nodes > MAX_NODES {
                    self.fail(
                        "aliases expand to too large a document",
                        span,
                        "write the values out; a topology file needs few aliases",
                    );
                    return;
                }
                node.span = span;
                self.push(node);
            }
            None => self.fail(
                "alias to an unknown anchor",
                span,
                "define the anchor (`&name`) before using it (`*name`)",
            ),
        }
    }
}

fn count(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(..) => 1,
        Value::Map(entries) => 1 + entries.iter().map(|e| count(&e.value)).sum::<usize>(),
        Value::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
    }
}

/// Where a key and its value were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanEntry {
    /// The key's span; `None` for list items.
    pub key: Option<Span>,
    pub value: Span,
}

/// Every path of the document (`nodes.n2.upstream`, `hba.0.method`) with its key and value spans.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    paths: BTreeMap<String, SpanEntry>,
}

impl SpanIndex {
    /// Index every key and list item of `root`.
    pub fn build(root: &Node) -> SpanIndex {
        fn walk(node: &Node, prefix: &str, out: &mut BTreeMap<String, SpanEntry>) {
            let join = |k: &str| {
                if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                }
            };
            match &node.value {
                Value::Scalar(..) => {}
                Value::Map(entries) => {
                    for e in entries {
                        let path = join(&e.key);
                        out.insert(
                            path.clone(),
                            SpanEntry {
                                key: Some(e.key_span),
                                value: e.value.span,
                            },
                        );
                        walk(&e.value, &path, out);
                    }
                }
                Value::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let path = join(&i.to_string());
                        out.insert(
                            path.clone(),
                            SpanEntry {
                                key: None,
                                value: item.span,
                            },
                        );
                        walk(item, &path, out);
                    }
                }
            }
        }
        let mut paths = BTreeMap::new();
        walk(root, "", &mut paths);
        SpanIndex { paths }
    }

    /// The spans at a dotted path.
    pub fn get(&self, path: &str) -> Option<SpanEntry> {
        self.paths.get(path).copied()
    }

    /// Every indexed path, in order.
    pub fn paths(&self) -> impl Iterator<Item = (&str, &SpanEntry)> {
        self.paths.iter().map(|(k, v)| (k.as_str(), v))
    }
}

/// Every entry of `settings` and of each `nodes.<name>.settings`, with where it is written
/// (`` `settings` `` or `` `nodes.n2.settings` ``): what the rules on owned settings walk.
pub fn setting_entries(root: &Node) -> Vec<(String, &Entry)> {
    let mut out: Vec<(String, &Entry)> = Vec::new();
    if let Some(s) = root.get("settings") {
        out.extend(s.value.entries().iter().map(|e| ("`settings`".into(), e)));
    }
    for n in root
        .get("nodes")
        .map(|n| n.value.entries())
        .unwrap_or_default()
    {
        if let Some(s) = n.value.get("settings") {
            let place = format!("`nodes.{}.settings`", n.key);
            out.extend(s.value.entries().iter().map(|e| (place.clone(), e)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(text: &str, s: Span) -> &str {
        &text[s.start..s.end]
    }

    #[test]
    fn spans_are_byte_offsets_of_keys_and_values() {
        let text = "cluster: shöp\nnodes:\n  n2: {host: \"a\\\"b\", port: 5}\n  n3:\n    upstream: 'n''2'  # c\n    list: [x, y]\n";
        let doc = parse(text).unwrap();
        let index = SpanIndex::build(doc.root.as_ref().unwrap());
        let at = |p: &str| index.get(p).unwrap();
        assert_eq!(slice(text, at("cluster").value), "shöp");
        assert_eq!(slice(text, at("nodes.n2.host").value), "\"a\\\"b\"");
        assert_eq!(slice(text, at("nodes.n2.port").key.unwrap()), "port");
        assert_eq!(
            slice(text, at("nodes.n2").value),
            "{host: \"a\\\"b\", port: 5}"
        );
        assert_eq!(slice(text, at("nodes.n3.upstream").value), "'n''2'");
        assert_eq!(slice(text, at("nodes.n3.list.1").value), "y");
        assert_eq!(
            slice(text, at("nodes.n3").value),
            "upstream: 'n''2'  # c\n    list: [x, y]"
        );
    }

    #[test]
    fn empty_values_sit_right_after_their_key() {
        let text = "a:\n  b:\n  c: x\nd: {e: , f: 1}\ng:\n  -\n  - y\n";
        let root = parse(text).unwrap().root.unwrap();
        let index = SpanIndex::build(&root);
        assert_eq!(index.get("a.b").unwrap().value, Span::new(7, 7));
        assert_eq!(index.get("d.e").unwrap().value, Span::new(21, 21));
    }

    #[test]
    fn duplicate_keys_and_documents_are_reported() {
        let doc = parse("a: 1\na: 2\n").unwrap();
        assert_eq!(doc.problems.len(), 1);
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        assert!(parse("a: [1\n").is_err());
        assert!(parse("").unwrap().root.is_none());
    }

    #[test]
    fn scalars_resolve_like_serde_yaml() {
        let doc = parse("a: 5\nb: '5'\nc: ~\nd: true\ne: 1.5\nf: x\ng: !!str 7\n").unwrap();
        let root = doc.root.unwrap();
        let kind = |k: &str| root.get(k).unwrap().value.scalar_kind().unwrap();
        assert_eq!(kind("a"), ScalarKind::Int);
        assert_eq!(kind("b"), ScalarKind::Str);
        assert_eq!(kind("c"), ScalarKind::Null);
        assert_eq!(kind("d"), ScalarKind::Bool);
        assert_eq!(kind("e"), ScalarKind::Float);
        assert_eq!(kind("f"), ScalarKind::Str);
        assert_eq!(kind("g"), ScalarKind::Str);
    }

    #[test]
    fn aliases_resolve_and_bombs_stop() {
        let doc = parse("x: &a {k: 1}\ny: *a\n").unwrap();
        assert_eq!(
            doc.root.unwrap().at(&["y", "k"]).unwrap().value.as_int(),
            Some(1)
        );
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        assert!(parse(&bomb).is_err());
    }
}
