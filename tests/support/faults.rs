//! Faults for tests/faults.rs, each undone by its guard's Drop (also when the test panics):
//! - [`Rules`]: iptables rules in a namespace the test created (support/netns.rs) cutting it off
//!   from some addresses — `DROP` (a partition that sends no reset), `REJECT --reject-with
//!   tcp-reset`, or 5 % random loss (`-m statistic`). Only that namespace's own chains are
//!   touched; the rules go with `iptables -D`, and with the namespace at the latest.
//! - [`Rules::redirect`]: a DNAT rule sending a namespace's new connections to one address
//!   through a proxy instead (`pgtopo::sandbox::delay::DelayProxy`: 50 ms between two nodes).
//! - [`Frozen`]: processes stopped with SIGSTOP, continued with SIGCONT.
//! - [`FullWal`]: a node's pg_wal on a small tmpfs of its own, filled to the last byte (a
//!   standby that can create no WAL segment); unmounted on drop.
//! - [`Checker`]: a writer that records every acknowledged write (through a multi-host conninfo
//!   that finds the primary) and a sampler that asks every node `pg_is_in_recovery()` every
//!   20 ms, for "nothing acknowledged lost", "never two primaries", "writes back in time".

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a cut behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Packets vanish: no reset, connections stall (iptables DROP).
    Drop,
    /// TCP connections are reset (REJECT --reject-with tcp-reset).
    Reject,
    /// 5 % of the packets vanish (iptables statistic).
    Loss,
}

impl Cut {
    fn target(self) -> Vec<&'static str> {
        match self {
            Cut::Drop => vec!["-j", "DROP"],
            Cut::Reject => vec!["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
            Cut::Loss => vec![
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                "0.05",
                "-j",
                "DROP",
            ],
        }
    }
}

/// iptables rules in one namespace; deleted on drop.
pub struct Rules {
    ns: String,
    rules: Vec<Vec<String>>,
}

fn iptables(ns: &str, op: &str, rule: &[String]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "iptables", op])
        .args(rule)
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Rules {
    /// Cut namespace `ns` off from `peers` in both directions.
    pub fn cut(ns: &str, peers: &[&str], how: Cut) -> Rules {
        let mut r = Rules {
            ns: ns.to_string(),
            rules: Vec::new(),
        };
        for p in peers {
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                let rule: Vec<String> = [chain, dir, p]
                    .into_iter()
                    .chain(how.target())
                    .map(str::to_string)
                    .collect();
                iptables(ns, "-I", &rule).unwrap_or_else(|e| panic!("iptables in {ns}: {e}"));
                r.rules.push(rule);
            }
        }
        r
    }
}

impl Rules {
    /// In namespace `ns`, send new TCP connections to `dest:port` to `to` instead (iptables nat
    /// OUTPUT DNAT). Connections open before are not moved.
    pub fn redirect(ns: &str, dest: &str, port: u16, to: std::net::SocketAddr) -> Rules {
        let port = port.to_string();
        let to = to.to_string();
        let rule: Vec<String> = [
            "OUTPUT",
            "-t",
            "nat",
            "-p",
            "tcp",
            "-d",
            dest,
            "--dport",
            &port,
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ]
        .into_iter()
        .map(str::to_string)
        .collect();
        iptables(ns, "-I", &rule).unwrap_or_else(|e| panic!("iptables nat in {ns}: {e}"));
        Rules {
            ns: ns.to_string(),
            rules: vec![rule],
        }
    }
}

impl Drop for Rules {
    fn drop(&mut self) {
        for rule in &self.rules {
            if let Err(e) = iptables(&self.ns, "-D", rule) {
                eprintln!("removing {rule:?} in {}: {e}", self.ns);
            }
        }
    }
}

/// Processes stopped with SIGSTOP; SIGCONT on drop.
pub struct Frozen {
    pids: Vec<i32>,
}

impl Frozen {
    pub fn new(pids: Vec<i32>) -> Frozen {
        for p in &pids {
            signal(*p, nix::sys::signal::Signal::SIGSTOP);
        }
        Frozen { pids }
    }
}

fn signal(pid: i32, s: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s);
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for p in &self.pids {
            signal(*p, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// A node the checker watches.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// The superuser's password (None when the cluster trusts).
    pub password: Option<String>,
}

/// What the checker saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Ids of acknowledged writes, in order, with when they were acknowledged.
    pub acked: Vec<(i64, Instant)>,
    /// Sampling rounds in which more than one node answered as a primary.
    pub two_primaries: Vec<String>,
    /// The last error of the writer, for messages.
    pub last_error: String,
}

/// Writer and sampler threads; see the module docs.
pub struct Checker {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    threads: Vec<JoinHandle<()>>,
    targets: Vec<Target>,
    started: Instant,
}

fn config(t: &[Target], timeout: Duration) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    for n in t {
        c.host(&n.host).port(n.port);
    }
    if let Some(pw) = t.first().and_then(|n| n.password.as_deref()) {
        c.password(pw);
    }
    c.user("postgres")
        .dbname("postgres")
        .connect_timeout(timeout)
        .target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    c
}

async fn connect(t: &[Target], timeout: Duration) -> Option<tokio_postgres::Client> {
    let cfg = config(t, timeout);
    let conn = tokio::time::timeout(timeout * 2, cfg.connect(tokio_postgres::NoTls));
    let (client, conn) = conn.await.ok()?.ok()?;
    tokio::spawn(conn);
    Some(client)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

impl Checker {
    /// Start writing to table `faults` (created when missing, on the primary among `targets`)
    /// and sampling every target.
    pub fn start(targets: Vec<Target>) -> Checker {
        let mut c = Checker::sampling(targets);
        let writer = {
            let (stop, seen, t) = (c.stop.clone(), c.seen.clone(), c.targets.clone());
            std::thread::spawn(move || runtime().block_on(write_loop(t, stop, seen)))
        };
        c.threads.push(writer);
        c.wait_first_write();
        c
    }

    /// Only the sampler (a failover after a crash: writes the crashed primary acknowledged
    /// alone are lost by consent); [`Checker::finish`] then checks "never two primaries".
    pub fn sampling(targets: Vec<Target>) -> Checker {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sampler = {
            let (stop, seen, t) = (stop.clone(), seen.clone(), targets.clone());
            std::thread::spawn(move || runtime().block_on(sample_loop(t, stop, seen)))
        };
        Checker {
            stop,
            seen,
            threads: vec![sampler],
            targets,
            started: Instant::now(),
        }
    }

    fn wait_first_write(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.seen.lock().unwrap().acked.is_empty() {
            assert!(
                Instant::now() < deadline,
                "no write acknowledged in 30 s: {}",
                self.seen.lock().unwrap().last_error
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stop, then check: every acknowledged write is on the primary, never two primaries, no
    /// gap between two acknowledged writes longer than `bound`. Returns the longest gap.
    pub fn finish(mut self, bound: Duration) -> Duration {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("checker thread");
        }
        let seen = std::mem::take(&mut *self.seen.lock().unwrap());
        assert!(
            seen.two_primaries.is_empty(),
            "two primaries answered: {:?}",
            seen.two_primaries
        );
        if seen.acked.is_empty() {
            return Duration::ZERO;
        }
        let mut last = self.started;
        let mut gap = Duration::ZERO;
        for (_, at) in &seen.acked {
            gap = gap.max(at.duration_since(last));
            last = *at;
        }
        assert!(
            gap <= bound,
            "writes were unavailable for {gap:?} (bound {bound:?}); last writer error: {}",
            seen.last_error
        );
        let ids: Vec<i64> = seen.acked.iter().map(|(i, _)| *i).collect();
        let targets = self.targets.clone();
        let missing = runtime().block_on(async move {
            let c = connect(&targets, Duration::from_secs(5))
                .await
                .expect("the primary answers");
            let rows = c
                .query(
                    "SELECT count(*) FROM unnest($1::bigint[]) a(id) \
                     WHERE NOT EXISTS (SELECT 1 FROM faults f WHERE f.id = a.id)",
                    &[&ids],
                )
                .await
                .expect("count the missing writes");
            rows[0].get::<_, i64>(0)
        });
        assert_eq!(
            missing,
            0,
            "{missing} of {} acknowledged writes are lost",
            seen.acked.len()
        );
        gap
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

async fn write_loop(t: Vec<Target>, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let mut client: Option<tokio_postgres::Client> = None;
    let mut id: i64 = 0;
    let mut created = false;
    let limit = Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        let Some(c) = client.as_ref().filter(|c| !c.is_closed()) else {
            client = connect(&t, Duration::from_millis(500)).await;
            if client.is_none() {
                // Pacing of a retry loop (not a wait for a condition): a refused connection
                // returns at once.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            continue;
        };
        if !created {
            let sql = "CREATE TABLE IF NOT EXISTS faults(id bigint PRIMARY KEY, at timestamptz DEFAULT now())";
            created = matches!(
                tokio::time::timeout(limit, c.batch_execute(sql)).await,
                Ok(Ok(()))
            );
            if !created {
                client = None;
            }
            continue;
        }
        let next = id + 1;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&next];
        let ins = c.execute(
            "INSERT INTO faults(id) VALUES ($1) ON CONFLICT DO NOTHING",
            &params,
        );
        match tokio::time::timeout(limit, ins).await {
            Ok(Ok(_)) => {
                id = next;
                seen.lock().unwrap().acked.push((id, Instant::now()));
            }
            Ok(Err(e)) => {
                // The statement was not acknowledged: its id may or may not be there; the next
                // write takes a new one.
                id = next;
                seen.lock().unwrap().last_error = e.to_string();
                client = None;
            }
            Err(_) => {
                id = next;
                seen.lock().unwrap().last_error = "no answer within 1 s".into();
                client = None;
            }
        }
    }
}

async fn is_primary(n: &Target) -> bool {
    let t = std::slice::from_ref(n);
    let mut c = config(t, Duration::from_millis(300));
    c.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::Any);
    let look = async {
        let (client, conn) = c.connect(tokio_postgres::NoTls).await.ok()?;
        tokio::spawn(conn);
        let rows = client.query("SELECT pg_is_in_recovery()", &[]).await.ok()?;
        Some(!rows[0].get::<_, bool>(0))
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(600), look).await,
        Ok(Some(true))
    )
}

async fn sample_loop(t: Vec<Target>, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    while !stop.load(Ordering::SeqCst) {
        let round = futures::future::join_all(t.iter().map(is_primary)).await;
        let primaries: Vec<&str> = t
            .iter()
            .zip(&round)
            .filter(|(_, p)| **p)
            .map(|(n, _)| n.name.as_str())
            .collect();
        if primaries.len() > 1 {
            seen.lock().unwrap().two_primaries.push(primaries.join("+"));
        }
        // Sampling pace.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small tmpfs for a node's pg_wal (pg_wal becomes a symlink to it), which
/// [`FullWal::fill`] fills to the last byte and [`FullWal::free`] empties again. Mounted before
/// the namespaces' processes start: `ip netns exec` gives each its own copy of the mount table,
/// made when it starts, and mounts made later may not propagate into it. Unmounted on drop
/// (lazily: a server may still hold files there).
pub struct FullWal {
    mount: std::path::PathBuf,
    filler: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn sh(what: &str, cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl FullWal {
    /// Mount an empty tmpfs owned by `os_user` (sized later, by [`FullWal::take`]).
    pub fn mount(os_user: &str) -> FullWal {
        let dir = tempfile::Builder::new()
            .prefix("pgtopo-walfs-")
            .tempdir()
            .expect("tempdir");
        super::os::set_mode(dir.path(), 0o755);
        let mount = dir.path().join("pg_wal");
        std::fs::create_dir(&mount).expect("mount point");
        let u = nix::unistd::User::from_name(os_user)
            .ok()
            .flatten()
            .expect("os user");
        let opts = format!("size=1g,mode=0700,uid={},gid={}", u.uid, u.gid);
        sh(
            "mount tmpfs",
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
                .arg(&mount),
        );
        FullWal {
            filler: mount.join("filler"),
            mount,
            _dir: dir,
        }
    }

    /// Move `data_dir/pg_wal` (of a stopped node run by `os_user`) onto the tmpfs, then size
    /// the tmpfs to what it holds plus `room_mb` MiB.
    pub fn take(&self, data_dir: &std::path::Path, os_user: &str, room_mb: u64) {
        let wal = data_dir.join("pg_wal");
        let copy_from = format!("{}/.", wal.display());
        sh(
            "copy pg_wal",
            Command::new("cp").args(["-a", &copy_from]).arg(&self.mount),
        );
        std::fs::remove_dir_all(&wal).expect("old pg_wal removed");
        std::os::unix::fs::symlink(&self.mount, &wal).expect("pg_wal symlink");
        sh(
            "chown pg_wal",
            Command::new("chown")
                .args(["-h", &format!("{os_user}:")])
                .arg(&wal),
        );
        let st = nix::sys::statvfs::statvfs(&self.mount).expect("statvfs");
        let used_mb = (st.blocks() - st.blocks_free()) * st.fragment_size() / (1 << 20);
        sh(
            "resize tmpfs",
            Command::new("mount")
                .args(["-o", &format!("remount,size={}m", used_mb + room_mb)])
                .arg(&self.mount),
        );
    }

    /// Fill the file system to the last byte.
    pub fn fill(&self) {
        // dd ends with "No space left on device" (exit 1): that is the point.
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", self.filler.display()))
            .args(["bs=1M", "status=none"])
            .output();
        let free = nix::sys::statvfs::statvfs(&self.mount).expect("statvfs");
        assert_eq!(free.blocks_available(), 0, "the tmpfs is full");
    }

    /// Remove the filler.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("filler removed");
    }
}

impl Drop for FullWal {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}
