//! The plan as inert, serialisable data. Renderers read it, apply walks it; nothing in here
//! computes. The saved plan file is [`super::wire::PlanFile`]: this structure with its format version.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::diff::change::{AttributeChange, Change, ChangeAction};
use crate::units::Lsn;

use crate::config::UpgradeMode;

/// A plan: what differs, and the DAG of steps that makes it so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Plan {
    pub pgtopo_version: String,
    pub cluster: String,
    /// SHA-256 of the topology file the plan was made from.
    pub topology_sha256: String,
    /// What the plan depends on, per node; apply refuses a saved plan when it no longer holds.
    pub fingerprint: BTreeMap<String, NodeFingerprint>,
    /// Per declared pooler, where its databases routed when the plan was made (absent without
    /// poolers); apply refuses a saved plan when a pooler routes elsewhere now.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pooler_fingerprint: BTreeMap<String, String>,
    pub changes: Vec<Change>,
    pub steps: Vec<Step>,
    /// Changed file contents (pg_hba managed block, postgresql.auto.conf, .pgpass without secrets).
    #[serde(default)]
    pub file_diffs: Vec<FileDiff>,
    pub summary: Summary,
    /// The topology before and after, for the diagram of the markdown plan (absent in plans
    /// saved by an older pgtopo: they render without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<TopologyPicture>,
}

/// The parts of a node's observed state that a plan depends on (never LSNs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeFingerprint {
    pub system_identifier: Option<String>,
    pub timeline: Option<u32>,
    pub role: Option<crate::observe::Role>,
    pub upstream: Option<String>,
    pub running: bool,
    /// SHA-256 of the managed settings' observed values.
    pub settings_sha256: String,
    /// SHA-256 of the hba managed block.
    pub hba_sha256: String,
    /// SHA-256 of the sorted slot names.
    pub slots_sha256: String,
}

/// Step ids are 1-based positions in `Plan::steps` (a topological order).
pub type StepId = u32;

/// One vertex of the DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    pub id: StepId,
    /// The node it acts on.
    pub node: String,
    #[serde(flatten)]
    pub action: Action,
    /// Steps that must have succeeded first.
    pub after: Vec<StepId>,
    /// Destroys or may lose data (clone over a directory, rewind, promote of a node, restart
    /// of a primary): rendered first, marked `!`.
    pub destructive: bool,
    pub description: String,
}

/// The step vocabulary of the contract; JSON `kind` is the variant name in snake_case and
/// `params` its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "params", rename_all = "snake_case")]
pub enum Action {
    Stop(StopParams),
    Start(StartParams),
    Restart(RestartParams),
    Reload(ReloadParams),
    AlterSystem(AlterSystemParams),
    WriteHba(WriteHbaParams),
    WritePgpass(WritePgpassParams),
    CreateRole(CreateRoleParams),
    CreateSlot(SlotParams),
    DropSlot(SlotParams),
    WaitReplay(WaitReplayParams),
    CatchUp(CatchUpParams),
    Promote(PromoteParams),
    Checkpoint(CheckpointParams),
    ConfigureStandby(ConfigureStandbyParams),
    Rewind(RewindParams),
    Clone(CloneParams),
    Fence(FenceParams),
    PausePooler(PausePoolerParams),
    RoutePooler(RoutePoolerParams),
    ResumePooler(ResumePoolerParams),
    Hook(HookParams),
    CreateLogicalSlot(CreateLogicalSlotParams),
    SyncSlots(SyncSlotsParams),
    Upgrade(UpgradeParams),
    Analyze(AnalyzeParams),
    /// `pgbackrest stanza-create` on the primary, when the stanza is missing (SPEC §1c).
    CreateStanza(StanzaParams),
    /// `pgbackrest check` on the primary: WAL reaches the archive.
    CheckArchive(StanzaParams),
}

impl Action {
    /// The contract name of the kind (`"create_slot"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Stop(_) => "stop",
            Action::Start(_) => "start",
            Action::Restart(_) => "restart",
            Action::Reload(_) => "reload",
            Action::AlterSystem(_) => "alter_system",
            Action::WriteHba(_) => "write_hba",
            Action::WritePgpass(_) => "write_pgpass",
            Action::CreateRole(_) => "create_role",
            Action::CreateSlot(_) => "create_slot",
            Action::DropSlot(_) => "drop_slot",
            Action::WaitReplay(_) => "wait_replay",
            Action::CatchUp(_) => "catch_up",
            Action::Promote(_) => "promote",
            Action::Checkpoint(_) => "checkpoint",
            Action::ConfigureStandby(_) => "configure_standby",
            Action::Rewind(_) => "rewind",
            Action::Clone(_) => "clone",
            Action::Fence(_) => "fence",
            Action::PausePooler(_) => "pause_pooler",
            Action::RoutePooler(_) => "route_pooler",
            Action::ResumePooler(_) => "resume_pooler",
            Action::Hook(_) => "hook",
            Action::CreateLogicalSlot(_) => "create_logical_slot",
            Action::SyncSlots(_) => "sync_slots",
            Action::Upgrade(_) => "upgrade",
            Action::Analyze(_) => "analyze",
            Action::CreateStanza(_) => "create_stanza",
            Action::CheckArchive(_) => "check_archive",
        }
    }

    /// When the step runs; the one place that decides it.
    pub fn when(&self) -> When {
        match self {
            // A pooler left paused is an outage: RESUME is attempted whatever else happened.
            Action::ResumePooler(_) => When::Always,
            Action::Hook(h) if h.point == HookPoint::OnFailure => When::OnFailure,
            _ => When::Normal,
        }
    }
}

/// When the apply runs a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Once every step in its `after` list succeeded, unless a step failed before.
    Normal,
    /// Also after a failure, whatever its `after` steps did (the pooler's RESUME).
    Always,
    /// Only when a step failed, after everything else ended; else `not needed`.
    OnFailure,
}

/// `PAUSE db` on the pooler's admin console for each database that follows the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PausePoolerParams {
    pub databases: Vec<String>,
    /// How long PAUSE may wait for running transactions.
    pub timeout_ms: u64,
}

/// Point the pooler's databases at the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RoutePoolerParams {
    pub databases: Vec<String>,
    /// The node they must route to, and its address.
    pub primary: String,
    pub host: String,
    pub port: u16,
    /// The ini file whose `[databases]` entries get this host and port before RELOAD; absent:
    /// admin console only (RELOAD, then check that something else routed them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
}

/// `RESUME db` for each paused database that follows the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ResumePoolerParams {
    pub databases: Vec<String>,
}

/// A named point of an apply where hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HookPoint {
    BeforeSwitchover,
    AfterPromotion,
    AfterApply,
    OnFailure,
}

impl HookPoint {
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::BeforeSwitchover => "before_switchover",
            HookPoint::AfterPromotion => "after_promotion",
            HookPoint::AfterApply => "after_apply",
            HookPoint::OnFailure => "on_failure",
        }
    }
}

/// An argv command run on pgtopo's machine with a timeout; a non-zero exit fails the step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HookParams {
    pub point: HookPoint,
    pub command: Vec<String>,
    pub timeout_ms: u64,
    /// `PGTOPO_CLUSTER`, `PGTOPO_OLD_PRIMARY`, `PGTOPO_NEW_PRIMARY` and their `_HOST`/`_PORT`.
    pub env: BTreeMap<String, String>,
}

/// pg_ctl shutdown mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownMode {
    Smart,
    Fast,
    Immediate,
}

impl ShutdownMode {
    /// The service's word for it (`config::service`, which builds the stop command).
    pub fn stop_mode(self) -> crate::config::service::StopMode {
        use crate::config::service::StopMode;
        match self {
            ShutdownMode::Smart => StopMode::Smart,
            ShutdownMode::Fast => StopMode::Fast,
            ShutdownMode::Immediate => StopMode::Immediate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StopParams {
    pub mode: ShutdownMode,
    /// The moment writes become unavailable (stop of the running primary).
    #[serde(default)]
    pub writes_unavailable: bool,
    /// How long the server may take to stop (a switchover's `switchover.timeout`); absent: the
    /// apply's server timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// A `checkpoint` step ran just before (ahead of a pooler pause): the stop of a running
    /// primary does not run its own CHECKPOINT inside the writes-unavailable window.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checkpointed: bool,
    /// The candidate of the switchover this stop opens. When the stop does not finish within
    /// `timeout_ms`, it is escalated (the walsenders ended, then an immediate stop) and the old
    /// primary is started again as primary — unless this candidate has already replayed its
    /// shutdown checkpoint, when the switchover goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StartParams {
    /// Wait until the node streams from this upstream before the step is done.
    pub wait_streaming_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RestartParams {
    pub mode: ShutdownMode,
    /// Why (the postmaster settings that need it).
    pub reason: String,
    /// For a standby: wait until it streams from this upstream again.
    pub wait_streaming_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReloadParams {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AlterSystemParams {
    /// `ALTER SYSTEM SET name = value`.
    pub set: BTreeMap<String, String>,
    /// `ALTER SYSTEM RESET name`.
    #[serde(default)]
    pub reset: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WriteHbaParams {
    /// The managed block's lines, markers excluded.
    pub managed_block: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WritePgpassParams {
    /// Entries for the replication user; the password comes from the topology's reference at
    /// apply time and is never in the plan.
    pub entries: Vec<PgpassEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PgpassEntry {
    pub host: String,
    pub port: u16,
    pub user: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreateRoleParams {
    pub role: String,
    /// The password is taken from the topology's reference at apply time.
    pub with_password: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlotParams {
    pub slot: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WaitReplayParams {
    pub target: ReplayTarget,
    pub timeout_ms: u64,
    /// Switchover rollback: when the target is not reached, start this node again (the old
    /// primary, still primary) and fail the step.
    pub on_failure_restart: Option<String>,
}

/// The live proof before a promotion's disruptive part: the node's received and replayed
/// positions reach the target, read when the step runs, within `timeout_ms`; on the way, the
/// sessions that block its replay are cancelled when `cancel_conflicts` says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatchUpParams {
    /// The primary whose current WAL position (`pg_current_wal_lsn()`, read when the step runs)
    /// must be received and replayed (a switchover, before the stop); absent: everything the
    /// node has received (a failover, before the promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// `switchover.catchup_timeout` (a switchover) or `switchover.timeout` (a failover).
    pub timeout_ms: u64,
    /// Cancel the sessions that block the node's replay (`pg_blocking_pids` of its startup
    /// process, read as it waits): `pg_cancel_backend`, then `pg_terminate_backend` for those
    /// still blocking after `grace_ms`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_conflicts: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub grace_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// What the candidate must have replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayTarget {
    /// The "Latest checkpoint location" of this (stopped) node's control data, read at apply time.
    ShutdownCheckpointOf { node: String },
    /// A known location.
    Lsn { lsn: Lsn },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PromoteParams {
    /// Planned switchover or failover, for the description and preconditions.
    pub reason: String,
    /// Nodes that must not be running as primary when this runs.
    pub previous_primaries: Vec<String>,
    /// The writes-available moment.
    #[serde(default)]
    pub writes_available: bool,
    /// How long the node may take to leave recovery (`switchover.timeout`); absent: 60 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointParams {
    pub reason: String,
    /// How long the CHECKPOINT may take (a switchover's `switchover.timeout`); absent: the
    /// apply's server timeout. A node that does not finish it in time (frozen, or a disk that
    /// does not keep up) fails the step before anything was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigureStandbyParams {
    pub upstream: String,
    pub upstream_host: String,
    pub upstream_port: u16,
    pub user: String,
    /// = node name.
    pub application_name: String,
    pub slot: Option<String>,
    /// `dbname` in primary_conninfo, for the slot-sync worker of failover slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbname: Option<String>,
    /// The node's own identity, re-asserted after a clone or rewind.
    pub port: u16,
    pub listen_addresses: String,
    /// How the new settings take effect on a running server: reload (≥ 13), restart (12), or
    /// nothing when the server is stopped (a later start picks them up).
    pub apply: ConfigApply,
    /// sslmode and the TLS files of the node's replication connection (`replication.tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::config::ConninfoTls>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConfigApply {
    None,
    Reload,
    Restart,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RewindParams {
    pub source: String,
    /// The divergence, with LSNs ("n1 has WAL past the fork point 0/5000028 of timeline 2").
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CloneParams {
    pub source: String,
    /// Created by pg_basebackup (`-C -S`) when slots are on.
    pub slot: Option<String>,
    /// An existing data directory is moved to `<data_dir>.pgtopo-old-<UTC timestamp>`.
    pub move_aside: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FenceParams {
    pub reason: String,
}

/// A changed file, shown as a unified diff. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileDiff {
    pub node: String,
    pub path: String,
    /// The 1-based line of the file where `before` starts, when `before` is an excerpt (the
    /// managed block of pg_hba.conf); the diff's hunk headers count from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_line: Option<u32>,
    pub before: String,
    pub after: String,
}

/// Counts and risk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub add: u32,
    pub change: u32,
    pub remove: u32,
    pub steps: u32,
    /// Nodes that restart (or stop and start).
    pub restarts: Vec<String>,
    /// Writes are unavailable from the first to the second step id, inclusive.
    pub write_unavailable: Option<WriteWindow>,
    pub data_loss: DataLoss,
    /// Lines about WAL retained or freed by slot changes, and other risks.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Drift this plan has no step for, and why (SPEC §4 "Drift ⊆ plan"). Not empty: `plan`
    /// exits 1, and the cluster will not match topology.yaml after the apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cannot_fix: Vec<CannotFix>,
    /// The old primary's prepared transactions, when the plan is a switchover: they stay
    /// prepared on the new primary (the notes say so).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepared_transactions: Vec<crate::observe::PreparedXact>,
}

/// A drift finding the plan cannot fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CannotFix {
    /// The change address it concerns (`node.n3`, `setting.n1.work_mem`).
    #[schemars(with = "String")]
    pub address: crate::diff::address::Address,
    /// The finding, as `pgtopo drift` says it.
    pub finding: String,
    pub why: String,
    /// The nodes it concerns (its node, a slot's standby, a standby's upstream).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub concerns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WriteWindow {
    pub from_step: StepId,
    pub to_step: StepId,
    /// A rough estimate for the reviewer, in milliseconds.
    pub estimated_ms: u64,
}

/// Data-loss exposure of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "risk", rename_all = "snake_case")]
pub enum DataLoss {
    /// Nothing can be lost; `reason` says why.
    None { reason: String },
    /// Up to `bytes` of WAL acknowledged by the old primary may be lost.
    Possible { bytes: Option<u64>, reason: String },
}

/// `create_logical_slot`: `pg_create_logical_replication_slot(slot, plugin, false, false,
/// failover)` in `database`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CreateLogicalSlotParams {
    pub slot: String,
    pub plugin: String,
    pub database: String,
    pub failover: bool,
}

/// `sync_slots` on a standby: drop its own (unsynced) copies of `slots`; with `wait_persistent`,
/// then wait until it holds each as a synced, persistent copy, at most `timeout_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SyncSlotsParams {
    pub slots: Vec<String>,
    pub wait_persistent: bool,
    pub timeout_ms: u64,
}

/// Which half of the primary's upgrade a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpgradePhase {
    /// initdb of the new cluster and `pg_upgrade --check` while the old server still runs.
    Check,
    /// `pg_upgrade` proper on the stopped old cluster, configuration carried over, directories
    /// swapped.
    Run,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UpgradeParams {
    pub phase: UpgradePhase,
    pub from_major: u32,
    pub to_major: u32,
    /// The old major's bin directory (the new one is the node's bin_dir).
    pub old_bin_dir: String,
    pub mode: UpgradeMode,
    /// `<data_dir>.pgtopo-upgrade`: pg_upgrade's working directory; the new cluster is
    /// initialised in its `new` subdirectory before it replaces `<data_dir>`.
    pub work_dir: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StanzaParams {
    /// The pgBackRest stanza (`archive.pgbackrest.stanza`).
    pub stanza: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AnalyzeParams {
    /// `--missing-stats-only` (PostgreSQL 18 and later carry most statistics over).
    pub missing_stats_only: bool,
}

// ------------------------------------------------------------------------------------------------
// The topology before and after (`super::picture` draws it).

/// Before and after, every declared node in name order in both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TopologyPicture {
    pub before: Vec<PictureNode>,
    pub after: Vec<PictureNode>,
}

/// One node in one of the two pictures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PictureNode {
    pub name: String,
    pub role: PictureRole,
    /// The node it streams from.
    pub upstream: Option<String>,
    /// A member of the synchronous set (synchronous_standby_names on the primary).
    pub sync: bool,
    /// Not running, or not reachable (before only).
    pub down: bool,
    /// What the plan does to it (the same in both pictures).
    pub mark: Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PictureRole {
    Primary,
    Standby,
    /// Holds data, but its role is unknown (stopped or unreachable).
    Unknown,
    /// No data directory yet.
    Missing,
    Retired,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Unchanged,
    Changed,
    Added,
    Retired,
}
