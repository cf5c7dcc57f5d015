//! Unit tests of the planner: one per ordering transform and per refusal, each starting from a
//! healthy cluster (`fixtures::healthy`) and breaking one thing.

use super::*;
use crate::config::SyncSpec;
use crate::observe::fixtures::*;
use crate::observe::{ControlData, ObservedNode, Role, TimelineFork, WalSegments};
use crate::units::Lsn;

/// The plan, whose change list and steps must be one plan ([`serves::mismatches`]).
fn plan(d: &Desired, o: &ObservedCluster) -> Plan {
    let (p, served) = build_served(d, o, &PlanOptions::default()).expect("plan");
    let wrong = serves::mismatches(&p, &served);
    assert!(
        wrong.is_empty(),
        "{}\n{}",
        wrong.join("\n"),
        crate::render::plan::text(&p, false)
    );
    p
}

fn consent() -> PlanOptions {
    PlanOptions {
        allow_failover: true,
        assume_down: vec![],
        accept_data_loss: false,
    }
}

fn lines(p: &Plan) -> Vec<String> {
    p.steps
        .iter()
        .map(|s| format!("{} {}", s.action.kind(), s.node))
        .collect()
}

fn step<'a>(p: &'a Plan, kind: &str, node: &str) -> &'a Step {
    p.steps
        .iter()
        .find(|s| s.action.kind() == kind && s.node == node)
        .unwrap_or_else(|| panic!("no {kind} on {node} in {:?}", lines(p)))
}

/// `a` is a (transitive) dependency of `b`.
fn before(p: &Plan, a: StepId, b: StepId) -> bool {
    let mut stack = vec![b];
    while let Some(x) = stack.pop() {
        for &d in &p.steps[x as usize - 1].after {
            if d == a {
                return true;
            }
            stack.push(d);
        }
    }
    false
}

fn node_mut<'a>(o: &'a mut ObservedCluster, n: &str) -> &'a mut ObservedNode {
    o.nodes.get_mut(n).unwrap()
}

fn stop(o: &mut ObservedCluster, n: &str, state: &str, ckpt: u64, hints: bool) {
    let x = node_mut(o, n);
    x.running = false;
    x.reachable = false;
    x.host_reachable = true;
    x.streaming = false;
    x.unreachable_reason = Some("connection refused".into());
    x.control = Some(ControlData {
        system_identifier: "7300000000000000001".into(),
        cluster_state: state.into(),
        latest_checkpoint: Lsn(ckpt),
        latest_checkpoint_redo: Lsn(ckpt),
        checkpoint_timeline: x.timeline.unwrap_or(1),
        min_recovery_end: Lsn(0),
        min_recovery_end_timeline: 0,
        wal_log_hints: hints,
        data_checksums: false,
        wal_segment_size: 16 << 20,
    });
    // A stopped server is seen through its files only: no position, slot or walsender from SQL.
    x.lsn = None;
    x.receive_lsn = None;
    x.replay_lsn = None;
    x.slots.clear();
    x.replication_slots.clear();
    x.replication.clear();
}

/// The plan's own steps, replayed on `o` by the oracle (`replay`), leave nothing for a second
/// plan to do.
fn assert_idempotent(d: &Desired, o: &ObservedCluster) {
    let p = build(d, o, &consent()).expect("plan");
    let end = replay::replay(d, o, &p)
        .unwrap_or_else(|e| panic!("the plan does not replay: {e}\n{:?}", lines(&p)));
    let again = build(d, &end, &consent()).expect("replan");
    assert!(
        again.steps.is_empty(),
        "replan has steps: {:?}\nafter the plan {:?}\nwhose end state drifts: {:?}",
        lines(&again),
        lines(&p),
        crate::diff::drift::drift(d, &end)
    );
}

#[test]
fn healthy_cluster_needs_nothing() {
    let d = desired3();
    let p = plan(&d, &healthy(&d));
    assert!(p.steps.is_empty() && p.changes.is_empty());
    assert_eq!(
        p.summary.data_loss,
        DataLoss::None {
            reason: "no promotion".into()
        }
    );
}

#[test]
fn start_stopped_primary_is_not_a_failover() {
    let d = desired3();
    let mut o = healthy(&d);
    stop(&mut o, "n1", "in production", 0x3000028, false);
    let p = plan(&d, &o);
    assert_eq!(lines(&p), vec!["start n1"]);
    assert!(!p.steps.iter().any(|s| s.action.kind() == "promote"));
    assert_idempotent(&d, &o);
}

#[test]
fn switchover_orders_slot_stop_wait_promote_rejoin_drop() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let o = healthy(&desired3());
    let p = plan(&d, &o);
    let slot = step(&p, "create_slot", "n2");
    let stop = step(&p, "stop", "n1");
    let wait = step(&p, "wait_replay", "n2");
    let promote = step(&p, "promote", "n2");
    let cfg = step(&p, "configure_standby", "n1");
    let start = step(&p, "start", "n1");
    let drop = step(&p, "drop_slot", "n1");
    assert!(
        matches!(&stop.action, Action::Stop(s) if s.writes_unavailable && s.mode == ShutdownMode::Fast)
    );
    match &wait.action {
        Action::WaitReplay(w) => {
            assert_eq!(
                w.target,
                ReplayTarget::ShutdownCheckpointOf { node: "n1".into() }
            );
            assert_eq!(w.on_failure_restart.as_deref(), Some("n1"));
            assert_eq!(w.timeout_ms, 60_000);
        }
        _ => unreachable!(),
    }
    assert!(matches!(&promote.action, Action::Promote(p) if p.writes_available));
    assert!(promote.destructive);
    for (a, b) in [
        (slot, stop),
        (stop, wait),
        (wait, promote),
        (promote, cfg),
        (cfg, start),
        (start, drop),
    ] {
        assert!(before(&p, a.id, b.id), "{} before {}", a.id, b.id);
    }
    // n3, a sibling, follows n2 after the promotion, with a reload (PostgreSQL 15).
    let n3 = step(&p, "configure_standby", "n3");
    assert!(before(&p, promote.id, n3.id));
    assert!(matches!(&n3.action, Action::ConfigureStandby(c) if c.apply == ConfigApply::Reload));
    let w = p.summary.write_unavailable.as_ref().unwrap();
    assert_eq!((w.from_step, w.to_step), (stop.id, promote.id));
    assert!(matches!(p.summary.data_loss, DataLoss::None { .. }));
    assert_eq!(p.summary.add, 2);
    assert_idempotent(&d, &o);
}

#[test]
fn switchover_refused_when_candidate_lags() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&desired3());
    node_mut(&mut o, "n1").lsn = Some(Lsn(0x3000060 + (64 << 20)));
    let e = build(&d, &o, &PlanOptions::default()).unwrap_err();
    assert!(matches!(e, PlanError::SwitchoverLagTooLarge { bytes, .. } if bytes == 64 << 20));
}

#[test]
fn cleanly_shut_down_primary_is_a_switchover_to_finish() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&desired3());
    // n1's shutdown checkpoint record at 0/3000060 (0x28 bytes), both standbys replayed it: a
    // state a switchover interrupted after the stop leaves (the standbys cannot be past n1's
    // end of WAL, which the replay oracle checks when n3 follows n2's new timeline).
    stop(&mut o, "n1", "shut down", 0x3000060, false);
    for n in ["n2", "n3"] {
        node_mut(&mut o, n).receive_lsn = Some(Lsn(0x3000088));
        node_mut(&mut o, n).replay_lsn = Some(Lsn(0x3000088));
    }
    let p = plan(&d, &o);
    assert!(!lines(&p)
        .iter()
        .any(|l| l.starts_with("fence") || l == "stop n1"));
    let w = step(&p, "wait_replay", "n2");
    assert!(
        matches!(&w.action, Action::WaitReplay(w) if w.target == ReplayTarget::ShutdownCheckpointOf { node: "n1".into() })
    );
    step(&p, "promote", "n2");
    assert!(matches!(p.summary.data_loss, DataLoss::None { .. }));
    assert_idempotent(&d, &o);
}

#[test]
fn candidate_at_the_start_of_the_shutdown_checkpoint_has_not_finished_the_switchover() {
    // n2 received and replayed up to 0/3000060, the start of n1's shutdown checkpoint record,
    // not the record: promoting it would fork before n1's end of WAL.
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&desired3());
    stop(&mut o, "n1", "shut down", 0x3000060, false);
    node_mut(&mut o, "n2").receive_lsn = Some(Lsn(0x3000080));
    let e = build(&d, &o, &PlanOptions::default()).unwrap_err();
    assert!(matches!(e, PlanError::FailoverNotAllowed { .. }), "{e:?}");
    let changes = crate::diff::diff(&d, &o);
    assert!(
        !format!("{changes:?}").contains("finishing the switchover"),
        "{changes:?}"
    );
}

fn crashed_primary() -> (Desired, ObservedCluster) {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&desired3());
    stop(&mut o, "n1", "in production", 0x3000028, true);
    node_mut(&mut o, "n1").lsn = Some(Lsn(0x3000100));
    (d, o)
}

#[test]
fn failover_needs_consent() {
    let (d, o) = crashed_primary();
    let e = build(&d, &o, &PlanOptions::default()).unwrap_err();
    assert!(matches!(e, PlanError::FailoverNotAllowed { .. }));
    let help = miette::Diagnostic::help(&e).unwrap().to_string();
    assert!(
        help.contains("--allow-failover") && help.contains("failover.allow"),
        "{help}"
    );
}

#[test]
fn failover_fences_promotes_and_rewinds() {
    let (d, o) = crashed_primary();
    let p = build(&d, &o, &consent()).unwrap();
    let fence = step(&p, "fence", "n1");
    let promote = step(&p, "promote", "n2");
    let ck = step(&p, "checkpoint", "n2");
    let rw = step(&p, "rewind", "n1");
    assert!(before(&p, fence.id, promote.id));
    assert!(before(&p, promote.id, ck.id) && before(&p, ck.id, rw.id));
    match &rw.action {
        Action::Rewind(r) => assert!(
            r.reason
                .contains("n1 has WAL past the fork point 0/3000060 of timeline 2"),
            "{}",
            r.reason
        ),
        _ => unreachable!(),
    }
    let n3 = step(&p, "configure_standby", "n3");
    assert!(before(&p, promote.id, n3.id));
    assert!(matches!(
        p.summary.data_loss,
        DataLoss::Possible {
            bytes: Some(0xa0),
            ..
        }
    ));
    assert_eq!(
        p.steps
            .iter()
            .filter(|s| s.action.kind() == "promote")
            .count(),
        1
    );
    assert_idempotent(&d, &o);
}

#[test]
fn failover_candidate_too_far_behind() {
    let (d, mut o) = crashed_primary();
    node_mut(&mut o, "n3").receive_lsn = Some(Lsn(0x3000060 + (32 << 20)));
    let e = build(&d, &o, &consent()).unwrap_err();
    assert!(
        matches!(&e, PlanError::CandidateTooFarBehind { best, bytes, .. } if best == "n3" && *bytes == 32 << 20)
    );
}

#[test]
fn two_primaries_without_a_declared_one_are_refused() {
    let d = desired3();
    let mut o = healthy(&d);
    stop(&mut o, "n1", "in production", 0x3000028, false);
    for n in ["n2", "n3"] {
        node_mut(&mut o, n).role = Some(Role::Primary);
    }
    let e = build(&d, &o, &consent()).unwrap_err();
    assert!(matches!(e, PlanError::TwoPrimaries { .. }), "{e:?}");
}

/// After a failover to n2 (timeline 2 forked at 0/5000028), n1 comes back stopped.
fn after_failover(hints: bool, n1_end: u64) -> (Desired, ObservedCluster) {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&d);
    for x in o.nodes.values_mut() {
        x.timeline = Some(2);
        x.timeline_history = vec![TimelineFork {
            timeline: 1,
            fork_lsn: Lsn(0x5000028),
        }];
    }
    let n1 = node_mut(&mut o, "n1");
    n1.role = None;
    n1.upstream = None;
    n1.primary_conninfo = None;
    n1.primary_slot_name = None;
    n1.standby_signal = false;
    n1.timeline = Some(1);
    n1.timeline_history.clear();
    stop(&mut o, "n1", "in production", n1_end, hints);
    node_mut(&mut o, "n2").slots.retain(|s| s != "n1");
    node_mut(&mut o, "n2")
        .replication_slots
        .retain(|s| s.name != "n1");
    (d, o)
}

#[test]
fn rejoin_rewinds_when_hints_allow() {
    let (d, o) = after_failover(true, 0x5000100);
    let p = plan(&d, &o);
    let ck = step(&p, "checkpoint", "n2");
    let rw = step(&p, "rewind", "n1");
    assert!(before(&p, ck.id, rw.id));
    match &rw.action {
        Action::Rewind(r) => assert_eq!(
            r.reason,
            "n1 has WAL past the fork point 0/5000028 of timeline 2"
        ),
        _ => unreachable!(),
    }
    let cfg = step(&p, "configure_standby", "n1");
    match &cfg.action {
        Action::ConfigureStandby(c) => {
            assert_eq!((c.port, c.listen_addresses.as_str()), (55601, "127.0.0.1"));
            assert_eq!(c.upstream, "n2");
        }
        _ => unreachable!(),
    }
    assert!(
        matches!(&step(&p, "start", "n1").action, Action::Start(s) if s.wait_streaming_from.as_deref() == Some("n2"))
    );
    assert_idempotent(&d, &o);
}

#[test]
fn rejoin_clones_without_hints() {
    let (d, o) = after_failover(false, 0x5000100);
    let p = plan(&d, &o);
    let c = step(&p, "clone", "n1");
    assert!(c.destructive);
    assert!(
        matches!(&c.action, Action::Clone(c) if c.move_aside && c.reason.contains("fork point 0/5000028"))
    );
    assert!(!lines(&p).contains(&"rewind n1".to_string()));
    assert_idempotent(&d, &o);
}

#[test]
fn rejoin_rewinds_from_the_archive_when_the_wal_is_gone_but_archived() {
    let (d, mut o) = after_failover(true, 0x7000100);
    let n1 = node_mut(&mut o, "n1");
    n1.control.as_mut().unwrap().latest_checkpoint_redo = Lsn(0x7000028);
    n1.wal_segments = Some(WalSegments::from_names(
        16 << 20,
        ["000000010000000000000006", "000000010000000000000007"],
    ));
    for (k, v) in [("archive_mode", "on"), ("restore_command", "cp /a/%f %p")] {
        n1.settings.insert(
            k.into(),
            crate::observe::ObservedSetting {
                value: v.into(),
                raw: None,
                unit: None,
                pending_restart: false,
                context: "sighup".into(),
                source: "override".into(),
            },
        );
    }
    let p = plan(&d, &o);
    assert!(
        !lines(&p).contains(&"clone n1".to_string()),
        "{:?}",
        lines(&p)
    );
    match &step(&p, "rewind", "n1").action {
        Action::Rewind(r) => assert!(
            r.reason
                .contains("no longer has the segment that starts at 0/5000000")
                && r.reason
                    .contains("it comes from the archive (pg_rewind --restore-target-wal"),
            "{}",
            r.reason
        ),
        _ => unreachable!(),
    }
}

#[test]
fn a_backup_clone_is_named_as_a_basebackup_until_it_is_built() {
    let (mut d, o) = after_failover(false, 0x5000100);
    d.archive = crate::config::ArchiveSpec {
        pgbackrest: Some(crate::config::archive::PgBackRestSpec {
            stanza: "shop".into(),
            config: None,
        }),
        ..Default::default()
    }
    .resolve();
    d.clone_policy
        .nodes
        .insert("n1".into(), crate::config::CloneMethod::Backup);
    let p = plan(&d, &o);
    step(&p, "clone", "n1");
    assert!(
        p.summary
            .notes
            .iter()
            .any(|n| n.starts_with("n1: clone.method is backup") && n.contains("pg_basebackup")),
        "{:?}",
        p.summary.notes
    );
    step(&p, "create_stanza", "n2");
}

#[test]
fn rejoin_clones_when_the_wal_pg_rewind_reads_is_gone() {
    let with_wal = |end: u64, redo: u64, segs: &[&str]| {
        let (d, mut o) = after_failover(true, end);
        let n1 = node_mut(&mut o, "n1");
        n1.control.as_mut().unwrap().latest_checkpoint_redo = Lsn(redo);
        n1.wal_segments = Some(WalSegments::from_names(16 << 20, segs.iter().copied()));
        (d, o)
    };
    // n1 went on past the fork (0/5000028) and checkpointed at 0/7000100: the checkpoint
    // before the fork is older still, and segment 5 (which holds the fork) was recycled.
    let (d, o) = with_wal(
        0x7000100,
        0x7000028,
        &["000000010000000000000006", "000000010000000000000007"],
    );
    let p = plan(&d, &o);
    assert!(
        !lines(&p).contains(&"rewind n1".to_string()),
        "{:?}",
        lines(&p)
    );
    match &step(&p, "clone", "n1").action {
        Action::Clone(c) => assert!(
            c.move_aside
                && c.reason.contains("n1 has WAL past the fork point 0/5000028")
                && c.reason.contains("n1's pg_wal no longer has the segment that starts at 0/5000000 (its oldest starts at 0/6000000)")
                && c.reason.contains("latest checkpoint 0/7000100 is past the fork"),
            "{}",
            c.reason
        ),
        _ => unreachable!(),
    }
    assert_idempotent(&d, &o);
    // The same with segments 5 to 7 kept: rewind.
    let (d, o) = with_wal(
        0x7000100,
        0x7000028,
        &[
            "000000010000000000000005",
            "000000010000000000000006",
            "000000010000000000000007",
        ],
    );
    assert!(lines(&plan(&d, &o)).contains(&"rewind n1".to_string()));
    // Crashed with its latest checkpoint before the fork: WAL from that checkpoint's REDO
    // location (segment 4) is needed, and missing.
    let (d, o) = with_wal(0x5000000, 0x4FFFFF0, &["000000010000000000000005"]);
    match &step(&plan(&d, &o), "clone", "n1").action {
        Action::Clone(c) => assert!(
            c.reason
                .contains("from its latest checkpoint's REDO location 0/4FFFFF0 up to 0/5000028")
                && c.reason.contains("starts at 0/4000000"),
            "{}",
            c.reason
        ),
        _ => unreachable!(),
    }
    let (d, o) = with_wal(
        0x5000000,
        0x4FFFFF0,
        &["000000010000000000000004", "000000010000000000000005"],
    );
    assert!(lines(&plan(&d, &o)).contains(&"rewind n1".to_string()));
}

#[test]
fn rejoin_follows_when_not_diverged() {
    let (d, mut o) = after_failover(false, 0x5000000);
    // Shut down cleanly before the fork point: its WAL ends there.
    node_mut(&mut o, "n1")
        .control
        .as_mut()
        .unwrap()
        .cluster_state = "shut down".into();
    let p = plan(&d, &o);
    assert!(!lines(&p)
        .iter()
        .any(|l| l.starts_with("rewind") || l.starts_with("clone")));
    step(&p, "configure_standby", "n1");
    step(&p, "start", "n1");
}

#[test]
fn a_crash_before_the_fork_point_is_no_proof_of_no_divergence() {
    // Crashed ("in production") with its last checkpoint before the fork: the WAL it wrote after
    // that checkpoint is unknown, so it cannot simply follow.
    let (d, o) = after_failover(true, 0x5000000);
    let p = plan(&d, &o);
    match &step(&p, "rewind", "n1").action {
        Action::Rewind(r) => assert!(
            r.reason.contains("did not shut down cleanly")
                && r.reason.contains("latest checkpoint 0/5000000")
                && r.reason.contains("fork point 0/5000028 of timeline 2"),
            "{}",
            r.reason
        ),
        _ => unreachable!(),
    }
    let (d, o) = after_failover(false, 0x5000000);
    step(&plan(&d, &o), "clone", "n1");
}

#[test]
fn repoint_creates_slot_first_and_drops_old_last() {
    let mut d = desired3();
    d.nodes.get_mut("n3").unwrap().role = DesiredRole::Standby {
        upstream: "n2".into(),
    };
    let o = healthy(&desired3());
    let p = plan(&d, &o);
    // The conninfo pgtopo writes has no password: n3's os_user's .pgpass gets it first.
    assert_eq!(
        lines(&p),
        vec![
            "create_slot n2",
            "write_pgpass n3",
            "configure_standby n3",
            "drop_slot n1"
        ]
    );
    assert_eq!(p.steps[2].after, vec![1, 2]);
    assert_eq!(p.steps[3].after, vec![3]);
    let mut o12 = o.clone();
    node_mut(&mut o12, "n3").version = Some(120011);
    let p12 = plan(&d, &o12);
    assert!(
        matches!(&step(&p12, "configure_standby", "n3").action, Action::ConfigureStandby(c) if c.apply == ConfigApply::Restart)
    );
    assert_idempotent(&d, &o);
}

fn with_setting(d: &mut Desired, k: &str, v: &str) {
    for n in d.nodes.values_mut() {
        n.settings.insert(k.into(), v.into());
    }
}

#[test]
fn increase_restarts_standbys_first_one_at_a_time() {
    let mut d = desired3();
    with_setting(&mut d, "max_connections", "200");
    let o = healthy(&desired3());
    let p = plan(&d, &o);
    let r: Vec<&Step> = p
        .steps
        .iter()
        .filter(|s| s.action.kind() == "restart")
        .collect();
    assert_eq!(
        r.iter().map(|s| s.node.as_str()).collect::<Vec<_>>(),
        vec!["n2", "n3", "n1"]
    );
    assert!(before(&p, r[0].id, r[1].id) && before(&p, r[1].id, r[2].id));
    assert!(r[2].destructive && !r[0].destructive);
    let w = p.summary.write_unavailable.as_ref().unwrap();
    assert_eq!(w.from_step, r[2].id);
    assert_idempotent(&d, &o);
}

#[test]
fn decrease_restarts_primary_first() {
    let mut d = desired3();
    with_setting(&mut d, "max_connections", "50");
    let o = healthy(&desired3());
    let p = plan(&d, &o);
    let r: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.action.kind() == "restart")
        .map(|s| s.node.as_str())
        .collect();
    assert_eq!(r, vec!["n1", "n2", "n3"]);
}

#[test]
fn sighup_settings_reload() {
    let mut d = desired3();
    with_setting(&mut d, "work_mem", "64MB");
    let mut o = healthy(&desired3());
    for x in o.nodes.values_mut() {
        x.settings.insert("work_mem".into(), setting("4MB", "user"));
    }
    let p = plan(&d, &o);
    assert_eq!(
        p.steps
            .iter()
            .filter(|s| s.action.kind() == "reload")
            .count(),
        3
    );
    assert!(p.summary.restarts.is_empty());
    assert_idempotent(&d, &o);
}

#[test]
fn bootstrap_builds_standbys_in_order() {
    let d = desired3();
    let mut o = healthy(&d);
    for n in ["n2", "n3"] {
        let x = node_mut(&mut o, n);
        *x = ObservedNode {
            host_reachable: true,
            unreachable_reason: Some("connection refused".into()),
            ..Default::default()
        };
    }
    let n1 = node_mut(&mut o, "n1");
    n1.slots.clear();
    n1.replication_slots.clear();
    n1.hba.as_mut().unwrap().managed_block = None;
    let p = plan(&d, &o);
    let role = step(&p, "create_role", "n1");
    let hba = step(&p, "reload", "n1");
    let clone = step(&p, "clone", "n2");
    let cfg = step(&p, "configure_standby", "n2");
    let start = step(&p, "start", "n2");
    step(&p, "write_pgpass", "n2");
    assert!(before(&p, role.id, clone.id) && before(&p, hba.id, clone.id));
    assert!(before(&p, clone.id, cfg.id) && before(&p, cfg.id, start.id));
    assert!(
        matches!(&clone.action, Action::Clone(c) if c.slot.as_deref() == Some("n2") && !c.move_aside)
    );
    assert!(!clone.destructive);
    match &cfg.action {
        Action::ConfigureStandby(c) => {
            assert_eq!((c.port, c.listen_addresses.as_str()), (55602, "127.0.0.2"))
        }
        _ => unreachable!(),
    }
    assert_idempotent(&d, &o);
}

/// desired3 with the quorum set ANY 1 (n2, n3).
fn desired3_quorum() -> Desired {
    let mut d = desired3();
    d.replication.synchronous = Some(SyncSpec {
        mode: crate::config::SyncMode::Quorum,
        count: 1,
        standbys: vec!["n2".into(), "n3".into()],
    });
    d
}

#[test]
fn sync_set_waits_for_members_streaming() {
    let d = desired3_quorum();
    let mut o = healthy(&desired3());
    *node_mut(&mut o, "n3") = ObservedNode {
        host_reachable: true,
        ..Default::default()
    };
    node_mut(&mut o, "n1").slots.retain(|s| s != "n3");
    let p = plan(&d, &o);
    let alter = p
        .steps
        .iter()
        .find(|s| matches!(&s.action, Action::AlterSystem(a) if a.set.contains_key("synchronous_standby_names")))
        .unwrap();
    let start = step(&p, "start", "n3");
    assert!(before(&p, start.id, alter.id));
    assert_idempotent(&d, &o);
}

#[test]
fn retire_leaves_sync_set_then_stops_then_drops_slot() {
    let mut d = desired3();
    d.replication.synchronous = Some(SyncSpec {
        mode: crate::config::SyncMode::Quorum,
        count: 1,
        standbys: vec!["n2".into(), "n3".into()],
    });
    let o = healthy(&d);
    d.nodes.get_mut("n3").unwrap().role = DesiredRole::Absent;
    let p = plan(&d, &o);
    let on_n3: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.node == "n3")
        .map(|s| s.action.kind())
        .collect();
    assert_eq!(on_n3, vec!["stop"]);
    let stop = step(&p, "stop", "n3");
    let drop = step(&p, "drop_slot", "n1");
    let sync = step(&p, "reload", "n1");
    assert!(before(&p, sync.id, stop.id) && before(&p, stop.id, drop.id));
    assert_idempotent(&d, &o);
}

#[test]
fn wal_level_minimal_is_raised_with_a_restart() {
    let d = desired3();
    let mut o = healthy(&d);
    node_mut(&mut o, "n1")
        .settings
        .insert("wal_level".into(), setting("minimal", "postmaster"));
    let p = plan(&d, &o);
    assert!(
        matches!(&step(&p, "alter_system", "n1").action, Action::AlterSystem(a) if a.set["wal_level"] == "replica")
    );
    assert!(step(&p, "restart", "n1").destructive);
    assert!(p
        .changes
        .iter()
        .any(|c| c.reason.contains("cannot feed a standby")));
}

#[test]
fn assume_down_plans_the_what_if() {
    let d = desired3();
    let mut o = healthy(&d);
    node_mut(&mut o, "n3").receive_lsn = Some(Lsn(0x3000050));
    let opts = PlanOptions {
        allow_failover: false,
        assume_down: vec!["n1".into()],
        accept_data_loss: false,
    };
    let e = build(&d, &o, &opts).unwrap_err();
    assert!(matches!(&e, PlanError::FailoverNotAllowed { candidate, .. } if candidate == "n2"));
    let p = build(
        &d,
        &o,
        &PlanOptions {
            allow_failover: true,
            ..opts
        },
    )
    .unwrap();
    step(&p, "promote", "n2");
    step(&p, "configure_standby", "n3");
    assert!(!p.steps.iter().any(|s| s.node == "n1"));
    assert!(p
        .summary
        .notes
        .iter()
        .any(|n| n.contains("n1 (the declared primary) is unreachable")));
    let bad = build(
        &d,
        &o,
        &PlanOptions {
            allow_failover: true,
            assume_down: vec!["zz".into()],
            accept_data_loss: false,
        },
    );
    assert!(matches!(bad, Err(PlanError::UnknownNode { .. })));
}

#[test]
fn unreachable_upstream_needed_for_a_clone_is_refused() {
    let mut d = desired3();
    d.nodes.get_mut("n3").unwrap().role = DesiredRole::Standby {
        upstream: "n2".into(),
    };
    let mut o = healthy(&desired3());
    *node_mut(&mut o, "n3") = ObservedNode {
        host_reachable: true,
        ..Default::default()
    };
    let n2 = node_mut(&mut o, "n2");
    n2.reachable = false;
    n2.host_reachable = false;
    n2.running = false;
    let e = build(&d, &o, &PlanOptions::default()).unwrap_err();
    assert!(
        matches!(&e, PlanError::Unreachable { node, .. } if node == "n2"),
        "{e:?}"
    );
}

#[test]
fn orphan_slots_are_dropped_with_a_wal_note() {
    let d = desired3();
    let mut o = healthy(&d);
    let n1 = node_mut(&mut o, "n1");
    n1.slots.push("old".into());
    n1.replication_slots.push(crate::observe::ObservedSlot {
        name: "old".into(),
        slot_type: "physical".into(),
        active: false,
        restart_lsn: None,
        wal_retained_bytes: Some(2 << 30),
        wal_status: None,
        safe_wal_size: None,
        logical: None,
    });
    let p = plan(&d, &o);
    assert_eq!(lines(&p), vec!["drop_slot n1"]);
    assert!(
        p.summary.notes.iter().any(|n| n.contains("frees 2.0 GB")),
        "{:?}",
        p.summary.notes
    );
}

#[test]
fn step_ids_are_topological() {
    let (d, o) = crashed_primary();
    let p = build(&d, &o, &consent()).unwrap();
    for (i, s) in p.steps.iter().enumerate() {
        assert_eq!(s.id as usize, i + 1);
        assert!(s.after.iter().all(|a| *a < s.id));
    }
}

#[test]
fn a_second_primary_is_stopped_and_rejoined_with_data_loss_stated() {
    let d = desired3();
    let mut o = healthy(&d);
    let n3 = node_mut(&mut o, "n3");
    n3.role = Some(Role::Primary);
    n3.timeline = Some(2);
    n3.upstream = None;
    n3.streaming = false;
    n3.lsn = Some(Lsn(0x3000200));
    n3.settings
        .insert("wal_log_hints".into(), setting("on", "postmaster"));
    let p = plan(&d, &o);
    let stop = step(&p, "fence", "n3");
    assert!(stop.destructive);
    let rw = step(&p, "rewind", "n3");
    assert!(before(&p, stop.id, rw.id));
    assert!(!p.steps.iter().any(|s| s.action.kind() == "promote"));
    assert!(matches!(p.summary.data_loss, DataLoss::Possible { .. }));
}

#[test]
fn an_unfinished_rewind_is_cloned_again() {
    let (d, mut o) = after_failover(true, 0x5000100);
    node_mut(&mut o, "n1").rewind_unfinished = true;
    let p = plan(&d, &o);
    assert!(!lines(&p).iter().any(|l| l.starts_with("rewind")));
    match &step(&p, "clone", "n1").action {
        Action::Clone(c) => {
            assert!(c.move_aside);
            assert!(c.reason.contains("did not finish"), "{}", c.reason);
        }
        _ => unreachable!(),
    }
}

/// The findings of `pgtopo drift` that `p` has no step for.
fn unfixed(p: &Plan) -> Vec<String> {
    p.summary
        .cannot_fix
        .iter()
        .map(|c| c.address.to_string())
        .collect()
}

fn drift_kinds(d: &Desired, o: &ObservedCluster) -> Vec<crate::diff::drift::DriftKind> {
    crate::diff::drift::drift(d, o)
        .items
        .iter()
        .map(|i| i.kind)
        .collect()
}

#[test]
fn a_second_writer_on_the_primary_timeline_is_fenced_and_cloned() {
    let d = desired3();
    let mut o = healthy(&d);
    let n2 = node_mut(&mut o, "n2");
    n2.role = Some(Role::Primary);
    n2.upstream = None;
    n2.streaming = false;
    n2.standby_signal = false;
    n2.lsn = Some(Lsn(0x3000400));
    let p = plan(&d, &o);
    let fence = step(&p, "fence", "n2");
    let clone = step(&p, "clone", "n2");
    assert!(before(&p, fence.id, clone.id));
    match &clone.action {
        Action::Clone(c) => {
            assert!(c.move_aside);
            assert!(c.reason.contains("split brain"), "{}", c.reason);
            assert!(c.reason.contains("timeline 1"), "{}", c.reason);
        }
        _ => unreachable!(),
    }
    assert!(!lines(&p).iter().any(|l| l.starts_with("rewind")));
    assert!(!lines(&p).iter().any(|l| l.starts_with("promote")));
    let node_change = p.changes.iter().find(|c| c.address == "node.n2").unwrap();
    assert!(
        node_change.reason.contains("split brain"),
        "{node_change:?}"
    );
    assert!(drift_kinds(&d, &o).contains(&crate::diff::drift::DriftKind::SplitBrain));
    assert_eq!(unfixed(&p), Vec::<String>::new());
    assert_idempotent(&d, &o);
}

#[test]
fn a_standby_whose_wal_differs_from_its_upstream_is_cloned() {
    let d = desired3();
    let mut o = healthy(&d);
    node_mut(&mut o, "n3").wal_match = Some(crate::observe::WalMatch {
        at: Lsn(0x3000100),
        upstream_end: Lsn(0x3000200),
        bytes: 256,
        matches: Some(false),
    });
    let p = plan(&d, &o);
    let stop = step(&p, "stop", "n3");
    let clone = step(&p, "clone", "n3");
    assert!(before(&p, stop.id, clone.id));
    assert!(
        clone.description.contains("differ"),
        "{}",
        clone.description
    );
    assert!(drift_kinds(&d, &o).contains(&crate::diff::drift::DriftKind::Diverged));
    assert_eq!(unfixed(&p), Vec::<String>::new());
}

#[test]
fn a_standby_past_its_upstream_on_one_timeline_is_cloned() {
    let d = desired3();
    let mut o = healthy(&d);
    let n3 = node_mut(&mut o, "n3");
    n3.replay_lsn = Some(Lsn(0x5000000));
    n3.wal_match = Some(crate::observe::WalMatch {
        at: Lsn(0x5000000),
        upstream_end: Lsn(0x3000060),
        bytes: 0,
        matches: None,
    });
    let p = plan(&d, &o);
    let clone = step(&p, "clone", "n3");
    assert!(
        clone.description.contains("past n1's end of WAL"),
        "{}",
        clone.description
    );
    // The same standby a little behind its upstream is healthy.
    let mut o = healthy(&d);
    node_mut(&mut o, "n3").wal_match = Some(crate::observe::WalMatch {
        at: Lsn(0x3000000),
        upstream_end: Lsn(0x3000060),
        bytes: 256,
        matches: Some(true),
    });
    assert!(plan(&d, &o).steps.is_empty());
}

#[test]
fn a_lost_slot_is_dropped_and_its_standby_cloned_again() {
    let d = desired3();
    let mut o = healthy(&d);
    let n1 = node_mut(&mut o, "n1");
    n1.replication_slots
        .iter_mut()
        .find(|s| s.name == "n2")
        .unwrap()
        .wal_status = Some("lost".into());
    let n2 = node_mut(&mut o, "n2");
    n2.streaming = false;
    let p = plan(&d, &o);
    let drop = step(&p, "drop_slot", "n1");
    let clone = step(&p, "clone", "n2");
    assert!(before(&p, drop.id, clone.id));
    assert!(clone.description.contains("lost"), "{}", clone.description);
    assert!(drift_kinds(&d, &o).contains(&crate::diff::drift::DriftKind::SlotLost));
    assert_eq!(unfixed(&p), Vec::<String>::new());
}

#[test]
fn needed_wal_gone_from_the_upstream_is_a_lost_standby() {
    let d = desired3();
    let mut o = healthy(&d);
    node_mut(&mut o, "n1").oldest_wal = Some(Lsn(0x9000000));
    let n2 = node_mut(&mut o, "n2");
    n2.streaming = false;
    n2.receive_lsn = Some(Lsn(0x3000000));
    n2.replay_lsn = Some(Lsn(0x3000000));
    let p = plan(&d, &o);
    let clone = step(&p, "clone", "n2");
    assert!(
        clone.description.contains("pg_wal starts at 0/9000000"),
        "{}",
        clone.description
    );
}

#[test]
fn an_unreserved_slot_is_a_drift_warning() {
    let d = desired3();
    let mut o = healthy(&d);
    node_mut(&mut o, "n1").replication_slots[0].wal_status = Some("unreserved".into());
    assert!(drift_kinds(&d, &o).contains(&crate::diff::drift::DriftKind::SlotUnreserved));
    let p = plan(&d, &o);
    assert_eq!(unfixed(&p), vec!["slot.n1.n2".to_string()]);
}

#[test]
fn a_running_foreign_cluster_is_fenced_before_its_directory_moves() {
    let d = desired3();
    let mut o = healthy(&d);
    let n3 = node_mut(&mut o, "n3");
    n3.system_identifier = Some("7399999999999999999".into());
    n3.role = Some(Role::Primary);
    n3.upstream = None;
    n3.streaming = false;
    let p = plan(&d, &o);
    let fence = step(&p, "fence", "n3");
    let clone = step(&p, "clone", "n3");
    assert!(before(&p, fence.id, clone.id));
    assert!(
        clone.description.contains("another system"),
        "{}",
        clone.description
    );
    assert!(drift_kinds(&d, &o).contains(&crate::diff::drift::DriftKind::ForeignSystem));
    assert_eq!(unfixed(&p), Vec::<String>::new());
    assert_idempotent(&d, &o);
}

#[test]
fn an_unreachable_standby_is_drift_the_plan_cannot_fix() {
    let d = desired3();
    let mut o = healthy(&d);
    let n3 = node_mut(&mut o, "n3");
    n3.reachable = false;
    n3.host_reachable = false;
    n3.running = false;
    n3.unreachable_reason = Some("connection refused".into());
    let p = plan(&d, &o);
    assert!(p.steps.is_empty());
    // The node itself, and its slot on n1, which is kept while it is down (SPEC §4).
    assert_eq!(
        unfixed(&p),
        vec!["slot.n1.n3".to_string(), "node.n3".to_string()]
    );
    assert!(
        p.summary.cannot_fix[1].why.contains("unreachable"),
        "{:?}",
        p.summary.cannot_fix
    );
    assert!(!crate::render::plan::is_no_change(&p));
}

fn sync_crash(declared: &str) -> (Desired, ObservedCluster) {
    let mut d = desired3();
    d.replication.synchronous = Some(SyncSpec {
        mode: crate::config::SyncMode::Quorum,
        count: 1,
        standbys: vec!["n2".into(), "n3".into()],
    });
    let mut o = healthy(&d);
    set_primary(&mut d, declared);
    stop(&mut o, "n1", "in production", 0x3000028, true);
    node_mut(&mut o, "n2").replay_lsn = Some(Lsn(0x3000100));
    node_mut(&mut o, "n2").receive_lsn = Some(Lsn(0x3000100));
    node_mut(&mut o, "n3").receive_lsn = Some(Lsn(0x3000200));
    node_mut(&mut o, "n3").replay_lsn = Some(Lsn(0x3000200));
    (d, o)
}

#[test]
fn a_synchronous_failover_to_a_lagging_standby_is_refused() {
    let (d, o) = sync_crash("n2");
    let e = build(&d, &o, &consent()).unwrap_err();
    match &e {
        PlanError::SyncDataLoss { best, bytes, .. } => {
            assert_eq!(best, "n3");
            assert_eq!(*bytes, 0x100);
        }
        other => panic!("{other:?}"),
    }
    let mut opts = consent();
    opts.accept_data_loss = true;
    assert!(build(&d, &o, &opts).is_ok());
    let (d, o) = sync_crash("n3");
    let p = build(&d, &o, &consent()).expect("the most advanced standby may be promoted");
    step(&p, "promote", "n3");
}

#[test]
fn a_standby_whose_replay_stalls_on_received_wal_is_cloned() {
    let d = desired3();
    let mut o = healthy(&d);
    let n2 = node_mut(&mut o, "n2");
    n2.streaming = false;
    n2.replay_stall = Some(crate::observe::ReplayStall {
        replay: Lsn(0x5002AC8),
        received: Lsn(0x5138E68),
        wait_event: "RecoveryRetrieveRetryInterval".into(),
    });
    let p = plan(&d, &o);
    let clone = step(&p, "clone", "n2");
    assert!(
        clone.description.contains("does not continue its history"),
        "{}",
        clone.description
    );
    assert!(drift_kinds(&d, &o).contains(&crate::diff::drift::DriftKind::Diverged));
}

#[test]
fn a_running_old_primary_whose_host_pgtopo_cannot_reach_is_never_failed_over() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&desired3());
    let n1 = node_mut(&mut o, "n1");
    // SQL answered, but its transport failed (host key, sudo …).
    n1.reachable = false;
    n1.host_reachable = false;
    n1.unreachable_reason = Some("n1: host key for 127.0.0.1:22 does not match".into());
    let e = build(&d, &o, &consent()).unwrap_err();
    assert!(matches!(e, PlanError::OldPrimaryRunning { .. }), "{e:?}");
    assert!(e.to_string().contains("host key"), "{e}");
}

/// n2's startup process waits on a lock that pid 4242's report query holds.
fn blocked(o: &mut ObservedCluster, n: &str) {
    let x = node_mut(o, n);
    x.receive_lsn = Some(Lsn(0x3003060));
    x.replay_conflict = Some(crate::observe::ReplayConflict {
        wait_event_type: "Lock".into(),
        wait_event: "relation".into(),
        blockers: vec![crate::observe::ReplayBlocker {
            pid: 4242,
            user: Some("report".into()),
            application_name: "psql".into(),
            query: Some("select count(*) from report".into()),
            age_ms: Some(37_000),
        }],
    });
}

/// n2's WAL receiver last heard from n1 `age_ms` ago; n1 last heard from n2 `reply_ms` ago.
fn silent(o: &mut ObservedCluster, age_ms: u64, reply_ms: Option<u64>) {
    node_mut(o, "n2").last_receipt = Some(crate::observe::LastReceipt {
        last_msg_receipt_time: Some("2026-12-07 20:00:00+00".into()),
        latest_end_time: None,
        age_ms: Some(age_ms),
    });
    for r in &mut node_mut(o, "n1").replication {
        if r.application_name == "n2" {
            r.reply_age_ms = reply_ms;
        }
    }
}

#[test]
fn a_switchover_to_a_candidate_whose_replay_is_blocked_is_refused_naming_the_blocker() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&desired3());
    blocked(&mut o, "n2");
    let e = build(&d, &o, &PlanOptions::default()).unwrap_err();
    assert!(
        matches!(e, PlanError::CandidateReplayBlocked { .. }),
        "{e:?}"
    );
    let text = e.to_string();
    for want in [
        "pid 4242",
        "report",
        "select count(*) from report",
        "37 s",
        "12 kB not replayed",
    ] {
        assert!(text.contains(want), "{want} missing: {text}");
    }
    let help = miette::Diagnostic::help(&e).unwrap().to_string();
    assert!(help.contains("cancel_conflicting_queries"), "{help}");
    // Drift and the status annotation name it too.
    let kinds = drift_kinds(&desired3(), &o);
    assert!(
        kinds.contains(&crate::diff::drift::DriftKind::ReplayBlocked),
        "{kinds:?}"
    );
}

#[test]
fn with_cancel_the_switchover_cancels_the_blockers_before_anything_stops() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    d.switchover.cancel_conflicting_queries = true;
    let mut o = healthy(&desired3());
    blocked(&mut o, "n2");
    let p = plan(&d, &o);
    let cu = step(&p, "catch_up", "n2");
    let stop = step(&p, "stop", "n1");
    assert!(before(&p, cu.id, stop.id));
    assert!(
        matches!(&cu.action, Action::CatchUp(c) if c.cancel_conflicts && c.primary.as_deref() == Some("n1") && c.timeout_ms == 5_000),
        "{:?}",
        cu.action
    );
    assert!(cu.description.contains("pid 4242"), "{}", cu.description);
    // The window's estimate counts the conflict.
    let w = p.summary.write_unavailable.as_ref().unwrap();
    assert!(w.estimated_ms >= 3_000, "{w:?}");
    assert!(
        p.summary.cannot_fix.is_empty(),
        "{:?}",
        p.summary.cannot_fix
    );
}

#[test]
fn a_switchover_to_a_candidate_that_is_not_receiving_is_refused() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&desired3());
    silent(&mut o, 31_000, Some(31_000));
    let e = build(&d, &o, &PlanOptions::default()).unwrap_err();
    assert!(
        matches!(e, PlanError::CandidateNotReceiving { .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("last heard from n1 31 s ago"), "{e}");
    assert!(drift_kinds(&desired3(), &o).contains(&crate::diff::drift::DriftKind::NotReceiving));
}

#[test]
fn an_idle_upstream_that_still_gets_replies_is_no_reason_to_refuse() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&desired3());
    // Nothing to send for 25 s (no keepalive before wal_receiver_timeout / 2), replies flow.
    silent(&mut o, 25_000, Some(3_000));
    assert!(step(&plan(&d, &o), "catch_up", "n2").id > 0);
    assert!(drift_kinds(&desired3(), &o).is_empty());
}

#[test]
fn a_failover_cancels_what_blocks_the_candidates_replay_before_promoting() {
    let (d, mut o) = crashed_primary();
    blocked(&mut o, "n2");
    let p = build(&d, &o, &consent()).unwrap();
    let cu = step(&p, "catch_up", "n2");
    let promote = step(&p, "promote", "n2");
    assert!(before(&p, step(&p, "fence", "n1").id, cu.id));
    assert!(before(&p, cu.id, promote.id));
    assert!(
        matches!(&cu.action, Action::CatchUp(c) if c.cancel_conflicts && c.primary.is_none()),
        "{:?}",
        cu.action
    );
    assert!(cu.description.contains("pid 4242"), "{}", cu.description);
}

#[test]
fn rewound_node_gets_the_hba_block_the_plan_shows() {
    // pg_rewind keeps the node's own pg_hba.conf: the diff shown and the write_hba step agree.
    let (d, mut o) = crashed_primary();
    let x = node_mut(&mut o, "n1");
    x.host_reachable = true;
    if let Some(h) = &mut x.hba {
        h.managed_block = Some(vec!["host all all 0.0.0.0/0 trust".into()]);
    }
    let p = build(&d, &o, &consent()).unwrap();
    step(&p, "rewind", "n1");
    let w = step(&p, "write_hba", "n1");
    assert!(p
        .file_diffs
        .iter()
        .any(|f| f.node == "n1" && f.path.ends_with("pg_hba.conf")));
    assert!(before(&p, w.id, step(&p, "start", "n1").id));
}

#[test]
fn fates_that_replace_the_data_directory() {
    use analysis::{Fate, Rejoin};
    let clone = Fate::Rejoin(Rejoin::Clone { reason: "x".into() });
    let rewind = Fate::Rejoin(Rejoin::Rewind { reason: "x".into() });
    let new = Fate::New {
        move_aside: false,
        reason: "x".into(),
    };
    for f in [&clone, &rewind, &new] {
        assert!(f.replaces_data(), "{f:?}");
    }
    assert!(clone.copies_data() && new.copies_data() && !rewind.copies_data());
    for f in [Fate::Keep, Fate::Start, Fate::Promote, Fate::StartPrimary] {
        assert!(!f.replaces_data() && !f.copies_data(), "{f:?}");
    }
}

#[test]
fn a_candidate_of_another_system_or_diverged_is_not_promoted() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let mut o = healthy(&desired3());
    node_mut(&mut o, "n2").system_identifier = Some("7399999999999999999".into());
    let e = build(&d, &o, &consent()).unwrap_err();
    assert!(matches!(e, PlanError::CandidateNotReady { .. }), "{e:?}");
    let mut o = healthy(&desired3());
    node_mut(&mut o, "n2").wal_match = Some(crate::observe::WalMatch {
        at: Lsn(0x3000060),
        upstream_end: Lsn(0x3000060),
        bytes: 256,
        matches: Some(false),
    });
    let e = build(&d, &o, &consent()).unwrap_err();
    assert!(matches!(e, PlanError::CandidateNotReady { .. }), "{e:?}");
}

#[test]
fn a_switchover_candidate_must_receive_the_old_primarys_wal() {
    // n3 streams from n2, which streams from nothing: n3 never gets n1's last WAL.
    let mut d = desired3();
    set_primary(&mut d, "n3");
    let mut o = healthy(&desired3());
    node_mut(&mut o, "n2").streaming = false;
    let n3 = node_mut(&mut o, "n3");
    n3.upstream = Some("n2".into());
    let e = build(&d, &o, &consent()).unwrap_err();
    assert!(
        matches!(&e, PlanError::CandidateNotReceiving { why, .. } if why.contains("does not receive n1's WAL")),
        "{e:?}"
    );
    assert_eq!(
        analysis::not_fed_by(&d, &healthy(&desired3()), "n3", "n1"),
        None
    );
}

#[test]
fn replaying_a_switchover_ends_converged_and_a_missing_wait_is_caught() {
    let mut d = desired3();
    set_primary(&mut d, "n2");
    let o = healthy(&desired3());
    let p = plan(&d, &o);
    let end = super::replay(&d, &o, &p).unwrap();
    assert_eq!(end.nodes["n2"].role, Some(Role::Primary));
    assert!(crate::diff::drift::drift(&d, &end).items.is_empty());
    assert!(build(&d, &end, &consent()).unwrap().steps.is_empty());
    let steps: Vec<Step> = p
        .steps
        .iter()
        .filter(|s| s.action.kind() != "wait_replay")
        .cloned()
        .collect();
    let e = super::replay_steps(&d, &o, &steps).unwrap_err();
    assert!(
        matches!(e, super::ReplayError::BehindOldPrimary { .. }),
        "{e}"
    );
}

#[test]
fn an_equivalent_spelling_of_the_synchronous_set_needs_nothing() {
    let d = desired3_quorum();
    let mut o = healthy(&d);
    node_mut(&mut o, "n1")
        .settings
        .get_mut("synchronous_standby_names")
        .unwrap()
        .value = "any 1 (n3, N2)".into();
    assert!(plan(&d, &o).steps.is_empty());
    assert!(plan(&d, &o).file_diffs.is_empty());
    assert!(crate::diff::drift::drift(&d, &o).items.is_empty());
    node_mut(&mut o, "n1")
        .settings
        .get_mut("synchronous_standby_names")
        .unwrap()
        .value = "FIRST 1 (n3, n2)".into();
    assert!(!plan(&d, &o).steps.is_empty());
}

#[test]
fn a_running_standby_read_ahead_of_its_primary_is_not_cloned() {
    // Under writes a standby read after its primary can be ahead of what was read of it.
    let mut d = desired3();
    let mut o = healthy(&d);
    let n3 = node_mut(&mut o, "n3");
    n3.receive_lsn = Some(Lsn(0x3000100));
    n3.replay_lsn = Some(Lsn(0x3000100));
    assert!(plan(&d, &o).steps.is_empty());
    set_primary(&mut d, "n2");
    assert!(!lines(&plan(&d, &o)).iter().any(|l| l.starts_with("clone")));
    // Stopped with that WAL, it has a history the primary does not: cloned again.
    let d = desired3();
    stop(&mut o, "n3", "shut down in recovery", 0x3000100, false);
    assert!(lines(&plan(&d, &o)).contains(&"clone n3".to_string()));
}
