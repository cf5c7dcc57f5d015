//! Switchovers whose nodes misbehave at the worst moment, against real PostgreSQL servers:
//! - the old primary freezes (SIGSTOP) right after it was asked to shut down: the apply fails
//!   within `switchover.timeout`, nothing is promoted, and once the old primary has finished its
//!   shutdown the next apply promotes the candidate only when it has replayed past the old
//!   primary's shutdown checkpoint (else it does not claim a finished switchover);
//! - the candidate dies right after the old primary was asked to shut down: the wait for its
//!   replay gives up within seconds (not at `switchover.timeout`) and the old primary is started
//!   again as primary.

mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{postmaster_pid, show, TestCluster};

/// Two nodes, n1 primary and n2 its standby, converged by pgtopo, with a table of 100 rows and
/// the topology now declaring n2 primary with `switchover.timeout`.
fn switchover_pending(timeout: &str) -> TestCluster {
    let c = support::scenario::primary_and_standby();
    let mut topo = c.topology();
    topo.extra_yaml(&format!("switchover: {{timeout: {timeout}}}"));
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    c.psql(
        "n1",
        "CREATE TABLE rows(i int PRIMARY KEY); INSERT INTO rows SELECT generate_series(1, 100)",
    );
    c.wait_replayed("n2", "n1");
    topo.role("n2", "primary", None)
        .role("n1", "standby", Some("n2"));
    c.write_topology(&topo);
    c
}

/// `pgtopo apply --auto-approve` in the background; it ends with the test (killed on drop).
struct Apply(Child);

impl Apply {
    fn start(c: &TestCluster) -> Apply {
        let child = c
            .pgtopo_command(&["apply", "--auto-approve"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgtopo runs");
        Apply(child)
    }

    /// Start the apply and return once n1 (the old primary) has received its fast shutdown
    /// request (its log says so).
    fn until_n1_asked_to_stop(c: &TestCluster) -> Apply {
        let log = &c.node("n1").log;
        let offset = log_len(log);
        let apply = Apply::start(c);
        wait_for_log_line(log, offset, "received fast shutdown request");
        apply
    }

    /// Wait for the apply to end (at most `limit`); its exit code and output.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                let mut out = String::new();
                for pipe in [
                    self.0
                        .stdout
                        .take()
                        .map(|p| Box::new(p) as Box<dyn std::io::Read>),
                    self.0
                        .stderr
                        .take()
                        .map(|p| Box::new(p) as Box<dyn std::io::Read>),
                ]
                .into_iter()
                .flatten()
                {
                    let mut p = pipe;
                    p.read_to_string(&mut out).expect("read output");
                }
                return (status.code(), out);
            }
            assert!(
                Instant::now() < deadline,
                "the apply did not end within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Apply {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Processes that the test stopped with SIGSTOP: continued on drop, also when the test fails.
struct Frozen(Vec<i32>);

impl Frozen {
    /// SIGSTOP each process; `None` (and every one of them continued) when one is gone
    /// already: the shutdown ended before the test could freeze it.
    fn freeze(pids: Vec<i32>) -> Option<Frozen> {
        let mut frozen = Frozen(Vec::new());
        for p in pids {
            if kill(Pid::from_raw(p), Signal::SIGSTOP).is_err() {
                return None;
            }
            frozen.0.push(p);
        }
        Some(frozen)
    }

    fn thaw(&mut self) {
        for p in self.0.drain(..) {
            let _ = kill(Pid::from_raw(p), Signal::SIGCONT);
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        self.thaw();
    }
}

/// The children of `pid` with their command lines (process titles).
fn children(pid: i32) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(pid) {
            let cmd = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
            out.push((child, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// Wait (at most 30 s, polling every millisecond) until `line` appears in the log after
/// `offset` bytes.
fn wait_for_log_line(log: &Path, offset: usize, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        if String::from_utf8_lossy(&text[offset.min(text.len())..]).contains(line) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{line:?} never appeared in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn log_len(log: &Path) -> usize {
    std::fs::metadata(log)
        .map(|m| m.len() as usize)
        .unwrap_or(0)
}

/// pg_controldata's "Latest checkpoint location" and state of a stopped node.
fn control(c: &TestCluster, node: &str) -> (String, String) {
    let bin = std::env::var("PGTOPO_TEST_BIN_DIR")
        .unwrap_or_else(|_| support::DEFAULT_BIN_DIR.to_string());
    let out = Command::new(Path::new(&bin).join("pg_controldata"))
        .arg(&c.node(node).data_dir)
        .env("LC_ALL", "C")
        .output()
        .expect("pg_controldata");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (
        field("Latest checkpoint location:"),
        field("Database cluster state:"),
    )
}

/// A pending switchover whose apply has asked n1 to stop, with n1's postmaster and checkpointer
/// frozen (SIGSTOP) in that shutdown. The freeze follows the shutdown request by the time the
/// test takes to see its log line; a fast shutdown after the stop's CHECKPOINT can end within
/// that time on a loaded machine, and then the attempt (`None`) is repeated on a new cluster.
fn frozen_in_its_shutdown(attempt: u32) -> Option<(TestCluster, Apply, Frozen, Instant)> {
    let c = switchover_pending("5s");
    // The processes to freeze are found before the apply: a look at /proc after the request
    // would come later still.
    let pm = postmaster_pid(&c.node("n1").data_dir).expect("n1 runs");
    let checkpointer: Vec<i32> = children(pm)
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("checkpointer"))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(checkpointer.len(), 1, "{:?}", children(pm));
    let t0 = Instant::now();
    let apply = Apply::until_n1_asked_to_stop(&c);
    match Frozen::freeze([vec![pm], checkpointer].concat()) {
        Some(frozen) => Some((c, apply, frozen, t0)),
        None => {
            let (code, out) = apply.finish(Duration::from_secs(60));
            eprintln!("attempt {attempt}: n1's shutdown ended before the freeze (apply exit {code:?}); again on a new cluster:\n{out}");
            None
        }
    }
}

#[test]
fn old_primary_frozen_in_its_shutdown_then_resumed_is_never_promoted_past() {
    let (c, apply, mut frozen, t0) = (1..=5)
        .find_map(frozen_in_its_shutdown)
        .expect("n1's fast shutdown ended before the test could freeze it, 5 times");
    let n1 = c.node("n1").clone();

    let (code, out) = apply.finish(Duration::from_secs(60));
    let took = t0.elapsed();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        took < Duration::from_secs(20),
        "the stop gives up at switchover.timeout (5 s), not at 120 s: {took:?}"
    );
    assert!(
        out.contains("n1 to stop") && out.contains("nothing was promoted"),
        "{out}"
    );
    assert_eq!(c.psql("n2", "SELECT pg_is_in_recovery()"), "t", "{out}");

    // n1 resumes and finishes its clean shutdown.
    frozen.thaw();
    let deadline = Instant::now() + Duration::from_secs(60);
    while n1.data_dir.join("postmaster.pid").exists() {
        assert!(Instant::now() < deadline, "n1 never finished its shutdown");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (checkpoint, state) = control(&c, "n1");
    assert_eq!(state, "shut down");
    let replayed_past = c.psql(
        "n2",
        &format!("SELECT pg_last_wal_replay_lsn() > '{checkpoint}'::pg_lsn"),
    ) == "t";
    eprintln!("n1 stopped at checkpoint {checkpoint}; n2 replayed past it: {replayed_past}; first apply ({took:?}): {out}");

    // The plan finishes the switchover only when n2 has replayed past n1's checkpoint record.
    let plan = c.pgtopo(&["plan"]);
    let text = show(&plan);
    assert_eq!(
        text.contains("finishing the switchover"),
        replayed_past,
        "n2 replayed past {checkpoint}: {replayed_past}; {text}"
    );
    if !replayed_past {
        // Not proven: never a promotion short of the checkpoint without consent.
        assert!(!plan.status.success(), "{text}");
        return;
    }
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(c.psql("n2", "SELECT pg_is_in_recovery()"), "f");
    c.wait_streaming("n1");
    assert_eq!(c.psql("n2", "SELECT count(*) FROM rows"), "100");
    c.psql("n2", "INSERT INTO rows VALUES (101)");
    c.wait_replayed("n1", "n2");
    assert_eq!(c.psql("n1", "SELECT count(*) FROM rows"), "101");
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn candidate_dying_after_the_old_primary_stops_rolls_back_within_seconds() {
    let c = switchover_pending("60s");
    let n2 = c.node("n2").clone();
    let pm2 = postmaster_pid(&n2.data_dir).expect("n2 runs");
    // The startup process first (it replays), then the postmaster and the rest.
    let mut victims: Vec<(i32, String)> = children(pm2);
    victims.sort_by_key(|(_, cmd)| !cmd.contains("startup"));
    let t0 = Instant::now();
    let apply = Apply::until_n1_asked_to_stop(&c);
    for p in victims.iter().map(|(p, _)| *p).take(1).chain([pm2]) {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    for (p, _) in &victims {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    let (code, out) = apply.finish(Duration::from_secs(120));
    let took = t0.elapsed();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        took < Duration::from_secs(20),
        "the rollback starts when n2 is gone, not at switchover.timeout (60 s): {took:?}; {out}"
    );
    assert!(
        out.contains("n2") && out.contains("rolled back"),
        "says why it gave up and that it rolled back: {out}"
    );
    assert_eq!(c.psql("n1", "SELECT pg_is_in_recovery()"), "f");
    c.psql("n1", "INSERT INTO rows VALUES (101)");
    assert_eq!(c.psql("n1", "SELECT count(*) FROM rows"), "101");
    eprintln!("apply ended after {took:?}: {out}");
}
