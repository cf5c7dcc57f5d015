//! `pgtopo bench switchover --ssh`: every sandbox node behind an sshd of its own on its loopback
//! address, so that the same switchover is timed with every command and file going over SSH.
//!
//! Each [`NodeSshd`] has its own directory (host key, client key, authorized_keys, known_hosts,
//! sshd_config) inside the sandbox directory, listens on the node's address and `port` only, lets
//! the bench's login user (`--ssh-user`, root by default) in with that key only, and is ended by
//! its PID when dropped. With `--rtt-ms` a [`DelayProxy`](crate::sandbox::delay::DelayProxy) on
//! the same address stands in front of it (half the round trip each way), and the node's `ssh:`
//! names the proxy. It needs root (sshd switches to the logging-in user) and `/usr/sbin/sshd`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use miette::{miette, IntoDiagnostic, Result};

use crate::apply::wait::{wait_until, Poll, WaitSpec};
use crate::config::SshSpec;
use crate::sandbox::SandboxNode;

/// A private sshd in front of one sandbox node; ended by its PID when dropped.
pub struct NodeSshd {
    pub node: String,
    pub address: String,
    pub port: u16,
    dir: PathBuf,
    child: Child,
    user: String,
    /// In front of the sshd when the bench adds a round trip: pgtopo connects to it.
    proxy: Option<crate::sandbox::delay::DelayProxy>,
    /// authorized_keys where a login other than root can read it (sshd reads it as that user;
    /// the bench's directory is root's alone).
    _keys: tempfile::TempDir,
}

impl Drop for NodeSshd {
    fn drop(&mut self) {
        drop(self.proxy.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| miette!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(miette!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn keygen(path: &Path) -> Result<()> {
    let p = path.to_str().ok_or_else(|| miette!("non-UTF-8 path"))?;
    run("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-f", p])
}

impl NodeSshd {
    /// Start an sshd for `node` on `node.host:port`, its files under `dir`, letting `how.user`
    /// in; with `how.rtt`, behind a delaying proxy on the same address.
    pub fn start(
        node: &SandboxNode,
        port: u16,
        dir: &Path,
        how: &super::BenchSsh,
    ) -> Result<NodeSshd> {
        if !nix::unistd::geteuid().is_root() {
            return Err(miette!("bench --ssh needs root: sshd logs root in"));
        }
        std::fs::create_dir_all(dir).into_diagnostic()?;
        std::fs::create_dir_all("/run/sshd").into_diagnostic()?;
        keygen(&dir.join("host_key"))?;
        keygen(&dir.join("id_ed25519"))?;
        let keys = tempfile::Builder::new()
            .prefix("pgtopo-sshd-keys-")
            .tempdir()
            .into_diagnostic()?;
        let authorized = keys.path().join("authorized_keys");
        std::fs::copy(dir.join("id_ed25519.pub"), &authorized).into_diagnostic()?;
        for (p, mode) in [(keys.path(), 0o755), (authorized.as_path(), 0o644)] {
            let perms = std::os::unix::fs::PermissionsExt::from_mode(mode);
            std::fs::set_permissions(p, perms).into_diagnostic()?;
        }
        let host_pub = std::fs::read_to_string(dir.join("host_key.pub")).into_diagnostic()?;
        let proxy = match how.rtt {
            None => None,
            Some(rtt) => {
                let at = |p| -> Result<std::net::SocketAddr> {
                    format!("{}:{p}", node.host).parse().into_diagnostic()
                };
                let p = crate::sandbox::delay::DelayProxy::start(at(0)?, at(port)?, rtt / 2)
                    .into_diagnostic()?;
                Some(p)
            }
        };
        let seen_port = proxy.as_ref().map_or(port, |p| p.addr().port());
        std::fs::write(
            dir.join("known_hosts"),
            format!("[{}]:{seen_port} {host_pub}", node.host),
        )
        .into_diagnostic()?;
        let config = format!(
            "Port {port}\nListenAddress {addr}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {keys}\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nAllowUsers {user}\nLogLevel ERROR\n",
            user = how.user,
            keys = authorized.display(),
            addr = node.host,
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).into_diagnostic()?;
        let log = std::fs::File::create(dir.join("sshd.log")).into_diagnostic()?;
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| miette!("/usr/sbin/sshd: {e}"))?;
        let sshd = NodeSshd {
            node: node.name.clone(),
            address: node.host.clone(),
            port,
            dir: dir.to_path_buf(),
            child,
            user: how.user.clone(),
            proxy,
            _keys: keys,
        };
        Ok(sshd)
    }

    /// Wait (up to 10 s, at ms resolution) until the sshd accepts connections.
    pub async fn wait_listening(&self) -> Result<()> {
        let addr = format!("{}:{}", self.address, self.port);
        let spec = WaitSpec::new(format!("sshd to listen on {addr}"), Duration::from_secs(10))
            .max_interval(Duration::from_millis(5));
        wait_until(&spec, || async {
            match tokio::net::TcpStream::connect(addr.as_str()).await {
                Ok(_) => Poll::Ready(()),
                Err(e) => Poll::Pending(e.to_string()),
            }
        })
        .await
        .map_err(|e| miette!("{e}"))
    }

    /// The node's `ssh:` section: login with this sshd's key (through the proxy when there is
    /// one), its host key checked.
    fn spec(&self) -> SshSpec {
        SshSpec {
            host: self.address.clone(),
            user: Some(self.user.clone()),
            port: Some(self.proxy.as_ref().map_or(self.port, |p| p.addr().port())),
            identity_file: Some(self.dir.join("id_ed25519")),
            known_hosts_file: Some(self.dir.join("known_hosts")),
            jump: None,
            config_file: None,
        }
    }
}

/// Put every node of the topology file at `path` behind its sshd (an `ssh:` mapping each).
pub fn declare_ssh(path: &Path, sshds: &[NodeSshd]) -> Result<()> {
    let mut missing = None;
    crate::sandbox::edit_topology(path, |f| {
        missing = sshds
            .iter()
            .find(|s| !f.nodes.contains_key(&s.node))
            .map(|s| s.node.clone());
        if missing.is_none() {
            for s in sshds {
                f.nodes.get_mut(&s.node).expect("checked above").ssh = Some(s.spec());
            }
        }
    })?;
    match missing {
        Some(node) => Err(miette!("node {node} is not in {}", path.display())),
        None => Ok(()),
    }
}
