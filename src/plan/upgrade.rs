//! A major-version upgrade as a plan (SPEC §1b). It is planned when a node's declared bin_dir
//! holds a newer major than the server runs (observed: `server_version_num` or PG_VERSION
//! against `<bin_dir>/postgres --version`). [`detect`] is the one place that decides it and
//! refuses what cannot be upgraded (a downgrade, a bin_dir without a usable `postgres`, a
//! cluster that is not settled); [`steps`] draws it:
//!
//! 1. `upgrade` (check) on the primary: initdb of the new cluster in `<data_dir>.pgtopo-upgrade`
//!    with the old one's options, then `pg_upgrade --check` against the running old server.
//!    Its failure is the refusal, with pg_upgrade's report; nothing has stopped yet.
//! 2. `stop` every standby (fast), then the primary (fast: a clean shutdown checkpoint).
//!    Writes are unavailable from the primary's stop.
//! 3. `upgrade` (run) on the primary: `pg_upgrade --link|--clone|--copy`, the node's own
//!    configuration files carried over, `<data_dir>` becomes the new cluster and the old one
//!    is kept as `<data_dir>.pgtopo-pre-upgrade-<UTC>`.
//! 4. `start` the primary: writes are available again. From here the old cluster must never be
//!    started (with `--link` its files are the new cluster's).
//! 5. `analyze` on the primary (`vacuumdb --all --analyze-in-stages`), which nothing waits for,
//!    and every standby re-cloned from its upstream with the ordinary clone steps, upstream
//!    first (slot created by pg_basebackup, identity, start, streaming).
//!
//! The upgrade plan does only the upgrade: whatever else differs is planned after it.

use crate::diff::address::Address;
use std::path::{Path, PathBuf};

use super::analysis::{Analysis, Fate};
pub use super::error::UpgradeError;
use super::model::*;
use super::transform::{self, Ctx};
use crate::config::{Desired, DesiredRole, UpgradeMode};
use crate::diff::observed;
use crate::observe::{ObservedCluster, ObservedNode, Role};

/// A planned upgrade of the whole cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    pub primary: String,
    pub from_major: u32,
    pub to_major: u32,
    pub old_bin_dir: PathBuf,
    pub mode: UpgradeMode,
}

/// The major a node's data is (server_version_num, else PG_VERSION).
fn data_major(x: &ObservedNode) -> Option<u32> {
    x.version.map(|v| v / 10000).or(x.data_dir.pg_version)
}

/// Whether the declared bin_dirs ask for a newer major than the cluster runs, and whether that
/// can be planned. None: nothing to upgrade (or nothing known about the binaries).
pub fn detect(d: &Desired, o: &ObservedCluster) -> Result<Option<Upgrade>, UpgradeError> {
    let mut target = None;
    for n in d.present() {
        let x = observed(o, &n.name);
        let Some(b) = &x.binaries else { continue };
        let major = b.major.ok_or_else(|| UpgradeError::BinDirUnusable {
            node: n.name.clone(),
            bin_dir: b.bin_dir.clone(),
            why: b.error.clone().unwrap_or_else(|| "no version".into()),
        })?;
        match data_major(&x) {
            Some(running) if major < running => {
                return Err(UpgradeError::Downgrade {
                    node: n.name.clone(),
                    running,
                    target: major,
                    bin_dir: b.bin_dir.clone(),
                })
            }
            Some(running) if major > running => target = target.max(Some(major)),
            _ => {}
        }
    }
    let Some(to_major) = target else {
        return Ok(None);
    };
    let p = d.primary();
    let po = observed(o, &p.name);
    let unsettled = |node: &str, why: String| UpgradeError::NotSettled {
        node: node.into(),
        target: to_major,
        why,
    };
    let from_major = data_major(&po)
        .ok_or_else(|| unsettled(&p.name, "(the primary) has no data directory".into()))?;
    settled(d, o, from_major).map_err(|(n, why)| unsettled(&n, why))?;
    let old_bin_dir = d
        .upgrade
        .from_bin_dir
        .clone()
        .or_else(|| {
            po.binaries
                .as_ref()
                .and_then(|b| b.running_bin_dir.as_ref().map(PathBuf::from))
        })
        .ok_or_else(|| UpgradeError::OldBinariesUnknown {
            node: p.name.clone(),
            from: from_major,
        })?;
    Ok(Some(Upgrade {
        primary: p.name.clone(),
        from_major,
        to_major,
        old_bin_dir,
        mode: d.upgrade.mode,
    }))
}

/// Every present node is reachable on the old major, the primary is the declared one and runs
/// as primary (or was shut down by an interrupted upgrade); standbys are re-cloned, so they
/// need only be reachable. Err: the node and why not.
fn settled(d: &Desired, o: &ObservedCluster, from: u32) -> Result<(), (String, String)> {
    for n in d.present() {
        let x = observed(o, &n.name);
        if !x.host_reachable && !x.reachable {
            let why = x.unreachable_reason.clone().unwrap_or_default();
            return Err((n.name.clone(), format!("is unreachable ({why})")));
        }
        if n.role == DesiredRole::Primary {
            if data_major(&x) != Some(from) {
                return Err((n.name.clone(), "has no PostgreSQL data directory".into()));
            }
            if x.running && x.role != Some(Role::Primary) {
                return Err((
                    n.name.clone(),
                    "is declared primary but runs as a standby".into(),
                ));
            }
        }
    }
    Ok(())
}

/// `<data_dir>.pgtopo-upgrade`.
pub fn work_dir(data_dir: &Path) -> PathBuf {
    let mut p = data_dir.as_os_str().to_owned();
    p.push(".pgtopo-upgrade");
    PathBuf::from(p)
}

/// The analysis of an upgrade: the topology as declared, every standby cloned again.
pub fn analysis(d: &Desired, u: &Upgrade) -> Analysis {
    let fates = d
        .present()
        .filter(|n| n.name != u.primary)
        .map(|n| {
            let fate = Fate::New {
                move_aside: true,
                reason: format!(
                    "PostgreSQL {} → {}: a standby is cloned again from the upgraded cluster",
                    u.from_major, u.to_major
                ),
            };
            (n.name.clone(), fate)
        })
        .collect();
    Analysis {
        eff: d.clone(),
        promotion: None,
        fates,
        notes: Vec::new(),
    }
}

/// Standbys, upstream before downstream.
fn standbys_in_order(d: &Desired, root: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([root.to_string()]);
    while let Some(up) = queue.pop_front() {
        for s in d.downstreams_of(&up) {
            out.push((s.name.clone(), up.clone()));
            queue.push_back(s.name.clone());
        }
    }
    out
}

fn upgrade_step(
    c: &mut Ctx,
    u: &Upgrade,
    phase: UpgradePhase,
    desc: String,
    deps: &[super::graph::Idx],
) -> super::graph::Idx {
    let data_dir = &c.eff.nodes[&u.primary].data_dir;
    let params = UpgradeParams {
        phase,
        from_major: u.from_major,
        to_major: u.to_major,
        old_bin_dir: u.old_bin_dir.display().to_string(),
        mode: u.mode,
        work_dir: work_dir(data_dir).display().to_string(),
    };
    c.dag.add(
        &u.primary,
        Action::Upgrade(params),
        phase == UpgradePhase::Run,
        desc,
        deps,
    )
}

fn stop(
    c: &mut Ctx,
    node: &str,
    writes_unavailable: bool,
    desc: &str,
    deps: &[super::graph::Idx],
) -> super::graph::Idx {
    c.drawn.stopped.insert(node.to_string());
    c.dag.add(
        node,
        Action::Stop(StopParams {
            mode: ShutdownMode::Fast,
            writes_unavailable,
            timeout_ms: None,
            checkpointed: false,
            candidate: None,
        }),
        false,
        desc,
        deps,
    )
}

/// The upgrade's steps (the module doc's order).
pub fn steps(c: &mut Ctx, u: &Upgrade) {
    let p = u.primary.clone();
    let (from, to) = (u.from_major, u.to_major);
    let check = upgrade_step(
        c,
        u,
        UpgradePhase::Check,
        format!("pg_upgrade --check {from} → {to} (the new cluster is initialised beside; nothing stops if it fails)"),
        &[],
    );
    let order = standbys_in_order(c.eff, &p);
    let mut stops = Vec::new();
    for (x, _) in order.iter().rev() {
        if observed(c.o, x).running {
            stops.push(stop(
                c,
                x,
                false,
                "fast (it is cloned again after the upgrade)",
                &[check],
            ));
        }
    }
    stops.push(check);
    let down = stop(
        c,
        &p,
        true,
        "fast: a clean shutdown checkpoint before pg_upgrade",
        &stops,
    );
    c.anchors.writes_down = Some(down);
    let kept = format!(
        "{}.pgtopo-pre-upgrade-<UTC>",
        c.eff.nodes[&p].data_dir.display()
    );
    let run = upgrade_step(
        c,
        u,
        UpgradePhase::Run,
        format!(
            "pg_upgrade {} {from} → {to}; the old cluster is kept as {kept}",
            u.mode.flag()
        ),
        &[down],
    );
    let up = c.dag.add(
        &p,
        Action::Start(StartParams {
            wait_streaming_from: None,
        }),
        false,
        format!("PostgreSQL {to}; from here the old cluster must never be started"),
        &[run],
    );
    c.drawn.restarts.insert(p.clone());
    c.anchors.primary_ready = Some(up);
    c.anchors.writes_up = Some(up);
    c.dag.add(
        &p,
        Action::Analyze(AnalyzeParams {
            missing_stats_only: to >= 18,
        }),
        false,
        "vacuumdb --all --analyze-in-stages (nothing waits for it)",
        &[up],
    );
    for (x, up) in order {
        c.drawn.restarts.insert(x.clone());
        transform::standbys::new_standby(c, &x, &up, true, &format!("PostgreSQL {from} → {to}"));
    }
    c.notes.extend(notes(c, u, run, up));
}

/// What cannot be rolled back after which step.
fn notes(c: &Ctx, u: &Upgrade, run: super::graph::Idx, up: super::graph::Idx) -> Vec<String> {
    let id = |i: super::graph::Idx| i.index() + 1;
    let data_dir = c.eff.nodes[&u.primary].data_dir.display();
    let back = format!(
        "move {data_dir} aside, rename {data_dir}.pgtopo-pre-upgrade-<UTC> back to {data_dir}"
    );
    let mut v = vec![format!(
        "PostgreSQL {} → {} with pg_upgrade {}: the plan does only the upgrade; other changes are planned after it",
        u.from_major, u.to_major, u.mode.flag()
    )];
    v.push(format!(
        "Before step {}, nothing is changed: a failed pg_upgrade --check stops the apply with its report",
        id(run)
    ));
    v.push(match u.mode {
        UpgradeMode::Link => format!(
            "After step {} (pg_upgrade --link) the old cluster can be restored only until step {} starts the new one ({back}, move its global/pg_control.old back to global/pg_control, set bin_dir back); after step {} the old cluster must never be started: its data files are the new cluster's",
            id(run),
            id(up),
            id(up)
        ),
        _ => format!(
            "The old cluster is kept intact ({} copies the files): until standbys are cloned it can be restored ({back}, set bin_dir back), losing the writes made after step {}",
            u.mode.flag(),
            id(up)
        ),
    });
    v.push(format!(
        "Every standby is cloned again from the upgraded primary (a full copy each); until then {} runs without standbys",
        u.primary
    ));
    v
}

/// The change lines: every present node's version.
pub fn changes(d: &Desired, u: &Upgrade) -> Vec<Change> {
    d.present()
        .map(|n| Change {
            address: Address::Node(n.name.clone()),
            action: ChangeAction::Change,
            attributes: vec![AttributeChange {
                name: "version".into(),
                before: Some(u.from_major.to_string()),
                after: Some(u.to_major.to_string()),
            }],
            reason: if n.name == u.primary {
                format!(
                    "will be upgraded with pg_upgrade {} (bin_dir {})",
                    u.mode.flag(),
                    n.bin_dir.display()
                )
            } else {
                "will be cloned again from the upgraded primary".into()
            },
        })
        .collect()
}

/// The writes-unavailable estimate: pg_upgrade's own work, plus copying with `--copy`.
pub fn estimated_ms(u: &Upgrade) -> u64 {
    match u.mode {
        UpgradeMode::Copy => 120_000,
        _ => 30_000,
    }
}

/// The data-loss line of an upgrade.
pub fn data_loss(u: &Upgrade) -> DataLoss {
    DataLoss::None {
        reason: format!(
            "{} is shut down cleanly before pg_upgrade; the standbys are cloned from the upgraded cluster",
            u.primary
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::fixtures::{desired3, healthy};
    use crate::observe::ObservedBinaries;
    use crate::plan::{build, PlanOptions};

    /// desired3 (n1 primary, n2 and n3 standbys) running 15, with every bin_dir at `major`.
    fn cluster(major: Option<u32>) -> (Desired, ObservedCluster) {
        let d = desired3();
        let mut o = healthy(&d);
        for x in o.nodes.values_mut() {
            x.binaries = Some(ObservedBinaries {
                bin_dir: "/new/bin".into(),
                major,
                error: major
                    .is_none()
                    .then(|| "/new/bin/postgres: not found".into()),
                running_bin_dir: Some("/usr/lib/postgresql/15/bin".into()),
            });
        }
        (d, o)
    }

    fn kinds(d: &Desired, o: &ObservedCluster) -> Vec<String> {
        build(d, o, &PlanOptions::default())
            .expect("plan")
            .steps
            .iter()
            .map(|s| format!("{} {}", s.action.kind(), s.node))
            .collect()
    }

    #[test]
    fn same_major_plans_nothing() {
        let (d, o) = cluster(Some(15));
        assert_eq!(detect(&d, &o), Ok(None));
        assert!(kinds(&d, &o).is_empty());
    }

    #[test]
    fn newer_major_plans_check_stops_upgrade_start_analyze_and_clones() {
        let (d, o) = cluster(Some(18));
        let plan = build(&d, &o, &PlanOptions::default()).expect("plan");
        let k: Vec<String> = plan
            .steps
            .iter()
            .map(|s| format!("{} {}", s.action.kind(), s.node))
            .collect();
        assert_eq!(
            &k[..7],
            [
                "upgrade n1",
                "stop n3",
                "stop n2",
                "stop n1",
                "upgrade n1",
                "start n1",
                "analyze n1"
            ]
        );
        for s in ["n2", "n3"] {
            assert!(k.contains(&format!("clone {s}")), "{k:?}");
            assert!(k.contains(&format!("start {s}")), "{k:?}");
        }
        let w = plan.summary.write_unavailable.as_ref().expect("window");
        assert_eq!((w.from_step, w.to_step), (4, 6));
        let run = &plan.steps[4];
        assert!(run.destructive);
        let Action::Upgrade(p) = &run.action else {
            panic!("{run:?}")
        };
        assert_eq!((p.from_major, p.to_major), (15, 18));
        assert_eq!(p.old_bin_dir, "/usr/lib/postgresql/15/bin");
        assert_eq!(p.work_dir, "/tmp/pgtopo-test/n1.pgtopo-upgrade");
        assert!(plan
            .summary
            .notes
            .iter()
            .any(|n| n.contains("after step 6 the old cluster must never be started")));
        // Nothing waits for the analyze.
        assert!(plan.steps.iter().all(|s| !s.after.contains(&7)));
    }

    #[test]
    fn a_downgrade_and_a_missing_bin_dir_are_refused() {
        let (d, o) = cluster(Some(14));
        assert!(matches!(
            detect(&d, &o),
            Err(UpgradeError::Downgrade {
                running: 15,
                target: 14,
                ..
            })
        ));
        let (d, o) = cluster(None);
        assert!(matches!(
            detect(&d, &o),
            Err(UpgradeError::BinDirUnusable { .. })
        ));
    }

    #[test]
    fn an_unreachable_standby_or_unknown_old_binaries_refuse() {
        let (d, mut o) = cluster(Some(18));
        let n3 = o.nodes.get_mut("n3").unwrap();
        n3.reachable = false;
        n3.host_reachable = false;
        assert!(matches!(
            detect(&d, &o),
            Err(UpgradeError::NotSettled { .. })
        ));
        let (d, mut o) = cluster(Some(18));
        for x in o.nodes.values_mut() {
            x.binaries.as_mut().unwrap().running_bin_dir = None;
        }
        assert!(matches!(
            detect(&d, &o),
            Err(UpgradeError::OldBinariesUnknown { from: 15, .. })
        ));
        let mut d = d;
        d.upgrade.from_bin_dir = Some("/old/bin".into());
        assert_eq!(
            detect(&d, &o).unwrap().unwrap().old_bin_dir,
            PathBuf::from("/old/bin")
        );
    }
}
