//! Small value types shared by every phase: WAL positions, byte sizes, durations; and the one
//! rule on WAL positions that the planner and the steps share ([`replayed_past_checkpoint`]).
//!
//! Each parses the way PostgreSQL or the topology file writes it and serialises back the same
//! way, so recordings and plans stay readable.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A WAL location (`pg_lsn`), written `X/Y` in hexadecimal as PostgreSQL does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Bytes from `other` up to `self`, or 0 when `other` is ahead.
    pub fn bytes_after(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// Why a string is not an LSN.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a WAL location (expected X/Y in hexadecimal): {0:?}")]
pub struct LsnParseError(pub String);

impl FromStr for Lsn {
    type Err = LsnParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || LsnParseError(s.to_string());
        let (hi, lo) = s.trim().split_once('/').ok_or_else(err)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| err())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| err())?;
        Ok(Lsn(((hi as u64) << 32) | lo as u64))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Lsn {
    fn schema_name() -> String {
        "Lsn".into()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        schemars::schema::SchemaObject {
            instance_type: Some(schemars::schema::InstanceType::String.into()),
            string: Some(Box::new(schemars::schema::StringValidation {
                pattern: Some("^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$".into()),
                ..Default::default()
            })),
            metadata: Some(Box::new(schemars::schema::Metadata {
                description: Some("WAL location, X/Y in hexadecimal".into()),
                ..Default::default()
            })),
            ..Default::default()
        }
        .into()
    }
}

/// Whether a standby whose replay location is `replay` has replayed the shutdown checkpoint
/// record that starts at `checkpoint` (the stopped old primary's "Latest checkpoint location"):
/// the proof that a switchover's candidate has all of the old primary's WAL and may be promoted
/// without a rewind of the old primary. `pg_last_wal_replay_lsn()` is the *end* of the last
/// record replayed, so only a location strictly past the record's start proves the record was
/// replayed; a location equal to it is the end of the record before. A received (not replayed)
/// location is no proof: the receiver may hold only part of the record. The one place that
/// decides it, for the planner (observed replay location) and the switchover step (live one).
pub fn replayed_past_checkpoint(replay: Option<Lsn>, checkpoint: Lsn) -> bool {
    replay.is_some_and(|r| r > checkpoint)
}

/// (timeline, segment number) of a WAL segment file name `TTTTTTTTXXXXXXXXYYYYYYYY` (timeline,
/// then the segment number as log id and segment within it); None for any other name.
pub fn parse_wal_segment(name: &str, seg_size: u64) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let part = |i: usize| u64::from_str_radix(&name[i..i + 8], 16).ok();
    let (tli, log, seg) = (part(0)?, part(8)?, part(16)?);
    let per_log = 0x1_0000_0000 / seg_size.max(1);
    (seg < per_log).then(|| (tli as u32, log * per_log + seg))
}

/// The file name of segment `segno` of timeline `tli` (the inverse of [`parse_wal_segment`]).
pub fn wal_segment_name(tli: u32, segno: u64, seg_size: u64) -> String {
    let per_log = 0x1_0000_0000 / seg_size.max(1);
    format!("{tli:08X}{:08X}{:08X}", segno / per_log, segno % per_log)
}

/// A size in bytes, written in the topology file as `16MB`, `1GB`, `512kB` or a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            ("TB", 1u64 << 40),
            ("GB", 1 << 30),
            ("MB", 1 << 20),
            ("kB", 1 << 10),
        ];
        for (name, size) in units {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{}", self.0 / size, name);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl ByteSize {
    /// Human reading for reports: `1.5 MB`, `120 kB`, `0 B`.
    pub fn human(bytes: u64) -> String {
        let units = [
            ("TB", 1u64 << 40),
            ("GB", 1 << 30),
            ("MB", 1 << 20),
            ("kB", 1 << 10),
        ];
        for (name, size) in units {
            if bytes >= size {
                let v = bytes as f64 / size as f64;
                return if v >= 10.0 {
                    format!("{v:.0} {name}")
                } else {
                    format!("{v:.1} {name}")
                };
            }
        }
        format!("{bytes} B")
    }
}

/// Why a string is not a size.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a size (expected a number with an optional unit B, kB, MB, GB or TB): {0:?}")]
pub struct ByteSizeParseError(pub String);

impl FromStr for ByteSize {
    type Err = ByteSizeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| ByteSizeParseError(s.into()))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1 << 10,
            "m" | "mb" => 1 << 20,
            "g" | "gb" => 1 << 30,
            "t" | "tb" => 1 << 40,
            _ => return Err(ByteSizeParseError(s.into())),
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| ByteSizeParseError(s.into()))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> String {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "a size: a number of bytes, or a number with a unit B, kB, MB, GB, TB",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+ *([kKmMgGtT]?[bB]?)$"}
            ]
        }))
        .expect("static schema")
    }
}

/// A duration, written `60s`, `500ms`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl FromStr for Duration {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim()).map(Duration)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> String {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        serde_json::from_value(serde_json::json!({
            "description": "a duration such as 60s, 500ms, 2m",
            "type": "string"
        }))
        .expect("static schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_replay_location_past_the_checkpoint_record_start_proves_it_replayed() {
        let ckpt: Lsn = "0/3006D28".parse().unwrap();
        assert!(!replayed_past_checkpoint(None, ckpt));
        assert!(!replayed_past_checkpoint(
            Some("0/3006D00".parse().unwrap()),
            ckpt
        ));
        assert!(!replayed_past_checkpoint(Some(ckpt), ckpt));
        assert!(replayed_past_checkpoint(
            Some("0/3006DA0".parse().unwrap()),
            ckpt
        ));
    }

    #[test]
    fn wal_segment_names_round_trip() {
        let mb16 = 16 << 20;
        // Log id 1 starts at segment 256 with 16 MB segments, at 128 with 32 MB ones.
        assert_eq!(
            parse_wal_segment("000000020000000100000003", mb16),
            Some((2, 259))
        );
        assert_eq!(wal_segment_name(2, 259, mb16), "000000020000000100000003");
        assert_eq!(
            parse_wal_segment("000000010000000100000002", 32 << 20),
            Some((1, 130))
        );
        assert_eq!(
            wal_segment_name(1, 130, 32 << 20),
            "000000010000000100000002"
        );
        for bad in [
            "00000002.history",
            "000000010000000000000005.partial",
            "archive_status",
        ] {
            assert_eq!(parse_wal_segment(bad, mb16), None, "{bad}");
        }
        // Past the last segment of a log id: not a segment name.
        assert_eq!(parse_wal_segment("000000010000000000000100", mb16), None);
    }

    #[test]
    fn lsn_round_trips() {
        let l: Lsn = "0/3000108".parse().unwrap();
        assert_eq!(l.0, 0x3000108);
        assert_eq!(l.to_string(), "0/3000108");
        let big: Lsn = "1A/FF".parse().unwrap();
        assert_eq!(big.to_string(), "1A/FF");
        assert!("zz".parse::<Lsn>().is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("16MB".parse::<ByteSize>().unwrap().0, 16 << 20);
        assert_eq!("512kB".parse::<ByteSize>().unwrap().0, 512 << 10);
        assert_eq!("100".parse::<ByteSize>().unwrap().0, 100);
        assert_eq!(ByteSize(16 << 20).to_string(), "16MB");
        assert!("16XB".parse::<ByteSize>().is_err());
    }
}
