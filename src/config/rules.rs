//! Semantic rules of SPEC §1 "Validation", checked on the span tree.
//!
//! The rules read the document leniently: a value of the wrong shape is skipped here (the
//! structural check has already reported it), so one run reports the unknown key of one node and
//! the second primary of another together. Each rule is a small function that appends
//! [`ConfigError`]s labelled on the exact spans involved (both `role: primary` entries, the
//! `upstream: n9` value, the owned settings key) with a help line that says how to fix it.

use std::collections::{BTreeMap, BTreeSet};

use super::diag::ConfigError;
use super::names::valid_node_name;
use super::yaml::{Entry, Node, Span};

/// Run every semantic rule on the document root.
pub fn check(root: &Node) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let nodes = collect_nodes(root);
    cluster_name(root, &mut errors);
    node_names(&nodes, &mut errors);
    ports(&nodes, &mut errors);
    ssh_jumps(&nodes, &mut errors);
    let primary = primaries(root, &nodes, &mut errors);
    upstreams(&nodes, primary.as_deref(), &mut errors);
    addresses(&nodes, &mut errors);
    synchronous(root, &nodes, &mut errors);
    owned_settings(root, &nodes, &mut errors);
    hba(root, &mut errors);
    switchover(root, &mut errors);
    services(&nodes, &mut errors);
    super::pooler_rules::check(root, &mut errors);
    super::logical::check(root, &mut errors);
    super::archive_rules::check(root, &mut errors);
    super::rules_tls::check(root, &mut errors);
    errors
}

/// What the rules need of one node, read leniently.
struct NodeInfo<'a> {
    name: &'a str,
    entry: &'a Entry,
    role: Option<(&'a str, &'a Entry)>,
    absent: Option<&'a Entry>,
    upstream: Option<(&'a str, &'a Entry)>,
    host: Option<(&'a str, &'a Entry)>,
    port: Option<(i128, Option<&'a Entry>)>,
    data_dir: Option<(&'a str, &'a Entry)>,
    ssh_host: Option<(&'a str, &'a Entry)>,
}

impl NodeInfo<'_> {
    fn is_primary(&self) -> bool {
        self.role.is_some_and(|(r, _)| r == "primary")
    }
    fn is_absent(&self) -> bool {
        self.absent.is_some()
    }
}

/// `service: {pg_ctlcluster: "MAJOR NAME"}` and `{systemd: UNIT}` must name a cluster or unit.
fn services(nodes: &[NodeInfo<'_>], errors: &mut Vec<ConfigError>) {
    for n in nodes {
        let Some(service) = n.entry.value.get("service") else {
            continue;
        };
        if service.value.entries().len() > 1 {
            errors.push(
                ConfigError::new(
                    "service_malformed",
                    format!("`nodes.{}.service` names more than one service", n.name),
                )
                .label(service.value.span, "one of these")
                .help("keep either `pg_ctlcluster` or `systemd`"),
            );
            continue;
        }
        for e in service.value.entries() {
            let Some(v) = e.value.as_str() else { continue };
            let mut spec = super::ServiceSpec::default();
            match e.key.as_str() {
                "pg_ctlcluster" => spec.pg_ctlcluster = Some(v.to_string()),
                "systemd" => spec.systemd = Some(v.to_string()),
                _ => continue,
            };
            if let Err(why) = spec.resolve() {
                errors.push(
                    ConfigError::new(
                        "service_malformed",
                        format!("`nodes.{}.service.{}`: {why}", n.name, e.key),
                    )
                    .label(e.value.span, "malformed")
                    .help(match e.key.as_str() {
                        "pg_ctlcluster" => "write the major and the cluster name separated by one space, e.g. `pg_ctlcluster: \"15 main\"`",
                        _ => "write the unit's name, e.g. `systemd: postgresql@15-main`",
                    }),
                );
            }
        }
    }
}

/// `switchover.catchup_timeout` must leave the candidate some time to catch up: 0 would fail
/// every switchover whose candidate is a single byte behind when the proof runs.
fn switchover(root: &Node, errors: &mut Vec<ConfigError>) {
    let Some(e) = root.at(&["switchover", "catchup_timeout"]) else {
        return;
    };
    let zero = e
        .value
        .as_str()
        .and_then(|v| v.parse::<crate::units::Duration>().ok())
        .is_some_and(|d| d.0.is_zero());
    if zero {
        errors.push(
            ConfigError::new(
                "catchup_timeout_zero",
                "switchover.catchup_timeout is 0: no switchover could prove its candidate caught up",
            )
            .label(e.value.span, "no time to catch up")
            .help("write how long the candidate may take to reach the primary's WAL position right before the stop, e.g. `5s` (the default)"),
        );
    }
}

fn str_entry<'a>(node: &'a Node, key: &str) -> Option<(&'a str, &'a Entry)> {
    let e = node.get(key)?;
    if !matches!(e.value.value, super::yaml::Value::Scalar(..)) {
        return None;
    }
    Some((e.value.as_str()?, e))
}

fn collect_nodes(root: &Node) -> Vec<NodeInfo<'_>> {
    let Some(nodes) = root.get("nodes") else {
        return Vec::new();
    };
    nodes
        .value
        .entries()
        .iter()
        .map(|e| {
            let n = &e.value;
            let port = match n.get("port") {
                None => Some((5432, None)),
                Some(p) => p.value.as_int().map(|v| (v, Some(p))),
            };
            NodeInfo {
                name: &e.key,
                entry: e,
                role: str_entry(n, "role"),
                absent: str_entry(n, "state")
                    .filter(|(s, _)| *s == "absent")
                    .map(|(_, e)| e),
                upstream: str_entry(n, "upstream"),
                host: str_entry(n, "host"),
                port,
                data_dir: str_entry(n, "data_dir"),
                ssh_host: n.get("ssh").and_then(|s| str_entry(&s.value, "host")),
            }
        })
        .collect()
}

fn names_of(nodes: &[NodeInfo<'_>], keep: impl Fn(&NodeInfo<'_>) -> bool) -> String {
    let v: Vec<&str> = nodes.iter().filter(|n| keep(n)).map(|n| n.name).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn cluster_name(root: &Node, errors: &mut Vec<ConfigError>) {
    let Some((name, e)) = str_entry(root, "cluster") else {
        return;
    };
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok {
        errors.push(
            ConfigError::new(
                "cluster_name",
                format!("`{name}` is not a valid cluster name"),
            )
            .label(e.value.span, "invalid cluster name")
            .help(
                "start with a lowercase letter, then use lowercase letters, digits, `_` and \
                     `-` (e.g. `shop`)",
            ),
        );
    }
}

fn node_names(nodes: &[NodeInfo<'_>], errors: &mut Vec<ConfigError>) {
    for n in nodes.iter().filter(|n| !valid_node_name(n.name)) {
        errors.push(
            ConfigError::new("node_name", format!("`{}` is not a valid node name", n.name))
                .label(n.entry.key_span, "invalid node name")
                .help(
                    "a node name becomes a replication slot name and an application_name: a \
                     lowercase letter, then at most 62 lowercase letters, digits or `_` (e.g. `n1`, \
                     `db_east_2`)",
                ),
        );
    }
}

fn ports(nodes: &[NodeInfo<'_>], errors: &mut Vec<ConfigError>) {
    for n in nodes {
        if let Some((0, Some(e))) = n.port {
            errors.push(
                ConfigError::new("port_zero", format!("node `{}` has port 0", n.name))
                    .label(e.value.span, "not a usable port")
                    .help("write the TCP port the server listens on, e.g. `5432`"),
            );
        }
        let ssh_port = n
            .entry
            .value
            .at(&["ssh", "port"])
            .filter(|e| e.value.as_int() == Some(0));
        if let Some(e) = ssh_port {
            errors.push(
                ConfigError::new("port_zero", format!("node `{}` has ssh port 0", n.name))
                    .label(e.value.span, "not a usable port")
                    .help("write the port sshd listens on (usually 22), or remove `port`"),
            );
        }
    }
}

/// `ssh.jump` is ssh's ProxyJump: `[user@]host[:port]`, several separated by commas.
fn ssh_jumps(nodes: &[NodeInfo<'_>], errors: &mut Vec<ConfigError>) {
    for n in nodes {
        let Some(e) = n.entry.value.at(&["ssh", "jump"]) else {
            continue;
        };
        let text = e.value.as_str().unwrap_or_default();
        if !text.split(',').all(jump_hop) {
            errors.push(
                ConfigError::new(
                    "ssh_jump",
                    format!("node `{}` has ssh jump `{text}`, not a list of hosts", n.name),
                )
                .label(e.value.span, "not [user@]host[:port], comma-separated")
                .help("write the bastion as ssh -J takes it, e.g. `admin@bastion.example.com:22`; several are separated by commas, crossed in order"),
            );
        }
    }
}

/// One ProxyJump hop: `[user@]host[:port]` (host a name, an IPv4 address or `[IPv6]`).
fn jump_hop(hop: &str) -> bool {
    let rest = match hop.split_once('@') {
        Some((user, rest)) if !user.is_empty() => rest,
        Some(_) => return false,
        None => hop,
    };
    let (host, port) = match rest.strip_prefix('[') {
        Some(r) => match r.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return false,
            },
            None => return false,
        },
        None => match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        },
    };
    let host_ok = !host.is_empty()
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
    host_ok && port.map_or(true, |p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// Exactly one present node is the primary; returns its name when there is exactly one.
fn primaries(root: &Node, nodes: &[NodeInfo<'_>], errors: &mut Vec<ConfigError>) -> Option<String> {
    for n in nodes.iter().filter(|n| n.is_primary() && n.is_absent()) {
        let (_, role) = n.role.expect("primary has a role");
        errors.push(
            ConfigError::new(
                "retired_primary",
                format!("node `{}` is declared primary and retired at once", n.name),
            )
            .label(role.span(), "primary")
            .label(n.absent.expect("absent").span(), "but retired")
            .help(format!(
                "to retire `{}`, first move `role: primary` to another node; otherwise remove \
                 `state: absent`",
                n.name
            )),
        );
    }
    let present: Vec<&NodeInfo<'_>> = nodes
        .iter()
        .filter(|n| n.is_primary() && !n.is_absent())
        .collect();
    match present.as_slice() {
        [one] => Some(one.name.to_string()),
        [] => {
            let nodes_entry = root.get("nodes")?;
            // A retired primary is reported above; an unreadable role is reported by the
            // structural check and may be the intended primary: neither needs a second error.
            let explained = nodes.iter().any(|n| {
                n.is_primary()
                    || n.entry.value.get("role").is_some_and(|r| {
                        !r.value.is_null()
                            && !matches!(r.value.as_str(), Some("primary" | "standby"))
                    })
            });
            if !explained {
                errors.push(
                    ConfigError::new("no_primary", "no node is declared primary")
                        .label(
                            nodes_entry.key_span,
                            "none of these nodes has `role: primary`",
                        )
                        .help("set `role: primary` on exactly one node"),
                );
            }
            None
        }
        many => {
            let names: Vec<&str> = many.iter().map(|n| n.name).collect();
            let mut e = ConfigError::new(
                "several_primaries",
                format!(
                    "{} nodes are declared primary: {}",
                    many.len(),
                    names.join(", ")
                ),
            )
            .help(
                "exactly one node may have `role: primary`; make the others standbys \
                 (`role: standby`, or remove `role`)",
            );
            for (i, n) in many.iter().enumerate() {
                let (_, role) = n.role.expect("primary has a role");
                e = e.label(
                    role.span(),
                    if i == 0 {
                        format!("`{}` is primary", n.name)
                    } else {
                        format!("and so is `{}`", n.name)
                    },
                );
            }
            errors.push(e);
            None
        }
    }
}

fn upstreams(nodes: &[NodeInfo<'_>], primary: Option<&str>, errors: &mut Vec<ConfigError>) {
    let by_name: BTreeMap<&str, &NodeInfo<'_>> = nodes.iter().map(|n| (n.name, n)).collect();
    // Valid explicit edges among present standbys, for the cycle check.
    let mut edges: BTreeMap<&str, (&str, Span)> = BTreeMap::new();
    for n in nodes {
        let Some((up, e)) = n.upstream else { continue };
        if n.is_primary() {
            errors.push(
                ConfigError::new(
                    "primary_upstream",
                    format!("the primary `{}` has an upstream", n.name),
                )
                .label(e.span(), "a primary follows no one")
                .help(format!(
                    "remove `upstream` from `{}`, or make `{}` a standby",
                    n.name, n.name
                )),
            );
            continue;
        }
        let others = || names_of(nodes, |m| m.name != n.name && !m.is_absent());
        match by_name.get(up) {
            None => errors.push(
                ConfigError::new(
                    "unknown_upstream",
                    format!(
                        "the upstream `{up}` of node `{}` is not a node of this topology",
                        n.name
                    ),
                )
                .label(e.value.span, "unknown node")
                .help(format!(
                    "name one of {} (or remove `upstream` to follow the primary)",
                    others()
                )),
            ),
            Some(_) if up == n.name => errors.push(
                ConfigError::new(
                    "self_upstream",
                    format!("node `{}` names itself as its upstream", n.name),
                )
                .label(e.value.span, "a node cannot follow itself")
                .help(format!(
                    "name one of {} (or remove `upstream` to follow the primary)",
                    others()
                )),
            ),
            Some(target) if target.is_absent() && !n.is_absent() => errors.push(
                ConfigError::new(
                    "retired_upstream",
                    format!("the upstream `{up}` of node `{}` is retired", n.name),
                )
                .label(e.value.span, "retired node")
                .label(target.absent.expect("absent").span(), "retired here")
                .help(format!(
                    "name a node that stays ({}), or remove `upstream` to follow the primary",
                    others()
                )),
            ),
            Some(_) if !n.is_absent() => {
                edges.insert(n.name, (up, e.value.span));
            }
            Some(_) => {}
        }
    }
    // Follow explicit upstreams; a walk that comes back to a node it saw is a cycle. Each cycle
    // is reported once, from its smallest name.
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for start in edges.keys() {
        let mut seen: Vec<&str> = vec![start];
        let mut cur = *start;
        while let Some((next, _)) = edges.get(cur) {
            if Some(*next) == primary {
                break;
            }
            if let Some(pos) = seen.iter().position(|s| s == next) {
                let cycle: Vec<&str> = seen[pos..].to_vec();
                if cycle.iter().any(|c| reported.contains(c)) {
                    break;
                }
                reported.extend(cycle.iter().copied());
                let mut ordered = cycle.clone();
                let min = ordered
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| **n)
                    .map(|(i, _)| i);
                ordered.rotate_left(min.unwrap_or(0));
                let mut shown = ordered.clone();
                shown.push(ordered[0]);
                let mut err = ConfigError::new(
                    "upstream_cycle",
                    format!("upstreams form a cycle: {}", shown.join(" → ")),
                )
                .help(format!(
                    "a chain of upstreams must end at the primary{}; point one of {} elsewhere",
                    primary.map(|p| format!(" (`{p}`)")).unwrap_or_default(),
                    ordered.join(", ")
                ));
                for n in &ordered {
                    let (up, span) = edges[n];
                    err = err.label(span, format!("`{n}` follows `{up}`"));
                }
                errors.push(err);
                break;
            }
            seen.push(next);
            cur = next;
        }
    }
}

fn addresses(nodes: &[NodeInfo<'_>], errors: &mut Vec<ConfigError>) {
    // host:port
    let mut by_addr: BTreeMap<(String, i128), Vec<&NodeInfo<'_>>> = BTreeMap::new();
    for n in nodes {
        if let (Some((host, _)), Some((port, _))) = (n.host, n.port) {
            by_addr
                .entry((host.to_ascii_lowercase(), port))
                .or_default()
                .push(n);
        }
    }
    for ((host, port), group) in by_addr.iter().filter(|(_, g)| g.len() > 1) {
        let names: Vec<&str> = group.iter().map(|n| n.name).collect();
        let mut err = ConfigError::new(
            "duplicate_address",
            format!(
                "nodes {} use the same address {host}:{port}",
                and_list(&names)
            ),
        )
        .help("each node needs its own host:port; change the host or the port of all but one");
        for n in group {
            let (_, h) = n.host.expect("grouped by host");
            match n.port {
                Some((_, Some(p))) => {
                    err = err
                        .label(h.value.span, format!("`{}`", n.name))
                        .label(p.value.span, "same port");
                }
                _ => {
                    err = err.label(
                        h.value.span,
                        format!("`{}` (port {port} by default)", n.name),
                    )
                }
            }
        }
        errors.push(err);
    }
    // (host or ssh host) + data_dir
    let mut groups: BTreeMap<(String, String), Vec<(&NodeInfo<'_>, &Entry)>> = BTreeMap::new();
    for n in nodes {
        let Some((dir, _)) = n.data_dir else { continue };
        let dir = dir.trim_end_matches('/').to_string();
        let mut machines = vec![];
        if let Some((h, e)) = n.host {
            machines.push((h.to_ascii_lowercase(), e));
        }
        if let Some((h, e)) = n.ssh_host {
            if n.host.map_or(true, |(own, _)| !own.eq_ignore_ascii_case(h)) {
                machines.push((h.to_ascii_lowercase(), e));
            }
        }
        for (m, e) in machines {
            groups.entry((m, dir.clone())).or_default().push((n, e));
        }
    }
    let mut reported: BTreeSet<Vec<&str>> = BTreeSet::new();
    for ((machine, dir), group) in groups.iter().filter(|(_, g)| g.len() > 1) {
        let names: Vec<&str> = group.iter().map(|(n, _)| n.name).collect();
        if !reported.insert(names.clone()) {
            continue;
        }
        let mut err = ConfigError::new(
            "duplicate_data_dir",
            format!(
                "nodes {} use the same data directory {dir} on {machine}",
                and_list(&names)
            ),
        )
        .help(
            "two servers cannot share one data directory: give each node on the same machine its \
             own data_dir",
        );
        for (n, host) in group {
            let (_, d) = n.data_dir.expect("grouped by data_dir");
            err = err
                .label(host.value.span, format!("`{}` on {machine}", n.name))
                .label(d.value.span, "same data_dir");
        }
        errors.push(err);
    }
}

fn synchronous(root: &Node, nodes: &[NodeInfo<'_>], errors: &mut Vec<ConfigError>) {
    let Some(sync) = root.at(&["replication", "synchronous"]) else {
        return;
    };
    let by_name: BTreeMap<&str, &NodeInfo<'_>> = nodes.iter().map(|n| (n.name, n)).collect();
    let candidates = || names_of(nodes, |n| !n.is_primary() && !n.is_absent());
    let mut listed: Vec<&str> = Vec::new();
    let standbys = sync.value.get("standbys");
    for item in standbys.map(|s| s.value.items()).unwrap_or_default() {
        let Some(name) = item.as_str() else { continue };
        if listed.contains(&name) {
            errors.push(
                ConfigError::new(
                    "sync_duplicate",
                    format!("`{name}` is listed twice as a synchronous standby"),
                )
                .label(item.span, "listed again")
                .help("list each synchronous standby once"),
            );
            continue;
        }
        listed.push(name);
        let problem = match by_name.get(name) {
            None => Some((
                "sync_unknown",
                "is not a node of this topology",
                "unknown node",
            )),
            Some(n) if n.is_absent() => Some(("sync_retired", "is retired", "retired node")),
            Some(n) if n.is_primary() => Some(("sync_primary", "is the primary", "the primary")),
            Some(_) => None,
        };
        if let Some((code, why, label)) = problem {
            errors.push(
                ConfigError::new(code, format!("the synchronous standby `{name}` {why}"))
                    .label(item.span, label)
                    .help(format!(
                        "list standbys that stay in the cluster: {}",
                        candidates()
                    )),
            );
        }
    }
    if let Some(count) = sync.value.get("count") {
        let Some(c) = count.value.as_int() else {
            return;
        };
        if c < 1 {
            errors.push(
                ConfigError::new(
                    "sync_count",
                    "`replication.synchronous.count` must be at least 1",
                )
                .label(count.value.span, "no standby would be waited for")
                .help(
                    "write how many standbys must confirm each commit (at least 1), or \
                         remove `synchronous` for asynchronous replication",
                ),
            );
        } else if standbys.is_some() && c > listed.len() as i128 {
            let mut err = ConfigError::new(
                "sync_count",
                format!(
                    "`replication.synchronous.count` is {c} but only {} standbys are listed",
                    listed.len()
                ),
            )
            .label(count.value.span, "larger than the list")
            .help(format!(
                "lower `count` to at most {}, or list more standbys",
                listed.len()
            ));
            if let Some(s) = standbys {
                err = err.label(s.value.span, format!("{} listed", listed.len()));
            }
            errors.push(err);
        }
    }
}

/// Settings that pgtopo derives from the topology, and the topology key to use instead.
pub const OWNED_SETTINGS: [(&str, &str); 4] = [
    ("primary_conninfo", "nodes.<name>.upstream"),
    ("primary_slot_name", "replication.slots"),
    ("recovery_min_apply_delay", "nodes.<name>.apply_delay"),
    ("synchronous_standby_names", "replication.synchronous"),
];

fn owned_settings(root: &Node, nodes: &[NodeInfo<'_>], errors: &mut Vec<ConfigError>) {
    let mut check = |settings: Option<&Entry>, node: Option<&str>| {
        let place = match node {
            Some(n) => format!("`nodes.{n}.settings`"),
            None => "`settings`".into(),
        };
        for e in settings.map(|s| s.value.entries()).unwrap_or_default() {
            let lower = e.key.to_ascii_lowercase();
            if let Some((_, instead)) = OWNED_SETTINGS.iter().find(|(k, _)| *k == lower) {
                let instead = match node {
                    Some(n) => instead.replace("<name>", n),
                    None => instead.to_string(),
                };
                errors.push(
                    ConfigError::new(
                        "owned_setting",
                        format!("`{}` in {place} is managed by pgtopo", e.key),
                    )
                    .label(e.key_span, "set by pgtopo from the topology")
                    .help(format!(
                        "remove it and use `{instead}` instead; pgtopo writes `{lower}` itself"
                    )),
                );
            }
        }
    };
    check(root.get("settings"), None);
    for n in nodes {
        check(n.entry.value.get("settings"), Some(n.name));
    }
}

/// Authentication methods of pg_hba.conf (PostgreSQL 12 to 18).
pub const HBA_METHODS: [&str; 15] = [
    "trust",
    "reject",
    "scram-sha-256",
    "md5",
    "password",
    "gss",
    "sspi",
    "ident",
    "peer",
    "ldap",
    "radius",
    "cert",
    "pam",
    "bsd",
    "oauth",
];

/// The method is the first word; options may follow (`ldap ldapserver=…`).
fn hba_method(method: &str, span: Span, place: String, errors: &mut Vec<ConfigError>) {
    let method = method.split_whitespace().next().unwrap_or_default();
    if HBA_METHODS.contains(&method) {
        return;
    }
    let mut help = format!("use one of {}", HBA_METHODS.join(", "));
    if let Some(s) = super::structure::suggest(method, HBA_METHODS.iter().copied()) {
        help = format!("did you mean `{s}`? {help}");
    }
    errors.push(
        ConfigError::new(
            "hba_method",
            format!("`{place}` is not an authentication method PostgreSQL knows: `{method}`"),
        )
        .label(span, "unknown method")
        .help(help),
    );
}

const HBA_TYPES: [&str; 6] = [
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
];

/// Whether a pg_hba address names only this machine.
pub fn is_loopback(address: &str) -> bool {
    let a = address.trim();
    if matches!(a, "localhost" | "samehost") {
        return true;
    }
    let (ip, prefix) = match a.split_once('/') {
        Some((ip, p)) => match p.parse::<u8>() {
            Ok(p) => (ip, Some(p)),
            Err(_) => return false,
        },
        None => (a, None),
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            v4.octets()[0] == 127 && prefix.map_or(true, |p| (8..=32).contains(&p))
        }
        Ok(std::net::IpAddr::V6(v6)) => v6.is_loopback() && prefix.map_or(true, |p| p == 128),
        Err(_) => false,
    }
}

fn hba(root: &Node, errors: &mut Vec<ConfigError>) {
    if let Some((m, e)) = root
        .get("replication")
        .and_then(|r| str_entry(&r.value, "hba_method"))
    {
        hba_method(m, e.value.span, "replication.hba_method".into(), errors);
        if m.split_whitespace().next() == Some("md5") {
            errors.push(
                ConfigError::new(
                    "hba_md5",
                    "`replication.hba_method` cannot be `md5`: md5 passwords are deprecated",
                )
                .label(e.value.span, "md5 is refused")
                .help(
                    "use `scram-sha-256` (the default): pgtopo stores the replication role's \
                     password as a SCRAM-SHA-256 verifier",
                ),
            );
        }
    }
    let Some(rules) = root.get("hba") else { return };
    for (i, rule) in rules.value.items().iter().enumerate() {
        let kind = str_entry(rule, "type");
        if let Some((k, e)) = kind {
            if !HBA_TYPES.contains(&k) {
                errors.push(
                    ConfigError::new("hba_type", format!("`hba[{i}].type` cannot be `{k}`"))
                        .label(e.value.span, "unknown connection type")
                        .help(format!("use one of {}", HBA_TYPES.join(", "))),
                );
                continue;
            }
        }
        let address = str_entry(rule, "address");
        let is_local = kind.is_some_and(|(k, _)| k == "local");
        match (kind, address) {
            (Some((k, t)), None) if !is_local => {
                errors.push(
                    ConfigError::new(
                        "hba_address",
                        format!("the `{k}` rule `hba[{i}]` has no address"),
                    )
                    .label(t.span(), format!("a `{k}` rule needs an `address`"))
                    .help(
                        "add `address:` (a CIDR such as 10.0.0.0/8, a host name, or samehost / \
                         samenet / all); only `local` rules go without one",
                    ),
                );
            }
            (Some(_), Some((_, e))) if is_local => {
                errors.push(
                    ConfigError::new(
                        "hba_address",
                        format!("the `local` rule `hba[{i}]` has an address"),
                    )
                    .label(e.span(), "local rules match Unix sockets, not addresses")
                    .help("remove `address`, or use type `host` for TCP connections"),
                );
            }
            _ => {}
        }
        let method = str_entry(rule, "method");
        if let Some((m, e)) = method {
            hba_method(m, e.value.span, format!("hba[{i}].method"), errors);
        }
        let allow = rule.get("allow_trust").and_then(|e| e.value.as_bool()) == Some(true);
        let method = method.map(|(m, e)| (m.split_whitespace().next().unwrap_or_default(), e));
        if let (Some(("trust", m)), Some((addr, a)), false) = (method, address, allow) {
            if !is_local && !is_loopback(addr) {
                errors.push(
                    ConfigError::new(
                        "hba_trust",
                        format!("`hba[{i}]` trusts connections from `{addr}` without a password"),
                    )
                    .label(m.value.span, "trust")
                    .label(a.value.span, "not a loopback address")
                    .help(
                        "use a password method such as scram-sha-256, restrict the address to \
                         loopback (127.0.0.1/32, ::1/128, localhost, samehost), or set \
                         `allow_trust: true` on this rule if anyone who can reach it may connect",
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hops() {
        for h in [
            "bastion",
            "admin@bastion.example.com:2222",
            "10.0.0.1",
            "u@[fe80::1]:22",
            "[::1]",
        ] {
            assert!(jump_hop(h), "{h}");
        }
        for h in [
            "",
            "-oProxyCommand=x",
            "a b",
            "@host",
            "host:0",
            "host:x",
            "[::1",
            "host:",
        ] {
            assert!(!jump_hop(h), "{h}");
        }
        let yaml = "cluster: c\nnodes:\n  n1:\n    host: 10.0.0.1\n    data_dir: /d\n    role: primary\n    ssh: {host: 10.0.0.1, jump: 'a@b:22,c d'}\n";
        let err = crate::config::load_str("t.yaml", yaml).unwrap_err();
        assert!(format!("{err:?}").contains("ssh_jump"), "{err:?}");
        let ok = yaml.replace("a@b:22,c d", "a@b:22,c");
        let d = crate::config::load_str("t.yaml", &ok).unwrap();
        assert_eq!(
            d.nodes["n1"].ssh.as_ref().unwrap().jump.as_deref(),
            Some("a@b:22,c")
        );
    }

    #[test]
    fn loopback_addresses() {
        for a in [
            "127.0.0.1/32",
            "127.0.0.0/8",
            "127.1.2.3",
            "::1/128",
            "::1",
            "localhost",
            "samehost",
        ] {
            assert!(is_loopback(a), "{a}");
        }
        for a in [
            "10.0.0.0/8",
            "0.0.0.0/0",
            "127.0.0.0/7",
            "::/0",
            "samenet",
            "all",
            "db.internal",
            "::1/64",
        ] {
            assert!(!is_loopback(a), "{a}");
        }
    }

    #[test]
    fn node_names() {
        assert!(valid_node_name("n1"));
        assert!(valid_node_name(&format!("a{}", "b".repeat(62))));
        assert!(!valid_node_name(&format!("a{}", "b".repeat(63))));
        assert!(!valid_node_name("N1"));
        assert!(!valid_node_name("1n"));
        assert!(!valid_node_name("n-1"));
        assert!(!valid_node_name(""));
    }
}
