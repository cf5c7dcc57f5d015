//! The SQL side of observation: one connection per node and a handful of simple-protocol
//! statements sent at once (tokio-postgres pipelines concurrent requests on one connection), so a
//! running node costs about two network round trips (connect aside) and no process spawn.
//!
//! Every statement stands alone, so a connect user without superuser still gets what it may see:
//! functions that need grants (pg_control_*, pg_stat_file, pg_read_file, pg_hba_file_rules) are
//! in statements of their own whose refusal only leaves their facts unknown, and superuser-only
//! settings are read from pg_settings, which hides them instead of failing. (What such a role
//! cannot see — the WAL receiver's sender without pg_read_all_stats, primary_conninfo without
//! pg_read_all_settings — stays unknown.) Values are read as text.

use std::collections::BTreeSet;

use futures::future::join_all;
use sha2::Digest;
use tokio_postgres::{Client, SimpleQueryRow};

use super::conninfo::{managed_block, managed_block_line, parse_conninfo};
use super::model::*;
use crate::pg::rows;
use crate::units::Lsn;

/// Settings observed on every node, besides those the topology names.
pub const FIXED_SETTINGS: &[&str] = &[
    "wal_level",
    "max_wal_senders",
    "max_replication_slots",
    "hot_standby",
    "hot_standby_feedback",
    "wal_log_hints",
    "data_checksums",
    "max_connections",
    "max_worker_processes",
    "max_prepared_transactions",
    "max_locks_per_transaction",
    "synchronous_standby_names",
    "listen_addresses",
    "port",
    "wal_keep_size",
    "synchronous_commit",
    "wal_receiver_status_interval",
];

/// Facts about the WAL receiver that are resolved to a node name later.
#[derive(Debug, Default)]
pub struct ReceiverFacts {
    pub status: Option<String>,
    pub sender_host: Option<String>,
    pub sender_port: Option<u16>,
}

/// What every role may read. (A CASE around a function the role may not execute does not
/// help: PostgreSQL checks EXECUTE when the statement starts. Hence the separate statements.)
const CORE: &str = "select pg_is_in_recovery(), \
    current_setting('server_version_num'), \
    case when pg_is_in_recovery() then null else pg_current_wal_lsn()::text end, \
    pg_last_wal_receive_lsn()::text, \
    pg_last_wal_replay_lsn()::text, \
    case when pg_is_in_recovery() then null \
         else substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) end";

/// Read with the other settings (one pg_settings scan, which hides them from roles that may not
/// see them instead of failing) and taken out of the settings map: primary_conninfo may hold a
/// password and is kept only as its password-free summary.
const RECOVERY_SETTINGS: [&str; 2] = ["primary_conninfo", "primary_slot_name"];

/// pg_control, for roles allowed to read it.
const CONTROL: &str = "select (select system_identifier::text from pg_control_system()), \
    (select timeline_id::text from pg_control_checkpoint()), \
    (select min_recovery_end_timeline::text from pg_control_recovery())";

/// standby.signal in the data directory (pg_stat_file needs a grant).
const SIGNAL: &str = "select (pg_stat_file('standby.signal', true)).size is not null";

/// A separate statement: reading a file outside the data directory needs more than EXECUTE.
const HBA: &str = "select current_setting('hba_file'), \
    pg_read_file(current_setting('hba_file'), 0, 16777216, true)";

const RECEIVER: &str = "select status, sender_host, sender_port::text, received_tli::text, \
    last_msg_receipt_time::text, latest_end_time::text, \
    greatest(0, extract(epoch from clock_timestamp() - last_msg_receipt_time) * 1000)::bigint::text \
    from pg_stat_wal_receiver";

/// The position WAL retention and lag are measured from: the insert position on a primary, the
/// received (else replayed) position on a standby.
const HEAD: &str = "case when pg_is_in_recovery() \
    then coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) \
    else pg_current_wal_lsn() end";

fn slots_sql() -> String {
    format!(
        "select slot_name::text, slot_type, active, restart_lsn::text, \
         ({HEAD} - restart_lsn)::bigint::text, \
         to_jsonb(s) ->> 'wal_status', to_jsonb(s) ->> 'safe_wal_size', \
         plugin::text, database::text, temporary, to_jsonb(s) ->> 'failover', \
         to_jsonb(s) ->> 'synced', to_jsonb(s) ->> 'conflicting', \
         to_jsonb(s) ->> 'invalidation_reason' \
         from pg_replication_slots s order by slot_name"
    )
}

fn replication_sql() -> String {
    format!(
        "select coalesce(application_name, ''), host(client_addr), coalesce(state, ''), \
         coalesce(sync_state, ''), sent_lsn::text, flush_lsn::text, replay_lsn::text, \
         greatest(({HEAD} - replay_lsn)::bigint, 0)::text, \
         greatest(0, extract(epoch from clock_timestamp() - reply_time) * 1000)::bigint::text, \
         (extract(epoch from replay_lag) * 1000)::bigint::text \
         from pg_stat_replication order by application_name"
    )
}

/// The oldest WAL segment in pg_wal (pg_ls_waldir needs pg_monitor), with the segment size.
/// `wal_status`/`safe_wal_size` above come through to_jsonb so that PostgreSQL 12, which has
/// neither column, still answers.
const OLDEST_WAL: &str =
    "select min(name), (select setting from pg_settings where name = 'wal_segment_size') \
    from pg_ls_waldir() where name ~ '^[0-9A-F]{24}$'";

/// What the startup process of a standby waits for (pg_stat_activity needs pg_read_all_stats
/// to show another role's process), with its replay and receive positions.
const STARTUP: &str = "select wait_event, pg_last_wal_replay_lsn()::text, \
    pg_last_wal_receive_lsn()::text, pg_is_wal_replay_paused() \
    from pg_stat_activity where backend_type = 'startup'";

/// The PIDs of the sessions that block a standby's startup process (one column, `pid`):
/// `pg_blocking_pids` of it, and the holders of a granted lock on what its ungranted lock asks
/// for (the startup process is an auxiliary process, which pg_blocking_pids does not look up).
pub const REPLAY_BLOCKERS: &str = "select unnest(pg_blocking_pids(s.pid)) as pid \
    from pg_stat_activity s where s.backend_type = 'startup' \
    union select h.pid from pg_locks w join pg_locks h on h.granted and h.pid <> w.pid \
    and h.locktype = w.locktype and h.database is not distinct from w.database \
    and h.relation is not distinct from w.relation and h.page is not distinct from w.page \
    and h.tuple is not distinct from w.tuple and h.virtualxid is not distinct from w.virtualxid \
    and h.transactionid is not distinct from w.transactionid \
    and h.classid is not distinct from w.classid and h.objid is not distinct from w.objid \
    and h.objsubid is not distinct from w.objsubid \
    where not w.granted and w.pid in \
    (select pid from pg_stat_activity where backend_type = 'startup')";

/// A standby's startup process waiting on a recovery conflict, with the sessions that block it
/// ([`REPLAY_BLOCKERS`], one row each; one row with null blockers when none is known). Recovery
/// conflicts wait as `Lock` (a lock the startup process must take), `BufferPin`, or an `IPC`
/// event named `RecoveryConflict…` (a snapshot, a tablespace).
fn conflict_sql() -> String {
    format!(
        "select s.wait_event_type, s.wait_event, b.pid::text, b.usename::text, \
         b.application_name, left(b.query, 200), \
         greatest(0, extract(epoch from clock_timestamp() - coalesce(b.xact_start, b.query_start)) * 1000)::bigint::text \
         from pg_stat_activity s \
         left join pg_stat_activity b on b.pid in ({REPLAY_BLOCKERS}) \
         where s.backend_type = 'startup' \
         and (s.wait_event_type in ('Lock', 'BufferPin') or s.wait_event like 'RecoveryConflict%') \
         order by b.pid"
    )
}

/// The recovery conflict the rows of [`conflict_sql`] describe, if any.
pub fn replay_conflict(rows: &[SimpleQueryRow]) -> Option<ReplayConflict> {
    let first = rows.first()?;
    Some(ReplayConflict {
        wait_event_type: text(first, 0).unwrap_or_default(),
        wait_event: text(first, 1).unwrap_or_default(),
        blockers: rows
            .iter()
            .filter_map(|r| {
                Some(ReplayBlocker {
                    pid: num(r, 2)?,
                    user: text(r, 3),
                    application_name: text(r, 4).unwrap_or_default(),
                    query: text(r, 5),
                    age_ms: num(r, 6),
                })
            })
            .collect(),
    })
}

/// The recovery conflict a standby's replay waits on now (none on a primary, or when the
/// statement is refused).
pub async fn conflict_now(client: &Client) -> Option<ReplayConflict> {
    replay_conflict(&rows(client.simple_query(&conflict_sql()).await.ok()?))
}

/// Whether a startup process with `wait_event` waits for WAL to arrive.
pub fn waits_for_wal(wait_event: &str) -> bool {
    wait_event.starts_with("RecoveryWal") || wait_event == "RecoveryRetrieveRetryInterval"
}

/// A second look at a standby's startup process: a [`ReplayStall`] when its replay stayed at
/// `first_replay`, it waits for WAL, replay is not paused, and it has received WAL past it.
pub async fn replay_stall(client: &Client, first_replay: Lsn) -> Option<ReplayStall> {
    let r = rows(client.simple_query(STARTUP).await.ok()?);
    let r = r.first()?;
    let wait_event = text(r, 0)?;
    let (replay, received) = (lsn(r, 1)?, lsn(r, 2)?);
    let paused = boolean(r, 3).unwrap_or(true);
    // The receive position can run to the end of the WAL page the replay position is on (seen
    // on PostgreSQL 18 after a clone): only WAL past the next 64 kB boundary (the largest WAL
    // page size) is WAL that replay should have read.
    let page_end = Lsn((replay.0 / 65536 + 1) * 65536);
    let stalled = replay == first_replay && received > page_end && !paused;
    (stalled && waits_for_wal(&wait_event)).then_some(ReplayStall {
        replay,
        received,
        wait_event,
    })
}

/// Bytes per WAL segment.
const SEGMENT_SIZE: &str = "select setting from pg_settings where name = 'wal_segment_size'";

const HBA_ERRORS: &str = "select line_number::text, error from pg_hba_file_rules \
    where error is not null order by line_number";

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn settings_sql(names: &BTreeSet<String>) -> String {
    let list = names
        .iter()
        .map(|n| quote_literal(n))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "select name, current_setting(name), setting, unit, pending_restart, context, source \
         from pg_settings where name = any (array[{list}]::text[]) order by name"
    )
}

fn text(r: &SimpleQueryRow, i: usize) -> Option<String> {
    r.get(i).map(str::to_string)
}

fn boolean(r: &SimpleQueryRow, i: usize) -> Option<bool> {
    r.get(i).map(|v| v == "t")
}

/// A boolean read through `to_jsonb(…) ->> 'col'` (`true`/`false`).
fn json_bool(r: &SimpleQueryRow, i: usize) -> Option<bool> {
    r.get(i).map(|v| v == "true")
}

fn lsn(r: &SimpleQueryRow, i: usize) -> Option<Lsn> {
    r.get(i).and_then(|v| v.parse().ok())
}

fn num<T: std::str::FromStr>(r: &SimpleQueryRow, i: usize) -> Option<T> {
    r.get(i).and_then(|v| v.parse().ok())
}

/// Observe a node over an open connection. `setting_names` are the topology's settings for the
/// node; the fixed list is added. Fills `node`; returns the WAL receiver facts.
pub async fn observe_sql(
    client: &Client,
    setting_names: &BTreeSet<String>,
    node: &mut ObservedNode,
) -> Result<ReceiverFacts, tokio_postgres::Error> {
    let a = Answers::query(client, setting_names).await?;
    node.prepared_xacts = super::prepared::parse(&a.prepared);

    let (in_recovery, tli) = core_facts(&a, node);
    if let Some(hba) = observed_hba(&a.hba, &a.hba_errors) {
        node.hba = Some(hba);
    }
    // A server that answers runs on an initialised data directory.
    node.data_dir = DataDirState {
        exists: true,
        empty: false,
        pg_version: node.version.map(|v| v / 10000),
    };

    let (facts, received_tli) = receiver_facts(&a.receiver);
    node.streaming = in_recovery && facts.status.as_deref() == Some("streaming");
    node.timeline = if in_recovery {
        [received_tli, tli.min_recovery, tli.checkpoint]
            .into_iter()
            .flatten()
            .max()
    } else {
        tli.insert.or(tli.checkpoint)
    };

    node.replication_slots = a.slots.iter().map(slot).collect();
    node.slots = node
        .replication_slots
        .iter()
        .map(|s| s.name.clone())
        .collect();
    node.replication = a.repl.iter().map(replica).collect();
    node.settings = a.settings.iter().filter_map(setting).collect();
    take_recovery_settings(node);

    node.startup_wait_event = a.startup.first().and_then(|r| text(r, 0));
    node.replay_conflict = replay_conflict(&a.conflict);
    node.last_receipt = a.receiver.first().map(|r| LastReceipt {
        last_msg_receipt_time: text(r, 4),
        latest_end_time: text(r, 5),
        age_ms: num(r, 6),
    });
    node.oldest_wal = a.oldest.first().and_then(|r| {
        let size: u64 = num(r, 1)?;
        let (_, seg) = crate::units::parse_wal_segment(r.get(0)?, size)?;
        Some(Lsn(seg * size))
    });
    if let Some(tli) = node.timeline.filter(|t| *t > 1) {
        node.timeline_history = read_history(client, tli).await;
    }
    Ok(facts)
}

/// The timelines a node's current timeline is read from.
struct Timelines {
    /// The primary's insert timeline.
    insert: Option<u32>,
    /// pg_control's checkpoint timeline.
    checkpoint: Option<u32>,
    /// pg_control's minimum recovery ending timeline, when it has one.
    min_recovery: Option<u32>,
}

/// What the core and control statements say: role, version, WAL positions, system identifier,
/// standby.signal. Returns whether the node is in recovery, and its timelines.
fn core_facts(a: &Answers, node: &mut ObservedNode) -> (bool, Timelines) {
    let c = a.core.first().expect("the core query returns one row");
    node.reachable = true;
    node.running = true;
    node.host_reachable = true;
    let in_recovery = boolean(c, 0).unwrap_or(false);
    node.role = Some(if in_recovery {
        Role::Standby
    } else {
        Role::Primary
    });
    node.version = num(c, 1);
    let current = lsn(c, 2);
    node.receive_lsn = lsn(c, 3);
    node.replay_lsn = lsn(c, 4);
    node.lsn = if in_recovery {
        node.replay_lsn
    } else {
        current
    };
    let insert = r_hex(c.get(5));
    let ctl = a.control.first();
    node.system_identifier = ctl.and_then(|r| text(r, 0));
    let checkpoint: Option<u32> = ctl.and_then(|r| num(r, 1));
    let min_recovery: Option<u32> = ctl.and_then(|r| num(r, 2)).filter(|t| *t > 0);
    // Unknown without pg_stat_file: a server in recovery was started with standby.signal.
    node.standby_signal = a
        .signal
        .first()
        .and_then(|r| boolean(r, 0))
        .unwrap_or(in_recovery);
    (
        in_recovery,
        Timelines {
            insert,
            checkpoint,
            min_recovery,
        },
    )
}

/// The rows of every statement of [`observe_sql`].
struct Answers {
    core: Vec<SimpleQueryRow>,
    control: Vec<SimpleQueryRow>,
    signal: Vec<SimpleQueryRow>,
    receiver: Vec<SimpleQueryRow>,
    slots: Vec<SimpleQueryRow>,
    repl: Vec<SimpleQueryRow>,
    settings: Vec<SimpleQueryRow>,
    hba: Vec<SimpleQueryRow>,
    hba_errors: Vec<SimpleQueryRow>,
    oldest: Vec<SimpleQueryRow>,
    startup: Vec<SimpleQueryRow>,
    prepared: Vec<SimpleQueryRow>,
    conflict: Vec<SimpleQueryRow>,
}

impl Answers {
    /// Send every statement at once; an error of one every role may run is the node's error.
    async fn query(
        client: &Client,
        setting_names: &BTreeSet<String>,
    ) -> Result<Answers, tokio_postgres::Error> {
        let mut names: BTreeSet<String> = FIXED_SETTINGS.iter().map(|s| s.to_string()).collect();
        names.extend(setting_names.iter().cloned());
        names.extend(RECOVERY_SETTINGS.iter().map(|s| s.to_string()));
        let (slots_q, repl_q, settings_q) = (slots_sql(), replication_sql(), settings_sql(&names));
        let conflict_q = conflict_sql();
        // Sent together: one round trip for all of them.
        let mut results = join_all([
            client.simple_query(CORE),
            client.simple_query(CONTROL),
            client.simple_query(SIGNAL),
            client.simple_query(RECEIVER),
            client.simple_query(&slots_q),
            client.simple_query(&repl_q),
            client.simple_query(&settings_q),
            client.simple_query(HBA),
            client.simple_query(HBA_ERRORS),
            client.simple_query(OLDEST_WAL),
            client.simple_query(STARTUP),
            client.simple_query(super::prepared::SQL),
            client.simple_query(&conflict_q),
        ])
        .await
        .into_iter();
        let mut next = || results.next().expect("one result per statement");
        Ok(Answers {
            core: rows(next()?),
            // Statements that need privileges leave their facts unknown when refused.
            control: next().map(rows).unwrap_or_default(),
            signal: next().map(rows).unwrap_or_default(),
            receiver: rows(next()?),
            slots: rows(next()?),
            repl: rows(next()?),
            settings: rows(next()?),
            // Only a superuser (or pg_read_server_files) may read the file: without it, hba is
            // unknown.
            hba: next().map(rows).unwrap_or_default(),
            // Only a superuser may read pg_hba_file_rules; without it the errors stay unknown.
            hba_errors: next().map(rows).unwrap_or_default(),
            oldest: next().map(rows).unwrap_or_default(),
            startup: next().map(rows).unwrap_or_default(),
            prepared: next().map(rows).unwrap_or_default(),
            conflict: next().map(rows).unwrap_or_default(),
        })
    }
}

/// pg_hba.conf as read by the server, with the errors of pg_hba_file_rules (None when the file
/// could not be read).
fn observed_hba(hba: &[SimpleQueryRow], hba_errors: &[SimpleQueryRow]) -> Option<ObservedHba> {
    let hba_row = hba.first();
    let (path, contents) = (
        hba_row.and_then(|r| text(r, 0))?,
        hba_row.and_then(|r| r.get(1))?,
    );
    Some(ObservedHba {
        path,
        managed_block: managed_block(contents),
        block_line: Some(managed_block_line(contents)),
        sha256: hex::encode(sha2::Sha256::digest(contents.as_bytes())),
        errors: hba_errors
            .iter()
            .map(|r| {
                format!(
                    "line {}: {}",
                    r.get(0).unwrap_or("?"),
                    r.get(1).unwrap_or("")
                )
            })
            .collect(),
    })
}

/// The WAL receiver's facts, and the timeline it receives (None when it has none).
fn receiver_facts(receiver: &[SimpleQueryRow]) -> (ReceiverFacts, Option<u32>) {
    let mut facts = ReceiverFacts::default();
    let mut received_tli = None;
    if let Some(r) = receiver.first() {
        facts.status = text(r, 0);
        facts.sender_host = text(r, 1);
        facts.sender_port = num(r, 2);
        received_tli = num::<u32>(r, 3).filter(|t| *t > 0);
    }
    (facts, received_tli)
}

/// A row of [`slots_sql`].
fn slot(r: &SimpleQueryRow) -> ObservedSlot {
    ObservedSlot {
        name: text(r, 0).unwrap_or_default(),
        slot_type: text(r, 1).unwrap_or_default(),
        active: boolean(r, 2).unwrap_or(false),
        restart_lsn: lsn(r, 3),
        wal_retained_bytes: num::<i64>(r, 4).map(|b| b.max(0) as u64),
        wal_status: text(r, 5),
        safe_wal_size: num(r, 6),
        logical: (text(r, 1).as_deref() == Some("logical")).then(|| LogicalSlotFacts {
            plugin: text(r, 7).unwrap_or_default(),
            database: text(r, 8).unwrap_or_default(),
            temporary: boolean(r, 9).unwrap_or(false),
            failover: json_bool(r, 10),
            synced: json_bool(r, 11),
            conflicting: json_bool(r, 12),
            invalidation_reason: text(r, 13),
        }),
    }
}

/// A row of [`replication_sql`].
fn replica(r: &SimpleQueryRow) -> ObservedReplica {
    ObservedReplica {
        application_name: text(r, 0).unwrap_or_default(),
        client_addr: text(r, 1),
        state: text(r, 2).unwrap_or_default(),
        sync_state: text(r, 3).unwrap_or_default(),
        sent_lsn: lsn(r, 4),
        flush_lsn: lsn(r, 5),
        replay_lsn: lsn(r, 6),
        lag_bytes: num(r, 7),
        reply_age_ms: num(r, 8),
        replay_lag_ms: num(r, 9),
    }
}

/// A row of [`settings_sql`], keyed by the setting's name.
fn setting(r: &SimpleQueryRow) -> Option<(String, ObservedSetting)> {
    Some((
        text(r, 0)?,
        ObservedSetting {
            value: text(r, 1).unwrap_or_default(),
            raw: text(r, 2),
            unit: text(r, 3),
            pending_restart: boolean(r, 4).unwrap_or(false),
            context: text(r, 5).unwrap_or_default(),
            source: text(r, 6).unwrap_or_default(),
        },
    ))
}

/// primary_conninfo and primary_slot_name are facts of their own, not settings to compare.
fn take_recovery_settings(node: &mut ObservedNode) {
    let conninfo = node.settings.remove("primary_conninfo");
    node.primary_conninfo = conninfo
        .filter(|s| !s.value.is_empty())
        .map(|s| parse_conninfo(&s.value));
    node.primary_slot_name = node
        .settings
        .remove("primary_slot_name")
        .map(|s| s.value)
        .filter(|s| !s.is_empty());
}

/// The end of WAL a downstream can have from this node now: the flush position of a primary,
/// the received (else replayed) position of a standby.
pub async fn wal_end_now(client: &Client) -> Option<Lsn> {
    let q = "select case when pg_is_in_recovery() \
        then greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) \
        else pg_current_wal_flush_lsn() end::text";
    rows(client.simple_query(q).await.ok()?)
        .first()
        .and_then(|r| lsn(r, 0))
}

/// The `len` bytes of WAL before `end` (never before the start of `end`'s segment), as the
/// hex text PostgreSQL prints a bytea in, read from the node's pg_wal on timeline `tli`. None
/// when the file is not there or cannot be read (pg_read_binary_file needs a grant).
pub async fn wal_bytes_before(client: &Client, tli: u32, end: Lsn, len: u64) -> Option<String> {
    let size: u64 = rows(client.simple_query(SEGMENT_SIZE).await.ok()?)
        .first()
        .and_then(|r| num(r, 0))?;
    let offset = end.0 % size;
    let from = offset.saturating_sub(len);
    if offset == from {
        return None;
    }
    let name = crate::units::wal_segment_name(tli, end.0 / size, size);
    let q = format!(
        "select pg_read_binary_file('pg_wal/{name}', {from}, {}, true)",
        offset - from
    );
    let r = rows(client.simple_query(&q).await.ok()?);
    r.first()
        .and_then(|r| r.get(0))
        .map(str::to_string)
        .filter(|v| v.len() as u64 == 2 + 2 * (offset - from))
}

fn r_hex(v: Option<&str>) -> Option<u32> {
    v.and_then(|h| u32::from_str_radix(h, 16).ok())
}

/// The fork points of timeline `tli` from `pg_wal/<TLI>.history` (empty when unreadable).
async fn read_history(client: &Client, tli: u32) -> Vec<TimelineFork> {
    let q = format!("select pg_read_file('pg_wal/{tli:08X}.history', 0, 16777216, true)");
    match client.simple_query(&q).await {
        Ok(msgs) => rows(msgs)
            .first()
            .and_then(|r| r.get(0))
            .map(parse_history)
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Parse a timeline history file: `parentTLI<TAB>switchpoint<TAB>reason` lines, `#` comments.
pub fn parse_history(text: &str) -> Vec<TimelineFork> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let timeline = f.next()?.parse().ok()?;
            let fork_lsn = f.next()?.parse().ok()?;
            Some(TimelineFork { timeline, fork_lsn })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_files_parse() {
        let h = parse_history(
            "1\t0/3000108\tno recovery target specified\n\n\
             2\t0/50000A0\tno recovery target specified\n",
        );
        assert_eq!(
            h,
            vec![
                TimelineFork {
                    timeline: 1,
                    fork_lsn: "0/3000108".parse().unwrap()
                },
                TimelineFork {
                    timeline: 2,
                    fork_lsn: "0/50000A0".parse().unwrap()
                }
            ]
        );
    }

    #[test]
    fn setting_names_are_quoted() {
        let q = settings_sql(&["a'b".to_string()].into_iter().collect());
        assert!(q.contains("array['a''b']"));
    }
}
