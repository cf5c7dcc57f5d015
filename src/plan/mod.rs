//! Changes → a DAG of steps, assembled by named ordering transforms (one per rule of SPEC §4).
//! Pure and synchronous: no IO, no printing, no clock.
//!
//! The pipeline of [`build`]:
//! 1. `--assume-down` marks nodes unreachable in (a copy of) the observed state;
//! 2. [`analysis::analyse`] decides the promotion (switchover, finishing one, failover) and every
//!    node's fate, and refuses what a safety rule forbids ([`PlanError`]);
//! 3. the [`transform::TRANSFORMS`] add steps to a petgraph DAG, each one rule;
//! 4. the DAG becomes `Plan::steps` (ids = topological order, `after` = direct dependencies),
//!    with the changes of [`crate::diff::diff`] reconciled with the addresses the steps serve
//!    ([`serves`]), the file diffs, the fingerprint and the risk
//!    summary.
//!
//! Architecture invariant: the planner never reads a clock, a file or the network; the same
//! (desired, observed, options) always gives the same plan, byte for byte.

pub mod analysis;
pub mod candidate;
pub mod coverage;
pub mod error;
pub mod fingerprint;
pub mod graph;
pub mod model;
pub mod picture;
pub mod prepared;
pub mod replay;
pub mod serves;
pub mod transform;
pub mod upgrade;
pub mod wire;

pub use error::PlanError;
pub use fingerprint::fingerprint;
pub use model::*;
pub use replay::{replay, replay_steps, ReplayError};
pub use wire::PLAN_FORMAT_VERSION;

use crate::config::{Desired, DesiredRole};
use crate::diff;
use crate::observe::ObservedCluster;
use crate::units::ByteSize;

use analysis::{Fate, PromotionKind, Rejoin};

/// What the operator allows and assumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Consent to promote while the current primary is down (`--allow-failover`).
    pub allow_failover: bool,
    /// Plan as if these nodes were unreachable (`--assume-down`).
    pub assume_down: Vec<String>,
    /// Consent to a failover that loses WAL acknowledged as synchronous (`--accept-data-loss`).
    pub accept_data_loss: bool,
}

/// The observed state with the `--assume-down` nodes unreachable (their last known LSNs kept).
pub fn assume_down(
    d: &Desired,
    o: &ObservedCluster,
    names: &[String],
) -> Result<ObservedCluster, PlanError> {
    let mut o = o.clone();
    for n in names {
        if !d.nodes.contains_key(n) {
            return Err(PlanError::UnknownNode { node: n.clone() });
        }
        let x = o.nodes.entry(n.clone()).or_default();
        x.reachable = false;
        x.host_reachable = false;
        x.running = false;
        x.streaming = false;
        x.unreachable_reason = Some("assumed down (--assume-down)".into());
        // The node's standbys no longer receive anything from it.
        let name = n.clone();
        for other in o.nodes.values_mut() {
            if other.upstream.as_deref() == Some(&name) {
                other.streaming = false;
            }
        }
    }
    Ok(o)
}

/// Every `stop` and `restart` says the command that stops its node, from the one function that
/// builds it ([`crate::config::service::command`]), which the step runs too: what the reviewer
/// reads is what runs (SPEC §1d).
fn name_stop_commands(d: &Desired, steps: &mut [Step]) {
    use crate::config::service::{command, display, Control};
    for s in steps {
        let mode = match &s.action {
            Action::Stop(p) => p.mode,
            Action::Restart(p) => p.mode,
            _ => continue,
        };
        if let Some(n) = d.nodes.get(&s.node) {
            let cmd = display(&command(n, Control::Stop(mode.stop_mode())));
            s.description = format!("{}; stopped by `{cmd}`", s.description);
        }
    }
}

/// Plan: the changes between `d` and `o`, and the steps that make them.
pub fn build(d: &Desired, o: &ObservedCluster, opts: &PlanOptions) -> Result<Plan, PlanError> {
    build_served(d, o, opts).map(|(plan, _)| plan)
}

/// [`build`], with the addresses each step serves (indexed like `steps`, [`serves`]).
pub fn build_served(
    d: &Desired,
    o: &ObservedCluster,
    opts: &PlanOptions,
) -> Result<(Plan, Vec<Vec<diff::address::Address>>), PlanError> {
    let o: std::borrow::Cow<ObservedCluster> = if opts.assume_down.is_empty() {
        std::borrow::Cow::Borrowed(o)
    } else {
        std::borrow::Cow::Owned(assume_down(d, o, &opts.assume_down)?)
    };
    let o = o.as_ref();
    let upgrade = upgrade::detect(d, o)?;
    let a = match &upgrade {
        Some(u) => upgrade::analysis(d, u),
        None => analysis::analyse(d, o, opts)?,
    };
    if let Some(e) = transform::logical::refusal(&a.eff, o, &a) {
        return Err(e);
    }
    if let Some(e) = transform::archive::refusal(&a.eff, o) {
        return Err(e);
    }
    let mut ctx = transform::Ctx::new(&a.eff, o, &a);
    match &upgrade {
        Some(u) => upgrade::steps(&mut ctx, u),
        None => transform::run(&mut ctx),
    }
    let restarts: Vec<String> = ctx.drawn.restarts.iter().cloned().collect();
    let mut window = window(&ctx);
    let mut notes = a.notes.clone();
    notes.append(&mut ctx.notes);
    let prepared = prepared::switchover_warning(a.promotion.as_ref(), o);
    if let Some((note, _)) = &prepared {
        notes.insert(0, note.clone());
    }
    let mut changes = changes(&a, o);
    let served = ctx.dag.served();
    let mut steps = ctx.dag.finish();
    name_stop_commands(&a.eff, &mut steps);
    let mut file_diffs = file_diffs(&a.eff, o, &steps);
    file_diffs.extend(pgpass_diffs(&a.eff, &steps));
    if let Some(u) = &upgrade {
        changes.extend(upgrade::changes(d, u));
        if let Some(w) = window.as_mut() {
            w.estimated_ms = upgrade::estimated_ms(u);
        }
    }
    let mut summary = summary(&a, o, &changes, &steps, restarts, window, notes);
    if let Some(u) = &upgrade {
        summary.data_loss = upgrade::data_loss(u);
    }
    summary.cannot_fix = cannot_fix(d, o, &a, &steps, &opts.assume_down);
    summary.prepared_transactions = prepared.map(|(_, x)| x).unwrap_or_default();
    let topology = picture::picture(&a.eff, o, &changes, &steps);
    let plan = Plan {
        pgtopo_version: env!("CARGO_PKG_VERSION").to_string(),
        cluster: d.cluster.clone(),
        topology_sha256: d.sha256.clone(),
        fingerprint: fingerprint(d, o),
        pooler_fingerprint: fingerprint::poolers(o),
        changes,
        steps,
        topology: Some(topology),
        file_diffs,
        summary,
    };
    Ok((plan, served))
}

/// The drift of the declared topology that `steps` leave unfixed. Findings that concern a node
/// a what-if assumes down are left aside: they are hypothetical.
fn cannot_fix(
    d: &Desired,
    o: &ObservedCluster,
    a: &analysis::Analysis,
    steps: &[Step],
    assumed: &[String],
) -> Vec<CannotFix> {
    let report = diff::drift::drift(d, o);
    let deferred = |n: &str| match a.fates.get(n) {
        Some(Fate::Deferred { why }) => Some(why.clone()),
        _ => None,
    };
    coverage::cannot_fix(&report, d, steps, &deferred)
        .into_iter()
        .filter(|c| !assumed.iter().any(|n| c.concerns.contains(n)))
        .collect()
}

/// The rate a standby is assumed to replay WAL at, for the estimate of a promotion's window:
/// conservative for a loaded replica (an idle one replays several times faster).
const REPLAY_BYTES_PER_S: u64 = 64 << 20;

/// The estimate of a promotion's writes-unavailable window: a base per kind, plus the time to
/// replay what the candidate had not replayed when observed, plus the cancel grace when its
/// replay waited on a conflict (a session may block it again after the proof).
fn promotion_estimate_ms(p: &analysis::Promotion) -> u64 {
    let base = match p.kind {
        PromotionKind::Switchover => 2_000,
        PromotionKind::FinishSwitchover { .. } => 1_000,
        PromotionKind::Failover { .. } => 3_000,
    };
    let replay = p.replay_lag.saturating_mul(1000) / REPLAY_BYTES_PER_S;
    let conflict = if p.conflict.is_some() {
        transform::CANCEL_GRACE_MS
    } else {
        0
    };
    base + replay + conflict
}

fn window(c: &transform::Ctx) -> Option<WriteWindow> {
    let id = |i: graph::Idx| i.index() as StepId + 1;
    if let (Some(a), Some(b)) = (c.anchors.writes_down, c.anchors.writes_up) {
        let est = c.a.promotion.as_ref().map_or(3_000, promotion_estimate_ms);
        return Some(WriteWindow {
            from_step: id(a),
            to_step: id(b),
            estimated_ms: est,
        });
    }
    c.anchors.primary_restart.map(|r| WriteWindow {
        from_step: id(r),
        to_step: id(r),
        estimated_ms: 3_000,
    })
}

/// Whether the change at `addr` is not one of its own in this plan: about a node the plan leaves
/// alone for now (deferred; drift lists it under "Cannot fix" and the notes say why), a setting
/// of a node whose data directory is replaced (the copy brings its source's; what differs from
/// them is set after the copy, as part of the node's change), a pg_hba block the plan does not
/// write ([`analysis::hba_needs_write`]), a slot "missing" on a stopped node that is only
/// started, for a standby that keeps following it (its slots were not seen; a plan after the
/// start makes any that are missing).
/// No step makes such a change, so it is not in the change list.
fn not_its_own(a: &analysis::Analysis, o: &ObservedCluster, c: &Change) -> bool {
    use diff::address::Address;
    let (addr, removed) = (&c.address, c.action == ChangeAction::Remove);
    let deferred = |n: &str| matches!(a.fates.get(n), Some(Fate::Deferred { .. }));
    let copied = |n: &str| a.fates.get(n).is_some_and(Fate::replaces_data);
    // A stopped node that is only started keeps the slots on its disk, unseen while it is down.
    let unmoved = |n: &str| matches!(a.fates.get(n), Some(Fate::Keep | Fate::Start));
    let started_unseen = |n: &str| {
        matches!(a.fates.get(n), Some(Fate::StartPrimary | Fate::Start))
            && !diff::observed(o, n).reachable
    };
    match addr {
        // A copy of the holder's data directory removes its slots, a deferred node's too.
        Address::Slot { holder, slot } => {
            deferred(holder)
                || (deferred(slot) && !(removed && copied(holder)))
                || (c.action == ChangeAction::Add && started_unseen(holder) && unmoved(slot))
        }
        Address::Setting { node, .. } => deferred(node) || copied(node),
        // The one judge of the `write_hba` step.
        Address::Hba(node) => a
            .fates
            .get(node)
            .is_some_and(|f| !analysis::hba_needs_write(&a.eff, &diff::observed(o, node), f)),
        other => other.node().is_some_and(deferred),
    }
}

/// A node the plan promotes or whose data directory it replaces has a change that says so,
/// though the diff of the cluster as observed found nothing (a standby that streams well from a
/// node that is cloned again itself, a candidate the observation already saw in place); its
/// reason is the fate's, set by [`changes`]. `(name, before, after)` is its attribute.
fn node_change_of_fate(changes: &mut Vec<Change>, name: &str, attr: (&str, &str, &str)) {
    use diff::address::Address;
    let addr = Address::Node(name.to_string());
    if changes.iter().any(|c| c.address == addr) {
        return;
    }
    let at = changes
        .iter()
        .position(|c| !matches!(&c.address, Address::Node(n) if n.as_str() < name))
        .unwrap_or(changes.len());
    changes.insert(
        at,
        Change {
            address: addr,
            action: ChangeAction::Change,
            attributes: vec![AttributeChange {
                name: attr.0.into(),
                before: Some(attr.1.into()),
                after: Some(attr.2.into()),
            }],
            reason: String::new(),
        },
    );
}

/// The diff, with reasons that say what the plan does about each node.
fn changes(a: &analysis::Analysis, o: &ObservedCluster) -> Vec<Change> {
    let mut changes = diff::diff(&a.eff, o);
    changes.retain(|c| !not_its_own(a, o, c));
    for (name, fate) in &a.fates {
        let after = match fate {
            Fate::Rejoin(Rejoin::Rewind { .. }) => ("data_directory", "diverged", "rewound"),
            f if f.replaces_data() => ("data_directory", "diverged", "cloned again"),
            Fate::Promote => ("role", "standby", "primary"),
            _ => continue,
        };
        node_change_of_fate(&mut changes, name, after);
    }
    for c in &mut changes {
        let diff::address::Address::Node(name) = &c.address else {
            continue;
        };
        let up = match a.eff.nodes.get(name).map(|n| &n.role) {
            Some(DesiredRole::Standby { upstream }) => upstream.clone(),
            _ => String::new(),
        };
        match a.fates.get(name) {
            Some(Fate::Promote) => {
                if let Some(p) = &a.promotion {
                    c.reason = p.change_reason();
                }
            }
            Some(Fate::Rejoin(r)) => {
                c.reason = match r {
                    Rejoin::Follow { .. } => format!("will follow {up}"),
                    Rejoin::Rewind { reason } => {
                        format!("will follow {up} after pg_rewind: {reason}")
                    }
                    Rejoin::Clone { reason } => {
                        format!("will follow {up} after a fresh clone: {reason}")
                    }
                };
            }
            Some(Fate::New {
                move_aside: true,
                reason,
            }) => c.reason = format!("will be cloned again from {up}: {reason}"),
            _ => {}
        }
    }
    changes
}

/// The files the plan changes, per declared node, drawn from its steps: the pg_hba managed block
/// a `write_hba` step writes, then the settings its `alter_system` steps set; so every file the
/// plan changes is shown and nothing else is.
fn file_diffs(d: &Desired, o: &ObservedCluster, steps: &[Step]) -> Vec<FileDiff> {
    let mut out = Vec::new();
    for n in d.present() {
        let obs = diff::observed(o, &n.name);
        out.extend(hba_diff(n, &obs, steps));
        out.extend(settings_diff(n, &obs, steps));
    }
    out
}

/// The managed block the node's (last) `write_hba` step writes, against the one it has now.
fn hba_diff(
    n: &crate::config::DesiredNode,
    obs: &crate::observe::ObservedNode,
    steps: &[Step],
) -> Option<FileDiff> {
    let block = steps.iter().rev().find_map(|s| match &s.action {
        Action::WriteHba(p) if s.node == n.name => Some(&p.managed_block),
        _ => None,
    })?;
    Some(FileDiff {
        node: n.name.clone(),
        path: obs
            .hba
            .as_ref()
            .map(|h| h.path.clone())
            .unwrap_or_else(|| format!("{}/pg_hba.conf", n.data_dir.display())),
        first_line: obs.hba.as_ref().and_then(|h| h.block_line),
        before: diff::hba::seen(obs)
            .map(crate::observe::managed_text)
            .unwrap_or_default(),
        after: crate::observe::managed_text(block),
    })
}

/// What the node's `alter_system` steps leave set (a later step's value over an earlier one's),
/// against the values the server runs with now (which may come from postgresql.conf or a
/// default).
fn settings_diff(
    n: &crate::config::DesiredNode,
    obs: &crate::observe::ObservedNode,
    steps: &[Step],
) -> Option<FileDiff> {
    let mut set: std::collections::BTreeMap<&str, &str> = Default::default();
    for s in steps.iter().filter(|s| s.node == n.name) {
        if let Action::AlterSystem(p) = &s.action {
            set.extend(p.set.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
    }
    if set.is_empty() {
        return None;
    }
    let line = |k: &str, v: &str| format!("{k} = '{}'\n", v.replace('\'', "''"));
    let before: String = set
        .keys()
        .filter_map(|k| obs.settings.get(*k).map(|s| line(k, &s.value)))
        .collect();
    let after: String = set.iter().map(|(k, v)| line(k, v)).collect();
    Some(FileDiff {
        node: n.name.clone(),
        // Not the whole file: the settings ALTER SYSTEM changes, with the values the server runs
        // with now.
        path: format!(
            "{}/postgresql.auto.conf [ALTER SYSTEM: changed settings, running values]",
            n.data_dir.display()
        ),
        first_line: None,
        before,
        after,
    })
}

/// The .pgpass lines a write_pgpass step keeps, the password shown only as where it comes from.
fn pgpass_diffs(d: &Desired, steps: &[Step]) -> Vec<FileDiff> {
    let source = match &d.replication.password {
        Some(crate::config::SecretRef::Env { env }) => format!("<from ${env}>"),
        Some(crate::config::SecretRef::File { file }) => format!("<from {}>", file.display()),
        None => return Vec::new(),
    };
    steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::WritePgpass(p) => {
                let os_user = d
                    .nodes
                    .get(&s.node)
                    .map(|n| n.os_user.as_str())
                    .unwrap_or("postgres");
                let after: String = p
                    .entries
                    .iter()
                    .map(|e| format!("{}:{}:*:{}:{source}\n", e.host, e.port, e.user))
                    .collect();
                Some(FileDiff {
                    node: s.node.clone(),
                    path: format!("~{os_user}/.pgpass"),
                    first_line: None,
                    before: String::new(),
                    after,
                })
            }
            _ => None,
        })
        .collect()
}

/// What a plan may lose: nothing in a switchover (the candidate replays the old primary's
/// shutdown checkpoint first); in a failover, what the candidate lacks; without a promotion,
/// what a second primary that rejoins accepted on its own.
fn data_loss(a: &analysis::Analysis, o: &ObservedCluster) -> DataLoss {
    let Some(p) = &a.promotion else {
        return rejoin_loss(a, o);
    };
    let old = p.old.clone().unwrap_or_else(|| "the old primary".into());
    match &p.kind {
        PromotionKind::Switchover => DataLoss::None {
            reason: format!(
                "{} must replay {old}'s shutdown checkpoint before it is promoted",
                p.candidate
            ),
        },
        PromotionKind::FinishSwitchover { checkpoint } => DataLoss::None {
            reason: format!(
                "{old} was shut down cleanly at {checkpoint} and {} has replayed it",
                p.candidate
            ),
        },
        PromotionKind::Failover {
            exposure,
            last_known,
            ..
        } => DataLoss::Possible {
            bytes: *exposure,
            reason: failover_loss(p, &old, o, *exposure, *last_known),
        },
    }
}

/// Why a failover may lose WAL: how far the candidate received against where the old primary
/// was last seen (or its control data, or nothing known).
fn failover_loss(
    p: &analysis::Promotion,
    old: &str,
    o: &ObservedCluster,
    exposure: Option<u64>,
    last_known: Option<crate::units::Lsn>,
) -> String {
    let got = diff::received(&diff::observed(o, &p.candidate)).unwrap_or_default();
    match (exposure, last_known) {
        (Some(b), Some(l)) => format!(
            "{} received up to {got}; {old} was last seen at {l} ({} behind)",
            p.candidate,
            ByteSize::human(b)
        ),
        _ => match diff::observed(o, old).control.as_ref() {
            Some(c) => format!(
                "{} received up to {got}; {old} did not shut down cleanly (cluster state \"{}\", latest checkpoint {}), so how much it wrote past that is unknown: whatever it acknowledged beyond {got} is lost",
                p.candidate, c.cluster_state, c.latest_checkpoint
            ),
            None => format!(
                "{old}'s last WAL location is unknown; {} received up to {got}: whatever {old} acknowledged beyond that is lost",
                p.candidate
            ),
        },
    }
}

/// Without a promotion: a second primary that rejoins loses what it accepted on its own
/// timeline.
fn rejoin_loss(a: &analysis::Analysis, o: &ObservedCluster) -> DataLoss {
    let rogue: Vec<&str> = a
        .fates
        .iter()
        .filter(|(n, f)| {
            let x = diff::observed(o, n);
            f.replaces_data() && x.running && x.role == Some(crate::observe::Role::Primary)
        })
        .map(|(n, _)| n.as_str())
        .collect();
    if rogue.is_empty() {
        return DataLoss::None {
            reason: "no promotion".into(),
        };
    }
    DataLoss::Possible {
        bytes: None,
        reason: format!(
            "{} runs as a second primary: writes it accepted after the fork are discarded when it rejoins",
            rogue.join(", ")
        ),
    }
}

fn summary(
    a: &analysis::Analysis,
    o: &ObservedCluster,
    changes: &[Change],
    steps: &[Step],
    restarts: Vec<String>,
    write_unavailable: Option<WriteWindow>,
    mut notes: Vec<String>,
) -> Summary {
    let count = |k: ChangeAction| changes.iter().filter(|c| c.action == k).count() as u32;
    let data_loss = data_loss(a, o);
    notes.extend(crate::diff::versions::untested_notes(o));
    for (n, f) in &a.fates {
        if let Fate::Rejoin(Rejoin::Rewind { .. }) = f {
            notes.push(format!(
                "pg_rewind discards {n}'s WAL past the fork point: those writes never reached the new primary"
            ));
        }
        if let Fate::Rejoin(Rejoin::Clone { .. })
        | Fate::New {
            move_aside: true, ..
        } = f
        {
            notes.push(format!(
                "{n}'s old data directory is moved aside to <data_dir>.pgtopo-old-<UTC timestamp>, not deleted"
            ));
        }
    }
    Summary {
        add: count(ChangeAction::Add),
        change: count(ChangeAction::Change),
        remove: count(ChangeAction::Remove),
        steps: steps.len() as u32,
        restarts,
        write_unavailable,
        data_loss,
        notes,
        cannot_fix: Vec::new(),
        prepared_transactions: Vec::new(),
    }
}

#[cfg(test)]
mod tests;
