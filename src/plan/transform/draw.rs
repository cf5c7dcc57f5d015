//! Drawing helpers the rules share: each adds the steps of one small thing (a slot, a standby's
//! configuration, its start, its .pgpass, a stop) and records what it drew, so that no rule draws
//! it twice.

use std::collections::BTreeMap;

use crate::config::HookSpec;
use crate::diff::{self, observed, values};
use crate::observe::Role;
use crate::plan::graph::Idx;
use crate::plan::model::*;

use super::Ctx;

pub fn create_slot(
    c: &mut Ctx,
    holder: &str,
    slot: &str,
    desc: String,
    deps: &[Idx],
) -> Option<Idx> {
    if !c.eff.replication.slots {
        return None;
    }
    let key = (holder.to_string(), slot.to_string());
    if let Some(i) = c.drawn.slots_made.get(&key) {
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
    c.drawn.slots_made.insert(key, i);
    Some(i)
}

pub fn configure(c: &mut Ctx, x: &str, up: &str, apply: ConfigApply, deps: &[Idx]) -> Idx {
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

pub fn start_streaming(c: &mut Ctx, x: &str, up: &str, deps: &[Idx]) -> Idx {
    let s = c.dag.add(
        x,
        Action::Start(StartParams {
            wait_streaming_from: Some(up.into()),
        }),
        false,
        format!("wait until {x} streams from {up}"),
        deps,
    );
    c.anchors.streaming.insert(x.into(), s);
    s
}

/// The replication password in the os_user's .pgpass (only when the topology has one; once per
/// node: every step that points the node at an upstream relies on it).
pub fn pgpass(c: &mut Ctx, x: &str) -> Option<Idx> {
    c.eff.replication.password.as_ref()?;
    if !c.drawn.pgpass_written.insert(x.to_string()) {
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

pub fn stop_if_running(c: &mut Ctx, x: &str, why: &str, deps: &[Idx]) {
    let xo = observed(c.o, x);
    if !xo.running || c.drawn.stopped.contains(x) {
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
            plain_stop(ShutdownMode::Fast),
            false,
            format!("fast ({why})"),
            deps,
        );
    }
    c.drawn.stopped.insert(x.into());
}

/// A standby's slot on `up` that can no longer serve it (`lost`) is dropped before the clone
/// re-creates it.
pub fn drop_lost_slot(c: &mut Ctx, x: &str, up: &str, deps: &[Idx]) -> Option<Idx> {
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
pub fn own_settings_after_copy(c: &mut Ctx, x: &str, up: &str) {
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
        c.drawn.restarts.insert(x.into());
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
    c.anchors.streaming.insert(x.into(), s);
    c.anchors.settings_ready.insert(x.into(), s);
}

/// A stop outside a promotion: it does not open the writes-unavailable window and waits for no
/// candidate.
pub fn plain_stop(mode: ShutdownMode) -> Action {
    Action::Stop(StopParams {
        mode,
        writes_unavailable: false,
        timeout_ms: None,
        checkpointed: false,
        candidate: None,
    })
}

/// The environment of every hook of the plan.
pub fn hook_env(c: &Ctx) -> BTreeMap<String, String> {
    let new = c.eff.primary();
    let old =
        c.a.promotion
            .as_ref()
            .and_then(|p| p.old.clone())
            .and_then(|o| c.eff.nodes.get(&o))
            .unwrap_or(new);
    [
        ("PGTOPO_CLUSTER", c.eff.cluster.clone()),
        ("PGTOPO_OLD_PRIMARY", old.name.clone()),
        ("PGTOPO_OLD_PRIMARY_HOST", old.host.clone()),
        ("PGTOPO_OLD_PRIMARY_PORT", old.port.to_string()),
        ("PGTOPO_NEW_PRIMARY", new.name.clone()),
        ("PGTOPO_NEW_PRIMARY_HOST", new.host.clone()),
        ("PGTOPO_NEW_PRIMARY_PORT", new.port.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Add the hooks of one point, one after the other; returns the last.
pub fn hooks(c: &mut Ctx, point: HookPoint, specs: &[HookSpec], deps: &[Idx]) -> Option<Idx> {
    let env = hook_env(c);
    let mut last = None;
    for h in specs {
        let timeout_ms = h.timeout.0.as_millis() as u64;
        let desc = format!(
            "{}: {} (timeout {})",
            point.name(),
            h.command.join(" "),
            h.timeout
        );
        let action = Action::Hook(HookParams {
            point,
            command: h.command.clone(),
            timeout_ms,
            env: env.clone(),
        });
        let node = format!("hook.{}", point.name());
        last = Some(c.dag.add(&node, action, false, desc, deps));
    }
    last
}
