//! The fleet form of `validate`, `status`, `plan` and `drift` (SPEC §9): one report for many
//! clusters. Text: a summary table, then each cluster's own rendering under a heading. JSON:
//! `{"format_version": 1, "clusters": {name: <the cluster's own JSON> | {"error": "…"}}}`.
//! Markdown: the summary table, then a section for each cluster that drifted, has changes or
//! could not be read. Each cluster's part is its single-cluster rendering, unchanged. Layout only.

use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::fleet::{Drifted, Fleet, Member, Observation, Outcome, Planned, Reading, Validated};

/// A cluster's own renderings, as the single-cluster form prints them.
pub trait Section {
    fn text(&self, color: bool) -> String;
    fn json(&self) -> Value;
    fn markdown(&self) -> String;
}

/// The line `validate` prints for a valid file.
pub fn valid_line(v: &Validated) -> String {
    let d = &v.desired;
    let standbys = d.present().count() - 1;
    let retired = d.nodes.len() - standbys - 1;
    format!(
        "{}: valid: cluster {}, primary {}, {standbys} standby{}{}",
        v.file.display(),
        d.cluster,
        d.primary().name,
        if standbys == 1 { "" } else { "s" },
        if retired > 0 {
            format!(", {retired} retired")
        } else {
            String::new()
        }
    )
}

impl Section for Validated {
    fn text(&self, _color: bool) -> String {
        format!("{}\n", valid_line(self))
    }
    fn json(&self) -> Value {
        json!({"cluster": self.desired.cluster, "valid": true})
    }
    fn markdown(&self) -> String {
        String::new()
    }
}

impl Section for Observation {
    fn text(&self, color: bool) -> String {
        super::status::text_with(&self.desired, &self.observed, color)
    }
    fn json(&self) -> Value {
        serde_json::to_value(super::status::doc(&self.desired, &self.observed))
            .expect("status JSON serialises")
    }
    fn markdown(&self) -> String {
        String::new()
    }
}

impl Section for Drifted {
    fn text(&self, color: bool) -> String {
        super::drift::text(&self.report, color)
    }
    fn json(&self) -> Value {
        serde_json::to_value(&self.report).expect("a drift report serialises")
    }
    fn markdown(&self) -> String {
        super::drift::markdown(&self.report)
    }
}

impl Section for Planned {
    fn text(&self, color: bool) -> String {
        super::plan::text(&self.plan, color)
    }
    fn json(&self) -> Value {
        serde_json::from_str(&super::plan::json(&self.plan)).expect("the plan file is JSON")
    }
    fn markdown(&self) -> String {
        super::plan::markdown(&self.plan)
    }
}

/// The result column.
fn result<T: Reading>(m: &Member<T>) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match (&m.read, m.outcome()) {
        (Err(_), _) => "error".into(),
        (_, Some(Outcome::Down(n))) => format!("{n} down"),
        (_, Some(Outcome::Findings(n))) => plural(n, "finding"),
        (_, Some(Outcome::Changes(n))) => plural(n, "change"),
        _ => "ok".into(),
    }
}

fn nodes<T: Reading>(m: &Member<T>) -> String {
    m.read
        .as_ref()
        .map_or_else(|_| "-".into(), |r| r.nodes().to_string())
}

/// An error as one line of plain text: the message, its causes and related diagnostics.
pub fn plain_error(e: &miette::Report) -> String {
    let mut parts: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    if let Some(related) = e.related() {
        parts.extend(related.map(|r| r.to_string()));
    }
    parts.join(": ")
}

/// The text report.
pub fn text<T: Reading + Section>(fleet: &Fleet<T>, color: bool) -> String {
    let mut out = String::new();
    let wn = fleet
        .members
        .iter()
        .map(|m| m.name.len())
        .chain([7])
        .max()
        .unwrap_or(7);
    let _ = writeln!(out, "{:<wn$}  NODES  RESULT", "CLUSTER");
    for m in &fleet.members {
        let _ = writeln!(out, "{:<wn$}  {:>5}  {}", m.name, nodes(m), result(m));
    }
    for m in &fleet.members {
        let _ = writeln!(out, "\n== {} ({}) ==\n", m.name, m.file.display());
        match &m.read {
            Ok(r) => out.push_str(&r.text(color)),
            Err(e) => {
                let _ = writeln!(out, "{e:?}");
            }
        }
    }
    out
}

/// The JSON report.
pub fn json<T: Reading + Section>(fleet: &Fleet<T>) -> String {
    let clusters: serde_json::Map<String, Value> = fleet
        .members
        .iter()
        .map(|m| {
            let v = match &m.read {
                Ok(r) => r.json(),
                Err(e) => json!({"error": plain_error(e)}),
            };
            (m.name.clone(), v)
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&json!({"format_version": 1, "clusters": clusters}))
        .expect("the fleet report serialises");
    s.push('\n');
    s
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The markdown report (the nightly issue): `command` names what was run (`drift`, `plan`).
pub fn markdown<T: Reading + Section>(fleet: &Fleet<T>, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<!-- pgtopo:fleet-{command} -->");
    let _ = writeln!(
        out,
        "## pgtopo {command} for {} cluster{}\n",
        fleet.members.len(),
        if fleet.members.len() == 1 { "" } else { "s" }
    );
    let _ = writeln!(out, "| cluster | nodes | result |\n|---|---|---|");
    for m in &fleet.members {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            md_cell(&m.name),
            nodes(m),
            result(m)
        );
    }
    for m in &fleet.members {
        match (&m.read, m.outcome()) {
            (Err(e), _) => {
                let _ = writeln!(
                    out,
                    "\n### `{}` could not be read\n\n`{}`: {}",
                    md_cell(&m.name),
                    m.file.display(),
                    md_cell(&plain_error(e))
                );
            }
            (Ok(r), Some(o)) if o.changed() => {
                out.push('\n');
                out.push_str(&r.markdown());
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::fixtures::desired3;

    fn fleet() -> Fleet<Validated> {
        Fleet {
            members: vec![
                Member {
                    name: "shop".into(),
                    file: "c/shop.yaml".into(),
                    read: Ok(Validated {
                        file: "c/shop.yaml".into(),
                        desired: desired3(),
                    }),
                },
                Member {
                    name: "a-long-cluster-name".into(),
                    file: "c/a-long-cluster-name.yaml".into(),
                    read: Err(miette::miette!("bad | file").wrap_err("cannot read")),
                },
            ],
        }
    }

    #[test]
    fn text_is_a_summary_table_then_each_cluster() {
        let t = text(&fleet(), false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "CLUSTER              NODES  RESULT");
        assert_eq!(lines[1], "shop                     3  ok");
        assert_eq!(lines[2], "a-long-cluster-name      -  error");
        assert!(
            t.contains("== shop (c/shop.yaml) ==\n\nc/shop.yaml: valid: cluster shop"),
            "{t}"
        );
        assert!(
            t.contains("== a-long-cluster-name (c/a-long-cluster-name.yaml) =="),
            "{t}"
        );
    }

    #[test]
    fn json_keeps_each_cluster_under_its_name_and_errors_as_plain_text() {
        let v: Value = serde_json::from_str(&json(&fleet())).unwrap();
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["clusters"]["shop"]["valid"], true);
        assert_eq!(
            v["clusters"]["a-long-cluster-name"]["error"],
            "cannot read: bad | file"
        );
        let md = markdown(&fleet(), "validate");
        assert!(md.contains("| `a-long-cluster-name` | - | error |"), "{md}");
        assert!(
            md.contains("`c/a-long-cluster-name.yaml`: cannot read: bad \\| file"),
            "{md}"
        );
    }
}
