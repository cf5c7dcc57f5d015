//! Observed facts → a [`TopologyFile`]. Pure: it reads what [`super::discover`] found (servers
//! and who streams from whom) and decides the file's names, hosts, replication section, hba rules
//! and settings (rules in the module docs of [`super`]); no IO, so it is unit-tested on
//! hand-built probes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::discover::Discovery;
use super::probe::Probe;
use super::{sync, ImportError, ImportedNode};
use crate::config::{
    ConnectSpec, HbaRule, NodeRole, NodeSpec, SecretRef, ServiceSpec, SettingValue, SyncSpec,
    TopologyFile,
};
use crate::observe::Role;

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

/// What the file says besides what was observed.
pub struct InferOptions<'a> {
    pub cluster: &'a str,
    pub connect: ConnectSpec,
    pub replication_password: Option<SecretRef>,
    /// `postgres.bin_dir`; None: the primary's running bin directory (pg_config's BINDIR), else
    /// `default_bin_dir` of the primary's major.
    pub bin_dir: Option<PathBuf>,
    /// The bin directory of a major when it exists (the caller looks; this module does no IO).
    pub default_bin_dir: &'a dyn Fn(u32) -> Option<PathBuf>,
    pub os_user: Option<String>,
}

/// The topology of the discovered cluster, its nodes for the summary, and notes on what could
/// not be expressed or found.
#[derive(Debug)]
pub struct Inferred {
    pub file: TopologyFile,
    pub nodes: Vec<ImportedNode>,
    pub notes: Vec<String>,
    /// The primary's system identifier.
    pub system_identifier: Option<String>,
}

/// The members of the cluster (primary first, then downstream order) with their names and hosts.
struct Members<'a> {
    disc: &'a Discovery,
    primary: usize,
    order: Vec<usize>,
    names: BTreeMap<usize, String>,
    hosts: BTreeMap<usize, String>,
}

impl Members<'_> {
    fn sv(&self, i: usize) -> &Probe {
        &self.disc.servers[i]
    }

    fn standbys(&self) -> impl Iterator<Item = usize> + '_ {
        self.order.iter().copied().filter(|i| *i != self.primary)
    }

    /// The members that stream from `u`.
    fn downstreams(&self, u: usize) -> impl Iterator<Item = usize> + '_ {
        self.order
            .iter()
            .copied()
            .filter(move |j| self.disc.upstream_of(*j) == Some(u))
    }
}

/// Infer the topology file of the cluster that `disc` found.
pub fn infer(disc: &Discovery, opts: &InferOptions) -> Result<Inferred, ImportError> {
    let (primary, order) = members(disc)?;
    let mut notes = orphan_notes(disc, primary, &order);
    let names = node_names(disc, primary, &order);
    let mut m = Members {
        disc,
        primary,
        order,
        names,
        hosts: BTreeMap::new(),
    };
    m.hosts = node_hosts(&m, &mut notes);
    let mut file = TopologyFile::new(opts.cluster, BTreeMap::new());
    file.postgres.bin_dir = opts
        .bin_dir
        .clone()
        .or_else(|| m.sv(primary).bin_dir.clone())
        .or_else(|| {
            let major = m.sv(primary).obs.version? / 10000;
            (opts.default_bin_dir)(major)
        });
    file.postgres.os_user = opts.os_user.clone();
    file.connect = opts.connect.clone();
    file.replication.user = replication_user(&m, &mut notes);
    file.replication.password = opts.replication_password.clone();
    file.replication.slots = slots(&m, &mut notes);
    file.replication.synchronous = synchronous(&m, &mut notes);
    let (method, rules) = hba(&m, &file.replication.user, &mut notes);
    if let Some(method) = method {
        file.replication.hba_method = method;
    }
    file.hba = rules;
    let (mut cluster_settings, mut per_node) = settings(&m);
    let (archive, archive_notes) =
        super::archive::infer(m.sv(primary), m.standbys().map(|i| m.sv(i)));
    notes.extend(archive_notes);
    if archive.is_some() {
        let owned = crate::config::archive::OWNED_WITH_ARCHIVE;
        cluster_settings.retain(|k, _| !owned.contains(&k.as_str()));
        for own in per_node.values_mut() {
            own.retain(|k, _| !owned.contains(&k.as_str()));
        }
    }
    file.archive = archive;
    file.settings = cluster_settings;
    let nodes = node_specs(&m, per_node, &mut file);
    notes.extend(missing_standby_notes(&m));
    Ok(Inferred {
        file,
        nodes,
        notes,
        system_identifier: m.sv(primary).obs.system_identifier.clone(),
    })
}

/// Which servers belong to the cluster: the primary and, recursively, the standbys whose upstream
/// is one of them (servers of other systems, found by the candidate search, are left out).
fn members(disc: &Discovery) -> Result<(usize, Vec<usize>), ImportError> {
    let system = disc.servers[0].obs.system_identifier.clone();
    let same: Vec<usize> = (0..disc.servers.len())
        .filter(|i| disc.servers[*i].obs.system_identifier == system)
        .collect();
    let primary = the_primary(disc, &same)?;
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

/// The one running primary among `same` (the servers of one system).
fn the_primary(disc: &Discovery, same: &[usize]) -> Result<usize, ImportError> {
    let addr = |i: usize| format!("{}:{}", disc.servers[i].host, disc.servers[i].port);
    let primaries: Vec<usize> = same
        .iter()
        .copied()
        .filter(|i| disc.servers[*i].obs.role == Some(Role::Primary))
        .collect();
    match primaries.as_slice() {
        [p] => Ok(*p),
        [] => {
            let seen: Vec<String> = same
                .iter()
                .map(|i| {
                    let up = disc.servers[*i].obs.upstream_addr.as_deref();
                    format!("{} streams from {}", addr(*i), up.unwrap_or("nothing"))
                })
                .collect();
            Err(ImportError::NoPrimary(seen.join("; ")))
        }
        many => Err(ImportError::SeveralPrimaries(
            many.iter().map(|i| addr(*i)).collect::<Vec<_>>().join(", "),
        )),
    }
}

/// Servers of this system that hang off nothing reachable.
fn orphan_notes(disc: &Discovery, primary: usize, order: &[usize]) -> Vec<String> {
    let system = &disc.servers[primary].obs.system_identifier;
    disc.servers
        .iter()
        .enumerate()
        .filter(|(i, p)| !order.contains(i) && &p.obs.system_identifier == system)
        .map(|(_, p)| {
            format!(
                "{}:{} is a standby of this cluster that streams from {}, which is not part of \
                 it: not imported",
                p.host,
                p.port,
                p.obs.upstream_addr.as_deref().unwrap_or("nothing")
            )
        })
        .collect()
}

/// Names: standbys first (their names are slot and application names), then the primary.
fn node_names(disc: &Discovery, primary: usize, order: &[usize]) -> BTreeMap<usize, String> {
    let mut names: BTreeMap<usize, String> = BTreeMap::new();
    let mut taken = BTreeSet::new();
    for &i in order.iter().filter(|i| **i != primary) {
        let p = &disc.servers[i];
        let wanted = [
            p.obs
                .primary_conninfo
                .as_ref()
                .and_then(|c| c.application_name.clone()),
            Some(p.cluster_name.clone()),
            p.obs.primary_slot_name.clone(),
        ];
        let n = unique_name(&wanted, &taken);
        taken.insert(n.clone());
        names.insert(i, n);
    }
    let wanted = [Some(disc.servers[primary].cluster_name.clone())];
    names.insert(primary, unique_name(&wanted, &taken));
    names
}

fn unique_name(wanted: &[Option<String>], taken: &BTreeSet<String>) -> String {
    for w in wanted.iter().flatten() {
        if crate::config::names::valid_node_name(w) && !taken.contains(w) {
            return w.clone();
        }
    }
    (1..)
        .map(|i| format!("n{i}"))
        .find(|n| !taken.contains(n))
        .expect("a free name")
}

/// Hosts: how the standbys reach a node, else its one listen address, else how we did.
fn node_hosts(m: &Members, notes: &mut Vec<String>) -> BTreeMap<usize, String> {
    let mut hosts = BTreeMap::new();
    for &i in &m.order {
        let via_standbys: BTreeSet<String> = m
            .downstreams(i)
            .filter_map(|j| m.sv(j).upstream_addr().map(|(h, _)| h))
            // A standby connected through a Unix socket names a directory, not an address.
            .filter(|h| !h.starts_with('/'))
            .collect();
        if via_standbys.len() > 1 {
            notes.push(format!(
                "{}'s standbys reach it at different addresses ({}); the topology uses the first",
                m.names[&i],
                via_standbys.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let host = via_standbys
            .into_iter()
            .next()
            .or_else(|| concrete_listen_address(m.sv(i)))
            .unwrap_or_else(|| m.sv(i).host.clone());
        hosts.insert(i, host);
    }
    hosts
}

/// A server's single listen address, when it has exactly one concrete one.
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

/// The replication user: the one most standbys connect as (primary_conninfo).
fn replication_user(m: &Members, notes: &mut Vec<String>) -> String {
    let mut users: BTreeMap<String, usize> = BTreeMap::new();
    for i in m.standbys() {
        let ci = m.sv(i).obs.primary_conninfo.as_ref();
        if let Some(u) = ci.and_then(|c| c.user.clone()) {
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
    repl_user
}

/// `slots: true` when every standby streams through a slot named after it on its upstream.
fn slots(m: &Members, notes: &mut Vec<String>) -> bool {
    let slot_ok = |i: usize| {
        let name = &m.names[&i];
        m.sv(i).obs.primary_slot_name.as_deref() == Some(name.as_str())
            && m.disc
                .upstream_of(i)
                .is_some_and(|u| m.sv(u).obs.slots.iter().any(|s| s == name))
    };
    let standbys = m.standbys().count();
    let with_slot = m.standbys().filter(|i| slot_ok(*i)).count();
    let slots = with_slot == standbys;
    if !slots && with_slot > 0 {
        notes.push(format!(
            "only {with_slot} of {standbys} standbys stream through a slot named after them: \
             slots: false (with slots: true the first plan creates the others)"
        ));
    }
    slots
}

/// The synchronous set: the primary's synchronous_standby_names, its application names mapped
/// to node names.
fn synchronous(m: &Members, notes: &mut Vec<String>) -> Option<SyncSpec> {
    let by_app: BTreeMap<String, String> = m
        .standbys()
        .filter_map(|i| {
            let app = m.sv(i).application_name()?.to_ascii_lowercase();
            Some((app, m.names[&i].clone()))
        })
        .collect();
    let sync_value = m
        .sv(m.primary)
        .obs
        .settings
        .get("synchronous_standby_names")
        .map(|s| s.value.clone())
        .unwrap_or_default();
    let mut spec = match sync::parse_sync_names(&sync_value) {
        Ok(spec) => spec?,
        Err(why) => {
            notes.push(format!("synchronous_standby_names not imported: {why}"));
            return None;
        }
    };
    let mapped: Option<Vec<String>> = spec
        .standbys
        .iter()
        .map(|a| by_app.get(&a.to_ascii_lowercase()).cloned())
        .collect();
    match mapped {
        Some(names) if spec.count as usize <= names.len() => {
            spec.standbys = names;
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

/// pg_hba: an existing managed block gives the method and the extra rules; without one, the
/// method of the primary's first replication rule for the user.
fn hba(m: &Members, repl_user: &str, notes: &mut Vec<String>) -> (Option<String>, Vec<HbaRule>) {
    let primary = m.sv(m.primary);
    let block = primary
        .obs
        .hba
        .as_ref()
        .and_then(|h| h.managed_block.clone());
    let Some(block) = block else {
        let method = primary
            .hba_replication
            .iter()
            .find(|(u, _)| u.iter().any(|x| x == "all" || *x == repl_user))
            .map(|(_, m)| m.clone());
        return (method, Vec::new());
    };
    let node_hosts: BTreeSet<String> = m.hosts.values().map(|h| hba_address(h)).collect();
    let mut method = None;
    let mut rules = Vec::new();
    for line in block {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || f[0].starts_with('#') {
            continue;
        }
        if f.len() == 5 && f[1] == "replication" && f[2] == repl_user && node_hosts.contains(f[3]) {
            method.get_or_insert_with(|| f[4].to_string());
            continue;
        }
        match hba_rule(&f) {
            Some(r) => rules.push(r),
            None => notes.push(format!("managed pg_hba rule not imported: {line}")),
        }
    }
    (method, rules)
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
fn hba_rule(f: &[&str]) -> Option<HbaRule> {
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
    let trust = method.split_whitespace().next() == Some("trust");
    Some(HbaRule {
        kind: kind.to_string(),
        database: database.to_string(),
        user: user.to_string(),
        address: address.map(str::to_string),
        allow_trust: trust && address.is_some_and(|a| !crate::config::rules::is_loopback(a)),
        method,
    })
}

type Settings = BTreeMap<String, SettingValue>;

/// Settings from postgresql.auto.conf: cluster-wide when every node agrees, else per node.
fn settings(m: &Members) -> (Settings, BTreeMap<usize, Settings>) {
    let mut per_node: BTreeMap<usize, Settings> = m
        .order
        .iter()
        .map(|i| {
            let own = m
                .sv(*i)
                .auto_settings
                .iter()
                .filter(|(k, _)| !NOT_IMPORTED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), SettingValue(v.clone())))
                .collect();
            (*i, own)
        })
        .collect();
    let mut cluster = Settings::new();
    if let Some(first) = per_node.values().next() {
        for (k, v) in first {
            if per_node.values().all(|s| s.get(k) == Some(v)) {
                cluster.insert(k.clone(), v.clone());
            }
        }
    }
    for own in per_node.values_mut() {
        own.retain(|k, _| !cluster.contains_key(k));
    }
    (cluster, per_node)
}

/// Each member as a node of `file` (in name order), and the summary of each.
fn node_specs(
    m: &Members,
    mut settings: BTreeMap<usize, Settings>,
    file: &mut TopologyFile,
) -> Vec<ImportedNode> {
    let mut sorted = m.order.clone();
    sorted.sort_by(|a, b| m.names[a].cmp(&m.names[b]));
    let mut nodes = Vec::new();
    for i in sorted {
        let upstream = (i != m.primary).then(|| {
            let u = m
                .disc
                .upstream_of(i)
                .expect("a member streams from a member");
            m.names[&u].clone()
        });
        let (config_dir, service) = layout(m.sv(i));
        let spec = NodeSpec {
            config_dir,
            service,
            port: m.sv(i).listen_port(),
            role: Some(match upstream {
                None => NodeRole::Primary,
                Some(_) => NodeRole::Standby,
            }),
            upstream: upstream.clone(),
            settings: settings.remove(&i).unwrap_or_default(),
            ..NodeSpec::new(&m.hosts[&i], m.sv(i).data_directory.clone().into())
        };
        file.nodes.insert(m.names[&i].clone(), spec);
        nodes.push(ImportedNode {
            name: m.names[&i].clone(),
            host: m.hosts[&i].clone(),
            port: m.sv(i).listen_port(),
            data_dir: m.sv(i).data_directory.clone(),
            upstream,
        });
    }
    nodes
}

/// Where a server's configuration lives and what runs it (SPEC §1d): a postgresql.conf outside
/// the data directory gives `config_dir`; Debian's `/etc/postgresql/MAJOR/NAME` gives
/// `service: {pg_ctlcluster: "MAJOR NAME"}` (pg_ctlcluster goes through systemd itself where
/// systemd runs); else a postmaster in a systemd service's cgroup gives `service: {systemd}`.
fn layout(p: &Probe) -> (Option<PathBuf>, Option<ServiceSpec>) {
    let dir = Path::new(&p.config_file)
        .parent()
        .filter(|d| !p.config_file.is_empty() && *d != Path::new(&p.data_directory));
    let service = match dir.and_then(debian_cluster) {
        Some(cluster) => Some(ServiceSpec {
            pg_ctlcluster: Some(cluster),
            systemd: None,
        }),
        None => p
            .cgroup
            .as_deref()
            .and_then(systemd_unit)
            .map(|unit| ServiceSpec {
                systemd: Some(unit),
                pg_ctlcluster: None,
            }),
    };
    (dir.map(Path::to_path_buf), service)
}

/// `"MAJOR NAME"` of a Debian cluster whose configuration directory is
/// `/etc/postgresql/MAJOR/NAME`.
fn debian_cluster(dir: &Path) -> Option<String> {
    let rest = dir.strip_prefix("/etc/postgresql").ok()?;
    let parts: Vec<&str> = rest.iter().filter_map(|c| c.to_str()).collect();
    match parts.as_slice() {
        [major, name] if major.parse::<u32>().is_ok() => Some(format!("{major} {name}")),
        _ => None,
    }
}

/// The systemd service whose cgroup a process is in, from its `/proc/PID/cgroup`
/// (`0::/system.slice/postgresql@15-main.service`); a user's service manager is not one.
fn systemd_unit(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|l| {
        let path = l.splitn(3, ':').nth(2)?;
        path.rsplit('/')
            .find(|seg| seg.ends_with(".service") && !seg.starts_with("user@"))
            .map(str::to_string)
    })
}

/// Servers that feed more standbys than were found.
fn missing_standby_notes(m: &Members) -> Vec<String> {
    let mut notes = Vec::new();
    for &u in &m.order {
        let feeds: Vec<String> = m
            .sv(u)
            .obs
            .replication
            .iter()
            .filter(|r| r.state != "backup")
            .map(|r| {
                let from = r.client_addr.as_deref().unwrap_or("a Unix socket");
                format!("{} from {from}", r.application_name)
            })
            .collect();
        let found = m.downstreams(u).count();
        if feeds.len() > found {
            notes.push(format!(
                "{} sends WAL to {} receiver(s) ({}) but only {found} standby(s) were found: \
                 give a missing one with --from HOST:PORT or its port with --port",
                m.names[&u],
                feeds.len(),
                feeds.join(", ")
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{ConninfoSummary, ObservedReplica, ObservedSetting};

    fn setting(value: &str) -> ObservedSetting {
        ObservedSetting {
            value: value.into(),
            raw: None,
            unit: None,
            pending_restart: false,
            context: "sighup".into(),
            source: "configuration file".into(),
        }
    }

    fn feed(app: &str, client: &str) -> ObservedReplica {
        ObservedReplica {
            application_name: app.into(),
            client_addr: Some(client.into()),
            state: "streaming".into(),
            sync_state: "async".into(),
            sent_lsn: None,
            flush_lsn: None,
            replay_lsn: None,
            lag_bytes: None,
            reply_age_ms: None,
            replay_lag_ms: None,
        }
    }

    /// A server of system 7 at 10.0.0.`i`:5432; a standby when `upstream` is given.
    fn server(i: u8, upstream: Option<u8>, auto: &[(&str, &str)]) -> Probe {
        let mut p = Probe {
            host: format!("10.0.0.{i}"),
            port: 5432,
            data_directory: format!("/pg/{i}"),
            auto_settings: auto
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Probe::default()
        };
        p.obs.reachable = true;
        p.obs.system_identifier = Some("7".into());
        p.obs.version = Some(150004);
        p.obs.settings.insert("port".into(), setting("5432"));
        match upstream {
            None => p.obs.role = Some(Role::Primary),
            Some(u) => {
                p.obs.role = Some(Role::Standby);
                p.obs.upstream_addr = Some(format!("10.0.0.{u}:5432"));
                p.obs.primary_slot_name = Some(format!("db{i}"));
                p.obs.primary_conninfo = Some(ConninfoSummary {
                    user: Some("repl".into()),
                    application_name: Some(format!("db{i}")),
                    ..ConninfoSummary::default()
                });
            }
        }
        p
    }

    #[test]
    fn the_layout_is_read_from_the_config_file_and_the_cgroup() {
        let mut p = server(1, None, &[]);
        p.config_file = "/pg/1/postgresql.conf".into();
        assert_eq!(layout(&p), (None, None), "a plain data directory");

        p.config_file = "/etc/postgresql/15/main/postgresql.conf".into();
        let (dir, service) = layout(&p);
        assert_eq!(dir, Some(PathBuf::from("/etc/postgresql/15/main")));
        assert_eq!(service.unwrap().pg_ctlcluster.as_deref(), Some("15 main"));

        p.config_file = "/srv/conf/pg1/postgresql.conf".into();
        p.cgroup = Some("0::/system.slice/postgresql-16.service\n".into());
        let (dir, service) = layout(&p);
        assert_eq!(dir, Some(PathBuf::from("/srv/conf/pg1")));
        assert_eq!(
            service.unwrap().systemd.as_deref(),
            Some("postgresql-16.service")
        );

        p.cgroup = Some("0::/user.slice/user-0.slice/user@0.service/app.slice\n".into());
        assert_eq!(
            layout(&p).1,
            None,
            "a user's service manager runs no service"
        );
    }

    /// primary 1 → standby 2 → standby 3, slots named after the standbys.
    fn cascade() -> Discovery {
        let mut servers = vec![
            server(1, None, &[("work_mem", "8MB")]),
            server(2, Some(1), &[("work_mem", "8MB"), ("port", "5432")]),
            server(
                3,
                Some(2),
                &[("work_mem", "8MB"), ("hot_standby_feedback", "on")],
            ),
        ];
        servers[0].cluster_name = "main".into();
        servers[0].obs.slots = vec!["db2".into()];
        servers[0].obs.replication = vec![feed("db2", "10.0.0.2")];
        servers[1].obs.slots = vec!["db3".into()];
        servers[1].obs.replication = vec![feed("db3", "10.0.0.3")];
        servers[0]
            .obs
            .settings
            .insert("synchronous_standby_names".into(), setting("ANY 1 (db2)"));
        let at = (0..3)
            .map(|i| ((format!("10.0.0.{}", i + 1), 5432), Some(i)))
            .collect();
        Discovery { servers, at }
    }

    fn options(default_bin_dir: &dyn Fn(u32) -> Option<PathBuf>) -> InferOptions<'_> {
        InferOptions {
            cluster: "shop",
            connect: ConnectSpec::default(),
            replication_password: Some(SecretRef::Env { env: "PW".into() }),
            bin_dir: None,
            default_bin_dir,
            os_user: None,
        }
    }

    #[test]
    fn a_cascade_becomes_its_topology() {
        let bin = |major: u32| Some(PathBuf::from(format!("/pg{major}/bin")));
        let got = infer(&cascade(), &options(&bin)).unwrap();
        let f = &got.file;
        assert_eq!(got.notes, Vec::<String>::new());
        assert_eq!(f.postgres.bin_dir, Some(PathBuf::from("/pg15/bin")));
        assert_eq!(f.nodes.keys().collect::<Vec<_>>(), ["db2", "db3", "main"]);
        assert_eq!(f.nodes["main"].role, Some(NodeRole::Primary));
        assert_eq!(f.nodes["db3"].upstream.as_deref(), Some("db2"));
        assert_eq!(f.nodes["db3"].host, "10.0.0.3");
        assert_eq!(f.nodes["main"].host, "10.0.0.1");
        assert_eq!(f.replication.user, "repl");
        assert!(f.replication.slots);
        let sync = f.replication.synchronous.as_ref().unwrap();
        assert_eq!(sync.standbys, ["db2"]);
        assert_eq!(f.settings["work_mem"], SettingValue("8MB".into()));
        assert_eq!(
            f.nodes["db3"].settings.keys().collect::<Vec<_>>(),
            ["hot_standby_feedback"]
        );
        assert!(f.nodes["db2"].settings.is_empty(), "port is not imported");
        assert_eq!(got.nodes.len(), 3);
        assert_eq!(got.system_identifier.as_deref(), Some("7"));
    }

    #[test]
    fn the_bin_dir_is_the_running_servers_before_the_packaged_default() {
        let bin = |major: u32| Some(PathBuf::from(format!("/pg{major}/bin")));
        let mut disc = cascade();
        disc.servers[0].bin_dir = Some(PathBuf::from("/opt/pg/bin"));
        let got = infer(&disc, &options(&bin)).unwrap();
        assert_eq!(
            got.file.postgres.bin_dir,
            Some(PathBuf::from("/opt/pg/bin"))
        );
        let mut given = options(&bin);
        given.bin_dir = Some(PathBuf::from("/given/bin"));
        let got = infer(&disc, &given).unwrap();
        assert_eq!(got.file.postgres.bin_dir, Some(PathBuf::from("/given/bin")));
    }

    #[test]
    fn what_cannot_be_expressed_becomes_notes() {
        let mut disc = cascade();
        // db3's slot is missing on db2; db2 feeds a receiver that was not found.
        disc.servers[1].obs.slots.clear();
        disc.servers[1]
            .obs
            .replication
            .push(feed("lost", "10.9.9.9"));
        let none = |_: u32| None;
        let got = infer(&disc, &options(&none)).unwrap();
        assert!(!got.file.replication.slots);
        assert_eq!(got.file.postgres.bin_dir, None);
        assert!(got.notes[0].starts_with("only 1 of 2 standbys stream through a slot"));
        assert!(got.notes[1].starts_with("db2 sends WAL to 2 receiver(s)"));
        // Two primaries: refused.
        disc.servers[2].obs.role = Some(Role::Primary);
        assert!(matches!(
            infer(&disc, &options(&none)),
            Err(ImportError::SeveralPrimaries(_))
        ));
    }

    #[test]
    fn hba_rules_of_the_managed_block() {
        let r = hba_rule(&["host", "all", "app", "10.0.0.0/8", "scram-sha-256"]).unwrap();
        assert_eq!(
            (r.kind.as_str(), r.address.as_deref(), r.method.as_str()),
            ("host", Some("10.0.0.0/8"), "scram-sha-256")
        );
        assert!(!r.allow_trust);
        let l = hba_rule(&["local", "all", "all", "peer"]).unwrap();
        assert_eq!((l.address, l.method.as_str()), (None, "peer"));
        let t = hba_rule(&["host", "all", "all", "10.0.0.0/8", "trust"]).unwrap();
        assert!(t.allow_trust);
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
