//! Why the planner refuses to plan: each refusal is a diagnostic that says what it saw and what
//! the operator can do. Never a secret in a message.

use miette::Diagnostic;

/// A safety rule refused the plan, or the plan needs something it cannot reach.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Diagnostic)]
pub enum PlanError {
    #[error("{why}")]
    #[diagnostic(
        code(pgtopo::plan::foreign_stanza),
        help("nothing was changed; declare the stanza of this cluster in `archive.pgbackrest.stanza`")
    )]
    ForeignStanza { why: String },

    #[error("pgBackRest fails on {node}, whose archive this plan configures: {message}")]
    #[diagnostic(
        code(pgtopo::plan::pgbackrest),
        help("nothing was changed; install pgBackRest on the node (Debian package `pgbackrest`), make its pgbackrest.conf name the stanza, and make the repository reachable")
    )]
    PgBackRest { node: String, message: String },

    #[error(
        "failover logical slots need PostgreSQL 17 or later; {node} runs PostgreSQL {version}"
    )]
    #[diagnostic(
        code(pgtopo::plan::failover_slots_version),
        help("remove `failover: true` from `logical_slots` (or the slots), or upgrade every node to PostgreSQL 17+")
    )]
    FailoverSlotsNeed17 { node: String, version: String },

    #[error("{candidate} holds no persistent synced copy of the failover slots {slots}: promoting it would lose them and strand their subscribers")]
    #[diagnostic(
        code(pgtopo::plan::slots_not_synced),
        help("bring the old primary back so the slots can sync (then switch over), or declare a standby whose `pgtopo status` shows the slots synced")
    )]
    SlotsNotSynced { candidate: String, slots: String },

    #[error("{primary} (the primary) is down and cannot be proven shut down cleanly: promoting {candidate} is a failover{exposure}")]
    #[diagnostic(
        code(pgtopo::plan::failover_not_allowed),
        help("a failover may lose the writes {primary} acknowledged last; to consent, pass --allow-failover or set failover.allow: true in topology.yaml")
    )]
    FailoverNotAllowed {
        primary: String,
        candidate: String,
        /// ", up to N of WAL may be lost" or empty.
        exposure: String,
    },

    #[error("failover candidate {candidate} is {bytes} bytes behind {best}, the most advanced reachable standby (failover.max_lag is {max_lag} bytes)")]
    #[diagnostic(
        code(pgtopo::plan::candidate_behind),
        help("declare {best} as the primary instead, or raise failover.max_lag if losing that WAL is acceptable")
    )]
    CandidateTooFarBehind {
        candidate: String,
        best: String,
        bytes: u64,
        max_lag: u64,
    },

    #[error("failover to {candidate} would lose {bytes} bytes of WAL that {best} has received: with synchronous replication declared, commits in it may have been acknowledged to clients")]
    #[diagnostic(
        code(pgtopo::plan::sync_data_loss),
        help("declare {best} (the most advanced reachable standby) as the primary instead, or pass --accept-data-loss to lose those commits")
    )]
    SyncDataLoss {
        candidate: String,
        best: String,
        bytes: u64,
    },

    #[error("switchover refused: {why}")]
    #[diagnostic(
        code(pgtopo::plan::not_receiving),
        help("a switchover to {candidate} would stop the primary and wait for WAL that does not arrive: find out why {candidate} hears nothing from its upstream (network, a stuck WAL receiver; see `pgtopo status`), then plan again")
    )]
    CandidateNotReceiving { candidate: String, why: String },

    #[error("switchover refused: {why}")]
    #[diagnostic(
        code(pgtopo::plan::replay_blocked),
        help("end those sessions on {candidate}, or set `switchover.cancel_conflicting_queries: true` so that the switchover cancels them right before it stops the primary")
    )]
    CandidateReplayBlocked { candidate: String, why: String },

    #[error("switchover candidate {candidate} is {bytes} bytes behind {primary} (switchover.max_lag is {max_lag} bytes)")]
    #[diagnostic(
        code(pgtopo::plan::switchover_lag),
        help("wait until {candidate} has caught up (see `pgtopo status`), or raise switchover.max_lag")
    )]
    SwitchoverLagTooLarge {
        candidate: String,
        primary: String,
        bytes: u64,
        max_lag: u64,
    },

    #[error("{nodes} are all running as primary and topology.yaml declares none of them primary")]
    #[diagnostic(
        code(pgtopo::plan::two_primaries),
        help("declare in topology.yaml which node is the primary; the others will be fenced and rejoined")
    )]
    TwoPrimaries { nodes: String },

    #[error("{other} is running as primary: pgtopo never promotes {candidate} while another reachable node is primary")]
    #[diagnostic(
        code(pgtopo::plan::another_primary),
        help("declare {other} as the primary in topology.yaml, or stop it first")
    )]
    AnotherPrimary { other: String, candidate: String },

    #[error("{old} is still running as primary but pgtopo cannot act on it ({why}): promoting {candidate} would make two primaries")]
    #[diagnostic(
        code(pgtopo::plan::old_primary_running),
        help("fix {old}'s transport (see `pgtopo status`) so that pgtopo can switch over or fence it, or stop {old} by hand")
    )]
    OldPrimaryRunning {
        old: String,
        candidate: String,
        why: String,
    },

    #[error("{node} is unreachable ({why}), and the plan needs it to {needed_for}")]
    #[diagnostic(
        code(pgtopo::plan::unreachable),
        help(
            "bring {node} back (check `pgtopo status`), or plan with --assume-down for a what-if"
        )
    )]
    Unreachable {
        node: String,
        why: String,
        needed_for: String,
    },

    #[error("{candidate} cannot be promoted: {why}")]
    #[diagnostic(code(pgtopo::plan::candidate))]
    CandidateNotReady { candidate: String, why: String },

    #[error(
        "{primary} (the primary) is unreachable and no reachable standby could replace it{skipped}"
    )]
    #[diagnostic(
        code(pgtopo::plan::no_candidate),
        help("bring {primary} back; there is nothing to fail over to")
    )]
    NoCandidate { primary: String, skipped: String },

    #[error("{node} has no data directory and pgtopo does not initialise a primary")]
    #[diagnostic(
        code(pgtopo::plan::no_primary_data),
        help("initialise the primary first (e.g. `pgtopo sandbox up` or initdb), then plan again")
    )]
    PrimaryHasNoData { node: String },

    #[error("--assume-down names {node}, which topology.yaml does not declare")]
    #[diagnostic(code(pgtopo::plan::unknown_node))]
    UnknownNode { node: String },

    #[error(transparent)]
    #[diagnostic(transparent)]
    Upgrade(#[from] UpgradeError),
}

/// An upgrade that cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Diagnostic)]
pub enum UpgradeError {
    #[error("{node}: bin_dir {bin_dir} cannot be used: {why}")]
    #[diagnostic(
        code(pgtopo::plan::bin_dir_unusable),
        help("postgres.bin_dir (or the node's bin_dir) must name an existing PostgreSQL bin directory on the node's host")
    )]
    BinDirUnusable {
        node: String,
        bin_dir: String,
        why: String,
    },

    #[error("{node} runs PostgreSQL {running} but its bin_dir {bin_dir} is PostgreSQL {target}: pgtopo cannot downgrade")]
    #[diagnostic(
        code(pgtopo::plan::downgrade),
        help("a major version can only go up (pg_upgrade); set bin_dir back to a PostgreSQL {running} bin directory")
    )]
    Downgrade {
        node: String,
        running: u32,
        target: u32,
        bin_dir: String,
    },

    #[error("cannot upgrade to PostgreSQL {target}: {node} {why}")]
    #[diagnostic(
        code(pgtopo::plan::upgrade_unsettled),
        help("an upgrade starts from a settled cluster: plan and apply with the old bin_dir first, then change bin_dir")
    )]
    NotSettled {
        node: String,
        target: u32,
        why: String,
    },

    #[error("cannot tell where the PostgreSQL {from} binaries of {node} are (its postmaster's executable could not be read)")]
    #[diagnostic(
        code(pgtopo::plan::upgrade_old_binaries),
        help("set postgres.upgrade.from_bin_dir to the PostgreSQL {from} bin directory")
    )]
    OldBinariesUnknown { node: String, from: u32 },
}
