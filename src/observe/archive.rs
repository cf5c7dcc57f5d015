//! The WAL archive as one node sees it (only when the topology declares `archive:`):
//! `pg_stat_archiver` and the segments waiting in `pg_wal/archive_status` (over SQL), and, with
//! pgBackRest, `pgbackrest info --output=json` run on the node's host as its os_user (so a node
//! without pgBackRest, or one that cannot reach the repository, says so with pgBackRest's own
//! message). Records facts; the findings are [`crate::diff::archive`]'s.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{DesiredArchive, DesiredNode};
use crate::transport::{CommandSpec, Transport};

/// The archive seen from one node.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ObservedArchive {
    /// pg_stat_archiver and archive_status (None when the query failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver: Option<Archiver>,
    /// `pgbackrest info` of the declared stanza (None without pgBackRest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbackrest: Option<StanzaInfo>,
}

/// pg_stat_archiver, and what waits to be archived.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct Archiver {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    /// Seconds since the last segment was archived.
    pub last_archived_age_s: Option<f64>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    /// Seconds since the last failure.
    pub last_failed_age_s: Option<f64>,
    /// The last failure is newer than the last success: archiving fails now.
    pub failing: bool,
    /// Completed segments not archived yet (`.ready` in pg_wal/archive_status).
    pub ready_segments: u64,
    /// Their bytes (ready segments × wal_segment_size).
    pub ready_bytes: u64,
    /// Seconds since the oldest of them was completed.
    pub oldest_ready_age_s: Option<f64>,
}

/// The stanza as `pgbackrest info --output=json` describes it, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct StanzaInfo {
    /// pgBackRest failed (not installed, unreadable config, repository unreachable): its own
    /// message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The stanza's status code (0 ok, 1 missing stanza path, 2 no valid backups, 3 missing
    /// stanza data, …) and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i64>,
    #[serde(default)]
    pub status_message: String,
    /// The system identifier of the stanza's current database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_id: Option<String>,
    /// The newest backup's label, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_backup: Option<String>,
    /// The oldest and newest WAL segment in the archive of the current database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_max: Option<String>,
}

impl StanzaInfo {
    /// pgBackRest answered and the stanza exists (ok, or only no backup yet).
    pub fn exists(&self) -> bool {
        self.error.is_none() && matches!(self.status_code, Some(0) | Some(2))
    }
}

/// pg_stat_archiver with the ready segments (pg_ls_archive_statusdir, PostgreSQL 12+).
pub const ARCHIVER: &str = "select archived_count::text, last_archived_wal, \
    extract(epoch from now() - last_archived_time)::text, failed_count::text, last_failed_wal, \
    extract(epoch from now() - last_failed_time)::text, \
    coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'), false)::text, \
    (select count(*) from pg_ls_archive_statusdir() where name like '%.ready')::text, \
    (select extract(epoch from now() - min(modification)) from pg_ls_archive_statusdir() \
       where name like '%.ready')::text, \
    current_setting('wal_segment_size')::text \
    from pg_stat_archiver";

/// Observe the archive from `node`.
pub async fn observe(
    client: &tokio_postgres::Client,
    transport: &dyn Transport,
    node: &DesiredNode,
    archive: &DesiredArchive,
) -> ObservedArchive {
    let archiver = async {
        let rows = crate::pg::rows(client.simple_query(ARCHIVER).await.ok()?);
        archiver(rows.first()?)
    };
    let info = async {
        match archive.pgbackrest() {
            Some(p) => Some(stanza_info(transport, node, p).await),
            None => None,
        }
    };
    let (archiver, pgbackrest) = futures::join!(archiver, info);
    ObservedArchive {
        archiver,
        pgbackrest,
    }
}

fn archiver(r: &tokio_postgres::SimpleQueryRow) -> Option<Archiver> {
    let t = |i: usize| r.get(i).map(str::to_string);
    let n = |i: usize| r.get(i).and_then(|v| v.parse::<f64>().ok());
    let ready = n(7).unwrap_or(0.0) as u64;
    // wal_segment_size is shown with its unit (16MB).
    let seg = r
        .get(9)
        .and_then(|v| v.parse::<crate::units::ByteSize>().ok())
        .map_or(16 << 20, |b| b.0);
    Some(Archiver {
        archived_count: n(0)? as i64,
        last_archived_wal: t(1),
        last_archived_age_s: n(2),
        failed_count: n(3).unwrap_or(0.0) as i64,
        last_failed_wal: t(4),
        last_failed_age_s: n(5),
        failing: r.get(6) == Some("true"),
        ready_segments: ready,
        ready_bytes: ready * seg,
        oldest_ready_age_s: n(8),
    })
}

/// `pgbackrest [--config] --stanza=S info --output=json` as the node's os_user.
pub async fn stanza_info(
    transport: &dyn Transport,
    _node: &DesiredNode,
    p: &crate::config::archive::PgBackRestSpec,
) -> StanzaInfo {
    let mut cmd = CommandSpec::new("pgbackrest");
    if let Some(c) = &p.config {
        cmd = cmd.arg(format!("--config={}", c.display()));
    }
    cmd = cmd
        .arg(format!("--stanza={}", p.stanza))
        .args(["info", "--output=json"]);
    cmd.timeout = std::time::Duration::from_secs(30);
    match transport.run(&cmd).await {
        Err(e) => StanzaInfo {
            error: Some(format!("pgbackrest could not be run: {e}")),
            ..StanzaInfo::default()
        },
        Ok(out) if !out.success() => StanzaInfo {
            error: Some(tool_message(&out)),
            ..StanzaInfo::default()
        },
        Ok(out) => parse_info(&out.stdout_text(), &p.stanza),
    }
}

/// pgBackRest's own message of a failed run (its errors go to stdout or stderr by its config).
pub fn tool_message(out: &crate::transport::CommandOutput) -> String {
    let text = if out.stderr.trim().is_empty() {
        out.stdout_text().into_owned()
    } else {
        out.stderr.clone()
    };
    let text = text.trim();
    if text.is_empty() {
        format!("pgbackrest exited with {:?} and said nothing", out.code)
    } else {
        text.to_string()
    }
}

/// The stanza named `stanza` in `info --output=json`.
pub fn parse_info(json: &str, stanza: &str) -> StanzaInfo {
    let v: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            return StanzaInfo {
                error: Some(format!("pgbackrest info printed no JSON: {e}")),
                ..StanzaInfo::default()
            }
        }
    };
    let Some(s) = v
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == stanza))
    else {
        return StanzaInfo {
            error: Some(format!("pgbackrest info does not list the stanza {stanza}")),
            ..StanzaInfo::default()
        };
    };
    let db = s["db"].as_array().and_then(|d| d.last());
    let db_id = db.and_then(|d| d["id"].as_i64());
    let archive = s["archive"].as_array().and_then(|a| {
        a.iter()
            .rev()
            .find(|a| a["database"]["id"].as_i64() == db_id)
    });
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    StanzaInfo {
        error: None,
        status_code: s["status"]["code"].as_i64(),
        status_message: text(&s["status"]["message"]).unwrap_or_default(),
        system_id: db
            .and_then(|d| d["system-id"].as_u64())
            .map(|i| i.to_string()),
        newest_backup: s["backup"]
            .as_array()
            .and_then(|b| b.last())
            .and_then(|b| text(&b["label"])),
        archive_min: archive.and_then(|a| text(&a["min"])),
        archive_max: archive.and_then(|a| text(&a["max"])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_json_is_read() {
        let json = r#"[{"name":"shop","status":{"code":2,"message":"no valid backups"},
            "db":[{"id":1,"system-id":7000000000000000001,"version":"15"}],
            "backup":[],
            "archive":[{"database":{"id":1,"repo-key":1},"id":"15-1",
                        "min":"000000010000000000000001","max":"000000010000000000000003"}]}]"#;
        let i = parse_info(json, "shop");
        assert_eq!(i.status_code, Some(2));
        assert!(i.exists());
        assert_eq!(i.system_id.as_deref(), Some("7000000000000000001"));
        assert_eq!(i.newest_backup, None);
        assert_eq!(i.archive_max.as_deref(), Some("000000010000000000000003"));
        let missing = parse_info(
            r#"[{"name":"shop","status":{"code":1,"message":"missing stanza path"},"db":[],"backup":[],"archive":[]}]"#,
            "shop",
        );
        assert!(!missing.exists());
        assert!(parse_info("[]", "shop").error.is_some());
    }
}
