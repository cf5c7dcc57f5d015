//! Talking to one live server: [`probe`] observes it as the only node of a throw-away topology
//! (the same [`crate::observe::observe`] and [`crate::pg::connect`] as every other command) and
//! reads the import-only facts over SQL (data directory, cluster_name, start time, the settings
//! of postgresql.auto.conf, pg_hba's replication rules, the walsenders' client ports, the
//! running server's bin directory). Decides nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio_postgres::SimpleQueryRow;

use super::{split_addr, ImportOptions};
use crate::config::{Desired, NodeRole, NodeSpec, TopologyFile};
use crate::observe::{ObserveOptions, ObservedNode, Role};
use crate::pg::rows;

const EXTRA: &str = "select current_setting('data_directory'), \
    coalesce(current_setting('cluster_name', true), ''), \
    pg_postmaster_start_time()::text, \
    coalesce((select json_agg(json_build_array(name, current_setting(name)) order by name) \
       from pg_settings where sourcefile like '%/postgresql.auto.conf'), '[]')::text, \
    current_setting('config_file'), \
    coalesce((select json_agg(json_build_array(name, setting) order by name) \
       from pg_settings where name in ('archive_mode', 'archive_command', 'restore_command') \
       and setting <> '' and source <> 'default'), '[]')::text";

/// The postmaster's PID, from its postmaster.pid (superusers and pg_read_server_files only).
const POSTMASTER_PID: &str = "select split_part(pg_read_file('postmaster.pid'), E'\\n', 1)";

/// The walsenders' client ports, which pg_stat_replication has and observation does not keep.
const WALSENDERS: &str = "select host(client_addr), client_port::text from pg_stat_replication \
    where state <> 'backup' and client_port > 0";

/// The running server's bin directory: the pg_config view computes BINDIR from the postmaster's
/// own executable, so it is right for relocated installations too (superusers only by default).
const BINDIR: &str = "select setting from pg_config where name = 'BINDIR'";

const HBA_REPLICATION_RULES: &str =
    "select coalesce(array_to_string(user_name, ','), ''), coalesce(auth_method, '') \
     from pg_hba_file_rules where error is null and type <> 'local' \
     and 'replication' = any(database) order by line_number";

/// A server seen through one address.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub host: String,
    pub port: u16,
    pub obs: ObservedNode,
    pub data_directory: String,
    pub cluster_name: String,
    pub start_time: String,
    pub auto_settings: BTreeMap<String, String>,
    /// archive_mode, archive_command and restore_command where set (in any file): what
    /// [`super::archive`] reads the archive back from.
    pub archive_settings: BTreeMap<String, String>,
    /// (users, method) of pg_hba's replication rules, in file order.
    pub hba_replication: Vec<(Vec<String>, String)>,
    /// (client address, client port) of each walsender.
    pub walsenders: Vec<(String, u16)>,
    /// The running server's bin directory (None when pg_config could not be read).
    pub bin_dir: Option<PathBuf>,
    /// Its `config_file` setting (postgresql.conf, wherever it is).
    pub config_file: String,
    /// The postmaster's `/proc/PID/cgroup` when the postmaster runs on this machine (its
    /// working directory is the data directory): which systemd unit, if any, runs it.
    pub cgroup: Option<String>,
}

impl Probe {
    /// What makes two addresses the same server.
    pub fn key(&self) -> (String, String, String, String) {
        (
            self.obs.system_identifier.clone().unwrap_or_default(),
            self.data_directory.clone(),
            self.obs
                .settings
                .get("port")
                .map(|s| s.value.clone())
                .unwrap_or_default(),
            self.start_time.clone(),
        )
    }

    /// The application_name its WAL receiver uses: primary_conninfo's, else cluster_name.
    pub fn application_name(&self) -> Option<String> {
        self.obs
            .primary_conninfo
            .as_ref()
            .and_then(|c| c.application_name.clone())
            .or_else(|| Some(self.cluster_name.clone()).filter(|c| !c.is_empty()))
    }

    /// The address of a standby's upstream (from its WAL receiver).
    pub fn upstream_addr(&self) -> Option<(String, u16)> {
        if self.obs.role != Some(Role::Standby) {
            return None;
        }
        split_addr(self.obs.upstream_addr.as_deref()?).ok()
    }

    /// The port the server listens on (its `port` setting, else the one it was reached at).
    pub fn listen_port(&self) -> u16 {
        self.obs
            .settings
            .get("port")
            .and_then(|s| s.value.parse().ok())
            .unwrap_or(self.port)
    }
}

/// A one-node topology to observe a server through.
fn probe_desired(opts: &ImportOptions, host: &str, port: u16) -> Result<Desired, String> {
    let node = NodeSpec {
        port,
        role: Some(NodeRole::Primary),
        // Never read: the server answers SQL or the probe fails.
        ..NodeSpec::new(host, PathBuf::from("/nonexistent/pgtopo-import-probe"))
    };
    let mut file = TopologyFile::new("import-probe", BTreeMap::from([("probe".into(), node)]));
    file.connect = opts.connect_spec();
    crate::config::load_str_with("import probe", &file.to_yaml(), || {
        PathBuf::from("/usr/lib/postgresql/15/bin")
    })
    .map_err(|e| format!("{e}"))
}

/// The rows of the import-only statements: (extra facts, walsenders, hba replication rules,
/// bin directory, postmaster PID).
type ImportRows = (
    Vec<SimpleQueryRow>,
    Vec<SimpleQueryRow>,
    Vec<SimpleQueryRow>,
    Vec<SimpleQueryRow>,
    Vec<SimpleQueryRow>,
);

async fn read_import_rows(
    opts: &ImportOptions,
    d: &Desired,
    host: &str,
    port: u16,
) -> Result<ImportRows, String> {
    let client = crate::pg::connect(d, &d.nodes["probe"], opts.timeout)
        .await
        .map_err(|e| e.to_string().replacen("probe (", "(", 1))?;
    let q = async {
        let extra = rows(client.simple_query(EXTRA).await?);
        let senders = rows(client.simple_query(WALSENDERS).await?);
        // Only a superuser may read pg_hba_file_rules; without it, the method stays the default.
        let hba = client
            .simple_query(HBA_REPLICATION_RULES)
            .await
            .map(rows)
            .unwrap_or_default();
        let bindir = client
            .simple_query(BINDIR)
            .await
            .map(rows)
            .unwrap_or_default();
        let pid = client
            .simple_query(POSTMASTER_PID)
            .await
            .map(rows)
            .unwrap_or_default();
        Ok::<_, tokio_postgres::Error>((extra, senders, hba, bindir, pid))
    };
    tokio::time::timeout(opts.timeout, q)
        .await
        .map_err(|_| format!("{host}:{port}: no answer within {:?}", opts.timeout))?
        .map_err(|e| format!("{host}:{port}: {}", crate::pg::describe(&e)))
}

/// Probe one address: the server's observation and the import-only facts.
pub async fn probe(opts: &ImportOptions, host: &str, port: u16) -> Result<Probe, String> {
    let d = probe_desired(opts, host, port)?;
    let (extra, senders, hba, bindir, pid) = read_import_rows(opts, &d, host, port).await?;
    let e = extra
        .first()
        .ok_or_else(|| format!("{host}:{port}: no answer"))?;
    let get = |i: usize| e.get(i).unwrap_or_default().to_string();
    let pairs: Vec<(String, String)> = serde_json::from_str(&get(3)).unwrap_or_default();
    let archive: Vec<(String, String)> = serde_json::from_str(&get(5)).unwrap_or_default();
    let options = ObserveOptions {
        assume_down: Vec::new(),
        timeout: opts.timeout,
    };
    let observed = crate::observe::observe(&d, &options).await;
    let obs = observed.nodes.into_values().next().unwrap_or_default();
    if !obs.reachable {
        return Err(obs
            .unreachable_reason
            .unwrap_or_else(|| format!("{host}:{port}: no answer")));
    }
    Ok(Probe {
        host: host.to_string(),
        port,
        obs,
        data_directory: get(0),
        cluster_name: get(1),
        start_time: get(2),
        auto_settings: pairs.into_iter().collect(),
        archive_settings: archive.into_iter().collect(),
        hba_replication: hba.iter().map(hba_replication_rule).collect(),
        walsenders: senders
            .iter()
            .filter_map(|r| Some((r.get(0)?.to_string(), r.get(1)?.parse().ok()?)))
            .collect(),
        bin_dir: bindir
            .first()
            .and_then(|r| r.get(0))
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        config_file: get(4),
        cgroup: pid
            .first()
            .and_then(|r| r.get(0))
            .and_then(|p| p.trim().parse().ok())
            .and_then(|p| local_cgroup(p, &get(0))),
    })
}

/// `/proc/PID/cgroup` of the postmaster `pid` when it runs on this machine: its working
/// directory is `data_directory` (a PID alone could be another machine's).
fn local_cgroup(pid: u32, data_directory: &str) -> Option<String> {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    (cwd == std::path::Path::new(data_directory))
        .then(|| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok())
        .flatten()
}

/// (users, method) of one row of [`HBA_REPLICATION_RULES`].
fn hba_replication_rule(r: &SimpleQueryRow) -> (Vec<String>, String) {
    let users = r.get(0).unwrap_or_default();
    (
        users.split(',').map(str::to_string).collect(),
        r.get(1).unwrap_or_default().to_string(),
    )
}
