//! A real OpenSSH server on loopback for the SSH tests, and throw-away login accounts.
//!
//! - [`Sshd`]: its own config, host key and client key in a temp dir, listening on 127.0.0.1 and
//!   a free port only, every account logging in with the one key in `DIR/authorized_keys`.
//!   `DIR/known_hosts` holds its host key, `DIR/wrong_known_hosts` another key for the same
//!   address, `DIR/empty_known_hosts` nothing. Ended by its PID when dropped.
//! - [`LoginUser`]: an unprivileged account made with useradd, allowed (or not, without
//!   NOPASSWD) to run commands as postgres through sudo; the account, its home and its sudoers
//!   drop-in are removed when it is dropped, also when the test panics.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pgtopo::config::SshSpec;

use super::Topology;

/// A private sshd, ended by its PID when dropped.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    /// The address it listens on (127.0.0.1, or a network namespace's, see netns.rs).
    pub address: String,
    pub port: u16,
    child: Child,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_on(&[], "127.0.0.1", free_port())
    }

    /// An sshd listening on `address:port` only, started through the argv `prefix` (e.g.
    /// `ip netns exec NS`, which execs it: the child's PID is sshd's).
    pub fn start_on(prefix: &[&str], address: &str, port: u16) -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("pgtopo-sshd-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("id_ed25519"));
        keygen(&d.join("other_host_key"));
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys")).unwrap();
        // Read by sshd as the logging-in user.
        std::fs::set_permissions(
            d.join("authorized_keys"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        // Every session starts with a stray libpq environment, as a remote user's rc file may
        // set one: pgtopo's commands must not see it.
        let config = format!(
            "Port {port}\nListenAddress {address}\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nAllowUsers root pgtd*\nLogLevel ERROR\n\
             SetEnv PGHOST=wrong.invalid PGPORT=1 PGSSLMODE=require PGPASSWORD=wrong\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        for (file, key) in [
            ("known_hosts", Some("host_key.pub")),
            ("wrong_known_hosts", Some("other_host_key.pub")),
            ("empty_known_hosts", None),
        ] {
            let line = key.map_or(String::new(), |k| {
                let public = std::fs::read_to_string(d.join(k)).unwrap();
                format!("[{address}]:{port} {public}")
            });
            std::fs::write(d.join(file), line).unwrap();
        }
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let (program, args) = match prefix.split_first() {
            Some((p, rest)) => (*p, [rest.to_vec(), vec!["/usr/sbin/sshd"]].concat()),
            None => ("/usr/sbin/sshd", vec![]),
        };
        let child = Command::new(program)
            .args(args)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let addr: SocketAddr = format!("{address}:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // In a namespace, its listeners are read there (its address may have no route from
        // here): nothing is ever sent to an address outside the test's.
        let listening = || match prefix.split_first() {
            None => TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok(),
            Some((p, rest)) => Command::new(p)
                .args(rest)
                .args(["ss", "-ltnH"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&addr.to_string())),
        };
        while !listening() {
            assert!(Instant::now() < deadline, "sshd did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(5));
        }
        Sshd {
            dir,
            address: address.to_string(),
            port,
            child,
        }
    }

    /// Log in as root, checking the host key against `DIR/<known_hosts>`.
    pub fn spec(&self, known_hosts: &str) -> SshSpec {
        self.spec_for("root", known_hosts)
    }

    /// Log in as `user`, checking the host key against `DIR/<known_hosts>`.
    pub fn spec_for(&self, user: &str, known_hosts: &str) -> SshSpec {
        SshSpec {
            host: self.address.clone(),
            user: Some(user.into()),
            port: Some(self.port),
            identity_file: Some(self.dir.path().join("id_ed25519")),
            known_hosts_file: Some(self.dir.path().join(known_hosts)),
            jump: None,
            config_file: None,
        }
    }

    /// Put `nodes` of `topo` behind this sshd (login `user`, `known_hosts`).
    pub fn declare_nodes(
        &self,
        topo: &mut Topology,
        nodes: &[&str],
        user: &str,
        known_hosts: &str,
    ) {
        for n in nodes {
            topo.ssh(n, self.spec_for(user, known_hosts));
        }
    }

    /// A directory owned by postgres inside the sshd's temp dir.
    pub fn pg_dir(&self) -> PathBuf {
        let p = self.dir.path().join("pgfiles");
        std::fs::create_dir_all(&p).unwrap();
        let st = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&p)
            .status()
            .unwrap();
        assert!(st.success());
        p
    }
}

/// An unprivileged login account (`pgtd<pid>-<n>`) that may run commands as postgres through
/// sudo; removed with its home and sudoers drop-in when dropped.
pub struct LoginUser {
    pub name: String,
    sudoers: PathBuf,
}

static NEXT_USER: AtomicU32 = AtomicU32::new(0);

impl LoginUser {
    /// A new account; `nopasswd`: sudo to postgres without a password (else sudo asks for one,
    /// which `sudo -n` refuses).
    pub fn create(nopasswd: bool) -> LoginUser {
        LoginUser::create_with_shell(nopasswd, "/bin/sh")
    }

    /// As [`LoginUser::create`], with `shell` as its login shell.
    pub fn create_with_shell(nopasswd: bool, shell: &str) -> LoginUser {
        let name = format!(
            "pgtd{}-{}",
            std::process::id(),
            NEXT_USER.fetch_add(1, Ordering::Relaxed)
        );
        // `-p '*'`: no password, but not locked (sshd refuses locked accounts without PAM).
        // Test processes for several majors run at once: useradd/userdel take /etc/passwd's
        // lock and fail when another holds it, so they queue on one flock.
        run(Command::new("flock")
            .arg(ACCOUNTS_LOCK)
            .args(["useradd", "-m", "-s", shell, "-p", "*", &name]));
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/pgtopo-test-{name}"));
        let user = LoginUser { name, sudoers };
        let tag = if nopasswd { "NOPASSWD: " } else { "" };
        std::fs::write(
            &user.sudoers,
            format!("{} ALL=(postgres) {tag}ALL\n", user.name),
        )
        .unwrap();
        std::fs::set_permissions(&user.sudoers, std::fs::Permissions::from_mode(0o440)).unwrap();
        run(Command::new("visudo").arg("-cf").arg(&user.sudoers));
        user
    }
}

impl LoginUser {
    /// The account's home directory.
    pub fn home(&self) -> PathBuf {
        nix::unistd::User::from_name(&self.name)
            .unwrap()
            .expect("the account exists")
            .dir
    }
}

/// The file useradd and userdel queue on (see [`LoginUser::create`]).
const ACCOUNTS_LOCK: &str = "/tmp/pgtopo-test-accounts.lock";

impl Drop for LoginUser {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        // -f: also while a session of the account is still open (a master the test left).
        let _ = Command::new("flock")
            .arg(ACCOUNTS_LOCK)
            .args(["userdel", "-f", "-r", &self.name])
            .output();
    }
}

fn run(c: &mut Command) {
    let out = c.output().expect("run a setup command");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
