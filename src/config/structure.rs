//! Structural check: the span tree against the JSON Schema of [`TopologyFile`].
//!
//! serde stops at the first unknown key or wrong type, and its messages cannot point at a span
//! precisely enough. So before serde runs, the document tree is walked along the schema that
//! schemars generates from the very types serde fills (`schema_for!(TopologyFile)`): unknown keys,
//! missing required keys, wrong types, unknown enum values, out-of-range integers and unparsable
//! sizes and durations are all collected at once, each labelled on its key or value. Because the
//! walk follows the generated schema, a field added to the model is known here without any edit.
//!
//! Scalars are read the way serde_yaml reads them (YAML 1.2 core schema, any non-null scalar is
//! accepted as a string). Three definitions get a hand-written check because a generic message
//! would be poor or unsafe: `SecretRef` (an inline password must be refused without quoting it),
//! `ByteSize` and `Duration` (parsed with the same `FromStr` serde uses).

use std::sync::OnceLock;

use schemars::schema::{InstanceType, RootSchema, Schema, SchemaObject, SingleOrVec};

use super::diag::ConfigError;
use super::model::TopologyFile;
use super::yaml::{Node, ScalarKind, Span, Value};
use crate::units::{ByteSize, Duration};

/// The topology schema, generated once.
pub fn topology_schema() -> &'static RootSchema {
    static SCHEMA: OnceLock<RootSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| schemars::schema_for!(TopologyFile))
}

/// Check the document root against the topology schema; every problem is returned.
pub fn check(root: &Node) -> Vec<ConfigError> {
    let schema = topology_schema();
    let mut c = Checker {
        root: schema,
        errors: Vec::new(),
    };
    let ctx = Ctx {
        path: Vec::new(),
        key_span: None,
        description: None,
    };
    c.object_or_type(&schema.schema, root, &ctx);
    c.errors
}

#[derive(Clone)]
struct Ctx<'a> {
    path: Vec<String>,
    /// The key the node is the value of (`None` for the root and list items).
    key_span: Option<Span>,
    /// The field's documentation, used as the help line of a type error.
    description: Option<&'a str>,
}

impl Ctx<'_> {
    fn child(&self, key: &str, key_span: Option<Span>) -> Ctx<'_> {
        let mut path = self.path.clone();
        path.push(key.to_string());
        Ctx {
            path,
            key_span,
            description: None,
        }
    }

    /// `nodes.n2.port`, `hba[0].method`, or `the top level`.
    fn shown(&self) -> String {
        display_path(&self.path)
    }

    fn is_secret(&self) -> bool {
        self.path.iter().any(|p| p == "password")
    }
}

/// A path for messages: keys joined with `.`, list positions as `[i]`.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() {
            out.push_str(&format!("[{p}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(p);
        }
    }
    if out.is_empty() {
        "the top level".into()
    } else {
        out
    }
}

struct Checker {
    root: &'static RootSchema,
    errors: Vec<ConfigError>,
}

fn description(o: &SchemaObject) -> Option<&str> {
    o.metadata.as_ref()?.description.as_deref()
}

fn types(o: &SchemaObject) -> Vec<InstanceType> {
    match &o.instance_type {
        None => Vec::new(),
        Some(SingleOrVec::Single(t)) => vec![**t],
        Some(SingleOrVec::Vec(v)) => v.clone(),
    }
}

fn is_null_schema(s: &Schema) -> bool {
    matches!(s, Schema::Object(o) if types(o) == [InstanceType::Null])
}

impl Checker {
    fn schema(&mut self, schema: &Schema, node: &Node, ctx: &Ctx<'_>) {
        match schema {
            Schema::Bool(true) => {}
            Schema::Bool(false) => self.errors.push(
                ConfigError::new("unexpected", format!("`{}` is not allowed", ctx.shown()))
                    .label(node.span, "not allowed here"),
            ),
            Schema::Object(o) => self.object_or_type(o, node, ctx),
        }
    }

    fn object_or_type(&mut self, o: &SchemaObject, node: &Node, ctx: &Ctx<'_>) {
        let mut ctx = ctx.clone();
        if ctx.description.is_none() {
            ctx.description = description(o);
        }
        if let Some(r) = &o.reference {
            let name = r.trim_start_matches("#/definitions/");
            return match name {
                "SecretRef" => self.secret(node, &ctx),
                "ByteSize" => self.parsed::<ByteSize>(
                    node,
                    &ctx,
                    "a size",
                    "write a number of bytes, or a number with a unit B, kB, MB, GB or TB \
                     (e.g. `16MB`)",
                    true,
                ),
                "Duration" => self.parsed::<Duration>(
                    node,
                    &ctx,
                    "a duration",
                    "write a number with a unit, e.g. `60s`, `500ms` or `2m`",
                    false,
                ),
                "ArchiveLag" => self.parsed::<super::archive::ArchiveLag>(
                    node,
                    &ctx,
                    "a size or a duration",
                    "write a size such as `64MB` or a duration such as `5min`",
                    true,
                ),
                _ => {
                    if let Some(def) = self.root.definitions.get(name) {
                        self.schema(def, node, &ctx);
                    }
                }
            };
        }
        if let Some(sub) = &o.subschemas {
            if let Some(all) = &sub.all_of {
                for s in all {
                    self.schema(s, node, &ctx);
                }
            }
            if let Some(any) = sub.any_of.as_ref().or(sub.one_of.as_ref()) {
                let nullable = any.iter().any(is_null_schema);
                if nullable && node.is_null() {
                    return;
                }
                let branches: Vec<&Schema> = any.iter().filter(|s| !is_null_schema(s)).collect();
                if let [only] = branches.as_slice() {
                    self.schema(only, node, &ctx);
                } else {
                    let mut first_errors = None;
                    for b in &branches {
                        let mut trial = Checker {
                            root: self.root,
                            errors: Vec::new(),
                        };
                        trial.schema(b, node, &ctx);
                        if trial.errors.is_empty() {
                            return;
                        }
                        first_errors.get_or_insert(trial.errors);
                    }
                    self.errors.extend(first_errors.unwrap_or_default());
                }
            }
        }
        let ts = types(o);
        if ts.is_empty() {
            return;
        }
        if ts.contains(&InstanceType::Null) && node.is_null() {
            return;
        }
        let kind = node.scalar_kind();
        let ok = ts.iter().any(|t| match t {
            InstanceType::Object => matches!(node.value, Value::Map(_)),
            InstanceType::Array => matches!(node.value, Value::Seq(_)),
            InstanceType::String => kind.is_some_and(|k| k != ScalarKind::Null),
            InstanceType::Integer => kind == Some(ScalarKind::Int),
            InstanceType::Number => matches!(kind, Some(ScalarKind::Int | ScalarKind::Float)),
            InstanceType::Boolean => kind == Some(ScalarKind::Bool),
            InstanceType::Null => kind == Some(ScalarKind::Null),
        });
        if !ok {
            self.type_error(&ts, node, &ctx);
            return;
        }
        match &node.value {
            Value::Map(entries) => {
                if let Some(obj) = &o.object {
                    self.mapping(obj, entries, node, &ctx);
                }
            }
            Value::Seq(items) => {
                if let Some(SingleOrVec::Single(item)) =
                    o.array.as_ref().and_then(|a| a.items.as_ref())
                {
                    for (i, it) in items.iter().enumerate() {
                        self.schema(item, it, &ctx.child(&i.to_string(), None));
                    }
                }
            }
            Value::Scalar(..) => {
                if let Some(allowed) = &o.enum_values {
                    self.enumeration(allowed, node, &ctx);
                }
                if kind == Some(ScalarKind::Int) && ts.contains(&InstanceType::Integer) {
                    self.range(o, node, &ctx);
                }
            }
        }
    }

    fn type_error(&mut self, ts: &[InstanceType], node: &Node, ctx: &Ctx<'_>) {
        let expected: Vec<&str> = ts
            .iter()
            .filter(|t| **t != InstanceType::Null)
            .map(|t| match t {
                InstanceType::Object => "a mapping",
                InstanceType::Array => "a list",
                InstanceType::String => "a string",
                InstanceType::Integer => "an integer",
                InstanceType::Number => "a number",
                InstanceType::Boolean => "a boolean (true or false)",
                InstanceType::Null => "nothing",
            })
            .collect();
        let expected = match expected.as_slice() {
            [init @ .., last] if !init.is_empty() => format!("{} or {last}", init.join(", ")),
            _ => expected.join(""),
        };
        let found = node.describe();
        let quoted_number = matches!(node.value, Value::Scalar(_, super::yaml::Style::Quoted))
            && node.as_str().is_some_and(|t| {
                let plain = Node {
                    value: Value::Scalar(t.to_string(), super::yaml::Style::Plain),
                    span: node.span,
                };
                ts.iter().any(|ty| match ty {
                    InstanceType::Integer => plain.scalar_kind() == Some(ScalarKind::Int),
                    InstanceType::Number => {
                        plain.as_int().is_some() || plain.scalar_kind() == Some(ScalarKind::Float)
                    }
                    InstanceType::Boolean => plain.scalar_kind() == Some(ScalarKind::Bool),
                    _ => false,
                })
            });
        let help = match ctx.description {
            _ if quoted_number => format!(
                "remove the quotes: quoted, the value is a string; {} takes {expected}",
                last(ctx)
            ),
            Some(d) => format!("{} takes {expected}: {d}", last(ctx)),
            None => format!("write {expected} here"),
        };
        self.errors.push(
            ConfigError::new(
                "wrong_type",
                format!("`{}` must be {expected}, found {found}", ctx.shown()),
            )
            .label(node.span, format!("expected {expected}"))
            .help(help),
        );
    }

    fn enumeration(&mut self, allowed: &[serde_json::Value], node: &Node, ctx: &Ctx<'_>) {
        let text = node.as_str().unwrap_or_default();
        if allowed.iter().any(|v| v.as_str() == Some(text)) {
            return;
        }
        let names: Vec<String> = allowed
            .iter()
            .filter_map(|v| v.as_str().map(|s| format!("`{s}`")))
            .collect();
        let message = if ctx.is_secret() {
            format!("`{}` has an unknown value", ctx.shown())
        } else {
            format!("`{}` cannot be `{text}`", ctx.shown())
        };
        let mut help = format!("use one of {}", names.join(", "));
        if let Some(s) = suggest(text, allowed.iter().filter_map(|v| v.as_str())) {
            help = format!("did you mean `{s}`? {help}");
        }
        self.errors.push(
            ConfigError::new("unknown_value", message)
                .label(node.span, "unknown value")
                .help(help),
        );
    }

    fn range(&mut self, o: &SchemaObject, node: &Node, ctx: &Ctx<'_>) {
        let Some(v) = node.as_int() else { return };
        let (mut min, mut max) = (i128::MIN, i128::MAX);
        match o.format.as_deref() {
            Some("uint16") => (min, max) = (0, u16::MAX as i128),
            Some("uint32") => (min, max) = (0, u32::MAX as i128),
            Some("uint64" | "uint") => (min, max) = (0, u64::MAX as i128),
            Some("int32") => (min, max) = (i32::MIN as i128, i32::MAX as i128),
            Some("int64" | "int") => (min, max) = (i64::MIN as i128, i64::MAX as i128),
            Some("uint8") => (min, max) = (0, u8::MAX as i128),
            _ => {}
        }
        if let Some(n) = &o.number {
            if let Some(m) = n.minimum {
                min = min.max(m as i128);
            }
            if let Some(m) = n.maximum {
                max = max.min(m as i128);
            }
        }
        if v < min || v > max {
            self.errors.push(
                ConfigError::new(
                    "out_of_range",
                    format!("`{}` is out of range: {v}", ctx.shown()),
                )
                .label(node.span, format!("must be from {min} to {max}"))
                .help(format!("write a whole number from {min} to {max}")),
            );
        }
    }

    fn mapping(
        &mut self,
        obj: &schemars::schema::ObjectValidation,
        entries: &[super::yaml::Entry],
        node: &Node,
        ctx: &Ctx<'_>,
    ) {
        for e in entries {
            let child = ctx.child(&e.key, Some(e.key_span));
            if let Some(s) = obj.properties.get(&e.key) {
                self.schema(s, &e.value, &child);
                continue;
            }
            match obj.additional_properties.as_deref() {
                Some(Schema::Bool(false)) => {
                    let known: Vec<&str> = obj.properties.keys().map(String::as_str).collect();
                    self.errors
                        .push(unknown_key(&e.key, e.key_span, ctx, &known));
                }
                Some(s) => self.schema(s, &e.value, &child),
                None => {}
            }
        }
        for req in &obj.required {
            if entries.iter().any(|e| &e.key == req) {
                continue;
            }
            let what = obj
                .properties
                .get(req)
                .and_then(|s| match s {
                    Schema::Object(o) => description(o),
                    _ => None,
                })
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let span = ctx.key_span.unwrap_or_else(|| first_line(node));
            let message = if ctx.path.is_empty() {
                format!("the required top-level key `{req}` is missing")
            } else {
                format!("`{}` is missing the required key `{req}`", ctx.shown())
            };
            self.errors.push(
                ConfigError::new("missing_key", message)
                    .label(span, format!("`{req}` missing here"))
                    .help(format!("add `{req}: …`{what}")),
            );
        }
    }

    /// `{env: VAR}` or `{file: PATH}`; an inline value is refused without ever being quoted.
    fn secret(&mut self, node: &Node, ctx: &Ctx<'_>) {
        let fix = "write `password: { env: PGTOPO_PASSWORD }` (read from an environment variable) \
                   or `password: { file: /path/to/secret }` (first line of a file), and keep the \
                   secret itself out of the topology file";
        match &node.value {
            Value::Scalar(..) => self.errors.push(
                ConfigError::new(
                    "inline_secret",
                    format!(
                        "`{}` is written inline; only a reference to a secret is accepted",
                        ctx.shown()
                    ),
                )
                .label(node.span, "inline secret (value not shown)")
                .help(fix),
            ),
            Value::Seq(_) => self.errors.push(
                ConfigError::new(
                    "wrong_type",
                    format!(
                        "`{}` must be `{{env: VAR}}` or `{{file: PATH}}`, found a list",
                        ctx.shown()
                    ),
                )
                .label(node.span, "expected a mapping")
                .help(fix),
            ),
            Value::Map(entries) => {
                let known = ["env", "file"];
                for e in entries {
                    if !known.contains(&e.key.as_str()) {
                        self.errors
                            .push(unknown_key(&e.key, e.key_span, ctx, &known));
                    } else if e.value.as_str().is_none()
                        || !matches!(e.value.value, Value::Scalar(..))
                    {
                        self.errors.push(
                            ConfigError::new(
                                "wrong_type",
                                format!(
                                    "`{}.{}` must be a string, found {}",
                                    ctx.shown(),
                                    e.key,
                                    e.value.describe()
                                ),
                            )
                            .label(e.value.span, "expected a string")
                            .help(fix),
                        );
                    }
                }
                let refs: Vec<&super::yaml::Entry> = entries
                    .iter()
                    .filter(|e| known.contains(&e.key.as_str()))
                    .collect();
                if refs.is_empty() {
                    self.errors.push(
                        ConfigError::new(
                            "missing_key",
                            format!("`{}` names neither `env` nor `file`", ctx.shown()),
                        )
                        .label(ctx.key_span.unwrap_or(node.span), "no reference here")
                        .help(fix),
                    );
                } else if refs.len() > 1 {
                    self.errors.push(
                        ConfigError::new(
                            "ambiguous_secret",
                            format!("`{}` names both `env` and `file`", ctx.shown()),
                        )
                        .label(refs[0].key_span, "one reference")
                        .label(refs[1].key_span, "another")
                        .help("keep one of them"),
                    );
                }
            }
        }
    }

    fn parsed<T: std::str::FromStr>(
        &mut self,
        node: &Node,
        ctx: &Ctx<'_>,
        what: &str,
        help: &str,
        accept_int: bool,
    ) {
        let ok = match (&node.value, node.scalar_kind()) {
            (_, Some(ScalarKind::Int)) if accept_int => node
                .as_int()
                .is_some_and(|v| (0..=u64::MAX as i128).contains(&v)),
            (Value::Scalar(s, _), Some(k)) if k != ScalarKind::Null => s.parse::<T>().is_ok(),
            _ => false,
        };
        if !ok {
            let found = match node.as_str() {
                Some(s) if matches!(node.value, Value::Scalar(..)) => format!("`{s}`"),
                _ => node.describe().to_string(),
            };
            self.errors.push(
                ConfigError::new(
                    "wrong_type",
                    format!("`{}` must be {what}, found {found}", ctx.shown()),
                )
                .label(node.span, format!("not {what}"))
                .help(help),
            );
        }
    }
}

/// What a help line talks about: "`port`", or "each item of `hba`".
fn last(ctx: &Ctx<'_>) -> String {
    match ctx.path.split_last() {
        Some((l, parent)) if l.bytes().all(|b| b.is_ascii_digit()) => {
            format!("each item of `{}`", display_path(parent))
        }
        Some((l, _)) => format!("`{l}`"),
        None => "the top level".into(),
    }
}

/// The first line of a node, for a label that should not cover a whole mapping.
fn first_line(node: &Node) -> Span {
    Span::new(node.span.start, node.span.start)
}

/// An unknown key, with a suggestion and the list of keys allowed at that place.
fn unknown_key(key: &str, span: Span, parent: &Ctx<'_>, known: &[&str]) -> ConfigError {
    let place = if parent.path.is_empty() {
        "at the top level".to_string()
    } else {
        format!("in `{}`", parent.shown())
    };
    let mut help = format!("the keys allowed {place} are: {}", known.join(", "));
    if let Some(s) = suggest(key, known.iter().copied()) {
        help = format!("did you mean `{s}`? {help}");
    }
    ConfigError::new("unknown_key", format!("unknown key `{key}` {place}"))
        .label(span, "unknown key")
        .help(help)
}

/// The closest candidate within a small edit distance.
pub fn suggest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 3 {
        return usize::MAX / 2;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_close_words_only() {
        let keys = ["role", "host", "upstream"];
        assert_eq!(suggest("rol", keys.iter().copied()), Some("role"));
        assert_eq!(suggest("upstram", keys.iter().copied()), Some("upstream"));
        assert_eq!(suggest("zzzzzz", keys.iter().copied()), None);
    }

    #[test]
    fn paths_read_naturally() {
        let p = |v: &[&str]| display_path(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["hba", "0", "method"]), "hba[0].method");
        assert_eq!(p(&[]), "the top level");
    }
}
