//! pgtopo's managed block of pg_hba.conf, as the topology asks for it.
//!
//! Every present node gets the same block, so any node can be an upstream (a switchover needs no
//! hba change): one replication rule per present node's host (`hostssl` when `replication.tls` is
//! set), then the topology's `hba:` rules.

use crate::config::{Desired, DesiredRole, HbaRule};
use crate::observe::ObservedNode;

/// Whether `obs`'s pg_hba.conf needs the managed block `block` written: its host can be acted
/// on, it has a data directory, its pg_hba.conf is visible (read from the host, or the server
/// answers), and the block differs. The one comparison behind the change, the drift finding, the
/// file diff and the `write_hba` step (the planner adds the node's fate on top of this judgement).
pub fn needs_write(block: &[String], obs: &ObservedNode) -> bool {
    if !super::actionable(obs) || super::needs_data(obs) || (obs.hba.is_none() && !obs.reachable) {
        return false;
    }
    !block_matches(seen(obs), block)
}

/// The managed block `obs`'s pg_hba.conf holds, when it has one.
pub fn seen(obs: &ObservedNode) -> Option<&[String]> {
    obs.hba.as_ref().and_then(|h| h.managed_block.as_deref())
}

/// `127.0.0.1` → `127.0.0.1/32`, an IPv6 address → `/128`, a name or a CIDR unchanged.
fn address(host: &str) -> String {
    if host.contains('/') {
        return host.to_string();
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => format!("{host}/32"),
        Ok(std::net::IpAddr::V6(_)) => format!("{host}/128"),
        Err(_) => host.to_string(),
    }
}

fn rule_line(r: &HbaRule) -> String {
    match &r.address {
        Some(a) => format!("{} {} {} {} {}", r.kind, r.database, r.user, a, r.method),
        None => format!("{} {} {} {}", r.kind, r.database, r.user, r.method),
    }
}

/// The managed block's lines (markers excluded) for a present node.
pub fn managed_block(desired: &Desired) -> Vec<String> {
    let mut lines = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    // With replication TLS, a replication connection without it is not let in.
    let kind = match desired.replication.tls {
        Some(_) => "hostssl",
        None => "host",
    };
    for n in desired.nodes.values() {
        if n.role == DesiredRole::Absent {
            continue;
        }
        let addr = address(&n.host);
        if seen.insert(addr.clone()) {
            lines.push(format!(
                "{kind} replication {} {} {}",
                desired.replication.user, addr, desired.replication.hba_method
            ));
        }
    }
    lines.extend(desired.hba.iter().map(rule_line));
    lines
}

/// Whether an observed block (None = no block) equals the desired one, ignoring blank lines,
/// comments and runs of whitespace.
pub fn block_matches(observed: Option<&[String]>, desired: &[String]) -> bool {
    if observed == Some(desired) {
        return true;
    }
    let norm = |ls: &[String]| -> Vec<String> {
        ls.iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    };
    match observed {
        None => desired.is_empty(),
        Some(o) => norm(o) == norm(desired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(address("127.0.0.2"), "127.0.0.2/32");
        assert_eq!(address("::1"), "::1/128");
        assert_eq!(address("db2.internal"), "db2.internal");
        assert_eq!(address("10.0.0.0/8"), "10.0.0.0/8");
    }

    #[test]
    fn replication_tls_makes_the_rules_hostssl() {
        let mut d = crate::observe::fixtures::desired3();
        assert!(managed_block(&d)[0].starts_with("host replication replicator 127.0.0.1/32"));
        d.replication.hba_method = "cert".into();
        d.replication.tls = Some(crate::config::ReplicationTls {
            sslmode: crate::config::SslMode::VerifyFull,
            sslrootcert: None,
            sslcert: None,
            sslkey: None,
        });
        let block = managed_block(&d);
        assert_eq!(block[0], "hostssl replication replicator 127.0.0.1/32 cert");
        assert!(block.iter().all(|l| l.starts_with("hostssl ")));
    }

    #[test]
    fn matching_ignores_spacing_and_comments() {
        let want = vec!["host replication r 127.0.0.1/32 scram-sha-256".to_string()];
        let seen = vec![
            "# generated".to_string(),
            "host  replication r   127.0.0.1/32 scram-sha-256".to_string(),
        ];
        assert!(block_matches(Some(&seen), &want));
        assert!(!block_matches(None, &want));
        assert!(block_matches(None, &[]));
    }
}
