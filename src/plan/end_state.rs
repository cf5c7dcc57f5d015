//! The cluster as it should be once a plan has been applied: the observed state with every node
//! the plan can act on brought to what the topology declares. Planning again against it must give
//! no steps; the property tests check that, and apply can compare a fresh observation with it.

use crate::config::{Desired, DesiredRole};
use crate::diff::{self, observed};
use crate::observe::{
    ConninfoSummary, DataDirState, ObservedCluster, ObservedHba, ObservedSetting, ObservedSlot,
    Role, TimelineFork,
};

use super::analysis::{self, Fate};
use super::PlanOptions;

/// The expected state after applying the plan for (`d`, `o`) with failover consent. When no plan
/// can be made, the cluster stays as it is.
pub fn expected_end_state(d: &Desired, o: &ObservedCluster) -> ObservedCluster {
    let opts = PlanOptions {
        allow_failover: true,
        assume_down: vec![],
        accept_data_loss: true,
    };
    let Ok(a) = analysis::analyse(d, o, &opts) else {
        return o.clone();
    };
    let eff = &a.eff;
    let p = eff.primary().name.clone();
    let po = observed(o, &p);
    let promoted = a.promotion.is_some();
    let base_tl = po.timeline.unwrap_or(1);
    let tl = if promoted { base_tl + 1 } else { base_tl };
    let mut history = po.timeline_history.clone();
    if promoted {
        history.push(TimelineFork {
            timeline: base_tl,
            fork_lsn: diff::received(&po).unwrap_or_default(),
        });
    }
    let lsn = o
        .nodes
        .values()
        .filter_map(diff::wal_end)
        .max()
        .unwrap_or_default();
    let block = diff::hba::managed_block(eff);
    let sysid = po.system_identifier.clone();

    let mut end = o.clone();
    // Slots: what every holder keeps after the plan.
    let mut slots: std::collections::BTreeMap<String, Vec<ObservedSlot>> = Default::default();
    for (holder, ho) in &o.nodes {
        let kept = ho
            .replication_slots
            .iter()
            .filter(|s| diff::obsolete_slot(eff, o, holder, &s.name).is_none())
            .cloned()
            // A lost slot is dropped and created again with its standby's clone.
            .map(|mut s| {
                if s.wal_status.as_deref() == Some("lost") {
                    s.wal_status = Some("reserved".into());
                }
                s
            })
            .collect::<Vec<_>>();
        let mut kept = kept;
        for s in &ho.slots {
            if !kept.iter().any(|k| &k.name == s)
                && diff::obsolete_slot(eff, o, holder, s).is_none()
            {
                kept.push(ObservedSlot {
                    name: s.clone(),
                    slot_type: "physical".into(),
                    active: false,
                    restart_lsn: None,
                    wal_retained_bytes: None,
                    wal_status: None,
                    safe_wal_size: None,
                    logical: None,
                });
            }
        }
        slots.insert(holder.clone(), kept);
    }
    for n in eff.present() {
        let DesiredRole::Standby { upstream } = &n.role else {
            continue;
        };
        if !eff.replication.slots {
            continue;
        }
        let list = slots.entry(upstream.clone()).or_default();
        if !list.iter().any(|s| s.name == n.name) {
            list.push(ObservedSlot {
                name: n.name.clone(),
                slot_type: "physical".into(),
                active: true,
                restart_lsn: Some(lsn),
                wal_retained_bytes: Some(0),
                wal_status: None,
                safe_wal_size: None,
                logical: None,
            });
        }
    }

    for n in eff.nodes.values() {
        let fate = a.fates.get(&n.name).cloned().unwrap_or(Fate::Keep);
        let x = end.nodes.entry(n.name.clone()).or_default();
        match (&n.role, &fate) {
            (_, Fate::Deferred { .. }) => continue,
            (DesiredRole::Absent, _) => {
                x.running = false;
                x.reachable = false;
                x.streaming = false;
                continue;
            }
            _ => {}
        }
        if !(x.reachable || x.host_reachable) {
            continue;
        }
        x.reachable = true;
        x.host_reachable = true;
        x.unreachable_reason = None;
        x.wal_match = None;
        x.replay_stall = None;
        x.running = true;
        x.timeline = Some(tl);
        x.timeline_history = history.clone();
        x.lsn = Some(lsn);
        x.system_identifier = sysid.clone();
        x.control = None;
        x.data_dir = DataDirState {
            exists: true,
            empty: false,
            pg_version: x.data_dir.pg_version.or(po.data_dir.pg_version),
        };
        if x.version.is_none() {
            x.version = po.version;
        }
        let path = x
            .hba
            .as_ref()
            .map(|h| h.path.clone())
            .unwrap_or_else(|| format!("{}/pg_hba.conf", n.data_dir.display()));
        let block_line = x.hba.as_ref().and_then(|h| h.block_line);
        x.hba = Some(ObservedHba {
            path,
            managed_block: Some(block.clone()),
            block_line,
            sha256: String::new(),
            errors: vec![],
        });
        for (k, w) in diff::wanted_settings(eff, o, &n.name) {
            let s = x
                .settings
                .entry(k.clone())
                .or_insert_with(|| ObservedSetting {
                    value: String::new(),
                    raw: None,
                    unit: None,
                    pending_restart: false,
                    context: if diff::needs_restart(&k, &Default::default()) {
                        "postmaster".into()
                    } else {
                        "sighup".into()
                    },
                    source: "configuration file".into(),
                });
            s.value = w.value;
            s.raw = None;
            s.pending_restart = false;
        }
        match &n.role {
            DesiredRole::Primary => {
                x.role = Some(Role::Primary);
                x.upstream = None;
                x.streaming = false;
                x.receive_lsn = None;
                x.replay_lsn = None;
                x.primary_conninfo = None;
                x.primary_slot_name = None;
                x.standby_signal = false;
                let want = eff.synchronous_standby_names();
                let s = x
                    .settings
                    .entry("synchronous_standby_names".into())
                    .or_insert_with(|| fixtures_setting("sighup"));
                s.value = want;
                s.raw = None;
            }
            DesiredRole::Standby { upstream } => {
                let u = &eff.nodes[upstream];
                x.role = Some(Role::Standby);
                x.upstream = Some(upstream.clone());
                x.streaming = true;
                x.receive_lsn = Some(lsn);
                x.replay_lsn = Some(lsn);
                x.standby_signal = true;
                x.primary_conninfo = Some(ConninfoSummary {
                    host: Some(u.host.clone()),
                    port: Some(u.port),
                    user: Some(eff.replication.user.clone()),
                    application_name: Some(n.name.clone()),
                    dbname: eff.slot_sync_dbname(),
                    ..crate::diff::tls::expected(eff, &n.name)
                });
                x.primary_slot_name = eff.replication.slots.then(|| n.name.clone());
            }
            DesiredRole::Absent => {}
        }
        let new_slots = slots.remove(&n.name).unwrap_or_default();
        x.slots = new_slots.iter().map(|s| s.name.clone()).collect();
        x.replication_slots = new_slots;
    }
    end
}

fn fixtures_setting(context: &str) -> ObservedSetting {
    ObservedSetting {
        value: String::new(),
        raw: None,
        unit: None,
        pending_restart: false,
        context: context.into(),
        source: "configuration file".into(),
    }
}
