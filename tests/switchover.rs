//! Planned switchover end to end, against real PostgreSQL servers, through the pgtopo binary,
//! under a continuous writer.
//!
//! The writer (`support::writer`) is a tokio task that inserts one autocommit row at a time
//! through a multi-host connection with `target_session_attrs=read-write` and records every
//! acknowledged id and when it was acknowledged. A sampler looks at every node about every millisecond and records whether two
//! of them ever answered as primary in the same round. After a switchover to n2 (n3 following
//! it) and the switch back, every acknowledged id must be on the final primary, each timeline
//! must have gone up by one, no round may have seen two primaries, and `pgtopo plan` must report
//! no changes.

mod support;

use support::show;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::writer::writer;
use support::TestCluster;

/// Pause between the writer's or sampler's attempts.
async fn pause_wait(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[derive(Default, Debug)]
struct SamplerLog {
    rounds: u64,
    max_primaries: usize,
    two_primaries_at: Vec<String>,
}

async fn sampler(
    nodes: Vec<(String, tokio_postgres::Config)>,
    stop: Arc<AtomicBool>,
) -> SamplerLog {
    let mut log = SamplerLog::default();
    let mut clients: Vec<Option<tokio_postgres::Client>> = nodes.iter().map(|_| None).collect();
    while !stop.load(Ordering::Relaxed) {
        for (i, (_, cfg)) in nodes.iter().enumerate() {
            if !clients[i].as_ref().is_some_and(|c| !c.is_closed()) {
                let mut cfg = cfg.clone();
                cfg.connect_timeout(Duration::from_millis(300));
                clients[i] = match cfg.connect(tokio_postgres::NoTls).await {
                    Ok((c, conn)) => {
                        tokio::spawn(conn);
                        Some(c)
                    }
                    Err(_) => None,
                };
            }
        }
        // One moment: every node asked at once; only a round short enough counts.
        let t = Instant::now();
        let answers = futures::future::join_all(clients.iter().map(|c| async move {
            let c = c.as_ref()?;
            Some(c.query_one("SELECT pg_is_in_recovery()", &[]).await)
        }))
        .await;
        let elapsed = t.elapsed();
        let mut primaries = Vec::new();
        for (i, a) in answers.into_iter().enumerate() {
            match a {
                Some(Ok(r)) if !r.get::<_, bool>(0) => primaries.push(nodes[i].0.clone()),
                Some(Err(_)) => clients[i] = None,
                _ => {}
            }
        }
        if elapsed < Duration::from_millis(5) {
            log.rounds += 1;
            log.max_primaries = log.max_primaries.max(primaries.len());
            if primaries.len() > 1 {
                log.two_primaries_at.push(primaries.join("+"));
            }
        }
        pause_wait(1).await;
    }
    log
}

/// Append a measurement line to `<target tmp>/switchover-measurements.jsonl`.
fn record(v: &serde_json::Value) {
    use std::io::Write;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("switchover-measurements.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("measurements file");
    writeln!(f, "{v}").expect("write measurement");
}

fn pgtopo(topology: &PathBuf, args: &[&str]) -> Output {
    support::cli::stray_pgtopo()
        .arg("-f")
        .arg(topology)
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("pgtopo runs")
}

fn timeline(c: &TestCluster, node: &str) -> u32 {
    let wal = c.psql(node, "SELECT pg_walfile_name(pg_current_wal_lsn())");
    u32::from_str_radix(&wal[..8], 16).unwrap()
}

/// Largest gap between two consecutive acknowledgements within [from, to].
fn max_gap(acked: &[(i64, Instant)], from: Instant, to: Instant) -> Duration {
    acked
        .windows(2)
        .filter(|w| w[1].1 >= from && w[0].1 <= to)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switchover_under_writes_loses_nothing_and_switches_back() {
    let mut c = TestCluster::new();
    c.init_primary("n1");
    c.start("n1");
    c.add_standby_basebackup("n2", "n1");
    c.add_standby_basebackup("n3", "n1");
    c.wait_streaming("n2");
    c.wait_streaming("n3");
    let mut topo = c.topology();
    let path = c.write_topology(&topo);
    let out = pgtopo(&path, &["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    let out = pgtopo(&path, &["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    c.psql(
        "n1",
        "CREATE TABLE probe(id bigint PRIMARY KEY, t timestamptz DEFAULT now())",
    );
    let tl1 = timeline(&c, "n1");

    let stop = Arc::new(AtomicBool::new(false));
    let names: Vec<&str> = c.nodes().iter().map(|n| n.name.as_str()).collect();
    let named: Vec<(String, tokio_postgres::Config)> = names
        .iter()
        .map(|n| (n.to_string(), c.sql_config(&[n])))
        .collect();
    let w = tokio::spawn(writer(c.sql_config(&names), stop.clone()));
    let s = tokio::spawn(sampler(named, stop.clone()));
    pause_wait(1000).await;

    // Switch over to n2; n3 follows n2.
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"));
    let path = c.write_topology(&topo);
    let p = path.clone();
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || pgtopo(&p, &["apply", "--auto-approve"]))
        .await
        .unwrap();
    let t1 = Instant::now();
    assert!(out.status.success(), "{}", show(&out));
    let tl2 = timeline(&c, "n2");
    assert_eq!(tl2, tl1 + 1, "the timeline goes up by one");
    let out = pgtopo(&path, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "after the switchover: {}",
        show(&out)
    );
    pause_wait(500).await;

    // And back to n1.
    topo.role("n1", "primary", None)
        .role("n2", "standby", Some("n1"))
        .role("n3", "standby", Some("n1"));
    let path = c.write_topology(&topo);
    let p = path.clone();
    let t2 = Instant::now();
    let out = tokio::task::spawn_blocking(move || pgtopo(&p, &["apply", "--auto-approve"]))
        .await
        .unwrap();
    let t3 = Instant::now();
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(timeline(&c, "n1"), tl2 + 1);
    let out = pgtopo(&path, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "after the switch back: {}",
        show(&out)
    );
    pause_wait(500).await;

    stop.store(true, Ordering::Relaxed);
    let wlog = w.await.unwrap();
    let slog = s.await.unwrap();

    // Every acknowledged write is on the final primary.
    let lost = support::scenario::lost_writes(&c, "n1", wlog.acked.iter().map(|(id, _)| *id));
    let g1 = max_gap(&wlog.acked, t0, t1);
    let g2 = max_gap(&wlog.acked, t2, t3);
    let measured = serde_json::json!({
        "test": "switchover_under_writes",
        "acked": wlog.acked.len(),
        "writer_errors": wlog.errors,
        "lost": lost.len(),
        "switchover_write_unavailable_s": g1.as_secs_f64(),
        "switchover_apply_wall_s": (t1 - t0).as_secs_f64(),
        "switch_back_write_unavailable_s": g2.as_secs_f64(),
        "switch_back_apply_wall_s": (t3 - t2).as_secs_f64(),
        "sampler_rounds": slog.rounds,
        "max_primaries": slog.max_primaries,
    });
    record(&measured);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(wlog.acked.len() > 100, "the writer wrote");
    assert!(slog.rounds > 100, "the sampler sampled");
    assert_eq!(
        slog.max_primaries, 1,
        "two primaries seen: {:?}",
        slog.two_primaries_at
    );
    // Far below the 1–1.3 s of repmgr, pg_auto_failover and Patroni on this machine.
    assert!(
        g1 < Duration::from_secs(1) && g2 < Duration::from_secs(1),
        "{g1:?} {g2:?}"
    );
    // The old primaries stream again.
    c.wait_streaming("n2");
    c.wait_streaming("n3");
}
