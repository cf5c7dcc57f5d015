//! Rule: the standbys, upstream first: start, re-point, new standby, rejoin.

use std::collections::HashMap;

use crate::config::DesiredRole;
use crate::diff::{self, observed};
use crate::observe::Role;
use crate::plan::analysis::{Fate, Rejoin};
use crate::plan::graph::Idx;
use crate::plan::model::*;
use crate::units::ByteSize;

use super::draw::*;
use super::Ctx;

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
        c.drawn.restarts.insert(x.into());
        ConfigApply::Restart
    };
    let mut deps = ready;
    deps.extend(slot);
    let cfg = configure(c, x, up, apply, &deps);
    if xo.running {
        c.anchors.streaming.insert(x.into(), cfg);
    } else {
        start_streaming(c, x, up, &[]);
    }
}

/// New standby: .pgpass, clone from its upstream (slot created by pg_basebackup), its identity,
/// start, wait until streaming; then its own settings.
pub fn new_standby(c: &mut Ctx, x: &str, up: &str, move_aside: bool, reason: &str) {
    let mut deps = c.ready(up);
    deps.extend(c.anchors.role_step);
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
        c.drawn.slots_made.insert((up.into(), s), ci);
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
            if c.drawn.checkpoint.is_none() {
                let p = c.primary().to_string();
                let deps: Vec<Idx> = c.anchors.primary_ready.into_iter().collect();
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
                c.drawn.checkpoint = Some(ck);
            }
            if was_primary {
                pgpass(c, x);
            }
            let mut deps = ready.clone();
            deps.extend(c.drawn.checkpoint);
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
        c.drawn.restarts.insert(x.into());
    }
}
