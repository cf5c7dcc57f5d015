//! Walking the cluster from the `--from` addresses: upstreams exactly (a standby's WAL receiver
//! names its upstream's address), downstreams by candidates (pg_stat_replication has no port; see
//! the module docs of [`super`]). Every address is probed once; the same server reached at two
//! addresses is recognised by [`Probe::key`].

use std::collections::{BTreeSet, HashMap};

use futures::future::join_all;

use super::local::{self, Listener};
use super::probe::{probe, Probe};
use super::{split_addr, ImportError, ImportOptions};

/// What discovery found: the servers (deduplicated) and which address led to which server.
#[derive(Debug, Default)]
pub struct Discovery {
    pub servers: Vec<Probe>,
    /// Address → index into `servers` (None: nothing answered there).
    pub at: HashMap<(String, u16), Option<usize>>,
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
                Ok(p) => Some(self.add(p, &mut new)),
            };
            self.at.insert(addr, idx);
        }
        new
    }

    /// The index of server `p`, added (and recorded in `new`) when it was not known yet.
    fn add(&mut self, p: Probe, new: &mut Vec<usize>) -> usize {
        if let Some(i) = self.servers.iter().position(|x| x.key() == p.key()) {
            return i;
        }
        self.servers.push(p);
        new.push(self.servers.len() - 1);
        self.servers.len() - 1
    }

    /// The server a standby streams from, when its address was probed.
    pub fn upstream_of(&self, i: usize) -> Option<usize> {
        let addr = self.servers[i].upstream_addr()?;
        self.at.get(&addr).copied().flatten()
    }
}

/// Discover the cluster: upstreams exactly, downstreams by candidates (see the module docs).
pub async fn discover(opts: &ImportOptions) -> Result<Discovery, ImportError> {
    let mut disc = Discovery::default();
    let from = opts
        .from
        .iter()
        .map(|f| split_addr(f))
        .collect::<Result<Vec<_>, _>>()?;
    let mut frontier = disc.visit(opts, from.clone()).await;
    check_seeds_answered(opts, &disc, &from).await?;
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
        // Downstreams: every server not searched yet that sends WAL.
        let mut candidates = Vec::new();
        for u in 0..disc.servers.len() {
            if searched.insert(u) {
                candidates.extend(downstream_candidates(opts, &disc, u, &listeners));
            }
        }
        frontier = disc.visit(opts, candidates).await;
        if frontier.is_empty() {
            break;
        }
    }
    check_one_system(&disc, &from)?;
    Ok(disc)
}

/// Every `--from` address must answer; the first that does not is the error (probed once more,
/// for the reason).
async fn check_seeds_answered(
    opts: &ImportOptions,
    disc: &Discovery,
    from: &[(String, u16)],
) -> Result<(), ImportError> {
    for (h, p) in from {
        if disc.at.get(&(h.clone(), *p)) == Some(&None) {
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
    Ok(())
}

/// Every `--from` must be a server of one system (the first server's).
fn check_one_system(disc: &Discovery, from: &[(String, u16)]) -> Result<(), ImportError> {
    let system_of = |i: usize| {
        disc.servers[i]
            .obs
            .system_identifier
            .clone()
            .unwrap_or_default()
    };
    let system = system_of(0);
    for (h, p) in from {
        if let Some(Some(i)) = disc.at.get(&(h.clone(), *p)) {
            let id = system_of(*i);
            if id != system {
                return Err(ImportError::OtherCluster {
                    addr: format!("{h}:{p}"),
                    found: id,
                    expected: system,
                });
            }
        }
    }
    Ok(())
}

fn is_loopback_host(h: &str) -> bool {
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The addresses where server `u`'s standbys may listen: a remote client's address with every
/// candidate port; a standby on this machine through its WAL receiver's socket, else as a remote
/// one plus this machine's listening sockets.
fn downstream_candidates(
    opts: &ImportOptions,
    disc: &Discovery,
    u: usize,
    listeners: &[Listener],
) -> Vec<(String, u16)> {
    let up = &disc.servers[u];
    let feeds: Vec<_> = up
        .obs
        .replication
        .iter()
        .filter(|r| r.state != "backup")
        .collect();
    if feeds.is_empty() {
        return Vec::new();
    }
    let mut ports: BTreeSet<u16> = opts.ports.iter().copied().collect();
    ports.extend(disc.servers.iter().map(|x| x.port));
    let with_ports = |client: &str| -> Vec<(String, u16)> {
        ports.iter().map(|p| (client.to_string(), *p)).collect()
    };
    let up_local = is_loopback_host(&up.host);
    let mut candidates = Vec::new();
    for client in feeds.iter().filter_map(|r| r.client_addr.as_deref()) {
        // A local standby of a local server is found below, by its socket.
        if !(up_local && is_loopback_host(client)) {
            candidates.extend(with_ports(client));
        }
    }
    if !up_local {
        return candidates;
    }
    for (client, client_port) in &up.walsenders {
        if !is_loopback_host(client) {
            continue;
        }
        if let Some(addr) = local::server_of_local_client(*client_port, up.port) {
            tracing::debug!(host = %addr.0, port = addr.1, "import: standby found by its socket");
            candidates.push(addr);
            continue;
        }
        candidates.extend(with_ports(client));
        candidates.extend(listening_candidates(client, listeners));
    }
    candidates
}

/// This machine's listening sockets as addresses of a standby connecting from `client` (a
/// loopback address): a wildcard listener at the client's address, a loopback one at its own.
fn listening_candidates<'a>(
    client: &'a str,
    listeners: &'a [Listener],
) -> impl Iterator<Item = (String, u16)> + 'a {
    listeners.iter().filter_map(move |l| {
        let host = if l.addr.is_unspecified() {
            client.to_string()
        } else if l.addr.is_loopback() {
            l.addr.to_string()
        } else {
            return None;
        };
        Some((host, l.port))
    })
}
