//! The WAL archive against the topology (SPEC §1c), pure: what observation saw of
//! `pg_stat_archiver`, the ready segments and `pgbackrest info` on each node → findings.
//!
//! - archiving fails: the last failure is newer than the last success, on a node that archives
//!   (the primary; every node with `mode: always`);
//! - the archive is behind by more than `archive.max_lag` (ready segments' bytes, or the age of
//!   the oldest of them);
//! - a present standby without the declared restore_command (it could not read the archive);
//! - pgBackRest does not answer on a node (not installed, config unreadable, repository
//!   unreachable): its own message;
//! - the stanza does not exist yet (`stanza-create` makes it);
//! - the stanza belongs to another system: [`foreign_stanza`] is a refusal (both identifiers),
//!   never something a plan fixes — pgtopo never pushes one cluster's WAL into another's archive.

use crate::config::archive::ArchiveMode;
use crate::config::{Desired, DesiredRole};
use crate::observe::{ObservedCluster, Role};

/// One finding about the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFinding {
    pub node: String,
    /// `failing`, `lag`, `restore_command`, `pgbackrest`, `stanza` (the address is
    /// `archive.NODE.WHAT`).
    pub what: String,
    pub detail: String,
}

/// Every finding, in node order.
pub fn findings(d: &Desired, o: &ObservedCluster) -> Vec<ArchiveFinding> {
    let Some(a) = &d.archive else {
        return vec![];
    };
    let mut out = Vec::new();
    let mut push = |node: &str, what: &str, detail: String| {
        out.push(ArchiveFinding {
            node: node.to_string(),
            what: what.to_string(),
            detail,
        })
    };
    let mut stanza_missing: Option<String> = None;
    for n in d.present() {
        let Some(obs) = o.nodes.get(&n.name).filter(|x| x.reachable) else {
            continue;
        };
        let Some(seen) = &obs.archive else { continue };
        let archives = obs.role == Some(Role::Primary) || a.mode == ArchiveMode::Always;
        if let Some(x) = seen.archiver.as_ref().filter(|_| archives) {
            if x.failing {
                push(
                    &n.name,
                    "failing",
                    format!(
                        "archiving fails on {}: {} failed {} ago, after the last success ({})",
                        n.name,
                        x.last_failed_wal.as_deref().unwrap_or("a segment"),
                        age(x.last_failed_age_s),
                        x.last_archived_wal.as_deref().unwrap_or("none yet")
                    ),
                );
            }
            let by_bytes = a.max_lag_bytes.filter(|max| x.ready_bytes > *max);
            let by_time = a
                .max_lag_time
                .filter(|max| x.oldest_ready_age_s.is_some_and(|s| s > max.as_secs_f64()));
            if by_bytes.is_some() || by_time.is_some() {
                push(
                    &n.name,
                    "lag",
                    format!(
                        "the archive is behind {} by {} segment(s) ({} bytes, the oldest {} old), \
                         more than archive.max_lag",
                        n.name,
                        x.ready_segments,
                        x.ready_bytes,
                        age(x.oldest_ready_age_s)
                    ),
                );
            }
        }
        if matches!(n.role, DesiredRole::Standby { .. }) && obs.role == Some(Role::Standby) {
            let has = obs
                .settings
                .get("restore_command")
                .is_some_and(|s| !s.value.trim().is_empty());
            if !has {
                push(
                    &n.name,
                    "restore_command",
                    format!(
                        "standby {} has no restore_command: it cannot read WAL from the archive",
                        n.name
                    ),
                );
            }
        }
        if let Some(info) = &seen.pgbackrest {
            if let Some(e) = &info.error {
                push(
                    &n.name,
                    "pgbackrest",
                    format!("pgBackRest on {}: {e}", n.name),
                );
            } else if !info.exists() && n.role == DesiredRole::Primary {
                stanza_missing = Some(n.name.clone());
            }
        }
    }
    if let (Some(node), Some(p)) = (stanza_missing, a.pgbackrest()) {
        out.push(ArchiveFinding {
            what: "stanza".into(),
            detail: format!("the pgBackRest stanza {} does not exist yet", p.stanza),
            node,
        });
    }
    out
}

/// The refusal when the stanza belongs to another system than the cluster's primary: both
/// identifiers.
pub fn foreign_stanza(d: &Desired, o: &ObservedCluster) -> Option<String> {
    let p = d.archive.as_ref()?.pgbackrest()?;
    let primary = d.primary();
    let obs = o.nodes.get(&primary.name)?;
    let ours = obs.system_identifier.as_deref()?;
    let theirs = obs
        .archive
        .as_ref()?
        .pgbackrest
        .as_ref()?
        .system_id
        .as_deref()?;
    (ours != theirs).then(|| {
        format!(
            "the pgBackRest stanza {} belongs to system {theirs}, but {} is system {ours}: \
             pgtopo never pushes one cluster's WAL into another's archive (use another stanza, \
             or remove the old one with `pgbackrest stanza-delete`)",
            p.stanza, primary.name
        )
    })
}

fn age(s: Option<f64>) -> String {
    match s {
        Some(s) => format!("{s:.0}s"),
        None => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::archive::{ArchiveSpec, PgBackRestSpec};
    use crate::observe::archive::{Archiver, ObservedArchive, StanzaInfo};
    use crate::observe::fixtures::{desired3, healthy};

    fn with_archive() -> Desired {
        let mut d = desired3();
        d.archive = ArchiveSpec {
            pgbackrest: Some(PgBackRestSpec {
                stanza: "shop".into(),
                config: None,
            }),
            ..ArchiveSpec::default()
        }
        .resolve();
        d
    }

    #[test]
    fn each_finding_and_the_foreign_stanza() {
        let d = with_archive();
        let mut o = healthy(&d);
        let sid = o.nodes["n1"].system_identifier.clone().unwrap();
        o.nodes.get_mut("n1").unwrap().archive = Some(ObservedArchive {
            archiver: Some(Archiver {
                failing: true,
                ready_segments: 5,
                ready_bytes: 80 << 20,
                oldest_ready_age_s: Some(10.0),
                ..Archiver::default()
            }),
            pgbackrest: Some(StanzaInfo {
                status_code: Some(0),
                system_id: Some(sid.clone()),
                ..StanzaInfo::default()
            }),
        });
        o.nodes.get_mut("n2").unwrap().archive = Some(ObservedArchive {
            archiver: None,
            pgbackrest: Some(StanzaInfo {
                error: Some("ERROR: [055]: unable to load info file".into()),
                ..StanzaInfo::default()
            }),
        });
        o.nodes.get_mut("n3").unwrap().archive = Some(ObservedArchive::default());
        let got: Vec<String> = findings(&d, &o)
            .into_iter()
            .map(|f| format!("archive.{}.{}", f.node, f.what))
            .collect();
        // The fixture's standbys have no restore_command.
        assert_eq!(
            got,
            [
                "archive.n1.failing",
                "archive.n1.lag",
                "archive.n2.restore_command",
                "archive.n2.pgbackrest",
                "archive.n3.restore_command"
            ]
        );
        assert_eq!(foreign_stanza(&d, &o), None);
        let n1 = o.nodes.get_mut("n1").unwrap();
        n1.archive
            .as_mut()
            .unwrap()
            .pgbackrest
            .as_mut()
            .unwrap()
            .system_id = Some("42".into());
        let why = foreign_stanza(&d, &o).unwrap();
        assert!(why.contains("system 42") && why.contains(&sid), "{why}");
    }

    #[test]
    fn without_an_archive_there_is_nothing() {
        let d = desired3();
        assert!(findings(&d, &healthy(&d)).is_empty());
    }
}
