//! Rule: settings by ALTER SYSTEM, then a reload or a rolling restart.

use std::collections::BTreeMap;

use crate::diff::{self, observed, values, HOT_STANDBY_CRITICAL};
use crate::observe::Role;
use crate::plan::analysis::{Fate, Rejoin};
use crate::plan::graph::Idx;
use crate::plan::model::*;

use super::Ctx;

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
    c.anchors.settings_ready.insert(node.to_string(), alter);
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
        c.anchors.settings_ready.insert(node, r);
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
        c.anchors.primary_restart = Some(r);
    }
    c.drawn.restarts.insert(name.clone());
    c.anchors.settings_ready.insert(name, r);
    r
}
