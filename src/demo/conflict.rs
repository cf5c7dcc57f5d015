//! `bench switchover --conflict`: a report session on the candidate that blocks its replay, as
//! an operator meets it — `BEGIN; SELECT count(*) FROM report` left open on n2 while
//! `TRUNCATE report` commits on n1, so n2's startup process waits on the session's lock (until
//! `max_standby_streaming_delay`, 30 s by default, unless pgtopo cancels it).

use std::time::Duration;

use miette::{miette, Result};

use crate::apply::{wait_until, Poll, WaitSpec};
use crate::sandbox::{Sandbox, SandboxNode};

/// The open report session (ended when dropped, if pgtopo has not ended it).
pub struct ReportConflict {
    _session: tokio_postgres::Client,
}

async fn session(n: &SandboxNode, app: &str) -> Result<tokio_postgres::Client> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&n.host)
        .port(n.port)
        .user("postgres")
        .dbname("postgres")
        .application_name(app)
        .connect_timeout(Duration::from_secs(3));
    crate::pg::open(&mut cfg, &crate::pg::tls::TlsSettings::disabled())
        .await
        .map_err(|e| miette!("{}: {e}", n.name))
}

/// Poll `sql` (one boolean) on `c` until it is true.
async fn until(c: &tokio_postgres::Client, what: &str, sql: &str) -> Result<()> {
    let spec = WaitSpec::new(what, Duration::from_secs(30));
    wait_until(&spec, || async {
        match c.query_one(sql, &[]).await.map(|r| r.get::<_, bool>(0)) {
            Ok(true) => Poll::Ready(()),
            Ok(false) => Poll::Pending("not yet".into()),
            Err(e) => Poll::Failed(crate::pg::describe(&e)),
        }
    })
    .await
    .map_err(|e| miette!("{e}"))
}

/// The conflict on `sb`'s second node, its first being the primary.
pub async fn make(sb: &Sandbox) -> Result<ReportConflict> {
    let (n1, n2) = (&sb.nodes[0], &sb.nodes[1]);
    let primary = session(n1, "pgtopo-bench").await?;
    let q = |e: tokio_postgres::Error| miette!("{}", crate::pg::describe(&e));
    primary
        .batch_execute(
            "DROP TABLE IF EXISTS report; CREATE TABLE report(id int); \
             INSERT INTO report SELECT generate_series(1, 1000)",
        )
        .await
        .map_err(q)?;
    let standby = session(n2, "nightly_report").await?;
    until(
        &standby,
        "the report table on the standby",
        "SELECT to_regclass('report') IS NOT NULL",
    )
    .await?;
    standby
        .batch_execute("BEGIN; SELECT count(*) FROM report")
        .await
        .map_err(q)?;
    primary.batch_execute("TRUNCATE report").await.map_err(q)?;
    let watch = session(n2, "pgtopo-bench").await?;
    until(
        &watch,
        "the standby's replay to wait on the report session",
        "SELECT count(*) = 1 FROM pg_stat_activity \
         WHERE backend_type = 'startup' AND wait_event_type = 'Lock'",
    )
    .await?;
    Ok(ReportConflict { _session: standby })
}
