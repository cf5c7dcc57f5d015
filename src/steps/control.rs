//! The few fields of a stopped node's control file that a switchover needs inside its
//! writes-unavailable window — state and "Latest checkpoint location" — read straight from
//! `global/pg_control` through the transport (a file read, no process spawned), with
//! `observe::read_control_data` (pg_controldata) as the fallback for a layout this does not know.
//!
//! Layout of `ControlFileData` since PostgreSQL 11 (pg_control_version ≥ 1100), native byte
//! order: system_identifier u64 @0, pg_control_version u32 @8, catalog_version_no u32 @12,
//! state u32 @16, time i64 @24, checkPoint u64 @32, checkPointCopy.redo u64 @40,
//! checkPointCopy.ThisTimeLineID u32 @48. The WAL segment size sits further on at an offset that
//! moved between versions; it is found after its anchor: `floatFormat`, the double 1234567.0,
//! which every version since 8.x stores followed by blcksz, relseg_size, xlog_blcksz and
//! xlog_seg_size (u32 each).

use crate::apply::StepError;
use crate::units::Lsn;

use super::StepContext;

/// The parts of the control file a switchover reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSnapshot {
    pub system_identifier: String,
    /// As pg_controldata words it: "shut down", "in production", …
    pub state: String,
    pub latest_checkpoint: Lsn,
    pub checkpoint_timeline: u32,
    /// Bytes per WAL segment; None when read through pg_controldata or not found.
    pub wal_segment_size: Option<u64>,
}

impl ControlSnapshot {
    /// Shut down cleanly as a primary.
    pub fn shut_down(&self) -> bool {
        crate::observe::shut_down_cleanly(&self.state, crate::observe::CleanAs::Primary)
    }
}

fn state_word(code: u32) -> &'static str {
    match code {
        0 => "starting up",
        1 => "shut down",
        2 => "shut down in recovery",
        3 => "shutting down",
        4 => "in crash recovery",
        5 => "in archive recovery",
        6 => "in production",
        _ => "unrecognized status code",
    }
}

/// Parse the bytes of `global/pg_control`; None for a layout this does not know.
pub fn parse(bytes: &[u8]) -> Option<ControlSnapshot> {
    if bytes.len() < 56 {
        return None;
    }
    let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_ne_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let version = u32_at(8);
    if !(1100..10000).contains(&version) {
        return None;
    }
    Some(ControlSnapshot {
        system_identifier: u64_at(0).to_string(),
        state: state_word(u32_at(16)).to_string(),
        latest_checkpoint: Lsn(u64_at(32)),
        checkpoint_timeline: u32_at(48),
        wal_segment_size: wal_segment_size(bytes),
    })
}

/// xlog_seg_size, found after the `floatFormat` anchor (8-byte aligned, after checkPointCopy),
/// accepted only when it is a size PostgreSQL allows (a power of two, 1 MB to 1 GB) and the block
/// sizes before it are plausible too.
fn wal_segment_size(bytes: &[u8]) -> Option<u64> {
    let float_format = 1234567.0f64.to_ne_bytes();
    let at = (56..bytes.len().saturating_sub(24))
        .step_by(8)
        .find(|&o| bytes[o..o + 8] == float_format)?;
    let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let (blcksz, xlog_blcksz, seg) = (u32_at(at + 8), u32_at(at + 16), u32_at(at + 20));
    let pow2_in = |v: u32, lo: u32, hi: u32| v.is_power_of_two() && (lo..=hi).contains(&v);
    (pow2_in(blcksz, 1024, 32768) && pow2_in(xlog_blcksz, 1024, 65536))
        .then_some(seg)
        .filter(|&s| pow2_in(s, 1 << 20, 1 << 30))
        .map(u64::from)
}

/// Read a stopped node's control data: the file when its layout is known, else pg_controldata.
pub async fn read(ctx: &StepContext, node: &str) -> Result<ControlSnapshot, StepError> {
    let n = ctx.node(node)?;
    let t = ctx.transport(node)?;
    let path = n.data_dir.join("global").join("pg_control");
    if let Ok(Some(bytes)) = t.read_file(&path).await {
        if let Some(s) = parse(&bytes) {
            return Ok(s);
        }
    }
    let cd = crate::observe::read_control_data(t.as_ref(), n)
        .await
        .map_err(|e| StepError::new(e.to_string()))?;
    Ok(ControlSnapshot {
        system_identifier: cd.system_identifier,
        state: cd.cluster_state,
        latest_checkpoint: cd.latest_checkpoint,
        checkpoint_timeline: cd.checkpoint_timeline,
        wal_segment_size: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_at_their_offsets() {
        let mut b = vec![0u8; 8192];
        b[0..8].copy_from_slice(&7311234567890123456u64.to_ne_bytes());
        b[8..12].copy_from_slice(&1300u32.to_ne_bytes());
        b[16..20].copy_from_slice(&1u32.to_ne_bytes());
        b[32..40].copy_from_slice(&0x3000108u64.to_ne_bytes());
        b[48..52].copy_from_slice(&2u32.to_ne_bytes());
        let s = parse(&b).unwrap();
        assert_eq!(s.wal_segment_size, None, "no floatFormat anchor");
        b[200..208].copy_from_slice(&1234567.0f64.to_ne_bytes());
        for (i, v) in [8192u32, 131072, 8192, 16 << 20].into_iter().enumerate() {
            b[208 + 4 * i..212 + 4 * i].copy_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(parse(&b).unwrap().wal_segment_size, Some(16 << 20));
        b[220..224].copy_from_slice(&(3u32 << 20).to_ne_bytes());
        assert_eq!(
            parse(&b).unwrap().wal_segment_size,
            None,
            "not a power of two"
        );
        let s = parse(&b).unwrap();
        assert_eq!(s.system_identifier, "7311234567890123456");
        assert!(s.shut_down());
        assert_eq!(s.latest_checkpoint.to_string(), "0/3000108");
        assert_eq!(s.checkpoint_timeline, 2);
        b[8..12].copy_from_slice(&942u32.to_ne_bytes());
        assert_eq!(parse(&b), None);
    }
}
