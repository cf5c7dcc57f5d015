//! The change list: one difference between the topology file and the cluster per address
//! (`node.n2`, `slot.n1.n2`, `setting.n1.max_connections`, `hba.n1`, `sync.CLUSTER`), each with
//! attribute-level before and after and a one-line reason. Produced by [`super::diff`] from the
//! assessment; the plan carries it as its first part (SPEC §3).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::address::Address;

/// One difference between the topology file and the cluster, at an address such as `node.n2`,
/// `slot.n1.n2`, `setting.n1.max_connections`, `hba.n1`, `sync.shop`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Change {
    #[schemars(with = "String")]
    pub address: Address,
    pub action: ChangeAction,
    /// Attribute-level before/after (`role`, `upstream`, `value`, …).
    pub attributes: Vec<AttributeChange>,
    /// One line: why.
    pub reason: String,
}

/// `+`, `~`, `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Add,
    Change,
    Remove,
}

/// One attribute of a change; `None` on a side means absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AttributeChange {
    pub name: String,
    pub before: Option<String>,
    pub after: Option<String>,
}
