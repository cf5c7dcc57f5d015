//! Drift of the poolers: one that cannot be observed, a database it does not have, one that
//! routes a database to anything but the declared primary (a standby, a retired node, an unknown
//! address), and a paused database (a pooler left paused is an outage). Pure.

use super::address::Address;
use crate::config::Desired;
use crate::observe::ObservedCluster;
use crate::pooler::ObservedPooler;

use super::finding::{DriftItem, DriftKind};

/// The findings of every declared pooler.
pub fn findings(d: &Desired, o: &ObservedCluster) -> Vec<DriftItem> {
    let primary = d.primary();
    let mut items = Vec::new();
    for p in d.poolers.values() {
        let item = |kind, detail: String| DriftItem {
            kind,
            node: p.name.clone(),
            address: Address::Pooler(p.name.clone()),
            detail,
        };
        let Some(obs) = o.poolers.get(&p.name).filter(|x| x.reachable) else {
            let why = o
                .poolers
                .get(&p.name)
                .and_then(|x| x.unreachable_reason.clone())
                .unwrap_or_else(|| "not observed".into());
            items.push(item(
                DriftKind::PoolerDown,
                format!("pooler {} is unreachable: {why}", p.name),
            ));
            continue;
        };
        for db in &p.databases {
            let Some(r) = obs.databases.get(db) else {
                items.push(item(
                    DriftKind::PoolerRoute,
                    format!("pooler {} has no database {db}", p.name),
                ));
                continue;
            };
            if r.host != primary.host || r.port != primary.port {
                let to = ObservedPooler::node_at(d, r)
                    .map(|n| format!("{n} ({}:{}), not the primary", r.host, r.port))
                    .unwrap_or_else(|| format!("{}:{}, no declared node", r.host, r.port));
                items.push(item(
                    DriftKind::PoolerRoute,
                    format!(
                        "pooler {} routes {db} to {to}; topology.yaml's primary is {}",
                        p.name, primary.name
                    ),
                ));
            }
            if r.paused {
                items.push(item(
                    DriftKind::PoolerPaused,
                    format!("pooler {} has {db} paused: its clients wait", p.name),
                ));
            }
        }
    }
    items
}
