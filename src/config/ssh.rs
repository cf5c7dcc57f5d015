//! How pgtopo reaches a node's host over SSH, as the topology file says it (a leaf: the raw
//! model and the pooler model both name it).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// SSH access to a node's host.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct SshSpec {
    pub host: String,
    /// Remote login user (default: ssh's own default, from ~/.ssh/config or the local user).
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Private key to authenticate with (default: ssh's own choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// known_hosts file to check the host key against (default: ~/.ssh/known_hosts). Host-key
    /// checking is always strict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
    /// Bastion(s) to reach the host through (ssh's `ProxyJump`, `-J`): `[user@]host[:port]`,
    /// several separated by commas, in the order they are crossed. The bastions' own settings
    /// (key, known_hosts) come from the ssh config file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jump: Option<String>,
    /// The ssh config file to read instead of ~/.ssh/config and /etc/ssh/ssh_config (`ssh -F`),
    /// for this host and its bastions. Absent: those two, as ssh reads them (what they say for
    /// the host applies; pgtopo's own options — strict host-key checking, batch mode, the
    /// fields above — win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
}
