//! Rule: the pgBackRest stanza and its check (SPEC §1c). On the primary, once it accepts writes:
//! `create_stanza` when `pgbackrest info` saw no stanza (or the primary was not observed with
//! one: a new primary); `check_archive` after the primary's archive settings are in effect, the
//! stanza exists and any promotion is done — drawn when the plan creates the stanza, changes
//! the primary's archive settings or promotes a node. The settings themselves are the ordinary
//! settings machinery's ([`super::settings_rolling`]).
//!
//! Refused ([`refusal`]): a stanza of another system (both identifiers), and pgBackRest failing
//! on a node whose archive the plan configures (its own message) — nothing is changed then.

use crate::config::Desired;
use crate::diff::archive::foreign_stanza;
use crate::observe::ObservedCluster;
use crate::plan::error::PlanError;
use crate::plan::graph::Idx;
use crate::plan::model::*;

use super::Ctx;

/// Whether the plan changes one of the archive settings on `name`.
fn configures(d: &Desired, o: &ObservedCluster, name: &str) -> bool {
    let owned = crate::config::archive::OWNED_WITH_ARCHIVE;
    crate::diff::setting_diffs(d, o, name)
        .iter()
        .any(|s| owned.contains(&s.name.as_str()))
}

/// The plan is refused: a foreign stanza, or pgBackRest failing where the archive is configured.
pub fn refusal(d: &Desired, o: &ObservedCluster) -> Option<PlanError> {
    d.archive.as_ref()?.pgbackrest()?;
    if let Some(why) = foreign_stanza(d, o) {
        return Some(PlanError::ForeignStanza { why });
    }
    d.present().find_map(|n| {
        let info = o
            .nodes
            .get(&n.name)?
            .archive
            .as_ref()?
            .pgbackrest
            .as_ref()?;
        let message = info.error.clone()?;
        configures(d, o, &n.name).then(|| PlanError::PgBackRest {
            node: n.name.clone(),
            message,
        })
    })
}

/// create_stanza and check_archive on the primary.
pub fn archive(c: &mut Ctx) {
    let Some(p) = c.eff.archive.as_ref().and_then(|a| a.pgbackrest()) else {
        return;
    };
    let primary = c.primary();
    let params = StanzaParams {
        stanza: p.stanza.clone(),
    };
    let info =
        c.o.nodes
            .get(primary)
            .and_then(|o| o.archive.as_ref())
            .and_then(|a| a.pgbackrest.as_ref());
    let mut deps: Vec<Idx> = c.anchors.primary_ready.into_iter().collect();
    let mut why_check = Vec::new();
    if info.map_or(true, |i| i.error.is_none() && !i.exists()) {
        let s = c.dag.add(
            primary,
            Action::CreateStanza(params.clone()),
            false,
            format!(
                "pgbackrest stanza-create {}: the stanza does not exist yet",
                p.stanza
            ),
            &deps,
        );
        deps.push(s);
        why_check.push("the stanza is new");
    }
    if configures(c.eff, c.o, primary) {
        why_check.push("the archive settings change");
    }
    if let Some(w) = c.anchors.writes_up {
        deps.push(w);
        why_check.push("a new primary");
    }
    if why_check.is_empty() {
        return;
    }
    deps.extend(c.anchors.settings_ready.get(primary).copied());
    deps.extend(c.anchors.primary_restart);
    c.dag.add(
        primary,
        Action::CheckArchive(params),
        false,
        format!(
            "pgbackrest check: WAL reaches the stanza {} ({})",
            p.stanza,
            why_check.join(", ")
        ),
        &deps,
    );
}
