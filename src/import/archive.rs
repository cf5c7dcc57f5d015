//! An existing WAL archive read back into `archive:` (pure). The primary's archive_command and
//! archive_mode, and the restore_command of the primary or else of the first standby that has
//! one, wherever they are set (postgresql.conf or postgresql.auto.conf):
//!
//! - `pgbackrest … --stanza=S … archive-push %p` → `archive.pgbackrest` with that stanza and its
//!   `--config` (pgtopo writes the restore_command from it);
//! - any other archive_command with a restore_command → `archive.commands`, as written;
//! - an archive_command without any restore_command cannot be declared (`commands` needs both):
//!   it stays in `settings` and a note says why.
//!
//! With an archive, the three settings are left out of `settings` (pgtopo owns them).

use super::probe::Probe;
use crate::config::archive::{ArchiveCommands, ArchiveMode, ArchiveSpec, PgBackRestSpec};

/// The archive the cluster runs with, if it can be declared, and notes.
pub fn infer<'a>(
    primary: &Probe,
    standbys: impl Iterator<Item = &'a Probe>,
) -> (Option<ArchiveSpec>, Vec<String>) {
    let get = |p: &Probe, k: &str| p.archive_settings.get(k).cloned();
    let mode = match get(primary, "archive_mode").as_deref() {
        Some("always") => ArchiveMode::Always,
        Some("on") => ArchiveMode::On,
        _ => return (None, vec![]),
    };
    let Some(command) = get(primary, "archive_command") else {
        return (None, vec![]);
    };
    let restore = get(primary, "restore_command")
        .or_else(|| standbys.into_iter().find_map(|p| get(p, "restore_command")));
    let mut spec = ArchiveSpec {
        mode,
        ..ArchiveSpec::default()
    };
    if let Some(p) = pgbackrest(&command) {
        spec.pgbackrest = Some(p);
        return (Some(spec), vec![]);
    }
    match restore {
        Some(restore) => {
            spec.commands = Some(ArchiveCommands {
                archive: command,
                restore,
            });
            (Some(spec), vec![])
        }
        None => (
            None,
            vec![format!(
                "archive_command not imported as `archive:`: no node has a restore_command \
                 (`archive.commands` needs both); it stays in `settings`"
            )],
        ),
    }
}

/// The stanza and config of a `pgbackrest … archive-push %p` command.
fn pgbackrest(command: &str) -> Option<PgBackRestSpec> {
    let words: Vec<String> = command
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string())
        .collect();
    let first = words.first()?;
    if !(first == "pgbackrest" || first.ends_with("/pgbackrest"))
        || !words.iter().any(|w| w == "archive-push")
    {
        return None;
    }
    let option = |name: &str| {
        words.iter().enumerate().find_map(|(i, w)| {
            let flag = format!("--{name}");
            match w.strip_prefix(&format!("{flag}=")) {
                Some(v) => Some(v.to_string()),
                None if *w == flag => words.get(i + 1).cloned(),
                None => None,
            }
        })
    };
    Some(PgBackRestSpec {
        stanza: option("stanza")?,
        config: option("config").map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(settings: &[(&str, &str)]) -> Probe {
        Probe {
            archive_settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Probe::default()
        }
    }

    #[test]
    fn a_pgbackrest_command_becomes_its_stanza() {
        let p = probe(&[
            ("archive_mode", "always"),
            (
                "archive_command",
                "pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=shop '--pg1-path=/d 1' archive-push %p",
            ),
        ]);
        let (spec, notes) = infer(&p, std::iter::empty());
        let spec = spec.unwrap();
        assert!(notes.is_empty());
        assert_eq!(spec.mode, ArchiveMode::Always);
        let pb = spec.pgbackrest.unwrap();
        assert_eq!(pb.stanza, "shop");
        assert_eq!(
            pb.config.as_deref(),
            Some(std::path::Path::new("/etc/pgbackrest/pgbackrest.conf"))
        );
        assert_eq!(
            pgbackrest("/usr/bin/pgbackrest --stanza main archive-push %p")
                .unwrap()
                .stanza,
            "main"
        );
    }

    #[test]
    fn the_notes_commands_are_read_with_a_standby_s_restore_command() {
        let p = probe(&[("archive_mode", "on"), ("archive_command", "cp %p /a/%f")]);
        let s = probe(&[("restore_command", "scp n1:/a/%f %p")]);
        let spec = infer(&p, [&s].into_iter()).0.unwrap();
        let c = spec.commands.unwrap();
        assert_eq!(
            (c.archive.as_str(), c.restore.as_str()),
            ("cp %p /a/%f", "scp n1:/a/%f %p")
        );
        let (none, notes) = infer(&p, std::iter::empty());
        assert!(none.is_none());
        assert!(
            notes[0].contains("no node has a restore_command"),
            "{notes:?}"
        );
        let off = probe(&[("archive_mode", "off"), ("archive_command", "cp %p /a/%f")]);
        assert_eq!(infer(&off, std::iter::empty()), (None, vec![]));
    }
}
