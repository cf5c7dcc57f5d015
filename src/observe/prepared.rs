//! Prepared transactions (pg_prepared_xacts): a switchover plan names those of the primary
//! (they survive on the new primary, which replayed their PREPARE records).

use tokio_postgres::SimpleQueryRow;

use super::model::PreparedXact;

/// Every prepared transaction, oldest first.
pub const SQL: &str = "select gid, owner::text, database::text, prepared::text \
    from pg_prepared_xacts order by prepared, gid";

/// The rows of [`SQL`].
pub fn parse(rows: &[SimpleQueryRow]) -> Vec<PreparedXact> {
    rows.iter()
        .map(|r| {
            let t = |i: usize| r.get(i).unwrap_or_default().to_string();
            PreparedXact {
                gid: t(0),
                owner: t(1),
                database: t(2),
                prepared: t(3),
            }
        })
        .collect()
}
