//! The JSON Schemas pgtopo publishes, generated with schemars from the Rust types that read and
//! write each file, so they cannot drift from the code: the topology file ([`TopologyFile`]), a
//! saved plan ([`crate::plan::wire::PlanFile`]) and an observed-state recording
//! ([`crate::observe::ObservedCluster`]). `pgtopo schema` prints them; `schemas/*.schema.json`
//! hold the same text and a test keeps them up to date. Generation lives in `cli`, the one module
//! that sees all three types.

use crate::config::TopologyFile;

/// Which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Topology,
    Plan,
    Observed,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Topology, Kind::Plan, Kind::Observed];

    /// The file name under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Topology => "topology.schema.json",
            Kind::Plan => "plan.schema.json",
            Kind::Observed => "observed.schema.json",
        }
    }
}

/// The schema as a JSON value.
pub fn value(kind: Kind) -> serde_json::Value {
    let root = match kind {
        Kind::Topology => schemars::schema_for!(TopologyFile),
        Kind::Plan => schemars::schema_for!(crate::plan::wire::PlanFile),
        Kind::Observed => schemars::schema_for!(crate::observe::ObservedCluster),
    };
    serde_json::to_value(root).expect("a schema serialises")
}

/// The schema as pretty-printed JSON with a trailing newline: the content of `schemas/`.
pub fn text(kind: Kind) -> String {
    let mut s = serde_json::to_string_pretty(&value(kind)).expect("a schema serialises");
    s.push('\n');
    s
}
