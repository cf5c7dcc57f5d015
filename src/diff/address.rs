//! The address of a change or a drift finding, typed: what it is about and on which node. It is
//! written the way Terraform writes resource addresses (`node.n2`, `slot.n1.n2`,
//! `setting.n1.max_connections`, `hba.n1`, `sync.CLUSTER`, `logical_slot.n1.sub`, `pooler.pgb`)
//! in plans, drift reports and saved plan files; [`Address::parse`] reads that text back.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a change or a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Address {
    /// A node's role, upstream, data (`node.n2`).
    Node(String),
    /// A physical slot `slot` on `holder` (`slot.n1.n2`).
    Slot { holder: String, slot: String },
    /// A declared logical slot, or a standby's copy of one (`logical_slot.n1.sub`).
    LogicalSlot { node: String, slot: String },
    /// One setting of a node (`setting.n1.work_mem`; a custom setting's name has a dot).
    Setting { node: String, name: String },
    /// A node's pg_hba managed block (`hba.n1`).
    Hba(String),
    /// The primary's synchronous set, named by the cluster (`sync.shop`).
    Sync(String),
    /// A pooler (`pooler.pgb`).
    Pooler(String),
    /// An archive finding on a node: `archive.NODE.WHAT` (failing, lag, restore_command,
    /// pgbackrest, stanza).
    Archive { node: String, what: String },
}

impl Address {
    /// The node the address is on (none for the synchronous set and a pooler).
    pub fn node(&self) -> Option<&str> {
        match self {
            Address::Node(n) | Address::Hba(n) => Some(n),
            Address::Slot { holder, .. } => Some(holder),
            Address::LogicalSlot { node, .. }
            | Address::Setting { node, .. }
            | Address::Archive { node, .. } => Some(node),
            Address::Sync(_) | Address::Pooler(_) => None,
        }
    }

    /// The address read back from its text; `None` for text that is not one.
    pub fn parse(s: &str) -> Option<Address> {
        let (kind, rest) = s.split_once('.')?;
        let pair = || {
            rest.split_once('.')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        };
        Some(match kind {
            "node" => Address::Node(rest.into()),
            "hba" => Address::Hba(rest.into()),
            "sync" => Address::Sync(rest.into()),
            "pooler" => Address::Pooler(rest.into()),
            "slot" => {
                let (holder, slot) = pair()?;
                Address::Slot { holder, slot }
            }
            "logical_slot" => {
                let (node, slot) = pair()?;
                Address::LogicalSlot { node, slot }
            }
            "setting" => {
                let (node, name) = pair()?;
                Address::Setting { node, name }
            }
            "archive" => {
                let (node, what) = pair()?;
                Address::Archive { node, what }
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Node(n) => write!(f, "node.{n}"),
            Address::Slot { holder, slot } => write!(f, "slot.{holder}.{slot}"),
            Address::LogicalSlot { node, slot } => write!(f, "logical_slot.{node}.{slot}"),
            Address::Setting { node, name } => write!(f, "setting.{node}.{name}"),
            Address::Hba(n) => write!(f, "hba.{n}"),
            Address::Sync(c) => write!(f, "sync.{c}"),
            Address::Pooler(p) => write!(f, "pooler.{p}"),
            Address::Archive { node, what } => write!(f, "archive.{node}.{what}"),
        }
    }
}

impl From<Address> for String {
    fn from(a: Address) -> String {
        a.to_string()
    }
}

impl TryFrom<String> for Address {
    type Error = String;

    fn try_from(s: String) -> Result<Address, String> {
        Address::parse(&s).ok_or_else(|| format!("`{s}` is not a change address"))
    }
}

/// Compare with the address's text (`address == "node.n2"` in tests and lookups).
impl PartialEq<&str> for Address {
    fn eq(&self, other: &&str) -> bool {
        Address::parse(other).as_ref() == Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for s in [
            "node.n2",
            "slot.n1.n2",
            "logical_slot.n1.sub",
            "setting.n1.max_connections",
            "setting.n1.auto_explain.log_min_duration",
            "hba.n1",
            "sync.shop-eu",
            "pooler.pgb",
        ] {
            let a = Address::parse(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(a.to_string(), s);
        }
        assert_eq!(
            Address::parse("setting.n1.auto_explain.x"),
            Some(Address::Setting {
                node: "n1".into(),
                name: "auto_explain.x".into()
            })
        );
        assert!(Address::parse("slot.n1").is_none());
        assert!(Address::parse("disk.n1").is_none());
        let json = serde_json::to_string(&Address::Hba("n1".into())).unwrap();
        assert_eq!(json, "\"hba.n1\"");
        let back: Address = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Address::Hba("n1".into()));
    }
}
