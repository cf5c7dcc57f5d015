//! `pgtopo status`: the observed cluster as a tree (text) or as JSON.
//!
//! The tree follows what was observed: a standby hangs under the node it streams from (or would
//! connect to); a node whose upstream is unknown hangs under its declared upstream; primaries and
//! nodes without any upstream are roots. Each line shows the node's role, address, timeline, LSN,
//! lag behind its upstream and the WAL its slot there retains; a node that does not answer is
//! marked down with the reason and, when stopped, what its control data says. Slots that serve no
//! node in the tree are listed under the node that holds them.
//! Renderers compute nothing that changes what is done.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use owo_colors::OwoColorize;
use serde::Serialize;

use crate::config::{Desired, DesiredNode, DesiredRole};
use crate::diff::assess::{assess, Verdict};
use crate::observe::{ObservedCluster, ObservedNode, Role};
use crate::units::ByteSize;

/// One node in `status --format json`: every observed field plus the node's address and what
/// the topology declares for it.
#[derive(Debug, Serialize)]
pub struct StatusNode<'a> {
    pub host: &'a str,
    pub port: u16,
    /// Declared role: `primary`, `standby` or `absent`.
    pub declared_role: &'static str,
    pub declared_upstream: Option<&'a str>,
    /// The assessment's verdict (`healthy`, `split_brain`, `diverged`, `foreign_system`,
    /// `slot_lost`, `unreachable`, `no_data`, `other`, `retired`) and, when it is a problem, why.
    pub verdict: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_reason: Option<String>,
    #[serde(flatten)]
    pub observed: &'a ObservedNode,
}

/// The JSON document of `status --format json`.
#[derive(Debug, Serialize)]
pub struct StatusDoc<'a> {
    pub cluster: &'a str,
    pub observed_at: &'a str,
    pub nodes: BTreeMap<&'a str, StatusNode<'a>>,
    /// Every declared pooler as observed (where its databases route, whether they are paused),
    /// as in `observe`; absent without poolers.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub poolers: &'a BTreeMap<String, crate::pooler::ObservedPooler>,
}

/// `status --format json`.
pub fn json(desired: &Desired, obs: &ObservedCluster) -> String {
    serde_json::to_string_pretty(&doc(desired, obs)).expect("status JSON serialises")
}

/// The document of `status --format json`.
pub fn doc<'a>(desired: &'a Desired, obs: &'a ObservedCluster) -> StatusDoc<'a> {
    let verdicts = assess(desired, obs);
    let nodes = desired
        .nodes
        .values()
        .filter_map(|d| {
            let o = obs.nodes.get(&d.name)?;
            let (declared_role, declared_upstream) = match &d.role {
                DesiredRole::Primary => ("primary", None),
                DesiredRole::Standby { upstream } => ("standby", Some(upstream.as_str())),
                DesiredRole::Absent => ("absent", None),
            };
            Some((
                d.name.as_str(),
                StatusNode {
                    host: &d.host,
                    port: d.port,
                    declared_role,
                    declared_upstream,
                    verdict: verdicts.get(&d.name).map_or("other", |v| v.name()),
                    verdict_reason: verdicts.get(&d.name).and_then(|v| v.reason(&d.name)),
                    observed: o,
                },
            ))
        })
        .collect();
    StatusDoc {
        cluster: &obs.cluster,
        observed_at: &obs.observed_at,
        nodes,
        poolers: &obs.poolers,
    }
}

/// Colours, and the assessment's verdicts the lines are annotated with.
struct Painter(bool, BTreeMap<String, Verdict>);

impl Painter {
    fn name(&self, s: &str) -> String {
        if self.0 {
            s.bold().to_string()
        } else {
            s.to_string()
        }
    }
    fn good(&self, s: &str) -> String {
        if self.0 {
            s.green().to_string()
        } else {
            s.to_string()
        }
    }
    fn warn(&self, s: &str) -> String {
        if self.0 {
            s.yellow().to_string()
        } else {
            s.to_string()
        }
    }
    fn bad(&self, s: &str) -> String {
        if self.0 {
            s.red().to_string()
        } else {
            s.to_string()
        }
    }
    fn dim(&self, s: &str) -> String {
        if self.0 {
            s.dimmed().to_string()
        } else {
            s.to_string()
        }
    }
}

/// `status` as text, colour chosen by the caller.
pub fn text_with(desired: &Desired, obs: &ObservedCluster, color: bool) -> String {
    let p = Painter(color, assess(desired, obs));
    let parents = parents(desired, obs);
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut roots = Vec::new();
    for name in obs.nodes.keys() {
        match parents.get(name.as_str()) {
            Some(parent) => children.entry(parent).or_default().push(name),
            None => roots.push(name.as_str()),
        }
    }
    // Primaries first, then the rest by name.
    roots.sort_by_key(|n| (obs.nodes[*n].role != Some(Role::Primary), *n));

    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {}  {}",
        p.name(&obs.cluster),
        p.dim(&format!("observed {}", obs.observed_at))
    );
    for (i, root) in roots.iter().enumerate() {
        let last = i + 1 == roots.len();
        walk(
            &p, desired, obs, &children, root, None, "", last, true, &mut out,
        );
    }
    for line in pooler_lines(desired, obs) {
        let _ = writeln!(out, "{line}");
    }
    out
}

/// One line per declared pooler database: where it routes, and whether that is the primary.
fn pooler_lines(desired: &Desired, obs: &ObservedCluster) -> Vec<String> {
    let primary = &desired.primary().name;
    let mut lines = Vec::new();
    for p in desired.poolers.values() {
        let head = format!("pooler {} {}:{}", p.name, p.host, p.port);
        let Some(o) = obs.poolers.get(&p.name).filter(|o| o.reachable) else {
            let why = obs
                .poolers
                .get(&p.name)
                .and_then(|o| o.unreachable_reason.clone());
            lines.push(format!("{head}  unreachable: {}", why.unwrap_or_default()));
            continue;
        };
        for db in &p.databases {
            let Some(r) = o.databases.get(db) else {
                lines.push(format!("{head}  {db}: not in its [databases]"));
                continue;
            };
            let to = crate::pooler::ObservedPooler::node_at(desired, r);
            let verdict = match to {
                Some(n) if n == primary => "the primary".to_string(),
                Some(n) => format!("{n}, not the primary: drift"),
                None => "no declared node: drift".to_string(),
            };
            let paused = if r.paused { ", PAUSED" } else { "" };
            lines.push(format!(
                "{head}  {db} → {}:{} ({verdict}){paused}",
                r.host, r.port
            ));
        }
    }
    lines
}

/// The parent of each node in the tree: observed upstream, else declared upstream for nodes
/// that are not primaries; cycles broken.
fn parents<'a>(desired: &'a Desired, obs: &'a ObservedCluster) -> BTreeMap<&'a str, &'a str> {
    let mut parents = BTreeMap::new();
    for (name, o) in &obs.nodes {
        let declared = match desired.nodes.get(name).map(|d| &d.role) {
            Some(DesiredRole::Standby { upstream }) => Some(upstream.as_str()),
            _ => None,
        };
        let parent = match (&o.upstream, o.role) {
            (Some(u), _) => Some(u.as_str()),
            (None, Some(Role::Primary)) => None,
            (None, _) if o.reachable => None,
            (None, _) => declared,
        };
        if let Some(pn) = parent.filter(|pn| obs.nodes.contains_key(*pn) && *pn != name) {
            parents.insert(name.as_str(), pn);
        }
    }
    // Break cycles: walk up from each node; a revisit makes the node a root.
    let names: Vec<&str> = parents.keys().copied().collect();
    for start in names {
        let mut seen = BTreeSet::new();
        let mut cur = start;
        while let Some(pn) = parents.get(cur).copied() {
            if !seen.insert(cur) {
                parents.remove(start);
                break;
            }
            cur = pn;
        }
    }
    parents
}

#[allow(clippy::too_many_arguments)]
fn walk(
    p: &Painter,
    desired: &Desired,
    obs: &ObservedCluster,
    children: &BTreeMap<&str, Vec<&str>>,
    name: &str,
    parent: Option<&str>,
    prefix: &str,
    last: bool,
    root: bool,
    out: &mut String,
) {
    let (branch, next_prefix) = if root {
        (String::new(), String::new())
    } else if last {
        (format!("{prefix}└─ "), format!("{prefix}   "))
    } else {
        (format!("{prefix}├─ "), format!("{prefix}│  "))
    };
    let _ = writeln!(out, "{branch}{}", node_line(p, desired, obs, name, parent));
    let kids = children.get(name).cloned().unwrap_or_default();
    let node = &obs.nodes[name];
    // Slots on this node that no child in the tree uses.
    let orphan_slots: Vec<_> = node
        .replication_slots
        .iter()
        .filter(|s| s.logical.is_none() && !kids.contains(&s.name.as_str()))
        .collect();
    let detail_prefix = if kids.is_empty() {
        format!("{next_prefix}   ")
    } else {
        format!("{next_prefix}│  ")
    };
    for s in &node.replication_slots {
        if let Some(line) = logical_line(s) {
            let _ = writeln!(out, "{detail_prefix}{line}");
        }
    }
    for s in orphan_slots {
        let _ = writeln!(
            out,
            "{detail_prefix}{}",
            p.warn(&format!(
                "slot {} ({}, serves no node here){}",
                s.name,
                if s.active { "active" } else { "inactive" },
                s.wal_retained_bytes
                    .map(|b| format!(", retains {}", ByteSize::human(b)))
                    .unwrap_or_default()
            ))
        );
    }
    for (i, k) in kids.iter().enumerate() {
        walk(
            p,
            desired,
            obs,
            children,
            k,
            Some(name),
            &next_prefix,
            i + 1 == kids.len(),
            false,
            out,
        );
    }
}

fn version_text(v: u32) -> String {
    if v >= 100000 {
        format!("PG {}.{}", v / 10000, v % 10000)
    } else {
        format!("PG {}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
    }
}

fn node_line(
    p: &Painter,
    desired: &Desired,
    obs: &ObservedCluster,
    name: &str,
    parent: Option<&str>,
) -> String {
    let o = &obs.nodes[name];
    let d = desired.nodes.get(name);
    let addr = d
        .map(|d| format!("{}:{}", d.host, d.port))
        .unwrap_or_default();
    let mut parts: Vec<String> = vec![p.name(name)];
    let up = parent.and_then(|pn| obs.nodes.get(pn));
    if o.reachable {
        up_parts(p, o, name, &addr, up, &mut parts);
    } else {
        down_parts(p, o, &addr, &mut parts);
    }
    if let Some(slot) = up.and_then(|up| up.replication_slots.iter().find(|s| s.name == name)) {
        parts.push(slot_part(p, slot, parent.unwrap_or("")));
    }
    if let Some(a) = p.1.get(name).and_then(Verdict::annotation) {
        parts.push(p.bad(&a));
    }
    if let Some(text) = d.and_then(|d| declared_part(d, o)) {
        parts.push(p.warn(&text));
    }
    parts.join("  ")
}

fn role_text(o: &ObservedNode) -> &'static str {
    match o.role {
        Some(Role::Primary) => "primary",
        Some(Role::Standby) => "standby",
        None => "?",
    }
}

/// A node that answers: role, address, streaming, timeline, LSN, lag and sync state as its
/// upstream `up` sees them, version.
fn up_parts(
    p: &Painter,
    o: &ObservedNode,
    name: &str,
    addr: &str,
    up: Option<&ObservedNode>,
    parts: &mut Vec<String>,
) {
    parts.push(role_text(o).to_string());
    parts.push(p.dim(addr));
    if o.role == Some(Role::Standby) {
        parts.push(if o.streaming {
            p.good("streaming")
        } else {
            p.bad("not streaming")
        });
        if let (None, Some(addr)) = (&o.upstream, &o.upstream_addr) {
            parts.push(p.warn(&format!("from {addr} (not a declared node)")));
        }
    }
    if let Some(t) = o.timeline {
        parts.push(format!("timeline {t}"));
    }
    if let Some(l) = o.lsn {
        parts.push(format!("lsn {l}"));
    }
    // Lag and slot as the upstream sees them.
    if let Some(r) = up.and_then(|up| up.replication.iter().find(|r| r.application_name == name)) {
        if let Some(lag) = r.lag_bytes {
            let text = format!("lag {}", ByteSize::human(lag));
            parts.push(if lag == 0 { text } else { p.warn(&text) });
        }
        if r.sync_state != "async" && !r.sync_state.is_empty() {
            parts.push(r.sync_state.clone());
        }
    }
    if let Some(v) = o.version {
        parts.push(p.dim(&version_text(v)));
    }
}

/// A node that does not answer: address, what is known of its state, and why.
fn down_parts(p: &Painter, o: &ObservedNode, addr: &str, parts: &mut Vec<String>) {
    parts.push(p.dim(addr));
    let state = if o.running && !o.host_reachable {
        "running, its host unreachable".to_string()
    } else if o.running {
        "running, not answering".to_string()
    } else if let Some(c) = &o.control {
        format!(
            "stopped ({}, checkpoint {} on timeline {})",
            c.cluster_state, c.latest_checkpoint, c.checkpoint_timeline
        )
    } else if !o.host_reachable {
        "host unreachable".to_string()
    } else if !o.data_dir.exists {
        "no data directory".to_string()
    } else if o.data_dir.empty {
        "empty data directory".to_string()
    } else {
        "stopped".to_string()
    };
    let down = match o.role {
        Some(_) => format!("DOWN {}: {state}", role_text(o)),
        None => format!("DOWN: {state}"),
    };
    parts.push(p.bad(&down));
    if let Some(r) = &o.unreachable_reason {
        parts.push(p.dim(&format!("— {r}")));
    }
}

/// The node's slot on its upstream `holder`: active or not, what it retains, a slot at risk.
fn slot_part(p: &Painter, slot: &crate::observe::ObservedSlot, holder: &str) -> String {
    let text = format!(
        "slot {} on {holder}{}{}",
        if slot.active { "active" } else { "inactive" },
        slot.wal_retained_bytes
            .map(|b| format!(" retains {}", ByteSize::human(b)))
            .unwrap_or_default(),
        match slot.wal_status.as_deref() {
            Some(w @ ("lost" | "unreserved")) => format!(" (wal_status {w})"),
            _ => String::new(),
        }
    );
    match slot.wal_status.as_deref() {
        Some("lost" | "unreserved") => p.bad(&text),
        _ => text,
    }
}

/// What the topology declares, when the observed role or upstream differs from it (an unknown
/// upstream of the declared role is no difference).
fn declared_part(d: &DesiredNode, o: &ObservedNode) -> Option<String> {
    let declared = match &d.role {
        DesiredRole::Primary => (Some(Role::Primary), None),
        DesiredRole::Standby { upstream } => (Some(Role::Standby), Some(upstream.as_str())),
        DesiredRole::Absent => (None, None),
    };
    let observed = (o.role, o.upstream.as_deref());
    if d.role == DesiredRole::Absent {
        Some("(declared absent)".to_string())
    } else if o.role.is_some()
        && declared != observed
        && !(declared.0 == observed.0 && o.upstream.is_none())
    {
        Some(match declared {
            (Some(Role::Primary), _) => "(declared primary)".to_string(),
            (_, Some(u)) => format!("(declared standby of {u})"),
            _ => String::new(),
        })
    } else {
        None
    }
}

/// A logical slot's line under its node: plugin, database and, on 17+, failover and sync state
/// (`synced, temporary` is a copy that would not survive a promotion yet).
fn logical_line(s: &crate::observe::ObservedSlot) -> Option<String> {
    let l = s.logical.as_ref()?;
    let mut parts = vec![l.plugin.clone(), format!("database {}", l.database)];
    parts.push(if s.active { "active" } else { "inactive" }.to_string());
    if l.failover == Some(true) {
        parts.push("failover".into());
    }
    if l.synced == Some(true) {
        parts.push("synced".into());
    }
    if l.temporary {
        parts.push("temporary".into());
    }
    if l.conflicting == Some(true) {
        parts.push("conflicting".into());
    }
    if let Some(r) = &l.invalidation_reason {
        parts.push(format!("invalidated: {r}"));
    }
    Some(format!("logical slot {} ({})", s.name, parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DesiredNode, DesiredRole};
    use crate::observe::{ControlData, ObservedReplica, ObservedSlot};

    fn desired() -> Desired {
        let node = |name: &str, i: u8, role: DesiredRole| DesiredNode {
            name: name.into(),
            host: format!("127.0.0.{i}"),
            port: 5432,
            data_dir: format!("/d/{name}").into(),
            bin_dir: "/b".into(),
            os_user: "postgres".into(),
            ssh: None,
            role,
            settings: Default::default(),
            promotion: Default::default(),
            tls: Default::default(),
            service: Default::default(),
            config_dir: None,
        };
        let sb = |u: &str| DesiredRole::Standby { upstream: u.into() };
        Desired {
            cluster: "shop".into(),
            source_path: "t.yaml".into(),
            sha256: String::new(),
            connect: Default::default(),
            replication: Default::default(),
            hba: vec![],
            failover: Default::default(),
            switchover: Default::default(),
            poolers: Default::default(),
            hooks: Default::default(),
            logical_slots: vec![],
            upgrade: Default::default(),
            archive: None,
            clone_policy: Default::default(),
            nodes: [
                ("n1", node("n1", 1, DesiredRole::Primary)),
                ("n2", node("n2", 2, sb("n1"))),
                ("n3", node("n3", 3, sb("n2"))),
                ("n4", node("n4", 4, sb("n1"))),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        }
    }

    fn observed() -> ObservedCluster {
        let up = |role, upstream: Option<&str>| ObservedNode {
            reachable: true,
            running: true,
            host_reachable: true,
            role: Some(role),
            upstream: upstream.map(str::to_string),
            streaming: upstream.is_some(),
            timeline: Some(1),
            lsn: Some("0/3000060".parse().unwrap()),
            version: Some(150004),
            ..Default::default()
        };
        let slot = |name: &str, active| ObservedSlot {
            name: name.into(),
            slot_type: "physical".into(),
            active,
            restart_lsn: None,
            wal_retained_bytes: Some(2048),
            wal_status: None,
            safe_wal_size: None,
            logical: None,
        };
        let repl = |name: &str| ObservedReplica {
            application_name: name.into(),
            client_addr: None,
            state: "streaming".into(),
            sync_state: "async".into(),
            sent_lsn: None,
            flush_lsn: None,
            replay_lsn: None,
            lag_bytes: Some(0),
            reply_age_ms: None,
            replay_lag_ms: None,
        };
        let mut n1 = up(Role::Primary, None);
        n1.replication_slots = vec![slot("n2", true), slot("n4", false), slot("old", false)];
        n1.replication = vec![repl("n2")];
        let mut n2 = up(Role::Standby, Some("n1"));
        n2.replication_slots = vec![slot("n3", true)];
        n2.replication = vec![repl("n3")];
        let n3 = up(Role::Standby, Some("n2"));
        let n4 = ObservedNode {
            unreachable_reason: Some("n4 (127.0.0.4:5432): connection refused".into()),
            host_reachable: true,
            role: Some(Role::Standby),
            data_dir: crate::observe::DataDirState {
                exists: true,
                empty: false,
                pg_version: Some(15),
            },
            control: Some(ControlData {
                system_identifier: "1".into(),
                cluster_state: "shut down in recovery".into(),
                latest_checkpoint: "0/2000028".parse().unwrap(),
                latest_checkpoint_redo: "0/2000028".parse().unwrap(),
                checkpoint_timeline: 1,
                min_recovery_end: Default::default(),
                min_recovery_end_timeline: 0,
                wal_log_hints: true,
                data_checksums: false,
                wal_segment_size: 16 << 20,
            }),
            ..Default::default()
        };
        ObservedCluster {
            format_version: 1,
            cluster: "shop".into(),
            observed_at: "2026-01-01T00:00:00Z".into(),
            poolers: Default::default(),
            nodes: [("n1", n1), ("n2", n2), ("n3", n3), ("n4", n4)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    #[test]
    fn tree_text() {
        let t = text_with(&desired(), &observed(), false);
        let expected = "\
cluster shop  observed 2026-01-01T00:00:00Z
n1  primary  127.0.0.1:5432  timeline 1  lsn 0/3000060  PG 15.4
│  slot old (inactive, serves no node here), retains 2.0 kB
├─ n2  standby  127.0.0.2:5432  streaming  timeline 1  lsn 0/3000060  lag 0 B  PG 15.4  slot active on n1 retains 2.0 kB
│  └─ n3  standby  127.0.0.3:5432  streaming  timeline 1  lsn 0/3000060  lag 0 B  PG 15.4  slot active on n2 retains 2.0 kB
└─ n4  127.0.0.4:5432  DOWN standby: stopped (shut down in recovery, checkpoint 0/2000028 on timeline 1)  — n4 (127.0.0.4:5432): connection refused  slot inactive on n1 retains 2.0 kB
";
        assert_eq!(t, expected, "\n{t}");
    }

    #[test]
    fn an_undeclared_upstream_is_named() {
        let mut o = observed();
        let n3 = o.nodes.get_mut("n3").unwrap();
        n3.upstream = None;
        n3.upstream_addr = Some("10.9.9.9:5432".into());
        let t = text_with(&desired(), &o, false);
        assert!(
            t.contains("streaming  from 10.9.9.9:5432 (not a declared node)"),
            "{t}"
        );
    }

    #[test]
    fn json_has_the_spec_fields() {
        let v: serde_json::Value = serde_json::from_str(&json(&desired(), &observed())).unwrap();
        assert_eq!(v["cluster"], "shop");
        let n2 = &v["nodes"]["n2"];
        for k in [
            "reachable",
            "running",
            "role",
            "upstream",
            "streaming",
            "timeline",
            "lsn",
            "system_identifier",
            "slots",
            "version",
        ] {
            assert!(n2.get(k).is_some(), "missing {k}");
        }
        assert_eq!(n2["upstream"], "n1");
        assert_eq!(n2["lsn"], "0/3000060");
        assert_eq!(v["nodes"]["n4"]["reachable"], false);
        assert_eq!(v["nodes"]["n4"]["declared_upstream"], "n1");
        assert!(v.get("poolers").is_none(), "no poolers, no key");
    }

    #[test]
    fn json_carries_the_poolers_as_observe_does() {
        let mut o = observed();
        o.poolers.insert(
            "pgb".into(),
            crate::pooler::ObservedPooler {
                reachable: true,
                ..Default::default()
            },
        );
        let v: serde_json::Value = serde_json::from_str(&json(&desired(), &o)).unwrap();
        assert_eq!(v["poolers"]["pgb"]["reachable"], true);
    }
}
