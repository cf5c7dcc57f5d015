//! The WAL archive (`archive:`) and how standbys are cloned (`clone:`), SPEC §1c.
//!
//! With an archive declared, pgtopo owns three settings on every present node: `archive_mode`
//! (`on` or `always`), `archive_command` and `restore_command`. With `pgbackrest` they are
//! `pgbackrest [--config=C] --stanza=S --pg1-path=DATA_DIR archive-push %p` and
//! `… archive-get %f "%p"`: each node passes its own data directory (pgBackRest refuses to run
//! where `pg1-path` differs from the server's), so one operator-owned pgbackrest.conf serves
//! every node; pgtopo reads that file, never writes it. With `commands` they are the operator's
//! own commands, as written. Every value is derived here, in one place: the settings machinery
//! (ALTER SYSTEM, reload, restart for `archive_mode`) applies them and reports their drift like
//! any other setting.
//!
//! `clone.method` (cluster-wide, a node may override it) says how a new or re-cloned standby is
//! made: `basebackup` from its upstream (the default) or `backup` (`pgbackrest restore`), which
//! needs `archive.pgbackrest`.
//!
//! The per-node settings and clone methods, and validation, are in [`super::archive_rules`].

use std::path::{Path, PathBuf};
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, Duration};

/// `archive:` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSpec {
    /// pgBackRest does the work (Debian package `pgbackrest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pgbackrest: Option<PgBackRestSpec>,
    /// Instead of `pgbackrest`, plain commands (`%p` / `%f` as PostgreSQL substitutes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<ArchiveCommands>,
    /// `on` (the primary archives) or `always` (standbys archive too).
    #[serde(default)]
    pub mode: ArchiveMode,
    /// The archive may be behind by at most this: a size (`64MB`) or a duration (`5min`);
    /// default both 64MB and 5 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lag: Option<ArchiveLag>,
}

/// `archive.pgbackrest`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PgBackRestSpec {
    /// The stanza in the nodes' pgbackrest.conf.
    pub stanza: String,
    /// pgbackrest.conf (operator-owned, the same path on every node); default pgBackRest's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
}

/// `archive.commands`: the operator's own archive and restore commands.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveCommands {
    /// archive_command (`%p` is the segment's path).
    pub archive: String,
    /// restore_command (`%f` the file wanted, `%p` where to put it).
    pub restore: String,
}

/// archive_mode.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveMode {
    #[default]
    On,
    Always,
}

impl ArchiveMode {
    /// The archive_mode value.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveMode::On => "on",
            ArchiveMode::Always => "always",
        }
    }
}

/// `archive.max_lag`: a size or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArchiveLag {
    Size(ByteSize),
    Time(Duration),
}

impl FromStr for ArchiveLag {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(b) = s.parse::<ByteSize>() {
            return Ok(ArchiveLag::Size(b));
        }
        s.parse::<Duration>()
            .map(ArchiveLag::Time)
            .map_err(|_| format!("{s:?} is neither a size (64MB) nor a duration (5min)"))
    }
}

impl JsonSchema for ArchiveLag {
    fn schema_name() -> String {
        "ArchiveLag".into()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "a size (64MB) or a duration (5min)",
            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]
        }))
        .expect("static schema")
    }
}

/// `clone:` (cluster-wide, and per node).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CloneSpec {
    /// `basebackup` (pg_basebackup from the upstream) or `backup` (pgbackrest restore).
    #[serde(default)]
    pub method: CloneMethod,
}

/// How a standby is cloned.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum CloneMethod {
    #[default]
    Basebackup,
    Backup,
}

// ------------------------------------------------------------------------------------------------
// Resolved.

/// The validated archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredArchive {
    pub tool: ArchiveTool,
    pub mode: ArchiveMode,
    /// Drift when the archive is further behind than this many bytes…
    pub max_lag_bytes: Option<u64>,
    /// …or than this long.
    pub max_lag_time: Option<std::time::Duration>,
}

/// Who archives and restores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveTool {
    PgBackRest(PgBackRestSpec),
    Commands(ArchiveCommands),
}

/// The default `archive.max_lag`: 64MB or 5 minutes.
pub const DEFAULT_MAX_LAG_BYTES: u64 = 64 << 20;
pub const DEFAULT_MAX_LAG_TIME: std::time::Duration = std::time::Duration::from_secs(300);

/// The settings an archive makes pgtopo own.
pub const OWNED_WITH_ARCHIVE: [&str; 3] = ["archive_mode", "archive_command", "restore_command"];

impl ArchiveSpec {
    /// The resolved archive (validation guarantees exactly one tool).
    pub fn resolve(self) -> Option<DesiredArchive> {
        let tool = match (self.pgbackrest, self.commands) {
            (Some(p), None) => ArchiveTool::PgBackRest(p),
            (None, Some(c)) => ArchiveTool::Commands(c),
            _ => return None,
        };
        let (max_lag_bytes, max_lag_time) = match self.max_lag {
            None => (Some(DEFAULT_MAX_LAG_BYTES), Some(DEFAULT_MAX_LAG_TIME)),
            Some(ArchiveLag::Size(b)) => (Some(b.0), None),
            Some(ArchiveLag::Time(d)) => (None, Some(d.0)),
        };
        Some(DesiredArchive {
            tool,
            mode: self.mode,
            max_lag_bytes,
            max_lag_time,
        })
    }
}

impl PgBackRestSpec {
    /// `pgbackrest [--config=C] --stanza=S --pg1-path=DATA_DIR`: the start of every pgBackRest
    /// command pgtopo runs or writes for the node whose data directory is `data_dir`.
    pub fn argv(&self, data_dir: &Path) -> Vec<String> {
        let mut argv = vec!["pgbackrest".to_string()];
        if let Some(c) = &self.config {
            argv.push(format!("--config={}", c.display()));
        }
        argv.push(format!("--stanza={}", self.stanza));
        argv.push(format!("--pg1-path={}", data_dir.display()));
        argv
    }

    /// The same as one shell line (archive_command and restore_command are run by `sh -c`).
    fn shell(&self, data_dir: &Path) -> String {
        self.argv(data_dir)
            .iter()
            .map(|w| sh_word(w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `w` as one shell word: as is when it holds only safe characters, else single-quoted.
fn sh_word(w: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_=./:,@%+".contains(c);
    if !w.is_empty() && w.chars().all(safe) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

impl DesiredArchive {
    /// archive_command on the node with this data directory.
    pub fn archive_command(&self, data_dir: &Path) -> String {
        match &self.tool {
            ArchiveTool::PgBackRest(p) => format!("{} archive-push %p", p.shell(data_dir)),
            ArchiveTool::Commands(c) => c.archive.clone(),
        }
    }

    /// restore_command on the node with this data directory.
    pub fn restore_command(&self, data_dir: &Path) -> String {
        match &self.tool {
            ArchiveTool::PgBackRest(p) => format!("{} archive-get %f \"%p\"", p.shell(data_dir)),
            ArchiveTool::Commands(c) => c.restore.clone(),
        }
    }

    /// pgBackRest's part, when it does the work.
    pub fn pgbackrest(&self) -> Option<&PgBackRestSpec> {
        match &self.tool {
            ArchiveTool::PgBackRest(p) => Some(p),
            ArchiveTool::Commands(_) => None,
        }
    }
}

/// How each standby is cloned: the cluster's method and the nodes' own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClonePolicy {
    pub method: CloneMethod,
    /// Nodes with their own `clone.method`.
    pub nodes: std::collections::BTreeMap<String, CloneMethod>,
}
