//! The SSH transport: every command and file operation on a node's host goes through OpenSSH (the
//! system `ssh` client; the `openssh` crate starts the master connection).
//!
//! Design:
//! - One multiplexed master connection per (host, port, user) for the whole process, shared by
//!   every node on that host, kept alive while pgtopo runs and reopened once when it is found
//!   gone ([`master`]).
//! - Strict host-key checking, always: a host whose key is unknown is an error, never trusted on
//!   first use. Why a connection failed is said the way a person acts on it ([`cause`]).
//! - Commands run over long-lived remote sessions (a small pool of `/bin/sh` per master, started
//!   once: the login shell and its rc files run once per session, not per command;
//!   [`session`]). A command is sent as its argv, word by word, binary-safe, never as a shell
//!   string; exit status, stdout and stderr come back as bytes.
//! - Acting as the node's `os_user`: directly when the login user is that user, through
//!   `runuser -u` when the login user is root, else through `sudo -n -u`. Before its first
//!   command as an os_user, the transport checks that `id -un` says that user
//!   ([`Transport::check_access`]); a sudo that wants a password fails there, by name.
//! - Bytes end to end: stdout comes back unchanged, files are moved with coreutils on the remote
//!   side: `cat` to read, `dd conv=fsync` fed on stdin into a temporary file then `chmod` and
//!   `mv -T` to write atomically (three argv commands over the session, no shell text; the
//!   temporary file is removed when one fails), `ls -A` to list.

mod cause;
mod master;
mod session;

pub use master::SshOptions;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{CommandOutput, CommandSpec, Transport, TransportError};
use crate::config::SshSpec;
use master::Master;
use session::Outcome;

/// A node's host reached over SSH, acting as `os_user`.
#[derive(Debug, Clone)]
pub struct SshTransport {
    spec: SshSpec,
    os_user: String,
    master: Arc<Master>,
}

impl SshTransport {
    /// A transport to `spec`'s host acting as `os_user`; the connection opens on first use.
    pub fn new(spec: SshSpec, os_user: impl Into<String>) -> Self {
        Self::with_options(spec, os_user, SshOptions::default())
    }

    /// As [`SshTransport::new`], with `options` for the master when this process has none to
    /// that destination yet.
    pub fn with_options(spec: SshSpec, os_user: impl Into<String>, options: SshOptions) -> Self {
        SshTransport {
            master: master::master(&spec, options),
            spec,
            os_user: os_user.into(),
        }
    }

    /// The PID of the master process to this destination, when one runs (for tests).
    pub async fn master_pid(&self) -> Option<u32> {
        self.master.pid().await
    }

    /// The remote PIDs of the sessions open to this destination, busy or idle (for tests).
    pub async fn session_pids(&self) -> Vec<u32> {
        self.master.session_pids().await
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

    fn unreachable(&self, message: impl Into<String>) -> TransportError {
        TransportError::Unreachable {
            host: self.host_label(),
            message: message.into(),
        }
    }

    /// The whole argv a session runs: `env K=V… ARGV` when there is an environment to set, else
    /// ARGV (the session runs as os_user, without the caller's libpq environment: [`session`]).
    fn remote_argv(env: &[(String, String)], argv: &[OsString]) -> Vec<OsString> {
        let mut words = Vec::new();
        if !env.is_empty() {
            words.push("env".into());
            words.extend(env.iter().map(|(k, v)| OsString::from(format!("{k}={v}"))));
        }
        words.extend(argv.iter().cloned());
        words
    }

    /// Run argv as os_user.
    async fn exec(
        &self,
        argv: Vec<OsString>,
        env: &[(String, String)],
        stdin: Option<&[u8]>,
        timeout: std::time::Duration,
    ) -> Result<CommandOutput, TransportError> {
        self.exec_as(argv, false, env, stdin, timeout).await
    }

    /// [`Self::exec`], or as the login user itself when `as_login_user` (over sessions of the
    /// login user, which switch to nobody).
    async fn exec_as(
        &self,
        argv: Vec<OsString>,
        as_login_user: bool,
        env: &[(String, String)],
        stdin: Option<&[u8]>,
        timeout: std::time::Duration,
    ) -> Result<CommandOutput, TransportError> {
        self.deliver(&argv, as_login_user, env, stdin, timeout)
            .await
    }

    /// Run argv as os_user over a session. A session found ended before the command started is
    /// replaced (a new master too when the master is gone); a new one is replaced once; a
    /// command whose session ends while it runs fails with the cause.
    async fn deliver(
        &self,
        argv: &[OsString],
        as_login_user: bool,
        env: &[(String, String)],
        stdin: Option<&[u8]>,
        timeout: std::time::Duration,
    ) -> Result<CommandOutput, TransportError> {
        let display = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let attempts = async {
            let mut replaced = false;
            // Each stale idle session is dropped by one pass; a new one is tried twice at most.
            for _ in 0..session::SESSIONS_PER_HOST + 2 {
                let conn = self
                    .master
                    .connected(&self.os_user)
                    .await
                    .map_err(|c| self.unreachable(c))?;
                let user = match as_login_user {
                    true => conn.login_user.as_str(),
                    false => self.os_user.as_str(),
                };
                let words = Self::remote_argv(env, argv);
                match conn.run(user, &words, stdin).await {
                    Outcome::Ran {
                        code,
                        stdout,
                        stderr,
                    } => {
                        return Ok(CommandOutput {
                            code: Some(code),
                            stdout,
                            stderr: String::from_utf8_lossy(&stderr).into_owned(),
                        })
                    }
                    Outcome::Denied(said) => {
                        return Err(TransportError::Denied {
                            host: self.host_label(),
                            user: self.os_user.clone(),
                            message: cause::cause(&self.spec, &said),
                        })
                    }
                    Outcome::NotStarted { fresh: false, .. } => {}
                    Outcome::NotStarted {
                        master_gone, cause, ..
                    } if !replaced => {
                        tracing::debug!(host = %self.host_label(), %cause, "ssh session did not start: replacing it");
                        replaced = true;
                        match master_gone {
                            true => self.master.forget(&conn).await,
                            false => self.master.forget_if_dead(&conn).await,
                        }
                    }
                    Outcome::NotStarted { cause, .. } => {
                        self.master.forget_if_dead(&conn).await;
                        return Err(self.unreachable(format!(
                            "no remote session could run {display}, twice: {cause}"
                        )));
                    }
                    Outcome::Lost(cause) => {
                        self.master.forget_if_dead(&conn).await;
                        return Err(self.unreachable(format!(
                            "the remote session ended while {display} ran (it may have run in part): {cause}"
                        )));
                    }
                }
            }
            Err(self.unreachable(format!("no remote session could run {display}")))
        };
        let began = std::time::Instant::now();
        let done = tokio::time::timeout(timeout, attempts).await;
        let shown = &display;
        tracing::debug!(host = %self.spec.host, took = ?began.elapsed(), "ssh command: {shown}");
        done.map_err(|_| TransportError::Timeout {
            host: self.host_label(),
            command: display.clone(),
            timeout,
        })?
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

    /// The output of `WORDS… PATH`; None when PATH does not exist.
    async fn output_of(
        &self,
        op: &'static str,
        words: &[&str],
        path: &Path,
    ) -> Result<Option<CommandOutput>, TransportError> {
        let args = argv(words.iter().copied()).into_iter().chain([path.into()]);
        let out = self.exec(args.collect(), &[], None, FILE_TIMEOUT).await?;
        match out.success() {
            true => Ok(Some(out)),
            false if is_missing(&out.stderr) => Ok(None),
            false => Err(self.io_err(op, path, out.stderr.trim())),
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

/// One word for a POSIX shell: as is when it holds only characters no shell treats specially,
/// else in single quotes (a `'` inside becomes `'\''`). Any bytes, UTF-8 or not.
fn shell_word(w: &[u8]) -> Vec<u8> {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"_-./=:@%+,".contains(b);
    if !w.is_empty() && w.iter().all(plain) {
        return w.to_vec();
    }
    let mut q = vec![b'\''];
    for &b in w {
        match b {
            b'\'' => q.extend_from_slice(b"'\\''"),
            _ => q.push(b),
        }
    }
    q.push(b'\'');
    q
}

/// Close every master connection this process opened (`ssh -O exit`). The CLI calls it before it
/// exits.
pub async fn close_all() {
    master::close_masters(None).await;
}

/// Close the master connection to one destination, if one is open.
pub async fn close(spec: &SshSpec) {
    master::close_masters(Some(spec)).await;
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

    async fn check_access(&self) -> Result<(), TransportError> {
        // A session as os_user exists: its start saw the login and the switch work.
        if let Some(c) = self.master.current().await {
            if c.pool(&self.os_user).has_session() {
                return Ok(());
            }
        }
        let out = self
            .deliver(&argv(["id", "-un"]), false, &[], None, FILE_TIMEOUT)
            .await?;
        let who = out.stdout_text().trim().to_string();
        if out.success() && who == self.os_user {
            return Ok(());
        }
        Err(TransportError::Denied {
            host: self.host_label(),
            user: self.os_user.clone(),
            message: match out.success() {
                true => format!("commands run as {who}"),
                false => cause::cause(&self.spec, &out.stderr),
            },
        })
    }

    async fn run(&self, cmd: &CommandSpec) -> Result<CommandOutput, TransportError> {
        let mut v = vec![cmd.program.clone().into_os_string()];
        v.extend(cmd.args.iter().cloned());
        self.exec_as(v, cmd.as_login_user, &cmd.env, None, cmd.timeout)
            .await
    }

    async fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        let out = self.output_of("read", &["cat", "--"], path).await?;
        Ok(out.map(|o| o.stdout))
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), TransportError> {
        // Three argv commands over the session (each a round trip, no shell text): write the
        // temporary file beside the target, set its mode, rename it over the target. The
        // temporary file is removed when a step fails.
        let tmp = temp_beside(path);
        let mut of = std::ffi::OsString::from("of=");
        of.push(tmp.as_os_str());
        let mut write = argv(["dd", "status=none", "conv=fsync"]);
        write.push(of);
        let mode = format!("{mode:o}");
        let steps = async {
            self.file_op("write", path, write, Some(contents)).await?;
            let chmod = argv(["chmod", mode.as_str(), "--"])
                .into_iter()
                .chain([tmp.clone().into()]);
            self.file_op("chmod", path, chmod.collect(), None).await?;
            let mv = argv(["mv", "-f", "-T", "--"])
                .into_iter()
                .chain([tmp.clone().into(), path.into()]);
            self.file_op("rename", path, mv.collect(), None).await
        };
        match steps.await {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.rm("-f", &tmp).await;
                Err(e)
            }
        }
    }

    async fn remove_file(&self, path: &Path) -> Result<(), TransportError> {
        self.rm("-f", path).await
    }

    async fn list_dir(&self, path: &Path) -> Result<Option<Vec<String>>, TransportError> {
        let out = self
            .output_of("list", &["ls", "-A", "-1", "--"], path)
            .await?;
        Ok(out.map(|o| o.stdout_text().lines().map(str::to_string).collect()))
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
        let text = out.stdout_text();
        let devices: Vec<&str> = text.lines().collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_its_argv_with_env_only_when_it_has_one() {
        let env = [("PGPASSFILE".to_string(), "/home/p/.pgpass".to_string())];
        let line = |words: Vec<OsString>| {
            words
                .iter()
                .map(|w| w.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let words = SshTransport::remote_argv(&env, &argv(["pg_basebackup", "-w"]));
        assert_eq!(
            line(words),
            "env PGPASSFILE=/home/p/.pgpass pg_basebackup -w"
        );
        assert_eq!(
            line(SshTransport::remote_argv(&[], &argv(["id", "-un"]))),
            "id -un"
        );
    }

    /// A systemd node's stop and its unit's reading, as the remote sessions run them: the stop
    /// over a session of the login user itself through `sudo -n systemctl` (root's sudo, or the
    /// ssh user's sudo rule; SPEC §1d), the reading (no privilege needed) over a session of the
    /// os_user (which switched once: runuser as root, `sudo -n -u` as another login user,
    /// nothing as the os_user itself; [`session`]).
    #[test]
    fn a_systemd_stop_runs_through_sudo_as_the_login_user() {
        use crate::config::service::{command, show_unit, Control, StopMode};
        let mut n = crate::observe::fixtures::node("n1", 0, crate::config::DesiredRole::Primary);
        n.service = crate::config::Service::Systemd {
            unit: "postgresql-16.service".into(),
        };
        let line = |argv: &[OsString]| {
            SshTransport::remote_argv(&[], argv)
                .iter()
                .map(|w| w.to_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let stop = command(&n, Control::Stop(StopMode::Fast));
        assert!(crate::config::service::as_login_user(&n));
        assert_eq!(line(&stop), "sudo -n systemctl stop postgresql-16.service");
        assert_eq!(
            line(&show_unit("postgresql-16.service")),
            "systemctl show postgresql-16.service -p KillSignal -p ExecStop -p KillMode"
        );
    }
}
