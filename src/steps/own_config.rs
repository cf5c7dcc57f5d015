//! A node's own configuration across a pg_rewind (SPEC §4 "Node-owned configuration").
//!
//! pg_rewind makes the target's files the source's: every file that is not a relation file is
//! copied whole (postgresql.conf, pg_hba.conf, pg_ident.conf, postgresql.auto.conf, include
//! files), and whatever the source lacks is removed (an include file only the node has, a
//! `conf.d`). It leaves alone the directories both have and their modes, and a symlinked pg_wal
//! (filemap.c "pretend that pg_wal is a directory": the symlink itself is never touched).
//!
//! So before pg_rewind runs, [`save`] records what is the node's own inside its data directory:
//! those four files, every file and directory their `include`, `include_if_exists` and
//! `include_dir` directives name there (followed recursively, relative to the including file,
//! as PostgreSQL reads them; also in pg_hba.conf and pg_ident.conf, which take them from
//! PostgreSQL 16), which of them are absent, the modes of the data directory, the files and the
//! include directories, and where pg_wal points when it is a symlink. After pg_rewind,
//! [`put_back`] restores them byte for byte: files differing are written back (atomically, with
//! their mode), files the node did not have are removed again, include directories pg_rewind
//! removed are created again and the `.conf` files the source brought into them removed; modes
//! that differ are set; a pg_wal that is no longer the same symlink is an error. Everything goes
//! through the node's transport. Recovery settings in postgresql.auto.conf are the node's old
//! ones until `configure_standby` (always after a rewind) sets what the plan says, keeping the
//! node's other entries; the pg_hba.conf managed block is restored like the rest and rewritten
//! only by a `write_hba` step of the plan.
//!
//! The record is kept in memory and in `<data_dir>.pgtopo-own-config.json` (0600, content in
//! base64), written before the rewind marker exists and removed before the marker is: pgtopo
//! killed while the orphaned pg_rewind runs on leaves the marker, the next apply finishes the
//! rewind (`rewind::finish_interrupted`) and restores from that file. A record is valid only
//! while the marker exists; without a marker, a fresh one replaces it. When the rewind did not
//! finish, the clone that replaces the directory puts the recorded configuration into the
//! clone (all but the pg_wal symlink: the clone has a pg_wal directory of its own).
//!
//! Not covered: symlinked configuration files and include directories (not recorded: writing
//! would replace the link), files outside the data directory (pg_rewind does not touch them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{conf, StepContext};
use crate::apply::StepError;
use crate::transport::{CommandSpec, TransportError};

/// The files every data directory's configuration starts from, relative to it.
const ROOTS: [&str; 4] = [
    "postgresql.conf",
    "postgresql.auto.conf",
    "pg_hba.conf",
    "pg_ident.conf",
];

/// PostgreSQL's limit on include nesting (CONF_FILE_MAX_DEPTH).
const MAX_DEPTH: usize = 10;

/// What is the node's own in its data directory, paths relative to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnConfig {
    data_dir_mode: u32,
    /// Each configuration file: its content and mode, or `None` when the node has none.
    files: BTreeMap<String, Option<OwnFile>>,
    /// Each `include_dir` directory that exists, with its mode.
    dirs: BTreeMap<String, u32>,
    /// Where pg_wal points when it is a symlink.
    pg_wal_link: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OwnFile {
    mode: u32,
    #[serde(with = "base64_bytes")]
    content: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        B64.decode(String::deserialize(d)?)
            .map_err(serde::de::Error::custom)
    }
}

fn io(e: TransportError) -> StepError {
    StepError::new(e.to_string())
}

/// `<data_dir>.pgtopo-own-config.json`.
fn record_path(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    let mut p = ctx.node(node)?.data_dir.as_os_str().to_owned();
    p.push(".pgtopo-own-config.json");
    Ok(PathBuf::from(p))
}

/// Whether an include directive names a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Include {
    File,
    Dir,
}

/// The include directives of a configuration file, in order: `include`, `include_if_exists`
/// (quoted or not, with or without `=`) and `include_dir`. Double quotes around the path are
/// pg_hba.conf's quoting.
fn includes(text: &str) -> Vec<(Include, String)> {
    conf::parse(text)
        .into_iter()
        .filter_map(|l| match l {
            conf::ConfLine::Entry { name, value } => {
                let kind = match name.as_str() {
                    "include" | "include_if_exists" => Include::File,
                    "include_dir" => Include::Dir,
                    _ => return None,
                };
                let path = value.trim_matches('"');
                (!path.is_empty()).then(|| (kind, path.to_string()))
            }
            conf::ConfLine::Other(_) => None,
        })
        .collect()
}

/// `.` and `..` resolved without looking at the file system.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` as an include directive in `including` (relative to the data directory) names it:
/// relative to that file's directory unless absolute. `None` when it is outside the data
/// directory (or the directory itself, or not UTF-8).
fn inside(data_dir: &Path, including: &str, path: &str) -> Option<String> {
    let base = data_dir.join(including);
    let full = lexical(&base.parent().unwrap_or(data_dir).join(path));
    let rel = full.strip_prefix(lexical(data_dir)).ok()?.to_str()?;
    (!rel.is_empty()).then(|| rel.to_string())
}

/// The files an `include_dir` reads: names ending in `.conf`, not starting with a dot.
fn conf_file_names(names: Vec<String>) -> impl Iterator<Item = String> {
    names
        .into_iter()
        .filter(|n| !n.starts_with('.') && n.len() > 5 && n.ends_with(".conf"))
}

/// The configuration files and include directories inside the node's data directory, with the
/// files' contents (`None`: absent), found from [`ROOTS`] through their include directives.
#[derive(Debug, Default)]
struct Found {
    files: BTreeMap<String, Option<Vec<u8>>>,
    dirs: BTreeSet<String>,
}

async fn find(ctx: &StepContext, node: &str) -> Result<Found, StepError> {
    let mut found = Found::default();
    let mut queue: Vec<(String, usize)> = ROOTS.iter().map(|r| (r.to_string(), 0)).collect();
    while let Some((rel, depth)) = queue.pop() {
        if found.files.contains_key(&rel) {
            continue;
        }
        let Some(content) = read_conf(ctx, node, &rel).await? else {
            continue;
        };
        let directives = match &content {
            Some(bytes) if depth < MAX_DEPTH => includes(&String::from_utf8_lossy(bytes)),
            _ => Vec::new(),
        };
        found.files.insert(rel.clone(), content);
        for (kind, path) in directives {
            let next = follow(ctx, node, &mut found, &rel, kind, &path).await?;
            queue.extend(next.into_iter().map(|f| (f, depth + 1)));
        }
    }
    Ok(found)
}

/// A configuration file's content (`Some(None)`: it does not exist); `None` when it is a
/// directory named like one, which PostgreSQL skips too.
async fn read_conf(
    ctx: &StepContext,
    node: &str,
    rel: &str,
) -> Result<Option<Option<Vec<u8>>>, StepError> {
    let path = ctx.node(node)?.data_dir.join(rel);
    let t = ctx.transport(node)?;
    match t.read_file(&path).await {
        Ok(content) => Ok(Some(content)),
        Err(_) if t.list_dir(&path).await.map_err(io)?.is_some() => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// The files to read next for one include directive of `including`: the file it names, or the
/// `.conf` files of the directory it names (recorded in `found`). Nothing outside the data
/// directory.
async fn follow(
    ctx: &StepContext,
    node: &str,
    found: &mut Found,
    including: &str,
    kind: Include,
    path: &str,
) -> Result<Vec<String>, StepError> {
    let data_dir = &ctx.node(node)?.data_dir;
    let Some(target) = inside(data_dir, including, path) else {
        return Ok(Vec::new());
    };
    if kind == Include::File {
        return Ok(vec![target]);
    }
    let dir = data_dir.join(&target);
    let Some(names) = ctx.transport(node)?.list_dir(&dir).await.map_err(io)? else {
        return Ok(Vec::new());
    };
    let files = conf_file_names(names)
        .map(|n| format!("{target}/{n}"))
        .collect();
    found.dirs.insert(target);
    Ok(files)
}

/// What `stat -c '%a %F'` says of a path (it does not follow a symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    mode: u32,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

fn parse_stat(line: &str) -> Option<Stat> {
    let (mode, kind) = line.split_once(' ')?;
    let kind = match kind {
        "directory" => Kind::Dir,
        "symbolic link" => Kind::Symlink,
        k if k.starts_with("regular") => Kind::File,
        _ => Kind::Other,
    };
    Some(Stat {
        mode: u32::from_str_radix(mode, 8).ok()?,
        kind,
    })
}

/// Mode and kind of each of these existing paths, in order: one `stat` on the node's host.
async fn stat(ctx: &StepContext, node: &str, paths: &[PathBuf]) -> Result<Vec<Stat>, StepError> {
    let cmd = CommandSpec::new("stat")
        .arg("-c")
        .arg("%a %F")
        .arg("--")
        .args(paths.iter().map(|p| p.as_os_str()))
        .timeout(Duration::from_secs(30));
    let out = ctx.run_tool(node, &cmd).await?;
    let stats: Vec<Stat> = out.stdout_text().lines().filter_map(parse_stat).collect();
    if stats.len() != paths.len() {
        return Err(StepError::with_stderr(
            format!("{node}: unexpected output of {}", cmd.display()),
            out.stdout_text(),
        ));
    }
    Ok(stats)
}

/// Where the symlink `path` points (`readlink`, not resolved further).
async fn readlink(ctx: &StepContext, node: &str, path: &Path) -> Result<String, StepError> {
    let cmd = CommandSpec::new("readlink")
        .arg("--")
        .arg(path.as_os_str())
        .timeout(Duration::from_secs(30));
    let out = ctx.run_tool(node, &cmd).await?;
    Ok(out.stdout_text().trim_end_matches('\n').to_string())
}

/// Record the node's own configuration (see the module doc) and keep the record beside the
/// data directory. Run before pg_rewind, while nothing has touched the directory.
pub async fn save(ctx: &StepContext, node: &str) -> Result<OwnConfig, StepError> {
    let data_dir = ctx.node(node)?.data_dir.clone();
    let found = find(ctx, node).await?;
    let paths = stat_paths(&data_dir, &found);
    let stats = stat(ctx, node, &paths).await?;
    let pg_wal_link = match stats[1].kind {
        Kind::Symlink => Some(readlink(ctx, node, &paths[1]).await?),
        _ => None,
    };
    let own = record(found, &stats, pg_wal_link);
    let json = serde_json::to_vec(&own).map_err(|e| StepError::new(e.to_string()))?;
    ctx.transport(node)?
        .write_file_atomic(&record_path(ctx, node)?, &json, 0o600)
        .await
        .map_err(io)?;
    Ok(own)
}

/// What [`record`] needs stat'ed: the data directory, pg_wal, the include directories, the
/// files that exist.
fn stat_paths(data_dir: &Path, found: &Found) -> Vec<PathBuf> {
    let mut paths = vec![data_dir.to_path_buf(), data_dir.join("pg_wal")];
    paths.extend(found.dirs.iter().map(|d| data_dir.join(d)));
    paths.extend(
        found
            .files
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(rel, _)| data_dir.join(rel)),
    );
    paths
}

/// The record of what was found, `stats` in the order of [`stat_paths`]. Symlinks (files, or
/// include directories and what is in them) are left out: they are not rewritten.
fn record(found: Found, stats: &[Stat], pg_wal_link: Option<String>) -> OwnConfig {
    let (dir_stats, mut file_stats) = stats[2..].split_at(found.dirs.len());
    let mut dirs = BTreeMap::new();
    let mut linked = Vec::new();
    for (d, s) in found.dirs.into_iter().zip(dir_stats) {
        match s.kind {
            Kind::Dir => {
                dirs.insert(d, s.mode);
            }
            _ => linked.push(format!("{d}/")),
        }
    }
    let mut files = BTreeMap::new();
    for (rel, content) in found.files {
        let own = match content {
            None => None,
            Some(content) => {
                let (s, rest) = file_stats.split_first().expect("one stat per file");
                file_stats = rest;
                if s.kind != Kind::File || linked.iter().any(|d| rel.starts_with(d)) {
                    continue;
                }
                Some(OwnFile {
                    mode: s.mode,
                    content,
                })
            }
        };
        files.insert(rel, own);
    }
    OwnConfig {
        data_dir_mode: stats[0].mode,
        files,
        dirs,
        pg_wal_link,
    }
}

/// The record [`save`] left beside the data directory, if any.
pub async fn load(ctx: &StepContext, node: &str) -> Result<Option<OwnConfig>, StepError> {
    let path = record_path(ctx, node)?;
    let Some(bytes) = ctx.transport(node)?.read_file(&path).await.map_err(io)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StepError::new(format!("{node}: {}: {e}", path.display())))
}

/// Remove the record beside the data directory (no error when there is none).
pub async fn discard(ctx: &StepContext, node: &str) -> Result<(), StepError> {
    let path = record_path(ctx, node)?;
    ctx.transport(node)?.remove_file(&path).await.map_err(io)
}

/// After pg_rewind, or the clone that replaced a directory whose rewind did not finish: restore
/// `own` (when there is a record), then remove the record.
pub async fn put_back(
    ctx: &StepContext,
    node: &str,
    own: Option<&OwnConfig>,
) -> Result<(), StepError> {
    if let Some(own) = own {
        restore(ctx, node, own).await?;
    }
    discard(ctx, node).await
}

impl OwnConfig {
    /// The record for a clone: it has a pg_wal directory of its own, not the old symlink.
    pub fn for_clone(self) -> Self {
        OwnConfig {
            pg_wal_link: None,
            ..self
        }
    }
}

/// Make the data directory's configuration what `own` recorded (see the module doc).
async fn restore(ctx: &StepContext, node: &str, own: &OwnConfig) -> Result<(), StepError> {
    restore_dirs(ctx, node, own).await?;
    let mut changed = 0;
    for (rel, saved) in &own.files {
        changed += usize::from(restore_file(ctx, node, rel, saved.as_ref()).await?);
    }
    changed += restore_modes(ctx, node, own).await?;
    tracing::info!(node, changed, "own configuration put back after pg_rewind");
    Ok(())
}

/// Include directories pg_rewind removed are created again; `.conf` files that were not in
/// one before (the source's) are removed from it.
async fn restore_dirs(ctx: &StepContext, node: &str, own: &OwnConfig) -> Result<(), StepError> {
    let data_dir = &ctx.node(node)?.data_dir;
    let t = ctx.transport(node)?;
    for (dir, mode) in &own.dirs {
        let path = data_dir.join(dir);
        let Some(names) = t.list_dir(&path).await.map_err(io)? else {
            t.create_dir(&path, *mode).await.map_err(io)?;
            continue;
        };
        for name in conf_file_names(names) {
            if !own.files.contains_key(&format!("{dir}/{name}")) {
                t.remove_file(&path.join(name)).await.map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Write back a file whose content differs, or remove one the node did not have. Returns
/// whether it changed anything.
async fn restore_file(
    ctx: &StepContext,
    node: &str,
    rel: &str,
    saved: Option<&OwnFile>,
) -> Result<bool, StepError> {
    let path = ctx.node(node)?.data_dir.join(rel);
    let t = ctx.transport(node)?;
    let now = t.read_file(&path).await.map_err(io)?;
    match (saved, now) {
        (Some(f), now) if now.as_deref() != Some(&f.content[..]) => {
            t.write_file_atomic(&path, &f.content, f.mode)
                .await
                .map_err(io)?;
            Ok(true)
        }
        (None, Some(_)) => {
            t.remove_file(&path).await.map_err(io)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Set the recorded modes where they differ (one `chmod` per mode) and check that pg_wal is
/// still the symlink it was. Returns how many paths changed mode.
async fn restore_modes(ctx: &StepContext, node: &str, own: &OwnConfig) -> Result<usize, StepError> {
    let data_dir = ctx.node(node)?.data_dir.clone();
    let mut wanted: Vec<(PathBuf, u32)> = vec![(data_dir.clone(), own.data_dir_mode)];
    wanted.extend(own.dirs.iter().map(|(d, m)| (data_dir.join(d), *m)));
    wanted.extend(
        own.files
            .iter()
            .filter_map(|(rel, f)| f.as_ref().map(|f| (data_dir.join(rel), f.mode))),
    );
    let mut paths: Vec<PathBuf> = wanted.iter().map(|(p, _)| p.clone()).collect();
    paths.push(data_dir.join("pg_wal"));
    let stats = stat(ctx, node, &paths).await?;
    check_pg_wal(ctx, node, own, stats[wanted.len()], &paths[wanted.len()]).await?;
    let mut by_mode: BTreeMap<u32, Vec<PathBuf>> = BTreeMap::new();
    for ((path, mode), s) in wanted.into_iter().zip(&stats) {
        if s.mode != mode {
            by_mode.entry(mode).or_default().push(path);
        }
    }
    let mut changed = 0;
    for (mode, paths) in by_mode {
        changed += paths.len();
        let cmd = CommandSpec::new("chmod")
            .arg(format!("{mode:o}"))
            .arg("--")
            .args(paths.iter().map(|p| p.as_os_str()))
            .timeout(Duration::from_secs(30));
        ctx.run_tool(node, &cmd).await?;
    }
    Ok(changed)
}

/// pg_rewind never replaces a symlinked pg_wal; should anything have, say so rather than move
/// WAL between file systems.
async fn check_pg_wal(
    ctx: &StepContext,
    node: &str,
    own: &OwnConfig,
    now: Stat,
    path: &Path,
) -> Result<(), StepError> {
    let Some(target) = &own.pg_wal_link else {
        return Ok(());
    };
    let same = now.kind == Kind::Symlink && readlink(ctx, node, path).await? == *target;
    if same {
        return Ok(());
    }
    Err(StepError::new(format!(
        "{node}: pg_wal was a symlink to {target} before pg_rewind and is not any more"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_directives_in_every_spelling() {
        let text = "include 'a.conf'\ninclude_if_exists = 'sub/b.conf' # x\n\
                    INCLUDE_DIR conf.d\n#include 'no.conf'\nwork_mem = '4MB'\n\
                    include \"hba extra.conf\"\nhost all all 127.0.0.1/32 trust\n";
        assert_eq!(
            includes(text),
            [
                (Include::File, "a.conf".to_string()),
                (Include::File, "sub/b.conf".to_string()),
                (Include::Dir, "conf.d".to_string()),
                (Include::File, "hba extra.conf".to_string()),
            ]
        );
    }

    #[test]
    fn include_paths_resolve_from_the_including_file_and_stay_inside() {
        let d = Path::new("/d/n1");
        assert_eq!(
            inside(d, "postgresql.conf", "a.conf").as_deref(),
            Some("a.conf")
        );
        assert_eq!(
            inside(d, "conf.d/x.conf", "../b.conf").as_deref(),
            Some("b.conf")
        );
        assert_eq!(
            inside(d, "postgresql.conf", "/d/n1/./c/d.conf").as_deref(),
            Some("c/d.conf")
        );
        assert_eq!(inside(d, "postgresql.conf", "../n2/e.conf"), None);
        assert_eq!(inside(d, "postgresql.conf", "/etc/postgresql/f.conf"), None);
        assert_eq!(inside(d, "postgresql.conf", "."), None);
    }

    #[test]
    fn stat_lines() {
        let s = |m, kind| Some(Stat { mode: m, kind });
        assert_eq!(parse_stat("750 directory"), s(0o750, Kind::Dir));
        assert_eq!(parse_stat("600 regular empty file"), s(0o600, Kind::File));
        assert_eq!(parse_stat("777 symbolic link"), s(0o777, Kind::Symlink));
        assert_eq!(parse_stat("stat: cannot statx"), None);
    }

    #[test]
    fn include_dir_reads_dot_conf_files_only() {
        let names = ["a.conf", ".hidden.conf", "b.txt", ".conf", "c.conf"].map(String::from);
        assert_eq!(
            conf_file_names(names.to_vec()).collect::<Vec<_>>(),
            ["a.conf", "c.conf"]
        );
    }
}
