//! The fingerprint of a plan: per node, the facts the plan depends on (system identifier,
//! timeline, role, upstream, running) and hashes of the settings the plan reads, hba block and slot
//! names — never LSNs, which move all the time. `apply PLAN` recomputes it from a fresh
//! observation and refuses a stale plan when it differs.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::config::Desired;
use crate::observe::ObservedCluster;

use super::model::NodeFingerprint;

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Fingerprint of every observed node (retired ones included).
pub fn fingerprint(d: &Desired, o: &ObservedCluster) -> BTreeMap<String, NodeFingerprint> {
    let mut out = BTreeMap::new();
    let mut seen_blocks: Vec<(&Vec<String>, String)> = Vec::new();
    for (name, n) in &o.nodes {
        // Every setting the plan may read on the node: the topology's, and those it checks
        // for replication (hot-standby-critical ones, wal_level, synchronous_standby_names).
        let mut keys: Vec<String> = d
            .nodes
            .get(name)
            .map(|n| n.settings.keys().cloned().collect())
            .unwrap_or_default();
        keys.extend(
            crate::diff::HOT_STANDBY_CRITICAL
                .iter()
                .map(|k| k.to_string()),
        );
        keys.push("wal_level".into());
        keys.push("synchronous_standby_names".into());
        keys.sort();
        keys.dedup();
        let settings: String = keys
            .iter()
            .map(|k| {
                let v = n
                    .settings
                    .get(k)
                    .map(|s| s.raw.clone().unwrap_or_else(|| s.value.clone()))
                    .unwrap_or_else(|| "<unset>".into());
                format!("{k}={v}\n")
            })
            .collect();
        // Blocks are usually the same on every node: hash each distinct one once.
        let block = n.hba.as_ref().and_then(|h| h.managed_block.as_ref());
        let hba_sha256 = match block {
            None => sha("<none>"),
            Some(b) => match seen_blocks.iter().find(|(k, _)| *k == b) {
                Some((_, h)) => h.clone(),
                None => {
                    let h = sha(&b.join("\n"));
                    if seen_blocks.len() < 8 {
                        seen_blocks.push((b, h.clone()));
                    }
                    h
                }
            },
        };
        let mut slots = n.slots.clone();
        slots.sort();
        out.insert(
            name.clone(),
            NodeFingerprint {
                system_identifier: n.system_identifier.clone(),
                timeline: n.timeline,
                role: crate::diff::observed_role(n),
                upstream: crate::diff::observed_upstream(d, n),
                running: n.running,
                settings_sha256: sha(&settings),
                hba_sha256,
                slots_sha256: sha(&slots.join("\n")),
            },
        );
    }
    out
}

/// What the plan depends on of every declared pooler: whether it answers, and where each of its
/// databases routes and whether it is paused (a plan routes and resumes from that).
pub fn poolers(o: &ObservedCluster) -> BTreeMap<String, String> {
    o.poolers
        .iter()
        .map(|(name, p)| {
            let seen = if p.reachable {
                p.databases
                    .iter()
                    .map(|(db, r)| {
                        let paused = if r.paused { " paused" } else { "" };
                        format!("{db}→{}:{}{paused}", r.host, r.port)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                "unreachable".to_string()
            };
            (name.clone(), seen)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::fixtures::*;

    #[test]
    fn lsns_do_not_change_the_fingerprint_but_roles_do() {
        let d = desired3();
        let o = healthy(&d);
        let f1 = fingerprint(&d, &o);
        let mut o2 = o.clone();
        o2.nodes.get_mut("n2").unwrap().lsn = Some(crate::units::Lsn(0x9000000));
        assert_eq!(f1, fingerprint(&d, &o2));
        o2.nodes.get_mut("n2").unwrap().running = false;
        assert_ne!(f1, fingerprint(&d, &o2));
        let mut o3 = o.clone();
        o3.nodes.get_mut("n1").unwrap().slots.push("x".into());
        assert_ne!(
            f1["n1"].slots_sha256,
            fingerprint(&d, &o3)["n1"].slots_sha256
        );
    }

    #[test]
    fn a_pooler_routed_elsewhere_changes_its_fingerprint() {
        use crate::pooler::{ObservedPooler, PoolerRoute};
        let d = desired3();
        let mut o = healthy(&d);
        let route = |port| PoolerRoute {
            host: "127.0.0.1".into(),
            port,
            paused: false,
        };
        let pooler = |port| ObservedPooler {
            reachable: true,
            unreachable_reason: None,
            databases: [("app".to_string(), route(port))].into(),
        };
        o.poolers.insert("pgb".into(), pooler(5432));
        let before = poolers(&o);
        assert_eq!(before["pgb"], "app→127.0.0.1:5432");
        o.poolers.insert("pgb".into(), pooler(5433));
        assert_ne!(before, poolers(&o));
    }
}
