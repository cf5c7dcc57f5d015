//! `pgtopo import`: discover a running cluster from one (or a few) of its nodes and write the
//! topology file that matches it (SPEC §5b), so that `pgtopo plan` afterwards has nothing to do.
//!
//! Design:
//! - A server is *probed* by observing it as the only node of a throw-away topology (the same
//!   [`crate::observe::observe`] and [`crate::pg::connect`] as every other command), plus one
//!   import-only statement: its data directory, cluster_name, start time, the settings that
//!   come from postgresql.auto.conf, and the replication rules of pg_hba.conf.
//! - Upstreams are exact: a standby's WAL receiver (pg_stat_wal_receiver, else primary_conninfo)
//!   names its upstream's host and port, which is probed in turn, up to the primary.
//! - Downstreams: pg_stat_replication gives a standby's client address and application_name but
//!   not the port it listens on. When the upstream and the client are both on this machine
//!   (loopback), the standby is found exactly: the walsender's `client_port` is the local end of
//!   an established socket (`/proc/net/tcp{,6}`), held by the standby's WAL receiver, whose parent
//!   is its postmaster, whose working directory holds `postmaster.pid` (port, listen address).
//!   Otherwise candidates are tried: the client address with every port of `--port` (default
//!   5432) and of the nodes found so far, and, for a loopback client that the socket walk could
//!   not resolve, every TCP socket listening on this machine. A candidate is a downstream of node
//!   U only if it is a standby of the same system whose own upstream address probes to U. A
//!   standby that cannot be found this way (another machine, another port) is named in the
//!   notes, and can be given with another `--from`.
//! - The same server reached at two addresses (a server listening on `*`) is recognised by its
//!   system identifier, data directory, port and postmaster start time.
//! - Node names: a standby's application_name (primary_conninfo), else its cluster_name, else its
//!   slot name; the primary's cluster_name; else `nN`. A node's host is the address its
//!   standbys use to reach it, else its single listen address, else the address it was reached at.
//! - Written as topology: each node's host, port and data directory, the primary and every
//!   upstream; the replication user (from primary_conninfo), slots (when every standby streams
//!   through a slot named after it on its upstream), the synchronous set, hba_method and the
//!   extra rules of an existing pgtopo managed block; the settings of postgresql.auto.conf
//!   (cluster-wide when every node has the same value, else per node), except those pgtopo owns
//!   or derives (primary_conninfo, primary_slot_name, synchronous_standby_names, port,
//!   listen_addresses).
//! - A WAL archive (archive_mode and archive_command, wherever set) is read back into `archive:`
//!   by [`archive`]; then archive_mode, archive_command and restore_command are pgtopo's.
//! - The file is validated with [`crate::config::load_str`], then the cluster is observed through
//!   it and diffed: whatever the first plan would still change (typically: pgtopo's managed block
//!   in pg_hba.conf of a cluster built by hand) is returned as notes, never hidden.
//!
//! Layout, by concern: [`probe`] talks to one live server; [`discover`] walks the cluster from
//! the `--from` addresses; [`infer`] (pure) turns what was found into a
//! [`crate::config::TopologyFile`]; [`write`] gives its text (the one topology writer,
//! [`crate::config::TopologyFile::to_yaml`], below a header of notes). [`import`] wires them and
//! checks the result against the cluster.
//!
//! Architecture invariant: no secret is read here except to connect; passwords enter the file only
//! as `{env: …}` / `{file: …}` references.

pub mod archive;
pub mod discover;
pub mod infer;
pub mod local;
pub mod probe;
pub use crate::config::sync_names as sync;
pub mod write;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConnectSpec, Desired, SecretRef};
use crate::observe::ObserveOptions;

/// What to import and how to connect.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// `HOST:PORT` of the nodes to start from (at least one).
    pub from: Vec<String>,
    /// Cluster name to write.
    pub cluster: String,
    /// `connect.user`, `connect.dbname`, `connect.password` (a reference, never a value).
    pub user: String,
    pub dbname: String,
    pub password: Option<SecretRef>,
    /// `replication.password` to write (a reference).
    pub replication_password: Option<SecretRef>,
    /// Ports tried for standbys found in pg_stat_replication (besides the ports of known nodes).
    pub ports: Vec<u16>,
    /// `postgres.bin_dir` to write (default: the running primary's, else
    /// `/usr/lib/postgresql/<major>/bin` when it exists).
    pub bin_dir: Option<PathBuf>,
    /// `postgres.os_user` to write (default: not written, i.e. `postgres`).
    pub os_user: Option<String>,
    /// Connect and statement timeout per server.
    pub timeout: Duration,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            from: Vec::new(),
            cluster: "imported".into(),
            user: "postgres".into(),
            dbname: "postgres".into(),
            password: None,
            replication_password: None,
            ports: vec![5432],
            bin_dir: None,
            os_user: None,
            timeout: Duration::from_secs(3),
        }
    }
}

/// Why import failed. Messages name addresses, never secrets.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImportError {
    #[error("`{0}` is not HOST:PORT")]
    #[diagnostic(help("for example --from 10.0.0.1:5432 or --from [::1]:5432"))]
    BadAddress(String),
    #[error("cannot import from {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{addr} belongs to another cluster (system identifier {found}, not {expected})")]
    OtherCluster {
        addr: String,
        found: String,
        expected: String,
    },
    #[error("no primary found: {0}")]
    #[diagnostic(help(
        "import needs the running primary: give its address with --from, or start it"
    ))]
    NoPrimary(String),
    #[error("several running primaries: {0}")]
    #[diagnostic(help("a topology has exactly one primary; import one of them at a time"))]
    SeveralPrimaries(String),
    #[error("the imported topology does not validate:\n{0}")]
    Invalid(String),
}

/// One imported node, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedNode {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub data_dir: String,
    /// None for the primary.
    pub upstream: Option<String>,
}

/// The result: the file's text, its validated topology, the nodes, and notes for the operator
/// (what could not be expressed or found, and what the first plan would still change).
#[derive(Debug)]
pub struct Imported {
    pub yaml: String,
    pub desired: Desired,
    pub nodes: Vec<ImportedNode>,
    pub notes: Vec<String>,
}

/// `host:port`, `[v6]:port`.
pub fn split_addr(s: &str) -> Result<(String, u16), ImportError> {
    let bad = || ImportError::BadAddress(s.to_string());
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        (h, p)
    } else {
        s.rsplit_once(':').ok_or_else(bad)?
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port.parse().map_err(|_| bad())?))
}

impl ImportOptions {
    /// The `connect:` section: how import connects, and how the written file will.
    pub fn connect_spec(&self) -> ConnectSpec {
        ConnectSpec {
            user: self.user.clone(),
            dbname: self.dbname.clone(),
            password: self.password.clone(),
            ..ConnectSpec::default()
        }
    }
}

/// `/usr/lib/postgresql/<major>/bin` when it holds pg_ctl (import's default `postgres.bin_dir`).
fn packaged_bin_dir(major: u32) -> Option<PathBuf> {
    let p = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    p.join("pg_ctl").exists().then_some(p)
}

/// Import the cluster that the `--from` nodes belong to.
pub async fn import(opts: &ImportOptions) -> Result<Imported, ImportError> {
    if opts.from.is_empty() {
        return Err(ImportError::BadAddress(String::new()));
    }
    let disc = discover::discover(opts).await?;
    let inferred = infer::infer(
        &disc,
        &infer::InferOptions {
            cluster: &opts.cluster,
            connect: opts.connect_spec(),
            replication_password: opts.replication_password.clone(),
            bin_dir: opts.bin_dir.clone(),
            default_bin_dir: &packaged_bin_dir,
            os_user: opts.os_user.clone(),
        },
    )?;
    let mut notes = inferred.notes;
    let body = inferred.file.to_yaml();
    let desired = crate::config::load_str("imported topology", &body)
        .map_err(|e| ImportError::Invalid(format!("{e:?}")))?;
    // What would the first plan still change?
    let observed = crate::observe::observe(&desired, &ObserveOptions::default()).await;
    for c in crate::diff::diff(&desired, &observed) {
        notes.push(format!(
            "the first plan changes {}: {}",
            c.address, c.reason
        ));
    }
    let yaml = write::text(
        &inferred.file,
        inferred.system_identifier.as_deref(),
        &notes,
    );
    Ok(Imported {
        yaml,
        desired,
        nodes: inferred.nodes,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            split_addr("10.0.0.1:5432").unwrap(),
            ("10.0.0.1".into(), 5432)
        );
        assert_eq!(split_addr("[::1]:5433").unwrap(), ("::1".into(), 5433));
        assert_eq!(split_addr("db1:6000").unwrap(), ("db1".into(), 6000));
        assert!(split_addr("db1").is_err());
        assert!(split_addr(":5432").is_err());
        assert!(split_addr("db1:x").is_err());
    }
}
