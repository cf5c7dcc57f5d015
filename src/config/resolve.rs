//! [`TopologyFile`] (checked) → [`Desired`]: every default resolved.
//!
//! - `os_user`: the node's, else `postgres.os_user`, else `postgres`.
//! - `bin_dir`: the node's, else `postgres.bin_dir`, else the highest-versioned existing
//!   `/usr/lib/postgresql/<version>/bin`, else `/usr/lib/postgresql/15/bin`. Looking for that
//!   directory is the one bit of IO of resolution, done only when some node needs it; callers
//!   that want no IO at all pass their own [`BinDirProbe`].
//! - role: `primary`, `standby` (the default) following `upstream` or else the primary, or
//!   `state: absent` → [`DesiredRole::Absent`].
//! - settings: the cluster's merged with the node's (the node wins).

use std::path::{Path, PathBuf};

use super::model::{
    ClonePolicy, Desired, DesiredNode, DesiredRole, NodeRole, NodeState, Promotability,
    TopologyFile, DEFAULT_FAILOVER_PRIORITY,
};

/// Where the default bin directory comes from.
pub type BinDirProbe = fn() -> PathBuf;

/// Debian's layout: the highest-versioned `/usr/lib/postgresql/*/bin` that exists.
pub fn default_bin_dir() -> PathBuf {
    highest_versioned_bin(Path::new("/usr/lib/postgresql"))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// The `<root>/<version>/bin` directory with the highest numeric version.
pub fn highest_versioned_bin(root: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version: Vec<u32> = name
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            let bin = e.path().join("bin");
            bin.is_dir().then_some((version, bin))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// Resolve a topology that passed every check. `probe` is asked for the default bin directory
/// at most once, and only when a node has none.
pub fn resolve(
    file: TopologyFile,
    source_path: PathBuf,
    sha256: String,
    probe: BinDirProbe,
) -> Desired {
    let primary = file
        .nodes
        .iter()
        .find(|(_, n)| n.role == Some(NodeRole::Primary) && n.state == NodeState::Present)
        .map(|(name, _)| name.clone())
        .unwrap_or_default();
    let mut default_bin: Option<PathBuf> = file.postgres.bin_dir.clone();
    let default_user = file
        .postgres
        .os_user
        .clone()
        .unwrap_or_else(|| "postgres".into());
    let cluster_settings = &file.settings;
    let nodes = file
        .nodes
        .iter()
        .map(|(name, n)| {
            let bin_dir = match &n.bin_dir {
                Some(b) => b.clone(),
                None => default_bin.get_or_insert_with(probe).clone(),
            };
            let role = match (n.state, n.role) {
                (NodeState::Absent, _) => DesiredRole::Absent,
                (_, Some(NodeRole::Primary)) => DesiredRole::Primary,
                _ => DesiredRole::Standby {
                    upstream: n.upstream.clone().unwrap_or_else(|| primary.clone()),
                },
            };
            let mut settings: std::collections::BTreeMap<String, String> = cluster_settings
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            settings.extend(n.settings.iter().map(|(k, v)| (k.clone(), v.0.clone())));
            if let Some(d) = n.apply_delay {
                settings.insert(
                    "recovery_min_apply_delay".into(),
                    format!("{}ms", d.0.as_millis()),
                );
            }
            let node = DesiredNode {
                name: name.clone(),
                host: n.host.clone(),
                port: n.port,
                data_dir: n.data_dir.clone(),
                bin_dir,
                os_user: n.os_user.clone().unwrap_or_else(|| default_user.clone()),
                ssh: n.ssh.clone(),
                role,
                settings,
                promotion: Promotability {
                    failover_priority: n.failover_priority.unwrap_or(DEFAULT_FAILOVER_PRIORITY),
                    apply_delay: n.apply_delay.map(|d| d.0).filter(|d| !d.is_zero()),
                },
                tls: n.tls.clone().unwrap_or_default(),
                // Validation has reported a malformed service.
                service: n
                    .service
                    .as_ref()
                    .and_then(|s| s.resolve().ok())
                    .unwrap_or_default(),
                config_dir: n.config_dir.clone(),
            };
            (name.clone(), node)
        })
        .collect();
    Desired {
        cluster: file.cluster,
        source_path,
        sha256,
        connect: file.connect,
        replication: file.replication,
        hba: file.hba,
        failover: file.failover,
        switchover: file.switchover,
        poolers: super::pooler::resolve_poolers(&file.poolers, &default_user),
        hooks: file.hooks,
        logical_slots: file.logical_slots,
        nodes,
        upgrade: file.postgres.upgrade.unwrap_or_default(),
        archive: file.archive.and_then(super::archive::ArchiveSpec::resolve),
        clone_policy: ClonePolicy {
            method: file.clone_spec.unwrap_or_default().method,
            nodes: file
                .nodes
                .iter()
                .filter_map(|(name, n)| Some((name.clone(), n.clone_spec?.method)))
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_version_wins_numerically() {
        let dir = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "18", "100x"] {
            std::fs::create_dir_all(dir.path().join(v).join("bin")).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("19")).unwrap(); // no bin: ignored
        assert_eq!(
            highest_versioned_bin(dir.path()),
            Some(dir.path().join("18").join("bin"))
        );
        assert_eq!(highest_versioned_bin(&dir.path().join("missing")), None);
    }
}
