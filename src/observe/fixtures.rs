//! Builders of desired topologies and observed clusters for tests and benchmarks.
//!
//! `healthy(d)` is the cluster exactly as `d` asks for it (every node running and streaming from
//! its declared upstream, slots, hba block, settings), so a test starts from "no changes" and
//! breaks one thing. Not used by the program itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{
    ConnectSpec, Desired, DesiredNode, DesiredRole, FailoverSpec, ReplicationSpec, SecretRef,
    SwitchoverSpec,
};
use crate::observe::{
    ConninfoSummary, DataDirState, ObservedCluster, ObservedHba, ObservedNode, ObservedReplica,
    ObservedSetting, ObservedSlot, Role, OBSERVED_FORMAT_VERSION,
};
use crate::units::Lsn;

/// A node at 127.0.0.<i+1> (hosts repeat every 250 nodes), port 55601+i (10000+i past 9,000).
pub fn node(name: &str, i: usize, role: DesiredRole) -> DesiredNode {
    DesiredNode {
        name: name.into(),
        host: format!("127.0.0.{}", (i % 250) + 1),
        port: if i < 9000 { 55601 + i } else { 10000 + i } as u16,
        data_dir: PathBuf::from(format!("/tmp/pgtopo-test/{name}")),
        bin_dir: PathBuf::from("/usr/lib/postgresql/15/bin"),
        os_user: "postgres".into(),
        ssh: None,
        role,
        settings: BTreeMap::new(),
        promotion: Default::default(),
        tls: Default::default(),
        service: Default::default(),
        config_dir: None,
    }
}

/// A topology from nodes.
pub fn desired_from(nodes: Vec<DesiredNode>) -> Desired {
    Desired {
        cluster: "shop".into(),
        source_path: PathBuf::from("topology.yaml"),
        sha256: "0".repeat(64),
        connect: ConnectSpec::default(),
        replication: ReplicationSpec {
            password: Some(SecretRef::Env {
                env: "PGTOPO_REPLICATION_PASSWORD".into(),
            }),
            ..ReplicationSpec::default()
        },
        hba: vec![],
        failover: FailoverSpec::default(),
        switchover: SwitchoverSpec::default(),
        poolers: Default::default(),
        hooks: Default::default(),
        logical_slots: vec![],
        nodes: nodes.into_iter().map(|n| (n.name.clone(), n)).collect(),
        upgrade: Default::default(),
        archive: None,
        clone_policy: Default::default(),
    }
}

fn standby_of(up: &str) -> DesiredRole {
    DesiredRole::Standby {
        upstream: up.into(),
    }
}

/// n1 primary; n2 and n3 standbys of n1.
pub fn desired3() -> Desired {
    desired_from(vec![
        node("n1", 0, DesiredRole::Primary),
        node("n2", 1, standby_of("n1")),
        node("n3", 2, standby_of("n1")),
    ])
}

/// `n` nodes: n1 primary, about a tenth of the standbys cascade from an earlier standby, a few
/// carry per-node settings.
pub fn generated(n: usize) -> Desired {
    let mut nodes = vec![node("n1", 0, DesiredRole::Primary)];
    for i in 1..n {
        let up = if i % 10 == 0 && i > 1 {
            format!("n{}", i / 2)
        } else {
            "n1".into()
        };
        let mut nd = node(&format!("n{}", i + 1), i, standby_of(&up));
        if i % 7 == 0 {
            nd.settings
                .insert("hot_standby_feedback".into(), "on".into());
        }
        nodes.push(nd);
    }
    let mut d = desired_from(nodes);
    for nd in d.nodes.values_mut() {
        nd.settings.insert("max_wal_senders".into(), "20".into());
    }
    d
}

/// Make `name` the declared primary: the old primary follows it, and so does every standby that
/// followed the old primary.
pub fn set_primary(d: &mut Desired, name: &str) {
    let old = d.primary().name.clone();
    for n in d.nodes.values_mut() {
        if n.name == name {
            n.role = DesiredRole::Primary;
        } else if n.name == old
            || matches!(&n.role, DesiredRole::Standby { upstream } if *upstream == old)
        {
            n.role = standby_of(name);
        }
    }
}

/// An observed setting.
pub fn setting(value: &str, context: &str) -> ObservedSetting {
    ObservedSetting {
        value: value.into(),
        raw: None,
        unit: None,
        pending_restart: false,
        context: context.into(),
        source: "configuration file".into(),
    }
}

fn context_of(name: &str) -> &'static str {
    if crate::diff::needs_restart(name, &ObservedNode::default()) {
        "postmaster"
    } else {
        "sighup"
    }
}

/// The cluster exactly as `d` declares it: primary on timeline 1 at 0/3000060, standbys
/// streaming and caught up, slots in place, the managed hba block written, settings applied.
pub fn healthy(d: &Desired) -> ObservedCluster {
    let lsn = Lsn(0x3000060);
    let block = crate::diff::hba::managed_block(d);
    let mut nodes = BTreeMap::new();
    for n in d.nodes.values() {
        let mut o = ObservedNode {
            reachable: true,
            running: true,
            host_reachable: true,
            timeline: Some(1),
            lsn: Some(lsn),
            system_identifier: Some("7300000000000000001".into()),
            version: Some(150004),
            data_dir: DataDirState {
                exists: true,
                empty: false,
                pg_version: Some(15),
            },
            hba: Some(ObservedHba {
                path: format!("{}/pg_hba.conf", n.data_dir.display()),
                managed_block: Some(block.clone()),
                block_line: None,
                sha256: "0".repeat(64),
                errors: vec![],
            }),
            ..Default::default()
        };
        let mut settings: BTreeMap<String, ObservedSetting> = [
            ("max_connections", "100"),
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("wal_log_hints", "off"),
            ("hot_standby", "on"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), setting(v, context_of(k))))
        .collect();
        for (k, v) in &n.settings {
            settings.insert(k.clone(), setting(v, context_of(k)));
        }
        match &n.role {
            DesiredRole::Primary => {
                o.role = Some(Role::Primary);
                settings.insert(
                    "synchronous_standby_names".into(),
                    setting(&d.synchronous_standby_names(), "sighup"),
                );
            }
            DesiredRole::Standby { upstream } => {
                let u = &d.nodes[upstream];
                o.role = Some(Role::Standby);
                o.upstream = Some(upstream.clone());
                o.streaming = true;
                o.receive_lsn = Some(lsn);
                o.replay_lsn = Some(lsn);
                o.standby_signal = true;
                o.primary_conninfo = Some(ConninfoSummary {
                    host: Some(u.host.clone()),
                    port: Some(u.port),
                    user: Some(d.replication.user.clone()),
                    application_name: Some(n.name.clone()),
                    dbname: d.slot_sync_dbname(),
                    ..crate::diff::tls::expected(d, &n.name)
                });
                if d.replication.slots {
                    o.primary_slot_name = Some(n.name.clone());
                }
            }
            DesiredRole::Absent => {
                o.running = false;
                o.reachable = false;
            }
        }
        o.settings = settings;
        if n.role != DesiredRole::Absent {
            for s in d.downstreams_of(&n.name) {
                o.replication.push(ObservedReplica {
                    application_name: s.name.clone(),
                    client_addr: Some(s.host.clone()),
                    state: "streaming".into(),
                    sync_state: "async".into(),
                    sent_lsn: Some(lsn),
                    flush_lsn: Some(lsn),
                    replay_lsn: Some(lsn),
                    lag_bytes: Some(0),
                    reply_age_ms: None,
                    replay_lag_ms: None,
                });
            }
        }
        if d.replication.slots && n.role != DesiredRole::Absent {
            for s in d.downstreams_of(&n.name) {
                o.slots.push(s.name.clone());
                o.replication_slots.push(ObservedSlot {
                    name: s.name.clone(),
                    slot_type: "physical".into(),
                    active: true,
                    restart_lsn: Some(lsn),
                    wal_retained_bytes: Some(0),
                    wal_status: None,
                    safe_wal_size: None,
                    logical: None,
                });
            }
        }
        nodes.insert(n.name.clone(), o);
    }
    ObservedCluster {
        format_version: OBSERVED_FORMAT_VERSION,
        cluster: d.cluster.clone(),
        observed_at: "2026-11-24T23:00:00Z".into(),
        poolers: Default::default(),
        nodes,
    }
}
