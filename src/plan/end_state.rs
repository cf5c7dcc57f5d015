//! The cluster as it should be once a plan has been applied: the observed state with every node
//! the plan can act on brought to what the topology declares. Planning again against it must give
//! no steps; the property tests check that, and apply can compare a fresh observation with it.

use std::collections::BTreeMap;

use crate::config::{Desired, DesiredNode, DesiredRole};
use crate::diff::{self, observed};
use crate::observe::{
    ConninfoSummary, DataDirState, ObservedCluster, ObservedHba, ObservedNode, ObservedSetting,
    ObservedSlot, Role, TimelineFork,
};
use crate::units::Lsn;

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
    let po = observed(o, &eff.primary().name);
    let (tl, history) = end_timeline(&po, a.promotion.is_some());
    let target = Target {
        eff,
        o,
        po: &po,
        tl,
        history,
        lsn: o
            .nodes
            .values()
            .filter_map(diff::wal_end)
            .max()
            .unwrap_or_default(),
        block: diff::hba::managed_block(eff),
    };
    let mut slots = end_slots(eff, o, target.lsn);

    let mut end = o.clone();
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
        target.settle(x, n);
        let new_slots = slots.remove(&n.name).unwrap_or_default();
        x.slots = new_slots.iter().map(|s| s.name.clone()).collect();
        x.replication_slots = new_slots;
    }
    end
}

/// The primary's timeline and history at the end: one timeline further when the plan promotes,
/// forking where the candidate's received WAL ends.
fn end_timeline(po: &ObservedNode, promoted: bool) -> (u32, Vec<TimelineFork>) {
    let base_tl = po.timeline.unwrap_or(1);
    let tl = if promoted { base_tl + 1 } else { base_tl };
    let mut history = po.timeline_history.clone();
    if promoted {
        history.push(TimelineFork {
            timeline: base_tl,
            fork_lsn: diff::received(po).unwrap_or_default(),
        });
    }
    (tl, history)
}

/// Slots: what every holder keeps after the plan, and the slot of every standby on its upstream
/// when the topology uses slots.
fn end_slots(eff: &Desired, o: &ObservedCluster, lsn: Lsn) -> BTreeMap<String, Vec<ObservedSlot>> {
    let mut slots: BTreeMap<String, Vec<ObservedSlot>> = o
        .nodes
        .iter()
        .map(|(holder, ho)| (holder.clone(), kept_slots(eff, o, holder, ho)))
        .collect();
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
    slots
}

/// The slots `holder` keeps: every one that is not obsolete, including the names observed
/// without details.
fn kept_slots(
    eff: &Desired,
    o: &ObservedCluster,
    holder: &str,
    ho: &ObservedNode,
) -> Vec<ObservedSlot> {
    let mut kept = ho
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
    for s in &ho.slots {
        if !kept.iter().any(|k| &k.name == s) && diff::obsolete_slot(eff, o, holder, s).is_none() {
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
    kept
}

/// What every node the plan can act on ends at.
struct Target<'a> {
    eff: &'a Desired,
    o: &'a ObservedCluster,
    /// The (effective) primary as observed.
    po: &'a ObservedNode,
    tl: u32,
    history: Vec<TimelineFork>,
    /// The furthest WAL end observed: every node is caught up to it.
    lsn: Lsn,
    block: Vec<String>,
}

impl Target<'_> {
    /// Bring reachable node `x` to what the topology declares for `n`.
    fn settle(&self, x: &mut ObservedNode, n: &DesiredNode) {
        let po = self.po;
        x.reachable = true;
        x.host_reachable = true;
        x.unreachable_reason = None;
        x.wal_match = None;
        x.replay_stall = None;
        x.replay_conflict = None;
        x.last_receipt = None;
        x.running = true;
        x.timeline = Some(self.tl);
        x.timeline_history = self.history.clone();
        x.lsn = Some(self.lsn);
        x.system_identifier = po.system_identifier.clone();
        x.control = None;
        x.data_dir = DataDirState {
            exists: true,
            empty: false,
            pg_version: x.data_dir.pg_version.or(po.data_dir.pg_version),
        };
        // A settled node replays the primary's WAL (or is the primary): it runs its major,
        // whatever it ran before a clone replaced its data directory.
        x.version = po.version.or(x.version);
        self.settle_hba(x, n);
        self.settle_settings(x, n);
        match &n.role {
            DesiredRole::Primary => self.settle_primary(x),
            DesiredRole::Standby { upstream } => self.settle_standby(x, n, upstream),
            DesiredRole::Absent => {}
        }
    }

    /// pg_hba.conf holds the managed block, without errors.
    fn settle_hba(&self, x: &mut ObservedNode, n: &DesiredNode) {
        let path = x
            .hba
            .as_ref()
            .map(|h| h.path.clone())
            .unwrap_or_else(|| format!("{}/pg_hba.conf", n.data_dir.display()));
        let block_line = x.hba.as_ref().and_then(|h| h.block_line);
        x.hba = Some(ObservedHba {
            path,
            managed_block: Some(self.block.clone()),
            block_line,
            sha256: String::new(),
            errors: vec![],
        });
    }

    /// Every wanted setting has its value, none waits for a restart.
    fn settle_settings(&self, x: &mut ObservedNode, n: &DesiredNode) {
        for (k, w) in diff::wanted_settings(self.eff, self.o, &n.name) {
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
    }

    fn settle_primary(&self, x: &mut ObservedNode) {
        x.role = Some(Role::Primary);
        x.upstream = None;
        x.streaming = false;
        x.receive_lsn = None;
        x.replay_lsn = None;
        x.primary_conninfo = None;
        x.primary_slot_name = None;
        x.standby_signal = false;
        let want = self.eff.synchronous_standby_names();
        let s = x
            .settings
            .entry("synchronous_standby_names".into())
            .or_insert_with(|| fixtures_setting("sighup"));
        s.value = want;
        s.raw = None;
    }

    /// A standby streams from its declared upstream, caught up, with its slot when slots are used.
    fn settle_standby(&self, x: &mut ObservedNode, n: &DesiredNode, upstream: &str) {
        let eff = self.eff;
        let u = &eff.nodes[upstream];
        x.role = Some(Role::Standby);
        x.upstream = Some(upstream.to_string());
        x.streaming = true;
        x.receive_lsn = Some(self.lsn);
        x.replay_lsn = Some(self.lsn);
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
