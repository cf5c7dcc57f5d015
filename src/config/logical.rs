//! Logical slots declared on the primary (`logical_slots:`), and what failover slots make pgtopo
//! own (PostgreSQL 17+).
//!
//! A slot with `failover: true` is created on the primary with failover enabled and synchronised
//! by the slot-sync worker of every standby that may become primary: the present standbys that
//! stream straight from the declared primary (PostgreSQL synchronises slots from a primary only,
//! never along a cascade). For them pgtopo owns `sync_replication_slots = on`,
//! `hot_standby_feedback = on` and `dbname` in primary_conninfo; on the primary it owns
//! `synchronized_standby_slots` = their physical slots, so that no subscriber receives a change
//! that a standby which may take over has not received yet. Every value is derived from the
//! declared roles, so a switchover, a failover or a re-point (a new topology file) re-derives
//! them: the new primary names its new standbys' slots, and the old one clears the list.
//!
//! Validation here: names (unique, not a node's name: physical slots carry node names), failover
//! slots need `replication.slots`, and the settings pgtopo owns for them are not written by hand.
//! The server version is checked at plan time against the observed servers (no IO here).

use std::collections::BTreeSet;

use super::diag::ConfigError;
use super::model::{Desired, DesiredRole};
use super::yaml::{Node, Value};

/// The first major with failover slots (`pg_create_logical_replication_slot(…, failover)`).
pub const FAILOVER_SLOTS_MIN_VERSION: i32 = 170000;

/// Settings pgtopo writes itself once a failover slot is declared.
pub const OWNED_WITH_FAILOVER_SLOTS: [&str; 2] =
    ["sync_replication_slots", "synchronized_standby_slots"];

impl Desired {
    /// Whether any declared logical slot has `failover: true`.
    pub fn has_failover_slots(&self) -> bool {
        self.logical_slots.iter().any(|s| s.failover)
    }

    /// The standbys that may take over and so must hold synced copies of the failover slots:
    /// present standbys of the declared primary, in name order.
    pub fn failover_standbys(&self) -> Vec<&str> {
        let primary = &self.primary().name;
        self.present()
            .filter(|n| matches!(&n.role, DesiredRole::Standby { upstream } if upstream == primary))
            .map(|n| n.name.as_str())
            .collect()
    }

    /// The settings failover slots make pgtopo own on `name`, with why (empty without failover
    /// slots). The slot list is comma-separated without spaces, as PostgreSQL prints it.
    pub fn failover_slot_settings(&self, name: &str) -> Vec<(&'static str, String, String)> {
        let Some(node) = self.nodes.get(name) else {
            return vec![];
        };
        if !self.has_failover_slots() || node.role == DesiredRole::Absent {
            return vec![];
        }
        let standbys = self.failover_standbys();
        let mut out = Vec::new();
        if node.role == DesiredRole::Primary || standbys.contains(&name) {
            let why = "failover slots are synchronised to the standbys that may take over";
            out.push(("sync_replication_slots", "on".to_string(), why.to_string()));
            out.push(("hot_standby_feedback", "on".to_string(), why.to_string()));
        }
        let list = if node.role == DesiredRole::Primary {
            standbys.join(",")
        } else {
            String::new()
        };
        let why = if list.is_empty() {
            format!("{name} is not the primary: it waits for no standby's slot")
        } else {
            format!("subscribers receive nothing before the standbys that may take over ({list})")
        };
        out.push(("synchronized_standby_slots", list, why));
        out
    }

    /// The dbname a standby's primary_conninfo carries for the slot-sync worker: the one pgtopo
    /// connects to, when failover slots are declared.
    pub fn slot_sync_dbname(&self) -> Option<String> {
        self.has_failover_slots()
            .then(|| self.connect.dbname.clone())
    }
}

/// The validation rules of `logical_slots`.
pub fn check(root: &Node, errors: &mut Vec<ConfigError>) {
    let Some(slots) = root.get("logical_slots") else {
        return;
    };
    let node_names: BTreeSet<&str> = root
        .get("nodes")
        .map(|n| n.value.entries().iter().map(|e| e.key.as_str()).collect())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut failover = None;
    for item in slots.value.items() {
        if let Some(f) = item
            .get("failover")
            .filter(|f| f.value.as_bool() == Some(true))
        {
            failover.get_or_insert(f.value.span);
        }
        let Some(name) = item.get("name") else {
            continue;
        };
        let Some(text) = name.value.as_str() else {
            continue;
        };
        if !seen.insert(text) {
            errors.push(
                ConfigError::new(
                    "logical_slot_duplicate",
                    format!("the logical slot `{text}` is declared twice"),
                )
                .label(name.value.span, "declared again")
                .help("declare each logical slot once"),
            );
        } else if node_names.contains(text) {
            errors.push(
                ConfigError::new(
                    "logical_slot_node_name",
                    format!("the logical slot `{text}` has the name of a node"),
                )
                .label(name.value.span, "a node's name")
                .help("physical slots are named after nodes: give the logical slot another name"),
            );
        }
    }
    let Some(failover) = failover else {
        return;
    };
    if let Some(s) = root
        .at(&["replication", "slots"])
        .filter(|s| s.value.as_bool() == Some(false))
    {
        errors.push(
            ConfigError::new(
                "failover_slots_need_slots",
                "failover logical slots need physical slots for the standbys",
            )
            .label(s.value.span, "physical slots off")
            .label(failover, "a failover slot")
            .help(
                "set `replication.slots: true`: the primary's synchronized_standby_slots names \
                 the standbys' physical slots",
            ),
        );
    }
    owned_settings(root, errors);
}

/// `sync_replication_slots` and `synchronized_standby_slots` are pgtopo's with failover slots, and
/// `hot_standby_feedback` cannot be turned off.
fn owned_settings(root: &Node, errors: &mut Vec<ConfigError>) {
    for (place, e) in super::yaml::setting_entries(root) {
        let key = e.key.to_ascii_lowercase();
        let off = key == "hot_standby_feedback"
            && matches!(&e.value.value, Value::Scalar(..))
            && (e.value.as_bool() == Some(false)
                || e.value
                    .as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case("off")));
        if OWNED_WITH_FAILOVER_SLOTS.contains(&key.as_str()) || off {
            errors.push(
                ConfigError::new(
                    "owned_setting",
                    format!("`{}` in {place} is managed by pgtopo", e.key),
                )
                .label(e.key_span, "set by pgtopo for failover slots")
                .help(format!(
                    "remove it: with `logical_slots` that have `failover: true`, pgtopo \
                     writes `{key}` itself from the declared roles"
                )),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str_with;

    fn bin() -> std::path::PathBuf {
        "/usr/lib/postgresql/18/bin".into()
    }

    const NODES: &str = "nodes:\n  n1: {host: 127.0.0.1, data_dir: /d1, role: primary}\n  n2: {host: 127.0.0.2, data_dir: /d2}\n";

    fn load(extra: &str) -> Result<crate::config::Desired, String> {
        let text = format!("cluster: shop\n{extra}{NODES}");
        load_str_with("topology.yaml", &text, bin).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn a_failover_slot_is_read_with_its_defaults() {
        let d = load("logical_slots:\n  - {name: orders_sub, database: shop, failover: true}\n")
            .unwrap();
        assert_eq!(d.logical_slots[0].plugin, "pgoutput");
        assert!(d.has_failover_slots());
        assert_eq!(d.failover_standbys(), ["n2"]);
        assert_eq!(d.slot_sync_dbname().as_deref(), Some("postgres"));
    }

    #[test]
    fn bad_declarations_are_each_reported() {
        let text = format!(
            "cluster: shop\nreplication: {{slots: false}}\nsettings: {{sync_replication_slots: 'off', hot_standby_feedback: false}}\nlogical_slots:\n  - {{name: a, database: shop, failover: true}}\n  - {{name: a, database: shop}}\n  - {{name: n2, database: shop}}\n{NODES}"
        );
        let root = crate::config::yaml::parse(&text).unwrap().root.unwrap();
        let mut errors = Vec::new();
        super::check(&root, &mut errors);
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.code, e.message.as_str()))
            .collect();
        let codes: Vec<&str> = got.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            codes,
            [
                "logical_slot_duplicate",
                "logical_slot_node_name",
                "failover_slots_need_slots",
                "owned_setting",
                "owned_setting"
            ],
            "{got:?}"
        );
        assert!(got[3].1.contains("sync_replication_slots"), "{got:?}");
        assert!(got[4].1.contains("hot_standby_feedback"), "{got:?}");
        assert!(load(&text["cluster: shop\n".len()..text.len() - NODES.len()]).is_err());
    }

    #[test]
    fn without_failover_slots_nothing_is_owned() {
        let d = load("settings: {hot_standby_feedback: false}\nlogical_slots:\n  - {name: a, database: shop}\n").unwrap();
        assert!(d.failover_slot_settings("n1").is_empty());
        assert_eq!(d.slot_sync_dbname(), None);
    }
}
