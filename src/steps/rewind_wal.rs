//! The rewound node's own WAL from its last common checkpoint with the source up to the fork.
//!
//! A rewound directory starts recovery at the redo location of the last checkpoint before the
//! fork (pg_rewind's `backup_label`) and replays the node's own WAL up to the fork point before
//! it follows the source's timeline. pg_rewind removes every WAL segment of the target that the
//! source does not have; since a checkpoint on the source may well have removed those old
//! segments, newer pg_rewind releases keep the ones between that checkpoint and the fork
//! (PostgreSQL 18, 15.18 here), while older ones (16.2, the pgserver wheel) delete them: the
//! rewound standby then asks the source for a segment it no longer has ("requested WAL segment
//! … has already been removed") and stays "starting up" forever.
//!
//! So, whatever the release: before pg_rewind runs, every segment in the target's pg_wal gets a
//! second name (a hard link, no copy) in `<data_dir>.pgtopo-kept-wal`; after it, those from the
//! redo segment of `backup_label` up to the fork segment that pg_rewind removed are renamed
//! back. The directory goes with the step's other garbage. Where pg_wal is on another file
//! system than the data directory's parent, nothing is linked and pg_rewind's result stands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::StepContext;
use crate::apply::StepError;
use crate::transport::{CommandSpec, TransportError};
use crate::units::{parse_wal_segment, Lsn};

fn io(e: TransportError) -> StepError {
    StepError::new(e.to_string())
}

/// Link the target's WAL segments into `<data_dir>.pgtopo-kept-wal`; returns that directory
/// (for removal after the last step) when it exists.
pub(super) async fn keep(ctx: &StepContext, node: &str) -> Result<Option<PathBuf>, StepError> {
    let n = ctx.node(node)?;
    let t = ctx.transport(node)?;
    let pg_wal = n.data_dir.join("pg_wal");
    let mut dir = n.data_dir.as_os_str().to_owned();
    dir.push(".pgtopo-kept-wal");
    let dir = PathBuf::from(dir);
    // One left by a killed pgtopo holds only links: start again.
    if t.list_dir(&dir).await.map_err(io)?.is_some() {
        t.remove_tree(&dir).await.map_err(io)?;
    }
    let segments: Vec<PathBuf> = t
        .list_dir(&pg_wal)
        .await
        .map_err(io)?
        .unwrap_or_default()
        .into_iter()
        .filter(|x| x.len() == 24 && x.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|x| pg_wal.join(x))
        .collect();
    if segments.is_empty() {
        return Ok(None);
    }
    t.create_dir(&dir, 0o700).await.map_err(io)?;
    let cmd = CommandSpec::new("ln")
        .arg("--")
        .args(segments)
        .arg(dir.as_os_str())
        .timeout(Duration::from_secs(600));
    if let Err(e) = ctx.run_tool(node, &cmd).await {
        tracing::warn!(node, error = %e.message, "the target's WAL segments were not kept aside");
    }
    Ok(Some(dir))
}

/// After a successful pg_rewind: rename back the kept segments from the redo segment of
/// `backup_label` up to the fork segment that pg_rewind removed. Returns how many.
pub(super) async fn restore(
    ctx: &StepContext,
    node: &str,
    kept: &Path,
    pg_rewind_stderr: &str,
    seg_size: u64,
) -> Result<usize, StepError> {
    let n = ctx.node(node)?;
    let t = ctx.transport(node)?;
    let label = t
        .read_file(&n.data_dir.join("backup_label"))
        .await
        .map_err(io)?
        .unwrap_or_default();
    let (Some((redo_tli, redo_seg)), Some((fork, fork_tli))) = (
        redo_segment(&String::from_utf8_lossy(&label), seg_size),
        diverged_at(pg_rewind_stderr),
    ) else {
        return Ok(0);
    };
    let needed = |tli: u32, seg: u64| {
        (tli == redo_tli || tli == fork_tli) && (redo_seg..=fork.0 / seg_size).contains(&seg)
    };
    let pg_wal = n.data_dir.join("pg_wal");
    let now = t.list_dir(&pg_wal).await.map_err(io)?.unwrap_or_default();
    let back: Vec<(String, String)> = t
        .list_dir(kept)
        .await
        .map_err(io)?
        .unwrap_or_default()
        .into_iter()
        .filter(|x| !now.contains(x))
        .filter(|x| parse_wal_segment(x, seg_size).is_some_and(|(tli, seg)| needed(tli, seg)))
        .map(|x| (x.clone(), x))
        .collect();
    if !back.is_empty() {
        t.move_into(kept, &back, &pg_wal).await.map_err(io)?;
    }
    Ok(back.len())
}

/// `START WAL LOCATION: 0/3000028 (file 000000010000000000000003)` → (timeline, segment).
fn redo_segment(backup_label: &str, seg_size: u64) -> Option<(u32, u64)> {
    let line = backup_label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))?;
    let file = line.split("(file ").nth(1)?.trim_end_matches(')').trim();
    parse_wal_segment(file, seg_size)
}

/// pg_rewind's `servers diverged at WAL location 0/402A580 on timeline 1` → (LSN, timeline).
fn diverged_at(stderr: &str) -> Option<(Lsn, u32)> {
    let rest = stderr
        .lines()
        .find_map(|l| l.split("servers diverged at WAL location ").nth(1))?;
    let mut words = rest.split_whitespace();
    let lsn = words.next()?.parse().ok()?;
    let tli = words.nth(2)?.trim_end_matches('.').parse().ok()?;
    Some((lsn, tli))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fork_and_the_redo_segment_are_read_from_pg_rewinds_words() {
        let err = "pg_rewind: connected to server\n\
                   pg_rewind: servers diverged at WAL location 0/402A580 on timeline 1\n\
                   pg_rewind: rewinding from last common checkpoint at 0/3000060 on timeline 1\n";
        assert_eq!(diverged_at(err), Some((Lsn(0x402A580), 1)));
        assert_eq!(diverged_at("pg_rewind: no rewind required"), None);
        let label = "START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n\
                     CHECKPOINT LOCATION: 0/3000060\nBACKUP METHOD: pg_rewind\n";
        assert_eq!(redo_segment(label, 16 << 20), Some((1, 3)));
        assert_eq!(redo_segment("", 16 << 20), None);
    }
}
