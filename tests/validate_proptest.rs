//! Property tests of the loader: whatever bytes or YAML-ish document it is handed, `load_str`
//! returns a topology or a diagnostic, never panics, and the diagnostic renders (its labels are
//! inside the source). Documents are random nestings of mappings, lists and scalars written in
//! block or flow style, with the real key names, node names and enum values mixed in so that
//! many of them get past the YAML layer into the structural and semantic checks.

use miette::{GraphicalReportHandler, GraphicalTheme};
use proptest::prelude::*;

fn probe() -> std::path::PathBuf {
    "/usr/lib/postgresql/15/bin".into()
}

/// Load and, on error, render: neither may panic. A valid result has exactly one primary, and
/// an error is never serde's fallback.
fn exercise(text: &str) -> Result<(), String> {
    match pgtopo::config::load_str_with("fuzz.yaml", text, probe) {
        Ok(d) => {
            let _ = d.primary();
            Ok(())
        }
        Err(report) => {
            let mut out = String::new();
            GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
                .with_width(80)
                .render_report(&mut out, report.as_ref())
                .expect("render");
            // The structural check runs before serde and must catch everything serde would
            // refuse, with a better message: serde's own error reaching a person is a gap there.
            assert!(
                !out.contains("pgtopo::config::serde"),
                "serde refused what the checks accepted:\n{text}\n{out}"
            );
            Err(out)
        }
    }
}

const KEYS: &[&str] = &[
    "cluster",
    "postgres",
    "bin_dir",
    "os_user",
    "connect",
    "user",
    "dbname",
    "password",
    "env",
    "file",
    "sslmode",
    "replication",
    "slots",
    "synchronous",
    "mode",
    "count",
    "standbys",
    "hba_method",
    "settings",
    "hba",
    "type",
    "database",
    "address",
    "method",
    "allow_trust",
    "failover",
    "allow",
    "max_lag",
    "switchover",
    "timeout",
    "nodes",
    "host",
    "port",
    "data_dir",
    "role",
    "upstream",
    "ssh",
    "state",
    "n1",
    "n2",
    "n3",
    "primary_conninfo",
    "x",
    "N1",
    "a b",
    "é",
    "",
];

const SCALARS: &[&str] = &[
    "primary",
    "standby",
    "absent",
    "present",
    "n1",
    "n2",
    "n3",
    "n9",
    "trust",
    "host",
    "local",
    "127.0.0.1",
    "10.0.0.0/8",
    "::1/128",
    "16MB",
    "16XB",
    "60s",
    "0",
    "1",
    "5432",
    "70000",
    "-1",
    "true",
    "false",
    "~",
    "null",
    "1.5",
    ".inf",
    "quorum",
    "priority",
    "hunter2",
    "/var/lib/pg",
    "\"quoted\"",
    "'single'",
    "\"unterminated",
    "*alias",
    "&anchor x",
    "- x",
    "a: b",
    "{",
    "[",
    "]",
    "}",
    "#c",
    "|",
    ">",
    "ü",
    "\t",
    "",
];

#[derive(Debug, Clone)]
enum Doc {
    Scalar(String),
    Map(Vec<(String, Doc)>),
    Seq(Vec<Doc>),
}

fn doc() -> impl Strategy<Value = Doc> {
    let scalar = prop_oneof![
        4 => proptest::sample::select(SCALARS).prop_map(|s| Doc::Scalar(s.to_string())),
        1 => "[ -~]{0,12}".prop_map(Doc::Scalar),
    ];
    let key = prop_oneof![
        6 => proptest::sample::select(KEYS).prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
    ];
    scalar.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec((key.clone(), inner.clone()), 0..6).prop_map(Doc::Map),
            proptest::collection::vec(inner, 0..5).prop_map(Doc::Seq),
        ]
    })
}

fn flow(d: &Doc, out: &mut String) {
    match d {
        Doc::Scalar(s) => out.push_str(s),
        Doc::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                flow(v, out);
            }
            out.push('}');
        }
        Doc::Seq(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow(v, out);
            }
            out.push(']');
        }
    }
}

/// Block style, switching to flow style below `flow_depth`.
fn block(d: &Doc, indent: usize, flow_depth: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match d {
        Doc::Map(entries) if flow_depth > 0 && !entries.is_empty() => {
            for (k, v) in entries {
                out.push_str(&format!("{pad}{k}:"));
                match v {
                    Doc::Scalar(s) => out.push_str(&format!(" {s}\n")),
                    _ => {
                        out.push('\n');
                        block(v, indent + 2, flow_depth - 1, out);
                    }
                }
            }
        }
        Doc::Seq(items) if flow_depth > 0 && !items.is_empty() => {
            for v in items {
                match v {
                    Doc::Scalar(s) => out.push_str(&format!("{pad}- {s}\n")),
                    _ => {
                        out.push_str(&format!("{pad}-\n"));
                        block(v, indent + 2, flow_depth - 1, out);
                    }
                }
            }
        }
        _ => {
            out.push_str(&pad);
            flow(d, out);
            out.push('\n');
        }
    }
}

/// A valid topology to splice random documents into.
const BASE: &str = "cluster: shop\nnodes:\n  n1:\n    host: 127.0.0.1\n    data_dir: /pg/n1\n    \
                    role: primary\n  n2:\n    host: 127.0.0.2\n    data_dir: /pg/n2\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = exercise(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_documents_never_panic(d in doc(), flow_depth in 0usize..4) {
        let mut text = String::new();
        block(&d, 0, flow_depth, &mut text);
        let _ = exercise(&text);
    }

    #[test]
    fn documents_spliced_into_a_valid_topology_never_panic(
        d in doc(),
        at in proptest::sample::select(vec!["", "nodes", "nodes.n2", "replication", "connect"]),
        key in proptest::sample::select(KEYS),
    ) {
        let mut sub = String::new();
        block(&Doc::Map(vec![(key.to_string(), d)]), 0, 2, &mut sub);
        let indent = if at.is_empty() { 0 } else { at.split('.').count() * 2 };
        let sub: String = sub.lines().map(|l| format!("{}{l}\n", " ".repeat(indent))).collect();
        let text = match at {
            "" => format!("{BASE}{sub}"),
            "nodes" => format!("{BASE}{sub}"),
            "nodes.n2" => format!("{BASE}{sub}"),
            other => format!("{BASE}{other}:\n{sub}"),
        };
        let _ = exercise(&text);
    }

    #[test]
    fn an_inline_password_is_never_shown(
        secret in "[A-Za-z0-9]{12,20}",
        quoted in any::<bool>(),
        place in 0usize..3,
    ) {
        let value = if quoted { format!("\"{secret}\"") } else { secret.clone() };
        let text = match place {
            0 => format!("cluster: c\nconnect:\n  password: {value}\nnodes:\n  n1: {{host: h, data_dir: /d, role: primary}}\n"),
            1 => format!("cluster: c\nreplication: {{password: {value}}}\nnodes: {{}}\n"),
            _ => format!("cluster: c\nconnect:\n  password: {value}\n  user: [\n"),
        };
        let rendered = exercise(&text).expect_err("inline passwords are refused");
        prop_assert!(!rendered.contains(&secret), "{}", rendered);
    }
}
