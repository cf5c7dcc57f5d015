//! The file side of observation, used when SQL does not answer: the data directory through the
//! node's transport (exists, empty, PG_VERSION, postmaster.pid, standby.signal, the recovery
//! settings in postgresql.auto.conf, pg_hba.conf, the current timeline's history file) and
//! `pg_controldata` run as the node's os_user.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::Digest;

use super::conninfo::{managed_block, managed_block_line, parse_config_file, parse_conninfo};
use super::model::*;
use crate::config::DesiredNode;
use crate::transport::{CommandSpec, Transport, TransportError};

/// Run `pg_controldata` on the node's data directory through its transport and parse it.
pub async fn read_control_data(
    transport: &dyn Transport,
    node: &DesiredNode,
) -> Result<ControlData, TransportError> {
    let program = node.bin_dir.join("pg_controldata");
    let cmd = CommandSpec::new(&program)
        .arg(&node.data_dir)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .timeout(std::time::Duration::from_secs(10));
    let out = transport.run(&cmd).await?;
    let fail = |message: String| TransportError::Io {
        host: transport.describe(),
        op: "pg_controldata",
        path: node.data_dir.display().to_string(),
        message,
    };
    if !out.success() {
        return Err(fail(format!(
            "exit {}: {}",
            out.code.map_or("by signal".to_string(), |c| c.to_string()),
            out.stderr.trim()
        )));
    }
    parse_control_data(&out.stdout_text()).map_err(fail)
}

/// Parse `pg_controldata` output (C locale).
pub fn parse_control_data(text: &str) -> Result<ControlData, String> {
    let fields: std::collections::BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let get = |k: &str| {
        fields
            .get(k)
            .copied()
            .ok_or_else(|| format!("pg_controldata printed no {k:?}"))
    };
    let lsn = |k: &str| {
        get(k)?
            .parse::<crate::units::Lsn>()
            .map_err(|e| format!("{k}: {e}"))
    };
    let int = |k: &str| get(k)?.parse::<u32>().map_err(|e| format!("{k}: {e}"));
    Ok(ControlData {
        system_identifier: get("Database system identifier")?.to_string(),
        cluster_state: get("Database cluster state")?.to_string(),
        latest_checkpoint: lsn("Latest checkpoint location")?,
        latest_checkpoint_redo: lsn("Latest checkpoint's REDO location")?,
        checkpoint_timeline: int("Latest checkpoint's TimeLineID")?,
        min_recovery_end: lsn("Minimum recovery ending location")?,
        min_recovery_end_timeline: int("Min recovery ending loc's timeline")?,
        wal_log_hints: get("wal_log_hints setting")? == "on",
        data_checksums: get("Data page checksum version")? != "0",
        wal_segment_size: get("Bytes per WAL segment")?
            .parse()
            .map_err(|e| format!("Bytes per WAL segment: {e}"))?,
    })
}

/// Fill what the files say about a node whose server did not answer SQL. `setting_names` are
/// the settings of interest (the topology's and the fixed list); those written in
/// postgresql.conf / postgresql.auto.conf are recorded as written, with an empty `context`.
pub async fn observe_files(
    transport: &dyn Transport,
    desired: &DesiredNode,
    setting_names: &std::collections::BTreeSet<String>,
    node: &mut ObservedNode,
) {
    let dir = &desired.data_dir;
    let entries = match transport.list_dir(dir).await {
        Ok(e) => e,
        Err(e) => {
            node.host_reachable = !e.host_unusable();
            node.files_error = Some(e.to_string());
            return;
        }
    };
    node.host_reachable = true;
    let Some(entries) = entries else {
        node.data_dir = DataDirState::default();
        return;
    };
    let has = |name: &str| entries.iter().any(|e| e == name);
    node.data_dir = DataDirState {
        exists: true,
        empty: entries.is_empty(),
        pg_version: None,
    };
    if has("PG_VERSION") {
        node.data_dir.pg_version = read_text(transport, &dir.join("PG_VERSION"))
            .await
            .and_then(|v| v.trim().parse().ok());
    }
    node.standby_signal = has("standby.signal");
    if has("postmaster.pid") {
        node.running = postmaster_running(transport, desired).await;
    }
    if node.data_dir.pg_version.is_none() {
        return;
    }
    let conf = read_settings(transport, dir, setting_names, node).await;
    let hba_path = conf
        .get("hba_file")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.join("pg_hba.conf"));
    if let Some(hba) = read_hba(transport, &hba_path).await {
        node.hba = Some(hba);
    }
    read_control(transport, desired, node).await;
    node.role = Some(role_from_files(node.standby_signal));
    if let Some(unfinished) = rewind_unfinished(transport, dir, node.control.as_ref()).await {
        node.rewind_unfinished = unfinished;
    }
    if let Some(tli) = node.timeline.filter(|t| *t > 1) {
        let path = dir.join("pg_wal").join(format!("{tli:08X}.history"));
        if let Some(t) = read_text(transport, &path).await {
            node.timeline_history = super::sql::parse_history(&t);
        }
    }
}

/// Settings as the next start would see them (postgresql.auto.conf wins; include directives
/// and configuration files outside the data directory are not followed): the settings of
/// interest, primary_conninfo and primary_slot_name into `node`. Returns every setting read.
async fn read_settings(
    transport: &dyn Transport,
    dir: &Path,
    setting_names: &std::collections::BTreeSet<String>,
    node: &mut ObservedNode,
) -> BTreeMap<String, String> {
    let mut conf = BTreeMap::new();
    let mut from_file = BTreeMap::new();
    for f in ["postgresql.conf", "postgresql.auto.conf"] {
        if let Some(t) = read_text(transport, &dir.join(f)).await {
            for (k, v) in parse_config_file(&t) {
                from_file.insert(k.clone(), f);
                conf.insert(k, v);
            }
        }
    }
    node.settings = conf
        .iter()
        .filter(|(k, _)| setting_names.contains(*k))
        .map(|(k, v)| {
            (
                k.clone(),
                ObservedSetting {
                    value: v.clone(),
                    raw: None,
                    unit: None,
                    pending_restart: false,
                    context: String::new(),
                    source: format!("file {}", from_file[k]),
                },
            )
        })
        .collect();
    node.primary_conninfo = conf
        .get("primary_conninfo")
        .filter(|s| !s.is_empty())
        .map(|s| parse_conninfo(s));
    node.primary_slot_name = conf
        .get("primary_slot_name")
        .filter(|s| !s.is_empty())
        .cloned();
    conf
}

/// pg_hba.conf at `path`, when it can be read.
async fn read_hba(transport: &dyn Transport, path: &Path) -> Option<ObservedHba> {
    let Ok(Some(bytes)) = transport.read_file(path).await else {
        return None;
    };
    let text = String::from_utf8_lossy(&bytes);
    Some(ObservedHba {
        path: path.display().to_string(),
        managed_block: managed_block(&text),
        block_line: Some(managed_block_line(&text)),
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        errors: Vec::new(),
    })
}

/// pg_controldata's facts, and the WAL segments in pg_wal.
async fn read_control(transport: &dyn Transport, desired: &DesiredNode, node: &mut ObservedNode) {
    // Also for a postmaster that runs but does not answer us (starting, shutting down,
    // authentication refused): pg_control then lags a little, but the system identifier and the
    // timeline are still right, and `running` says how to read the rest.
    match read_control_data(transport, desired).await {
        Ok(cd) => {
            node.system_identifier = Some(cd.system_identifier.clone());
            node.timeline = Some(cd.checkpoint_timeline.max(cd.min_recovery_end_timeline));
            // What pg_rewind could read of this node's own WAL (pg_wal may be a symbolic link:
            // listing follows it).
            if let Ok(Some(names)) = transport.list_dir(&desired.data_dir.join("pg_wal")).await {
                node.wal_segments = Some(WalSegments::from_names(
                    cd.wal_segment_size,
                    names.iter().map(String::as_str),
                ));
            }
            node.control = Some(cd);
        }
        Err(e) => node.files_error = Some(e.to_string()),
    }
}

/// With a rewind marker beside the data directory: whether the rewind did not finish (pg_rewind
/// writes backup_label and "in archive recovery" last). None without a marker.
async fn rewind_unfinished(
    transport: &dyn Transport,
    dir: &Path,
    control: Option<&ControlData>,
) -> Option<bool> {
    let mut marker = dir.as_os_str().to_owned();
    marker.push(".pgtopo-rewinding");
    let Ok(Some(_)) = transport.read_file(Path::new(&marker)).await else {
        return None;
    };
    let by_rewind = read_text(transport, &dir.join("backup_label"))
        .await
        .is_some_and(|t| t.lines().any(|l| l.trim() == "BACKUP METHOD: pg_rewind"));
    let rewound = by_rewind && control.is_some_and(|c| c.cluster_state == "in archive recovery");
    Some(!rewound)
}

/// A stopped node starts as a standby when standby.signal exists, else as a primary.
fn role_from_files(standby_signal: bool) -> Role {
    if standby_signal {
        Role::Standby
    } else {
        Role::Primary
    }
}

async fn read_text(transport: &dyn Transport, path: &Path) -> Option<String> {
    match transport.read_file(path).await {
        Ok(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
        _ => None,
    }
}

/// Whether the PID in postmaster.pid is a live process: kill(pid, 0) on this machine,
/// `pg_ctl status` through a remote transport.
async fn postmaster_running(transport: &dyn Transport, node: &DesiredNode) -> bool {
    if transport.describe() == "local" {
        let Some(text) = read_text(transport, &node.data_dir.join("postmaster.pid")).await else {
            return false;
        };
        let Some(pid) = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
        else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        let alive = match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Ok(()) => !is_zombie(pid),
            Err(nix::errno::Errno::EPERM) => true,
            Err(_) => false,
        };
        // A stale pid file (after a SIGKILL or a reboot) may name a PID reused by another
        // process: a postmaster's working directory is its data directory.
        let elsewhere = match (
            std::fs::read_link(format!("/proc/{pid}/cwd")),
            std::fs::canonicalize(&node.data_dir),
        ) {
            (Ok(cwd), Ok(dir)) => cwd != dir,
            _ => false,
        };
        return alive && !elsewhere;
    }
    let cmd = CommandSpec::new(node.bin_dir.join("pg_ctl"))
        .arg("status")
        .arg("-D")
        .arg(&node.data_dir)
        .timeout(std::time::Duration::from_secs(10));
    matches!(transport.run(&cmd).await, Ok(o) if o.success())
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                .map(|st| st == "Z" || st == "X")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DesiredRole;
    use crate::transport::{CommandOutput, FakeTransport};

    pub(crate) const CONTROLDATA: &str = "\
pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7311111111111111111
Database cluster state:               shut down
pg_control last modified:             Tue Nov 24 23:45:05 2026
Latest checkpoint location:           0/3000108
Latest checkpoint's REDO location:    0/3000108
Latest checkpoint's REDO WAL file:    000000010000000000000003
Latest checkpoint's TimeLineID:       2
Latest checkpoint's PrevTimeLineID:   1
Minimum recovery ending location:     0/0
Min recovery ending loc's timeline:   0
wal_log_hints setting:                on
Bytes per WAL segment:                16777216
Data page checksum version:           0
";

    fn node() -> DesiredNode {
        DesiredNode {
            name: "n1".into(),
            host: "127.0.0.1".into(),
            port: 5432,
            data_dir: "/data/n1".into(),
            bin_dir: "/pg/bin".into(),
            os_user: "postgres".into(),
            ssh: None,
            role: DesiredRole::Primary,
            settings: Default::default(),
            promotion: Default::default(),
            tls: Default::default(),
            service: Default::default(),
            config_dir: None,
        }
    }

    #[test]
    fn control_data_parses() {
        let cd = parse_control_data(CONTROLDATA).unwrap();
        assert_eq!(cd.system_identifier, "7311111111111111111");
        assert!(cd.shut_down_cleanly());
        assert_eq!(cd.latest_checkpoint.to_string(), "0/3000108");
        assert_eq!(cd.checkpoint_timeline, 2);
        assert!(cd.wal_log_hints);
        assert!(!cd.data_checksums);
        assert_eq!(cd.wal_segment_size, 16 << 20);
        assert!(parse_control_data("garbage").is_err());
    }

    #[tokio::test]
    async fn stopped_standby_from_files() {
        let fake = FakeTransport::new()
            .with_file("/data/n1/PG_VERSION", "15\n")
            .with_file("/data/n1/standby.signal", "")
            .with_file(
                "/data/n1/postgresql.auto.conf",
                "primary_conninfo = 'host=127.0.0.2 port=5433 password=secret'\n\
                 primary_slot_name = 'n1'\nport = 5999\nwork_mem = '1MB'\n",
            )
            .with_file(
                "/data/n1/pg_hba.conf",
                "# BEGIN pgtopo managed\nlocal all all trust\n# END pgtopo managed\n",
            )
            .with_file(
                "/data/n1/pg_wal/00000002.history",
                "1\t0/3000000\tno recovery target specified\n",
            )
            .with_file("/data/n1/pg_wal/000000010000000000000002", "")
            .with_file("/data/n1/pg_wal/000000020000000000000003", "")
            .with_file("/data/n1/pg_wal/000000020000000100000000", "")
            .with_file("/data/n1/pg_wal/000000010000000000000001.partial", "")
            .with_output("pg_controldata", CommandOutput::ok(CONTROLDATA));
        let mut n = ObservedNode::default();
        let names = ["port".to_string(), "wal_level".to_string()].into();
        observe_files(&fake, &node(), &names, &mut n).await;
        assert!(n.host_reachable && !n.running);
        assert_eq!(n.role, Some(Role::Standby));
        assert_eq!(n.timeline, Some(2));
        assert_eq!(n.data_dir.pg_version, Some(15));
        assert_eq!(n.primary_conninfo.as_ref().unwrap().port, Some(5433));
        assert_eq!(n.primary_slot_name.as_deref(), Some("n1"));
        assert_eq!(n.settings.len(), 1, "only settings of interest");
        assert_eq!(n.settings["port"].value, "5999");
        assert_eq!(n.settings["port"].context, "");
        assert_eq!(n.timeline_history.len(), 1);
        // Segments of any timeline; log id 1 starts at 2^32 / 16 MB = 256 segments.
        let wal = n.wal_segments.as_ref().unwrap();
        assert_eq!(wal.runs, vec![[2, 3], [256, 256]]);
        assert_eq!(
            wal.first_missing("0/2000000".parse().unwrap(), "0/3FFFFFF".parse().unwrap()),
            None
        );
        assert_eq!(
            wal.first_missing("0/2000000".parse().unwrap(), "1/0".parse().unwrap()),
            Some("0/4000000".parse().unwrap())
        );
        assert_eq!(
            wal.first_missing("0/1000000".parse().unwrap(), "0/2000000".parse().unwrap()),
            Some("0/1000000".parse().unwrap())
        );
        assert_eq!(wal.oldest(), Some("0/2000000".parse().unwrap()));
        assert_eq!(
            n.hba.unwrap().managed_block.unwrap(),
            vec!["local all all trust".to_string()]
        );
        assert!(!serde_json::to_string(&n.primary_conninfo)
            .unwrap()
            .contains("secret"));
        let cmds = fake.commands();
        assert_eq!(cmds.len(), 1);
        assert!(cmds[0].env.iter().any(|(k, v)| k == "LC_ALL" && v == "C"));
    }

    #[tokio::test]
    async fn missing_and_empty_data_dirs() {
        let mut n = ObservedNode::default();
        observe_files(&FakeTransport::new(), &node(), &Default::default(), &mut n).await;
        assert!(n.host_reachable && !n.data_dir.exists && n.role.is_none());
        let mut n = ObservedNode::default();
        observe_files(
            &FakeTransport::new().with_dir("/data/n1"),
            &node(),
            &Default::default(),
            &mut n,
        )
        .await;
        assert!(n.data_dir.exists && n.data_dir.empty && n.role.is_none());
        let mut n = ObservedNode::default();
        observe_files(
            &FakeTransport::new().unreachable(),
            &node(),
            &Default::default(),
            &mut n,
        )
        .await;
        assert!(!n.host_reachable);
        assert!(n.files_error.is_some());
    }
}
