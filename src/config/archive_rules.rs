//! What `archive:` and `clone:` make of each node ([`Desired::archive_settings`],
//! [`Desired::clone_method`]), and their validation: exactly one of `pgbackrest` and `commands`;
//! a stanza name pgBackRest accepts; commands that carry their placeholders; the three settings
//! are not written by hand beside an archive; `clone.method: backup` only with pgBackRest. No
//! IO: whether pgBackRest, the stanza and the repository answer is checked against the nodes at
//! plan and apply time.

use super::archive::{CloneMethod, OWNED_WITH_ARCHIVE};
use super::diag::ConfigError;
use super::model::{Desired, DesiredRole};
use super::yaml::{Node, Value};

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
    for (place, e) in super::yaml::setting_entries(root) {
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
    use crate::config::archive::*;
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
