//! Desired × Observed → changes. Pure: no IO, no printing.
//!
//! A [`Change`] is addressed like Terraform's resources: `node.n2` (role, upstream, membership,
//! running), `slot.n1.n2` (slot n2 on node n1), `setting.n1.max_connections`, `hba.n1` (the
//! managed block of pg_hba.conf) and `sync.CLUSTER` (synchronous_standby_names). Each carries the
//! attribute values before and after and a one-line reason. The planner turns changes into steps;
//! the helpers here that read the observed state (a node's effective role, its upstream, the
//! settings pgtopo manages on it) are shared with it so both agree on what differs.
//!
//! Architecture invariant: nothing in here decides an order or a step; nothing reads a clock.

pub mod address;
pub mod archive;
pub mod assess;
pub mod change;
pub mod drift;
pub mod finding;
pub mod hba;
pub mod logical;
pub mod pooler_drift;
pub mod tls;
pub mod values;
pub mod versions;

use address::Address;
use std::collections::BTreeMap;

use crate::config::{Desired, DesiredNode, DesiredRole};
use crate::observe::{ObservedCluster, ObservedNode, Role};
use crate::units::ByteSize;
pub use change::{AttributeChange, Change, ChangeAction};

/// Settings that a hot standby needs at least as high as its primary.
pub const HOT_STANDBY_CRITICAL: [&str; 5] = [
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
];

/// Settings known to need a restart, used when the observed context is unknown.
const POSTMASTER_SETTINGS: [&str; 20] = [
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "max_replication_slots",
    "shared_buffers",
    "wal_level",
    "wal_log_hints",
    "hot_standby",
    "port",
    "listen_addresses",
    "shared_preload_libraries",
    "archive_mode",
    "track_commit_timestamp",
    "wal_buffers",
    "huge_pages",
    "max_logical_replication_workers",
    "max_pred_locks_per_transaction",
    "max_files_per_process",
];

/// The observed node, or a default (nothing seen) one.
pub fn observed<'a>(o: &'a ObservedCluster, name: &str) -> std::borrow::Cow<'a, ObservedNode> {
    match o.nodes.get(name) {
        Some(n) => std::borrow::Cow::Borrowed(n),
        None => std::borrow::Cow::Owned(ObservedNode::default()),
    }
}

/// Role from SQL, else from the files of a stopped server (control data, standby.signal).
pub fn observed_role(o: &ObservedNode) -> Option<Role> {
    if o.role.is_some() {
        return o.role;
    }
    if o.standby_signal {
        return Some(Role::Standby);
    }
    let c = o.control.as_ref()?;
    match c.cluster_state.as_str() {
        "shut down" | "in production" | "in crash recovery" | "shutting down" => {
            Some(Role::Primary)
        }
        "shut down in recovery" | "in archive recovery" => Some(Role::Standby),
        _ => None,
    }
}

/// pgtopo can act on the node: its SQL answers or its host answers over the transport.
pub fn actionable(o: &ObservedNode) -> bool {
    o.reachable || o.host_reachable
}

/// The node has no usable data directory (a new standby to clone).
pub fn needs_data(o: &ObservedNode) -> bool {
    if o.running {
        return false;
    }
    !o.data_dir.exists || o.data_dir.empty
}

/// The upstream the node follows or is configured to follow: the observed upstream, else the
/// declared node whose host:port primary_conninfo names.
pub fn observed_upstream(d: &Desired, o: &ObservedNode) -> Option<String> {
    if o.upstream.is_some() {
        return o.upstream.clone();
    }
    let ci = o.primary_conninfo.as_ref()?;
    let host = ci.host.as_deref()?;
    let port = ci.port.unwrap_or(5432);
    d.nodes
        .values()
        .find(|n| n.host == host && n.port == port)
        .map(|n| n.name.clone())
}

/// The last WAL location the node is known to have: its LSN, receive LSN, or the control data.
pub fn wal_end(o: &ObservedNode) -> Option<crate::units::Lsn> {
    [
        o.lsn,
        o.receive_lsn,
        o.replay_lsn,
        o.control.as_ref().map(|c| c.latest_checkpoint),
        o.control
            .as_ref()
            .map(|c| c.min_recovery_end)
            .filter(|l| l.0 > 0),
    ]
    .into_iter()
    .flatten()
    .max()
}

/// The position a standby has received (what it would have after promotion).
pub fn received(o: &ObservedNode) -> Option<crate::units::Lsn> {
    [o.receive_lsn, o.replay_lsn, o.lsn]
        .into_iter()
        .flatten()
        .max()
}

/// Whether changing `name` needs a restart on this node.
pub fn needs_restart(name: &str, o: &ObservedNode) -> bool {
    match o.settings.get(name) {
        Some(s) if !s.context.is_empty() => s.context == "postmaster",
        _ => POSTMASTER_SETTINGS.contains(&name),
    }
}

/// Why a managed setting has the value it should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedSetting {
    pub value: String,
    /// Empty when the topology says so directly; else why pgtopo adds it.
    pub why: String,
}

/// The settings pgtopo manages on a present node: the topology's (cluster merged with node), plus
/// what replication needs — wal_level above minimal and max_wal_senders above 0 on any node that
/// feeds a standby, and on a standby the hot-standby-critical settings at least as high as its
/// upstream's.
pub fn wanted_settings(
    d: &Desired,
    o: &ObservedCluster,
    name: &str,
) -> BTreeMap<String, WantedSetting> {
    let Some(node) = d.nodes.get(name) else {
        return BTreeMap::new();
    };
    let mut out: BTreeMap<String, WantedSetting> = node
        .settings
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                WantedSetting {
                    value: v.clone(),
                    why: String::new(),
                },
            )
        })
        .collect();
    for (k, v, why) in d
        .failover_slot_settings(name)
        .into_iter()
        .chain(d.archive_settings(name))
    {
        out.entry(k.to_string())
            .or_insert(WantedSetting { value: v, why });
    }
    let obs = observed(o, name);
    let minimal = obs
        .settings
        .get("wal_level")
        .is_some_and(|s| s.value.trim() == "minimal");
    let no_senders = obs
        .settings
        .get("max_wal_senders")
        .and_then(values::observed_numeric)
        == Some(0.0);
    // Only then is it worth asking whether the node feeds a standby (a scan of the topology).
    let feeds = (minimal || no_senders)
        && (node.role == DesiredRole::Primary || d.downstreams_of(name).next().is_some())
        && d.present()
            .any(|n| matches!(n.role, DesiredRole::Standby { .. }));
    if feeds {
        if !out.contains_key("wal_level")
            && obs
                .settings
                .get("wal_level")
                .is_some_and(|s| s.value.trim() == "minimal")
        {
            out.insert(
                "wal_level".into(),
                WantedSetting {
                    value: "replica".into(),
                    why: format!("wal_level=minimal on {name} cannot feed a standby"),
                },
            );
        }
        if !out.contains_key("max_wal_senders")
            && obs
                .settings
                .get("max_wal_senders")
                .and_then(values::observed_numeric)
                == Some(0.0)
        {
            out.insert(
                "max_wal_senders".into(),
                WantedSetting {
                    value: "10".into(),
                    why: format!("max_wal_senders=0 on {name} cannot feed a standby"),
                },
            );
        }
    }
    // Parameter compatibility: a hot standby needs these at least as high as its upstream.
    if let Some(up) = d.upstream_of(name) {
        for key in HOT_STANDBY_CRITICAL {
            if node.settings.contains_key(key) {
                continue;
            }
            // What the upstream will have (its own raises included, up the cascade).
            let up_val = effective_critical(d, o, &up.name, key);
            let own = obs.settings.get(key).and_then(values::observed_numeric);
            if let (Some(u), Some(mine)) = (up_val, own) {
                if mine < u {
                    out.insert(
                        key.to_string(),
                        WantedSetting {
                            value: format!("{u}"),
                            why: format!(
                                "a hot standby needs {key} at least as high as its upstream {} ({u})",
                                up.name
                            ),
                        },
                    );
                }
            }
        }
    }
    out
}

/// The value a hot-standby-critical setting will have on a node once the plan is applied: the
/// topology's, else the larger of its own and its upstream's (the compatibility raise).
fn effective_critical(d: &Desired, o: &ObservedCluster, name: &str, key: &str) -> Option<f64> {
    let node = d.nodes.get(name)?;
    if let Some(v) = node.settings.get(key) {
        return values::numeric(v);
    }
    let own = o
        .nodes
        .get(name)
        .and_then(|x| x.settings.get(key))
        .and_then(values::observed_numeric);
    match d.upstream_of(name) {
        Some(up) => match (own, effective_critical(d, o, &up.name, key)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, _) => a,
        },
        None => own,
    }
}

/// One managed setting that differs on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDiff {
    pub name: String,
    pub before: Option<String>,
    pub after: String,
    pub restart: bool,
    pub why: String,
}

/// The managed settings of a node that differ from what it runs with.
pub fn setting_diffs(d: &Desired, o: &ObservedCluster, name: &str) -> Vec<SettingDiff> {
    let obs = observed(o, name);
    wanted_settings(d, o, name)
        .into_iter()
        .filter_map(|(k, w)| {
            let seen = obs.settings.get(&k);
            if seen.is_some_and(|s| values::setting_matches(&w.value, s)) {
                return None;
            }
            Some(SettingDiff {
                restart: needs_restart(&k, &obs),
                before: seen.map(|s| s.value.clone()),
                after: w.value,
                name: k,
                why: w.why,
            })
        })
        .collect()
}

/// The node that is primary now: the running, reachable primary (the declared one first when
/// several claim it), else the one whose files say primary with the most WAL.
pub fn current_primary(d: &Desired, o: &ObservedCluster) -> Option<String> {
    let declared = d.primary().name.clone();
    let running: Vec<&String> = o
        .nodes
        .iter()
        .filter(|(_, n)| n.running && n.role == Some(Role::Primary))
        .map(|(k, _)| k)
        .collect();
    if running.iter().any(|n| **n == declared) {
        return Some(declared);
    }
    if let Some(n) = running.first() {
        return Some((*n).clone());
    }
    let mut candidates: Vec<(&String, &ObservedNode)> = o
        .nodes
        .iter()
        .filter(|(_, n)| observed_role(n) == Some(Role::Primary))
        .collect();
    if candidates.iter().any(|(k, _)| **k == declared) {
        return Some(declared);
    }
    candidates.sort_by_key(|(k, n)| (n.timeline, wal_end(n), std::cmp::Reverse((*k).clone())));
    candidates.last().map(|(k, _)| (*k).clone())
}

fn attr(name: &str, before: Option<&str>, after: Option<&str>) -> AttributeChange {
    AttributeChange {
        name: name.into(),
        before: before.map(Into::into),
        after: after.map(Into::into),
    }
}

fn role_str(r: Option<Role>) -> Option<&'static str> {
    r.map(|r| match r {
        Role::Primary => "primary",
        Role::Standby => "standby",
    })
}

/// Every difference between the topology and the cluster.
pub fn diff(d: &Desired, o: &ObservedCluster) -> Vec<Change> {
    let mut out = Vec::new();
    let verdicts = assess::assess(d, o);
    for n in d.nodes.values() {
        match verdicts.get(&n.name) {
            Some(v) if v.needs_clone() => clone_change(n, v, &mut out),
            _ => node_change(d, o, n, &mut out),
        }
    }
    slot_changes(d, o, &mut out);
    out.extend(logical::changes(d, o));
    for n in d.present() {
        let obs = observed(o, &n.name);
        if !obs.reachable || needs_data(&obs) {
            continue;
        }
        for s in setting_diffs(d, o, &n.name) {
            let effect = if s.restart { "restart" } else { "reload" };
            let reason = if s.why.is_empty() {
                format!("set by topology.yaml; takes effect with a {effect}")
            } else {
                format!("{}; takes effect with a {effect}", s.why)
            };
            out.push(Change {
                address: Address::Setting {
                    node: n.name.clone(),
                    name: s.name.clone(),
                },
                action: if s.before.is_some() {
                    ChangeAction::Change
                } else {
                    ChangeAction::Add
                },
                attributes: vec![attr("value", s.before.as_deref(), Some(&s.after))],
                reason,
            });
        }
    }
    let block = hba::managed_block(d);
    for n in d.present() {
        let obs = observed(o, &n.name);
        let seen = hba::seen(&obs);
        if hba::needs_write(&block, &obs) {
            let count = |k: usize| format!("{k} rules");
            out.push(Change {
                address: Address::Hba(n.name.clone()),
                action: if seen.is_some() {
                    ChangeAction::Change
                } else {
                    ChangeAction::Add
                },
                attributes: vec![attr(
                    "managed_block",
                    seen.as_ref().map(|s| count(s.len())).as_deref(),
                    Some(&count(block.len())),
                )],
                reason: if seen.is_some() {
                    "the managed block differs from the topology (replication rules and hba:)"
                        .into()
                } else {
                    "pg_hba.conf has no pgtopo managed block yet".into()
                },
            });
        }
    }
    let pobs = observed(o, &d.primary().name);
    if pobs.reachable || actionable(&pobs) {
        if let Some(m) = sync_mismatch(d, o) {
            out.push(Change {
                address: Address::Sync(d.cluster.clone()),
                action: ChangeAction::Change,
                attributes: vec![attr(
                    "synchronous_standby_names",
                    Some(&m.have),
                    Some(&m.want),
                )],
                reason: format!("set on {} once its members stream", m.primary),
            });
        }
    }
    out
}

/// synchronous_standby_names on the declared primary, when it is not what the topology asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMismatch {
    pub primary: String,
    pub have: String,
    pub want: String,
}

/// Whether a primary's synchronous_standby_names (`have`) differs from the wanted one
/// ([`crate::config::sync_names::same_set`]): used by `sync_mismatch`, the planner's
/// `synchronous_set` rule and the plan's file diff.
pub fn sync_differs(want: &str, have: &str) -> bool {
    !crate::config::sync_names::same_set(want, have)
}

/// The synchronous set the topology asks for, against the primary's.
pub fn sync_mismatch(d: &Desired, o: &ObservedCluster) -> Option<SyncMismatch> {
    let p = &d.primary().name;
    let want = d.synchronous_standby_names();
    let have = observed(o, p)
        .settings
        .get("synchronous_standby_names")
        .map(|s| s.value.clone())
        .unwrap_or_default();
    sync_differs(&want, &have).then(|| SyncMismatch {
        primary: p.clone(),
        have,
        want,
    })
}

/// A node that only a fresh clone repairs (another system, split brain, diverged, slot lost).
fn clone_change(n: &DesiredNode, v: &assess::Verdict, out: &mut Vec<Change>) {
    let up = match &n.role {
        DesiredRole::Standby { upstream } => upstream.as_str(),
        _ => return,
    };
    out.push(Change {
        address: Address::Node(n.name.clone()),
        action: ChangeAction::Change,
        attributes: vec![attr(
            "data_directory",
            Some("diverged"),
            Some("cloned again"),
        )],
        reason: format!(
            "will be cloned again from {up}: {}",
            v.reason(&n.name).unwrap_or_default()
        ),
    });
}

fn node_change(d: &Desired, o: &ObservedCluster, n: &DesiredNode, out: &mut Vec<Change>) {
    let obs = observed(o, &n.name);
    let role = observed_role(&obs);
    let up = observed_upstream(d, &obs);
    let addr = Address::Node(n.name.clone());
    let mut push = |action, attributes, reason: String| {
        out.push(Change {
            address: addr.clone(),
            action,
            attributes,
            reason,
        })
    };
    match &n.role {
        DesiredRole::Primary => {
            if role == Some(Role::Primary) {
                if !obs.running {
                    push(
                        ChangeAction::Change,
                        vec![attr("running", Some("false"), Some("true"))],
                        "is stopped and still the declared primary: it will be started (stopped is not failed)".into(),
                    );
                }
            } else if needs_data(&obs) && role.is_none() {
                push(
                    ChangeAction::Add,
                    vec![attr("role", None, Some("primary"))],
                    "has no data directory".into(),
                );
            } else {
                let mut attrs = vec![attr("role", role_str(role), Some("primary"))];
                if let Some(u) = &up {
                    attrs.push(attr("upstream", Some(u), None));
                }
                // Whether it is a switchover, the end of one or a failover is the planner's
                // judgement, and so are the words that say it.
                push(ChangeAction::Change, attrs, "will be promoted".into());
            }
        }
        DesiredRole::Standby { upstream } => {
            if needs_data(&obs) {
                push(
                    ChangeAction::Add,
                    vec![
                        attr("role", None, Some("standby")),
                        attr("upstream", None, Some(upstream)),
                    ],
                    format!("new standby: cloned from {upstream}"),
                );
            } else if role == Some(Role::Primary) {
                push(
                    ChangeAction::Change,
                    vec![
                        attr("role", Some("primary"), Some("standby")),
                        attr("upstream", None, Some(upstream)),
                    ],
                    format!("will follow {upstream}"),
                );
            } else if up.as_deref() != Some(upstream.as_str()) {
                push(
                    ChangeAction::Change,
                    vec![attr("upstream", up.as_deref(), Some(upstream))],
                    match &up {
                        Some(a) => format!("will be re-pointed from {a} to {upstream}"),
                        None => format!("will follow {upstream}"),
                    },
                );
            } else if !tls::conninfo_tls_ok(d, &n.name, &obs) {
                let have = obs
                    .primary_conninfo
                    .as_ref()
                    .and_then(|c| c.sslmode.clone());
                let want = tls::expected(d, &n.name).sslmode;
                push(
                    ChangeAction::Change,
                    vec![attr("sslmode", have.as_deref(), want.as_deref())],
                    "primary_conninfo will carry replication.tls (sslmode and TLS files)".into(),
                );
            } else if !obs.running {
                push(
                    ChangeAction::Change,
                    vec![attr("running", Some("false"), Some("true"))],
                    if actionable(&obs) {
                        format!("is stopped: it will be started and stream from {upstream}")
                    } else {
                        format!(
                            "is unreachable ({}); it will be started once reachable",
                            obs.unreachable_reason.as_deref().unwrap_or("no answer")
                        )
                    },
                );
            }
        }
        DesiredRole::Absent => {
            if obs.running {
                push(
                    ChangeAction::Remove,
                    vec![
                        attr("state", Some("present"), Some("absent")),
                        attr("running", Some("true"), Some("false")),
                    ],
                    "is retired: out of the synchronous set, stopped, its slot dropped; its data directory is kept".into(),
                );
            }
        }
    }
}

fn slot_changes(d: &Desired, o: &ObservedCluster, out: &mut Vec<Change>) {
    if d.replication.slots {
        let index: std::collections::HashSet<(&str, &str)> = o
            .nodes
            .iter()
            .flat_map(|(h, x)| x.slots.iter().map(move |s| (h.as_str(), s.as_str())))
            .collect();
        for n in d.present() {
            let DesiredRole::Standby { upstream } = &n.role else {
                continue;
            };
            if index.contains(&(upstream.as_str(), n.name.as_str())) {
                continue;
            }
            out.push(Change {
                address: Address::Slot {
                    holder: upstream.to_string(),
                    slot: n.name.clone(),
                },
                action: ChangeAction::Add,
                attributes: vec![],
                reason: format!("{} streams from {upstream} through it", n.name),
            });
        }
    }
    for (holder, hobs) in &o.nodes {
        let Some(hd) = d.nodes.get(holder) else {
            continue;
        };
        if hd.role == DesiredRole::Absent || !hobs.reachable {
            continue;
        }
        let infos: std::collections::HashMap<&str, &crate::observe::ObservedSlot> = hobs
            .replication_slots
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        for s in &hobs.slots {
            let info = infos.get(s.as_str()).copied();
            if let Some(reason) = obsolete_slot_with(d, o, holder, s, info) {
                out.push(Change {
                    address: Address::Slot {
                        holder: holder.to_string(),
                        slot: s.to_string(),
                    },
                    action: ChangeAction::Remove,
                    attributes: vec![],
                    reason,
                });
            }
        }
    }
}

/// WAL a slot on `holder` retains, for notes.
pub fn slot_retained(o: &ObservedCluster, holder: &str, slot: &str) -> Option<u64> {
    o.nodes
        .get(holder)?
        .replication_slots
        .iter()
        .find(|s| s.name == slot)?
        .wal_retained_bytes
}

/// Whether slot `slot` on `holder` serves nobody the topology declares, and why. Logical slots,
/// and the slots of declared standbys that cannot be re-pointed now (down, unreachable), are kept.
pub fn obsolete_slot(d: &Desired, o: &ObservedCluster, holder: &str, slot: &str) -> Option<String> {
    let info = o
        .nodes
        .get(holder)?
        .replication_slots
        .iter()
        .find(|s| s.name == slot);
    obsolete_slot_with(d, o, holder, slot, info)
}

/// [`obsolete_slot`] with the slot's details already looked up (callers that walk every slot of
/// a holder index them once).
pub fn obsolete_slot_with(
    d: &Desired,
    o: &ObservedCluster,
    holder: &str,
    slot: &str,
    info: Option<&crate::observe::ObservedSlot>,
) -> Option<String> {
    o.nodes.get(holder)?;
    let declared_here = matches!(d.nodes.get(slot).map(|n| &n.role), Some(DesiredRole::Standby { upstream }) if upstream == holder);
    if declared_here {
        return None;
    }
    if info.is_some_and(|s| s.slot_type != "physical") {
        return None;
    }
    let retained = || {
        info.and_then(|s| s.wal_retained_bytes)
            .filter(|b| *b > 0)
            .map(|b| format!("; it retains {}", ByteSize::human(b)))
            .unwrap_or_default()
    };
    match d.nodes.get(slot).map(|n| &n.role) {
        Some(DesiredRole::Standby { upstream }) => {
            if upstream == holder {
                return None;
            }
            if !d.replication.slots {
                return None;
            }
            let sobs = observed(o, slot);
            if !actionable(&sobs) {
                return None;
            }
            Some(format!("{slot} now streams from {upstream}{}", retained()))
        }
        Some(DesiredRole::Primary) => Some(format!("{slot} is the primary{}", retained())),
        Some(DesiredRole::Absent) => Some(format!("{slot} is retired{}", retained())),
        None => Some(format!("orphan: no declared node uses it{}", retained())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::fixtures::*;

    fn addrs(c: &[Change]) -> Vec<String> {
        c.iter()
            .map(|c| {
                let a = match c.action {
                    ChangeAction::Add => "+",
                    ChangeAction::Change => "~",
                    ChangeAction::Remove => "-",
                };
                format!("{a}{}", c.address)
            })
            .collect()
    }

    #[test]
    fn matching_cluster_has_no_changes() {
        let d = desired3();
        let o = healthy(&d);
        assert_eq!(diff(&d, &o), vec![]);
    }

    #[test]
    fn switchover_changes_roles_and_slots() {
        let mut d = desired3();
        set_primary(&mut d, "n2");
        let o = healthy(&desired3());
        let c = diff(&d, &o);
        assert_eq!(
            addrs(&c),
            vec![
                "~node.n1",
                "~node.n2",
                "~node.n3",
                "+slot.n2.n1",
                "+slot.n2.n3",
                "-slot.n1.n2",
                "-slot.n1.n3"
            ]
        );
        assert_eq!(c[1].reason, "will be promoted");
    }

    #[test]
    fn settings_hba_sync_addresses() {
        let mut d = desired3();
        for n in d.nodes.values_mut() {
            n.settings.insert("max_connections".into(), "200".into());
        }
        d.hba.push(crate::config::HbaRule {
            kind: "host".into(),
            database: "all".into(),
            user: "app".into(),
            address: Some("10.0.0.0/8".into()),
            method: "scram-sha-256".into(),
            allow_trust: false,
        });
        d.replication.synchronous = Some(crate::config::SyncSpec {
            mode: crate::config::SyncMode::Quorum,
            count: 1,
            standbys: vec!["n2".into(), "n3".into()],
        });
        let o = healthy(&desired3());
        let c = diff(&d, &o);
        let a = addrs(&c);
        assert!(a.contains(&"~setting.n1.max_connections".to_string()));
        assert!(a.contains(&"~hba.n2".to_string()));
        assert!(a.contains(&"~sync.shop".to_string()));
        let s = c
            .iter()
            .find(|c| c.address == "setting.n1.max_connections")
            .unwrap();
        assert_eq!(s.attributes[0].before.as_deref(), Some("100"));
        assert!(s.reason.contains("restart"));
    }

    #[test]
    fn retired_node_and_orphan_slot() {
        let mut d = desired3();
        d.nodes.get_mut("n3").unwrap().role = DesiredRole::Absent;
        let mut o = healthy(&desired3());
        o.nodes.get_mut("n1").unwrap().slots.push("old".into());
        let a = addrs(&diff(&d, &o));
        assert!(a.contains(&"-node.n3".to_string()));
        assert!(a.contains(&"-slot.n1.n3".to_string()));
        assert!(a.contains(&"-slot.n1.old".to_string()));
    }

    #[test]
    fn down_standby_keeps_its_slot() {
        let d = desired3();
        let mut o = healthy(&d);
        let n3 = o.nodes.get_mut("n3").unwrap();
        n3.running = false;
        n3.reachable = false;
        n3.host_reachable = false;
        let a = addrs(&diff(&d, &o));
        assert_eq!(a, vec!["~node.n3"]);
    }

    #[test]
    fn wal_level_minimal_is_raised() {
        let d = desired3();
        let mut o = healthy(&d);
        o.nodes
            .get_mut("n1")
            .unwrap()
            .settings
            .insert("wal_level".into(), setting("minimal", "postmaster"));
        let c = diff(&d, &o);
        let w = c
            .iter()
            .find(|c| c.address == "setting.n1.wal_level")
            .unwrap();
        assert!(w.reason.contains("cannot feed a standby"), "{}", w.reason);
        assert_eq!(w.attributes[0].after.as_deref(), Some("replica"));
    }
}
