//! One drift finding and its kind (a leaf: the drift report, the logical and the pooler drift
//! all produce them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::address::Address;

/// What kind of drift.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    NodeDown,
    Role,
    WrongUpstream,
    NotStreaming,
    SettingChanged,
    PendingRestart,
    HbaEdited,
    MissingSlot,
    OrphanSlot,
    SyncSet,
    RetiredRunning,
    /// Two nodes accept writes on one timeline.
    SplitBrain,
    /// A standby's history differs from its upstream's on the same timeline.
    Diverged,
    /// The data directory belongs to another system (system identifier).
    ForeignSystem,
    /// The standby's slot is lost, or the WAL it needs is gone from its upstream.
    SlotLost,
    /// A warning: the slot's WAL is about to be removed (`wal_status = unreserved`).
    SlotUnreserved,
    /// Nodes answer on different PostgreSQL majors outside an upgrade.
    MixedMajors,
    /// A streaming standby that has not heard from its upstream for longer than twice
    /// `wal_receiver_status_interval`.
    NotReceiving,
    /// A standby whose replay waits on a recovery conflict (the blocking sessions named).
    ReplayBlocked,
    /// A pooler's admin console does not answer.
    PoolerDown,
    /// A pooler database routes elsewhere than the primary (or is missing).
    PoolerRoute,
    /// A pooler database is paused.
    PoolerPaused,
    /// A declared logical slot missing or different on the primary, or an unsynced copy of
    /// one on a standby.
    LogicalSlot,
    /// The WAL archive: archiving fails, lags past `archive.max_lag`, a standby without the
    /// restore_command, pgBackRest failing on a node, the stanza missing.
    Archive,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DriftItem {
    pub kind: DriftKind,
    pub node: String,
    /// The change address it concerns (`setting.n1.work_mem`, `slot.n1.old`).
    #[schemars(with = "String")]
    pub address: Address,
    pub detail: String,
}
