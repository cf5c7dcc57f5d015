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
//! Validation here: exactly one of `pgbackrest` and `commands`; a stanza name pgBackRest accepts;
//! commands that carry their placeholders; the three settings are not written by hand beside an
//! archive; `clone.method: backup` only with pgBackRest. No IO: whether pgBackRest, the stanza
//! and the repository answer is checked against the nodes at plan and apply time.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::diag::ConfigError;
use super::model::{Desired, DesiredRole};
use super::yaml::{Node, Value};
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

impl Desired {
    /// The settings the archive makes pgtopo own on `name`, with why (empty without an archive
    /// or for a retired node).
    pub fn archive_settings(&self, name: &str) -> Vec<(&'static str, String, String)> {
        let (Some(a), Some(node)) = (&self.archive, self.nodes.get(name)) else {
            return vec![];
        };
        if node.role == DesiredRole::Absent {
            return vec![];
        }
        let why = "the topology declares a WAL archive";
        vec![
            ("archive_mode", a.mode.as_str().to_string(), why.to_string()),
            (
                "archive_command",
                a.archive_command(&node.data_dir),
                why.to_string(),
            ),
            (
                "restore_command",
                a.restore_command(&node.data_dir),
                why.to_string(),
            ),
        ]
    }

    /// How `name` is cloned: its own `clone.method`, else the cluster's.
    pub fn clone_method(&self, name: &str) -> CloneMethod {
        self.clone_policy
            .nodes
            .get(name)
            .copied()
            .unwrap_or(self.clone_policy.method)
    }
}

// ------------------------------------------------------------------------------------------------
// Validation.

/// The rules of `archive` and `clone`.
pub fn check(root: &Node, errors: &mut Vec<ConfigError>) {
    let archive = root.get("archive");
    let pgbackrest = archive.and_then(|a| a.value.get("pgbackrest"));
    if let Some(a) = archive.filter(|a| matches!(a.value.value, Value::Map(_))) {
        let commands = a.value.get("commands");
        match (pgbackrest, commands) {
            (Some(p), Some(c)) => errors.push(
                ConfigError::new(
                    "archive_two_tools",
                    "`archive` names both `pgbackrest` and `commands`",
                )
                .label(p.key_span, "pgBackRest")
                .label(c.key_span, "and commands")
                .help("keep one: pgtopo writes archive_command and restore_command from it"),
            ),
            (None, None) => errors.push(
                ConfigError::new(
                    "archive_no_tool",
                    "`archive` names neither `pgbackrest` nor `commands`",
                )
                .label(a.key_span, "archives with nothing")
                .help("add `pgbackrest: {stanza: NAME}` or `commands: {archive: …, restore: …}`"),
            ),
            _ => {}
        }
        if let Some(s) = pgbackrest.and_then(|p| p.value.get("stanza")) {
            stanza(s, errors);
        }
        if let Some(c) = commands {
            placeholders(c, errors);
        }
        owned_settings(root, errors);
    }
    clone_needs_pgbackrest(root, pgbackrest.is_some(), errors);
}

/// A stanza name pgBackRest accepts (it is also a directory name in the repository).
fn stanza(s: &super::yaml::Entry, errors: &mut Vec<ConfigError>) {
    let Some(text) = s.value.as_str() else {
        return;
    };
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        errors.push(
            ConfigError::new("archive_stanza", format!("`{text}` is not a stanza name"))
                .label(s.value.span, "not a stanza name")
                .help(
                    "use letters, digits, `-`, `_` and `.`, as in the [stanza] of pgbackrest.conf",
                ),
        );
    }
}

/// archive needs `%p`; restore needs `%f` and `%p`.
fn placeholders(c: &super::yaml::Entry, errors: &mut Vec<ConfigError>) {
    for (key, needs) in [("archive", &["%p"][..]), ("restore", &["%f", "%p"][..])] {
        let Some(e) = c.value.get(key) else { continue };
        let Some(text) = e.value.as_str() else {
            continue;
        };
        for p in needs.iter().filter(|p| !text.contains(**p)) {
            errors.push(
                ConfigError::new(
                    "archive_placeholder",
                    format!("`archive.commands.{key}` has no `{p}`"),
                )
                .label(e.value.span, format!("no {p}"))
                .help(
                    "PostgreSQL substitutes %p (the segment's path) and %f (its file name); \
                     archive needs %p, restore needs %f and %p",
                ),
            );
        }
    }
}

/// archive_mode, archive_command and restore_command are pgtopo's beside an archive.
fn owned_settings(root: &Node, errors: &mut Vec<ConfigError>) {
    for (place, e) in super::rules::setting_entries(root) {
        let key = e.key.to_ascii_lowercase();
        if OWNED_WITH_ARCHIVE.contains(&key.as_str()) {
            errors.push(
                ConfigError::new(
                    "owned_setting",
                    format!("`{}` in {place} is managed by pgtopo", e.key),
                )
                .label(e.key_span, "set by pgtopo from `archive`")
                .help(format!(
                    "remove it: with `archive` declared, pgtopo writes `{key}` itself"
                )),
            );
        }
    }
}

/// `clone.method: backup` restores with pgBackRest.
fn clone_needs_pgbackrest(root: &Node, has_pgbackrest: bool, errors: &mut Vec<ConfigError>) {
    if has_pgbackrest {
        return;
    }
    let mut methods: Vec<&super::yaml::Entry> = Vec::new();
    methods.extend(root.at(&["clone", "method"]));
    for n in root
        .get("nodes")
        .map(|n| n.value.entries())
        .unwrap_or_default()
    {
        methods.extend(n.value.get("clone").and_then(|c| c.value.get("method")));
    }
    for m in methods
        .into_iter()
        .filter(|m| m.value.as_str() == Some("backup"))
    {
        errors.push(
            ConfigError::new(
                "clone_backup_needs_pgbackrest",
                "`clone.method: backup` needs `archive.pgbackrest`",
            )
            .label(m.value.span, "restores from a pgBackRest backup")
            .help("declare `archive: {pgbackrest: {stanza: NAME}}`, or use `method: basebackup`"),
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::load_str_with;

    fn bin() -> std::path::PathBuf {
        "/usr/lib/postgresql/18/bin".into()
    }

    const NODES: &str = "nodes:\n  n1: {host: 127.0.0.1, data_dir: /d1, role: primary}\n  n2: {host: 127.0.0.2, data_dir: '/d 2', clone: {method: backup}}\n";

    fn load(extra: &str) -> Result<Desired, String> {
        let nodes = if extra.contains("pgbackrest") {
            NODES.to_string()
        } else {
            NODES.replace(", clone: {method: backup}", "")
        };
        let text = format!("cluster: shop\n{extra}{nodes}");
        load_str_with("topology.yaml", &text, bin).map_err(|e| format!("{e:?}"))
    }

    fn codes(extra: &str) -> Vec<String> {
        let text = format!("cluster: shop\n{extra}{NODES}");
        let root = crate::config::yaml::parse(&text).unwrap().root.unwrap();
        let mut errors = crate::config::structure::check(&root);
        errors.extend(crate::config::rules::check(&root));
        errors.iter().map(|e| e.code.to_string()).collect()
    }

    #[test]
    fn pgbackrest_settings_carry_each_node_s_data_directory() {
        let d = load(
            "archive:\n  pgbackrest: {stanza: shop, config: /etc/pgbackrest/pgbackrest.conf}\n  mode: always\n",
        )
        .unwrap();
        let s = d.archive_settings("n2");
        let get = |k: &str| s.iter().find(|(n, ..)| *n == k).unwrap().1.clone();
        assert_eq!(get("archive_mode"), "always");
        assert_eq!(
            get("archive_command"),
            "pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=shop '--pg1-path=/d 2' archive-push %p"
        );
        assert_eq!(
            get("restore_command"),
            "pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=shop '--pg1-path=/d 2' archive-get %f \"%p\""
        );
        let a = d.archive.as_ref().unwrap();
        assert_eq!(a.max_lag_bytes, Some(DEFAULT_MAX_LAG_BYTES));
        assert_eq!(a.max_lag_time, Some(DEFAULT_MAX_LAG_TIME));
        assert_eq!(d.clone_method("n2"), CloneMethod::Backup);
        assert_eq!(d.clone_method("n1"), CloneMethod::Basebackup);
        assert_eq!(
            a.pgbackrest().unwrap().argv(Path::new("/d1")),
            [
                "pgbackrest",
                "--config=/etc/pgbackrest/pgbackrest.conf",
                "--stanza=shop",
                "--pg1-path=/d1"
            ]
        );
    }

    #[test]
    fn commands_are_used_as_written_and_max_lag_takes_either_kind() {
        let d = load("archive:\n  commands: {archive: 'cp %p /a/%f', restore: 'cp /a/%f %p'}\n  max_lag: 5min\n").unwrap();
        let s = d.archive_settings("n1");
        assert_eq!(s[0].1, "on");
        assert_eq!(s[1].1, "cp %p /a/%f");
        assert_eq!(s[2].1, "cp /a/%f %p");
        let a = d.archive.unwrap();
        assert_eq!(
            (a.max_lag_bytes, a.max_lag_time),
            (None, Some(DEFAULT_MAX_LAG_TIME))
        );
        let a = load("archive:\n  commands: {archive: 'cp %p /a/%f', restore: 'cp /a/%f %p'}\n  max_lag: 1GB\n").unwrap().archive.unwrap();
        assert_eq!((a.max_lag_bytes, a.max_lag_time), (Some(1 << 30), None));
    }

    #[test]
    fn without_an_archive_nothing_is_owned() {
        let d = load("clone: {method: basebackup}\n").unwrap();
        assert!(d.archive_settings("n1").is_empty());
        assert_eq!(d.clone_method("n2"), CloneMethod::Basebackup);
        let e = load("clone: {method: backup}\n").err().unwrap();
        assert!(e.contains("clone_backup_needs_pgbackrest"), "{e}");
    }

    #[test]
    fn bad_declarations_are_each_reported() {
        assert_eq!(
            codes("archive:\n  pgbackrest: {stanza: shop}\n  commands: {archive: 'cp %p /a/%f', restore: 'cp /a/%f %p'}\n"),
            ["archive_two_tools"]
        );
        assert_eq!(
            codes("archive: {mode: on}\n"),
            ["archive_no_tool", "clone_backup_needs_pgbackrest"]
        );
        assert_eq!(
            codes("archive: {pgbackrest: {stanza: shop}, mode: sometimes}\n"),
            ["unknown_value"]
        );
        assert_eq!(
            codes("archive: {pgbackrest: {stanza: 'a b'}, max_lag: lots}\n"),
            ["wrong_type", "archive_stanza"]
        );
        assert_eq!(
            codes("archive: {commands: {archive: 'cp x /a', restore: 'cp /a/x y'}}\nsettings: {archive_mode: 'on'}\n"),
            [
                "archive_placeholder",
                "archive_placeholder",
                "archive_placeholder",
                "owned_setting",
                "clone_backup_needs_pgbackrest"
            ]
        );
    }
}
