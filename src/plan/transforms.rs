//! The named ordering transforms: each one rule of SPEC §4, each a small function that adds the
//! steps of its rule to the DAG and records the anchors later rules wait for (the step after which
//! the primary accepts writes, after which a standby streams, after which a node's settings or
//! pg_hba are in effect). They run in the order of [`TRANSFORMS`]; a transform may only wait for
//! steps that earlier transforms (or itself) added, which keeps the DAG acyclic by construction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::config::{Desired, DesiredRole};
use crate::diff::{self, observed, values, HOT_STANDBY_CRITICAL};
use crate::observe::{ObservedCluster, Role};
use crate::units::ByteSize;

use super::analysis::{Analysis, Fate, PromotionKind, Rejoin};
use super::graph::{Dag, Idx};
use super::model::*;

/// The state shared by the transforms.
pub struct Ctx<'a> {
    pub eff: &'a Desired,
    /// The (effective) primary's name.
    pub primary_name: &'a str,
    pub o: &'a ObservedCluster,
    pub a: &'a Analysis,
    pub dag: Dag,
    pub notes: Vec<String>,
    /// The primary accepts writes after this step (promote, or start of a stopped primary).
    pub primary_ready: Option<Idx>,
    pub writes_down: Option<Idx>,
    pub writes_up: Option<Idx>,
    pub primary_restart: Option<Idx>,
    pub checkpoint: Option<Idx>,
    pub role_step: Option<Idx>,
    /// A node's pg_hba.conf is in effect after this step.
    pub hba_ready: HashMap<String, Idx>,
    /// A node's settings are in effect after this step.
    pub settings_ready: HashMap<String, Idx>,
    /// A standby streams from its declared upstream after this step.
    pub streaming: HashMap<String, Idx>,
    /// Slots created by the plan: (holder, slot) → step.
    pub slots_made: HashMap<(String, String), Idx>,
    pub sync_step: Option<Idx>,
    /// The plan set the candidate's synchronous_standby_names to '' before promoting it.
    pub sync_cleared: bool,
    /// Nodes a step stops (not started again by the plan unless they rejoin).
    pub stopped: HashSet<String>,
    pub retire_stop: HashMap<String, Idx>,
    pub restarts: BTreeSet<String>,
    /// (holder, slot) pairs that exist now.
    pub slot_index: HashSet<(String, String)>,
    /// Nodes whose os_user's .pgpass the plan writes (once per node).
    pub pgpass_written: HashSet<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(eff: &'a Desired, o: &'a ObservedCluster, a: &'a Analysis) -> Self {
        Ctx {
            eff,
            primary_name: &eff.primary().name,
            o,
            a,
            dag: Dag::default(),
            notes: Vec::new(),
            primary_ready: None,
            writes_down: None,
            writes_up: None,
            primary_restart: None,
            checkpoint: None,
            role_step: None,
            hba_ready: HashMap::new(),
            settings_ready: HashMap::new(),
            streaming: HashMap::new(),
            slots_made: HashMap::new(),
            sync_step: None,
            sync_cleared: false,
            stopped: HashSet::new(),
            retire_stop: HashMap::new(),
            restarts: BTreeSet::new(),
            pgpass_written: HashSet::new(),
            // The slots that will still be there: a fresh copy has none of its own.
            slot_index: o
                .nodes
                .iter()
                .filter(|(h, _)| !a.fates.get(*h).is_some_and(Fate::copies_data))
                .flat_map(|(h, x)| x.slots.iter().map(move |s| (h.clone(), s.clone())))
                .collect(),
        }
    }

    fn primary(&self) -> &'a str {
        self.primary_name
    }

    pub(super) fn fate(&self, n: &str) -> &'a Fate {
        self.a.fates.get(n).unwrap_or(&Fate::Keep)
    }

    /// The step after which `up` can serve a standby (if the plan changes it).
    fn ready(&self, up: &str) -> Vec<Idx> {
        let mut v = Vec::new();
        if up == self.primary() {
            v.extend(self.primary_ready);
        } else {
            v.extend(self.streaming.get(up).copied());
        }
        v.extend(self.hba_ready.get(up).copied());
        v.extend(self.settings_ready.get(up).copied());
        v
    }
}

/// A transform: one ordering rule.
pub type Transform = fn(&mut Ctx);

/// Every transform, in the order they run.
pub const TRANSFORMS: &[(&str, Transform)] = &[
    ("hooks_before", super::poolers::hooks_before),
    ("start_stopped_primary", start_stopped_primary),
    ("hba_managed_block", hba_managed_block),
    ("settings_rolling", settings_rolling),
    ("promotion", promotion),
    ("replication_role", replication_role),
    ("standbys", standbys),
    ("synchronous_set", synchronous_set),
    ("retire", retire),
    ("logical_slots", super::logical::logical_slots),
    ("slot_cleanup", slot_cleanup),
    ("pooler_drift", super::poolers::pooler_drift),
    ("hooks_after", super::poolers::hooks_after),
];

/// Stopped is not failed: a declared primary that is merely stopped is started; no promotion.
pub fn start_stopped_primary(c: &mut Ctx) {
    let p = c.primary();
    if c.fate(p) == &Fate::StartPrimary {
        let s = c.dag.add(
            p,
            Action::Start(StartParams {
                wait_streaming_from: None,
            }),
            false,
            "the declared primary is stopped, not failed: start it (no promotion, timeline unchanged)",
            &[],
        );
        c.primary_ready = Some(s);
        c.restarts.insert(p.to_string());
    }
}

/// pg_hba: write the managed block (replication rules for every node's host, then `hba:`) on
/// every node where it differs, and reload running servers.
pub fn hba_managed_block(c: &mut Ctx) {
    let block = diff::hba::managed_block(c.eff);
    for n in c.eff.present() {
        let fate = c.fate(&n.name);
        let obs = observed(c.o, &n.name);
        if !super::analysis::hba_needs_write(c.eff, &obs, fate) {
            continue;
        }
        let mut last = c.dag.add(
            &n.name,
            Action::WriteHba(WriteHbaParams {
                managed_block: block.clone(),
            }),
            false,
            format!("managed block: {} rules", block.len()),
            &[],
        );
        let will_run = obs.running || fate == &Fate::StartPrimary;
        if obs.running || (will_run && c.primary_ready.is_some()) {
            last = c.dag.add(
                &n.name,
                Action::Reload(ReloadParams {
                    reason: "pg_hba.conf changed".into(),
                }),
                false,
                "pg_hba.conf changed",
                &[],
            );
        }
        c.hba_ready.insert(n.name.clone(), last);
    }
}

/// The settings a node's plan changes: its name, the differences, what ALTER SYSTEM sets, and
/// the step description.
struct SettingsChange {
    node: String,
    diffs: Vec<diff::SettingDiff>,
    set: BTreeMap<String, String>,
    desc: String,
}

impl SettingsChange {
    fn needs_restart(&self) -> bool {
        self.diffs.iter().any(|d| d.restart)
    }
}

/// Settings: ALTER SYSTEM, then reload (sighup/superuser/user) or restart (postmaster). Restarts
/// roll one standby at a time; for the hot-standby-critical settings an increase restarts the
/// standbys before the primary and a decrease the primary first.
pub fn settings_rolling(c: &mut Ctx) {
    let old =
        c.a.promotion
            .as_ref()
            .and_then(|p| p.old.clone())
            .unwrap_or_default();
    let mut restart_nodes: Vec<SettingsChange> = Vec::new();
    let mut primary_decrease = false;
    for n in c.eff.present() {
        let Some(change) = settings_change(c, &n.name) else {
            continue;
        };
        if observed(c.o, &n.name).role == Some(Role::Primary) {
            primary_decrease |= lowers_hot_standby_critical(&change.diffs);
        }
        if change.needs_restart() && n.name != old {
            // ALTER SYSTEM waits for its node's turn in the rolling order: a primary whose
            // raised max_connections is only pending must not be restarted with it by anyone
            // else while its standbys still run with the old value.
            restart_nodes.push(change);
            continue;
        }
        alter_without_restart(c, change);
    }
    // Rolling order: standbys one at a time, the primary last (first on a decrease).
    let is_primary = |name: &str| observed(c.o, name).role == Some(Role::Primary);
    restart_nodes.sort_by_key(|ch| {
        let p = is_primary(&ch.node);
        (if primary_decrease { !p } else { p }, ch.node.clone())
    });
    let mut prev: Option<Idx> = None;
    for change in restart_nodes {
        prev = Some(alter_and_restart(c, change, prev));
    }
}

/// The settings to change on `name`, when its fate keeps it running with its data and it runs
/// (the settings ordered apart by the logical transforms excepted).
fn settings_change(c: &Ctx, name: &str) -> Option<SettingsChange> {
    if !matches!(
        c.fate(name),
        Fate::Keep | Fate::Promote | Fate::Repoint | Fate::Rejoin(Rejoin::Follow { .. })
    ) {
        return None;
    }
    let obs = observed(c.o, name);
    if !(obs.reachable && obs.running) {
        return None;
    }
    let mut diffs = diff::setting_diffs(c.eff, c.o, name);
    diffs.retain(|d| !super::logical::ordered_apart(&d.name));
    if diffs.is_empty() {
        return None;
    }
    let set = diffs
        .iter()
        .map(|d| (d.name.clone(), d.after.clone()))
        .collect();
    let desc = diffs
        .iter()
        .map(|d| format!("{} = {}", d.name, d.after))
        .collect::<Vec<_>>()
        .join(", ");
    Some(SettingsChange {
        node: name.to_string(),
        diffs,
        set,
        desc,
    })
}

/// Whether a hot-standby-critical setting is lowered (which restarts the primary first).
fn lowers_hot_standby_critical(diffs: &[diff::SettingDiff]) -> bool {
    diffs.iter().any(|d| {
        HOT_STANDBY_CRITICAL.contains(&d.name.as_str())
            && matches!(
                (d.before.as_deref().and_then(values::numeric), values::numeric(&d.after)),
                (Some(b), Some(a)) if a < b
            )
    })
}

/// ALTER SYSTEM on `node` after `deps`: its settings are in effect after it, until a reload or
/// restart that follows takes that place.
fn alter_system(
    c: &mut Ctx,
    node: &str,
    set: BTreeMap<String, String>,
    desc: String,
    deps: &[Idx],
) {
    let alter = c.dag.add(
        node,
        Action::AlterSystem(AlterSystemParams { set, reset: vec![] }),
        false,
        desc,
        deps,
    );
    c.settings_ready.insert(node.to_string(), alter);
}

/// ALTER SYSTEM, then a reload; or, for the old primary of a promotion, no restart: its new
/// settings take effect when it starts again as a standby.
fn alter_without_restart(c: &mut Ctx, change: SettingsChange) {
    let needs_restart = change.needs_restart();
    let SettingsChange {
        node, set, desc, ..
    } = change;
    alter_system(c, &node, set, desc, &[]);
    if needs_restart {
        c.notes.push(format!(
            "{node}'s new settings take effect when it starts again as a standby"
        ));
    } else {
        let r = c.dag.add(
            &node,
            Action::Reload(ReloadParams {
                reason: "settings changed".into(),
            }),
            false,
            "settings changed",
            &[],
        );
        c.settings_ready.insert(node, r);
    }
}

/// ALTER SYSTEM and a restart, both after the previous node's restart (`prev`); returns the
/// restart.
fn alter_and_restart(c: &mut Ctx, change: SettingsChange, prev: Option<Idx>) -> Idx {
    let SettingsChange {
        node: name,
        diffs,
        set,
        desc,
    } = change;
    alter_system(c, &name, set, desc, &prev.into_iter().collect::<Vec<_>>());
    let obs = observed(c.o, &name);
    let primary = obs.role == Some(Role::Primary);
    let names: Vec<&str> = diffs
        .iter()
        .filter(|d| d.restart)
        .map(|d| d.name.as_str())
        .collect();
    let reason = format!("postmaster settings: {}", names.join(", "));
    let wait = if primary {
        None
    } else {
        obs.upstream.clone().filter(|_| obs.streaming)
    };
    let desc = if primary {
        format!("{reason} (the primary: writes unavailable while it restarts)")
    } else {
        reason.clone()
    };
    let r = c.dag.add(
        &name,
        Action::Restart(RestartParams {
            mode: ShutdownMode::Fast,
            reason,
            wait_streaming_from: wait,
        }),
        primary,
        desc,
        &prev.into_iter().collect::<Vec<_>>(),
    );
    if primary {
        c.primary_restart = Some(r);
    }
    c.restarts.insert(name.clone());
    c.settings_ready.insert(name, r);
    r
}

fn create_slot(c: &mut Ctx, holder: &str, slot: &str, desc: String, deps: &[Idx]) -> Option<Idx> {
    if !c.eff.replication.slots {
        return None;
    }
    let key = (holder.to_string(), slot.to_string());
    if let Some(i) = c.slots_made.get(&key) {
        return Some(*i);
    }
    if c.slot_index.contains(&key) {
        return None;
    }
    let i = c.dag.add(
        holder,
        Action::CreateSlot(SlotParams { slot: slot.into() }),
        false,
        desc,
        deps,
    );
    c.slots_made.insert(key, i);
    Some(i)
}

/// Planned switchover, finishing one, or failover: slots the new primary needs first, then stop
/// (or fence) the old primary, the zero-data-loss wait, the promotion.
pub fn promotion(c: &mut Ctx) {
    let Some(p) = c.a.promotion.clone() else {
        return;
    };
    let cand = p.candidate.clone();
    let old = p.old.clone().unwrap_or_default();
    let mut pre = slots_before_promotion(c, &cand, &old);
    pre.extend(clear_candidate_sync(c, &cand));
    let synced = super::logical::before_promotion(c, &cand, &[]);
    pre.extend(synced);
    let timeout_ms = c.eff.switchover.timeout.0.as_millis() as u64;
    // The stop's CHECKPOINT runs while writes still flow; with poolers paused before the stop,
    // it becomes a step of its own before the pause, outside the window.
    let checkpoint_first = matches!(p.kind, PromotionKind::Switchover) && super::poolers::pauses(c);
    if checkpoint_first {
        let ck = c.dag.add(
            &old,
            Action::Checkpoint(CheckpointParams {
                reason: "before the poolers pause, so the shutdown checkpoint is short".into(),
                timeout_ms: Some(timeout_ms),
            }),
            false,
            "while writes still flow, before the poolers pause",
            &pre,
        );
        pre.push(ck);
    }
    if matches!(p.kind, PromotionKind::Switchover) {
        pre = vec![catch_up(c, &p, Some(&old), &pre)];
    }
    let pauses = super::poolers::pause(c, &pre);
    let pre: Vec<Idx> = pre.into_iter().chain(pauses.iter().copied()).collect();
    let before_promote = match &p.kind {
        PromotionKind::Switchover => {
            stop_for_switchover(c, &cand, &old, &pre, timeout_ms, checkpoint_first)
        }
        PromotionKind::FinishSwitchover { checkpoint } => {
            let w = c.dag.add(
                &cand,
                Action::WaitReplay(WaitReplayParams {
                    target: ReplayTarget::ShutdownCheckpointOf { node: old.clone() },
                    timeout_ms,
                    on_failure_restart: None,
                }),
                false,
                format!("past {old}'s shutdown checkpoint {checkpoint} (already replayed)"),
                &pre,
            );
            c.writes_down = Some(w);
            w
        }
        PromotionKind::Failover { fence, .. } => {
            let deps = match before_failover(c, &old, *fence, &pre) {
                Some(b) => vec![b],
                None => pre.clone(),
            };
            let cu = catch_up(c, &p, None, &deps);
            c.writes_down.get_or_insert(cu);
            cu
        }
    };
    let reason = promotion_reason(&p.kind, &old);
    let promote = c.dag.add(
        &cand,
        Action::Promote(PromoteParams {
            reason: reason.clone(),
            previous_primaries: p.old.iter().cloned().collect(),
            writes_available: true,
            timeout_ms: Some(timeout_ms),
        }),
        true,
        reason,
        &[&[before_promote][..], &pauses].concat(),
    );
    super::poolers::after_promotion(c, promote);
    if c.writes_down.is_none() {
        c.writes_down = Some(promote);
    }
    c.writes_up = Some(promote);
    c.primary_ready = Some(promote);
}

/// The slots of the candidate's future standbys, created before it is promoted (a clone creates
/// its slot itself, with pg_basebackup -C -S).
fn slots_before_promotion(c: &mut Ctx, cand: &str, old: &str) -> Vec<Idx> {
    let followers: Vec<String> = c
        .eff
        .downstreams_of(cand)
        .filter(|n| {
            let f = c.fate(&n.name);
            !(matches!(f, Fate::Deferred { .. }) || f.copies_data())
        })
        .map(|n| n.name.clone())
        .collect();
    let mut made = Vec::new();
    for f in followers {
        let why = if f == old {
            format!("slot {f} (before promotion, so {f}'s WAL is kept from the start)")
        } else {
            format!("slot {f} (before promotion, for {f} to follow {cand})")
        };
        made.extend(create_slot(c, cand, &f, why, &[]));
    }
    made
}

/// A candidate with synchronous standbys configured would wait for them once promoted: clear
/// synchronous_standby_names until its standbys stream to it. Returns the reload.
fn clear_candidate_sync(c: &mut Ctx, cand: &str) -> Option<Idx> {
    let cand_sync = observed(c.o, cand)
        .settings
        .get("synchronous_standby_names")
        .map(|s| s.value.trim().to_string())
        .unwrap_or_default();
    if cand_sync.is_empty() {
        return None;
    }
    c.dag.add(
        cand,
        Action::AlterSystem(AlterSystemParams {
            set: [("synchronous_standby_names".to_string(), String::new())].into(),
            reset: vec![],
        }),
        false,
        format!("synchronous_standby_names = '' until its standbys stream to {cand}"),
        &[],
    );
    let reload = c.dag.add(
        cand,
        Action::Reload(ReloadParams {
            reason: "synchronous_standby_names changed".into(),
        }),
        false,
        "synchronous_standby_names changed",
        &[],
    );
    c.sync_cleared = true;
    Some(reload)
}

/// Switchover: stop the old primary (fast), then wait until the candidate replays past its
/// shutdown checkpoint (else the old primary is started again). Returns the wait.
fn stop_for_switchover(
    c: &mut Ctx,
    cand: &str,
    old: &str,
    pre: &[Idx],
    timeout_ms: u64,
    checkpointed: bool,
) -> Idx {
    let stop = c.dag.add(
        old,
        Action::Stop(StopParams {
            mode: ShutdownMode::Fast,
            writes_unavailable: true,
            timeout_ms: Some(timeout_ms),
            checkpointed,
            candidate: Some(cand.to_string()),
        }),
        false,
        "fast",
        pre,
    );
    c.writes_down = Some(stop);
    c.stopped.insert(old.to_string());
    c.restarts.insert(old.to_string());
    c.dag.add(
        cand,
        Action::WaitReplay(WaitReplayParams {
            target: ReplayTarget::ShutdownCheckpointOf {
                node: old.to_string(),
            },
            timeout_ms,
            on_failure_restart: Some(old.to_string()),
        }),
        false,
        format!("past {old}'s shutdown checkpoint (else {old} is started again as primary)"),
        &[stop],
    )
}

/// How long the sessions a catch_up cancelled may take to end before they are terminated.
pub(super) const CANCEL_GRACE_MS: u64 = 1_000;

/// The live proof before the disruptive part of a promotion, on the candidate: a switchover's
/// (`old` given) before the pause and the stop, within `switchover.catchup_timeout`, cancelling
/// what blocks replay when `switchover.cancel_conflicting_queries` says so; a failover's before
/// the promotion, always cancelling (the candidate is about to become the primary).
fn catch_up(c: &mut Ctx, p: &super::analysis::Promotion, old: Option<&str>, deps: &[Idx]) -> Idx {
    let sw = &c.eff.switchover;
    let (timeout, cancel) = match old {
        Some(_) => (sw.catchup_timeout.0, sw.cancel_conflicting_queries),
        None => (sw.timeout.0, true),
    };
    let target = match old {
        Some(o) => format!(
            "receives and replays {o}'s current WAL position (read when this step runs) within {}, else nothing is stopped",
            crate::units::Duration(timeout)
        ),
        None => "replays all it received before its promotion".to_string(),
    };
    let cancels = match (&p.conflict, cancel) {
        (Some(k), true) if !k.blockers.is_empty() => format!(
            "; cancels the sessions that block its replay (now {})",
            k.blocked_on()
        ),
        (_, true) => "; cancels any session that blocks its replay".to_string(),
        (_, false) => String::new(),
    };
    c.dag.add(
        &p.candidate,
        Action::CatchUp(CatchUpParams {
            primary: old.map(str::to_string),
            timeout_ms: timeout.as_millis() as u64,
            cancel_conflicts: cancel,
            grace_ms: if cancel { CANCEL_GRACE_MS } else { 0 },
        }),
        false,
        format!("{} {target}{cancels}", p.candidate),
        deps,
    )
}

/// Failover: stop a retired old primary whose host answers, or fence any other one; with its host
/// unreachable, nothing (the catch_up that follows opens the window). Returns that step.
fn before_failover(c: &mut Ctx, old: &str, fence: bool, pre: &[Idx]) -> Option<Idx> {
    let retired = c
        .eff
        .nodes
        .get(old)
        .is_some_and(|n| n.role == DesiredRole::Absent);
    let step = if fence && retired {
        // A retired node gets no step but its stop.
        let f = c.dag.add(
            old,
            Action::Stop(StopParams {
                mode: ShutdownMode::Immediate,
                writes_unavailable: false,
                timeout_ms: None,
                checkpointed: false,
                candidate: None,
            }),
            false,
            format!("{old} is retired and down: make sure it stays stopped"),
            pre,
        );
        c.stopped.insert(old.to_string());
        f
    } else if fence {
        let f = c.dag.add(
            old,
            Action::Fence(FenceParams {
                reason: format!(
                    "{old} is down and not proven shut down cleanly: it must not accept writes again"
                ),
            }),
            false,
            format!("{old} must not come back as a primary"),
            pre,
        );
        c.stopped.insert(old.to_string());
        f
    } else {
        return None;
    };
    c.writes_down = Some(step);
    Some(step)
}

/// Why the candidate is promoted, as the promote step says it.
fn promotion_reason(kind: &PromotionKind, old: &str) -> String {
    match kind {
        PromotionKind::Switchover => format!("planned switchover from {old}"),
        PromotionKind::FinishSwitchover { .. } => {
            format!("finishing the switchover from {old} (shut down cleanly)")
        }
        PromotionKind::Failover { .. } if old.is_empty() => "failover: no primary".to_string(),
        PromotionKind::Failover { .. } => format!("failover from {old}, which is down"),
    }
}

/// The replication role, created on the primary when the plan builds a standby.
pub fn replication_role(c: &mut Ctx) {
    let builds = c.a.fates.values().any(Fate::copies_data);
    if !builds {
        return;
    }
    let p = c.primary();
    let deps: Vec<Idx> = c.primary_ready.into_iter().collect();
    let i = c.dag.add(
        p,
        Action::CreateRole(CreateRoleParams {
            role: c.eff.replication.user.clone(),
            with_password: c.eff.replication.password.is_some(),
        }),
        false,
        if c.eff.replication.password.is_some() {
            format!(
                "{} (REPLICATION LOGIN, replication.password), if missing or different",
                c.eff.replication.user
            )
        } else {
            format!("{} (REPLICATION LOGIN), if missing", c.eff.replication.user)
        },
        &deps,
    );
    c.role_step = Some(i);
}

pub(super) fn configure(c: &mut Ctx, x: &str, up: &str, apply: ConfigApply, deps: &[Idx]) -> Idx {
    // The conninfo written has no password: libpq finds it in the os_user's .pgpass, which a
    // standby pgtopo did not build may lack (its password was in its old conninfo).
    pgpass(c, x);
    let xn = &c.eff.nodes[x];
    let un = &c.eff.nodes[up];
    let slot = c.eff.replication.slots.then(|| x.to_string());
    let desc = match &slot {
        Some(s) => format!("primary_conninfo → {up}, slot {s}"),
        None => format!("primary_conninfo → {up}"),
    };
    c.dag.add(
        x,
        Action::ConfigureStandby(ConfigureStandbyParams {
            upstream: up.into(),
            upstream_host: un.host.clone(),
            upstream_port: un.port,
            user: c.eff.replication.user.clone(),
            application_name: x.into(),
            slot,
            dbname: c.eff.slot_sync_dbname(),
            port: xn.port,
            listen_addresses: xn.host.clone(),
            apply,
            tls: c.eff.replication_tls(x),
        }),
        false,
        desc,
        deps,
    )
}

fn start_streaming(c: &mut Ctx, x: &str, up: &str, deps: &[Idx]) -> Idx {
    let s = c.dag.add(
        x,
        Action::Start(StartParams {
            wait_streaming_from: Some(up.into()),
        }),
        false,
        format!("wait until {x} streams from {up}"),
        deps,
    );
    c.streaming.insert(x.into(), s);
    s
}

/// The replication password in the os_user's .pgpass (only when the topology has one; once per
/// node: every step that points the node at an upstream relies on it).
fn pgpass(c: &mut Ctx, x: &str) -> Option<Idx> {
    c.eff.replication.password.as_ref()?;
    if !c.pgpass_written.insert(x.to_string()) {
        return None;
    }
    let entries: Vec<PgpassEntry> = c
        .eff
        .present()
        .filter(|n| n.name != x)
        .map(|n| PgpassEntry {
            host: n.host.clone(),
            port: n.port,
            user: c.eff.replication.user.clone(),
        })
        .collect();
    let os_user = c.eff.nodes[x].os_user.clone();
    Some(c.dag.add(
        x,
        Action::WritePgpass(WritePgpassParams { entries }),
        false,
        format!("{os_user}'s .pgpass (0600): replication password for the other nodes"),
        &[],
    ))
}

fn stop_if_running(c: &mut Ctx, x: &str, why: &str, deps: &[Idx]) {
    let xo = observed(c.o, x);
    if !xo.running || c.stopped.contains(x) {
        return;
    }
    if xo.role == Some(Role::Primary) {
        // A writer that is not the plan's primary: stopped, and kept from starting as one.
        c.dag.add(
            x,
            Action::Fence(FenceParams {
                reason: format!("{x} accepts writes but is not the primary ({why})"),
            }),
            true,
            format!("{x} must not accept writes ({why})"),
            deps,
        );
    } else {
        c.dag.add(
            x,
            Action::Stop(StopParams {
                mode: ShutdownMode::Fast,
                writes_unavailable: false,
                timeout_ms: None,
                checkpointed: false,
                candidate: None,
            }),
            false,
            format!("fast ({why})"),
            deps,
        );
    }
    c.stopped.insert(x.into());
}

/// A standby's slot on `up` that can no longer serve it (`lost`) is dropped before the clone
/// re-creates it.
fn drop_lost_slot(c: &mut Ctx, x: &str, up: &str, deps: &[Idx]) -> Option<Idx> {
    // A fresh copy of `up` has no slot to drop.
    let lost = !c.fate(up).copies_data()
        && observed(c.o, up)
            .replication_slots
            .iter()
            .any(|s| s.name == x && s.wal_status.as_deref() == Some("lost"));
    lost.then(|| {
        c.dag.add(
            up,
            Action::DropSlot(SlotParams { slot: x.into() }),
            false,
            format!("slot {x} is lost: dropped so that the clone of {x} creates it again"),
            deps,
        )
    })
}

/// A node's own settings after it was cloned or rewound (the copy brought its source's).
fn own_settings_after_copy(c: &mut Ctx, x: &str, up: &str) {
    let mine = diff::wanted_settings(c.eff, c.o, x);
    let theirs = diff::wanted_settings(c.eff, c.o, up);
    let set: std::collections::BTreeMap<String, String> = mine
        .into_iter()
        .filter(|(k, w)| {
            theirs
                .get(k)
                .map_or(true, |t| !values::values_equal(&t.value, &w.value))
        })
        .map(|(k, w)| (k, w.value))
        .collect();
    if set.is_empty() {
        return;
    }
    let restart = set
        .keys()
        .any(|k| diff::needs_restart(k, &observed(c.o, x)));
    let desc = set
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    c.dag.add(
        x,
        Action::AlterSystem(AlterSystemParams { set, reset: vec![] }),
        false,
        format!("{desc} ({x}'s own settings)"),
        &[],
    );
    let s = if restart {
        c.restarts.insert(x.into());
        c.dag.add(
            x,
            Action::Restart(RestartParams {
                mode: ShutdownMode::Fast,
                reason: format!("{x}'s own postmaster settings"),
                wait_streaming_from: Some(up.into()),
            }),
            false,
            format!("{x}'s own postmaster settings"),
            &[],
        )
    } else {
        c.dag.add(
            x,
            Action::Reload(ReloadParams {
                reason: "settings changed".into(),
            }),
            false,
            "settings changed",
            &[],
        )
    };
    c.streaming.insert(x.into(), s);
    c.settings_ready.insert(x.into(), s);
}

/// The standbys, upstream before downstream: new standby (clone), rejoin (follow / rewind /
/// clone), re-point (slot on the new upstream first), start of a stopped standby.
pub fn standbys(c: &mut Ctx) {
    let p = c.primary().to_string();
    let mut queue: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for n in c.eff.present() {
        if let DesiredRole::Standby { upstream } = &n.role {
            children.entry(upstream.as_str()).or_default().push(&n.name);
        }
    }
    queue.extend(
        children
            .get(p.as_str())
            .into_iter()
            .flatten()
            .map(|s| s.to_string()),
    );
    while let Some(x) = queue.pop_front() {
        queue.extend(
            children
                .get(x.as_str())
                .into_iter()
                .flatten()
                .map(|s| s.to_string()),
        );
        let up = match &c.eff.nodes[&x].role {
            DesiredRole::Standby { upstream } => upstream.clone(),
            _ => continue,
        };
        let fate = c.fate(&x).clone();
        if matches!(fate, Fate::Keep | Fate::Start) && c.fate(&up).copies_data() {
            // Its upstream is cloned again: the slot it streams through goes with the old
            // directory.
            let ready = c.ready(&up);
            let desc = format!("slot {x} for {x} (on the new copy of {up})");
            create_slot(c, &up, &x, desc, &ready);
        }
        match fate {
            Fate::Start => {
                let deps = c.ready(&up);
                start_streaming(c, &x, &up, &deps);
            }
            Fate::Repoint => repoint(c, &x, &up),
            Fate::New { move_aside, reason } => {
                new_standby(c, &x, &up, move_aside, &reason);
            }
            Fate::Rejoin(r) => rejoin(c, &x, &up, &r),
            Fate::Deferred { why } => {
                let slot = if !c.eff.replication.slots {
                    String::new()
                } else if c.slot_index.contains(&(up.clone(), x.clone())) {
                    let kept = diff::slot_retained(c.o, &up, &x)
                        .map(|b| format!("; it retains {}", ByteSize::human(b)))
                        .unwrap_or_default();
                    format!("; its slot on {up} is kept{kept}")
                } else {
                    format!("; its slot on {up} is made when it is back")
                };
                c.notes.push(format!(
                    "{x} is unreachable ({why}): nothing is done on it now; plan again when it is back{slot}"
                ));
            }
            _ => {}
        }
    }
}

/// Re-pointing a standby: the slot on the new upstream first, then primary_conninfo (reload on
/// PostgreSQL 13 and later, restart on 12); the old slot is dropped last by `slot_cleanup`.
pub fn repoint(c: &mut Ctx, x: &str, up: &str) {
    let ready = c.ready(up);
    let slot = create_slot(
        c,
        up,
        x,
        format!("slot {x}, before {x} follows {up}"),
        &ready,
    );
    let xo = observed(c.o, x);
    let apply = if !xo.running {
        ConfigApply::None
    } else if xo.version.unwrap_or(0) >= 130000 {
        ConfigApply::Reload
    } else {
        c.restarts.insert(x.into());
        ConfigApply::Restart
    };
    let mut deps = ready;
    deps.extend(slot);
    let cfg = configure(c, x, up, apply, &deps);
    if xo.running {
        c.streaming.insert(x.into(), cfg);
    } else {
        start_streaming(c, x, up, &[]);
    }
}

/// New standby: .pgpass, clone from its upstream (slot created by pg_basebackup), its identity,
/// start, wait until streaming; then its own settings.
pub fn new_standby(c: &mut Ctx, x: &str, up: &str, move_aside: bool, reason: &str) {
    let mut deps = c.ready(up);
    deps.extend(c.role_step);
    if move_aside {
        stop_if_running(
            c,
            x,
            &format!("its data directory is moved aside: {reason}"),
            &[],
        );
    }
    let ready = deps.clone();
    deps.extend(drop_lost_slot(c, x, up, &ready));
    pgpass(c, x);
    let slot = c.eff.replication.slots.then(|| x.to_string());
    let ci = c.dag.add(
        x,
        Action::Clone(CloneParams {
            source: up.into(),
            slot: slot.clone(),
            move_aside,
            reason: reason.into(),
        }),
        move_aside,
        if move_aside {
            format!("from {up} (the old data directory is moved aside): {reason}")
        } else {
            format!("pg_basebackup from {up}")
        },
        &deps,
    );
    if let Some(s) = slot {
        c.slots_made.insert((up.into(), s), ci);
    }
    configure(c, x, up, ConfigApply::None, &[]);
    start_streaming(c, x, up, &[]);
    own_settings_after_copy(c, x, up);
}

/// Rejoin a node that was primary or whose history diverged: follow, or pg_rewind (after a
/// checkpoint on the new primary), or a fresh clone with the old directory moved aside.
pub fn rejoin(c: &mut Ctx, x: &str, up: &str, r: &Rejoin) {
    let ready = c.ready(up);
    stop_if_running(c, x, &format!("{x} rejoins as a standby of {up}"), &ready);
    let was_primary = observed(c.o, x).role == Some(Role::Primary)
        || diff::observed_role(&observed(c.o, x)) == Some(Role::Primary);
    match r {
        Rejoin::Follow { .. } => {
            if was_primary {
                pgpass(c, x);
            }
            let slot = create_slot(c, up, x, format!("slot {x} for {x}"), &ready);
            let mut deps = ready.clone();
            deps.extend(slot);
            configure(c, x, up, ConfigApply::None, &deps);
            start_streaming(c, x, up, &[]);
        }
        Rejoin::Rewind { reason } => {
            if c.checkpoint.is_none() {
                let p = c.primary().to_string();
                let deps: Vec<Idx> = c.primary_ready.into_iter().collect();
                let ck = c.dag.add(
                    &p,
                    Action::Checkpoint(CheckpointParams {
                        reason: "pg_rewind reads the new timeline from the source's control file"
                            .into(),
                        timeout_ms: None,
                    }),
                    false,
                    "so pg_rewind sees the new timeline",
                    &deps,
                );
                c.checkpoint = Some(ck);
            }
            if was_primary {
                pgpass(c, x);
            }
            let mut deps = ready.clone();
            deps.extend(c.checkpoint);
            c.dag.add(
                x,
                Action::Rewind(RewindParams {
                    source: up.into(),
                    reason: reason.clone(),
                }),
                true,
                format!("from {up}: {reason}"),
                &deps,
            );
            let slot = create_slot(c, up, x, format!("slot {x} for {x}"), &ready);
            configure(
                c,
                x,
                up,
                ConfigApply::None,
                &slot.into_iter().collect::<Vec<_>>(),
            );
            start_streaming(c, x, up, &[]);
            own_settings_after_copy(c, x, up);
        }
        Rejoin::Clone { reason } => new_standby(c, x, up, true, reason),
    }
    // A node that is down (crashed, fenced) is only started, not restarted.
    if observed(c.o, x).running {
        c.restarts.insert(x.into());
    }
}

/// Synchronous standbys: synchronous_standby_names is set on the primary only after its members
/// stream to it.
pub fn synchronous_set(c: &mut Ctx) {
    let p = c.primary().to_string();
    let po = observed(c.o, &p);
    if !(po.reachable || c.primary_ready.is_some()) {
        return;
    }
    let want = c.eff.synchronous_standby_names();
    let have = if c.sync_cleared {
        String::new()
    } else {
        po.settings
            .get("synchronous_standby_names")
            .map(|s| s.value.clone())
            .unwrap_or_default()
    };
    if !diff::sync_differs(&want, &have) {
        return;
    }
    let mut deps: Vec<Idx> = c.primary_ready.into_iter().collect();
    if let Some(s) = &c.eff.replication.synchronous {
        for m in &s.standbys {
            deps.extend(c.streaming.get(m).copied());
        }
    }
    c.dag.add(
        &p,
        Action::AlterSystem(AlterSystemParams {
            set: [("synchronous_standby_names".to_string(), want.clone())].into(),
            reset: vec![],
        }),
        false,
        format!("synchronous_standby_names = '{want}' (after its members stream)"),
        &deps,
    );
    let r = c.dag.add(
        &p,
        Action::Reload(ReloadParams {
            reason: "synchronous_standby_names changed".into(),
        }),
        false,
        "synchronous_standby_names changed",
        &[],
    );
    c.sync_step = Some(r);
}

/// Retired node: out of the synchronous set first, then stopped; its data directory is kept.
pub fn retire(c: &mut Ctx) {
    let names: Vec<String> =
        c.a.fates
            .iter()
            .filter(|(_, f)| **f == Fate::Retire)
            .map(|(k, _)| k.clone())
            .collect();
    for x in names {
        let xo = observed(c.o, &x);
        if xo.running && !c.stopped.contains(&x) {
            let deps: Vec<Idx> = c.sync_step.into_iter().collect();
            let s = c.dag.add(
                &x,
                Action::Stop(StopParams {
                    mode: ShutdownMode::Fast,
                    writes_unavailable: false,
                    timeout_ms: None,
                    checkpointed: false,
                    candidate: None,
                }),
                false,
                "retired: stop it; its data directory is kept",
                &deps,
            );
            c.stopped.insert(x.clone());
            c.retire_stop.insert(x, s);
        }
    }
}

/// Slot lifecycle: slots that serve nobody any more are dropped last — after the standby that
/// used one streams elsewhere, after a retired node stopped. Slots of declared standbys that are
/// down are kept. Notes state the WAL retained or freed.
pub fn slot_cleanup(c: &mut Ctx) {
    for (holder, ho) in &c.o.nodes {
        let Some(hd) = c.eff.nodes.get(holder) else {
            continue;
        };
        if hd.role == DesiredRole::Absent || !ho.reachable {
            continue;
        }
        let fate = c.fate(holder);
        if matches!(fate, Fate::Deferred { .. }) || fate.replaces_data() {
            continue;
        }
        let infos: HashMap<&str, &crate::observe::ObservedSlot> = ho
            .replication_slots
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        for s in &ho.slots {
            let info = infos.get(s.as_str()).copied();
            let Some(reason) = diff::obsolete_slot_with(c.eff, c.o, holder, s, info) else {
                continue;
            };
            let mut deps: Vec<Idx> = Vec::new();
            deps.extend(c.streaming.get(s).copied());
            deps.extend(c.retire_stop.get(s).copied());
            deps.extend(c.sync_step);
            if holder != c.primary() {
                deps.extend(c.streaming.get(holder.as_str()).copied());
            }
            c.dag.add(
                holder,
                Action::DropSlot(SlotParams { slot: s.clone() }),
                false,
                format!("slot {s} ({reason})"),
                &deps,
            );
            match info.and_then(|i| i.wal_retained_bytes) {
                Some(b) => c.notes.push(format!(
                    "dropping slot {s} on {holder} frees {} of WAL",
                    ByteSize::human(b)
                )),
                None => c.notes.push(format!(
                    "dropping slot {s} on {holder} frees the WAL it retains"
                )),
            }
        }
    }
    let mut made: Vec<&(String, String)> = c.slots_made.keys().collect();
    made.sort();
    for (h, s) in made {
        c.notes.push(format!(
            "slot {s} on {h} retains WAL from its creation until {s} streams from it"
        ));
    }
}

#[cfg(test)]
mod tests {
    //! Each transform run alone (after the analysis, with no other transform before it).
    use super::*;
    use crate::config::{SyncMode, SyncSpec};
    use crate::observe::fixtures::*;
    use crate::observe::{ControlData, ObservedNode};
    use crate::plan::analysis::analyse;
    use crate::plan::PlanOptions;
    use crate::units::Lsn;

    /// Run `only` after the analysis; the steps as "kind node".
    fn alone(d: &Desired, o: &ObservedCluster, only: Transform) -> Vec<String> {
        let a = analyse(d, o, &PlanOptions::default()).expect("analysis");
        let mut c = Ctx::new(&a.eff, o, &a);
        only(&mut c);
        c.dag
            .finish()
            .iter()
            .map(|s| format!("{} {}", s.action.kind(), s.node))
            .collect()
    }

    fn stopped(o: &mut ObservedCluster, n: &str, state: &str) {
        let x = o.nodes.get_mut(n).unwrap();
        x.running = false;
        x.reachable = false;
        x.control = Some(ControlData {
            system_identifier: "7300000000000000001".into(),
            cluster_state: state.into(),
            latest_checkpoint: Lsn(0x3000028),
            latest_checkpoint_redo: Lsn(0x3000028),
            checkpoint_timeline: 1,
            min_recovery_end: Lsn(0),
            min_recovery_end_timeline: 0,
            wal_log_hints: true,
            data_checksums: false,
            wal_segment_size: 16 << 20,
        });
    }

    #[test]
    fn transforms_are_named_and_ordered() {
        let names: Vec<&str> = TRANSFORMS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names.first(), Some(&"hooks_before"));
        assert_eq!(names.last(), Some(&"hooks_after"));
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("settings_rolling") < pos("promotion"));
        assert!(pos("promotion") < pos("standbys"));
        assert!(pos("standbys") < pos("synchronous_set"));
        assert!(pos("synchronous_set") < pos("retire"));
        assert!(pos("standbys") < pos("logical_slots"));
    }

    #[test]
    fn start_stopped_primary_alone() {
        let d = desired3();
        let mut o = healthy(&d);
        stopped(&mut o, "n1", "shut down");
        assert_eq!(alone(&d, &o, start_stopped_primary), vec!["start n1"]);
        assert!(alone(&d, &healthy(&d), start_stopped_primary).is_empty());
    }

    #[test]
    fn hba_managed_block_alone() {
        let mut d = desired3();
        d.hba.push(crate::config::HbaRule {
            kind: "host".into(),
            database: "all".into(),
            user: "app".into(),
            address: Some("10.0.0.0/8".into()),
            method: "scram-sha-256".into(),
            allow_trust: false,
        });
        let o = healthy(&desired3());
        assert_eq!(
            alone(&d, &o, hba_managed_block),
            vec![
                "write_hba n1",
                "reload n1",
                "write_hba n2",
                "reload n2",
                "write_hba n3",
                "reload n3"
            ]
        );
    }

    #[test]
    fn settings_rolling_alone() {
        let mut d = desired3();
        for n in d.nodes.values_mut() {
            n.settings.insert("max_wal_senders".into(), "20".into());
        }
        let o = healthy(&desired3());
        assert_eq!(
            alone(&d, &o, settings_rolling),
            vec![
                "alter_system n2",
                "restart n2",
                "alter_system n3",
                "restart n3",
                "alter_system n1",
                "restart n1"
            ]
        );
    }

    #[test]
    fn promotion_alone() {
        let mut d = desired3();
        set_primary(&mut d, "n2");
        let o = healthy(&desired3());
        assert_eq!(
            alone(&d, &o, promotion),
            vec![
                "create_slot n2",
                "create_slot n2",
                "catch_up n2",
                "stop n1",
                "wait_replay n2",
                "promote n2"
            ]
        );
    }

    #[test]
    fn replication_role_alone() {
        let d = desired3();
        let mut o = healthy(&d);
        *o.nodes.get_mut("n3").unwrap() = ObservedNode {
            host_reachable: true,
            ..Default::default()
        };
        assert_eq!(alone(&d, &o, replication_role), vec!["create_role n1"]);
        assert!(alone(&d, &healthy(&d), replication_role).is_empty());
    }

    #[test]
    fn standbys_alone_walks_upstream_first() {
        let mut d = desired3();
        d.nodes.get_mut("n3").unwrap().role = DesiredRole::Standby {
            upstream: "n2".into(),
        };
        let mut o = healthy(&desired3());
        for n in ["n2", "n3"] {
            *o.nodes.get_mut(n).unwrap() = ObservedNode {
                host_reachable: true,
                ..Default::default()
            };
        }
        let steps = alone(&d, &o, standbys);
        let clone2 = steps.iter().position(|s| s == "clone n2").unwrap();
        let start2 = steps.iter().position(|s| s == "start n2").unwrap();
        let clone3 = steps.iter().position(|s| s == "clone n3").unwrap();
        assert!(clone2 < start2 && start2 < clone3);
    }

    #[test]
    fn synchronous_set_alone() {
        let mut d = desired3();
        d.replication.synchronous = Some(SyncSpec {
            mode: SyncMode::Priority,
            count: 1,
            standbys: vec!["n2".into()],
        });
        let o = healthy(&desired3());
        assert_eq!(
            alone(&d, &o, synchronous_set),
            vec!["alter_system n1", "reload n1"]
        );
    }

    #[test]
    fn retire_alone() {
        let mut d = desired3();
        let o = healthy(&d);
        d.nodes.get_mut("n3").unwrap().role = DesiredRole::Absent;
        assert_eq!(alone(&d, &o, retire), vec!["stop n3"]);
    }

    #[test]
    fn slot_cleanup_alone_keeps_slots_of_down_standbys() {
        let d = desired3();
        let mut o = healthy(&d);
        let n1 = o.nodes.get_mut("n1").unwrap();
        n1.slots.push("gone".into());
        let n3 = o.nodes.get_mut("n3").unwrap();
        n3.running = false;
        n3.reachable = false;
        n3.host_reachable = false;
        assert_eq!(alone(&d, &o, slot_cleanup), vec!["drop_slot n1"]);
    }
}
