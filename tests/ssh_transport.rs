//! The SSH transport against a real OpenSSH server on loopback: its own sshd (own config, host key
//! and authorized_keys in a temp dir, listening on 127.0.0.1 and a free port only), strict
//! host-key checking, login as root and commands run as the `postgres` OS user.

mod support;

use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

use pgtopo::apply::wait::{wait_until, Poll, WaitSpec};
use pgtopo::transport::{
    CommandOutput, CommandSpec, DynTransport, FakeTransport, LocalTransport, SshOptions,
    SshTransport, Transport, TransportError,
};
use support::ssh::{LoginUser, Sshd};

#[tokio::test]
async fn runs_commands_as_os_user_with_env() {
    let sshd = Sshd::start();
    let t = SshTransport::new(sshd.spec("known_hosts"), "postgres");
    let out = t.run(&CommandSpec::new("id").arg("-un")).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout_text().trim(), "postgres");
    // As the login user itself (a systemd node's `sudo -n systemctl`): over root's own sessions.
    let out = t
        .run(&CommandSpec::new("id").arg("-un").as_login_user())
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), "root");

    let out = t
        .run(
            &CommandSpec::new("printenv")
                .arg("PGTOPO_X")
                .env("PGTOPO_X", "a b;c"),
        )
        .await
        .unwrap();
    assert_eq!(
        out.stdout_text().trim(),
        "a b;c",
        "an argument with spaces and ; reaches the program intact"
    );

    let out = t.run(&CommandSpec::new("false")).await.unwrap();
    assert_eq!(out.code, Some(1));

    // The session's stray libpq variables (sshd's SetEnv here) never reach the program.
    let out = t.run(&CommandSpec::new("env")).await.unwrap();
    let env = out.stdout_text();
    assert!(env.lines().all(|l| !l.starts_with("PG")), "{env}");
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
    let pg_uid = postgres_uid();
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
async fn unknown_or_wrong_host_keys_are_refused_by_name() {
    let sshd = Sshd::start();
    for (file, says) in [
        ("empty_known_hosts", "is not in known_hosts file"),
        ("wrong_known_hosts", "does not match known_hosts file"),
    ] {
        let t = SshTransport::new(sshd.spec(file), "postgres");
        let err = t.check_access().await.unwrap_err();
        assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
        let want = format!("host key for 127.0.0.1:{} {says}", sshd.port);
        assert!(err.to_string().contains(&want), "{err}");
        let err = t.run(&CommandSpec::new("true")).await.unwrap_err();
        assert!(err.to_string().contains(&want), "{err}");
    }
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
        out.stdout_text()
            .contains("Database cluster state:               shut down"),
        "{}",
        out.stdout_text()
    );
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}

/// Every byte value 0–255 (file contents, command output) and 1–255 (an argument).
fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

/// Write, read and `cat` a file holding every byte value, and pass every byte but NUL as an
/// argument (`printf %s ARG`): all of it comes back unchanged.
async fn assert_bytes_round_trip(name: &str, t: &dyn Transport, dir: &std::path::Path) {
    let f = dir.join("bytes.bin");
    t.write_file_atomic(&f, &all_bytes(), 0o600).await.unwrap();
    assert_eq!(
        t.read_file(&f).await.unwrap().unwrap(),
        all_bytes(),
        "{name}: read_file"
    );
    let out = t.run(&CommandSpec::new("cat").arg(&f)).await.unwrap();
    assert_eq!(out.stdout, all_bytes(), "{name}: cat's stdout");
    let arg = std::ffi::OsString::from_vec(all_bytes()[1..].to_vec());
    let out = t
        .run(&CommandSpec::new("printf").args(["%s".into(), arg]))
        .await
        .unwrap();
    assert_eq!(
        out.stdout,
        all_bytes()[1..],
        "{name}: an argument of every byte"
    );
}

#[tokio::test]
async fn every_transport_carries_all_256_byte_values() {
    let sshd = Sshd::start();
    let dir = sshd.pg_dir();
    let ssh = SshTransport::new(sshd.spec("known_hosts"), "postgres");
    assert_bytes_round_trip("ssh", &ssh, &dir).await;
    let local = LocalTransport::new("postgres");
    assert_bytes_round_trip("local", &local, &dir).await;
    // The fake runs no program: its scripted output and its files keep every byte.
    let fake = FakeTransport::new()
        .with_dir(&dir)
        .with_output("cat", CommandOutput::ok(all_bytes()))
        .with_output("printf", CommandOutput::ok(all_bytes()[1..].to_vec()));
    assert_bytes_round_trip("fake", &fake, &dir).await;
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}

/// Wait until no process has this PID.
async fn wait_gone(pid: u32) {
    let spec = WaitSpec::new(format!("process {pid} to end"), Duration::from_secs(15));
    wait_until(&spec, || async move {
        match std::path::Path::new(&format!("/proc/{pid}")).exists() {
            false => Poll::Ready(()),
            true => Poll::Pending("still running".to_string()),
        }
    })
    .await
    .unwrap();
}

/// The keepalive keeps an idle master past its idle limit, for as long as pgtopo runs.
#[tokio::test]
async fn an_idle_master_outlives_its_idle_limit() {
    let sshd = Sshd::start();
    // An SSH command takes ~0.5 s here, more on a loaded machine: the idle limit leaves the
    // keepalive several tries.
    let options = SshOptions {
        master_idle: Duration::from_secs(4),
        keepalive: Some(Duration::from_millis(500)),
        ..SshOptions::default()
    };
    let t = SshTransport::with_options(sshd.spec("known_hosts"), "postgres", options);
    assert!(t.run(&CommandSpec::new("true")).await.unwrap().success());
    let pid = t.master_pid().await.expect("a master runs");
    // Idle (no command of ours) two and a half times as long as the idle limit.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        t.master_pid().await,
        Some(pid),
        "the same master still runs"
    );
    assert!(t.run(&CommandSpec::new("true")).await.unwrap().success());
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}

/// A lock taken before a long wait is released after it although the master was lost meanwhile
/// (its sessions keep it from expiring while pgtopo runs; killed here): the next command opens a
/// new master and new sessions.
#[tokio::test]
async fn a_lock_is_released_after_the_master_was_lost() {
    let sshd = Sshd::start();
    let dir = sshd.pg_dir();
    let options = SshOptions {
        keepalive: None,
        ..SshOptions::default()
    };
    let t = SshTransport::with_options(sshd.spec("known_hosts"), "postgres", options);
    let yaml = format!(
        "cluster: c\npostgres: {{os_user: postgres, bin_dir: /usr/lib/postgresql/15/bin}}\n\
         nodes:\n  n1: {{host: 127.0.0.1, port: 26999, data_dir: {}/data, role: primary}}\n",
        dir.display()
    );
    let desired = pgtopo::config::load_str("topology.yaml", &yaml).unwrap();
    let ts: std::collections::BTreeMap<String, DynTransport> = [(
        "n1".to_string(),
        std::sync::Arc::new(t.clone()) as DynTransport,
    )]
    .into();
    let events = pgtopo::apply::NullEvents;
    let lock = pgtopo::apply::lock::acquire(&desired, &ts, None, &events)
        .await
        .unwrap();
    assert_eq!(lock.nodes(), ["n1"]);
    let lock_file = dir.join("data.pgtopo.lock");
    assert!(lock_file.exists());
    let pid = t.master_pid().await.expect("a master runs");
    kill(pid);
    wait_gone(pid).await;
    lock.release().await.expect("released over a new master");
    assert!(!lock_file.exists());
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}

fn kill(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// A master killed between two commands: the next one reconnects and runs once.
#[tokio::test]
async fn a_killed_master_is_replaced_by_the_next_command() {
    let sshd = Sshd::start();
    let dir = sshd.pg_dir();
    let t = SshTransport::new(sshd.spec("known_hosts"), "postgres");
    let f = dir.join("f");
    t.write_file_atomic(&f, b"one", 0o600).await.unwrap();
    let pid = t.master_pid().await.expect("a master runs");
    kill(pid);
    wait_gone(pid).await;
    t.write_file_atomic(&f, b"two", 0o600).await.unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"two");
    let out = t.run(&CommandSpec::new("id").arg("-un")).await.unwrap();
    assert_eq!(out.stdout_text().trim(), "postgres");
    assert!(t.master_pid().await.is_some_and(|p| p != pid));
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}

/// SPEC §6: an unprivileged login (root logins disabled) that runs everything as the os_user
/// through `sudo -n -u postgres`.
#[tokio::test]
async fn an_unprivileged_login_acts_as_os_user_through_sudo() {
    let sshd = Sshd::start();
    let dir = sshd.pg_dir();
    let deploy = LoginUser::create(true);
    let spec = sshd.spec_for(&deploy.name, "known_hosts");
    let t = SshTransport::new(spec.clone(), "postgres");
    t.check_access().await.unwrap();
    let out = t
        .run(&CommandSpec::new("id").arg("-un").env("PGTOPO_X", "a b"))
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), "postgres", "{out:?}");
    let out = t
        .run(
            &CommandSpec::new("printenv")
                .arg("PGTOPO_X")
                .env("PGTOPO_X", "a b"),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_text().trim(), "a b", "{out:?}");
    assert_bytes_round_trip("ssh as deploy", &t, &dir).await;
    let pg_uid = postgres_uid();
    assert_eq!(
        std::fs::metadata(dir.join("bytes.bin")).unwrap().uid(),
        pg_uid
    );
    pgtopo::transport::ssh::close(&spec).await;
}

#[tokio::test]
async fn a_sudo_that_wants_a_password_is_named() {
    let sshd = Sshd::start();
    let deploy = LoginUser::create(false);
    let spec = sshd.spec_for(&deploy.name, "known_hosts");
    let t = SshTransport::new(spec.clone(), "postgres");
    let err = t.check_access().await.unwrap_err();
    assert!(matches!(err, TransportError::Denied { .. }), "{err:?}");
    assert!(
        err.to_string().contains("sudo: a password is required"),
        "{err}"
    );
    let err = t.run(&CommandSpec::new("true")).await.unwrap_err();
    assert!(
        err.to_string().contains("sudo: a password is required"),
        "{err}"
    );
    pgtopo::transport::ssh::close(&spec).await;
}

fn postgres_uid() -> u32 {
    nix::unistd::User::from_name("postgres")
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

/// SPEC §6: a login shell whose rc file is slow and prints (to stdout and stderr) runs once per
/// session, not per command, and none of its noise reaches a command's output.
#[tokio::test]
async fn a_slow_noisy_login_rc_runs_once_per_session_and_never_reaches_output() {
    let sshd = Sshd::start();
    let dir = sshd.pg_dir();
    let deploy = LoginUser::create_with_shell(true, "/bin/bash");
    let runs = deploy.home().join("rc-runs");
    // bash reads ~/.bashrc when sshd runs it (Debian's SSH_SOURCE_BASHRC), like pyenv's.
    std::fs::write(
        deploy.home().join(".bashrc"),
        format!(
            "echo run >> {}\nsleep 0.3\necho 'rc noise on stdout'\necho 'rc noise on stderr' >&2\n",
            runs.display()
        ),
    )
    .unwrap();
    let spec = sshd.spec_for(&deploy.name, "known_hosts");
    let options = SshOptions {
        keepalive: None,
        ..SshOptions::default()
    };
    let t = SshTransport::with_options(spec.clone(), "postgres", options);
    t.check_access().await.unwrap();
    for i in 0..20 {
        let out = t
            .run(
                &CommandSpec::new("sh")
                    .args([
                        "-c",
                        "printf 'out %s' \"$1\"; printf 'err %s' \"$1\" >&2; exit 3",
                    ])
                    .arg("sh")
                    .arg(i.to_string()),
            )
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(
            out.stdout,
            format!("out {i}").into_bytes(),
            "byte-exact stdout"
        );
        assert_eq!(out.stderr, format!("err {i}"), "byte-exact stderr");
    }
    assert_bytes_round_trip("ssh through a noisy rc", &t, &dir).await;
    let read_runs = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(
        read_runs(),
        1,
        "one session ran every command one after another"
    );
    // Commands at once: more sessions (started one at a time, each taking the rc's 0.3 s), never
    // more than the pool's size.
    let many = (0..8).map(|_| {
        let t = t.clone();
        async move { t.run(&CommandSpec::new("sleep").arg("0.2")).await }
    });
    for out in futures::future::join_all(many).await {
        assert!(out.unwrap().success());
    }
    let n = read_runs();
    assert!((1..=4).contains(&n), "{n} sessions for 8 commands at once");
    pgtopo::transport::ssh::close(&spec).await;
}

/// A pseudo-random payload of `len` bytes holding every byte value and text that looks like the
/// sessions' framing.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let fake = b"\npgtopo-0123456789abcdef0123456789abcdef E 0\n";
    v[len / 2..len / 2 + fake.len()].copy_from_slice(fake);
    v
}

/// 16 MiB of binary through a file write (stdin), a file read and `cat` (stdout); 4 MiB on
/// stderr before as much on stdout (both streams read at once).
#[tokio::test]
async fn a_large_binary_payload_round_trips() {
    let sshd = Sshd::start();
    let dir = sshd.pg_dir();
    let t = SshTransport::new(sshd.spec("known_hosts"), "postgres");
    let big = payload(16 << 20);
    let f = dir.join("big.bin");
    t.write_file_atomic(&f, &big, 0o600).await.unwrap();
    assert!(std::fs::read(&f).unwrap() == big, "written byte for byte");
    assert!(t.read_file(&f).await.unwrap().unwrap() == big, "read_file");
    let out = t.run(&CommandSpec::new("cat").arg(&f)).await.unwrap();
    assert!(out.success() && out.stdout == big, "cat's stdout");
    let text: Vec<u8> = (0..4 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let g = dir.join("text");
    t.write_file_atomic(&g, &text, 0o600).await.unwrap();
    let out = t
        .run(
            &CommandSpec::new("sh")
                .args(["-c", "cat \"$1\" >&2; cat \"$1\"", "sh"])
                .arg(&g),
        )
        .await
        .unwrap();
    assert!(out.success());
    assert!(out.stdout == text && out.stderr.as_bytes() == text);
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}

/// The PIDs of processes whose command line is `line` (`pgrep -x -f`).
fn pids_running(line: &str) -> Vec<u32> {
    let out = std::process::Command::new("pgrep")
        .args(["-x", "-f", line])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A session killed while its command runs: that command fails with the cause; the next one
/// runs on a new session. A session killed while idle is replaced without a word.
#[tokio::test]
async fn a_session_killed_mid_run_fails_its_command_and_is_replaced() {
    let sshd = Sshd::start();
    let options = SshOptions {
        keepalive: None,
        ..SshOptions::default()
    };
    let t = SshTransport::with_options(sshd.spec("known_hosts"), "postgres", options);
    assert!(t.run(&CommandSpec::new("true")).await.unwrap().success());
    let sessions = t.session_pids().await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let sh = sessions[0];
    // Runs until the session's shell is gone (tail checks every second), then ends by itself.
    let tail = ["tail", "--pid", &sh.to_string(), "-f", "/dev/null"].map(String::from);
    let running = {
        let t = t.clone();
        let cmd = CommandSpec::new(&tail[0]).args(&tail[1..]);
        tokio::spawn(async move { t.run(&cmd).await })
    };
    let line = tail.join(" ");
    let spec = WaitSpec::new("the command to run", Duration::from_secs(15));
    let tail_pid = wait_until(&spec, || {
        let found = pids_running(&line);
        async move {
            match found.first() {
                Some(p) => Poll::Ready(*p),
                None => Poll::Pending("no such process yet".to_string()),
            }
        }
    })
    .await
    .unwrap();
    kill(sh);
    let err = running.await.unwrap().unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the remote session ended while tail"),
        "{err}"
    );
    wait_gone(tail_pid).await;
    let out = t.run(&CommandSpec::new("id").arg("-un")).await.unwrap();
    assert_eq!(out.stdout_text().trim(), "postgres");
    let sessions = t.session_pids().await;
    assert!(
        !sessions.contains(&sh) && sessions.len() == 1,
        "{sessions:?}"
    );

    kill(sessions[0]);
    wait_gone(sessions[0]).await;
    let out = t.run(&CommandSpec::new("id").arg("-un")).await.unwrap();
    assert_eq!(
        out.stdout_text().trim(),
        "postgres",
        "an idle session killed is replaced"
    );
    pgtopo::transport::ssh::close(&sshd.spec("known_hosts")).await;
}
