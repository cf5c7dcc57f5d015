//! Rules: the pgBackRest stanza and its check (SPEC §1c). On the primary, once it accepts writes:
//! `create_stanza` when `pgbackrest info` saw no stanza (or the primary was not observed with
//! one: a new primary). Without a promotion it is drawn first ([`archive_stanza`]) and gates
//! every later step, so that a pgBackRest that cannot serve this cluster (an unsupported
//! PostgreSQL version, a repository it cannot write) fails the apply with nothing changed;
//! with a promotion it follows the new primary ([`archive`]). `check_archive` after the primary's archive settings are in effect, the
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

/// Whether the primary's stanza must be created: pgBackRest answered there without it, or the
/// primary was not observed with one.
fn stanza_missing(c: &Ctx) -> bool {
    let info =
        c.o.nodes
            .get(c.primary())
            .and_then(|o| o.archive.as_ref())
            .and_then(|a| a.pgbackrest.as_ref());
    info.map_or(true, |i| i.error.is_none() && !i.exists())
}

fn create_stanza(c: &mut Ctx, stanza: &str, deps: &[Idx]) -> Idx {
    let primary = c.primary();
    let s = c.dag.add(
        primary,
        Action::CreateStanza(StanzaParams {
            stanza: stanza.to_string(),
        }),
        false,
        format!("pgbackrest stanza-create {stanza}: the stanza does not exist yet"),
        deps,
    );
    c.anchors.stanza = Some(s);
    s
}

/// Early, without a promotion: create_stanza on the running primary gates every later step.
pub fn archive_stanza(c: &mut Ctx) {
    let Some(p) = c.eff.archive.as_ref().and_then(|a| a.pgbackrest()) else {
        return;
    };
    if c.a.promotion.is_some() || !stanza_missing(c) {
        return;
    }
    let deps: Vec<Idx> = c.anchors.primary_ready.into_iter().collect();
    let s = create_stanza(c, &p.stanza.clone(), &deps);
    c.dag.gate = Some(s);
}

/// Nodes declared `clone.method: backup` that the plan clones: restoring from a pgBackRest
/// backup is not built yet, so the plan says it uses pg_basebackup.
fn backup_clone_notes(c: &mut Ctx) {
    let notes: Vec<String> =
        c.a.fates
            .iter()
            .filter(|(n, f)| {
                f.copies_data() && c.eff.clone_method(n) == crate::config::CloneMethod::Backup
            })
            .map(|(n, _)| {
                format!(
                    "{n}: clone.method is backup, but restoring from a pgBackRest backup is not \
                 implemented yet: {n} is cloned with pg_basebackup from its upstream"
                )
            })
            .collect();
    c.notes.extend(notes);
}

/// create_stanza (after a promotion) and check_archive on the primary.
pub fn archive(c: &mut Ctx) {
    backup_clone_notes(c);
    let Some(p) = c.eff.archive.as_ref().and_then(|a| a.pgbackrest()) else {
        return;
    };
    let stanza = p.stanza.clone();
    let primary = c.primary();
    let mut deps: Vec<Idx> = c.anchors.primary_ready.into_iter().collect();
    let mut why_check = Vec::new();
    match c.anchors.stanza {
        Some(s) => {
            deps.push(s);
            why_check.push("the stanza is new");
        }
        None if stanza_missing(c) => {
            deps.push(create_stanza(c, &stanza, &deps.clone()));
            why_check.push("the stanza is new");
        }
        None => {}
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
        Action::CheckArchive(StanzaParams {
            stanza: stanza.clone(),
        }),
        false,
        format!(
            "pgbackrest check: WAL reaches the stanza {stanza} ({})",
            why_check.join(", ")
        ),
        &deps,
    );
}
