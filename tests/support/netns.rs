//! Hosts of their own for the SSH scenario tests: one network namespace per node, each with its
//! own address and its own sshd, so that pgtopo (in the test's namespace) reaches a node only
//! through its SSH port and its PostgreSQL port.
//!
//! Layout, for a test process with PID `P` and a free subnet `10.231.N.0/24` (`N` claimed with a
//! file `/tmp/pgtopo-test-ports/net-N` holding the claimant's PID, taken over when that process
//! is gone):
//!
//! ```text
//!   root namespace: bridge pgtb<P>, 10.231.N.254/24 (pgtopo, psql of the tests)
//!     ├─ veth pgtv<P>h1 ── namespace pgt<P>h1: eth0 10.231.N.1/24, lo; sshd :2222, postgres of node 1
//!     ├─ veth pgtv<P>h2 ── namespace pgt<P>h2: eth0 10.231.N.2/24, lo; sshd :2222, postgres of node 2
//!     └─ …
//! ```
//!
//! - [`cluster_on_hosts_with_bastion`]: the last host's sshd moves off the bridge onto a link of
//!   its own to the host before it (`10.232.N.0/30`: `.1` there, `.2` the hidden host), so it is
//!   reached only through that host's sshd (`ssh.jump`), whose key and known_hosts an ssh config
//!   file in the bastion sshd's directory gives (`ssh.config_file`).
//! - `PGTOPO_TEST_SSH_RTT_MS=N`: a proxy on the bridge address in front of every sshd reached
//!   from the test's namespace adds N ms of round trip
//!   ([`DelayProxy`](pgtopo::sandbox::delay::DelayProxy)); SQL is not delayed.
//! - No route leaves the subnet and no forwarding is set up: namespaces reach each other and the
//!   bridge address, nothing else. Inside a namespace only its sshd (port 2222) and its
//!   PostgreSQL server (its own port) listen, on the namespace's address:
//!   [`Hosts::listeners`] lets a test check that. (No nftables/iptables on these machines; the
//!   namespaces themselves are the isolation.)
//! - Servers are started in a namespace with `ip netns exec NS` (the harness through
//!   [`Placement::run_on`], pgtopo through that namespace's sshd, whose sessions run in it).
//! - Dropped (also on panic): every process still in a namespace is ended by PID (`ip netns
//!   pids`: only what this test started runs there), the namespaces, veths and the bridge are
//!   deleted and the subnet claim released. [`TestCluster`](super::TestCluster) ends its
//!   postmasters before it drops its placement. Namespaces and bridges of a test process that
//!   was killed (its PID gone) are removed by the next [`Hosts::create`].

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::ssh::Sshd;
use super::{Placement, Topology};

/// The sshd port in every namespace.
pub const SSH_PORT: u16 = 2222;

/// Why namespaces cannot be made here (not root, no `ip netns`), or None when they can.
pub fn unavailable() -> Option<String> {
    if !super::is_root() {
        return Some("network namespaces need root".into());
    }
    let probe = format!("pgt{}probe", std::process::id());
    match ip(&["netns", "add", &probe]) {
        Ok(()) => {
            let _ = ip(&["netns", "del", &probe]);
            None
        }
        Err(e) => Some(e),
    }
}

/// One host: its namespace, address and sshd.
pub struct Host {
    pub ns: String,
    pub address: String,
    veth: String,
    pub sshd: Option<Sshd>,
    /// Its sshd is reached only through this host's (`ssh.jump`).
    via: Option<u8>,
    /// A delaying proxy in front of its sshd, on the bridge address (`PGTOPO_TEST_SSH_RTT_MS`).
    front: Option<pgtopo::sandbox::delay::DelayProxy>,
}

/// `count` hosts on one bridge. See the module docs.
pub struct Hosts {
    pub net: u8,
    bridge: Option<String>,
    pub hosts: Vec<Host>,
    claim: PathBuf,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_ok(args: &[&str]) {
    ip(args).unwrap_or_else(|e| panic!("{e}"));
}

/// Claim a /24 in 10.231.0.0/16 no other test process uses: the claim file holds our PID; a
/// claim whose process is gone is taken over.
fn claim_net() -> (u8, PathBuf) {
    let dir = PathBuf::from("/tmp/pgtopo-test-ports");
    let _ = std::fs::create_dir_all(&dir);
    let pid = std::process::id();
    for k in 0..250u32 {
        let net = u8::try_from(1 + (pid + k) % 250).expect("1..=250");
        let claim = dir.join(format!("net-{net}"));
        let holder = std::fs::read_to_string(&claim)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        if holder.is_some_and(super::pid_alive) {
            continue;
        }
        let _ = std::fs::remove_file(&claim);
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&claim);
        if let Ok(mut f) = created {
            use std::io::Write;
            f.write_all(pid.to_string().as_bytes())
                .expect("write claim");
            return (net, claim);
        }
    }
    panic!("no free subnet in 10.231.0.0/16");
}

/// The PID in a name this module gives (`pgt<PID>h<i>`, `pgtb<PID>`), when the name is one.
fn owner(name: &str) -> Option<i32> {
    let rest = name
        .strip_prefix("pgtb")
        .or_else(|| name.strip_prefix("pgt"))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn lines_of(args: &[&str]) -> Vec<String> {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Namespaces and bridges left behind by a test process that was killed (its PID gone).
fn sweep_stale() {
    let dead = |name: &str| owner(name).is_some_and(|p| !super::pid_alive(p));
    for line in lines_of(&["netns", "list"]) {
        let name = line.split_whitespace().next().unwrap_or_default();
        if dead(name) {
            Hosts::end_processes(name);
            let _ = ip(&["netns", "del", name]);
        }
    }
    for line in lines_of(&["-o", "link", "show", "type", "bridge"]) {
        let name = line.split(':').nth(1).unwrap_or_default().trim();
        if dead(name) {
            let _ = ip(&["link", "del", name]);
        }
    }
}

impl Hosts {
    /// `count` namespaces on a new bridge, each with its address and a running sshd.
    pub fn create(count: u8) -> Hosts {
        sweep_stale();
        let pid = std::process::id();
        let (net, claim) = claim_net();
        let mut h = Hosts {
            net,
            bridge: None,
            hosts: Vec::new(),
            claim,
        };
        let bridge = format!("pgtb{pid}");
        ip_ok(&["link", "add", &bridge, "type", "bridge"]);
        h.bridge = Some(bridge.clone());
        ip_ok(&[
            "addr",
            "add",
            &format!("10.231.{net}.254/24"),
            "dev",
            &bridge,
        ]);
        ip_ok(&["link", "set", &bridge, "up"]);
        for i in 1..=count {
            h.add_host(i, &bridge);
        }
        h
    }

    fn add_host(&mut self, i: u8, bridge: &str) {
        let pid = std::process::id();
        let ns = format!("pgt{pid}h{i}");
        let veth = format!("pgtv{pid}h{i}");
        let address = format!("10.231.{}.{i}", self.net);
        ip_ok(&["netns", "add", &ns]);
        self.hosts.push(Host {
            ns: ns.clone(),
            address: address.clone(),
            veth: veth.clone(),
            sshd: None,
            via: None,
            front: None,
        });
        ip_ok(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip_ok(&["link", "set", &veth, "master", bridge]);
        ip_ok(&["link", "set", &veth, "up"]);
        let in_ns = |args: &[&str]| ip_ok(&[vec!["-n", ns.as_str()], args.to_vec()].concat());
        in_ns(&["addr", "add", &format!("{address}/24"), "dev", "eth0"]);
        in_ns(&["link", "set", "eth0", "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        let prefix = ["ip", "netns", "exec", ns.as_str()];
        let sshd = Sshd::start_on(&prefix, &address, SSH_PORT);
        self.hosts.last_mut().expect("pushed").sshd = Some(sshd);
    }

    /// Move host `hidden`'s sshd onto a link of its own to host `via` (see the module docs):
    /// from then on it is reached only through `via`'s sshd.
    fn hide_behind(&mut self, hidden: u8, via: u8) {
        let (v, h) = (self.host(via).ns.clone(), self.host(hidden).ns.clone());
        let link = |i: u8| format!("10.232.{}.{i}", self.net);
        ip_ok(&[
            "-n", &v, "link", "add", "pgj0", "type", "veth", "peer", "name", "pgj1", "netns", &h,
        ]);
        ip_ok(&[
            "-n",
            &v,
            "addr",
            "add",
            &format!("{}/30", link(1)),
            "dev",
            "pgj0",
        ]);
        ip_ok(&[
            "-n",
            &h,
            "addr",
            "add",
            &format!("{}/30", link(2)),
            "dev",
            "pgj1",
        ]);
        ip_ok(&["-n", &v, "link", "set", "pgj0", "up"]);
        ip_ok(&["-n", &h, "link", "set", "pgj1", "up"]);
        let host = &mut self.hosts[usize::from(hidden) - 1];
        drop(host.sshd.take());
        let prefix = ["ip", "netns", "exec", h.as_str()];
        host.sshd = Some(Sshd::start_on(&prefix, &link(2), SSH_PORT));
        host.via = Some(via);
    }

    /// A proxy delaying each way by half `rtt` in front of every sshd reached from here (on the
    /// bridge address, a port of its own).
    fn delay_ssh(&mut self, rtt: Duration) {
        let bridge = format!("10.231.{}.254", self.net);
        for h in self.hosts.iter_mut().filter(|h| h.via.is_none()) {
            let sshd = h.sshd.as_ref().expect("sshd started");
            let target = format!("{}:{SSH_PORT}", h.address)
                .parse()
                .expect("address");
            let listen = format!("{bridge}:0").parse().expect("address");
            let proxy = pgtopo::sandbox::delay::DelayProxy::start(listen, target, rtt / 2)
                .expect("start a delaying proxy");
            let key = std::fs::read_to_string(sshd.dir.path().join("host_key.pub")).unwrap();
            let line = format!("[{bridge}]:{} {key}", proxy.addr().port());
            std::fs::write(sshd.dir.path().join("front_known_hosts"), line).unwrap();
            h.front = Some(proxy);
        }
    }

    /// Where pgtopo reaches host `index`'s sshd: (address, port, known_hosts file).
    fn ssh_endpoint(&self, index: u8) -> (String, u16, PathBuf) {
        let h = self.host(index);
        let dir = h.sshd.as_ref().expect("sshd started").dir.path();
        match &h.front {
            Some(p) => (
                p.addr().ip().to_string(),
                p.addr().port(),
                dir.join("front_known_hosts"),
            ),
            None => (h.address.clone(), SSH_PORT, dir.join("known_hosts")),
        }
    }

    /// The ssh spec of host `index`: direct, or through its bastion with an ssh config file
    /// (written in the bastion sshd's directory) giving the bastion's key and known_hosts.
    fn ssh_spec(&self, index: u8) -> pgtopo::config::SshSpec {
        let sshd = self.host(index).sshd.as_ref().expect("sshd started");
        let mut spec = sshd.spec("known_hosts");
        let Some(via) = self.host(index).via else {
            let (host, port, known_hosts) = self.ssh_endpoint(index);
            spec.host = host;
            spec.port = Some(port);
            spec.known_hosts_file = Some(known_hosts);
            return spec;
        };
        let (host, port, known_hosts) = self.ssh_endpoint(via);
        let bastion = self
            .host(via)
            .sshd
            .as_ref()
            .expect("sshd started")
            .dir
            .path();
        let config = bastion.join("ssh_config");
        std::fs::write(
            &config,
            format!(
                "Host {host}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
                bastion.join("id_ed25519").display(),
                known_hosts.display()
            ),
        )
        .expect("write the ssh config");
        spec.jump = Some(format!("root@{host}:{port}"));
        spec.config_file = Some(config);
        spec
    }

    /// Host `index` (1-based).
    pub fn host(&self, index: u8) -> &Host {
        &self.hosts[usize::from(index) - 1]
    }

    /// Put node `names[i]` of `topo` behind host `i + 1`'s sshd, login root, its host key
    /// checked against its own known_hosts file ([`Hosts::ssh_spec`]).
    pub fn declare_nodes(&self, topo: &mut Topology, names: &[&str]) {
        for (i, n) in names.iter().enumerate().take(self.hosts.len()) {
            topo.ssh(n, self.ssh_spec(u8::try_from(i + 1).expect("a few hosts")));
        }
    }

    /// The TCP ports listening in host `index`'s namespace, as `address:port` (`ss -ltnH`).
    pub fn listeners(&self, index: u8) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", self.host(index).ns.as_str(), "ss", "-ltnH"])
            .output()
            .expect("ss runs");
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_string))
            .collect();
        v.sort();
        v
    }

    /// End every process still in `ns` by PID: SIGTERM, then SIGKILL after 5 s.
    fn end_processes(ns: &str) {
        use nix::sys::signal::{kill, Signal};
        let pids = || -> Vec<i32> {
            Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        for signal in [Signal::SIGTERM, Signal::SIGKILL] {
            let left = pids();
            if left.is_empty() {
                return;
            }
            for p in &left {
                let _ = kill(nix::unistd::Pid::from_raw(*p), signal);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !pids().into_iter().all(|p| !super::pid_alive(p)) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Shared: the test keeps its own handle to check listeners; the last one dropped removes the
/// hosts.
impl Placement for std::sync::Arc<Hosts> {
    fn address(&self, index: u8) -> String {
        self.host(index).address.clone()
    }

    fn run_on(&self, index: u8) -> Vec<String> {
        ["ip", "netns", "exec", self.host(index).ns.as_str()]
            .map(str::to_string)
            .to_vec()
    }

    fn hba(&self, method: &str) -> String {
        let net = self.net;
        format!(
            "host all all 10.231.{net}.0/24 {method}\nhost replication all 10.231.{net}.0/24 {method}\n"
        )
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in &mut self.hosts {
            drop(h.sshd.take());
            Hosts::end_processes(&h.ns);
            let _ = ip(&["link", "del", &h.veth]);
            let _ = ip(&["netns", "del", &h.ns]);
        }
        if let Some(b) = &self.bridge {
            let _ = ip(&["link", "del", b]);
        }
        let _ = std::fs::remove_file(&self.claim);
    }
}

/// One host per name: the first node an initialised, started primary, the others declared for
/// pgtopo to build; the trusted topology with every node behind its host's sshd.
pub fn cluster_on_hosts(names: &[&str]) -> (std::sync::Arc<Hosts>, super::TestCluster, Topology) {
    let hosts = Hosts::create(u8::try_from(names.len()).expect("a few hosts"));
    cluster_of(hosts, names)
}

/// As [`cluster_on_hosts`], the last host's SSH reachable only through the host before it.
pub fn cluster_on_hosts_with_bastion(
    names: &[&str],
) -> (std::sync::Arc<Hosts>, super::TestCluster, Topology) {
    let count = u8::try_from(names.len()).expect("a few hosts");
    let mut hosts = Hosts::create(count);
    hosts.hide_behind(count, count - 1);
    cluster_of(hosts, names)
}

/// With `PGTOPO_TEST_SSH_RTT_MS=N`, every sshd reached from the test's namespace is behind a
/// proxy adding N ms of round trip (SQL is not delayed).
fn cluster_of(
    mut hosts: Hosts,
    names: &[&str],
) -> (std::sync::Arc<Hosts>, super::TestCluster, Topology) {
    if let Some(ms) = std::env::var("PGTOPO_TEST_SSH_RTT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        hosts.delay_ssh(Duration::from_millis(ms));
    }
    let hosts = std::sync::Arc::new(hosts);
    let mut c = super::TestCluster::placed(Box::new(hosts.clone()));
    c.init_primary(names[0]);
    c.start(names[0]);
    for n in &names[1..] {
        c.declare_node(n);
    }
    let mut topo = c.topology();
    hosts.declare_nodes(&mut topo, names);
    (hosts, c, topo)
}
