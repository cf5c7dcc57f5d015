//! The drift report (`pgtopo drift`): where the live cluster no longer matches the topology
//! file. Read-only and pure: a function of (Desired, ObservedCluster); it proposes nothing.
//! Renderings live in `render::drift`.

use super::address::Address;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Desired, DesiredNode, DesiredRole};
use crate::observe::{ObservedCluster, ObservedNode, Role};
use crate::units::ByteSize;

use super::assess::{assess, Verdict};
use super::{
    actionable, hba, observed, observed_role, observed_upstream, obsolete_slot, setting_diffs,
    slot_retained, sync_mismatch,
};

pub use super::finding::{DriftItem, DriftKind};

/// Every finding, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DriftReport {
    pub cluster: String,
    pub observed_at: String,
    pub items: Vec<DriftItem>,
}

impl DriftReport {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Compare the cluster with the topology.
pub fn drift(d: &Desired, o: &ObservedCluster) -> DriftReport {
    let mut items = Vec::new();
    let block = hba::managed_block(d);
    let verdicts = assess(d, o);
    for n in d.nodes.values() {
        let x = observed(o, &n.name);
        let mut f = NodeFindings {
            d,
            o,
            n,
            x: &x,
            items: &mut items,
        };
        if let Some((kind, detail)) = verdicts
            .get(&n.name)
            .and_then(|v| verdict_finding(v, &n.name))
        {
            f.push(kind, f.addr(), detail);
        }
        if n.role == DesiredRole::Absent {
            if x.running {
                f.push(
                    DriftKind::RetiredRunning,
                    f.addr(),
                    format!("{} is retired (state: absent) but still running", n.name),
                );
            }
            continue;
        }
        f.liveness();
        f.role();
        if x.reachable {
            f.settings();
        }
        f.hba(&block);
        f.missing_slot();
        if x.reachable {
            f.slots();
        }
    }
    if observed(o, &d.primary().name).reachable {
        if let Some(m) = sync_mismatch(d, o) {
            items.push(DriftItem {
                kind: DriftKind::SyncSet,
                node: m.primary.clone(),
                address: Address::Sync(d.cluster.clone()),
                detail: format!(
                    "synchronous_standby_names is '{}' on {}, topology.yaml asks for '{}'",
                    m.have, m.primary, m.want
                ),
            });
        }
    }
    items.extend(
        super::archive::findings(d, o)
            .into_iter()
            .map(|f| DriftItem {
                kind: DriftKind::Archive,
                address: super::address::Address::Archive {
                    node: f.node.clone(),
                    what: f.what,
                },
                node: f.node,
                detail: f.detail,
            }),
    );
    for (node, version, other, other_version) in super::versions::mixed_majors(o) {
        items.push(DriftItem {
            kind: DriftKind::MixedMajors,
            address: Address::Node(node.to_string()),
            detail: format!("{node} runs {version}, {other} runs {other_version}"),
            node,
        });
    }
    items.extend(super::pooler_drift::findings(d, o));
    items.extend(super::logical::drift_items(d, o));
    DriftReport {
        cluster: d.cluster.clone(),
        observed_at: o.observed_at.clone(),
        items,
    }
}

/// The findings about one declared (present) node, each kind of check a method; they push in
/// the report's order.
struct NodeFindings<'a> {
    d: &'a Desired,
    o: &'a ObservedCluster,
    n: &'a DesiredNode,
    x: &'a ObservedNode,
    items: &'a mut Vec<DriftItem>,
}

impl NodeFindings<'_> {
    fn addr(&self) -> Address {
        Address::Node(self.n.name.clone())
    }

    fn push(&mut self, kind: DriftKind, address: Address, detail: String) {
        let node = self.n.name.clone();
        self.push_on(kind, node, address, detail);
    }

    fn push_on(&mut self, kind: DriftKind, node: String, address: Address, detail: String) {
        self.items.push(DriftItem {
            kind,
            node,
            address,
            detail,
        })
    }

    /// The node is stopped, unreachable, or runs without answering over SQL.
    fn liveness(&mut self) {
        let (n, x) = (self.n, self.x);
        let name = &n.name;
        if x.reachable && x.running {
            return;
        }
        let detail = if x.running {
            format!(
                "{name} does not answer over SQL ({})",
                x.unreachable_reason.as_deref().unwrap_or("no answer")
            )
        } else if actionable(x) {
            format!("{name} is stopped")
        } else {
            format!(
                "{name} is unreachable ({})",
                x.unreachable_reason.as_deref().unwrap_or("no answer")
            )
        };
        self.push(DriftKind::NodeDown, self.addr(), detail);
    }

    /// The node's role, and for a reachable standby what it follows and how.
    fn role(&mut self) {
        let (n, x) = (self.n, self.x);
        let name = &n.name;
        let role = observed_role(x);
        match &n.role {
            DesiredRole::Primary if role == Some(Role::Standby) => self.push(
                DriftKind::Role,
                self.addr(),
                format!("{name} is declared primary but is a standby"),
            ),
            DesiredRole::Standby { upstream } if role == Some(Role::Primary) => self.push(
                DriftKind::Role,
                self.addr(),
                format!("{name} is declared a standby of {upstream} but is a primary"),
            ),
            DesiredRole::Standby { upstream } if x.reachable => self.upstream(upstream),
            _ => {}
        }
    }

    /// A reachable standby follows `upstream`, streams from it, and with replication.tls.
    fn upstream(&mut self, upstream: &str) {
        let (n, x) = (self.n, self.x);
        let name = &n.name;
        let up = observed_upstream(self.d, x);
        let follows = up.as_deref() == Some(upstream);
        // A delayed standby waiting on its apply_delay receives too (the assessment's rule).
        if x.running && !super::assess::receives(x) && follows {
            self.push(
                DriftKind::NotStreaming,
                self.addr(),
                format!("{name} is running but does not stream from {upstream}"),
            );
        }
        if follows && !super::tls::conninfo_tls_ok(self.d, name, x) {
            self.push(
                DriftKind::WrongUpstream,
                self.addr(),
                format!("{name}'s primary_conninfo does not carry replication.tls"),
            );
        }
        if !follows {
            self.push(
                DriftKind::WrongUpstream,
                self.addr(),
                format!(
                    "{name} follows {} instead of {upstream}",
                    up.as_deref().unwrap_or("nothing")
                ),
            );
        }
    }

    /// Settings that differ from the topology, and settings waiting for a restart.
    fn settings(&mut self) {
        let (n, x) = (self.n, self.x);
        let name = &n.name;
        for s in setting_diffs(self.d, self.o, name) {
            self.push(
                DriftKind::SettingChanged,
                Address::Setting {
                    node: name.to_string(),
                    name: s.name.clone(),
                },
                format!(
                    "{} is {} on {name}, topology.yaml says {}",
                    s.name,
                    s.before.as_deref().unwrap_or("unset"),
                    s.after
                ),
            );
        }
        for (k, s) in &x.settings {
            if s.pending_restart {
                self.push(
                    DriftKind::PendingRestart,
                    Address::Setting {
                        node: name.to_string(),
                        name: k.to_string(),
                    },
                    format!("{k} was changed on {name} and waits for a restart"),
                );
            }
        }
    }

    /// pg_hba.conf's managed block edited by hand or missing, and errors in the file.
    fn hba(&mut self, block: &[String]) {
        let (n, x) = (self.n, self.x);
        let name = &n.name;
        let Some(h) = &x.hba else {
            return;
        };
        if hba::needs_write(block, x) {
            self.push(
                DriftKind::HbaEdited,
                Address::Hba(name.to_string()),
                if h.managed_block.is_some() {
                    format!("the pgtopo managed block of {name}'s pg_hba.conf was edited by hand")
                } else {
                    format!("{name}'s pg_hba.conf has no pgtopo managed block")
                },
            );
        }
        for e in &h.errors {
            self.push(
                DriftKind::HbaEdited,
                Address::Hba(name.to_string()),
                format!("pg_hba.conf error on {name}: {e}"),
            );
        }
    }

    /// The standby's slot is missing on its reachable upstream (a finding on the upstream).
    fn missing_slot(&mut self) {
        let n = self.n;
        let name = &n.name;
        if !self.d.replication.slots {
            return;
        }
        let DesiredRole::Standby { upstream } = &n.role else {
            return;
        };
        let u = observed(self.o, upstream);
        if u.reachable && !u.slots.iter().any(|s| s == name) {
            self.push_on(
                DriftKind::MissingSlot,
                upstream.clone(),
                Address::Slot {
                    holder: upstream.to_string(),
                    slot: name.to_string(),
                },
                format!("slot {name} is missing on {upstream}"),
            );
        }
    }

    /// The node's own slots: close to being lost, obsolete, or retaining WAL for a node that is
    /// down.
    fn slots(&mut self) {
        let (n, x) = (self.n, self.x);
        let name = &n.name;
        for s in x
            .replication_slots
            .iter()
            .filter(|s| s.wal_status.as_deref() == Some("unreserved"))
        {
            self.push(
                DriftKind::SlotUnreserved,
                Address::Slot { holder: name.to_string(), slot: s.name.clone() },
                format!(
                    "slot {} on {name} is close to being lost: WAL it needs is past max_slot_wal_keep_size (wal_status unreserved{})",
                    s.name,
                    s.safe_wal_size.map(|b| format!(", safe_wal_size {b}")).unwrap_or_default()
                ),
            );
        }
        for s in &x.slots {
            if let Some(reason) = obsolete_slot(self.d, self.o, name, s) {
                self.push(
                    DriftKind::OrphanSlot,
                    Address::Slot {
                        holder: name.to_string(),
                        slot: s.to_string(),
                    },
                    format!("slot {s} on {name}: {reason}"),
                );
            } else if let DesiredRole::Standby { .. } | DesiredRole::Primary = n.role {
                let holder_down = self.d.nodes.get(s).is_some_and(|sn| {
                    sn.role != DesiredRole::Absent && !observed(self.o, s).running
                });
                if holder_down {
                    if let Some(b) = slot_retained(self.o, name, s) {
                        self.push(
                            DriftKind::OrphanSlot,
                            Address::Slot {
                                holder: name.to_string(),
                                slot: s.to_string(),
                            },
                            format!(
                                "slot {s} on {name} is kept while {s} is down; it retains {}",
                                ByteSize::human(b)
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// The finding a verdict is, when the verdict is one that only the assessment sees.
fn verdict_finding(v: &Verdict, node: &str) -> Option<(DriftKind, String)> {
    let kind = match v {
        Verdict::SplitBrain { .. } => DriftKind::SplitBrain,
        Verdict::Diverged { .. } => DriftKind::Diverged,
        Verdict::Foreign { .. } => DriftKind::ForeignSystem,
        Verdict::SlotLost { .. } => DriftKind::SlotLost,
        Verdict::NotReceiving { .. } => DriftKind::NotReceiving,
        Verdict::ReplayBlocked { .. } => DriftKind::ReplayBlocked,
        _ => return None,
    };
    Some((kind, v.reason(node)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::fixtures::*;

    fn kinds(r: &DriftReport) -> Vec<DriftKind> {
        r.items.iter().map(|i| i.kind).collect()
    }

    #[test]
    fn healthy_cluster_has_no_drift() {
        let d = desired3();
        assert!(drift(&d, &healthy(&d)).is_empty());
    }

    #[test]
    fn finds_hand_changes() {
        let mut d = desired3();
        d.nodes
            .get_mut("n1")
            .unwrap()
            .settings
            .insert("work_mem".into(), "64MB".into());
        let mut o = healthy(&desired3());
        let n1 = o.nodes.get_mut("n1").unwrap();
        n1.settings
            .insert("work_mem".into(), setting("4MB", "user"));
        n1.settings
            .get_mut("max_connections")
            .unwrap()
            .pending_restart = true;
        n1.slots.push("ghost".into());
        n1.replication_slots.push(crate::observe::ObservedSlot {
            name: "ghost".into(),
            slot_type: "physical".into(),
            active: false,
            restart_lsn: None,
            wal_retained_bytes: Some(3 << 30),
            wal_status: None,
            safe_wal_size: None,
            logical: None,
        });
        n1.hba.as_mut().unwrap().managed_block = Some(vec!["host all all 0.0.0.0/0 trust".into()]);
        let n3 = o.nodes.get_mut("n3").unwrap();
        n3.upstream = Some("n2".into());
        let n2 = o.nodes.get_mut("n2").unwrap();
        n2.running = false;
        n2.reachable = false;
        let r = drift(&d, &o);
        let k = kinds(&r);
        for want in [
            DriftKind::SettingChanged,
            DriftKind::PendingRestart,
            DriftKind::OrphanSlot,
            DriftKind::HbaEdited,
            DriftKind::WrongUpstream,
            DriftKind::NodeDown,
        ] {
            assert!(k.contains(&want), "{want:?} missing from {k:?}");
        }
        let ghost = r
            .items
            .iter()
            .find(|i| i.address == "slot.n1.ghost")
            .unwrap();
        assert!(ghost.detail.contains("3.0 GB"), "{}", ghost.detail);
    }
}
