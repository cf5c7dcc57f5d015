//! The SSH transport: every command and file operation on a node's host goes through OpenSSH, via
//! the `openssh` crate (the system `ssh` client).
//!
//! Design:
//! - One multiplexed master connection per (host, port, user) for the whole process, opened on
//!   first use and shared by every node on that host ([`SESSIONS`]).
//! - Strict host-key checking, always: a host whose key is unknown is an error, never trusted on
//!   first use.
//! - Commands are argv vectors; `openssh`'s `arg()` quotes each argument for the remote shell, so no
//!   command is ever assembled as a shell string.
//! - Acting as the node's `os_user`: directly when the login user is that user, through
//!   `runuser -u` when the login user is root, else through `sudo -n -u`.
//! - Files are moved with coreutils on the remote side: `cat` to read, `dd conv=fsync` fed on stdin
//!   into a temporary file then `chmod` and `mv -T` to write atomically, `ls -A` to list.
//! - Exit status 255 means ssh itself failed (the host is unreachable), not the remote program.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use super::{CommandOutput, CommandSpec, Transport, TransportError};
use crate::config::SshSpec;

/// Master connections shared by every transport of this process, per destination.
static SESSIONS: LazyLock<Mutex<HashMap<SshSpec, SharedMaster>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// A master connection opened on first use and shared by every transport to one destination.
type SharedMaster = Arc<OnceCell<Arc<Connected>>>;

/// An open master connection and the login user it runs as.
#[derive(Debug)]
struct Connected {
    session: Session,
    login_user: String,
}

/// A node's host reached over SSH, acting as `os_user`.
#[derive(Debug, Clone)]
pub struct SshTransport {
    spec: SshSpec,
    os_user: String,
    conn: SharedMaster,
}

impl SshTransport {
    /// A transport to `spec`'s host acting as `os_user`; the connection opens on first use.
    pub fn new(spec: SshSpec, os_user: impl Into<String>) -> Self {
        let conn = SESSIONS
            .lock()
            .expect("ssh session registry")
            .entry(spec.clone())
            .or_default()
            .clone();
        SshTransport {
            spec,
            os_user: os_user.into(),
            conn,
        }
    }

    fn host_label(&self) -> String {
        let user = self
            .spec
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let port = self.spec.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("ssh {user}{}{port}", self.spec.host)
    }

    async fn connected(&self) -> Result<Arc<Connected>, TransportError> {
        self.conn
            .get_or_try_init(|| async {
                let mut b = SessionBuilder::default();
                b.known_hosts_check(KnownHosts::Strict)
                    .connect_timeout(std::time::Duration::from_secs(10))
                    // A master left behind by a killed pgtopo goes away by itself.
                    .control_persist(ControlPersist::IdleFor(MASTER_IDLE_SECS));
                if let Some(u) = &self.spec.user {
                    b.user(u.clone());
                }
                if let Some(p) = self.spec.port {
                    b.port(p);
                }
                if let Some(k) = &self.spec.identity_file {
                    b.keyfile(k);
                }
                if let Some(k) = &self.spec.known_hosts_file {
                    b.user_known_hosts_file(k);
                }
                let session =
                    b.connect(&self.spec.host)
                        .await
                        .map_err(|e| TransportError::Unreachable {
                            host: self.host_label(),
                            message: e.to_string(),
                        })?;
                let out = session
                    .command("id")
                    .arg("-un")
                    .output()
                    .await
                    .map_err(|e| TransportError::Unreachable {
                        host: self.host_label(),
                        message: e.to_string(),
                    })?;
                let login_user = String::from_utf8_lossy(&out.stdout).trim().to_string();
                Ok(Arc::new(Connected {
                    session,
                    login_user,
                }))
            })
            .await
            .cloned()
    }

    /// The argv prefix that makes a program run as os_user.
    fn as_user_prefix(&self, login_user: &str) -> Vec<String> {
        if login_user == self.os_user {
            vec![]
        } else if login_user == "root" {
            vec![
                "runuser".into(),
                "-u".into(),
                self.os_user.clone(),
                "--".into(),
            ]
        } else {
            vec![
                "sudo".into(),
                "-n".into(),
                "-u".into(),
                self.os_user.clone(),
                "--".into(),
            ]
        }
    }

    /// Run argv as os_user, feeding `stdin` when given.
    async fn exec(
        &self,
        argv: Vec<OsString>,
        env: &[(String, String)],
        stdin: Option<&[u8]>,
        timeout: std::time::Duration,
    ) -> Result<CommandOutput, TransportError> {
        let conn = self.connected().await?;
        let display = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut full: Vec<String> = self.as_user_prefix(&conn.login_user);
        if !env.is_empty() {
            full.push("env".into());
            full.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        full.extend(argv.iter().map(|a| a.to_string_lossy().into_owned()));
        let mut cmd = conn.session.command(&full[0]);
        cmd.args(&full[1..]);
        cmd.stdin(if stdin.is_some() {
            openssh::Stdio::piped()
        } else {
            openssh::Stdio::null()
        });
        cmd.stdout(openssh::Stdio::piped())
            .stderr(openssh::Stdio::piped());
        let run = async {
            let mut child = cmd.spawn().await.map_err(|e| TransportError::Spawn {
                host: self.host_label(),
                command: display.clone(),
                message: e.to_string(),
            })?;
            if let Some(bytes) = stdin {
                if let Some(mut w) = child.stdin().take() {
                    w.write_all(bytes)
                        .await
                        .map_err(|e| TransportError::Spawn {
                            host: self.host_label(),
                            command: display.clone(),
                            message: format!("writing stdin: {e}"),
                        })?;
                    w.shutdown().await.ok();
                }
            }
            child
                .wait_with_output()
                .await
                .map_err(|e| TransportError::Spawn {
                    host: self.host_label(),
                    command: display.clone(),
                    message: e.to_string(),
                })
        };
        let out =
            tokio::time::timeout(timeout, run)
                .await
                .map_err(|_| TransportError::Timeout {
                    host: self.host_label(),
                    command: display.clone(),
                    timeout,
                })??;
        let code = out.status.code();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if code == Some(255) && stderr.contains("ssh:") {
            return Err(TransportError::Unreachable {
                host: self.host_label(),
                message: stderr.trim().into(),
            });
        }
        Ok(CommandOutput {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        })
    }

    async fn file_op(
        &self,
        op: &'static str,
        path: &Path,
        argv: Vec<OsString>,
        stdin: Option<&[u8]>,
    ) -> Result<CommandOutput, TransportError> {
        let out = self.exec(argv, &[], stdin, FILE_TIMEOUT).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.io_err(op, path, out.stderr.trim()))
        }
    }

    /// `rm FLAGS -- PATH`; a missing path is no error (`-f`).
    async fn rm(&self, flags: &str, path: &Path) -> Result<(), TransportError> {
        let args = argv(["rm", flags, "--"]).into_iter().chain([path.into()]);
        self.file_op("remove", path, args.collect(), None)
            .await
            .map(|_| ())
    }

    fn io_err(&self, op: &'static str, path: &Path, message: &str) -> TransportError {
        TransportError::Io {
            host: self.host_label(),
            op,
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

const FILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const MASTER_IDLE_SECS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(60) {
    Some(n) => n,
    None => unreachable!(),
};

/// Close every master connection this process opened (`ssh -O exit`). The CLI calls it before it
/// exits.
pub async fn close_all() {
    let cells: Vec<_> = SESSIONS
        .lock()
        .expect("ssh session registry")
        .drain()
        .map(|(_, v)| v)
        .collect();
    for cell in cells {
        exit_master(&cell).await;
    }
}

/// Close the master connection to one destination, if one is open.
pub async fn close(spec: &SshSpec) {
    let cell = SESSIONS.lock().expect("ssh session registry").remove(spec);
    if let Some(cell) = cell {
        exit_master(&cell).await;
    }
}

async fn exit_master(cell: &OnceCell<Arc<Connected>>) {
    if let Some(conn) = cell.get() {
        let _ = tokio::process::Command::new("ssh")
            .arg("-S")
            .arg(conn.session.control_socket())
            .args(["-O", "exit", "pgtopo-master"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
    }
}

fn argv<I: IntoIterator<Item = S>, S: Into<OsString>>(it: I) -> Vec<OsString> {
    it.into_iter().map(Into::into).collect()
}

fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.pgtopo-tmp-{}", std::process::id()))
}

fn is_missing(stderr: &str) -> bool {
    stderr.contains("No such file or directory")
}

#[async_trait]
impl Transport for SshTransport {
    fn describe(&self) -> String {
        self.host_label()
    }

    async fn run(&self, cmd: &CommandSpec) -> Result<CommandOutput, TransportError> {
        let mut v = vec![cmd.program.clone().into_os_string()];
        v.extend(cmd.args.iter().cloned());
        self.exec(v, &cmd.env, None, cmd.timeout).await
    }

    async fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        let out = self
            .exec(
                argv(["cat", "--"])
                    .into_iter()
                    .chain([path.into()])
                    .collect(),
                &[],
                None,
                FILE_TIMEOUT,
            )
            .await?;
        match out.success() {
            true => Ok(Some(out.stdout.into_bytes())),
            false if is_missing(&out.stderr) => Ok(None),
            false => Err(self.io_err("read", path, out.stderr.trim())),
        }
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), TransportError> {
        let tmp = temp_beside(path);
        let of = format!("of={}", tmp.display());
        self.file_op(
            "write",
            path,
            argv(["dd", "status=none", "conv=fsync", of.as_str()]),
            Some(contents),
        )
        .await?;
        let mode = format!("{mode:o}");
        self.file_op(
            "chmod",
            path,
            argv(["chmod", mode.as_str(), "--"])
                .into_iter()
                .chain([tmp.clone().into()])
                .collect(),
            None,
        )
        .await?;
        self.file_op(
            "rename",
            path,
            argv(["mv", "-f", "-T", "--"])
                .into_iter()
                .chain([tmp.into(), path.into()])
                .collect(),
            None,
        )
        .await?;
        Ok(())
    }

    async fn remove_file(&self, path: &Path) -> Result<(), TransportError> {
        self.rm("-f", path).await
    }

    async fn list_dir(&self, path: &Path) -> Result<Option<Vec<String>>, TransportError> {
        let out = self
            .exec(
                argv(["ls", "-A", "-1", "--"])
                    .into_iter()
                    .chain([path.into()])
                    .collect(),
                &[],
                None,
                FILE_TIMEOUT,
            )
            .await?;
        match out.success() {
            true => Ok(Some(out.stdout.lines().map(str::to_string).collect())),
            false if is_missing(&out.stderr) => Ok(None),
            false => Err(self.io_err("list", path, out.stderr.trim())),
        }
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), TransportError> {
        self.file_op(
            "rename",
            from,
            argv(["mv", "-T", "--"])
                .into_iter()
                .chain([from.into(), to.into()])
                .collect(),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn create_dir(&self, path: &Path, mode: u32) -> Result<(), TransportError> {
        let mode = format!("{mode:o}");
        self.file_op(
            "mkdir",
            path,
            argv(["mkdir", "-p", "-m", mode.as_str(), "--"])
                .into_iter()
                .chain([path.into()])
                .collect(),
            None,
        )
        .await
        .map(|_| ())
    }

    async fn move_into(
        &self,
        from: &Path,
        names: &[(String, String)],
        to: &Path,
    ) -> Result<bool, TransportError> {
        if names.is_empty() {
            return Ok(true);
        }
        // GNU mv copies across file systems: compare the devices first so nothing is ever copied.
        let stat = argv(["stat", "-c", "%d", "--"])
            .into_iter()
            .chain([from.into(), to.into()]);
        let out = self.exec(stat.collect(), &[], None, FILE_TIMEOUT).await?;
        let devices: Vec<&str> = out.stdout.lines().collect();
        if !out.success() || devices.len() != 2 || devices[0] != devices[1] {
            return Ok(false);
        }
        // One `mv -n -T -- FROM/a TO/b` per pair, run by xargs from NUL-separated paths on its
        // stdin (no shell, any file name). -n: never over an existing name.
        let mut pairs = Vec::new();
        for (a, b) in names {
            for p in [from.join(a), to.join(b)] {
                pairs.extend_from_slice(p.as_os_str().as_bytes());
                pairs.push(0);
            }
        }
        let mv = argv(["xargs", "-0", "-n", "2", "mv", "-n", "-T", "--"]);
        let out = self.exec(mv, &[], Some(&pairs), FILE_TIMEOUT).await?;
        if !out.success() {
            return Ok(false);
        }
        // mv -n exits 0 when it skipped an existing name (coreutils < 9.2): check for leftovers.
        let left = self.list_dir(from).await?.unwrap_or_default();
        Ok(!names.iter().any(|(a, _)| left.contains(a)))
    }

    async fn remove_tree(&self, path: &Path) -> Result<(), TransportError> {
        self.rm("-rf", path).await
    }
}
