//! Property tests of the planner over generated (desired, observed) pairs: the observed cluster
//! is a healthy cluster of another random topology over the same nodes, then perturbed (nodes
//! stopped cleanly or crashed, unreachable, emptied, settings and slots changed by hand).
//!
//! Whenever a plan is made: the DAG is acyclic with topological ids, at most one node is
//! promoted, a promotion waits for the stop or fence of every running primary (and, in a planned
//! switchover, for the wait_replay), a retired node gets no step but its stop, no rendering holds
//! a secret, and the replay oracle holds ([`converges`]): the plan's own steps replayed on the
//! observed state (`pgtopo::plan::replay`) leave a cluster where a second plan has nothing to do
//! (an error there fails the test) and drift finds only what the plan lists under "Cannot fix".
//! What the first plan could not see — the settings and slots of a node that answered no SQL,
//! and what depends on them — a second plan may still act on.
//!
//! [`removing_a_step_is_detected`] proves the oracle can fail. `PGTOPO_PROPTEST_CASES` sets the
//! number of cases (default 1,000, CI; 10,000 locally).

use pgtopo::config::{Desired, DesiredRole, SecretRef, SyncMode, SyncSpec};
use pgtopo::diff::drift::DriftKind;
use pgtopo::observe::fixtures::{desired_from, healthy, node, setting};
use pgtopo::observe::{ControlData, ObservedCluster, ObservedNode, ObservedSlot, Role};
use pgtopo::plan::{build, Action, Plan, PlanOptions};
use pgtopo::units::Lsn;
use proptest::prelude::*;

mod common;

/// Choices drawn from a byte string (proptest shrinks it toward zeros: simpler scenarios).
struct Dice<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Dice<'_> {
    fn next(&mut self, n: usize) -> usize {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b as usize % n.max(1)
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.next(one_in) == one_in - 1
    }
}

/// A random valid topology over n1..nN.
fn topology(n: usize, dice: &mut Dice, allow_retire: bool) -> Desired {
    let primary = dice.next(n);
    let mut order: Vec<usize> = vec![primary];
    order.extend((0..n).filter(|i| *i != primary));
    let mut nodes = Vec::new();
    let mut present: Vec<String> = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        let name = format!("n{}", i + 1);
        let role = if k == 0 {
            DesiredRole::Primary
        } else if allow_retire && dice.chance(6) {
            DesiredRole::Absent
        } else {
            let up = if dice.chance(4) {
                present[dice.next(present.len())].clone()
            } else {
                present[0].clone()
            };
            DesiredRole::Standby { upstream: up }
        };
        if role != DesiredRole::Absent {
            present.push(name.clone());
        }
        nodes.push(node(&name, i, role));
    }
    let mut d = desired_from(nodes);
    d.replication.password = Some(SecretRef::Env {
        env: "PGTOPO_PROPTEST_SECRET".into(),
    });
    let standbys: Vec<String> = present[1..].to_vec();
    if !standbys.is_empty() && dice.chance(3) {
        d.replication.synchronous = Some(SyncSpec {
            mode: if dice.chance(2) {
                SyncMode::Quorum
            } else {
                SyncMode::Priority
            },
            count: 1,
            standbys,
        });
    }
    if dice.chance(3) {
        let v = ["200", "50", "100"][dice.next(3)];
        for nd in d.nodes.values_mut() {
            nd.settings.insert("max_connections".into(), v.into());
        }
    }
    if dice.chance(3) {
        for nd in d.nodes.values_mut() {
            nd.settings.insert("work_mem".into(), "8MB".into());
        }
    }
    if dice.chance(4) {
        let name = present[dice.next(present.len())].clone();
        d.nodes
            .get_mut(&name)
            .unwrap()
            .settings
            .insert("hot_standby_feedback".into(), "on".into());
    }
    d
}

fn control(state: &str, at: u64, hints: bool) -> ControlData {
    ControlData {
        system_identifier: "7300000000000000001".into(),
        cluster_state: state.into(),
        latest_checkpoint: Lsn(at),
        latest_checkpoint_redo: Lsn(at),
        checkpoint_timeline: 1,
        min_recovery_end: Lsn(0),
        min_recovery_end_timeline: 0,
        wal_log_hints: hints,
        data_checksums: false,
        wal_segment_size: 16 << 20,
    }
}

fn scenario(n: usize, bytes: &[u8]) -> (Desired, ObservedCluster, PlanOptions) {
    let mut dice = Dice { bytes, at: 0 };
    let d = topology(n, &mut dice, true);
    let before = topology(n, &mut dice, false);
    let mut o = healthy(&before);
    let names: Vec<String> = o.nodes.keys().cloned().collect();
    for name in &names {
        let x = o.nodes.get_mut(name).unwrap();
        match dice.next(18) {
            0 => {
                // Stopped cleanly.
                let primary = x.role == Some(Role::Primary);
                x.running = false;
                x.reachable = false;
                x.streaming = false;
                x.control = Some(control(
                    if primary {
                        "shut down"
                    } else {
                        "shut down in recovery"
                    },
                    0x3000028,
                    dice.chance(2),
                ));
            }
            1 => {
                // Crashed.
                x.running = false;
                x.reachable = false;
                x.streaming = false;
                let state = if x.role == Some(Role::Primary) {
                    "in production"
                } else {
                    "in archive recovery"
                };
                x.control = Some(control(state, 0x3000028, dice.chance(2)));
                x.lsn = Some(Lsn(0x3000100));
            }
            2 => {
                // Unreachable host.
                x.running = false;
                x.reachable = false;
                x.host_reachable = false;
                x.streaming = false;
            }
            3 if x.role == Some(Role::Standby) => {
                *x = ObservedNode {
                    host_reachable: true,
                    ..Default::default()
                };
            }
            4 if x.reachable => {
                x.slots.push("orphan".into());
                x.replication_slots.push(ObservedSlot {
                    name: "orphan".into(),
                    slot_type: "physical".into(),
                    active: false,
                    restart_lsn: None,
                    wal_retained_bytes: Some(1 << 20),
                    wal_status: None,
                    safe_wal_size: None,
                    logical: None,
                });
            }
            5 => {
                // Another minor release (the replay model has no binaries: a standby of
                // another major cannot replay its primary's WAL, and no step changes majors).
                x.version = Some(150010);
            }
            6 => {
                x.settings
                    .insert("max_connections".into(), setting("150", "postmaster"));
            }
            12 if x.role == Some(Role::Standby) && x.running => {
                // A second writer on the primary's timeline.
                x.role = Some(Role::Primary);
                x.upstream = None;
                x.streaming = false;
                x.standby_signal = false;
                x.lsn = Some(Lsn(0x3000400));
            }
            13 if x.role == Some(Role::Standby) && x.running => {
                x.wal_match = Some(pgtopo::observe::WalMatch {
                    at: Lsn(0x3000060),
                    upstream_end: Lsn(0x3000060),
                    bytes: 256,
                    matches: Some(false),
                });
            }
            14 => {
                // Another system's data directory: nothing streams between the two systems.
                x.system_identifier = Some("7399999999999999999".into());
                x.streaming = false;
            }
            15 if x.reachable => {
                for s in &mut x.replication_slots {
                    s.wal_status = Some("lost".into());
                }
            }
            16 if x.role == Some(Role::Standby) && x.running => {
                x.streaming = false;
                x.replay_stall = Some(pgtopo::observe::ReplayStall {
                    replay: Lsn(0x3000000),
                    received: Lsn(0x3000060),
                    wait_event: "RecoveryWalStream".into(),
                });
            }
            17 if x.reachable => {
                // The managed block of pg_hba.conf edited by hand.
                if let Some(h) = &mut x.hba {
                    h.managed_block = Some(vec!["host all all 0.0.0.0/0 trust".into()]);
                }
            }
            7 if x.receive_lsn.is_some() => {
                let lag = [0u64, 1 << 20, 64 << 20][dice.next(3)];
                x.receive_lsn = Some(Lsn(0x3000060 - lag.min(0x3000000)));
                x.replay_lsn = x.receive_lsn;
            }
            _ => {}
        }
    }
    // A standby streams only from a running upstream of its own system; what it compared its
    // WAL with is gone when its upstream has no data any more.
    let snapshot = o.clone();
    for x in o.nodes.values_mut() {
        let Some(u) = x.upstream.as_ref().and_then(|u| snapshot.nodes.get(u)) else {
            continue;
        };
        if !u.running || u.system_identifier != x.system_identifier {
            x.streaming = false;
        }
        // A standby has only WAL its upstream sent: a crashed one is not past its upstream's end
        // (an upstream whose data is gone had only what a primary sent it).
        let up_end = pgtopo::diff::wal_end(u).or_else(|| {
            snapshot
                .nodes
                .values()
                .filter(|p| p.role == Some(Role::Primary))
                .filter_map(pgtopo::diff::wal_end)
                .max()
        });
        if !x.running && x.role == Some(Role::Standby) && up_end.is_some() && x.lsn > up_end {
            x.lsn = up_end;
        }
        if !u.data_dir.exists || u.data_dir.empty {
            x.wal_match = None;
            x.replay_stall = None;
        }
    }
    let mut opts = PlanOptions {
        allow_failover: dice.chance(2),
        assume_down: vec![],
        accept_data_loss: false,
    };
    if dice.chance(8) {
        opts.assume_down.push(names[dice.next(names.len())].clone());
    }
    (d, o, opts)
}

/// The parts of the state a failure message needs.
fn brief(o: &ObservedCluster) -> String {
    serde_json::to_string(
        &o.nodes
            .iter()
            .map(|(k, x)| {
                (
                    k.clone(),
                    x.role,
                    x.upstream.clone(),
                    x.running,
                    x.reachable,
                    x.streaming,
                    x.timeline,
                    x.version,
                    x.settings.get("max_connections").map(|s| s.value.clone()),
                )
            })
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

/// The replay oracle: `steps` (a plan's, or one with a step removed) replayed on the observed
/// state, then a second plan must have nothing to do (and not fail), and drift of the result is
/// only what the plan lists under "Cannot fix".
fn converges(
    d: &Desired,
    o: &ObservedCluster,
    opts: &PlanOptions,
    p: &Plan,
    steps: &[pgtopo::plan::Step],
) -> Result<(), String> {
    let observed_after_assume = pgtopo::plan::assume_down(d, o, &opts.assume_down).unwrap();
    let end = pgtopo::plan::replay_steps(d, &observed_after_assume, steps)
        .map_err(|e| format!("replay: {e}"))?;
    let again_opts = PlanOptions {
        allow_failover: true,
        assume_down: vec![],
        accept_data_loss: false,
    };
    let again = build(d, &end, &again_opts).map_err(|e| format!("replan failed: {e}"))?;
    // What the first plan could not see (the settings and slots of a node that answered no
    // SQL) a second plan may still act on; everything else it must have done.
    // (A clone copies its source's postgresql.auto.conf: a node cloned from an unseen source has
    // unseen settings too.)
    let dark = |n: &str| !pgtopo::diff::observed(&observed_after_assume, n).reachable;
    let unseen = |n: &str| {
        dark(n)
            || steps
                .iter()
                .any(|s| s.node == n && matches!(&s.action, Action::Clone(c) if dark(&c.source)))
    };
    let left: Vec<_> = again
        .steps
        .iter()
        .filter(|s| {
            let settings = matches!(
                s.action,
                Action::AlterSystem(_)
                    | Action::Reload(_)
                    | Action::Restart(_)
                    | Action::CreateSlot(_)
                    | Action::DropSlot(_)
            );
            // (max_connections and the like follow the upstream's value.)
            let up_unseen = d.upstream_of(&s.node).is_some_and(|u| unseen(&u.name));
            !(settings && (unseen(&s.node) || up_unseen))
        })
        .collect();
    if !left.is_empty() {
        return Err(format!(
            "replan: {}\nEND:{}",
            pgtopo::render::plan::text(&again, false),
            brief(&end)
        ));
    }
    // (Unless the declared primary is unreachable and the plan realises another topology, which
    // its notes ask to declare.)
    let rerooted = p
        .summary
        .notes
        .iter()
        .any(|n| n.contains("declare it") || n.contains("update topology.yaml"));
    let cannot: std::collections::BTreeSet<&pgtopo::diff::address::Address> =
        p.summary.cannot_fix.iter().map(|c| &c.address).collect();
    if opts.assume_down.is_empty() && !rerooted {
        // Nodes the plan cannot act on: what drift still finds about them is expected.
        let stuck: std::collections::BTreeSet<&str> = p
            .summary
            .cannot_fix
            .iter()
            .filter(|c| c.why.starts_with("unreachable"))
            .flat_map(|c| c.concerns.iter().map(String::as_str))
            .collect();
        let after = pgtopo::diff::drift::drift(d, &end);
        for i in &after.items {
            let slot_of = match &i.address {
                pgtopo::diff::address::Address::Slot { slot, .. } => Some(slot.as_str()),
                _ => None,
            };
            let up = d.upstream_of(&i.node).map(|u| u.name.as_str());
            let known = cannot.contains(&i.address)
                || stuck.contains(i.node.as_str())
                || slot_of.is_some_and(|s| stuck.contains(s))
                || up.is_some_and(|u| stuck.contains(u))
                || ((unseen(&i.node) || up.is_some_and(unseen))
                    && matches!(
                        i.kind,
                        DriftKind::SettingChanged
                            | DriftKind::PendingRestart
                            | DriftKind::OrphanSlot
                            | DriftKind::MissingSlot
                    ));
            if !known {
                return Err(format!(
                    "after the plan, drift still finds {i:?}, and the plan does not say it cannot fix it\nEND:{}",
                    brief(&end)
                ));
            }
        }
    }
    Ok(())
}

/// `a` is a transitive dependency of `b`.
fn before(p: &Plan, a: u32, b: u32) -> bool {
    let mut stack = vec![b];
    let mut seen = std::collections::HashSet::new();
    while let Some(x) = stack.pop() {
        for &d in &p.steps[x as usize - 1].after {
            if d == a {
                return true;
            }
            if seen.insert(d) {
                stack.push(d);
            }
        }
    }
    false
}

fn check(d: &Desired, o: &ObservedCluster, opts: &PlanOptions) -> Result<(), TestCaseError> {
    let Ok(p) = build(d, o, opts) else {
        return Ok(());
    };
    // The file diffs show exactly what the steps write.
    if let Some(e) = common::files_not_shown(&p) {
        return Err(TestCaseError::fail(e));
    }
    // Acyclic, ids in topological order.
    for (i, s) in p.steps.iter().enumerate() {
        prop_assert_eq!(s.id as usize, i + 1);
        prop_assert!(
            s.after.iter().all(|a| *a < s.id),
            "step {} waits for a later one",
            s.id
        );
    }
    let promotes: Vec<_> = p
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Promote(_)))
        .collect();
    prop_assert!(promotes.len() <= 1, "{} promotions", promotes.len());
    let observed_after_assume = pgtopo::plan::assume_down(d, o, &opts.assume_down).unwrap();
    if let Some(pr) = promotes.first() {
        for (name, x) in &observed_after_assume.nodes {
            if name == &pr.node || !x.running || x.role != Some(Role::Primary) {
                continue;
            }
            if !(x.reachable || x.host_reachable) {
                continue;
            }
            let stopped = p.steps.iter().any(|s| {
                s.node == *name
                    && matches!(s.action, Action::Stop(_) | Action::Fence(_))
                    && before(&p, s.id, pr.id)
            });
            prop_assert!(stopped, "promote of {} before {} is stopped", pr.node, name);
        }
        if let Action::Promote(pp) = &pr.action {
            if pp.reason.starts_with("planned switchover") {
                let waited = p
                    .steps
                    .iter()
                    .any(|s| matches!(s.action, Action::WaitReplay(_)) && before(&p, s.id, pr.id));
                prop_assert!(waited, "switchover promote without wait_replay");
            }
        }
    }
    for s in &p.steps {
        if d.nodes.get(&s.node).map(|n| &n.role) == Some(&DesiredRole::Absent) {
            prop_assert!(
                matches!(s.action, Action::Stop(_)),
                "{} on retired {}: {}\n{:?}\n{}",
                s.action.kind(),
                s.node,
                pgtopo::render::plan::text(&p, false),
                d.nodes
                    .values()
                    .map(|n| (n.name.clone(), n.role.clone()))
                    .collect::<Vec<_>>(),
                serde_json::to_string(
                    &o.nodes
                        .iter()
                        .map(|(k, x)| (k.clone(), x.role, x.running, x.reachable, x.host_reachable))
                        .collect::<Vec<_>>()
                )
                .unwrap()
            );
        }
    }
    if let Err(why) = converges(d, o, opts, &p, &p.steps) {
        return Err(TestCaseError::fail(format!(
            "{why}\nPLAN:\n{}",
            pgtopo::render::plan::text(&p, false)
        )));
    }
    // "No changes" means drift finds nothing now.
    if pgtopo::render::plan::is_no_change(&p) && opts.assume_down.is_empty() {
        let now = pgtopo::diff::drift::drift(d, o);
        prop_assert!(
            now.items.is_empty(),
            "No changes, but drift: {:?}",
            now.items
        );
    }
    // No secret anywhere.
    let secret = "hunter2-proptest-secret";
    for r in [
        pgtopo::render::plan::text(&p, false),
        pgtopo::render::plan::json(&p),
        pgtopo::render::plan::markdown(&p),
        pgtopo::render::plan::dot(&p),
    ] {
        prop_assert!(!r.contains(secret));
    }
    Ok(())
}

/// `PGTOPO_PROPTEST_CASES` cases (10,000 locally when asked for), else 1,000 (CI).
fn cases() -> u32 {
    std::env::var("PGTOPO_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn plans_are_safe_and_converge(n in 2usize..7, bytes in proptest::collection::vec(any::<u8>(), 64)) {
        std::env::set_var("PGTOPO_PROPTEST_SECRET", "hunter2-proptest-secret");
        let (d, o, opts) = scenario(n, &bytes);
        check(&d, &o, &opts)?;
    }

    /// The reviewed change list and the steps are one plan (issue 19): every change shown has
    /// a step that makes it, every step makes a shown change.
    #[test]
    fn every_change_has_its_steps_and_every_step_its_change(n in 2usize..7, bytes in proptest::collection::vec(any::<u8>(), 64)) {
        std::env::set_var("PGTOPO_PROPTEST_SECRET", "hunter2-proptest-secret");
        let (d, o, opts) = scenario(n, &bytes);
        if let Ok((p, served)) = pgtopo::plan::build_served(&d, &o, &opts) {
            let wrong = pgtopo::plan::serves::mismatches(&p, &served);
            prop_assert!(
                wrong.is_empty(),
                "{}\n{}",
                wrong.join("\n"),
                pgtopo::render::plan::text(&p, false)
            );
        }
    }
}

/// Step kinds whose effect the replay model leaves out (nothing observation reads changes):
/// removing one cannot be detected by replaying, and is counted apart.
const UNMODELLED: &[&str] = &[
    "write_pgpass",
    "create_role",
    "checkpoint",
    "pause_pooler",
    "route_pooler",
    "resume_pooler",
    "hook",
    "sync_slots",
    "analyze",
];

/// What replaying `steps` leaves for drift and for a second plan to find.
fn outcome(
    d: &Desired,
    o: &ObservedCluster,
    opts: &PlanOptions,
    steps: &[pgtopo::plan::Step],
) -> Option<(Vec<String>, Vec<String>)> {
    let o = pgtopo::plan::assume_down(d, o, &opts.assume_down).ok()?;
    let end = pgtopo::plan::replay_steps(d, &o, steps).ok()?;
    let drift = pgtopo::diff::drift::drift(d, &end)
        .items
        .iter()
        .map(|i| i.detail.clone())
        .collect();
    let again = build(
        d,
        &end,
        &PlanOptions {
            allow_failover: true,
            ..PlanOptions::default()
        },
    )
    .map(|p| {
        p.steps
            .iter()
            .map(|s| format!("{} {} {}", s.action.kind(), s.node, s.description))
            .collect()
    })
    .unwrap_or_else(|e| vec![e.to_string()]);
    Some((drift, again))
}

/// Step kinds one of which can be redundant in a plan, so that removing it may leave the end
/// state as it was: a `catch_up` before a switchover's stop (a guard on the writes-unavailable
/// window; the `wait_replay` after the stop is what the promotion needs), a `reload` that a later
/// start or restart makes moot, a `fence` or `stop` of a node that is already down (a guard
/// against someone starting it), `alter_system`/`restart` that put back a cloned node's own
/// undeclared settings, and a `clone` of a standby whose divergence was measured against an
/// upstream it leaves (the model cannot tell whether it diverged from the new one). Their
/// removals are counted, not required to be detected.
const MAY_BE_REDUNDANT: &[&str] = &[
    "catch_up",
    "reload",
    "fence",
    "stop",
    "alter_system",
    "restart",
    "clone",
];

/// The oracle can fail: in generated plans that converge, removing any one step is detected
/// (the replay fails, a second plan has something to do, or what drift and a second plan find
/// changes) — always for the kinds outside [`MAY_BE_REDUNDANT`] and [`UNMODELLED`].
/// `PGTOPO_PROPTEST_CASES` scenarios (default 1,000).
#[test]
fn removing_a_step_is_detected() {
    std::env::set_var("PGTOPO_PROPTEST_SECRET", "hunter2-proptest-secret");
    let mut seed: u64 = 0x5eed;
    let (mut removed, mut detected, mut unmodelled, mut plans, mut must) =
        (0u32, 0u32, 0u32, 0u32, 0u32);
    let mut missed: Vec<String> = Vec::new();
    for _ in 0..cases() {
        let mut bytes = vec![0u8; 65];
        for b in &mut bytes {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (seed >> 33) as u8;
        }
        let n = 2 + bytes[64] as usize % 5;
        let (d, o, opts) = scenario(n, &bytes[..64]);
        let Ok(p) = build(&d, &o, &opts) else {
            continue;
        };
        if p.steps.is_empty() || converges(&d, &o, &opts, &p, &p.steps).is_err() {
            continue;
        }
        plans += 1;
        for (i, s) in p.steps.iter().enumerate() {
            if UNMODELLED.contains(&s.action.kind()) {
                unmodelled += 1;
                continue;
            }
            removed += 1;
            let mut steps = p.steps.clone();
            steps.remove(i);
            let caught = converges(&d, &o, &opts, &p, &steps).is_err()
                || outcome(&d, &o, &opts, &steps) != outcome(&d, &o, &opts, &p.steps);
            detected += caught as u32;
            if MAY_BE_REDUNDANT.contains(&s.action.kind()) {
                continue;
            }
            must += 1;
            if !caught && missed.len() < 20 {
                missed.push(format!(
                    "{} {} ({}) in\n{}",
                    s.action.kind(),
                    s.node,
                    s.description,
                    pgtopo::render::plan::text(&p, false)
                ));
            }
        }
    }
    eprintln!(
        "mutation: {plans} plans, {removed} steps removed, {detected} detected ({} of them of kinds that must always be), {unmodelled} steps of unmodelled kinds not removed",
        must
    );
    assert!(plans > 0 && must > 0);
    assert!(
        missed.is_empty(),
        "undetected removals:\n{}",
        missed.join("\n---\n")
    );
}
