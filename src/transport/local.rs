//! The local transport: this machine, tokio::process, run as the node's os_user when pgtopo runs
//! as root and the os_user is another user.
//!
//! Design:
//! - Commands are argv only. As root with another os_user the child switches to it itself
//!   between fork and exec — setgroups(os_user's groups), setgid, setuid, all plain system calls
//!   — with HOME, USER, LOGNAME and SHELL set to the os_user's and the rest of the environment
//!   kept, as `runuser -u OS_USER --` would do without its fork, exec and PAM session (5–10 ms a
//!   command here, paid on every pg_ctl inside a switchover's writes-unavailable window). The
//!   working directory is `/` so tools never complain that they cannot enter root's home.
//! - Every command runs in its own process group; on timeout the whole group is killed
//!   (SIGKILL), so the programs it started die with it. `pg_ctl` detaches the postmaster into its
//!   own session, so a timed-out `pg_ctl start` never takes the server down with it. Callers must
//!   redirect a daemon's output (`pg_ctl -l FILE`): output is collected until the pipes close.
//! - File operations run in the blocking pool as pgtopo's own user (root can read and write
//!   everything); files and directories it creates are chowned to os_user when pgtopo is root.
//!   Writes are atomic: temp file in the same directory, write, fsync, chmod, chown, rename, fsync
//!   of the directory.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;

use super::{CommandOutput, CommandSpec, Transport, TransportError};

const HOST: &str = "local";

/// This machine, acting as `os_user`.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    pub os_user: String,
    /// os_user's account, looked up once when commands must switch to it.
    account: std::sync::Arc<std::sync::OnceLock<Result<Account, String>>>,
}

/// What switching to os_user needs, resolved before fork (the child only makes system calls).
#[derive(Debug)]
struct Account {
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
    groups: Vec<nix::unistd::Gid>,
    env: [(&'static str, OsString); 4],
}

impl LocalTransport {
    pub fn new(os_user: impl Into<String>) -> Self {
        LocalTransport {
            os_user: os_user.into(),
            account: Default::default(),
        }
    }

    fn account(&self) -> Result<&Account, String> {
        self.account
            .get_or_init(|| {
                let u = match nix::unistd::User::from_name(&self.os_user) {
                    Ok(Some(u)) => u,
                    Ok(None) => return Err(format!("no OS user named {:?}", self.os_user)),
                    Err(e) => {
                        return Err(format!("cannot look up OS user {:?}: {e}", self.os_user))
                    }
                };
                let name = std::ffi::CString::new(u.name.clone()).map_err(|e| e.to_string())?;
                let groups = nix::unistd::getgrouplist(&name, u.gid)
                    .map_err(|e| format!("groups of {:?}: {e}", self.os_user))?;
                Ok(Account {
                    uid: u.uid,
                    gid: u.gid,
                    groups,
                    env: [
                        ("HOME", u.dir.into_os_string()),
                        ("USER", OsString::from(&u.name)),
                        ("LOGNAME", OsString::from(&u.name)),
                        ("SHELL", u.shell.into_os_string()),
                    ],
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether commands must switch user: pgtopo is root and os_user is someone else.
    pub fn switches_user(&self) -> bool {
        nix::unistd::geteuid().is_root() && current_user_name().as_deref() != Some(&self.os_user)
    }

    /// uid and gid of os_user, when pgtopo is root and must hand files over to it.
    fn owner(&self) -> Result<Option<(nix::unistd::Uid, nix::unistd::Gid)>, String> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        self.account().map(|a| Some((a.uid, a.gid)))
    }
}

fn current_user_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn io_err(op: &'static str, path: &Path, e: impl std::fmt::Display) -> TransportError {
    TransportError::Io {
        host: HOST.into(),
        op,
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Run a blocking file operation in tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    op: &'static str,
    path: &Path,
    f: impl FnOnce() -> Result<T, TransportError> + Send + 'static,
) -> Result<T, TransportError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io_err(op, path, e))?
}

#[async_trait]
impl Transport for LocalTransport {
    fn describe(&self) -> String {
        HOST.into()
    }

    async fn check_access(&self) -> Result<(), TransportError> {
        if !self.switches_user() {
            return Ok(());
        }
        self.account()
            .map(|_| ())
            .map_err(|message| TransportError::Denied {
                host: HOST.into(),
                user: self.os_user.clone(),
                message,
            })
    }

    async fn run(&self, cmd: &CommandSpec) -> Result<CommandOutput, TransportError> {
        let mut c = tokio::process::Command::new(&cmd.program);
        c.args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        super::clean_env(&mut c);
        if self.switches_user() && !cmd.as_login_user {
            let a = self.account().map_err(|message| TransportError::Spawn {
                host: HOST.into(),
                command: cmd.display(),
                message,
            })?;
            let (uid, gid, groups) = (a.uid, a.gid, a.groups.clone());
            c.current_dir("/").envs(a.env.iter().map(|(k, v)| (k, v)));
            // SAFETY: between fork and exec the closure only makes async-signal-safe system
            // calls (setgroups, setgid, setuid) on values prepared before the fork.
            unsafe {
                c.pre_exec(move || {
                    nix::unistd::setgroups(&groups)?;
                    nix::unistd::setgid(gid)?;
                    nix::unistd::setuid(uid)?;
                    Ok(())
                });
            }
        }
        c.envs(cmd.env.iter().map(|(k, v)| (k, v)));
        let child = c.spawn().map_err(|e| TransportError::Spawn {
            host: HOST.into(),
            command: cmd.display(),
            message: e.to_string(),
        })?;
        let pid = child.id();
        match tokio::time::timeout(cmd.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(CommandOutput {
                code: out.status.code(),
                stdout: out.stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
            Ok(Err(e)) => Err(TransportError::Spawn {
                host: HOST.into(),
                command: cmd.display(),
                message: e.to_string(),
            }),
            Err(_) => {
                // The child itself was killed when its future was dropped; end the rest of its
                // process group (whatever it started).
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                Err(TransportError::Timeout {
                    host: HOST.into(),
                    command: cmd.display(),
                    timeout: cmd.timeout,
                })
            }
        }
    }

    async fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        let p = path.to_path_buf();
        blocking("read", path, move || match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &p, e)),
        })
        .await
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), TransportError> {
        let owner = self.owner().map_err(|m| io_err("write", path, m))?;
        let p = path.to_path_buf();
        let contents = contents.to_vec();
        blocking("write", path, move || {
            write_atomic(&p, &contents, mode, owner).map_err(|e| io_err("write", &p, e))
        })
        .await
    }

    async fn remove_file(&self, path: &Path) -> Result<(), TransportError> {
        let p = path.to_path_buf();
        blocking("remove", path, move || match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &p, e)),
        })
        .await
    }

    async fn list_dir(&self, path: &Path) -> Result<Option<Vec<String>>, TransportError> {
        let p = path.to_path_buf();
        blocking("list", path, move || {
            let rd = match std::fs::read_dir(&p) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_err("list", &p, e)),
            };
            let mut names = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| io_err("list", &p, e))?;
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
            names.sort();
            Ok(Some(names))
        })
        .await
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), TransportError> {
        let (f, t) = (from.to_path_buf(), to.to_path_buf());
        blocking("rename", from, move || {
            std::fs::rename(&f, &t)
                .map_err(|e| io_err("rename", &f, format!("to {}: {e}", t.display())))?;
            if let Some(dir) = t.parent() {
                fsync_dir(dir).map_err(|e| io_err("rename", &f, e))?;
            }
            Ok(())
        })
        .await
    }

    async fn create_dir(&self, path: &Path, mode: u32) -> Result<(), TransportError> {
        let owner = self.owner().map_err(|m| io_err("mkdir", path, m))?;
        let p = path.to_path_buf();
        blocking("mkdir", path, move || {
            create_dir_owned(&p, mode, owner).map_err(|e| io_err("mkdir", &p, e))
        })
        .await
    }

    async fn move_into(
        &self,
        from: &Path,
        names: &[(String, String)],
        to: &Path,
    ) -> Result<bool, TransportError> {
        let (f, t, names) = (from.to_path_buf(), to.to_path_buf(), names.to_vec());
        // renameat2(2) fails with EXDEV across filesystems (nothing is ever copied) and, with
        // RENAME_NOREPLACE, with EEXIST over an existing name.
        blocking("move", from, move || {
            Ok(names.iter().all(|(a, b)| {
                nix::fcntl::renameat2(
                    None,
                    &f.join(a),
                    None,
                    &t.join(b),
                    nix::fcntl::RenameFlags::RENAME_NOREPLACE,
                )
                .is_ok()
            }))
        })
        .await
    }

    async fn remove_tree(&self, path: &Path) -> Result<(), TransportError> {
        let p = path.to_path_buf();
        blocking("remove", path, move || match std::fs::remove_dir_all(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &p, e)),
        })
        .await
    }
}

/// Temp file beside `path`, write, fsync, chmod, chown, rename over `path`, fsync the directory.
fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".pgtopo-tmp-")
        .tempfile_in(&dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(
            std::os::fd::AsRawFd::as_raw_fd(tmp.as_file()),
            Some(uid),
            Some(gid),
        )
        .map_err(std::io::Error::from)?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    fsync_dir(&dir)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Create `path` and its missing parents; the ones created are chowned to `owner`, and `path`
/// gets `mode`.
fn create_dir_owned(
    path: &Path,
    mode: u32,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = Some(path);
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    std::fs::create_dir_all(path)?;
    for p in missing.iter().rev() {
        if let Some((uid, gid)) = owner {
            nix::unistd::chown(p, Some(uid), Some(gid)).map_err(std::io::Error::from)?;
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, Instant};

    fn me() -> LocalTransport {
        LocalTransport::new(current_user_name().expect("current user"))
    }

    #[tokio::test]
    async fn runs_argv_and_captures_output() {
        let t = me();
        let out = t
            .run(&CommandSpec::new("/bin/echo").args(["a b", "$HOME", "'c'"]))
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, b"a b $HOME 'c'\n");
        let out = t
            .run(&CommandSpec::new("/bin/ls").arg("/nonexistent-pgtopo"))
            .await
            .unwrap();
        assert_eq!(out.code, Some(2));
        assert!(out.stderr.contains("nonexistent-pgtopo"), "{}", out.stderr);
    }

    #[tokio::test]
    async fn passes_environment() {
        let out = me()
            .run(&CommandSpec::new("/usr/bin/env").env("PGTOPO_TEST_VAR", "x=1"))
            .await
            .unwrap();
        assert!(out
            .stdout_text()
            .lines()
            .any(|l| l == "PGTOPO_TEST_VAR=x=1"));
    }

    #[tokio::test]
    async fn no_caller_pg_variable_reaches_a_command() {
        // A name no other test reads: every `PG…` of the caller is removed alike.
        std::env::set_var("PGTOPO_UNIT_STRAY", "wrong");
        let out = me()
            .run(&CommandSpec::new("/usr/bin/env").env("PGPASSFILE", "/p/.pgpass"))
            .await
            .unwrap();
        let text = out.stdout_text();
        assert!(!text.contains("PGTOPO_UNIT_STRAY"), "{text}");
        assert!(text.lines().any(|l| l == "PGPASSFILE=/p/.pgpass"), "{text}");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let err = me()
            .run(&CommandSpec::new("/nonexistent/pgtopo-nothing"))
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Spawn { .. }), "{err}");
    }

    /// PIDs of live processes whose argv is exactly `argv`.
    fn processes_with_argv(argv: &[&str]) -> Vec<u32> {
        let want: Vec<u8> = argv
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok() == Some(want.clone()))
            .collect()
    }

    /// Wait until no process has `argv`, up to `limit`.
    async fn wait_until_gone(argv: &[&str], limit: Duration) -> bool {
        use crate::apply::wait::{wait_until, Poll, WaitSpec};
        let spec = WaitSpec::new("the process to be gone", limit);
        wait_until(&spec, || async {
            match processes_with_argv(argv).is_empty() {
                true => Poll::Ready(()),
                false => Poll::Pending("still running".to_string()),
            }
        })
        .await
        .is_ok()
    }

    #[tokio::test]
    async fn timeout_kills_the_process_group() {
        // timeout(1) runs sleep as its child: a grandchild of pgtopo, as behind runuser.
        let secs = format!("{}.{}", 30, std::process::id());
        let start = Instant::now();
        let err = me()
            .run(
                &CommandSpec::new("timeout")
                    .args(["60", "sleep", &secs])
                    .timeout(Duration::from_millis(300)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(
            wait_until_gone(&["sleep", &secs], Duration::from_secs(3)).await,
            "the grandchild survived the timeout"
        );
    }

    #[tokio::test]
    async fn switches_to_postgres_when_root() {
        if !nix::unistd::geteuid().is_root()
            || nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .is_none()
        {
            return;
        }
        let t = LocalTransport::new("postgres");
        assert!(t.switches_user());
        let out = t
            .run(&CommandSpec::new("/usr/bin/id").arg("-un"))
            .await
            .unwrap();
        assert_eq!(out.stdout_text().trim(), "postgres");
        // A service manager's command (systemctl through sudo) stays root's.
        let out = t
            .run(&CommandSpec::new("/usr/bin/id").arg("-un").as_login_user())
            .await
            .unwrap();
        assert_eq!(out.stdout_text().trim(), "root");
        // The same user, groups, working directory and login environment that
        // `runuser -u postgres --` gives. runuser sets SHELL or not depending on
        // the caller's environment (CI has none), so SHELL is checked against
        // the passwd entry instead.
        let login = |out: &str| {
            out.lines()
                .filter(|l| {
                    ["HOME=", "USER=", "LOGNAME="]
                        .iter()
                        .any(|k| l.starts_with(k))
                })
                .map(str::to_string)
                .collect::<std::collections::BTreeSet<_>>()
        };
        let shell = nix::unistd::User::from_name("postgres")
            .unwrap()
            .unwrap()
            .shell;
        let shell = format!("SHELL={}", shell.display());
        for probe in ["id", "pwd", "env"] {
            let ours = t
                .run(&CommandSpec::new(probe))
                .await
                .unwrap()
                .stdout_text()
                .into_owned();
            let runuser = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--", probe])
                .current_dir("/")
                .output()
                .unwrap();
            let runuser = String::from_utf8_lossy(&runuser.stdout).into_owned();
            if probe == "env" {
                assert_eq!(login(&ours).len(), 3, "{ours}");
                assert_eq!(login(&ours), login(&runuser));
                assert!(ours.lines().any(|l| l == shell), "{ours}");
            } else {
                assert_eq!(ours, runuser, "{probe}");
            }
        }
        let out = t
            .run(&CommandSpec::new("/usr/bin/env").env("PGTOPO_TEST_VAR", "kept"))
            .await
            .unwrap();
        assert!(out
            .stdout_text()
            .lines()
            .any(|l| l == "PGTOPO_TEST_VAR=kept"));

        // Files it creates belong to postgres.
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        t.create_dir(&sub, 0o700).await.unwrap();
        let pg_uid = nix::unistd::User::from_name("postgres")
            .unwrap()
            .unwrap()
            .uid
            .as_raw();
        assert_eq!(
            std::fs::metadata(dir.path().join("a")).unwrap().uid(),
            pg_uid
        );
        assert_eq!(std::fs::metadata(&sub).unwrap().uid(), pg_uid);
        let f = sub.join("f");
        t.write_file_atomic(&f, b"x", 0o600).await.unwrap();
        let m = std::fs::metadata(&f).unwrap();
        assert_eq!(m.uid(), pg_uid);
        assert_eq!(m.mode() & 0o777, 0o600);
    }

    #[tokio::test]
    async fn moves_by_rename_only_and_removes_a_garbage_tree() {
        let t = me();
        let dir = tempfile::tempdir().unwrap();
        let (wal, aside) = (dir.path().join("pg_wal"), dir.path().join("aside"));
        std::fs::create_dir_all(&wal).unwrap();
        std::fs::create_dir_all(aside.join("older")).unwrap();
        let seg = "000000010000000000000005".to_string();
        let names = vec![(seg.clone(), seg.clone())];
        std::fs::write(wal.join(&seg), b"old wal").unwrap();
        // tmpfs is another file system: nothing moves (GNU mv would have copied).
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        if std::fs::metadata(shm.path()).unwrap().dev() != std::fs::metadata(&wal).unwrap().dev() {
            assert!(!t.move_into(&wal, &names, shm.path()).await.unwrap());
            assert!(wal.join(&seg).exists());
        }
        assert!(t.move_into(&wal, &names, &aside).await.unwrap());
        assert!(aside.join(&seg).exists() && !wal.join(&seg).exists());
        // Back under a new name, never over an existing one.
        let future = "000000020000000000000009".to_string();
        std::fs::write(wal.join(&future), b"new wal").unwrap();
        assert!(!t
            .move_into(&aside, &[(seg.clone(), future.clone())], &wal)
            .await
            .unwrap());
        assert_eq!(std::fs::read(wal.join(&future)).unwrap(), b"new wal");
        let next = "00000002000000000000000A".to_string();
        assert!(t
            .move_into(&aside, &[(seg.clone(), next.clone())], &wal)
            .await
            .unwrap());
        assert_eq!(std::fs::read(wal.join(&next)).unwrap(), b"old wal");
        assert!(!aside.join(&seg).exists());
        t.remove_tree(&aside).await.unwrap();
        assert!(!aside.exists());
        t.remove_tree(&aside).await.unwrap();
    }

    #[tokio::test]
    async fn files_round_trip() {
        let t = me();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("conf");
        assert_eq!(t.read_file(&f).await.unwrap(), None);
        t.write_file_atomic(&f, b"one\n", 0o640).await.unwrap();
        t.write_file_atomic(&f, b"two\n", 0o600).await.unwrap();
        assert_eq!(t.read_file(&f).await.unwrap().unwrap(), b"two\n");
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        // No temp file is left behind.
        assert_eq!(
            t.list_dir(dir.path()).await.unwrap().unwrap(),
            vec!["conf".to_string()]
        );
        let g = dir.path().join("moved");
        t.rename(&f, &g).await.unwrap();
        assert_eq!(t.read_file(&f).await.unwrap(), None);
        t.remove_file(&g).await.unwrap();
        t.remove_file(&g).await.unwrap();
        assert_eq!(t.list_dir(&dir.path().join("nope")).await.unwrap(), None);
        let d = dir.path().join("x/y");
        t.create_dir(&d, 0o700).await.unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        t.create_dir(&d, 0o700).await.unwrap();
    }
}
