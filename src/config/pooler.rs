//! Poolers (pgbouncer instances whose `[databases]` follow the primary) and hooks (argv commands
//! at named points of an apply), as written in the topology file and as validated.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::secret::SecretRef;
use super::ssh::SshSpec;
use crate::units::Duration;

/// One pgbouncer instance as written.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PoolerSpec {
    /// Address of pgbouncer (clients and its admin console).
    pub host: String,
    /// pgbouncer's `listen_port`; the admin console is its virtual database `pgbouncer`.
    #[serde(default = "default_pooler_port")]
    pub port: u16,
    /// A user listed in pgbouncer's `admin_users`.
    #[serde(default = "default_admin_user")]
    pub admin_user: String,
    /// `{env: VAR}` or `{file: PATH}`; omitted → pgbouncer's own auth decides (trust, .pgpass).
    pub admin_password: Option<SecretRef>,
    /// The `[databases]` entries that follow the primary (their host and port are rewritten).
    pub databases: Vec<String>,
    /// pgbouncer's ini file, rewritten by `route_pooler`; absent → admin console only: pgtopo
    /// then cannot re-route, only RELOAD and check (routing is left to an `after_promotion` hook).
    pub config_file: Option<PathBuf>,
    /// Reach `config_file` over SSH; absent → this machine.
    pub ssh: Option<SshSpec>,
    /// OS user that reads and writes `config_file` (default `postgres`).
    pub os_user: Option<String>,
    /// PAUSE the databases around a switchover (default true): clients wait instead of failing.
    #[serde(default = "default_true")]
    pub pause: bool,
    /// How long PAUSE may wait for running transactions (default 10s).
    #[serde(default = "default_pause_timeout")]
    pub pause_timeout: Duration,
}

fn default_pooler_port() -> u16 {
    6432
}
fn default_admin_user() -> String {
    "pgbouncer".into()
}
fn default_true() -> bool {
    true
}
fn default_pause_timeout() -> Duration {
    PoolerSpec::default_pause_timeout()
}

impl PoolerSpec {
    /// `pause_timeout` when the file says nothing.
    pub fn default_pause_timeout() -> Duration {
        Duration(std::time::Duration::from_secs(10))
    }
}
fn default_hook_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(30))
}

/// Commands at named points of an apply that changes the primary (and at its end).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HooksSpec {
    /// Before anything of a switchover or failover; a failure aborts with nothing changed.
    #[serde(default)]
    pub before_switchover: Vec<HookSpec>,
    /// Once the new primary accepts writes (and the poolers follow it).
    #[serde(default)]
    pub after_promotion: Vec<HookSpec>,
    /// After the last step of a plan that changes the primary.
    #[serde(default)]
    pub after_apply: Vec<HookSpec>,
    /// When a step of such a plan failed (after the poolers were resumed).
    #[serde(default)]
    pub on_failure: Vec<HookSpec>,
}

/// One hook: an argv vector, never a shell string.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    /// Program and arguments (`[/usr/local/bin/notify, --cluster, main]`).
    pub command: Vec<String>,
    /// Killed and failed after this long (default 30s).
    #[serde(default = "default_hook_timeout")]
    pub timeout: Duration,
}

/// A validated pooler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredPooler {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub admin_user: String,
    pub admin_password: Option<SecretRef>,
    pub databases: Vec<String>,
    pub config_file: Option<PathBuf>,
    pub ssh: Option<SshSpec>,
    pub os_user: String,
    pub pause: bool,
    pub pause_timeout: Duration,
}

/// The validated poolers, by name.
pub fn resolve_poolers(
    poolers: &BTreeMap<String, PoolerSpec>,
    default_os_user: &str,
) -> BTreeMap<String, DesiredPooler> {
    poolers
        .iter()
        .map(|(name, p)| {
            let d = DesiredPooler {
                name: name.clone(),
                host: p.host.clone(),
                port: p.port,
                admin_user: p.admin_user.clone(),
                admin_password: p.admin_password.clone(),
                databases: p.databases.clone(),
                config_file: p.config_file.clone(),
                ssh: p.ssh.clone(),
                os_user: p.os_user.clone().unwrap_or_else(|| default_os_user.into()),
                pause: p.pause,
                pause_timeout: p.pause_timeout,
            };
            (name.clone(), d)
        })
        .collect()
}
