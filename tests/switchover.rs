//! Planned switchover end to end, against real PostgreSQL servers, through the pgtopo binary,
//! under a continuous writer.
//!
//! The writer (`support::writer`) is a tokio task that inserts one autocommit row at a time
//! through a multi-host connection with `target_session_attrs=read-write` and records every
//! acknowledged id and when it was acknowledged. A sampler looks at every node about every
//! millisecond and records whether two of them ever answered as primary in the same round, and
//! when each round was. After a switchover to n2 (n3 following it) and the switch back, every
//! acknowledged id must be on the final primary, each timeline must have gone up by one, no round
//! may have seen two primaries, the sampler must have sampled inside each switchover's window
//! (between the old primary's `stop` starting and the new primary's `promote` ending, as the
//! apply's JSON events time them), and `pgtopo plan` must report no changes.

mod support;

use support::show;

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use support::wait::until;
use support::writer::Writer;
use support::TestCluster;

#[derive(Default, Debug)]
struct SamplerLog {
    rounds: u64,
    max_primaries: usize,
    two_primaries_at: Vec<String>,
    /// When each counted round was taken (wall clock, to compare with the apply's events).
    taken_at: Vec<SystemTime>,
}

/// Every node asked `pg_is_in_recovery()` at once, about every millisecond, until `stop`;
/// `rounds` counts the rounds that count (answered within 5 ms) as they come.
async fn sampler(
    nodes: Vec<(String, tokio_postgres::Config)>,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> SamplerLog {
    let mut log = SamplerLog::default();
    let mut clients: Vec<Option<tokio_postgres::Client>> = nodes.iter().map(|_| None).collect();
    // The sampling clock: one round a millisecond at most (not a wait for anything).
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
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
        let at = SystemTime::now();
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
            rounds.fetch_add(1, Ordering::Relaxed);
            log.taken_at.push(at);
            log.max_primaries = log.max_primaries.max(primaries.len());
            if primaries.len() > 1 {
                log.two_primaries_at.push(primaries.join("+"));
            }
        }
    }
    log
}

/// The time of the first `event` (`step_started`, `step_done`) of a `kind` step on `node` in
/// `apply --format json`'s stream.
fn step_time(out: &Output, event: &str, kind: &str, node: &str) -> SystemTime {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["type"] == event && e["kind"] == kind && e["node"] == node)
        .and_then(|e| humantime::parse_rfc3339(e["timestamp"].as_str()?).ok())
        .unwrap_or_else(|| panic!("no {event} of {kind} on {node}: {}", show(out)))
}

/// The switchover's window, from the old primary's `stop` (`step_started`, or `step_done`: the
/// old primary gone) to the new primary's `promote` ending (the events have millisecond
/// timestamps: the window is widened by 1 ms on each side).
fn window(out: &Output, from: &str, old: &str, new: &str) -> (SystemTime, SystemTime) {
    let ms = Duration::from_millis(1);
    (
        step_time(out, from, "stop", old) - ms,
        step_time(out, "step_done", "promote", new) + ms,
    )
}

/// Rounds the sampler took inside `w`.
fn samples_in(log: &SamplerLog, w: (SystemTime, SystemTime)) -> usize {
    log.taken_at
        .iter()
        .filter(|t| **t >= w.0 && **t <= w.1)
        .count()
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
    let rounds = Arc::new(AtomicU64::new(0));
    let names: Vec<&str> = c.nodes().iter().map(|n| n.name.as_str()).collect();
    let named: Vec<(String, tokio_postgres::Config)> = names
        .iter()
        .map(|n| (n.to_string(), c.sql_config(&[n])))
        .collect();
    let w = Writer::start(&c, &names);
    let s = tokio::spawn(sampler(named, stop.clone(), rounds.clone()));
    let sampled = |more: u64| {
        let goal = rounds.load(Ordering::Relaxed) + more;
        let rounds = rounds.clone();
        until("the sampler's rounds", Duration::from_secs(30), move || {
            let n = rounds.load(Ordering::Relaxed);
            (n >= goal).then_some(()).ok_or(format!("{n} of {goal}"))
        })
    };
    w.wait_more(100).await;
    sampled(100).await;

    // Switch over to n2; n3 follows n2.
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"))
        .role("n3", "standby", Some("n2"));
    let path = c.write_topology(&topo);
    let p = path.clone();
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        pgtopo(&p, &["apply", "--auto-approve", "--format", "json"])
    })
    .await
    .unwrap();
    let t1 = Instant::now();
    assert!(out.status.success(), "{}", show(&out));
    let window1 = window(&out, "step_started", "n1", "n2");
    let gone1 = window(&out, "step_done", "n1", "n2");
    let tl2 = timeline(&c, "n2");
    assert_eq!(tl2, tl1 + 1, "the timeline goes up by one");
    let out = pgtopo(&path, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "after the switchover: {}",
        show(&out)
    );
    w.wait_more(100).await;
    sampled(100).await;

    // And back to n1.
    topo.role("n1", "primary", None)
        .role("n2", "standby", Some("n1"))
        .role("n3", "standby", Some("n1"));
    let path = c.write_topology(&topo);
    let p = path.clone();
    let t2 = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        pgtopo(&p, &["apply", "--auto-approve", "--format", "json"])
    })
    .await
    .unwrap();
    let t3 = Instant::now();
    assert!(out.status.success(), "{}", show(&out));
    let window2 = window(&out, "step_started", "n2", "n1");
    let gone2 = window(&out, "step_done", "n2", "n1");
    assert_eq!(timeline(&c, "n1"), tl2 + 1);
    let out = pgtopo(&path, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "after the switch back: {}",
        show(&out)
    );
    w.wait_more(100).await;
    sampled(100).await;

    stop.store(true, Ordering::Relaxed);
    let wlog = w.finish().await;
    let slog = s.await.unwrap();
    let inside = (samples_in(&slog, window1), samples_in(&slog, window2));
    let gone = (samples_in(&slog, gone1), samples_in(&slog, gone2));

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
        "sampler_rounds_in_windows": [inside.0, inside.1],
        "sampler_rounds_old_primary_stopped": [gone.0, gone.1],
        "max_primaries": slog.max_primaries,
    });
    record(&measured);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(wlog.acked.len() > 100, "the writer wrote");
    assert!(slog.rounds > 100, "the sampler sampled");
    // The sampler looked while it mattered: from each old primary's stop to the promotion, and
    // in particular after the old primary was down and before the new one was promoted.
    assert!(
        inside.0 > 0 && inside.1 > 0 && gone.0 > 0 && gone.1 > 0,
        "too few samples inside the switchover windows: {inside:?}, after the stop {gone:?} \
         (windows {window1:?}, {window2:?})"
    );
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
