//! The oracle that replays a plan: a model of each step kind's effect on the observed state,
//! applied to the observed cluster in the plan's (topological) order, then the replication that
//! follows from the resulting files and processes ([`Sim::settle`]). The property tests require
//! that drift of the result is empty (or only what the plan lists under "Cannot fix") and that a
//! second plan is empty; because the result comes from the plan's own steps, a rule that forgets
//! a step is caught (see the mutation test in `tests/plan_props.rs`).
//!
//! What the model knows of PostgreSQL, each rule one line of [`Sim::step`]:
//! - a stopped server answers no SQL; its role is read from its control data and standby.signal;
//! - `ALTER SYSTEM` writes postgresql.auto.conf; a reload applies what does not need a restart
//!   (the rest waits, `pending_restart`), a start or restart applies everything;
//! - pg_rewind keeps the node's own configuration (pgtopo puts it back) and takes the source's
//!   timeline; pg_basebackup copies the source's data directory, configuration included, but no
//!   slot; neither leaves the server running;
//! - a running server with standby.signal streams from the node its primary_conninfo names when
//!   that node runs with the same system, a timeline it can follow, and the slot it asks for.
//!
//! Steps without an effect on what observation sees (hooks, checkpoints, waits, .pgpass, roles,
//! poolers, slot synchronisation) leave the state alone; their preconditions are checked where
//! the model can: a promotion needs the node to be caught up ([`ReplayError::NotCaughtUp`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Desired;
use crate::diff;
use crate::observe::{
    ConninfoSummary, ControlData, ObservedCluster, ObservedHba, ObservedNode, ObservedSetting,
    ObservedSlot, Role, TimelineFork,
};

use super::{Action, Plan, Step};

/// The size of a shutdown checkpoint record.
const SHUTDOWN_CHECKPOINT_BYTES: u64 = 0x28;

/// A step the model cannot apply: the plan would fail there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("step {step} ({kind}) acts on {node}, whose host cannot be reached")]
    Unreachable {
        step: u32,
        kind: &'static str,
        node: String,
    },
    #[error("step {step} ({kind}) needs {node} running")]
    NotRunning {
        step: u32,
        kind: &'static str,
        node: String,
    },
    #[error("step {step} ({kind}) needs {node} stopped")]
    Running {
        step: u32,
        kind: &'static str,
        node: String,
    },
    #[error("{node}'s pg_hba.conf was written and never loaded (no reload or start after it)")]
    NotLoaded { node: String },
    #[error("step {step} promotes {node} before it replayed {old}'s shutdown checkpoint")]
    BehindOldPrimary {
        step: u32,
        node: String,
        old: String,
    },
    #[error("step {step} promotes {node}, which no earlier step waited to catch up")]
    NotCaughtUp { step: u32, node: String },
    #[error("step {step} waits for {node} to replay {from}'s WAL, which it does not receive")]
    NotReceiving {
        step: u32,
        node: String,
        from: String,
    },
}

/// The cluster as observation would see it once `plan`'s steps ran on `o` and replication
/// settled.
pub fn replay(
    d: &Desired,
    o: &ObservedCluster,
    plan: &Plan,
) -> Result<ObservedCluster, ReplayError> {
    replay_steps(d, o, &plan.steps)
}

/// [`replay`] over a list of steps in the order given (a plan's, or one with a step removed).
pub fn replay_steps(
    d: &Desired,
    o: &ObservedCluster,
    steps: &[Step],
) -> Result<ObservedCluster, ReplayError> {
    let mut sim = Sim {
        d,
        o: o.clone(),
        auto: BTreeMap::new(),
        caught_up: BTreeSet::new(),
        hba_unloaded: BTreeSet::new(),
        stopped_primaries: BTreeSet::new(),
    };
    for s in steps {
        sim.step(s)?;
    }
    if let Some(node) = sim.hba_unloaded.iter().find(|n| sim.o.nodes[*n].running) {
        return Err(ReplayError::NotLoaded { node: node.clone() });
    }
    sim.settle();
    Ok(sim.o)
}

/// The state the steps change, with what observation does not see: the values ALTER SYSTEM
/// wrote and the nodes a wait proved caught up.
struct Sim<'a> {
    d: &'a Desired,
    o: ObservedCluster,
    /// postgresql.auto.conf values not yet in effect (name → value, `None`: reset).
    auto: BTreeMap<String, BTreeMap<String, Option<String>>>,
    caught_up: BTreeSet<String>,
    /// Running nodes whose pg_hba.conf was written and not loaded since.
    hba_unloaded: BTreeSet<String>,
    /// Primaries this plan stopped cleanly: a promotion must have replayed their last WAL.
    stopped_primaries: BTreeSet<String>,
}

impl Sim<'_> {
    fn node(&mut self, name: &str) -> &mut ObservedNode {
        self.o.nodes.entry(name.to_string()).or_default()
    }

    fn step(&mut self, s: &Step) -> Result<(), ReplayError> {
        let name = s.node.as_str();
        let kind = s.action.kind();
        let x = self.node(name);
        if !diff::actionable(x) && !matches!(s.action, Action::Hook(_)) {
            return Err(ReplayError::Unreachable {
                step: s.id,
                kind,
                node: name.into(),
            });
        }
        let running = x.running;
        let need_running = || ReplayError::NotRunning {
            step: s.id,
            kind,
            node: name.into(),
        };
        let need_stopped = || ReplayError::Running {
            step: s.id,
            kind,
            node: name.into(),
        };
        match &s.action {
            Action::Stop(_) | Action::Fence(_) => {
                if matches!(s.action, Action::Fence(_)) {
                    self.node(name).standby_signal = true;
                }
                self.stop(name);
            }
            Action::Start(_) => self.start(name),
            Action::Restart(_) => {
                if !running {
                    return Err(need_running());
                }
                self.stop(name);
                self.start(name);
            }
            Action::Reload(_) => {
                if running {
                    self.hba_unloaded.remove(name);
                    self.reload(name);
                }
            }
            Action::AlterSystem(a) => {
                if !running {
                    return Err(need_running());
                }
                let auto = self.auto.entry(name.into()).or_default();
                for (k, v) in &a.set {
                    auto.insert(k.clone(), Some(v.clone()));
                }
                for k in &a.reset {
                    auto.insert(k.clone(), None);
                }
            }
            Action::WriteHba(h) => self.write_hba(name, &h.managed_block, running),
            Action::CreateSlot(p) => add_slot(self.node(name), &p.slot, "physical"),
            Action::DropSlot(p) => {
                let x = self.node(name);
                x.slots.retain(|n| n != &p.slot);
                x.replication_slots.retain(|n| n.name != p.slot);
            }
            Action::CreateLogicalSlot(p) => add_slot(self.node(name), &p.slot, "logical"),
            Action::WaitReplay(w) => {
                let from = match &w.target {
                    super::ReplayTarget::ShutdownCheckpointOf { node } => Some(node.as_str()),
                    super::ReplayTarget::Lsn { .. } => None,
                };
                self.catch_up(s, from)?;
            }
            Action::CatchUp(c) => self.catch_up(s, c.primary.as_deref())?,
            Action::Promote(_) => {
                if !running {
                    return Err(need_running());
                }
                self.promote_checked(s)?;
            }
            Action::ConfigureStandby(p) => self.configure_standby(name, p, running),
            Action::Rewind(p) => {
                if running {
                    return Err(need_stopped());
                }
                self.rewind(name, &p.source);
            }
            Action::Clone(p) => {
                if running {
                    return Err(need_stopped());
                }
                self.clone_from(name, &p.source);
                // pg_basebackup -C -S creates the slot; one that exists already is reused.
                if let Some(slot) = &p.slot {
                    let src = self.node(&p.source);
                    if !src.slots.contains(slot) {
                        add_slot(src, slot, "physical");
                    }
                }
            }
            Action::Upgrade(u) => {
                self.node(name).version = Some(u.to_major * 10_000);
            }
            Action::WritePgpass(_)
            | Action::CreateRole(_)
            | Action::Checkpoint(_)
            | Action::PausePooler(_)
            | Action::RoutePooler(_)
            | Action::ResumePooler(_)
            | Action::Hook(_)
            | Action::SyncSlots(_)
            | Action::Analyze(_)
            | Action::CreateStanza(_)
            | Action::CheckArchive(_) => {}
        }
        Ok(())
    }

    /// A promotion: only of a node that caught up, and not behind a stopped old primary.
    fn promote_checked(&mut self, s: &Step) -> Result<(), ReplayError> {
        let name = s.node.as_str();
        if !self.caught_up.contains(name) {
            return Err(ReplayError::NotCaughtUp {
                step: s.id,
                node: name.into(),
            });
        }
        let mine = diff::wal_end(self.node(name));
        let behind = self
            .stopped_primaries
            .iter()
            .find(|old| old.as_str() != name && diff::wal_end(&self.o.nodes[*old]) > mine);
        if let Some(old) = behind {
            return Err(ReplayError::BehindOldPrimary {
                step: s.id,
                node: name.into(),
                old: old.clone(),
            });
        }
        self.promote(name);
        Ok(())
    }

    /// `configure_standby`: the recovery configuration, applied as the step says.
    fn configure_standby(&mut self, name: &str, p: &super::ConfigureStandbyParams, running: bool) {
        let tls = p.tls.clone();
        let x = self.node(name);
        x.standby_signal = true;
        x.primary_conninfo = Some(ConninfoSummary {
            host: Some(p.upstream_host.clone()),
            port: Some(p.upstream_port),
            user: Some(p.user.clone()),
            application_name: Some(p.application_name.clone()),
            dbname: p.dbname.clone(),
            sslmode: tls.as_ref().map(|t| t.sslmode.as_str().to_string()),
            sslrootcert: tls.as_ref().and_then(|t| path(&t.sslrootcert)),
            sslcert: tls.as_ref().and_then(|t| path(&t.sslcert)),
            sslkey: tls.as_ref().and_then(|t| path(&t.sslkey)),
        });
        x.primary_slot_name = p.slot.clone();
        x.upstream = None;
        match p.apply {
            super::ConfigApply::Restart if running => {
                self.stop(name);
                self.start(name);
            }
            super::ConfigApply::Reload if running => self.settle_node(name),
            _ => {}
        }
    }

    /// pg_rewind from `source`: its timeline and history, recovery pending.
    fn rewind(&mut self, name: &str, source: &str) {
        let src = self.node(source).clone();
        let x = self.node(name);
        x.timeline = src.timeline;
        x.timeline_history = src.timeline_history.clone();
        x.lsn = diff::wal_end(&src);
        x.wal_match = None;
        x.rewind_unfinished = false;
        x.standby_signal = true;
        x.control = Some(control(x, "in archive recovery"));
    }

    /// `write_hba`: the managed block written, in effect after a reload when the node runs.
    fn write_hba(&mut self, name: &str, block: &[String], running: bool) {
        if running {
            self.hba_unloaded.insert(name.into());
        }
        let path = format!("{}/pg_hba.conf", self.data_dir(name));
        let x = self.node(name);
        let old = x.hba.take();
        x.hba = Some(ObservedHba {
            path: old.as_ref().map_or(path, |h| h.path.clone()),
            managed_block: Some(block.to_vec()),
            block_line: old.as_ref().and_then(|h| h.block_line),
            sha256: String::new(),
            errors: vec![],
        });
    }

    /// The node receives and replays `from`'s WAL (everything it has received when `from` is
    /// absent): only when it streams from `from`, directly or through a cascade, with the same
    /// system, or already has all of a stopped `from`'s WAL. Else the step would time out.
    fn catch_up(&mut self, s: &Step, from: Option<&str>) -> Result<(), ReplayError> {
        let name = s.node.as_str();
        if let Some(from) = from {
            let src = self.node(from).clone();
            let mine = diff::wal_end(self.node(name));
            let have_all = !src.running && mine >= diff::wal_end(&src);
            if !have_all && !self.streams_from(name, from) {
                return Err(ReplayError::NotReceiving {
                    step: s.id,
                    node: name.into(),
                    from: from.into(),
                });
            }
            // Caught up: at least the source's end of WAL, never back from where it was (a
            // stopped source's end is read as its checkpoint's start, before the record the
            // standby may already have replayed).
            let x = self.node(name);
            x.lsn = diff::wal_end(&src).max(mine).or(x.lsn);
            x.receive_lsn = x.lsn;
            x.replay_lsn = x.lsn;
        }
        self.caught_up.insert(name.into());
        Ok(())
    }

    /// `name` receives `from`'s WAL: the chain of upstreams it streams from reaches `from`
    /// (which may have stopped since, its last WAL sent), on one system and timeline.
    fn streams_from(&self, name: &str, from: &str) -> bool {
        let mut at = name.to_string();
        for _ in 0..self.o.nodes.len() {
            let Some(x) = self.o.nodes.get(&at) else {
                return false;
            };
            let Some(up) = x.upstream.clone().filter(|_| x.streaming) else {
                return false;
            };
            if up == from {
                let f = diff::observed(&self.o, from);
                return f.system_identifier == x.system_identifier && f.timeline == x.timeline;
            }
            at = up;
        }
        false
    }

    fn data_dir(&self, name: &str) -> String {
        self.d
            .nodes
            .get(name)
            .map(|n| n.data_dir.display().to_string())
            .unwrap_or_default()
    }

    /// A clean shutdown: SQL no longer answers; the control data says what the node was.
    fn stop(&mut self, name: &str) {
        let x = self.node(name);
        if !x.running {
            return;
        }
        if !x.standby_signal && diff::observed_role(x) == Some(Role::Primary) {
            self.stopped_primaries.insert(name.into());
        }
        let x = self.node(name);
        let in_recovery = x.standby_signal || diff::observed_role(x) == Some(Role::Standby);
        x.lsn = diff::wal_end(x);
        if !in_recovery {
            // The shutdown checkpoint record: WAL a candidate must still replay.
            x.lsn = x
                .lsn
                .map(|l| crate::units::Lsn(l.0 + SHUTDOWN_CHECKPOINT_BYTES));
        }
        x.control = Some(control(
            x,
            if in_recovery {
                "shut down in recovery"
            } else {
                "shut down"
            },
        ));
        x.running = false;
        x.reachable = false;
        x.role = None;
        x.upstream = None;
        x.streaming = false;
        x.receive_lsn = None;
        x.replay_lsn = None;
        x.replication.clear();
        x.replay_stall = None;
        x.replay_conflict = None;
        x.last_receipt = None;
        x.startup_wait_event = None;
        for s in &mut x.replication_slots {
            s.active = false;
        }
    }

    /// A start: every value postgresql.auto.conf holds takes effect, and pg_hba.conf.
    fn start(&mut self, name: &str) {
        self.hba_unloaded.remove(name);
        let auto = self.auto.remove(name).unwrap_or_default();
        let x = self.node(name);
        if x.running {
            return;
        }
        x.running = true;
        x.reachable = true;
        x.host_reachable = true;
        x.unreachable_reason = None;
        x.role = Some(if x.standby_signal {
            Role::Standby
        } else {
            Role::Primary
        });
        x.control = None;
        for (k, v) in auto {
            apply_setting(x, &k, v);
        }
        for s in x.settings.values_mut() {
            s.pending_restart = false;
        }
        self.settle_node(name);
    }

    /// A reload: what needs no restart takes effect, the rest waits for one.
    fn reload(&mut self, name: &str) {
        let auto = self.auto.remove(name).unwrap_or_default();
        let mut waiting = BTreeMap::new();
        let x = self.node(name);
        for (k, v) in auto {
            if diff::needs_restart(&k, x) {
                if let Some(s) = x.settings.get_mut(&k) {
                    if Some(&s.value) != v.as_ref() {
                        s.pending_restart = true;
                    }
                }
                waiting.insert(k, v);
            } else {
                apply_setting(x, &k, v);
            }
        }
        if !waiting.is_empty() {
            self.auto.insert(name.into(), waiting);
        }
    }

    /// The node leaves recovery on a new timeline that forks where its WAL ends.
    fn promote(&mut self, name: &str) {
        let x = self.node(name);
        let tl = x.timeline.unwrap_or(1);
        let at = diff::wal_end(x).unwrap_or_default();
        x.timeline_history.push(TimelineFork {
            timeline: tl,
            fork_lsn: at,
        });
        x.timeline = Some(tl + 1);
        x.lsn = Some(at);
        x.role = Some(Role::Primary);
        x.standby_signal = false;
        x.upstream = None;
        x.streaming = false;
        x.receive_lsn = None;
        x.replay_lsn = None;
        x.replay_stall = None;
        x.replay_conflict = None;
        x.last_receipt = None;
    }

    /// pg_basebackup: the source's data directory and configuration, no slot, not running.
    fn clone_from(&mut self, name: &str, source: &str) {
        let src = self.node(source).clone();
        let src_auto = self.auto.get(source).cloned();
        let path = format!("{}/pg_hba.conf", self.data_dir(name));
        let x = self.node(name);
        let keep = (x.host_reachable, x.binaries.clone());
        *x = ObservedNode {
            host_reachable: keep.0,
            binaries: keep.1,
            system_identifier: src.system_identifier.clone(),
            timeline: src.timeline,
            timeline_history: src.timeline_history.clone(),
            lsn: diff::wal_end(&src),
            version: src.version,
            data_dir: src.data_dir.clone(),
            settings: src.settings.clone(),
            hba: src.hba.clone().map(|h| ObservedHba { path, ..h }),
            ..Default::default()
        };
        for s in x.settings.values_mut() {
            s.pending_restart = false;
        }
        x.control = Some(control(x, "in archive recovery"));
        match src_auto {
            Some(a) => self.auto.insert(name.into(), a),
            None => self.auto.remove(name),
        };
    }

    /// Replication as it follows from the files and processes: every running node with
    /// standby.signal streams from the node its primary_conninfo names, when it can.
    fn settle(&mut self) {
        let names: Vec<String> = self.o.nodes.keys().cloned().collect();
        // Upstreams first: a cascade streams what its upstream has.
        for _ in 0..names.len() {
            for name in &names {
                self.settle_node(name);
            }
        }
    }

    fn settle_node(&mut self, name: &str) {
        let x = self.o.nodes[name].clone();
        if !x.running || !x.standby_signal {
            return;
        }
        let up_name = diff::observed_upstream(
            self.d,
            &ObservedNode {
                upstream: None,
                ..x.clone()
            },
        );
        let up = up_name.as_ref().and_then(|u| self.o.nodes.get(u)).cloned();
        let streams = up
            .as_ref()
            .is_some_and(|u| can_stream(&x, u, up_name.as_deref().unwrap()));
        let x = self.node(name);
        x.upstream = up_name.clone();
        if !streams {
            x.streaming = false;
            return;
        }
        let u = up.unwrap();
        let at = diff::wal_end(&u);
        x.streaming = true;
        x.timeline = u.timeline;
        x.timeline_history = u.timeline_history.clone();
        x.lsn = at;
        x.receive_lsn = at;
        x.replay_lsn = at;
        x.last_receipt = None;
        let app = name.to_string();
        let slot = x.primary_slot_name.clone();
        let host = self.d.nodes.get(name).map(|n| n.host.clone());
        let u = self.node(up_name.as_deref().unwrap());
        if let Some(slot) = slot {
            for s in u.replication_slots.iter_mut().filter(|s| s.name == slot) {
                s.active = true;
                s.restart_lsn = at;
            }
        }
        if !u.replication.iter().any(|r| r.application_name == app) {
            u.replication.push(crate::observe::ObservedReplica {
                application_name: app,
                client_addr: host,
                state: "streaming".into(),
                sync_state: "async".into(),
                sent_lsn: at,
                flush_lsn: at,
                replay_lsn: at,
                lag_bytes: Some(0),
                reply_age_ms: None,
                replay_lag_ms: None,
            });
        }
    }
}

/// Whether standby `x` can stream from `u` (named `up`): it runs, is the same system, has the
/// slot `x` asks for, and `x`'s timeline is `u`'s or one `u`'s history forked from after `x`'s
/// WAL ends.
fn can_stream(x: &ObservedNode, u: &ObservedNode, up: &str) -> bool {
    let _ = up;
    if !u.running || !u.reachable || u.system_identifier != x.system_identifier {
        return false;
    }
    if x.wal_match
        .as_ref()
        .is_some_and(|m| m.matches == Some(false))
    {
        return false;
    }
    if let Some(slot) = &x.primary_slot_name {
        let ok = u
            .replication_slots
            .iter()
            .any(|s| &s.name == slot && s.wal_status.as_deref() != Some("lost"))
            || (u.replication_slots.is_empty() && u.slots.contains(slot));
        if !ok {
            return false;
        }
    }
    let (xt, ut) = (x.timeline.unwrap_or(1), u.timeline.unwrap_or(1));
    let end = diff::wal_end(x).unwrap_or_default();
    if xt == ut {
        // On one timeline, WAL past the upstream's end is a history the upstream does not have.
        return end <= diff::wal_end(u).unwrap_or_default();
    }
    u.timeline_history
        .iter()
        .any(|f| f.timeline == xt && f.fork_lsn >= end)
}

fn apply_setting(x: &mut ObservedNode, k: &str, v: Option<String>) {
    match v {
        Some(v) => {
            let restart = diff::needs_restart(k, x);
            let s = x
                .settings
                .entry(k.to_string())
                .or_insert_with(|| ObservedSetting {
                    value: String::new(),
                    raw: None,
                    unit: None,
                    pending_restart: false,
                    context: if restart { "postmaster" } else { "sighup" }.into(),
                    source: "configuration file".into(),
                });
            s.value = v;
            s.raw = None;
            s.pending_restart = false;
        }
        None => {
            x.settings.remove(k);
        }
    }
}

fn add_slot(x: &mut ObservedNode, slot: &str, kind: &str) {
    if !x.slots.iter().any(|s| s == slot) {
        x.slots.push(slot.to_string());
    }
    x.replication_slots.retain(|s| s.name != slot);
    x.replication_slots.push(ObservedSlot {
        name: slot.to_string(),
        slot_type: kind.into(),
        active: false,
        restart_lsn: diff::wal_end(x),
        wal_retained_bytes: Some(0),
        wal_status: Some("reserved".into()),
        safe_wal_size: None,
        logical: None,
    });
}

fn path(p: &Option<std::path::PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.display().to_string())
}

/// The control data of `x`'s directory in `state`.
fn control(x: &ObservedNode, state: &str) -> ControlData {
    let at = diff::wal_end(x).unwrap_or_default();
    let old = x.control.clone();
    ControlData {
        system_identifier: x.system_identifier.clone().unwrap_or_default(),
        cluster_state: state.into(),
        latest_checkpoint: at,
        latest_checkpoint_redo: at,
        checkpoint_timeline: x.timeline.unwrap_or(1),
        min_recovery_end: crate::units::Lsn(0),
        min_recovery_end_timeline: 0,
        wal_log_hints: old.as_ref().is_some_and(|c| c.wal_log_hints)
            || x.settings
                .get("wal_log_hints")
                .is_some_and(|s| s.value == "on"),
        data_checksums: old.as_ref().is_some_and(|c| c.data_checksums),
        wal_segment_size: old.as_ref().map_or(16 << 20, |c| c.wal_segment_size),
    }
}
