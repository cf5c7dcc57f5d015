//! `write_pgpass`: the replication password in the os_user's `~/.pgpass` (mode 0600), one line
//! `host:port:*:user:password` per entry, so that pg_basebackup, pg_rewind and the WAL receiver
//! find it without a password in any conninfo. The password comes from the topology's
//! `replication.password` reference, resolved now; it is written only into this file, never
//! logged, and the step's messages never include the file.
//!
//! Nodes that share a host and an os_user share the file, so it has one writer at a time: read,
//! merge, and rename under `flock` on `~/.pgpass.lock` only if the file is still what was read
//! (else read again). pgtopo's lines live in a block marked with the cluster's name and system
//! identifier, first in the file so no wildcard line shadows them; every other line stays byte
//! for byte.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::config::Secret;
use crate::plan::{PgpassEntry, WritePgpassParams};
use crate::transport::{CommandSpec, Transport};

/// Escape a .pgpass field (`:` and `\\`).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// Split a .pgpass line into its fields, honouring escapes.
fn fields(line: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    let mut it = line.iter();
    while let Some(&c) = it.next() {
        match c {
            b'\\' => {
                if let Some(&n) = it.next() {
                    out.last_mut().expect("one field").push(n);
                }
            }
            b':' => out.push(Vec::new()),
            c => out.last_mut().expect("one field").push(c),
        }
    }
    out
}

/// The first and last line of the block `owner` (a cluster: [`owner`]) keeps.
fn markers(owner: &str) -> (String, String) {
    (
        format!("# BEGIN pgtopo managed: {owner}"),
        format!("# END pgtopo managed: {owner}"),
    )
}

/// The replication entry a line is for (host, port, `*` or `replication`, user), if it is one.
fn entry_of(line: &[u8]) -> Option<PgpassEntry> {
    let text = std::str::from_utf8(line).ok()?;
    let text = text.trim_end_matches(['\n', '\r']);
    if text.trim_start().starts_with('#') {
        return None;
    }
    let f = fields(text.as_bytes());
    let s = |i: usize| String::from_utf8(f.get(i)?.clone()).ok();
    if f.len() < 5 || !matches!(s(2)?.as_str(), "*" | "replication") {
        return None;
    }
    Some(PgpassEntry {
        host: s(0)?,
        port: s(1)?.parse().ok()?,
        user: s(3)?,
    })
}

/// The file with `owner`'s block first, then every other line byte for byte.
///
/// The block holds `entries`, and the entries already in it that are still in `known` (the
/// replication entries of the cluster's present nodes): nodes that share the file each add
/// theirs, and lines for a host or port the cluster no longer has go. A line outside the block
/// for one of the block's entries is the older form of it (or would shadow it) and goes too.
/// The block is sorted, so the result does not depend on which node wrote first.
pub fn merge(
    current: &[u8],
    owner: &str,
    entries: &[PgpassEntry],
    known: &[PgpassEntry],
    password: &Secret,
) -> Vec<u8> {
    let (begin, end) = markers(owner);
    let is = |line: &[u8], m: &str| line.trim_ascii() == m.as_bytes();
    let mut block: Vec<PgpassEntry> = entries.to_vec();
    let mut others: Vec<&[u8]> = Vec::new();
    // The lines of an open block; an unterminated one is not pgtopo's and stays as it is.
    let mut inside: Option<Vec<&[u8]>> = None;
    // Where our block stood among the other lines.
    let mut at: Option<usize> = None;
    for line in current.split_inclusive(|&b| b == b'\n') {
        match &mut inside {
            None if is(line, &begin) => {
                at.get_or_insert(others.len());
                inside = Some(vec![line]);
            }
            None => others.push(line),
            Some(_) if is(line, &end) => {
                let lines = inside.take().unwrap_or_default();
                let found = lines.iter().filter_map(|l| entry_of(l));
                block.extend(found.filter(|e| known.contains(e)));
            }
            Some(lines) => lines.push(line),
        }
    }
    if let Some(open) = inside {
        at = None;
        others.extend(open);
    }
    // The block stays where it stands when only other clusters' blocks, comments and blank
    // lines precede it (their entries name only their own hosts and ports), so that two
    // clusters sharing the file do not move each other's blocks on every write; else (a line of
    // the operator's, a wildcard perhaps, could shadow it) it goes first.
    let at = at
        .filter(|&i| only_pgtopo_blocks(&others[..i]))
        .unwrap_or(0);
    block.sort_by(|a, b| (&a.host, a.port, &a.user).cmp(&(&b.host, b.port, &b.user)));
    block.dedup();
    let keep = |line: &[u8]| !entry_of(line).is_some_and(|e| block.contains(&e));
    let mut out: Vec<u8> = Vec::new();
    for line in others[..at].iter().filter(|l| keep(l)) {
        out.extend_from_slice(line);
    }
    out.extend_from_slice(format!("{begin}\n").as_bytes());
    for e in &block {
        out.extend_from_slice(
            format!(
                "{}:{}:*:{}:{}\n",
                esc(&e.host),
                e.port,
                esc(&e.user),
                esc(password.expose())
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(format!("{end}\n").as_bytes());
    for line in others[at..].iter().filter(|l| keep(l)) {
        out.extend_from_slice(line);
    }
    out
}

/// Whether `lines` hold nothing but pgtopo blocks (of any cluster), comments and blank lines.
fn only_pgtopo_blocks(lines: &[&[u8]]) -> bool {
    let mut in_block = false;
    lines.iter().all(|l| {
        let t = l.trim_ascii();
        if t.starts_with(b"# BEGIN pgtopo managed:") {
            in_block = true;
        } else if t.starts_with(b"# END pgtopo managed:") {
            in_block = false;
        }
        in_block || t.is_empty() || t.starts_with(b"#")
    })
}

/// The os_user's home on the node's host (`getent passwd`).
async fn home(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    let user = ctx.node(node)?.os_user.clone();
    let out = ctx
        .run_tool(
            node,
            &CommandSpec::new("getent")
                .arg("passwd")
                .arg(&user)
                .timeout(Duration::from_secs(30)),
        )
        .await?;
    let text = out.stdout_text();
    let f: Vec<&str> = text.trim().split(':').collect();
    match f.get(5) {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h)),
        _ => Err(StepError::new(format!(
            "{node}: no home directory for {user}"
        ))),
    }
}

/// Path of the os_user's .pgpass.
pub async fn pgpass_path(ctx: &StepContext, node: &str) -> Result<PathBuf, StepError> {
    Ok(home(ctx, node).await?.join(".pgpass"))
}

fn password(ctx: &StepContext) -> Result<Secret, StepError> {
    let Some(r) = &ctx.desired.replication.password else {
        return Err(StepError::new(
            "replication.password is not set in the topology: there is no password to keep in .pgpass",
        ));
    };
    r.resolve().map_err(|e| StepError::new(e.to_string()))
}

/// The replication entries of the cluster's present nodes: the block keeps no other.
fn known(ctx: &StepContext) -> Vec<PgpassEntry> {
    let user = &ctx.desired.replication.user;
    ctx.desired
        .present()
        .map(|n| PgpassEntry {
            host: n.host.clone(),
            port: n.port,
            user: user.clone(),
        })
        .collect()
}

async fn current(
    ctx: &StepContext,
    node: &str,
    path: &std::path::Path,
) -> Result<Option<Vec<u8>>, StepError> {
    ctx.transport(node)?
        .read_file(path)
        .await
        .map_err(|e| StepError::new(e.to_string()))
}

/// Who owns a block: the cluster's name and its system identifier (every node of a cluster
/// shares it, from initdb on), so that two clusters of one name (test clusters, staging and
/// production under one os_user) never take each other's lines. Read from the first of the
/// cluster's nodes that answers, the declared primary first.
async fn owner(ctx: &StepContext) -> Result<String, StepError> {
    const SQL: &str = "SELECT system_identifier::text FROM pg_control_system()";
    let primary = ctx.desired.primary();
    let others = ctx.desired.present().filter(|n| n.name != primary.name);
    for n in std::iter::once(primary).chain(others) {
        if let Ok(rows) = ctx.query(&n.name, SQL, &[]).await {
            if let Some(id) = rows.first().and_then(|r| r.get::<_, Option<String>>(0)) {
                return Ok(format!("cluster {}, system {id}", ctx.desired.cluster));
            }
        }
    }
    Err(StepError::new(
        "no node of the cluster answers, so its system identifier (which names pgtopo's lines \
         in .pgpass) is unknown",
    ))
}

/// The file `p` wants, from what is there now; None when that is what is there.
fn wanted(
    ctx: &StepContext,
    owner: &str,
    cur: Option<&[u8]>,
    p: &WritePgpassParams,
) -> Result<Option<Vec<u8>>, StepError> {
    let cur = cur.unwrap_or_default();
    let new = merge(cur, owner, &p.entries, &known(ctx), &password(ctx)?);
    Ok((new != cur).then_some(new))
}

pub async fn check(
    ctx: &StepContext,
    node: &str,
    p: &WritePgpassParams,
) -> Result<Freshness, StepError> {
    if ctx.desired.replication.password.is_none() {
        // No password in the topology (trust, peer or certificates): nothing to keep.
        return Ok(Freshness::Fresh);
    }
    let path = pgpass_path(ctx, node).await?;
    let owner = owner(ctx).await?;
    let cur = current(ctx, node, &path).await?;
    Ok(match wanted(ctx, &owner, cur.as_deref(), p)? {
        None => Freshness::Fresh,
        Some(_) => Freshness::Dirty(format!("{} lacks the replication entries", path.display())),
    })
}

/// Within one apply, the steps that write .pgpass files take turns (a step that waits finds the
/// file its predecessor wrote). Across processes the lock file and the comparison in [`replace`]
/// keep the writers apart.
static PGPASS_MERGE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How many times a write starts over when another writer changed the file meanwhile.
const ATTEMPTS: usize = 20;

pub async fn act(ctx: &StepContext, node: &str, p: &WritePgpassParams) -> Result<(), StepError> {
    let path = pgpass_path(ctx, node).await?;
    let owner = owner(ctx).await?;
    let _merging = PGPASS_MERGE.lock().await;
    for _ in 0..ATTEMPTS {
        let cur = current(ctx, node, &path).await?;
        let Some(new) = wanted(ctx, &owner, cur.as_deref(), p)? else {
            return Ok(());
        };
        let t = ctx.transport(node)?;
        if replace(t.as_ref(), node, &path, cur.as_deref(), &new).await? {
            return Ok(());
        }
    }
    Err(StepError::new(format!(
        "{node}: {} changed under every one of {ATTEMPTS} writes (another writer keeps changing it)",
        path.display()
    )))
}

/// Under `flock` on `<path>.lock` (held by every pgtopo that writes this file), rename `new`
/// over `path` if `path` still holds `old` (None: does not exist). Both travel as files beside
/// it (0600), never on a command line. `Ok(false)` when the file had changed.
async fn replace(
    t: &dyn Transport,
    node: &str,
    path: &Path,
    old: Option<&[u8]>,
    new: &[u8],
) -> Result<bool, StepError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let beside = |what: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".pgtopo-{what}-{}-{nanos}", std::process::id()));
        PathBuf::from(p)
    };
    let (new_tmp, old_tmp) = (beside("new"), beside("old"));
    let io = |e: crate::transport::TransportError| StepError::new(format!("{node}: {e}"));
    let script =
        "if [ -z \"$1\" ]; then [ ! -e \"$2\" ]; else cmp -s -- \"$1\" \"$2\"; fi || exit 75; \
                  mv -f -T -- \"$3\" \"$2\"";
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    let res = async {
        t.write_file_atomic(&new_tmp, new, 0o600)
            .await
            .map_err(io)?;
        if let Some(old) = old {
            t.write_file_atomic(&old_tmp, old, 0o600)
                .await
                .map_err(io)?;
        }
        let cmd = CommandSpec::new("flock")
            .args(["-w", "60", "-E", "76"])
            .arg(lock)
            .args(["sh", "-c", script, "sh"])
            .arg(old.map(|_| old_tmp.as_os_str()).unwrap_or_default())
            .arg(path.as_os_str())
            .arg(new_tmp.as_os_str())
            .timeout(Duration::from_secs(90));
        t.run(&cmd).await.map_err(io)
    }
    .await;
    for f in [&new_tmp, &old_tmp] {
        let _ = t.remove_file(f).await;
    }
    let out = res?;
    match out.code {
        Some(0) => Ok(true),
        Some(75) => Ok(false),
        Some(76) => Err(StepError::new(format!(
            "{node}: another writer held {}.lock for 60 s",
            path.display()
        ))),
        _ => Err(StepError::with_stderr(
            format!("{node}: cannot replace {}", path.display()),
            out.stderr,
        )),
    }
}

pub async fn verify(ctx: &StepContext, node: &str, p: &WritePgpassParams) -> Result<(), StepError> {
    match check(ctx, node, p).await? {
        Freshness::Fresh => Ok(()),
        Freshness::Dirty(why) => Err(StepError::new(format!("{node}: {why}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        std::env::set_var("PGTOPO_TEST_PGPASS_SECRET", s);
        crate::config::SecretRef::Env {
            env: "PGTOPO_TEST_PGPASS_SECRET".into(),
        }
        .resolve()
        .unwrap()
    }

    fn entry(host: &str, port: u16) -> PgpassEntry {
        PgpassEntry {
            host: host.into(),
            port,
            user: "replicator".into(),
        }
    }

    #[test]
    fn merge_replaces_our_lines_and_keeps_the_rest_byte_for_byte() {
        let e = vec![entry("127.0.0.1", 5432), entry("127.0.0.2", 5433)];
        let pw = secret("s3:cr\\et");
        let cur: &[u8] =
            b"# mine\r\nother:1:*:bob:x\n127.0.0.1:5432:*:replicator:old\nlatin1:1:*:u:\xe9t\xe9";
        let out = merge(cur, "cluster shop, system 7", &e, &e, &pw);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "# BEGIN pgtopo managed: cluster shop, system 7\n\
             127.0.0.1:5432:*:replicator:s3\\:cr\\\\et\n\
             127.0.0.2:5433:*:replicator:s3\\:cr\\\\et\n\
             # END pgtopo managed: cluster shop, system 7\n\
             # mine\r\nother:1:*:bob:x\nlatin1:1:*:u:\u{fffd}t\u{fffd}"
        );
        assert!(out.ends_with(b"latin1:1:*:u:\xe9t\xe9"));
        assert_eq!(merge(&out, "cluster shop, system 7", &e, &e, &pw), out);
        assert_eq!(fields(b"a\\:b:c"), [b"a:b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn nodes_sharing_the_file_converge_in_any_order() {
        let all = [
            entry("127.0.0.1", 5432),
            entry("127.0.0.2", 5432),
            entry("127.0.0.3", 5432),
        ];
        let pw = secret("pw");
        // Each node's step names the other nodes.
        let step = |i: usize| -> Vec<PgpassEntry> {
            (0..3).filter(|&j| j != i).map(|j| all[j].clone()).collect()
        };
        let mut results = Vec::new();
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
            let mut file = b"x:1:*:y:z\n".to_vec();
            for i in order {
                file = merge(&file, "cluster shop, system 7", &step(i), &all, &pw);
            }
            // Every step finds its entries: nothing left to do for any of them.
            for i in 0..3 {
                assert_eq!(
                    merge(&file, "cluster shop, system 7", &step(i), &all, &pw),
                    file
                );
            }
            results.push(file);
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        // A node that moved: its old line goes, the new one comes, the rest stays.
        let moved = [all[0].clone(), all[1].clone(), entry("127.0.0.3", 6432)];
        let out = merge(
            &results[0],
            "cluster shop, system 7",
            &moved[..2],
            &moved,
            &pw,
        );
        let out = merge(&out, "cluster shop, system 7", &moved[1..], &moved, &pw);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("127.0.0.3:5432"), "{text}");
        assert!(text.contains("127.0.0.3:6432:*:replicator:pw"), "{text}");
        assert!(
            text.ends_with("# END pgtopo managed: cluster shop, system 7\nx:1:*:y:z\n"),
            "{text}"
        );
        // Another cluster's block is another owner's lines.
        let other = merge(
            text.as_bytes(),
            "cluster web, system 8",
            &[entry("10.0.0.1", 5432)],
            &[],
            &pw,
        );
        assert!(other.ends_with(text.as_bytes()));
    }

    #[tokio::test]
    async fn a_file_changed_since_it_was_read_is_not_replaced() {
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name;
        let t = crate::transport::LocalTransport::new(me);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".pgpass");
        // Absent, as read: created.
        assert!(replace(&t, "n1", &path, None, b"one\n").await.unwrap());
        // Changed by another writer since it was read: left alone.
        assert!(!replace(&t, "n1", &path, None, b"two\n").await.unwrap());
        assert!(!replace(&t, "n1", &path, Some(b"zero\n"), b"two\n")
            .await
            .unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"one\n");
        // Unchanged since read: replaced, 0600, and nothing left beside it but the lock file.
        assert!(replace(&t, "n1", &path, Some(b"one\n"), b"two\n")
            .await
            .unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [".pgpass", ".pgpass.lock"]);
    }

    #[test]
    fn two_clusters_sharing_the_file_keep_each_others_block_in_place() {
        let pw = secret("pw");
        let (a, b) = ("cluster shop, system 7", "cluster shop, system 8");
        let ea = [entry("h", 1)];
        let eb = [entry("h", 2)];
        let file = merge(b"", a, &ea, &ea, &pw);
        let file = merge(&file, b, &eb, &eb, &pw);
        // Each one's merge of the file the other wrote last changes nothing: converged.
        assert_eq!(merge(&file, a, &ea, &ea, &pw), file);
        assert_eq!(merge(&file, b, &eb, &eb, &pw), file);
        // A line of the operator's before a block moves that block first.
        let mut theirs = b"*:*:*:me:x\n".to_vec();
        theirs.extend_from_slice(&file);
        let out = merge(&theirs, a, &ea, &ea, &pw);
        assert!(out.starts_with(b"# BEGIN pgtopo managed: cluster shop, system 7\n"));
        assert!(String::from_utf8_lossy(&out).contains("*:*:*:me:x\n"));
    }

    #[test]
    fn an_unterminated_block_is_left_as_it_is() {
        let pw = secret("pw");
        let cur = b"# BEGIN pgtopo managed: cluster shop, system 7\nkeep:1:*:me:x\n";
        let out = merge(cur, "cluster shop, system 7", &[entry("h", 1)], &[], &pw);
        assert!(out.ends_with(cur), "{}", String::from_utf8_lossy(&out));
    }
}
