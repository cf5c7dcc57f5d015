//! The SSH transport against a real OpenSSH server on loopback: its own sshd (own config, host key
//! and authorized_keys in a temp dir, listening on 127.0.0.1 and a free port only), strict
//! host-key checking, login as root and commands run as the `postgres` OS user.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pgtopo::config::SshSpec;
use pgtopo::transport::{CommandSpec, SshTransport, Transport, TransportError};

/// A private sshd, ended by its PID when dropped.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
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
    fn start() -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("pgtopo-sshd-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("id_ed25519"));
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nUsePAM no\nStrictModes no\n\
             PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nAllowUsers root\nLogLevel ERROR\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_pub}"),
        )
        .unwrap();
        std::fs::write(d.join("empty_known_hosts"), "").unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(5));
        }
        Sshd { dir, port, child }
    }

    fn spec(&self, known_hosts: &str) -> SshSpec {
        SshSpec {
            host: "127.0.0.1".into(),
            user: Some("root".into()),
            port: Some(self.port),
            identity_file: Some(self.dir.path().join("id_ed25519")),
            known_hosts_file: Some(self.dir.path().join(known_hosts)),
        }
    }

    /// A directory owned by postgres inside the sshd's temp dir.
    fn pg_dir(&self) -> PathBuf {
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

#[tokio::test]
async fn runs_commands_as_os_user_with_env() {
    let sshd = Sshd::start();
    let t = SshTransport::new(sshd.spec("known_hosts"), "postgres");
    let out = t.run(&CommandSpec::new("id").arg("-un")).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "postgres");

    let out = t
        .run(
            &CommandSpec::new("printenv")
                .arg("PGTOPO_X")
                .env("PGTOPO_X", "a b;c"),
        )
        .await
        .unwrap();
    assert_eq!(
        out.stdout.trim(),
        "a b;c",
        "an argument with spaces and ; reaches the program intact"
    );

    let out = t.run(&CommandSpec::new("false")).await.unwrap();
    assert_eq!(out.code, Some(1));
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}

#[tokio::test]
async fn files_are_written_atomically_with_mode_and_owner() {
    let sshd = Sshd::start();
    let dir = sshd.pg_dir();
    let t = SshTransport::new(sshd.spec("known_hosts"), "postgres");
    let f = dir.join("pg_hba.conf");

    assert_eq!(
        t.read_file(&f).await.unwrap(),
        None,
        "a missing file reads as None"
    );
    t.write_file_atomic(&f, b"host all all 127.0.0.1/32 trust\n", 0o600)
        .await
        .unwrap();
    let meta = std::fs::metadata(&f).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let pg_uid = nix::unistd::User::from_name("postgres")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    assert_eq!(meta.uid(), pg_uid, "written as the os_user");
    assert_eq!(
        t.read_file(&f).await.unwrap().unwrap(),
        b"host all all 127.0.0.1/32 trust\n"
    );

    let names = t.list_dir(&dir).await.unwrap().unwrap();
    assert_eq!(
        names,
        vec!["pg_hba.conf".to_string()],
        "no temporary file is left behind"
    );
    assert_eq!(t.list_dir(&dir.join("nope")).await.unwrap(), None);

    let sub = dir.join("sub/deeper");
    t.create_dir(&sub, 0o700).await.unwrap();
    assert!(sub.is_dir());
    let moved = dir.join("moved.conf");
    t.rename(&f, &moved).await.unwrap();
    assert!(!f.exists() && moved.exists());
    t.remove_file(&moved).await.unwrap();
    t.remove_file(&moved).await.unwrap();
    assert!(!moved.exists());
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}

/// Garbage (recycled WAL) is moved by rename only — never copied to another file system — and its
/// directory removed.
#[tokio::test]
async fn files_are_moved_by_rename_only_and_a_garbage_tree_removed() {
    let sshd = Sshd::start();
    let dir = sshd.pg_dir();
    let t = SshTransport::new(sshd.spec("known_hosts"), "postgres");
    let (wal, aside) = (dir.join("pg_wal"), dir.join("aside"));
    t.create_dir(&wal, 0o700).await.unwrap();
    t.create_dir(&aside, 0o700).await.unwrap();
    let names: Vec<(String, String)> = ["000000010000000000000005", "000000010000000000000006"]
        .map(|n| (n.to_string(), n.to_string()))
        .to_vec();
    for (n, _) in &names {
        t.write_file_atomic(&wal.join(n), b"old wal", 0o600)
            .await
            .unwrap();
    }
    // Another file system (tmpfs): nothing is moved, nothing copied.
    let other = PathBuf::from(format!("/dev/shm/pgtopo-ssh-test-{}", std::process::id()));
    if std::fs::metadata("/dev/shm")
        .is_ok_and(|m| m.dev() != std::fs::metadata(&dir).unwrap().dev())
    {
        t.create_dir(&other, 0o700).await.unwrap();
        assert!(!t.move_into(&wal, &names, &other).await.unwrap());
        assert_eq!(t.list_dir(&other).await.unwrap(), Some(vec![]));
        assert!(names.iter().all(|(n, _)| wal.join(n).exists()));
        t.remove_tree(&other).await.unwrap();
        assert!(!other.exists());
    }
    assert!(t.move_into(&wal, &names, &aside).await.unwrap());
    assert_eq!(t.list_dir(&wal).await.unwrap(), Some(vec![]));
    assert!(names.iter().all(|(n, _)| aside.join(n).exists()));
    // Back under new names (one shell, one mv each), never over an existing one.
    let taken = "000000020000000000000009";
    t.write_file_atomic(&wal.join(taken), b"new wal", 0o600)
        .await
        .unwrap();
    let back = |to: [&str; 2]| -> Vec<(String, String)> {
        names
            .iter()
            .zip(to)
            .map(|((a, _), b)| (a.clone(), b.to_string()))
            .collect()
    };
    assert!(!t
        .move_into(&aside, &back(["00000002000000000000000A", taken]), &wal)
        .await
        .unwrap());
    assert_eq!(std::fs::read(wal.join(taken)).unwrap(), b"new wal");
    assert!(
        aside.join(&names[1].0).exists(),
        "the one that could not go stays"
    );
    assert!(t
        .move_into(
            &aside,
            &back(["00000002000000000000000B", "00000002000000000000000C"])[1..],
            &wal
        )
        .await
        .unwrap());
    for n in ["00000002000000000000000A", "00000002000000000000000C"] {
        assert_eq!(std::fs::read(wal.join(n)).unwrap(), b"old wal", "{n}");
    }
    assert_eq!(t.list_dir(&aside).await.unwrap(), Some(vec![]));
    t.remove_tree(&aside).await.unwrap();
    assert!(!aside.exists());
    t.remove_tree(&aside).await.unwrap();
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}

#[tokio::test]
async fn unknown_host_key_is_refused() {
    let sshd = Sshd::start();
    let t = SshTransport::new(sshd.spec("empty_known_hosts"), "postgres");
    let err = t.run(&CommandSpec::new("true")).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn server_tools_run_over_ssh() {
    let sshd = Sshd::start();
    let dir = sshd.pg_dir();
    let t = SshTransport::new(sshd.spec("known_hosts"), "postgres");
    let bin = PathBuf::from(
        std::env::var("PGTOPO_TEST_BIN_DIR").unwrap_or("/usr/lib/postgresql/15/bin".into()),
    );
    let data = dir.join("data");
    let out = t
        .run(
            &CommandSpec::new(bin.join("initdb"))
                .args(["-D"])
                .arg(&data)
                .args(["--auth=trust", "-N"])
                .timeout(Duration::from_secs(120)),
        )
        .await
        .unwrap();
    assert!(out.success(), "initdb over ssh failed: {}", out.stderr);
    let out = t
        .run(
            &CommandSpec::new(bin.join("pg_controldata"))
                .arg(&data)
                .env("LC_ALL", "C"),
        )
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("Database cluster state:               shut down"),
        "{}",
        out.stdout
    );
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}
