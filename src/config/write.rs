//! The one writer of topology files: [`TopologyFile`] → YAML text.
//!
//! Whoever writes a topology (`import`, the sandbox, the test harness) builds a [`TopologyFile`]
//! (the serde model that is also the JSON Schema's source) and renders it here, so every written
//! file is one that [`super::load`] reads back. The text says only what differs from the
//! defaults: a key whose value is the model's default, an absent option (`null`) and an empty
//! section are left out, so a file reads as what is particular to its cluster. A header (the
//! writer's comments) may be put above the document.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_yaml::{Mapping, Value};

use super::model::{HbaRule, LogicalSlotSpec, NodeSpec, PoolerSpec, TopologyFile};

/// The least each kind of entry must say; what its type fills in beyond that is its default.
const MINIMAL_FILE: &str = "{cluster: c, nodes: {}}";
const MINIMAL_NODE: &str = "{host: h, data_dir: /}";
const MINIMAL_HBA: &str = "{type: local, database: all, user: all, method: peer}";
const MINIMAL_POOLER: &str = "{host: h, databases: []}";
const MINIMAL_LOGICAL_SLOT: &str = "{name: s, database: d}";

impl TopologyFile {
    /// A topology of `cluster` with `nodes` and every other section at its default.
    pub fn new(cluster: &str, nodes: BTreeMap<String, NodeSpec>) -> TopologyFile {
        let f: TopologyFile = serde_yaml::from_str(MINIMAL_FILE).expect("the minimal file reads");
        TopologyFile {
            cluster: cluster.to_string(),
            nodes,
            ..f
        }
    }

    /// The YAML text of the file (see the module docs for what is left out).
    pub fn to_yaml(&self) -> String {
        let mut doc = to_value(self);
        let top = defaults::<TopologyFile>(MINIMAL_FILE);
        if let Value::Mapping(m) = &mut doc {
            for (k, v) in m.iter_mut() {
                match k.as_str().unwrap_or_default() {
                    "nodes" => prune_entries(v, &defaults::<NodeSpec>(MINIMAL_NODE)),
                    "poolers" => prune_entries(v, &defaults::<PoolerSpec>(MINIMAL_POOLER)),
                    "hba" => prune_entries(v, &defaults::<HbaRule>(MINIMAL_HBA)),
                    "logical_slots" => {
                        prune_entries(v, &defaults::<LogicalSlotSpec>(MINIMAL_LOGICAL_SLOT))
                    }
                    _ => prune(v, top.get(k)),
                }
            }
            retain_particular(m, Some(&top));
        }
        serde_yaml::to_string(&doc).expect("a topology renders as YAML")
    }

    /// [`TopologyFile::to_yaml`] below `header`, each of its lines written as a `# ` comment.
    pub fn to_yaml_with_header<S: AsRef<str>>(&self, header: &[S]) -> String {
        let mut text: String = header
            .iter()
            .flat_map(|h| h.as_ref().lines())
            .map(|line| format!("# {line}\n"))
            .collect();
        text.push_str(&self.to_yaml());
        text
    }
}

impl NodeSpec {
    /// A node at `host` with `data_dir` and every other key at its default (a standby of the
    /// primary, port 5432).
    pub fn new(host: &str, data_dir: PathBuf) -> NodeSpec {
        let n: NodeSpec = serde_yaml::from_str(MINIMAL_NODE).expect("the minimal node reads");
        NodeSpec {
            host: host.to_string(),
            data_dir,
            ..n
        }
    }
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_yaml::to_value(t).expect("the topology model serialises")
}

/// The keys that `T` fills in when `minimal` (YAML of its required keys) says nothing of them,
/// with their values.
fn defaults<T: DeserializeOwned + Serialize>(minimal: &str) -> Value {
    let t: T = serde_yaml::from_str(minimal).expect("a minimal entry reads");
    let given: Mapping = serde_yaml::from_str(minimal).expect("a minimal entry is a mapping");
    let mut v = to_value(&t);
    if let Value::Mapping(m) = &mut v {
        m.retain(|k, _| !given.contains_key(k));
    }
    v
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Mapping(m) => m.is_empty(),
        Value::Sequence(s) => s.is_empty(),
        _ => false,
    }
}

/// Leave out of `v` the keys at their default (`default`: its defaults, when it has any),
/// absent options and emptied sub-sections, at every depth.
fn prune(v: &mut Value, default: Option<&Value>) {
    let Value::Mapping(m) = v else { return };
    for (k, child) in m.iter_mut() {
        prune(child, default.and_then(|d| d.get(k)));
    }
    retain_particular(m, default);
}

/// Keep the keys of `m` that say something: not null, and, for a key that has a default, neither
/// that default nor empty.
fn retain_particular(m: &mut Mapping, default: Option<&Value>) {
    m.retain(|k, v| match default.and_then(|d| d.get(k)) {
        Some(d) => !(is_empty(v) || v == d),
        None => !v.is_null(),
    });
}

/// [`prune`] every entry of a mapping by name (nodes, poolers) or of a list (hba rules).
fn prune_entries(v: &mut Value, default: &Value) {
    match v {
        Value::Mapping(m) => m.iter_mut().for_each(|(_, e)| prune(e, Some(default))),
        Value::Sequence(s) => s.iter_mut().for_each(|e| prune(e, Some(default))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::*;
    use super::*;

    fn node(host: &str, role: Option<NodeRole>, upstream: Option<&str>) -> NodeSpec {
        NodeSpec {
            role,
            upstream: upstream.map(str::to_string),
            port: 5433,
            ..NodeSpec::new(host, PathBuf::from(format!("/pg/{host}")))
        }
    }

    fn two_nodes() -> TopologyFile {
        let nodes = BTreeMap::from([
            (
                "n1".to_string(),
                node("10.0.0.1", Some(NodeRole::Primary), None),
            ),
            (
                "n2".to_string(),
                node("10.0.0.2", Some(NodeRole::Standby), Some("n1")),
            ),
        ]);
        TopologyFile::new("shop", nodes)
    }

    #[test]
    fn defaults_are_left_out() {
        assert_eq!(
            two_nodes().to_yaml(),
            "cluster: shop\nnodes:\n  n1:\n    host: 10.0.0.1\n    port: 5433\n    \
             data_dir: /pg/10.0.0.1\n    role: primary\n  n2:\n    host: 10.0.0.2\n    \
             port: 5433\n    data_dir: /pg/10.0.0.2\n    role: standby\n    upstream: n1\n"
        );
    }

    #[test]
    fn round_trip_through_load() {
        let mut f = two_nodes();
        f.postgres.bin_dir = Some("/usr/lib/postgresql/15/bin".into());
        f.connect.password = Some(SecretRef::Env { env: "PGPW".into() });
        f.replication.user = "postgres".into();
        f.replication.hba_method = "trust".into();
        f.replication.synchronous = Some(SyncSpec {
            mode: SyncMode::Quorum,
            count: 1,
            standbys: vec!["n2".into()],
        });
        f.settings
            .insert("work_mem".into(), SettingValue("8MB".into()));
        f.nodes
            .get_mut("n2")
            .unwrap()
            .settings
            .insert("hot_standby_feedback".into(), SettingValue("on".into()));
        let text = f.to_yaml_with_header(&["written by a test", "two lines"]);
        assert!(text.starts_with("# written by a test\n# two lines\ncluster: shop\n"));
        let d = crate::config::load_str_with("round-trip.yaml", &text, || {
            PathBuf::from("/usr/lib/postgresql/15/bin")
        })
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
        assert_eq!(d.cluster, "shop");
        assert_eq!(d.replication, f.replication);
        assert_eq!(d.connect, f.connect);
        assert_eq!(d.nodes["n2"].settings["work_mem"], "8MB");
        assert_eq!(d.nodes["n2"].settings["hot_standby_feedback"], "on");
        assert_eq!(d.nodes["n1"].port, 5433);
        // Written again from what it reads as, the text is the same.
        let again: TopologyFile = serde_yaml::from_str(&text).unwrap();
        assert_eq!(again.to_yaml(), f.to_yaml());
    }
}
