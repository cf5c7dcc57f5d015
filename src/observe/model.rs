//! The observed state of a cluster as data. It is also the recording format of
//! `pgtopo observe --out` (versioned) and the input of offline planning.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::Lsn;

/// Version of the recording format; bump on an incompatible change.
pub const OBSERVED_FORMAT_VERSION: u32 = 1;

/// Everything pgtopo saw of the cluster at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "pgtopo observed state")]
pub struct ObservedCluster {
    pub format_version: u32,
    pub cluster: String,
    /// RFC 3339 UTC time the observation finished.
    pub observed_at: String,
    /// Every declared node by name, retired ones included.
    pub nodes: BTreeMap<String, ObservedNode>,
    /// Every declared pooler by name: where its databases route, whether they are paused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub poolers: BTreeMap<String, crate::pooler::ObservedPooler>,
}

/// One node as seen through SQL and, when SQL fails, through its files and server tools.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ObservedNode {
    /// An SQL connection succeeded and the node's transport works (pgtopo can act on it).
    pub reachable: bool,
    /// Why SQL failed (connection refused, timeout, authentication failed …) or the node's
    /// transport did (host key, authentication, sudo …). No secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_reason: Option<String>,
    /// The postmaster runs (SQL answered, or postmaster.pid names a live process).
    pub running: bool,
    /// The node's host answered over its transport as its os_user (its files and tools can be
    /// used).
    #[serde(default)]
    pub host_reachable: bool,
    /// Why the node's transport, files or tools could not be used (transport error,
    /// pg_controldata failure). No secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_error: Option<String>,
    pub role: Option<Role>,
    /// Declared node name of the server this standby streams from (pg_stat_wal_receiver, else
    /// primary_conninfo), matched on host:port; null for a primary or when unknown.
    pub upstream: Option<String>,
    /// `host:port` this standby streams from (WAL receiver) or would connect to
    /// (primary_conninfo), also when it matches no declared node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_addr: Option<String>,
    /// A standby whose WAL receiver is in state `streaming`.
    pub streaming: bool,
    pub timeline: Option<u32>,
    /// Current WAL write location on a primary (`pg_current_wal_lsn()`); replay location on a
    /// standby.
    pub lsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_lsn: Option<Lsn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lsn: Option<Lsn>,
    pub system_identifier: Option<String>,
    /// Names of the replication slots on this node.
    pub slots: Vec<String>,
    /// server_version_num.
    pub version: Option<u32>,
    /// primary_conninfo without any password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_conninfo: Option<ConninfoSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_slot_name: Option<String>,
    /// Replication slots with their retention.
    #[serde(default)]
    pub replication_slots: Vec<ObservedSlot>,
    /// pg_stat_replication rows.
    #[serde(default)]
    pub replication: Vec<ObservedReplica>,
    /// The settings pgtopo cares about (those in the topology plus a fixed list), from
    /// pg_settings. For a node seen only through its files: those written in its
    /// postgresql.conf / postgresql.auto.conf, as written, with an empty `context`.
    #[serde(default)]
    pub settings: BTreeMap<String, ObservedSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hba: Option<ObservedHba>,
    /// standby.signal exists in the data directory.
    #[serde(default)]
    pub standby_signal: bool,
    /// A pg_rewind started by pgtopo did not finish on this (stopped) node: its marker
    /// `<data_dir>.pgtopo-rewinding` is there and the directory does not hold a finished rewind
    /// (pg_rewind's backup_label with a control file "in archive recovery"). Such a directory is
    /// never started; it is cloned again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rewind_unfinished: bool,
    #[serde(default)]
    pub data_dir: DataDirState,
    /// pg_controldata output, read when SQL does not answer (usually: the server is stopped;
    /// see `running`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlData>,
    /// Fork points of the node's current timeline (its `.history` file), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline_history: Vec<TimelineFork>,
    /// The WAL segments in the node's pg_wal, read with the control data (when SQL does not
    /// answer): what pg_rewind could read of its WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_segments: Option<WalSegments>,
    /// Where the oldest WAL segment in a running node's pg_wal starts (pg_ls_waldir): WAL
    /// before it can no longer be streamed from this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_wal: Option<Lsn>,
    /// A running standby on its upstream's timeline: the upstream's end of WAL read after the
    /// standby's replay position, and whether the WAL just before that position is byte for
    /// byte the upstream's (read from both pg_wal directories). A mismatch proves the two
    /// histories differ although the timeline is the same (a second writer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_match: Option<WalMatch>,
    /// The startup process's wait event on a running standby (pg_stat_activity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_wait_event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_stall: Option<ReplayStall>,
    /// When a running standby's WAL receiver last heard from its upstream
    /// (pg_stat_wal_receiver); absent without a WAL receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_receipt: Option<LastReceipt>,
    /// The startup process of a running standby waits on a recovery conflict (a lock, a buffer
    /// pin, a snapshot …): replay does not advance until the sessions that block it end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_conflict: Option<ReplayConflict>,
    /// Transactions prepared for two-phase commit and not yet committed or rolled back
    /// (pg_prepared_xacts; on a standby, those it replayed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepared_xacts: Vec<PreparedXact>,
    /// The declared bin_dir's major (`postgres --version`) and, when it differs from the
    /// running server's, the bin directory of the running postmaster: what a major-version
    /// upgrade is planned from. Only for a node whose host answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binaries: Option<ObservedBinaries>,
    /// The WAL archive as this node sees it (only when the topology declares one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<super::archive::ObservedArchive>,
}

/// One row of pg_prepared_xacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PreparedXact {
    /// The transaction's global identifier (`PREPARE TRANSACTION 'gid'`).
    pub gid: String,
    pub owner: String,
    pub database: String,
    /// When it was prepared (timestamptz as text).
    pub prepared: String,
}

impl std::fmt::Display for PreparedXact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "'{}' (owner {}, database {}, prepared {})",
            self.gid, self.owner, self.database, self.prepared
        )
    }
}

/// The binaries a node is declared to run and the ones it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedBinaries {
    /// The declared bin_dir.
    pub bin_dir: String,
    /// Its major version (`<bin_dir>/postgres --version`); None with `error` when that failed.
    pub major: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Directory of the running postmaster's executable (`/proc/<pid>/exe`), read only when
    /// `major` differs from the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_bin_dir: Option<String>,
}

/// A standby whose replay waits for WAL although it has received WAL past its replay position:
/// the received WAL does not continue its history. Seen twice, at the node's observation and
/// again after every node was observed, with the replay position unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplayStall {
    pub replay: Lsn,
    pub received: Lsn,
    /// The startup process's wait event (`RecoveryWalStream`, `RecoveryRetrieveRetryInterval`).
    pub wait_event: String,
}

/// What pg_stat_wal_receiver says of the last message from the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LastReceipt {
    /// `last_msg_receipt_time`, as the server prints a timestamptz.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_msg_receipt_time: Option<String>,
    /// `latest_end_time`: when the upstream last reported its end of WAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_end_time: Option<String>,
    /// Milliseconds from `last_msg_receipt_time` to the moment the standby answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
}

/// A standby's startup process waiting on a recovery conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplayConflict {
    /// pg_stat_activity's `wait_event_type` of the startup process (`Lock`, `BufferPin`, `IPC`).
    pub wait_event_type: String,
    /// Its `wait_event` (`relation`, `BufferPin`, `RecoveryConflictSnapshot` …).
    pub wait_event: String,
    /// The sessions that block it (`pg_blocking_pids` of the startup process: known for a lock;
    /// empty for a buffer pin or a snapshot conflict).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<ReplayBlocker>,
}

impl ReplayConflict {
    /// The blocking sessions ("pid 4242 (report, `select …`, 37 s)"), or the wait when they are
    /// not known.
    pub fn blocked_on(&self) -> String {
        if self.blockers.is_empty() {
            return format!(
                "a recovery conflict ({} {}; the sessions behind it are not known)",
                self.wait_event_type, self.wait_event
            );
        }
        self.blockers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A session that blocks a standby's replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplayBlocker {
    pub pid: i32,
    /// Its role (unknown without pg_read_all_stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub application_name: String,
    /// Its query, cut at 200 characters (hidden without pg_read_all_stats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Milliseconds since its transaction (else its query) started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
}

impl std::fmt::Display for ReplayBlocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} (", self.pid)?;
        let mut parts: Vec<String> = Vec::new();
        if let Some(u) = &self.user {
            parts.push(u.clone());
        }
        if !self.application_name.is_empty() {
            parts.push(self.application_name.clone());
        }
        if let Some(q) = &self.query {
            let q: String = q.split_whitespace().collect::<Vec<_>>().join(" ");
            let short: String = q.chars().take(60).collect();
            let more = if short.len() < q.len() { "…" } else { "" };
            parts.push(format!("`{short}{more}`"));
        }
        if let Some(a) = self.age_ms {
            parts.push(format!("{} s", a / 1000));
        }
        write!(f, "{})", parts.join(", "))
    }
}

/// A running standby's replay position checked against its upstream, read after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WalMatch {
    /// The standby's replay position; the bytes compared end there.
    pub at: Lsn,
    /// The upstream's end of WAL (flush position on a primary, received or replayed on a
    /// standby), read after `at`: a standby that shares its upstream's history is never past it.
    pub upstream_end: Lsn,
    /// How many bytes before `at` were compared (0: not compared).
    pub bytes: u32,
    /// Whether those bytes are the same on both (None: not compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<bool>,
}

/// The WAL segment files a data directory holds, as runs of consecutive segment numbers (any
/// timeline, recycled segments past the node's end of WAL included, since only presence is asked
/// of them; `.partial` files are not segments).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct WalSegments {
    /// Bytes per segment (pg_controldata's "Bytes per WAL segment").
    pub segment_size: u64,
    /// Inclusive `[first, last]` segment numbers, ascending and disjoint.
    pub runs: Vec<[u64; 2]>,
}

impl WalSegments {
    /// From the file names in pg_wal: `TTTTTTTTXXXXXXXXYYYYYYYY` (timeline, then the segment
    /// number as log id and segment); other names are ignored.
    pub fn from_names<'a>(segment_size: u64, names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut segs: Vec<u64> = names
            .into_iter()
            .filter_map(|n| crate::units::parse_wal_segment(n, segment_size))
            .map(|(_, seg)| seg)
            .collect();
        segs.sort_unstable();
        segs.dedup();
        let mut runs: Vec<[u64; 2]> = Vec::new();
        for s in segs {
            match runs.last_mut() {
                Some(r) if r[1] + 1 == s => r[1] = s,
                _ => runs.push([s, s]),
            }
        }
        WalSegments { segment_size, runs }
    }

    /// The segment number holding `lsn`.
    pub fn segment_of(&self, lsn: Lsn) -> u64 {
        lsn.0 / self.segment_size.max(1)
    }

    /// The first segment of `from..=to` (LSNs) that is missing, as the LSN where it starts.
    pub fn first_missing(&self, from: Lsn, to: Lsn) -> Option<Lsn> {
        let (a, b) = (self.segment_of(from), self.segment_of(to.max(from)));
        let mut next = a;
        for r in &self.runs {
            if r[1] < next {
                continue;
            }
            if r[0] > next {
                break;
            }
            next = r[1] + 1;
            if next > b {
                return None;
            }
        }
        Some(Lsn(next * self.segment_size))
    }

    /// Where the oldest segment starts, if there is one.
    pub fn oldest(&self) -> Option<Lsn> {
        self.runs.first().map(|r| Lsn(r[0] * self.segment_size))
    }
}

/// Primary or standby (pg_is_in_recovery), or, for a stopped server, what its files say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Standby,
}

/// The password-free parts of a primary_conninfo.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ConninfoSummary {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub application_name: Option<String>,
    /// The database the standby's slot-sync worker connects to (failover slots need one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbname: Option<String>,
    /// The TLS keywords (absent when not written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslrootcert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslcert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslkey: Option<String>,
}

/// A replication slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedSlot {
    pub name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    pub active: bool,
    pub restart_lsn: Option<Lsn>,
    /// Bytes of WAL the slot keeps (current LSN − restart_lsn).
    pub wal_retained_bytes: Option<u64>,
    /// `reserved`, `extended`, `unreserved` (WAL it needs is about to be removed) or `lost`
    /// (it is gone: the slot can no longer serve its standby); PostgreSQL 13 and later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
    /// Bytes of WAL that can still be written before this slot is in danger of `lost`
    /// (null when max_slot_wal_keep_size is -1, or on PostgreSQL 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safe_wal_size: Option<i64>,
    /// What only a logical slot has (absent on a physical one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical: Option<LogicalSlotFacts>,
}

/// The pg_replication_slots columns of a logical slot. Columns a server version lacks are null:
/// `conflicting` is 16+, `failover`, `synced` and `invalidation_reason` are 17+.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogicalSlotFacts {
    pub plugin: String,
    pub database: String,
    pub temporary: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<bool>,
    /// A copy kept by a standby's slot-sync worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicting: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidation_reason: Option<String>,
}

impl LogicalSlotFacts {
    /// A synced copy that survives a promotion: `synced AND NOT temporary`.
    pub fn persistent_synced(&self) -> bool {
        self.synced == Some(true) && !self.temporary
    }
}

/// A pg_stat_replication row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedReplica {
    pub application_name: String,
    pub client_addr: Option<String>,
    /// startup, catchup, streaming, backup, stopping.
    pub state: String,
    /// async, potential, sync, quorum.
    pub sync_state: String,
    pub sent_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    /// Bytes between the sender's current LSN and this standby's replay LSN.
    pub lag_bytes: Option<u64>,
    /// Milliseconds since the standby's last reply (`reply_time`) when the sender answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_age_ms: Option<u64>,
    /// `replay_lag` in milliseconds: how long ago the WAL this standby last replayed was written
    /// on the sender; null when the server does not know it (no recent WAL to measure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_lag_ms: Option<u64>,
}

/// A setting from pg_settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedSetting {
    /// The value as `current_setting()` shows it (with its unit, e.g. `128MB`).
    pub value: String,
    /// The value in pg_settings' base unit (`setting`), for comparisons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub pending_restart: bool,
    /// postmaster, sighup, superuser, user …
    pub context: String,
    /// default, configuration file, override …
    #[serde(default)]
    pub source: String,
}

/// pg_hba.conf as far as pgtopo is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedHba {
    /// hba_file.
    pub path: String,
    /// The lines between `# BEGIN pgtopo managed` and `# END pgtopo managed`, markers excluded;
    /// None when the file has no managed block.
    pub managed_block: Option<Vec<String>>,
    /// The 1-based line of the file where the managed block starts, or where it would be
    /// inserted (before the first rule); for the plan's diff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_line: Option<u32>,
    /// SHA-256 of the whole file.
    pub sha256: String,
    /// Errors reported by pg_hba_file_rules.
    #[serde(default)]
    pub errors: Vec<String>,
}

/// The data directory on disk.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub struct DataDirState {
    pub exists: bool,
    pub empty: bool,
    /// PG_VERSION's major version, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_version: Option<u32>,
}

/// The parts of pg_controldata that planning needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ControlData {
    pub system_identifier: String,
    /// "shut down", "shut down in recovery", "in production", "in archive recovery", …
    pub cluster_state: String,
    pub latest_checkpoint: Lsn,
    pub latest_checkpoint_redo: Lsn,
    /// "Latest checkpoint's TimeLineID".
    pub checkpoint_timeline: u32,
    /// "Minimum recovery ending location" and its timeline (0/0 and 0 when unset).
    pub min_recovery_end: Lsn,
    pub min_recovery_end_timeline: u32,
    pub wal_log_hints: bool,
    pub data_checksums: bool,
    /// "Bytes per WAL segment".
    #[serde(default = "default_wal_segment_size")]
    pub wal_segment_size: u64,
}

fn default_wal_segment_size() -> u64 {
    16 << 20
}

impl ObservedNode {
    /// The node's timeline: from SQL, else (a stopped server) its last checkpoint's in the
    /// control file. The one place that says where a timeline is read.
    pub fn timeline(&self) -> Option<u32> {
        self.timeline
            .or_else(|| self.control.as_ref().map(|c| c.checkpoint_timeline))
    }
}

impl ControlData {
    /// The server was shut down cleanly (as primary or as standby).
    pub fn shut_down_cleanly(&self) -> bool {
        shut_down_cleanly(&self.cluster_state, CleanAs::Either)
    }
}

/// The role a clean shutdown is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanAs {
    /// `shut down`: a primary that wrote its shutdown checkpoint (a switchover's old primary).
    Primary,
    /// `shut down` or `shut down in recovery`: nothing to recover (before pg_rewind).
    Either,
}

/// The one clean-shutdown predicate over a control file's cluster state (as pg_controldata
/// words it).
pub fn shut_down_cleanly(state: &str, as_: CleanAs) -> bool {
    match as_ {
        CleanAs::Primary => state == "shut down",
        CleanAs::Either => state == "shut down" || state == "shut down in recovery",
    }
}

/// One line of a timeline history file: `timeline` ended at `fork_lsn`, where the next began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineFork {
    pub timeline: u32,
    pub fork_lsn: Lsn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_shutdown_as_what() {
        assert!(shut_down_cleanly("shut down", CleanAs::Primary));
        assert!(!shut_down_cleanly(
            "shut down in recovery",
            CleanAs::Primary
        ));
        assert!(shut_down_cleanly("shut down in recovery", CleanAs::Either));
        assert!(shut_down_cleanly("shut down", CleanAs::Either));
        for s in ["in production", "in archive recovery", "shutting down"] {
            assert!(!shut_down_cleanly(s, CleanAs::Either), "{s}");
        }
    }

    #[test]
    fn the_timeline_of_a_stopped_server_is_its_checkpoints() {
        let mut x = ObservedNode {
            timeline: Some(3),
            ..Default::default()
        };
        assert_eq!(x.timeline(), Some(3));
        x.timeline = None;
        assert_eq!(x.timeline(), None);
        x.control = Some(ControlData {
            system_identifier: "1".into(),
            cluster_state: "shut down".into(),
            latest_checkpoint: Lsn(0),
            latest_checkpoint_redo: Lsn(0),
            checkpoint_timeline: 2,
            min_recovery_end: Lsn(0),
            min_recovery_end_timeline: 0,
            wal_log_hints: false,
            data_checksums: false,
            wal_segment_size: 16 << 20,
        });
        assert_eq!(x.timeline(), Some(2));
    }
}
