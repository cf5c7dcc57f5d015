//! `status` and `drift` with `--format prometheus`: OpenMetrics text of the observed clusters
//! (one or many), for node_exporter's textfile collector or any scraper; it passes
//! `promtool check metrics`. Every series is a gauge labelled with `cluster` (the name the
//! cluster is reported under) and, for a node's series, `node`. A family's samples are written
//! together, families in a fixed order, and the text ends with `# EOF`. Layout only: the values
//! are the observation's and the drift report's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::fleet::{Drifted, Fleet};
use crate::observe::{ObservedNode, ObservedReplica, Role};

/// A label value escaped as the exposition formats require: backslash, double quote and line
/// feed as `\\`, `\"` and `\n`.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// One metric family: its samples, each with its labels and value.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, String)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            samples: Vec::new(),
        }
    }

    fn add(&mut self, labels: Vec<(&'static str, String)>, value: impl ToString) {
        self.samples.push((labels, value.to_string()));
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        for (labels, value) in &self.samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = writeln!(out, "{}{{{}}} {value}", self.name, labels.join(","));
        }
    }
}

struct Families {
    cluster_up: Family,
    node_up: Family,
    role: Family,
    lag: Family,
    replay_lag: Family,
    slot: Family,
    drift: Family,
    took: Family,
}

impl Families {
    fn new() -> Self {
        Families {
            cluster_up: Family::new(
                "pgtopo_cluster_up",
                "1 when the cluster's topology file was read and one of its nodes answered, else 0.",
            ),
            node_up: Family::new(
                "pgtopo_node_up",
                "1 when the node answers SQL and its transport works, else 0.",
            ),
            role: Family::new(
                "pgtopo_node_role",
                "1 for the role the node was observed in, 0 for the other.",
            ),
            lag: Family::new(
                "pgtopo_replication_lag_bytes",
                "WAL bytes between the upstream's current position and the standby's replay position, as the upstream reports them.",
            ),
            replay_lag: Family::new(
                "pgtopo_replay_lag_seconds",
                "Seconds between the upstream writing WAL and the standby replaying it (pg_stat_replication.replay_lag; absent when unknown).",
            ),
            slot: Family::new(
                "pgtopo_slot_retained_bytes",
                "WAL bytes a replication slot on the node keeps.",
            ),
            drift: Family::new(
                "pgtopo_drift_findings",
                "Drift findings of this kind on the node (absent when none).",
            ),
            took: Family::new(
                "pgtopo_observe_duration_seconds",
                "Seconds observing the cluster took.",
            ),
        }
    }

    fn all(&self) -> [&Family; 8] {
        [
            &self.cluster_up,
            &self.node_up,
            &self.role,
            &self.lag,
            &self.replay_lag,
            &self.slot,
            &self.drift,
            &self.took,
        ]
    }

    fn cluster(&mut self, name: &str, d: &Drifted) {
        let c = || ("cluster", name.to_string());
        let obs = &d.observation;
        self.cluster_up.add(vec![c()], u8::from(obs.answered()));
        self.took.add(vec![c()], obs.took.as_secs_f64());
        for n in obs.desired.present() {
            let Some(o) = obs.observed.nodes.get(&n.name) else {
                continue;
            };
            let node = || ("node", n.name.clone());
            self.node_up.add(vec![c(), node()], u8::from(o.reachable));
            for (role, r) in [("primary", Role::Primary), ("standby", Role::Standby)] {
                self.role.add(
                    vec![c(), node(), ("role", role.to_string())],
                    u8::from(o.role == Some(r)),
                );
            }
            if let Some(r) = upstream_of(obs, o).and_then(|up| replica_on(up, &n.name)) {
                if let Some(lag) = r.lag_bytes {
                    self.lag.add(vec![c(), node()], lag);
                }
                if let Some(ms) = r.replay_lag_ms {
                    self.replay_lag.add(vec![c(), node()], ms as f64 / 1000.0);
                }
            }
            for s in &o.replication_slots {
                if let Some(b) = s.wal_retained_bytes {
                    self.slot
                        .add(vec![c(), node(), ("slot", s.name.clone())], b);
                }
            }
        }
        let mut findings: BTreeMap<(&str, String), usize> = BTreeMap::new();
        for i in &d.report.items {
            let kind = serde_json::to_value(i.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *findings.entry((i.node.as_str(), kind)).or_default() += 1;
        }
        for ((node, kind), count) in findings {
            self.drift
                .add(vec![c(), ("node", node.to_string()), ("kind", kind)], count);
        }
    }
}

/// The node a standby streams from, as observed.
pub(super) fn upstream_of<'a>(
    obs: &'a crate::fleet::Observation,
    o: &ObservedNode,
) -> Option<&'a ObservedNode> {
    obs.observed.nodes.get(o.upstream.as_deref()?)
}

/// What the upstream reports of the standby named `name` (pg_stat_replication).
pub(super) fn replica_on<'a>(up: &'a ObservedNode, name: &str) -> Option<&'a ObservedReplica> {
    up.replication.iter().find(|r| r.application_name == name)
}

/// The OpenMetrics text of every cluster of the fleet (a cluster that could not be read has
/// only `pgtopo_cluster_up 0`).
pub fn text(fleet: &Fleet<Drifted>) -> String {
    let mut f = Families::new();
    for m in &fleet.members {
        match &m.read {
            Ok(d) => f.cluster(&m.name, d),
            Err(_) => f.cluster_up.add(vec![("cluster", m.name.clone())], 0),
        }
    }
    let mut out = String::new();
    for family in f.all() {
        family.write(&mut out);
    }
    out.push_str("# EOF\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every series the Grafana example queries is one this module writes, and the dashboard
    /// has its `cluster` variable.
    #[test]
    fn the_grafana_dashboard_queries_series_that_exist() {
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../../examples/grafana/pgtopo.json")).unwrap();
        let names: Vec<&str> = Families::new().all().iter().map(|f| f.name).collect();
        let text = dash.to_string();
        let mut queried = 0;
        for (i, _) in text.match_indices("pgtopo_") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name == "pgtopo_" || text[..i].ends_with('-') {
                continue;
            }
            assert!(names.contains(&name.as_str()), "{name} is not written");
            queried += 1;
        }
        assert!(queried >= names.len(), "{queried} queries");
        let vars = dash["templating"]["list"].as_array().unwrap();
        assert!(vars.iter().any(|v| v["name"] == "cluster"), "{vars:?}");
    }

    #[test]
    fn label_values_are_escaped() {
        for (raw, escaped) in [
            ("plain", "plain"),
            ("a\"b", "a\\\"b"),
            ("back\\slash", "back\\\\slash"),
            ("two\nlines", "two\\nlines"),
            ("\\\"\n", "\\\\\\\"\\n"),
            ("ünïcödé", "ünïcödé"),
        ] {
            assert_eq!(escape_label(raw), escaped, "{raw:?}");
        }
    }

    #[test]
    fn a_healthy_cluster_s_series() {
        use crate::fleet::{Member, Observation};
        use crate::observe::fixtures::{desired3, healthy};
        let d = desired3();
        let mut o = healthy(&d);
        for r in o.nodes.values_mut().flat_map(|n| n.replication.iter_mut()) {
            r.replay_lag_ms = Some(1500);
        }
        o.nodes.get_mut("n3").unwrap().reachable = false;
        let report = crate::diff::drift::drift(&d, &o);
        let drifted = Drifted {
            observation: Observation {
                desired: d,
                observed: o,
                took: std::time::Duration::from_millis(250),
            },
            report,
        };
        let mut fleet = Fleet::one("shop.yaml".into(), drifted);
        fleet.members[0].name = "sh\"op".into();
        fleet.members.push(Member {
            name: "bad".into(),
            file: "bad.yaml".into(),
            read: Err(miette::miette!("unreadable")),
        });
        let t = text(&fleet);
        for line in [
            "pgtopo_cluster_up{cluster=\"sh\\\"op\"} 1",
            "pgtopo_cluster_up{cluster=\"bad\"} 0",
            "pgtopo_node_up{cluster=\"sh\\\"op\",node=\"n1\"} 1",
            "pgtopo_node_up{cluster=\"sh\\\"op\",node=\"n3\"} 0",
            "pgtopo_node_role{cluster=\"sh\\\"op\",node=\"n2\",role=\"standby\"} 1",
            "pgtopo_replay_lag_seconds{cluster=\"sh\\\"op\",node=\"n2\"} 1.5",
            "pgtopo_observe_duration_seconds{cluster=\"sh\\\"op\"} 0.25",
        ] {
            assert!(t.lines().any(|l| l == line), "no {line} in\n{t}");
        }
        assert!(t.contains("pgtopo_drift_findings{"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
        // Every family once, its samples together.
        let types: Vec<&str> = t.lines().filter(|l| l.starts_with("# TYPE")).collect();
        assert_eq!(types.len(), 8, "{t}");
    }

    #[test]
    fn a_family_is_written_with_help_type_and_escaped_labels() {
        let mut f = Family::new("pgtopo_x", "An x.");
        f.add(vec![("cluster", "a\"b".into()), ("node", "n\\1".into())], 3);
        let mut out = String::new();
        f.write(&mut out);
        assert_eq!(
            out,
            "# HELP pgtopo_x An x.\n# TYPE pgtopo_x gauge\npgtopo_x{cluster=\"a\\\"b\",node=\"n\\\\1\"} 3\n"
        );
    }
}
