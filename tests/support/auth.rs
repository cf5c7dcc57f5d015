//! How a test cluster authenticates, production's way by default: scram-sha-256 on every TCP
//! line (normal and replication), peer on the Unix socket (which nothing uses), a generated
//! password for the superuser `postgres` and one for the replication role `replicator`.
//!
//! The secrets live in their own directory beside the cluster's (`/tmp/pgtopo-secrets-XXXX`,
//! owned by the OS user, 0700), never under `DIR` (the security suite searches `DIR` for them):
//! - `connect.password`, `replication.password`: what the default topology's `{file: …}`
//!   references give pgtopo, as a user's topology would;
//! - `pgpass`: the passfile of the harness's own tools (psql, pg_basebackup, given through
//!   `PGPASSFILE` to those children only) and of the standbys the harness clones
//!   (`passfile=` in their primary_conninfo).
//!
//! [`Auth::Trust`] is the old world (trust on every line, no password) for the few tests that
//! need it; tests/support/mod.rs lists them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::os::{chown_to, is_root, set_mode};

/// The replication role of the default world.
pub const REPLICATION_USER: &str = "replicator";

/// How the servers authenticate TCP connections.
pub enum Auth {
    /// scram-sha-256 with the passwords in [`Secrets`].
    Password(Secrets),
    /// trust (and no password anywhere).
    Trust,
}

/// The cluster's passwords and the files that hold them.
pub struct Secrets {
    pub superuser: String,
    pub replication: String,
    dir: tempfile::TempDir,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A password no other cluster has.
pub fn generated_password(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{what}-{}-{nanos}-{n}", std::process::id())
}

/// A `.pgpass` field (`:` and `\` escaped).
fn pgpass_field(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

impl Secrets {
    /// The secrets directory with its three files, owned by `os_user`.
    pub fn new(superuser: String, os_user: &str) -> Secrets {
        let replication = generated_password("repl");
        let dir = tempfile::Builder::new()
            .prefix("pgtopo-secrets-")
            .tempdir_in("/tmp")
            .expect("secrets dir");
        let s = Secrets {
            superuser,
            replication,
            dir,
        };
        if is_root() {
            chown_to(s.dir.path(), os_user);
        }
        set_mode(s.dir.path(), 0o700);
        let pgpass = format!(
            "*:*:*:postgres:{}\n*:*:*:{REPLICATION_USER}:{}\n",
            pgpass_field(&s.superuser),
            pgpass_field(&s.replication)
        );
        for (file, text) in [
            (s.connect_file(), s.superuser.clone()),
            (s.replication_file(), s.replication.clone()),
            (s.passfile(), pgpass),
        ] {
            write_secret(&file, &text, os_user);
        }
        s
    }

    pub fn connect_file(&self) -> PathBuf {
        self.dir.path().join("connect.password")
    }

    pub fn replication_file(&self) -> PathBuf {
        self.dir.path().join("replication.password")
    }

    /// The harness's passfile (superuser and replication role, any host).
    pub fn passfile(&self) -> PathBuf {
        self.dir.path().join("pgpass")
    }
}

fn write_secret(path: &Path, text: &str, os_user: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    if is_root() {
        chown_to(path, os_user);
    }
    set_mode(path, 0o600);
}

impl Auth {
    /// The pg_hba.conf method of TCP lines.
    pub fn method(&self) -> &'static str {
        match self {
            Auth::Password(_) => "scram-sha-256",
            Auth::Trust => "trust",
        }
    }

    pub fn secrets(&self) -> Option<&Secrets> {
        match self {
            Auth::Password(s) => Some(s),
            Auth::Trust => None,
        }
    }

    /// The role standbys stream as.
    pub fn replication_user(&self) -> &'static str {
        match self {
            Auth::Password(_) => REPLICATION_USER,
            Auth::Trust => "postgres",
        }
    }

    /// The `connect:` and `replication:` sections of the default topology: the passwords by
    /// `{file: …}` reference, as a user writes them; with trust, standbys connect as `postgres`
    /// and pgtopo's generated rules trust them.
    pub fn topology_yaml(&self) -> String {
        match self {
            Auth::Password(s) => format!(
                "connect: {{user: postgres, password: {{file: {}}}}}\n\
                 replication: {{user: {REPLICATION_USER}, password: {{file: {}}}, hba_method: scram-sha-256}}",
                s.connect_file().display(),
                s.replication_file().display()
            ),
            Auth::Trust => "replication: {user: postgres, hba_method: trust}".into(),
        }
    }

    /// `passfile=…` for a conninfo the harness writes (empty with trust).
    pub fn conninfo_passfile(&self) -> String {
        match self {
            Auth::Password(s) => format!(" passfile={}", s.passfile().display()),
            Auth::Trust => String::new(),
        }
    }
}

/// Remove from the os_user's `~/.pgpass` the blocks pgtopo wrote for this cluster: those whose
/// every entry is one of `ours` (host, port: the cluster's nodes, whose ports it still claims,
/// so no other cluster's block names them). Under the lock pgtopo's writers take
/// (`~/.pgpass.lock`), by an atomic rename; every other line stays byte for byte. Without this
/// the file shared by every test (and the machine's operators) grows by a block per test.
pub fn forget_pgpass_blocks(os_user: &str, ours: &[(String, u16)]) {
    use nix::fcntl::{Flock, FlockArg};
    let Some(home) = nix::unistd::User::from_name(os_user)
        .ok()
        .flatten()
        .map(|u| u.dir)
    else {
        return;
    };
    let path = home.join(".pgpass");
    let Ok(lock) = std::fs::File::open(home.join(".pgpass.lock")) else {
        return;
    };
    let Ok(_held) = Flock::lock(lock, FlockArg::LockExclusive) else {
        return;
    };
    let Ok(text) = std::fs::read(&path) else {
        return;
    };
    let kept = without_blocks_of(&text, ours);
    if kept.len() == text.len() {
        return;
    }
    let tmp = home.join(format!(".pgpass.harness-{}", std::process::id()));
    write_secret(&tmp, &String::from_utf8_lossy(&kept), os_user);
    let _ = std::fs::rename(&tmp, &path);
}

/// `text` without the pgtopo blocks whose entries all name one of `ours`.
fn without_blocks_of(text: &[u8], ours: &[(String, u16)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut block: Option<Vec<&[u8]>> = None;
    for line in text.split_inclusive(|&b| b == b'\n') {
        let t = String::from_utf8_lossy(line);
        let t = t.trim();
        match &mut block {
            None if t.starts_with("# BEGIN pgtopo managed:") => block = Some(vec![line]),
            None => out.extend_from_slice(line),
            Some(lines) => {
                lines.push(line);
                if t.starts_with("# END pgtopo managed:") {
                    let lines = block.take().unwrap_or_default();
                    let entries = &lines[1..lines.len() - 1];
                    let is_ours = |l: &&[u8]| {
                        let l = String::from_utf8_lossy(l);
                        let f: Vec<&str> = l.splitn(3, ':').collect();
                        let port = f.get(1).and_then(|p| p.parse::<u16>().ok());
                        ours.iter().any(|(h, p)| f[0] == h && port == Some(*p))
                    };
                    if entries.is_empty() || !entries.iter().all(is_ours) {
                        lines.iter().for_each(|l| out.extend_from_slice(l));
                    }
                }
            }
        }
    }
    // An unterminated block stays as it is.
    block
        .unwrap_or_default()
        .iter()
        .for_each(|l| out.extend_from_slice(l));
    out
}
