//! Fault injection (SPEC §5c): three nodes, each in a network namespace of its own with its own
//! address and sshd (support/netns.rs), pgtopo in the test's namespace reaching them over SSH and
//! SQL; `switchover.timeout: 5s`. One cluster walks the cases in turn; in each, a fault is
//! injected at a chosen moment of a switchover while a checker (support/faults.rs) writes and
//! samples every node. After each case: nothing acknowledged lost, never two primaries
//! answering, writes back within `switchover.timeout` + 5 s; then the fault is healed, the next
//! apply converges and `plan` is empty.
//!
//! Cases (fault, placement, timing):
//! - DROP between the old primary and both standbys, injected when the stop starts: the fast
//!   shutdown hangs on its walsenders; the stop escalates and the old primary comes back.
//! - REJECT between the old primary and the candidate, injected when the stop starts: the
//!   shutdown finishes, the candidate never gets its checkpoint; `wait_replay` rolls back.
//! - 5 % loss between the old primary and the candidate during the whole switchover.
//! - REJECT between pgtopo and the candidate, between plan and apply: nothing is stopped.
//! - The old primary's walsenders frozen (SIGSTOP), injected when the stop starts.
//! - Failover after a crash of the primary, pgtopo cut off (REJECT) from the old primary's host
//!   when its fencing starts: the apply stops before the promotion.
//!
//! (REJECT rules sit in the node's namespace on INPUT and OUTPUT, so the resets they would send
//! are themselves rejected on OUTPUT: seen from pgtopo's side a cut node behaves as behind DROP.)
//!
//! - Failover after a crash of the primary, pgtopo cut off from the candidate when its
//!   promotion starts: the promote step fails at its bound (`server::look`), never two primaries;
//!   the next apply after healing converges.
//!
//! - 50 ms each way between the primary and the candidate (a delaying proxy, reached through a
//!   DNAT rule in the candidate's namespace): the switchover succeeds.
//! - The old primary's postmaster frozen (SIGSTOP) once the candidate caught up: the stop is
//!   refused, nothing stops.
//! - The candidate's pg_wal full (a small tmpfs, filled): the catch-up refuses (no room to
//!   promote), nothing stops.
//!
//! pgbouncer killed between pause and resume is in tests/pooler.rs (with a writer through it).
//! pgtopo's own connections break within ~15 s when a node stops answering (`pg::stall`).
//!
//! Without root (no namespaces, no iptables) the test fails when PGTOPO_REQUIRE_ALL=1, else
//! says SKIPPED.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgtopo::sandbox::delay::DelayProxy;
use support::faults::{Checker, Cut, Frozen, FullWal, Rules, Target};
use support::inject::{apply_injecting, Applied};
use support::netns::{self, Hosts};
use support::scenario::{self, assert_follows, catch_up, in_recovery};
use support::{show, TestCluster, Topology};

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const TIMEOUT: Duration = Duration::from_secs(5);

struct Env {
    c: TestCluster,
    hosts: Arc<Hosts>,
    topo: Topology,
    /// For the candidate's pg_wal; mounted before the namespaces' processes start, unmounted
    /// after the cluster's servers have stopped (fields drop in order).
    full_wal: FullWal,
}

impl Env {
    fn ns(&self, node: &str) -> String {
        self.hosts.host(self.c.node(node).index).ns.clone()
    }

    fn addr(&self, node: &str) -> String {
        self.c.node(node).host.clone()
    }

    /// The test's own address on the bridge (pgtopo's, as the nodes see it).
    fn pgtopo_addr(&self) -> String {
        format!("10.231.{}.254", self.hosts.net)
    }

    fn targets(&self) -> Vec<Target> {
        self.c
            .nodes()
            .iter()
            .map(|n| Target {
                name: n.name.clone(),
                host: n.host.clone(),
                port: n.port,
                password: self.c.password().map(str::to_string),
            })
            .collect()
    }

    /// Declare `primary` the primary and the others its standbys.
    fn declare(&mut self, primary: &str) {
        self.topo.role(primary, "primary", None);
        for s in NODES.iter().filter(|n| **n != primary) {
            self.topo.role(s, "standby", Some(primary));
        }
        self.c.write_topology(&self.topo);
    }

    fn primary(&self) -> String {
        NODES
            .iter()
            .find(|n| self.c.try_psql(n, "SELECT pg_is_in_recovery()").as_deref() == Ok("f"))
            .expect("a primary")
            .to_string()
    }

    /// `primary` is the primary, the others follow it and caught up, `plan` is empty.
    fn converged(&self, primary: &str) {
        assert_eq!(
            in_recovery(&self.c, primary),
            "f",
            "{primary} is the primary"
        );
        for s in NODES.iter().filter(|n| **n != primary) {
            assert_follows(&self.c, s, primary);
            catch_up(&self.c, s, primary);
        }
        scenario::assert_no_changes(&self.c);
    }

    /// After a healed failover fault: the next apply converges on `primary`.
    fn heal_failover(&self, primary: &str) {
        let out = self.c.pgtopo(&["apply", "--auto-approve"]);
        assert!(
            out.status.success(),
            "failover after healing: {}",
            show(&out)
        );
        self.converged(primary);
    }

    /// Once replication has recovered from the healed fault (every standby streams from the
    /// current primary again and has caught up), the first apply converges on `primary`.
    fn heal_and_converge(&self, primary: &str) {
        let now = self.primary();
        for s in NODES.iter().filter(|n| **n != now) {
            self.c.wait_for_sql_within(
                s,
                "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')",
                "streaming",
                Duration::from_secs(120),
            );
            catch_up(&self.c, s, &now);
        }
        let out = self.c.pgtopo(&["apply", "--auto-approve"]);
        assert!(out.status.success(), "apply after healing: {}", show(&out));
        self.converged(primary);
    }
}

/// A failover to `cand` after a crash of the primary `crashed`, with `cut_node`'s host cut off
/// from pgtopo (REJECT) when a step of kind `at` starts; the sampler checks that never two
/// primaries answer. The cut is healed when this returns.
fn failover_cut(env: &mut Env, cand: &str, crashed: &str, at: &str, cut_node: &str) -> Applied {
    env.c.crash(crashed);
    env.declare(cand);
    let chk = Checker::sampling(env.targets());
    let (ns, me) = (env.ns(cut_node), env.pgtopo_addr());
    let (a, cut) = apply_injecting(&env.c, at, || Rules::cut(&ns, &[&me], Cut::Reject));
    assert!(cut.is_some(), "the failover has a {at} step: {}", a.text);
    chk.finish(Duration::MAX);
    a
}

/// The PID of a node's postmaster (first line of postmaster.pid).
fn postmaster_pid(c: &TestCluster, node: &str) -> i32 {
    let f =
        std::fs::read_to_string(c.node(node).data_dir.join("postmaster.pid")).expect("pid file");
    f.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a PID")
}

fn walsender_pids(c: &TestCluster, node: &str) -> Vec<i32> {
    c.psql(
        node,
        "SELECT string_agg(pid::text, ' ') FROM pg_stat_replication",
    )
    .split_whitespace()
    .filter_map(|p| p.parse().ok())
    .collect()
}

fn setup() -> Env {
    let full_wal = FullWal::mount("postgres");
    let (hosts, c, mut topo) = netns::cluster_on_hosts(&NODES);
    topo.extra_yaml(&format!("switchover: {{timeout: {}s}}", TIMEOUT.as_secs()));
    let mut env = Env {
        c,
        hosts,
        topo,
        full_wal,
    };
    env.declare("n1");
    let out = env.c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "bootstrap: {}", show(&out));
    env.converged("n1");
    env
}

/// Every case ends within this bound of unavailable writes.
fn bound() -> Duration {
    TIMEOUT + Duration::from_secs(5)
}

/// One row of the report: case, what pgtopo did, longest write gap.
fn report(rows: &mut Vec<String>, case: &str, a: &Applied, gap: Duration) {
    let did = if a.ok {
        "apply succeeded".to_string()
    } else {
        let l = a
            .text
            .lines()
            .find(|l| l.contains("rolled back") || l.contains("Error") || l.contains("error"))
            .unwrap_or("failed")
            .trim()
            .to_string();
        l
    };
    rows.push(format!(
        "{case}: {} ms writes unavailable; {did}",
        gap.as_millis()
    ));
}

#[test]
fn switchovers_under_faults_lose_nothing_and_come_back_in_time() {
    let missing = netns::unavailable().or_else(|| {
        (!std::path::Path::new("/usr/sbin/iptables").exists()
            && !std::path::Path::new("/sbin/iptables").exists())
        .then(|| "iptables is not installed".to_string())
    });
    if let Some(why) = missing {
        support::missing_prerequisite("switchovers_under_faults", &why);
        return;
    }
    let t0 = Instant::now();
    let mut env = setup();
    let mut rows = Vec::new();

    // 1. DROP between n1 and both standbys when the stop starts: the fast shutdown hangs on
    //    its walsenders; escalation; n1 comes back as primary.
    {
        env.declare("n2");
        let chk = Checker::start(env.targets());
        let (ns, peers) = (env.ns("n1"), [env.addr("n2"), env.addr("n3")]);
        let (a, cut) = apply_injecting(&env.c, "stop", || {
            Rules::cut(&ns, &[&peers[0], &peers[1]], Cut::Drop)
        });
        assert!(cut.is_some(), "the switchover has a stop step: {}", a.text);
        assert!(!a.ok, "the apply fails: {}", a.text);
        assert!(
            a.text.contains("rolled back") && a.text.contains("writes were unavailable for"),
            "{}",
            a.text
        );
        assert_eq!(env.primary(), "n1", "n1 is primary again");
        let gap = chk.finish(bound());
        report(&mut rows, "drop n1<->standbys at the stop", &a, gap);
        drop(cut);
        env.heal_and_converge("n2");
    }

    // 2. REJECT between n2 (old primary) and n1 (candidate) when the stop starts: the shutdown
    //    finishes, n1 never gets the shutdown checkpoint; the wait rolls back.
    {
        env.declare("n1");
        let chk = Checker::start(env.targets());
        let (ns, peer) = (env.ns("n2"), env.addr("n1"));
        let (a, cut) = apply_injecting(&env.c, "stop", || Rules::cut(&ns, &[&peer], Cut::Reject));
        assert!(cut.is_some(), "{}", a.text);
        assert!(!a.ok && a.text.contains("rolled back"), "{}", a.text);
        assert_eq!(env.primary(), "n2", "n2 is primary again");
        let gap = chk.finish(bound());
        report(&mut rows, "reject n2<->candidate n1 at the stop", &a, gap);
        drop(cut);
        env.heal_and_converge("n1");
    }

    // 3. 5 % loss between n1 and the candidate n2 for the whole switchover.
    {
        env.declare("n2");
        let chk = Checker::start(env.targets());
        let cut = Rules::cut(&env.ns("n1"), &[&env.addr("n2")], Cut::Loss);
        let (a, _) = apply_injecting(&env.c, "none", || ());
        let gap = chk.finish(bound());
        report(
            &mut rows,
            "5% loss n1<->candidate n2, whole switchover",
            &a,
            gap,
        );
        drop(cut);
        if a.ok {
            env.converged("n2");
        } else {
            env.heal_and_converge("n2");
        }
    }

    // 4. REJECT between pgtopo and the candidate n1, between plan and apply: nothing stops.
    {
        env.declare("n1");
        let out = env.c.pgtopo(&["plan"]);
        assert!(out.status.success(), "plan: {}", show(&out));
        let chk = Checker::start(env.targets());
        let cut = Rules::cut(&env.ns("n1"), &[&env.pgtopo_addr()], Cut::Reject);
        let (a, _) = apply_injecting(&env.c, "none", || ());
        assert!(!a.ok, "the apply cannot reach n1: {}", a.text);
        drop(cut);
        assert_eq!(env.primary(), "n2", "n2 is still primary");
        let gap = chk.finish(Duration::from_secs(2));
        report(
            &mut rows,
            "reject pgtopo<->candidate n1, before apply",
            &a,
            gap,
        );
        env.heal_and_converge("n1");
    }

    // 5. n1's walsenders frozen (SIGSTOP) when the stop starts: the fast shutdown waits on
    //    them; the escalation ends them and n1 comes back.
    {
        env.declare("n2");
        let chk = Checker::start(env.targets());
        let pids = walsender_pids(&env.c, "n1");
        assert!(!pids.is_empty(), "n1 has walsenders");
        let (a, frozen) = apply_injecting(&env.c, "stop", || Frozen::new(pids));
        assert!(frozen.is_some(), "{}", a.text);
        drop(frozen);
        let gap = chk.finish(bound());
        report(&mut rows, "frozen walsenders of n1 at the stop", &a, gap);
        if a.ok {
            env.converged("n2");
        } else {
            assert_eq!(env.primary(), "n1", "{}", a.text);
            env.heal_and_converge("n2");
        }
    }

    // 6. 50 ms each way between the candidate n1 and the primary n2 (n1's WAL receiver goes
    //    through a delaying proxy): the switchover succeeds, a few round trips longer.
    {
        env.declare("n1");
        let n2 = env.c.node("n2").clone();
        let to = format!("{}:{}", n2.host, n2.port).parse().expect("address");
        let at = format!("{}:0", env.pgtopo_addr()).parse().expect("address");
        let proxy = DelayProxy::start(at, to, Duration::from_millis(50)).expect("proxy");
        let rule = Rules::redirect(&env.ns("n1"), &n2.host, n2.port, proxy.addr());
        env.c.psql(
            "n2",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'n1'",
        );
        env.c.wait_for_sql_within(
            "n2",
            &format!(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'n1' \
                 AND client_addr = '{}' AND state = 'streaming'",
                env.pgtopo_addr()
            ),
            "1",
            Duration::from_secs(30),
        );
        let chk = Checker::start(env.targets());
        let (a, _) = apply_injecting(&env.c, "none", || ());
        assert!(a.ok, "the switchover succeeds over 100 ms RTT: {}", a.text);
        let gap = chk.finish(bound());
        report(&mut rows, "50 ms each way n2->candidate n1", &a, gap);
        drop(rule);
        drop(proxy);
        env.converged("n1");
    }

    // 7. The old primary n1's postmaster frozen (SIGSTOP) once the candidate has caught up:
    //    the stop is refused (a frozen postmaster would act on it only when continued), writes
    //    go on. If the freeze comes after pgtopo's look, the stop waits its bound and fails;
    //    n1 then shuts down when continued, and the next apply finishes the switchover.
    {
        env.declare("n2");
        let chk = Checker::start(env.targets());
        let pm = postmaster_pid(&env.c, "n1");
        let (a, frozen) = apply_injecting(&env.c, "catch_up:done", || Frozen::new(vec![pm]));
        assert!(frozen.is_some(), "{}", a.text);
        assert!(!a.ok, "{}", a.text);
        let refused = a.text.contains("stopped by a signal");
        drop(frozen);
        if refused {
            assert_eq!(env.primary(), "n1", "{}", a.text);
            let gap = chk.finish(bound());
            report(
                &mut rows,
                "frozen postmaster of n1 before the stop",
                &a,
                gap,
            );
            env.heal_and_converge("n2");
        } else {
            drop(chk);
            report(
                &mut rows,
                "frozen postmaster of n1 after the look (stop queued)",
                &a,
                Duration::ZERO,
            );
            let pid_file = env.c.node("n1").data_dir.join("postmaster.pid");
            let deadline = Instant::now() + Duration::from_secs(30);
            while pid_file.exists() {
                assert!(
                    Instant::now() < deadline,
                    "n1 never acted on its queued stop"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let out = env.c.pgtopo(&["apply", "--auto-approve"]);
            assert!(out.status.success(), "apply after the thaw: {}", show(&out));
            env.converged("n2");
        }
    }

    // 8. Failover: n2 (primary) crashes; the topology makes n1 primary with consent. pgtopo
    //    loses n2's host when it fences or stops n2: the apply stops before the promotion, n1
    //    stays a standby.
    env.topo.extra_yaml("failover: {allow: true}");
    let a = failover_cut(&mut env, "n1", "n2", "fence|stop", "n2");
    assert!(!a.ok, "the apply cannot fence n2: {}", a.text);
    assert_eq!(
        in_recovery(&env.c, "n1"),
        "t",
        "n1 is not promoted: {}",
        a.text
    );
    report(
        &mut rows,
        "failover: pgtopo cut off from old primary n2 at its fencing",
        &a,
        Duration::ZERO,
    );
    env.heal_failover("n1");

    // 9. Failover: n1 (primary) crashes; n2 is the candidate and becomes unreachable for pgtopo
    //    when its promotion starts. The step fails at its bound; never two primaries; after
    //    healing the next apply converges.
    let a = failover_cut(&mut env, "n2", "n1", "promote", "n2");
    report(
        &mut rows,
        "failover: pgtopo cut off from candidate n2 at its promotion",
        &a,
        Duration::ZERO,
    );
    env.heal_failover("n2");

    // 10. The candidate n1's pg_wal full (a small tmpfs, filled): a promotion on it would PANIC
    //     writing the new timeline; the switchover's catch-up refuses before anything is
    //     stopped. Once space is freed, the next apply converges.
    {
        let data = env.c.node("n1").data_dir.clone();
        env.c.stop("n1", "fast");
        let wal = &env.full_wal;
        wal.take(&data, &env.c.os_user, 64);
        env.c.start("n1");
        env.c.wait_streaming("n1");
        wal.fill();
        env.declare("n1");
        let chk = Checker::start(env.targets());
        let (a, _) = apply_injecting(&env.c, "none", || ());
        assert!(
            !a.ok && a.text.contains("promoting it needs at least"),
            "n1 has no room to promote: {}",
            a.text
        );
        assert_eq!(env.primary(), "n2", "nothing was stopped: {}", a.text);
        let gap = chk.finish(Duration::from_secs(2));
        report(&mut rows, "candidate n1's pg_wal full", &a, gap);
        env.full_wal.free();
        env.heal_and_converge("n1");
    }

    eprintln!(
        "faults (bound {} ms), total {:.1} s:\n  {}",
        bound().as_millis(),
        t0.elapsed().as_secs_f64(),
        rows.join("\n  ")
    );
}
