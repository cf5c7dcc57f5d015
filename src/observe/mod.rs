//! Observe the live cluster: every declared node concurrently, SQL through tokio-postgres, files
//! and `pg_controldata` through the node's transport when the server does not answer.
//! It records facts and decides nothing.
//!
//! Design:
//! - Every node at once (`join_all`); per node one connection (`pg::connect`) and a handful of
//!   statements pipelined on it ([`sql`]): a running node costs no process spawn.
//! - When SQL fails (refused, timeout, authentication), the reason is kept (it names the node and
//!   its address, never a secret) and the node's transport looks at the data directory instead
//!   ([`files`]): PG_VERSION, postmaster.pid, standby.signal, postgresql.auto.conf, pg_hba.conf,
//!   `pg_controldata`. A transport that fails leaves `host_reachable` false.
//! - Every node's transport is checked alongside SQL ([`Transport::check_access`]: connected,
//!   acting as os_user). A node whose transport fails is unreachable with that cause even when
//!   SQL answers: pgtopo could not act on it.
//! - Upstreams are resolved last, when every node's address is known: the WAL receiver's sender
//!   host:port, else primary_conninfo's, matched against the declared nodes.
//! - `assume_down` nodes are not contacted at all.

pub mod archive;
mod binaries;
pub mod conninfo;
mod files;
pub mod fixtures;
pub mod model;
mod prepared;
mod sql;

pub use conninfo::{
    is_hba_rule, managed_block, managed_block_line, managed_text, parse_conninfo, HBA_BEGIN,
    HBA_END,
};
pub use files::parse_control_data;
pub use model::*;
pub use sql::{conflict_now, parse_history, FIXED_SETTINGS, REPLAY_BLOCKERS};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::join_all;

use crate::config::{Desired, DesiredNode};
use crate::transport::{Transport, TransportError};

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
    let (results, poolers) = futures::join!(
        join_all(
            desired
                .nodes
                .values()
                .map(|n| observe_node(desired, n, opts)),
        ),
        crate::pooler::observe_all(desired, std::time::Duration::from_secs(3))
    );
    let mut nodes = BTreeMap::new();
    let mut clients = BTreeMap::new();
    for (name, (mut node, facts, client)) in desired.nodes.keys().zip(results) {
        resolve_upstream(desired, &mut node, &facts);
        nodes.insert(name.clone(), node);
        if let Some(c) = client {
            clients.insert(name.clone(), c);
        }
    }
    compare_wal(&mut nodes, &clients).await;
    ObservedCluster {
        format_version: OBSERVED_FORMAT_VERSION,
        cluster: desired.cluster.clone(),
        observed_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        nodes,
        poolers,
    }
}

/// How many WAL bytes before a standby's replay position are compared with its upstream's.
const WAL_MATCH_BYTES: u64 = 256;

/// Every running standby on its upstream's timeline: the upstream's end of WAL, read now
/// (after the standby's replay position was), and, when the upstream has reached that
/// position, the WAL bytes before it compared on both ([`WalMatch`]); and a second look at a
/// standby whose startup process waited for WAL ([`ReplayStall`]).
async fn compare_wal(
    nodes: &mut BTreeMap<String, ObservedNode>,
    clients: &BTreeMap<String, tokio_postgres::Client>,
) {
    let pairs: Vec<(String, String, u32, crate::units::Lsn)> = nodes
        .iter()
        .filter_map(|(name, n)| {
            let up_name = n.upstream.clone()?;
            let up = nodes.get(&up_name)?;
            let (tli, at) = (n.timeline?, n.replay_lsn?);
            (n.role == Some(Role::Standby) && up.timeline == Some(tli))
                .then(|| (name.clone(), up_name, tli, at))
        })
        .collect();
    let checks = pairs.iter().map(|(x, up, tli, at)| async move {
        let (mine, theirs) = (clients.get(x)?, clients.get(up)?);
        let upstream_end = sql::wal_end_now(theirs).await?;
        let mut m = WalMatch {
            at: *at,
            upstream_end,
            bytes: 0,
            matches: None,
        };
        if upstream_end >= *at {
            let (a, b) = futures::join!(
                sql::wal_bytes_before(mine, *tli, *at, WAL_MATCH_BYTES),
                sql::wal_bytes_before(theirs, *tli, *at, WAL_MATCH_BYTES)
            );
            if let (Some(a), Some(b)) = (a, b) {
                m.bytes = ((a.len() - 2) / 2) as u32;
                m.matches = Some(a == b);
            }
        }
        Some(m)
    });
    let waiting: Vec<bool> = pairs
        .iter()
        .map(|(x, ..)| {
            nodes
                .get(x)
                .and_then(|n| n.startup_wait_event.as_deref())
                .is_some_and(sql::waits_for_wal)
        })
        .collect();
    let stalls = pairs
        .iter()
        .zip(waiting)
        .map(|((x, _, _, at), waiting)| async move {
            if !waiting {
                return None;
            }
            sql::replay_stall(clients.get(x)?, *at).await
        });
    let (matches, stalls) = futures::join!(join_all(checks), join_all(stalls));
    for (((x, ..), m), stall) in pairs.iter().zip(matches).zip(stalls) {
        tracing::debug!(node = %x, ?m, ?stall, "WAL compared with the upstream's");
        if let Some(n) = nodes.get_mut(x) {
            n.wal_match = m;
            n.replay_stall = stall;
        }
    }
}

/// One node: SQL first; the files and tools through its transport when SQL fails. The SQL
/// connection is handed back for the comparisons across nodes.
async fn observe_node(
    desired: &Desired,
    node: &DesiredNode,
    opts: &ObserveOptions,
) -> (
    ObservedNode,
    sql::ReceiverFacts,
    Option<tokio_postgres::Client>,
) {
    let mut obs = ObservedNode::default();
    if opts.assume_down.iter().any(|n| n == &node.name) {
        obs.unreachable_reason = Some("assumed down (--assume-down): not contacted".into());
        return (obs, sql::ReceiverFacts::default(), None);
    }
    let started = std::time::Instant::now();
    let mut names: BTreeSet<String> = node.settings.keys().cloned().collect();
    names.extend(
        desired
            .failover_slot_settings(&node.name)
            .into_iter()
            .chain(desired.archive_settings(&node.name))
            .map(|(k, ..)| k.to_string()),
    );
    let transport = crate::transport::for_node(node);
    let (sql, access) = tokio::join!(
        observe_over_sql(desired, node, opts, &names),
        transport.check_access()
    );
    let reason = match sql {
        Ok((mut obs, facts, client)) => {
            match access {
                Err(e) => transport_failed(&mut obs, node, &e),
                Ok(()) => {
                    obs.binaries = Some(binaries::observe(transport.as_ref(), node, &obs).await);
                    if let Some(a) = &desired.archive {
                        obs.archive =
                            Some(archive::observe(&client, transport.as_ref(), node, a).await);
                    }
                }
            }
            tracing::debug!(
                node = %node.name,
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "observed over SQL"
            );
            return (obs, facts, Some(client));
        }
        Err(reason) => reason,
    };
    // Start again from what the files say; nothing half-read over SQL is kept.
    let mut obs = ObservedNode {
        unreachable_reason: Some(reason),
        ..ObservedNode::default()
    };
    match access {
        Ok(()) => {
            let mut all_names: BTreeSet<String> =
                sql::FIXED_SETTINGS.iter().map(|s| s.to_string()).collect();
            all_names.extend(names);
            files::observe_files(transport.as_ref(), node, &all_names, &mut obs).await;
            if obs.host_reachable {
                obs.binaries = Some(binaries::observe(transport.as_ref(), node, &obs).await);
            }
        }
        Err(e) => transport_failed(&mut obs, node, &e),
    }
    tracing::debug!(
        node = %node.name,
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        reason = obs.unreachable_reason.as_deref().unwrap_or(""),
        "observed through files"
    );
    (obs, sql::ReceiverFacts::default(), None)
}

/// The node over SQL; Err: why SQL failed (it names the node and its address).
async fn observe_over_sql(
    desired: &Desired,
    node: &DesiredNode,
    opts: &ObserveOptions,
    names: &BTreeSet<String>,
) -> Result<(ObservedNode, sql::ReceiverFacts, tokio_postgres::Client), String> {
    let client = crate::pg::connect(desired, node, opts.timeout)
        .await
        .map_err(|e| e.to_string())?;
    let mut obs = ObservedNode::default();
    match tokio::time::timeout(opts.timeout, sql::observe_sql(&client, names, &mut obs)).await {
        Ok(Ok(facts)) => Ok((obs, facts, client)),
        Ok(Err(e)) => Err(format!(
            "{} ({}:{}): query failed: {}",
            node.name,
            node.host,
            node.port,
            crate::pg::describe(&e)
        )),
        Err(_) => Err(format!(
            "{} ({}:{}): queries did not finish within {:?}",
            node.name, node.host, node.port, opts.timeout
        )),
    }
}

/// The node's transport cannot be used (not connected, or not as its os_user): pgtopo cannot act
/// on it, so it is unreachable with that cause, whatever SQL said (what SQL saw is kept).
fn transport_failed(obs: &mut ObservedNode, node: &DesiredNode, e: &TransportError) {
    let cause = format!("{}: {e}", node.name);
    obs.reachable = false;
    obs.host_reachable = false;
    obs.unreachable_reason = Some(match obs.unreachable_reason.take() {
        Some(sql) => format!("{sql}; {cause}"),
        None => cause.clone(),
    });
    obs.files_error = Some(cause);
}

/// Name the upstream of a standby: the WAL receiver's sender, else primary_conninfo, matched on
/// host:port against the declared nodes.
fn resolve_upstream(desired: &Desired, node: &mut ObservedNode, facts: &sql::ReceiverFacts) {
    if node.role != Some(Role::Standby) {
        return;
    }
    let addr = match (&facts.sender_host, facts.sender_port) {
        (Some(h), Some(p)) => Some((h.clone(), p)),
        _ => node
            .primary_conninfo
            .as_ref()
            .and_then(|c| Some((c.host.clone()?, c.port.unwrap_or(5432)))),
    };
    let Some((host, port)) = addr else {
        return;
    };
    node.upstream_addr = Some(format!("{host}:{port}"));
    node.upstream = desired
        .nodes
        .values()
        .find(|n| n.port == port && same_host(&n.host, &host))
        .map(|n| n.name.clone());
}

fn same_host(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    matches!(
        (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()),
        (Ok(x), Ok(y)) if x == y
    )
}

/// Run `pg_controldata` on the node's data directory through its transport and parse it.
pub async fn read_control_data(
    transport: &dyn Transport,
    node: &DesiredNode,
) -> Result<ControlData, crate::transport::TransportError> {
    files::read_control_data(transport, node).await
}
