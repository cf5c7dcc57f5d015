//! Observe the live cluster: every declared node concurrently, SQL through tokio-postgres, files
//! and `pg_controldata` through the node's transport when the server does not answer.
//! It records facts and decides nothing.

pub mod model;

pub use model::*;

use std::time::Duration;

use crate::config::{Desired, DesiredNode};
use crate::transport::Transport;

/// How to observe.
#[derive(Debug, Clone)]
pub struct ObserveOptions {
    /// Treat these nodes as unreachable without contacting them (`plan --assume-down`).
    pub assume_down: Vec<String>,
    /// Per-node connect and statement timeout.
    pub timeout: Duration,
}

impl Default for ObserveOptions {
    fn default() -> Self {
        ObserveOptions {
            assume_down: Vec::new(),
            timeout: Duration::from_secs(3),
        }
    }
}

/// Observe every declared node concurrently. Never fails: what cannot be seen is recorded as
/// such (`reachable: false` with a reason).
pub async fn observe(desired: &Desired, opts: &ObserveOptions) -> ObservedCluster {
    let _ = (desired, opts);
    todo!("observe")
}

/// Run `pg_controldata` on the node's data directory through its transport and parse it.
pub async fn read_control_data(
    transport: &dyn Transport,
    node: &DesiredNode,
) -> Result<ControlData, crate::transport::TransportError> {
    let _ = (transport, node);
    todo!("read_control_data")
}
