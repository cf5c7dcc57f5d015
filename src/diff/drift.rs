//! The drift report (`pgtopo drift`): where the live cluster no longer matches the topology
//! file. Read-only and pure: a function of (Desired, ObservedCluster); it proposes nothing.
//! Renderings live in `render::drift`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Desired, DesiredRole};
use crate::observe::{ObservedCluster, Role};
use crate::units::ByteSize;

use super::assess::{assess, Verdict};
use super::{
    actionable, hba, observed, observed_role, observed_upstream, obsolete_slot, setting_diffs,
    slot_retained, sync_mismatch,
};

/// What kind of drift.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    NodeDown,
    Role,
    WrongUpstream,
    NotStreaming,
    SettingChanged,
    PendingRestart,
    HbaEdited,
    MissingSlot,
    OrphanSlot,
    SyncSet,
    RetiredRunning,
    /// Two nodes accept writes on one timeline.
    SplitBrain,
    /// A standby's history differs from its upstream's on the same timeline.
    Diverged,
    /// The data directory belongs to another system (system identifier).
    ForeignSystem,
    /// The standby's slot is lost, or the WAL it needs is gone from its upstream.
    SlotLost,
    /// A warning: the slot's WAL is about to be removed (`wal_status = unreserved`).
    SlotUnreserved,
    /// A pooler's admin console does not answer.
    PoolerDown,
    /// A pooler database routes elsewhere than the primary (or is missing).
    PoolerRoute,
    /// A pooler database is paused.
    PoolerPaused,
    /// A declared logical slot missing or different on the primary, or an unsynced copy of
    /// one on a standby.
    LogicalSlot,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DriftItem {
    pub kind: DriftKind,
    pub node: String,
    /// The change address it concerns (`setting.n1.work_mem`, `slot.n1.old`).
    pub address: String,
    pub detail: String,
}

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
    let mut push = |kind, node: &str, address: String, detail: String| {
        items.push(DriftItem {
            kind,
            node: node.to_string(),
            address,
            detail,
        })
    };
    let block = hba::managed_block(d);
    let verdicts = assess(d, o);
    for n in d.nodes.values() {
        let x = observed(o, &n.name);
        let addr = format!("node.{}", n.name);
        if let Some((kind, detail)) = verdicts
            .get(&n.name)
            .and_then(|v| verdict_finding(v, &n.name))
        {
            push(kind, &n.name, addr.clone(), detail);
        }
        if n.role == DesiredRole::Absent {
            if x.running {
                push(
                    DriftKind::RetiredRunning,
                    &n.name,
                    addr,
                    format!("{} is retired (state: absent) but still running", n.name),
                );
            }
            continue;
        }
        if !x.reachable || !x.running {
            push(
                DriftKind::NodeDown,
                &n.name,
                addr.clone(),
                if x.running {
                    format!(
                        "{} does not answer over SQL ({})",
                        n.name,
                        x.unreachable_reason.as_deref().unwrap_or("no answer")
                    )
                } else if actionable(&x) {
                    format!("{} is stopped", n.name)
                } else {
                    format!(
                        "{} is unreachable ({})",
                        n.name,
                        x.unreachable_reason.as_deref().unwrap_or("no answer")
                    )
                },
            );
        }
        let role = observed_role(&x);
        match &n.role {
            DesiredRole::Primary => {
                if role == Some(Role::Standby) {
                    push(
                        DriftKind::Role,
                        &n.name,
                        addr.clone(),
                        format!("{} is declared primary but is a standby", n.name),
                    );
                }
            }
            DesiredRole::Standby { upstream } => {
                if role == Some(Role::Primary) {
                    push(
                        DriftKind::Role,
                        &n.name,
                        addr.clone(),
                        format!(
                            "{} is declared a standby of {upstream} but is a primary",
                            n.name
                        ),
                    );
                } else if x.reachable {
                    let up = observed_upstream(d, &x);
                    // A delayed standby starts its WAL receiver only after applying, late,
                    // the WAL it already has: its startup process waits on the delay meanwhile.
                    let delaying = x.startup_wait_event.as_deref() == Some("RecoveryApplyDelay");
                    if x.running
                        && !x.streaming
                        && !delaying
                        && up.as_deref() == Some(upstream.as_str())
                    {
                        push(
                            DriftKind::NotStreaming,
                            &n.name,
                            addr.clone(),
                            format!("{} is running but does not stream from {upstream}", n.name),
                        );
                    }
                    if up.as_deref() == Some(upstream.as_str())
                        && !super::tls::conninfo_tls_ok(d, &n.name, &x)
                    {
                        push(
                            DriftKind::WrongUpstream,
                            &n.name,
                            addr.clone(),
                            format!(
                                "{}'s primary_conninfo does not carry replication.tls",
                                n.name
                            ),
                        );
                    }
                    if up.as_deref() != Some(upstream.as_str()) {
                        push(
                            DriftKind::WrongUpstream,
                            &n.name,
                            addr.clone(),
                            format!(
                                "{} follows {} instead of {upstream}",
                                n.name,
                                up.as_deref().unwrap_or("nothing")
                            ),
                        );
                    }
                }
            }
            DesiredRole::Absent => {}
        }
        if x.reachable {
            for s in setting_diffs(d, o, &n.name) {
                push(
                    DriftKind::SettingChanged,
                    &n.name,
                    format!("setting.{}.{}", n.name, s.name),
                    format!(
                        "{} is {} on {}, topology.yaml says {}",
                        s.name,
                        s.before.as_deref().unwrap_or("unset"),
                        n.name,
                        s.after
                    ),
                );
            }
            for (k, s) in &x.settings {
                if s.pending_restart {
                    push(
                        DriftKind::PendingRestart,
                        &n.name,
                        format!("setting.{}.{k}", n.name),
                        format!("{k} was changed on {} and waits for a restart", n.name),
                    );
                }
            }
        }
        if let Some(h) = &x.hba {
            if !hba::block_matches(h.managed_block.as_deref(), &block) {
                push(
                    DriftKind::HbaEdited,
                    &n.name,
                    format!("hba.{}", n.name),
                    if h.managed_block.is_some() {
                        format!(
                            "the pgtopo managed block of {}'s pg_hba.conf was edited by hand",
                            n.name
                        )
                    } else {
                        format!("{}'s pg_hba.conf has no pgtopo managed block", n.name)
                    },
                );
            }
            for e in &h.errors {
                push(
                    DriftKind::HbaEdited,
                    &n.name,
                    format!("hba.{}", n.name),
                    format!("pg_hba.conf error on {}: {e}", n.name),
                );
            }
        }
        if d.replication.slots {
            if let DesiredRole::Standby { upstream } = &n.role {
                let u = observed(o, upstream);
                if u.reachable && !u.slots.iter().any(|s| s == &n.name) {
                    push(
                        DriftKind::MissingSlot,
                        upstream,
                        format!("slot.{upstream}.{}", n.name),
                        format!("slot {} is missing on {upstream}", n.name),
                    );
                }
            }
        }
        if x.reachable {
            for s in x
                .replication_slots
                .iter()
                .filter(|s| s.wal_status.as_deref() == Some("unreserved"))
            {
                push(
                    DriftKind::SlotUnreserved,
                    &n.name,
                    format!("slot.{}.{}", n.name, s.name),
                    format!(
                        "slot {} on {} is close to being lost: WAL it needs is past max_slot_wal_keep_size (wal_status unreserved{})",
                        s.name,
                        n.name,
                        s.safe_wal_size.map(|b| format!(", safe_wal_size {b}")).unwrap_or_default()
                    ),
                );
            }
            for s in &x.slots {
                if let Some(reason) = obsolete_slot(d, o, &n.name, s) {
                    push(
                        DriftKind::OrphanSlot,
                        &n.name,
                        format!("slot.{}.{s}", n.name),
                        format!("slot {s} on {}: {reason}", n.name),
                    );
                } else if let DesiredRole::Standby { .. } | DesiredRole::Primary = n.role {
                    let holder_down = d.nodes.get(s).is_some_and(|sn| {
                        sn.role != DesiredRole::Absent && !observed(o, s).running
                    });
                    if holder_down {
                        if let Some(b) = slot_retained(o, &n.name, s) {
                            push(
                                DriftKind::OrphanSlot,
                                &n.name,
                                format!("slot.{}.{s}", n.name),
                                format!(
                                    "slot {s} on {} is kept while {s} is down; it retains {}",
                                    n.name,
                                    ByteSize::human(b)
                                ),
                            );
                        }
                    }
                }
            }
        }
    }
    if observed(o, &d.primary().name).reachable {
        if let Some(m) = sync_mismatch(d, o) {
            items.push(DriftItem {
                kind: DriftKind::SyncSet,
                node: m.primary.clone(),
                address: format!("sync.{}", d.cluster),
                detail: format!(
                    "synchronous_standby_names is '{}' on {}, topology.yaml asks for '{}'",
                    m.have, m.primary, m.want
                ),
            });
        }
    }
    items.extend(super::pooler_drift::findings(d, o));
    items.extend(super::logical::drift_items(d, o));
    DriftReport {
        cluster: d.cluster.clone(),
        observed_at: o.observed_at.clone(),
        items,
    }
}

/// The finding a verdict is, when the verdict is one that only the assessment sees.
fn verdict_finding(v: &Verdict, node: &str) -> Option<(DriftKind, String)> {
    let kind = match v {
        Verdict::SplitBrain { .. } => DriftKind::SplitBrain,
        Verdict::Diverged { .. } => DriftKind::Diverged,
        Verdict::Foreign { .. } => DriftKind::ForeignSystem,
        Verdict::SlotLost { .. } => DriftKind::SlotLost,
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
