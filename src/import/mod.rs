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
//! - The file is validated with [`crate::config::load_str`], then the cluster is observed through
//!   it and diffed: whatever the first plan would still change (typically: pgtopo's managed block
//!   in pg_hba.conf of a cluster built by hand) is returned as notes, never hidden.
//!
//! Architecture invariant: no secret is read here except to connect; passwords enter the file only
//! as `{env: …}` / `{file: …}` references.

pub mod local;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use futures::future::join_all;
use serde_yaml::{Mapping, Value};
use tokio_postgres::SimpleQueryMessage;

use crate::config::{Desired, SecretRef};
use crate::observe::{ObserveOptions, ObservedNode, Role};

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
    /// `postgres.bin_dir` to write (default: `/usr/lib/postgresql/<major>/bin` when it exists).
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

/// Settings of postgresql.auto.conf that are not written to `settings:` (owned by pgtopo or a
/// node's identity).
const NOT_IMPORTED: [&str; 6] = [
    "primary_conninfo",
    "primary_slot_name",
    "synchronous_standby_names",
    "port",
    "listen_addresses",
    "recovery_target_timeline",
];

const EXTRA: &str = "select current_setting('data_directory'), \
    coalesce(current_setting('cluster_name', true), ''), \
    pg_postmaster_start_time()::text, \
    coalesce((select json_agg(json_build_array(name, current_setting(name)) order by name) \
       from pg_settings where sourcefile like '%/postgresql.auto.conf'), '[]')::text";

/// The walsenders' client ports, which pg_stat_replication has and observation does not keep.
const WALSENDERS: &str = "select host(client_addr), client_port::text from pg_stat_replication \
    where state <> 'backup' and client_port > 0";

const HBA_REPLICATION_RULES: &str =
    "select coalesce(array_to_string(user_name, ','), ''), coalesce(auth_method, '') \
     from pg_hba_file_rules where error is null and type <> 'local' \
     and 'replication' = any(database) order by line_number";

/// A server seen through one address.
#[derive(Debug, Clone)]
struct Probe {
    host: String,
    port: u16,
    obs: ObservedNode,
    data_directory: String,
    cluster_name: String,
    start_time: String,
    auto_settings: BTreeMap<String, String>,
    /// (users, method) of pg_hba's replication rules, in file order.
    hba_replication: Vec<(Vec<String>, String)>,
    /// (client address, client port) of each walsender.
    walsenders: Vec<(String, u16)>,
}

impl Probe {
    fn key(&self) -> (String, String, String, String) {
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
    fn application_name(&self) -> Option<String> {
        self.obs
            .primary_conninfo
            .as_ref()
            .and_then(|c| c.application_name.clone())
            .or_else(|| Some(self.cluster_name.clone()).filter(|c| !c.is_empty()))
    }

    fn upstream_addr(&self) -> Option<(String, u16)> {
        if self.obs.role != Some(Role::Standby) {
            return None;
        }
        split_addr(self.obs.upstream_addr.as_deref()?).ok()
    }
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

fn secret_value(r: &SecretRef) -> Value {
    serde_yaml::to_value(r).expect("a secret reference serialises")
}

fn s(x: &str) -> Value {
    Value::String(x.to_string())
}

/// The `connect:` section, only with what differs from the defaults.
fn connect_section(opts: &ImportOptions) -> Option<Value> {
    let mut m = Mapping::new();
    if opts.user != "postgres" {
        m.insert(s("user"), s(&opts.user));
    }
    if opts.dbname != "postgres" {
        m.insert(s("dbname"), s(&opts.dbname));
    }
    if let Some(p) = &opts.password {
        m.insert(s("password"), secret_value(p));
    }
    (!m.is_empty()).then_some(Value::Mapping(m))
}

/// A one-node topology to observe a server through.
fn probe_desired(opts: &ImportOptions, host: &str, port: u16) -> Result<Desired, String> {
    let mut doc = Mapping::new();
    doc.insert(s("cluster"), s("import-probe"));
    if let Some(c) = connect_section(opts) {
        doc.insert(s("connect"), c);
    }
    let mut node = Mapping::new();
    node.insert(s("host"), s(host));
    node.insert(s("port"), Value::Number(port.into()));
    // Never read: the server answers SQL or the probe fails.
    node.insert(s("data_dir"), s("/nonexistent/pgtopo-import-probe"));
    node.insert(s("role"), s("primary"));
    let mut nodes = Mapping::new();
    nodes.insert(s("probe"), Value::Mapping(node));
    doc.insert(s("nodes"), Value::Mapping(nodes));
    let text = serde_yaml::to_string(&Value::Mapping(doc)).map_err(|e| e.to_string())?;
    crate::config::load_str_with("import probe", &text, || {
        PathBuf::from("/usr/lib/postgresql/15/bin")
    })
    .map_err(|e| format!("{e}"))
}

fn rows(msgs: Vec<SimpleQueryMessage>) -> Vec<tokio_postgres::SimpleQueryRow> {
    msgs.into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

/// Probe one address: the server's observation and the import-only facts.
async fn probe(opts: &ImportOptions, host: &str, port: u16) -> Result<Probe, String> {
    let d = probe_desired(opts, host, port)?;
    let node = &d.nodes["probe"];
    let client = crate::pg::connect(&d, node, opts.timeout)
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
        Ok::<_, tokio_postgres::Error>((extra, senders, hba))
    };
    let (extra, senders, hba) = tokio::time::timeout(opts.timeout, q)
        .await
        .map_err(|_| format!("{host}:{port}: no answer within {:?}", opts.timeout))?
        .map_err(|e| format!("{host}:{port}: {}", crate::pg::describe(&e)))?;
    drop(client);
    let e = extra
        .first()
        .ok_or_else(|| format!("{host}:{port}: no answer"))?;
    let get = |i: usize| e.get(i).unwrap_or_default().to_string();
    let pairs: Vec<(String, String)> = serde_json::from_str(&get(3)).unwrap_or_default();
    let observed = crate::observe::observe(
        &d,
        &ObserveOptions {
            assume_down: Vec::new(),
            timeout: opts.timeout,
        },
    )
    .await;
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
        hba_replication: hba
            .iter()
            .map(|r| {
                (
                    r.get(0)
                        .unwrap_or_default()
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                    r.get(1).unwrap_or_default().to_string(),
                )
            })
            .collect(),
        walsenders: senders
            .iter()
            .filter_map(|r| Some((r.get(0)?.to_string(), r.get(1)?.parse().ok()?)))
            .collect(),
    })
}

fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What discovery found: the servers (deduplicated) and which address led to which server.
#[derive(Default)]
struct Discovery {
    servers: Vec<Probe>,
    /// Address → index into `servers` (None: nothing answered there).
    at: HashMap<(String, u16), Option<usize>>,
}

impl Discovery {
    /// Probe addresses not tried yet (concurrently); returns the indices of new servers.
    async fn visit(&mut self, opts: &ImportOptions, addrs: Vec<(String, u16)>) -> Vec<usize> {
        let mut todo: Vec<(String, u16)> = addrs
            .into_iter()
            .filter(|a| !self.at.contains_key(a))
            .collect();
        todo.sort();
        todo.dedup();
        let results = join_all(todo.iter().map(|(h, p)| probe(opts, h, *p))).await;
        let mut new = Vec::new();
        for (addr, r) in todo.into_iter().zip(results) {
            let idx = match r {
                Err(reason) => {
                    tracing::debug!(addr = %format!("{}:{}", addr.0, addr.1), %reason, "import: no server");
                    None
                }
                Ok(p) => match self.servers.iter().position(|x| x.key() == p.key()) {
                    Some(i) => Some(i),
                    None => {
                        self.servers.push(p);
                        new.push(self.servers.len() - 1);
                        Some(self.servers.len() - 1)
                    }
                },
            };
            self.at.insert(addr, idx);
        }
        new
    }

    /// The server a standby streams from, when its address was probed.
    fn upstream_of(&self, i: usize) -> Option<usize> {
        let addr = self.servers[i].upstream_addr()?;
        self.at.get(&addr).copied().flatten()
    }
}

/// Discover the cluster: upstreams exactly, downstreams by candidates (see the module docs).
async fn discover(opts: &ImportOptions) -> Result<Discovery, ImportError> {
    let mut disc = Discovery::default();
    let mut from = Vec::new();
    for f in &opts.from {
        from.push(split_addr(f)?);
    }
    let mut frontier = disc.visit(opts, from.clone()).await;
    for (h, p) in &from {
        if disc.at.get(&(h.clone(), *p)) == Some(&None) {
            // Once more, for the reason.
            let reason = match probe(opts, h, *p).await {
                Err(reason) => reason,
                Ok(_) => "it answered only on a second try".into(),
            };
            return Err(ImportError::Unreachable {
                addr: format!("{h}:{p}"),
                reason,
            });
        }
    }
    let mut searched = BTreeSet::new();
    let listeners = local::listeners();
    loop {
        // Upstreams, exactly, up to the primary.
        while !frontier.is_empty() {
            let ups: Vec<(String, u16)> = frontier
                .iter()
                .filter_map(|i| disc.servers[*i].upstream_addr())
                .collect();
            frontier = disc.visit(opts, ups).await;
        }
        // Downstreams: every server with more walsenders than the standbys found for it.
        let mut candidates = Vec::new();
        for u in 0..disc.servers.len() {
            if !searched.insert(u) {
                continue;
            }
            let up = &disc.servers[u];
            let feeds: Vec<_> = up
                .obs
                .replication
                .iter()
                .filter(|r| r.state != "backup")
                .collect();
            if feeds.is_empty() {
                continue;
            }
            let mut ports: BTreeSet<u16> = opts.ports.iter().copied().collect();
            ports.extend(disc.servers.iter().map(|x| x.port));
            let up_local = is_loopback_host(&up.host);
            for r in feeds {
                let Some(client) = r.client_addr.clone() else {
                    continue;
                };
                if up_local && is_loopback_host(&client) {
                    continue; // below, by its socket
                }
                candidates.extend(ports.iter().map(|p| (client.clone(), *p)));
            }
            if !up_local {
                continue;
            }
            // A standby on this machine: found exactly through its WAL receiver's socket, else
            // among the client address's ports and this machine's listening sockets.
            for (client, client_port) in &up.walsenders {
                if !is_loopback_host(client) {
                    continue;
                }
                if let Some(addr) = local::server_of_local_client(*client_port, up.port) {
                    tracing::debug!(host = %addr.0, port = addr.1, "import: standby found by its socket");
                    candidates.push(addr);
                    continue;
                }
                candidates.extend(ports.iter().map(|p| (client.clone(), *p)));
                for l in &listeners {
                    let host = if l.addr.is_unspecified() {
                        client.clone()
                    } else if l.addr.is_loopback() {
                        l.addr.to_string()
                    } else {
                        continue;
                    };
                    candidates.push((host, l.port));
                }
            }
        }
        let new = disc.visit(opts, candidates).await;
        if new.is_empty() {
            break;
        }
        frontier = new;
    }
    // Every --from must be a server of one system.
    let system = disc.servers[0]
        .obs
        .system_identifier
        .clone()
        .unwrap_or_default();
    for (h, p) in &from {
        if let Some(Some(i)) = disc.at.get(&(h.clone(), *p)) {
            let id = disc.servers[*i]
                .obs
                .system_identifier
                .clone()
                .unwrap_or_default();
            if id != system {
                return Err(ImportError::OtherCluster {
                    addr: format!("{h}:{p}"),
                    found: id,
                    expected: system,
                });
            }
        }
    }
    Ok(disc)
}

/// Which servers belong to the cluster: the primary and, recursively, the standbys whose upstream
/// is one of them (servers of other systems, found by the candidate search, are left out).
fn members(disc: &Discovery) -> Result<(usize, Vec<usize>), ImportError> {
    let system = disc.servers[0].obs.system_identifier.clone();
    let same: Vec<usize> = (0..disc.servers.len())
        .filter(|i| disc.servers[*i].obs.system_identifier == system)
        .collect();
    let primaries: Vec<usize> = same
        .iter()
        .copied()
        .filter(|i| disc.servers[*i].obs.role == Some(Role::Primary))
        .collect();
    let addr = |i: usize| format!("{}:{}", disc.servers[i].host, disc.servers[i].port);
    let primary = match primaries.as_slice() {
        [p] => *p,
        [] => {
            let seen: Vec<String> = same
                .iter()
                .map(|i| {
                    format!(
                        "{} streams from {}",
                        addr(*i),
                        disc.servers[*i]
                            .obs
                            .upstream_addr
                            .as_deref()
                            .unwrap_or("nothing")
                    )
                })
                .collect();
            return Err(ImportError::NoPrimary(seen.join("; ")));
        }
        many => {
            return Err(ImportError::SeveralPrimaries(
                many.iter().map(|i| addr(*i)).collect::<Vec<_>>().join(", "),
            ))
        }
    };
    let mut order = vec![primary];
    let mut k = 0;
    while k < order.len() {
        let u = order[k];
        let mut down: Vec<usize> = same
            .iter()
            .copied()
            .filter(|i| !order.contains(i) && disc.upstream_of(*i) == Some(u))
            .collect();
        down.sort_by_key(|i| (disc.servers[*i].host.clone(), disc.servers[*i].port));
        order.extend(down);
        k += 1;
    }
    Ok((primary, order))
}

fn unique_name(wanted: &[Option<String>], taken: &BTreeSet<String>) -> String {
    for w in wanted.iter().flatten() {
        if crate::config::rules::valid_node_name(w) && !taken.contains(w) {
            return w.clone();
        }
    }
    (1..)
        .map(|i| format!("n{i}"))
        .find(|n| !taken.contains(n))
        .expect("a free name")
}

/// A setting's node-independent text (as the topology will carry it).
fn concrete_listen_address(p: &Probe) -> Option<String> {
    let v = p
        .obs
        .settings
        .get("listen_addresses")?
        .value
        .trim()
        .to_string();
    let single =
        !v.contains(',') && !matches!(v.as_str(), "*" | "0.0.0.0" | "::" | "" | "localhost");
    single.then_some(v)
}

/// Import the cluster that the `--from` nodes belong to.
pub async fn import(opts: &ImportOptions) -> Result<Imported, ImportError> {
    if opts.from.is_empty() {
        return Err(ImportError::BadAddress(String::new()));
    }
    let disc = discover(opts).await?;
    let (primary, order) = members(&disc)?;
    let mut notes = Vec::new();
    let sv = |i: usize| &disc.servers[i];
    // Servers of this system that hang off nothing reachable.
    for (i, p) in disc.servers.iter().enumerate() {
        if !order.contains(&i) && p.obs.system_identifier == sv(primary).obs.system_identifier {
            notes.push(format!(
                "{}:{} is a standby of this cluster that streams from {}, which is not part of \
                 it: not imported",
                p.host,
                p.port,
                p.obs.upstream_addr.as_deref().unwrap_or("nothing")
            ));
        }
    }

    // Names: standbys first (their names are slot and application names), then the primary.
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for &i in order.iter().filter(|i| **i != primary) {
        let p = sv(i);
        let n = unique_name(
            &[
                p.obs
                    .primary_conninfo
                    .as_ref()
                    .and_then(|c| c.application_name.clone()),
                Some(p.cluster_name.clone()),
                p.obs.primary_slot_name.clone(),
            ],
            &taken,
        );
        taken.insert(n.clone());
        names.insert(i, n);
    }
    let pn = unique_name(&[Some(sv(primary).cluster_name.clone())], &taken);
    names.insert(primary, pn);

    // Hosts: how the standbys reach a node, else its one listen address, else how we did.
    let mut hosts: BTreeMap<usize, String> = BTreeMap::new();
    for &i in &order {
        let via_standbys: BTreeSet<String> = order
            .iter()
            .filter(|j| disc.upstream_of(**j) == Some(i))
            .filter_map(|j| sv(*j).upstream_addr().map(|(h, _)| h))
            // A standby connected through a Unix socket names a directory, not an address.
            .filter(|h| !h.starts_with('/'))
            .collect();
        if via_standbys.len() > 1 {
            notes.push(format!(
                "{}'s standbys reach it at different addresses ({}); the topology uses the first",
                names[&i],
                via_standbys.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let host = via_standbys
            .into_iter()
            .next()
            .or_else(|| concrete_listen_address(sv(i)))
            .unwrap_or_else(|| sv(i).host.clone());
        hosts.insert(i, host);
    }
    let port_of = |i: usize| -> u16 {
        sv(i)
            .obs
            .settings
            .get("port")
            .and_then(|s| s.value.parse().ok())
            .unwrap_or(sv(i).port)
    };

    // Replication role, slots, synchronous set.
    let standbys: Vec<usize> = order.iter().copied().filter(|i| *i != primary).collect();
    let mut users: BTreeMap<String, usize> = BTreeMap::new();
    for &i in &standbys {
        if let Some(u) = sv(i)
            .obs
            .primary_conninfo
            .as_ref()
            .and_then(|c| c.user.clone())
        {
            *users.entry(u).or_default() += 1;
        }
    }
    let repl_user = users
        .iter()
        .max_by_key(|(_, c)| **c)
        .map(|(u, _)| u.clone())
        .unwrap_or_else(|| "replicator".into());
    if users.len() > 1 {
        notes.push(format!(
            "standbys connect as different users ({}); the topology uses {repl_user}",
            users.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let slot_ok = |i: usize| {
        let name = &names[&i];
        sv(i).obs.primary_slot_name.as_deref() == Some(name.as_str())
            && disc
                .upstream_of(i)
                .is_some_and(|u| sv(u).obs.slots.iter().any(|s| s == name))
    };
    let with_slot = standbys.iter().filter(|i| slot_ok(**i)).count();
    let slots = standbys.is_empty() || with_slot == standbys.len();
    if !slots && with_slot > 0 {
        notes.push(format!(
            "only {with_slot} of {} standbys stream through a slot named after them: slots: false \
             (with slots: true the first plan creates the others)",
            standbys.len()
        ));
    }
    let by_app: BTreeMap<String, String> = standbys
        .iter()
        .filter_map(|i| {
            Some((
                sv(*i).application_name()?.to_ascii_lowercase(),
                names[i].clone(),
            ))
        })
        .collect();
    let sync_value = sv(primary)
        .obs
        .settings
        .get("synchronous_standby_names")
        .map(|s| s.value.clone())
        .unwrap_or_default();
    let synchronous = match sync::parse_sync_names(&sync_value) {
        Ok(None) => None,
        Ok(Some(mut spec)) => {
            let mapped: Option<Vec<String>> = spec
                .standbys
                .iter()
                .map(|a| by_app.get(&a.to_ascii_lowercase()).cloned())
                .collect();
            match mapped {
                Some(m) if spec.count as usize <= m.len() => {
                    spec.standbys = m;
                    Some(spec)
                }
                _ => {
                    notes.push(format!(
                        "synchronous_standby_names = '{sync_value}' names standbys that were not \
                         found: not imported (the first plan would clear it)"
                    ));
                    None
                }
            }
        }
        Err(why) => {
            notes.push(format!("synchronous_standby_names not imported: {why}"));
            None
        }
    };

    // pg_hba: an existing managed block gives the method and the extra rules.
    let node_hosts: BTreeSet<String> = hosts.values().map(|h| hba_address(h)).collect();
    let mut hba_method = None;
    let mut hba_rules: Vec<Value> = Vec::new();
    match sv(primary)
        .obs
        .hba
        .as_ref()
        .and_then(|h| h.managed_block.clone())
    {
        Some(block) => {
            for line in block {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.is_empty() || f[0].starts_with('#') {
                    continue;
                }
                if f.len() == 5
                    && f[1] == "replication"
                    && f[2] == repl_user
                    && node_hosts.contains(f[3])
                {
                    hba_method.get_or_insert_with(|| f[4].to_string());
                    continue;
                }
                match hba_rule(&f) {
                    Some(r) => hba_rules.push(r),
                    None => notes.push(format!("managed pg_hba rule not imported: {line}")),
                }
            }
        }
        None => {
            hba_method = sv(primary)
                .hba_replication
                .iter()
                .find(|(u, _)| u.iter().any(|x| x == "all" || *x == repl_user))
                .map(|(_, m)| m.clone());
        }
    }

    // Settings from postgresql.auto.conf: cluster-wide when every node agrees.
    let per_node: BTreeMap<usize, BTreeMap<String, String>> = order
        .iter()
        .map(|i| {
            let m = sv(*i)
                .auto_settings
                .iter()
                .filter(|(k, _)| !NOT_IMPORTED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (*i, m)
        })
        .collect();
    let mut cluster_settings: BTreeMap<String, String> = BTreeMap::new();
    if let Some(first) = per_node.values().next() {
        for (k, v) in first {
            if per_node.values().all(|m| m.get(k) == Some(v)) {
                cluster_settings.insert(k.clone(), v.clone());
            }
        }
    }

    // The document.
    let mut doc = Mapping::new();
    doc.insert(s("cluster"), s(&opts.cluster));
    let mut pg = Mapping::new();
    let major = sv(primary).obs.version.map(|v| v / 10000);
    let bin = opts.bin_dir.clone().or_else(|| {
        let p = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", major?));
        p.join("pg_ctl").exists().then_some(p)
    });
    if let Some(b) = bin {
        pg.insert(s("bin_dir"), s(&b.display().to_string()));
    }
    if let Some(u) = &opts.os_user {
        pg.insert(s("os_user"), s(u));
    }
    if !pg.is_empty() {
        doc.insert(s("postgres"), Value::Mapping(pg));
    }
    if let Some(c) = connect_section(opts) {
        doc.insert(s("connect"), c);
    }
    let mut repl = Mapping::new();
    repl.insert(s("user"), s(&repl_user));
    if let Some(p) = &opts.replication_password {
        repl.insert(s("password"), secret_value(p));
    }
    repl.insert(s("slots"), Value::Bool(slots));
    if let Some(sy) = &synchronous {
        repl.insert(
            s("synchronous"),
            serde_yaml::to_value(sy).expect("sync spec serialises"),
        );
    }
    if let Some(m) = &hba_method {
        repl.insert(s("hba_method"), s(m));
    }
    doc.insert(s("replication"), Value::Mapping(repl));
    if !cluster_settings.is_empty() {
        doc.insert(s("settings"), settings_value(&cluster_settings));
    }
    if !hba_rules.is_empty() {
        doc.insert(s("hba"), Value::Sequence(hba_rules));
    }
    let mut nodes_map = Mapping::new();
    let mut nodes = Vec::new();
    let mut sorted: Vec<usize> = order.clone();
    sorted.sort_by(|a, b| names[a].cmp(&names[b]));
    for i in sorted {
        let mut m = Mapping::new();
        m.insert(s("host"), s(&hosts[&i]));
        m.insert(s("port"), Value::Number(port_of(i).into()));
        m.insert(s("data_dir"), s(&sv(i).data_directory));
        let upstream = if i == primary {
            m.insert(s("role"), s("primary"));
            None
        } else {
            let u = names[&disc.upstream_of(i).expect("a member streams from a member")].clone();
            m.insert(s("role"), s("standby"));
            m.insert(s("upstream"), s(&u));
            Some(u)
        };
        let own: BTreeMap<String, String> = per_node[&i]
            .iter()
            .filter(|(k, _)| !cluster_settings.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !own.is_empty() {
            m.insert(s("settings"), settings_value(&own));
        }
        nodes_map.insert(s(&names[&i]), Value::Mapping(m));
        nodes.push(ImportedNode {
            name: names[&i].clone(),
            host: hosts[&i].clone(),
            port: port_of(i),
            data_dir: sv(i).data_directory.clone(),
            upstream,
        });
    }
    doc.insert(s("nodes"), Value::Mapping(nodes_map));

    // Servers that feed more standbys than were found.
    for &u in &order {
        let fed = sv(u)
            .obs
            .replication
            .iter()
            .filter(|r| r.state != "backup")
            .count();
        let found = order
            .iter()
            .filter(|j| disc.upstream_of(**j) == Some(u))
            .count();
        if fed > found {
            let apps: Vec<String> = sv(u)
                .obs
                .replication
                .iter()
                .filter(|r| r.state != "backup")
                .map(|r| {
                    format!(
                        "{} from {}",
                        r.application_name,
                        r.client_addr.as_deref().unwrap_or("a Unix socket")
                    )
                })
                .collect();
            notes.push(format!(
                "{} sends WAL to {fed} receiver(s) ({}) but only {found} standby(s) were found: \
                 give a missing one with --from HOST:PORT or its port with --port",
                names[&u],
                apps.join(", ")
            ));
        }
    }

    let body = serde_yaml::to_string(&Value::Mapping(doc)).expect("YAML renders");
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

    let mut yaml = format!(
        "# Imported with `pgtopo import` from the running cluster (system identifier {}).\n",
        sv(primary)
            .obs
            .system_identifier
            .as_deref()
            .unwrap_or("unknown")
    );
    yaml.push_str(
        "# Nodes on other machines need an `ssh:` section; passwords are references only.\n",
    );
    for n in &notes {
        yaml.push_str(&format!("# note: {n}\n"));
    }
    yaml.push_str(&body);
    Ok(Imported {
        yaml,
        desired,
        nodes,
        notes,
    })
}

fn settings_value(m: &BTreeMap<String, String>) -> Value {
    Value::Mapping(m.iter().map(|(k, v)| (s(k), s(v))).collect())
}

/// `127.0.0.1` → `127.0.0.1/32` (as the managed block writes a node's host).
fn hba_address(host: &str) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => format!("{host}/32"),
        Ok(std::net::IpAddr::V6(_)) => format!("{host}/128"),
        Err(_) => host.to_string(),
    }
}

/// An hba line of the managed block as a topology `hba:` rule (None when it has a form the
/// topology cannot carry, e.g. an address with a separate netmask).
fn hba_rule(f: &[&str]) -> Option<Value> {
    let (kind, database, user, address, method) = match f {
        [k, d, u, rest @ ..] if *k == "local" && !rest.is_empty() => {
            (*k, *d, *u, None, rest.join(" "))
        }
        [k, d, u, a, rest @ ..] if k.starts_with("host") && !rest.is_empty() => {
            if rest.len() > 1 && rest[0].parse::<std::net::IpAddr>().is_ok() {
                return None;
            }
            (*k, *d, *u, Some(*a), rest.join(" "))
        }
        _ => return None,
    };
    let mut m = Mapping::new();
    m.insert(s("type"), s(kind));
    m.insert(s("database"), s(database));
    m.insert(s("user"), s(user));
    if let Some(a) = address {
        m.insert(s("address"), s(a));
    }
    let trust = method.split_whitespace().next() == Some("trust");
    m.insert(s("method"), s(&method));
    if trust && address.is_some_and(|a| !crate::config::rules::is_loopback(a)) {
        m.insert(s("allow_trust"), Value::Bool(true));
    }
    Some(Value::Mapping(m))
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

    #[test]
    fn hba_rules_of_the_managed_block() {
        let r = hba_rule(&["host", "all", "app", "10.0.0.0/8", "scram-sha-256"]).unwrap();
        assert_eq!(
            serde_yaml::to_string(&r).unwrap(),
            "type: host\ndatabase: all\nuser: app\naddress: 10.0.0.0/8\nmethod: scram-sha-256\n"
        );
        let l = hba_rule(&["local", "all", "all", "peer"]).unwrap();
        assert!(serde_yaml::to_string(&l).unwrap().contains("method: peer"));
        let t = hba_rule(&["host", "all", "all", "10.0.0.0/8", "trust"]).unwrap();
        assert!(serde_yaml::to_string(&t)
            .unwrap()
            .contains("allow_trust: true"));
        assert!(hba_rule(&["host", "all", "all", "10.0.0.0", "255.0.0.0", "md5"]).is_none());
    }

    #[test]
    fn names() {
        let taken: BTreeSet<String> = ["n2".to_string()].into_iter().collect();
        assert_eq!(
            unique_name(&[Some("n2".into()), Some("db_3".into())], &taken),
            "db_3"
        );
        assert_eq!(unique_name(&[Some("Bad-Name".into()), None], &taken), "n1");
    }
}
