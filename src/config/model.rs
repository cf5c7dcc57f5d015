//! The topology file as typed data: the raw serde model (what the YAML may say, also the source of
//! the JSON Schema) and the validated [`Desired`] topology that every later phase reads.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::archive::{ArchiveSpec, CloneMethod, ClonePolicy, CloneSpec, DesiredArchive};
pub use super::pooler::{DesiredPooler, HookSpec, HooksSpec, PoolerSpec};
pub use super::secret::SecretRef;
pub use super::ssh::SshSpec;
use crate::units::{ByteSize, Duration};

/// The topology file exactly as written (after serde, before semantic validation).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "pgtopo topology")]
pub struct TopologyFile {
    /// Cluster name: `[a-z][a-z0-9_-]*`.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_-]*$"))]
    pub cluster: String,
    /// Defaults for every node (a node may override each key).
    #[serde(default)]
    pub postgres: PostgresSpec,
    /// How pgtopo itself connects to every node (libpq conventions).
    #[serde(default)]
    pub connect: ConnectSpec,
    /// The replication role, slots, synchronous standbys and generated hba rules.
    #[serde(default)]
    pub replication: ReplicationSpec,
    /// Cluster-wide settings, applied with ALTER SYSTEM.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
    /// Extra rules kept in pgtopo's managed block of pg_hba.conf.
    #[serde(default)]
    pub hba: Vec<HbaRule>,
    /// When an unreachable primary may be replaced.
    #[serde(default)]
    pub failover: FailoverSpec,
    /// Limits of a planned switchover.
    #[serde(default)]
    pub switchover: SwitchoverSpec,
    /// pgbouncer instances whose `[databases]` follow the primary, by name.
    #[serde(default)]
    pub poolers: BTreeMap<String, PoolerSpec>,
    /// argv commands run at named points of a switchover or failover.
    #[serde(default)]
    pub hooks: HooksSpec,
    /// Logical replication slots on the primary (PostgreSQL 17+ for `failover: true`: kept
    /// usable across switchover and failover).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logical_slots: Vec<LogicalSlotSpec>,
    /// The WAL archive (SPEC §1c); absent → no archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSpec>,
    /// How new and re-cloned standbys are made (a node may override it).
    #[serde(default, rename = "clone", skip_serializing_if = "Option::is_none")]
    pub clone_spec: Option<CloneSpec>,
    /// The nodes, by name (`[a-z][a-z0-9_]{0,62}`: used as slot and application_name).
    #[schemars(schema_with = "nodes_schema")]
    pub nodes: BTreeMap<String, NodeSpec>,
}

/// `nodes` in the JSON Schema: a mapping whose keys follow the node-name pattern.
fn nodes_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    use schemars::schema::{InstanceType, ObjectValidation, Schema, SchemaObject};
    let name = SchemaObject {
        string: Some(Box::new(schemars::schema::StringValidation {
            pattern: Some("^[a-z][a-z0-9_]{0,62}$".into()),
            ..Default::default()
        })),
        ..Default::default()
    };
    Schema::Object(SchemaObject {
        instance_type: Some(InstanceType::Object.into()),
        object: Some(Box::new(ObjectValidation {
            property_names: Some(Box::new(name.into())),
            additional_properties: Some(Box::new(gen.subschema_for::<NodeSpec>())),
            ..Default::default()
        })),
        ..Default::default()
    })
}

/// Where the server tools live and which OS user runs them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    /// Directory of initdb, pg_ctl, pg_basebackup, pg_rewind, pg_controldata.
    pub bin_dir: Option<PathBuf>,
    /// OS user that owns data directories and runs server tools (default `postgres`).
    pub os_user: Option<String>,
    /// How a major-version upgrade runs when `bin_dir` names a newer major than the servers
    /// run (SPEC §1b).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeSpec>,
}

/// `postgres.upgrade`: how pg_upgrade moves the primary to the major of `bin_dir`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpgradeSpec {
    /// `link` (default: hard links, fastest, the old cluster cannot be started once the new
    /// one has run), `clone` (reflinks, needs a file system that has them) or `copy`.
    #[serde(default)]
    pub mode: UpgradeMode,
    /// The old major's bin directory; default: the directory of the running primary's
    /// postmaster executable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_bin_dir: Option<PathBuf>,
}

/// pg_upgrade's transfer mode.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum UpgradeMode {
    #[default]
    Link,
    Clone,
    Copy,
}

impl UpgradeMode {
    /// The pg_upgrade option.
    pub fn flag(self) -> &'static str {
        match self {
            UpgradeMode::Link => "--link",
            UpgradeMode::Clone => "--clone",
            UpgradeMode::Copy => "--copy",
        }
    }
}

/// How pgtopo connects to the nodes over SQL.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConnectSpec {
    #[serde(default = "default_connect_user")]
    pub user: String,
    #[serde(default = "default_dbname")]
    pub dbname: String,
    /// `{env: VAR}` or `{file: PATH}`; omitted → .pgpass / trust / peer.
    pub password: Option<SecretRef>,
    #[serde(default)]
    pub sslmode: SslMode,
    /// CA certificate(s) that sign the servers' certificates (required by verify-ca and
    /// verify-full), on the machine that runs pgtopo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<FileRef>,
    /// Client certificate of `connect.user` (PEM), for `cert` authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslcert: Option<FileRef>,
    /// Its private key (PEM; mode 0600, or 0640 owned by root, as libpq requires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslkey: Option<FileRef>,
}

impl Default for ConnectSpec {
    fn default() -> Self {
        ConnectSpec {
            user: default_connect_user(),
            dbname: default_dbname(),
            password: None,
            sslmode: SslMode::default(),
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
        }
    }
}

fn default_connect_user() -> String {
    "postgres".into()
}
fn default_dbname() -> String {
    "postgres".into()
}

/// libpq sslmode values (`allow` aside): prefer tries TLS and falls back to plain text,
/// require encrypts without checking the certificate, verify-ca checks that the server's
/// certificate is signed by `sslrootcert`, verify-full also that it names the host connected to.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The libpq keyword value.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether the server's certificate is checked against a CA.
    pub fn verifies(self) -> bool {
        self >= SslMode::VerifyCa
    }
}

/// A file read by path (TLS certificates and keys), written like a secret reference:
/// `{file: PATH}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub file: PathBuf,
}

/// Replication role and slots.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReplicationSpec {
    /// Role created on the primary if missing (REPLICATION LOGIN).
    #[serde(default = "default_replication_user")]
    pub user: String,
    /// Kept in the os_user's .pgpass (0600), never in a plan or a log.
    pub password: Option<SecretRef>,
    /// Every standby streams through a physical slot on its upstream, named after the standby.
    #[serde(default = "default_true")]
    pub slots: bool,
    /// Synchronous standbys; absent → asynchronous.
    pub synchronous: Option<SyncSpec>,
    /// Method of the replication rules pgtopo generates (`cert` needs `tls` client certificates).
    #[serde(default = "default_hba_method")]
    pub hba_method: String,
    /// TLS of the standbys' replication connections (primary_conninfo); with it, the generated
    /// replication rules are `hostssl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ReplicationTls>,
}

/// TLS of replication connections. Paths are as seen on the standbys' hosts (the WAL receiver,
/// pg_basebackup and pg_rewind read them there); a node may override them (`nodes.<name>.tls`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReplicationTls {
    /// At least `require`; `verify-full` (the default) also checks the upstream's host name.
    #[serde(default = "default_replication_sslmode")]
    pub sslmode: SslMode,
    /// CA certificate(s) that sign the servers' certificates (required by verify-ca/-full).
    pub sslrootcert: Option<FileRef>,
    /// Client certificate of the replication role (its CN is the role name for `cert`).
    pub sslcert: Option<FileRef>,
    /// Its private key, readable by the node's os_user only (mode 0600).
    pub sslkey: Option<FileRef>,
}

fn default_replication_sslmode() -> SslMode {
    SslMode::VerifyFull
}

/// Per-node paths of the replication TLS files, where they differ from `replication.tls`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeTls {
    pub sslrootcert: Option<FileRef>,
    pub sslcert: Option<FileRef>,
    pub sslkey: Option<FileRef>,
}

/// The TLS part of one standby's primary_conninfo, resolved (node paths over the cluster's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConninfoTls {
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub sslcert: Option<PathBuf>,
    pub sslkey: Option<PathBuf>,
}

impl Default for ReplicationSpec {
    fn default() -> Self {
        ReplicationSpec {
            user: default_replication_user(),
            password: None,
            slots: true,
            synchronous: None,
            hba_method: default_hba_method(),
            tls: None,
        }
    }
}

fn default_replication_user() -> String {
    "replicator".into()
}
fn default_true() -> bool {
    true
}
fn default_hba_method() -> String {
    "scram-sha-256".into()
}

/// The synchronous standby set.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    pub mode: SyncMode,
    pub count: u32,
    pub standbys: Vec<String>,
}

/// `quorum` → `ANY n (…)`, `priority` → `FIRST n (…)`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    Quorum,
    Priority,
}

/// A setting value: the YAML may write a string, a number or a boolean; PostgreSQL takes text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SettingValue(pub String);

impl<'de> Deserialize<'de> for SettingValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            I(i64),
            F(f64),
            S(String),
        }
        Ok(SettingValue(match Raw::deserialize(d)? {
            Raw::B(b) => if b { "on" } else { "off" }.to_string(),
            Raw::I(i) => i.to_string(),
            Raw::F(f) => f.to_string(),
            Raw::S(s) => s,
        }))
    }
}

impl JsonSchema for SettingValue {
    fn schema_name() -> String {
        "SettingValue".into()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "a PostgreSQL setting value",
            "type": ["string", "number", "boolean"]
        }))
        .expect("static schema")
    }
}

/// One pg_hba rule in pgtopo's managed block.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HbaRule {
    /// local, host, hostssl, hostnossl, hostgssenc, hostnogssenc.
    #[serde(rename = "type")]
    pub kind: String,
    pub database: String,
    pub user: String,
    /// Required for every type but `local`.
    pub address: Option<String>,
    pub method: String,
    /// Permit `trust` for a non-loopback address.
    #[serde(default)]
    pub allow_trust: bool,
}

/// Failover consent and limits.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FailoverSpec {
    /// Promote while the current primary is unreachable only when true (or `--allow-failover`).
    #[serde(default)]
    pub allow: bool,
    /// Never promote a candidate further behind than this.
    #[serde(default = "default_lag")]
    pub max_lag: ByteSize,
}

impl Default for FailoverSpec {
    fn default() -> Self {
        FailoverSpec {
            allow: false,
            max_lag: default_lag(),
        }
    }
}

/// Planned switchover limits.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverSpec {
    /// Refuse to stop a healthy primary while the candidate's replay lag is larger than this.
    #[serde(default = "default_lag")]
    pub max_lag: ByteSize,
    /// How long the candidate may take to replay the shutdown checkpoint.
    #[serde(default = "default_switchover_timeout")]
    pub timeout: Duration,
    /// Right before the old primary stops, the candidate must have received and replayed the
    /// primary's current WAL position (read at that moment) within this time, else the apply
    /// fails with nothing stopped.
    #[serde(default = "default_catchup_timeout")]
    pub catchup_timeout: Duration,
    /// Cancel (`pg_cancel_backend`, then `pg_terminate_backend` after a short grace) the
    /// sessions on the candidate that block its replay (a recovery conflict), before the stop.
    /// Without it, a switchover to a candidate whose replay waits on a conflict is refused.
    #[serde(default)]
    pub cancel_conflicting_queries: bool,
}

impl Default for SwitchoverSpec {
    fn default() -> Self {
        SwitchoverSpec {
            max_lag: default_lag(),
            timeout: default_switchover_timeout(),
            catchup_timeout: default_catchup_timeout(),
            cancel_conflicting_queries: false,
        }
    }
}

fn default_lag() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_switchover_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(60))
}
fn default_catchup_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(5))
}

/// A logical replication slot that pgtopo keeps on the primary.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogicalSlotSpec {
    /// Slot name: `[a-z0-9_]{1,63}`, not a node's name (physical slots are named after nodes).
    #[schemars(regex(pattern = r"^[a-z0-9_]{1,63}$"))]
    pub name: String,
    /// Output plugin (default `pgoutput`).
    #[serde(default = "default_plugin")]
    pub plugin: String,
    /// The database the slot decodes.
    pub database: String,
    /// Synchronised to the standbys that may be promoted (PostgreSQL 17+).
    #[serde(default)]
    pub failover: bool,
}

fn default_plugin() -> String {
    "pgoutput".into()
}

/// One node as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Address that pgtopo and the other nodes use.
    pub host: String,
    /// TCP port of the server (default 5432).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The server's data directory (PGDATA) on the node's machine.
    pub data_dir: PathBuf,
    /// `primary` on exactly one node; default `standby`.
    pub role: Option<NodeRole>,
    /// Upstream node of a standby; default: the primary.
    pub upstream: Option<String>,
    /// Reach the node's files and tools over SSH; absent → this machine.
    pub ssh: Option<SshSpec>,
    /// Per-node setting overrides.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
    /// `absent` retires the node.
    #[serde(default)]
    pub state: NodeState,
    /// Overrides `postgres.bin_dir`.
    pub bin_dir: Option<PathBuf>,
    /// Overrides `postgres.os_user`.
    pub os_user: Option<String>,
    /// Preference as a failover candidate: 0 = never promoted, higher preferred (default 1).
    pub failover_priority: Option<u32>,
    /// Delayed standby: replay WAL this long after it was written (`recovery_min_apply_delay`,
    /// e.g. `1h`). A delayed standby is never promoted.
    pub apply_delay: Option<Duration>,
    /// Overrides the paths of `replication.tls` for this node's own replication connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NodeTls>,
    /// What starts, stops and restarts the server (SPEC §1d): `{pg_ctlcluster: "MAJOR NAME"}`
    /// (Debian's postgresql-common), `{systemd: UNIT}`; absent → `pg_ctl -D data_dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceSpec>,
    /// Where the server's configuration files live when not in the data directory (Debian:
    /// `/etc/postgresql/MAJOR/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_dir: Option<PathBuf>,
    /// Overrides the cluster's `clone`.
    #[serde(default, rename = "clone", skip_serializing_if = "Option::is_none")]
    pub clone_spec: Option<CloneSpec>,
}

/// `nodes.<name>.service`: the service manager that runs the server (exactly one key).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// A systemd unit (`sudo -n systemctl start|stop UNIT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<String>,
    /// A Debian cluster, `"MAJOR NAME"` (`pg_ctlcluster MAJOR NAME start|stop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_ctlcluster: Option<String>,
}

impl ServiceSpec {
    /// The service as pgtopo runs it, or why the value is malformed.
    pub fn resolve(&self) -> Result<Service, String> {
        match (&self.pg_ctlcluster, &self.systemd) {
            (Some(v), None) => parse_cluster(v),
            (None, Some(unit)) if unit.trim().is_empty() || unit.contains(char::is_whitespace) => {
                Err(format!("{unit:?} is not a systemd unit name"))
            }
            (None, Some(unit)) => Ok(Service::Systemd { unit: unit.clone() }),
            _ => Err("name exactly one of `pg_ctlcluster` and `systemd`".into()),
        }
    }
}

/// `"MAJOR NAME"` as pg_lsclusters lists a Debian cluster.
fn parse_cluster(v: &str) -> Result<Service, String> {
    let mut words = v.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(major), Some(name), None) if !name.contains('/') => match major.parse::<u32>() {
            Ok(major) => Ok(Service::PgCtlcluster {
                major,
                name: name.into(),
            }),
            Err(_) => Err(format!("{v:?} does not start with a major version")),
        },
        _ => Err(format!(
            "{v:?} is not \"MAJOR NAME\" (e.g. \"15 main\", as pg_lsclusters lists it)"
        )),
    }
}

/// How a node's server is started, stopped, restarted and reloaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Service {
    /// `pg_ctl -D data_dir` from `bin_dir`.
    #[default]
    PgCtl,
    /// Debian's `pg_ctlcluster MAJOR NAME`.
    PgCtlcluster { major: u32, name: String },
    /// `systemctl … UNIT`.
    Systemd { unit: String },
}

fn default_port() -> u16 {
    5432
}

/// Declared role.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Primary,
    Standby,
}

/// Declared membership.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    #[default]
    Present,
    Absent,
}

// ------------------------------------------------------------------------------------------------
// The validated topology.

/// The validated desired topology: every default resolved, every reference checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub cluster: String,
    /// The file it came from and the SHA-256 of its bytes (saved plans carry it).
    pub source_path: PathBuf,
    pub sha256: String,
    pub connect: ConnectSpec,
    pub replication: ReplicationSpec,
    pub hba: Vec<HbaRule>,
    pub failover: FailoverSpec,
    pub switchover: SwitchoverSpec,
    /// Poolers that follow the primary, by name.
    pub poolers: BTreeMap<String, DesiredPooler>,
    pub hooks: HooksSpec,
    /// Logical slots declared on the primary.
    pub logical_slots: Vec<LogicalSlotSpec>,
    /// Every node, retired ones included, by name (sorted).
    pub nodes: BTreeMap<String, DesiredNode>,
    /// `postgres.upgrade` (defaults when absent).
    pub upgrade: UpgradeSpec,
    /// The WAL archive, if declared.
    pub archive: Option<DesiredArchive>,
    /// How each standby is cloned.
    pub clone_policy: ClonePolicy,
}

/// One validated node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredNode {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub os_user: String,
    pub ssh: Option<SshSpec>,
    pub role: DesiredRole,
    /// Cluster settings merged with the node's overrides (node wins).
    pub settings: BTreeMap<String, String>,
    /// Whether and how much the node is wanted as a failover candidate.
    pub promotion: Promotability,
    /// The node's `tls:` paths (over `replication.tls`'s); see [`Desired::replication_tls`].
    pub tls: NodeTls,
    /// What starts and stops the server (SPEC §1d).
    pub service: Service,
    /// The configuration directory outside the data directory, if any.
    pub config_dir: Option<PathBuf>,
}

/// A node's `failover_priority` and `apply_delay`: what the candidate choice reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promotability {
    /// 0 = never promoted; higher preferred.
    pub failover_priority: u32,
    /// A non-zero `apply_delay`.
    pub apply_delay: Option<std::time::Duration>,
}

impl Default for Promotability {
    fn default() -> Self {
        Promotability {
            failover_priority: DEFAULT_FAILOVER_PRIORITY,
            apply_delay: None,
        }
    }
}

/// `failover_priority` when the file says nothing.
pub const DEFAULT_FAILOVER_PRIORITY: u32 = 1;

impl Promotability {
    /// Why the node is never promoted, or None when it may be.
    pub fn never_promoted(&self) -> Option<String> {
        if let Some(d) = self.apply_delay {
            return Some(format!(
                "apply_delay {}: a delayed standby is never promoted",
                Duration(d)
            ));
        }
        (self.failover_priority == 0).then(|| "failover_priority 0: never promoted".into())
    }
}

/// What a node should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DesiredRole {
    Primary,
    /// A standby streaming from `upstream` (resolved: the primary when the file says nothing).
    Standby {
        upstream: String,
    },
    /// Retired: stopped, its slot dropped, out of the synchronous set; data directory kept.
    Absent,
}

impl DesiredNode {
    /// Where the server's configuration files are: `config_dir`, else Debian's
    /// `/etc/postgresql/MAJOR/NAME` for a `pg_ctlcluster` service, else the data directory.
    pub fn config_dir(&self) -> PathBuf {
        match (&self.config_dir, &self.service) {
            (Some(d), _) => d.clone(),
            (None, Service::PgCtlcluster { major, name }) => {
                PathBuf::from(format!("/etc/postgresql/{major}/{name}"))
            }
            (None, _) => self.data_dir.clone(),
        }
    }

    /// postgresql.conf when it is not in the data directory: what `postgres` run directly
    /// (single-user mode) must be given as `-c config_file=…`.
    pub fn outside_config_file(&self) -> Option<PathBuf> {
        let dir = self.config_dir();
        (dir != self.data_dir).then(|| dir.join("postgresql.conf"))
    }
}

impl Desired {
    /// The one declared primary (validation guarantees there is exactly one).
    pub fn primary(&self) -> &DesiredNode {
        self.nodes
            .values()
            .find(|n| n.role == DesiredRole::Primary)
            .expect("a validated topology has exactly one primary")
    }

    /// The TLS keywords of `name`'s replication connections (primary_conninfo, pg_basebackup,
    /// pg_rewind): `replication.tls` with the node's own paths over it; None without TLS.
    pub fn replication_tls(&self, name: &str) -> Option<ConninfoTls> {
        let t = self.replication.tls.as_ref()?;
        let own = self.nodes.get(name).map(|n| &n.tls);
        let pick = |node: Option<&FileRef>, cluster: &Option<FileRef>| {
            node.or(cluster.as_ref()).map(|f| f.file.clone())
        };
        Some(ConninfoTls {
            sslmode: t.sslmode,
            sslrootcert: pick(own.and_then(|o| o.sslrootcert.as_ref()), &t.sslrootcert),
            sslcert: pick(own.and_then(|o| o.sslcert.as_ref()), &t.sslcert),
            sslkey: pick(own.and_then(|o| o.sslkey.as_ref()), &t.sslkey),
        })
    }

    /// Nodes that are not retired, in name order.
    pub fn present(&self) -> impl Iterator<Item = &DesiredNode> {
        self.nodes
            .values()
            .filter(|n| n.role != DesiredRole::Absent)
    }

    /// The declared upstream of a standby, if it is one.
    pub fn upstream_of(&self, name: &str) -> Option<&DesiredNode> {
        match &self.nodes.get(name)?.role {
            DesiredRole::Standby { upstream } => self.nodes.get(upstream),
            _ => None,
        }
    }

    /// Nodes whose declared upstream is `name`.
    pub fn downstreams_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a DesiredNode> {
        self.nodes.values().filter(
            move |n| matches!(&n.role, DesiredRole::Standby { upstream } if upstream == name),
        )
    }

    /// The `synchronous_standby_names` value the topology asks for (`""` when asynchronous).
    pub fn synchronous_standby_names(&self) -> String {
        match &self.replication.synchronous {
            None => String::new(),
            Some(s) => {
                let kw = match s.mode {
                    SyncMode::Quorum => "ANY",
                    SyncMode::Priority => "FIRST",
                };
                let members: Vec<String> = s
                    .standbys
                    .iter()
                    .filter(|m| {
                        self.nodes
                            .get(*m)
                            .is_some_and(|n| n.role != DesiredRole::Absent)
                    })
                    .map(|m| format!("\"{m}\""))
                    .collect();
                if members.is_empty() {
                    String::new()
                } else {
                    format!("{kw} {} ({})", s.count, members.join(", "))
                }
            }
        }
    }
}
