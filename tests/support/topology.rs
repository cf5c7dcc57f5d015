//! Topology files of a test cluster: [`Topology`] (the default from the cluster's nodes, then
//! changed by the test) becomes a `config::TopologyFile` and is written through pgtopo's one
//! writer, `TopologyFile::to_yaml`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pgtopo::config::{Desired, NodeSpec, SettingValue, SshSpec, TopologyFile};

use super::cluster::{NodeKind, TestCluster};

/// A topology file under construction; [`TestCluster::topology`] gives the default one.
#[derive(Debug, Clone)]
pub struct Topology {
    pub cluster: String,
    pub bin_dir: PathBuf,
    pub os_user: String,
    pub slots: bool,
    pub nodes: BTreeMap<String, TopoNode>,
    /// Cluster-wide `settings:`.
    pub settings: BTreeMap<String, String>,
    /// YAML merged (deeply, mappings only) into the rendered document last: any key the file
    /// allows, e.g. `connect: {password: {env: X}}` or `failover: {allow: true}`.
    pub extra: Vec<String>,
}

/// One node of a [`Topology`].
#[derive(Debug, Clone)]
pub struct TopoNode {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    /// `primary`, `standby`, or None (not written).
    pub role: Option<String>,
    pub upstream: Option<String>,
    /// `absent` to retire.
    pub state: Option<String>,
    pub settings: BTreeMap<String, String>,
    /// `ssh:` — reach the node's files and tools over SSH.
    pub ssh: Option<SshSpec>,
}

impl Topology {
    /// Set a node's role (`"primary"` or `"standby"`) and upstream.
    pub fn role(&mut self, node: &str, role: &str, upstream: Option<&str>) -> &mut Self {
        let n = self.nodes.get_mut(node).expect("node in topology");
        n.role = Some(role.to_string());
        n.upstream = upstream.map(str::to_string);
        self
    }

    /// Reach `node` over SSH with `spec`.
    pub fn ssh(&mut self, node: &str, spec: SshSpec) -> &mut Self {
        self.nodes.get_mut(node).expect("node in topology").ssh = Some(spec);
        self
    }

    /// Add YAML to merge into the document (see [`Topology::extra`]).
    pub fn extra_yaml(&mut self, yaml: &str) -> &mut Self {
        self.extra.push(yaml.to_string());
        self
    }

    /// The topology file: the fields above, then every [`Topology::extra`] merged in.
    pub fn to_file(&self) -> TopologyFile {
        let nodes = self.nodes.iter().map(|(name, n)| {
            let spec = NodeSpec {
                port: n.port,
                role: n.role.as_deref().map(from_word),
                upstream: n.upstream.clone(),
                state: n.state.as_deref().map(from_word).unwrap_or_default(),
                settings: settings(&n.settings),
                ssh: n.ssh.clone(),
                ..NodeSpec::new(&n.host, n.data_dir.clone())
            };
            (name.clone(), spec)
        });
        let mut file = TopologyFile::new(&self.cluster, nodes.collect());
        file.postgres.bin_dir = Some(self.bin_dir.clone());
        file.postgres.os_user = Some(self.os_user.clone());
        file.replication.slots = self.slots;
        file.settings = settings(&self.settings);
        let mut doc = serde_yaml::to_value(&file).expect("a topology serialises");
        for e in &self.extra {
            let v: serde_yaml::Value = serde_yaml::from_str(e).expect("extra YAML parses");
            merge(&mut doc, v);
        }
        serde_yaml::from_value(doc)
            .unwrap_or_else(|e| panic!("the test topology does not read: {e}\n{:?}", self.extra))
    }

    /// The YAML text of the topology file (through the one writer, `TopologyFile::to_yaml`).
    pub fn to_yaml(&self) -> String {
        self.to_file().to_yaml()
    }
}

/// A YAML word (`primary`, `absent`) as the model's enum.
fn from_word<T: serde::de::DeserializeOwned>(word: &str) -> T {
    serde_yaml::from_str(word).unwrap_or_else(|e| panic!("`{word}`: {e}"))
}

fn settings(m: &BTreeMap<String, String>) -> BTreeMap<String, SettingValue> {
    m.iter()
        .map(|(k, v)| (k.clone(), SettingValue(v.clone())))
        .collect()
}

fn merge(into: &mut serde_yaml::Value, from: serde_yaml::Value) {
    use serde_yaml::Value;
    match (into, from) {
        (Value::Mapping(a), Value::Mapping(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

impl TestCluster {
    /// The default topology: every node with its address, port and data directory; initdb'ed
    /// nodes are primaries, cloned ones standbys of their upstream, declared ones standbys of the
    /// first primary; slots on; the passwords by reference (`connect:` and `replication:` of
    /// [`super::auth::Auth::topology_yaml`], the first of [`Topology::extra`]).
    pub fn topology(&self) -> Topology {
        let first_primary = self
            .nodes
            .iter()
            .find(|n| n.kind == NodeKind::Primary)
            .map(|n| n.name.clone());
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let (role, upstream) = match &n.kind {
                    NodeKind::Primary => ("primary", None),
                    NodeKind::Standby { upstream } => ("standby", Some(upstream.clone())),
                    NodeKind::Declared => ("standby", first_primary.clone()),
                };
                (
                    n.name.clone(),
                    TopoNode {
                        host: n.host.clone(),
                        port: n.port,
                        data_dir: n.data_dir.clone(),
                        role: Some(role.to_string()),
                        upstream,
                        state: None,
                        settings: BTreeMap::new(),
                        ssh: None,
                    },
                )
            })
            .collect();
        Topology {
            cluster: self.cluster_name.clone(),
            bin_dir: self.bin_dir.clone(),
            os_user: self.os_user.clone(),
            slots: true,
            nodes,
            settings: BTreeMap::new(),
            extra: vec![self.auth.topology_yaml()],
        }
    }

    /// `DIR/topology.yaml`: the file [`TestCluster::write_topology`] writes and
    /// [`TestCluster::pgtopo`] passes with `-f`.
    pub fn topology_file(&self) -> PathBuf {
        self.dir.join("topology.yaml")
    }

    /// Write `topo` to `DIR/topology.yaml`; later [`TestCluster::pgtopo`] calls use it.
    pub fn write_topology(&self, topo: &Topology) -> PathBuf {
        let path = self.topology_file();
        std::fs::write(&path, topo.to_yaml()).expect("write topology");
        path
    }

    /// The validated topology of `topo`: written to `DIR/topology.yaml` (as
    /// [`TestCluster::write_topology`]) and loaded with `config::load`; panics with the
    /// diagnostics when the file is invalid.
    pub fn desired_of(&self, topo: &Topology) -> Desired {
        let path = self.topology_file();
        std::fs::write(&path, topo.to_yaml()).expect("write topology");
        pgtopo::config::load(&path).unwrap_or_else(|e| panic!("invalid test topology: {e:?}"))
    }

    /// Observe the default topology now (`observe::observe` with default options).
    pub async fn observe(&self) -> pgtopo::observe::ObservedCluster {
        pgtopo::observe::observe(&self.desired(), &Default::default()).await
    }

    /// The validated default topology ([`TestCluster::topology`]).
    pub fn desired(&self) -> Desired {
        self.desired_of(&self.topology())
    }
}
