//! One module per step kind of SPEC §3, each with the same three phases:
//!
//! - `check`: does the step's result already hold? → [`Freshness::Fresh`] (reported
//!   `already done`, nothing is touched) or [`Freshness::Dirty`] with the reason it must run.
//!   Preconditions are re-checked here against the live cluster (a promote refuses when another
//!   node is primary); a violated precondition is an error.
//! - `act`: do it, through the node's transport (argv, never a shell string) or over SQL.
//! - `verify`: wait on the resulting condition with [`crate::apply::wait_until`] and a timeout —
//!   never a fixed sleep.
//!
//! [`Executor`] dispatches a plan [`Step`] to its module and is the real
//! [`crate::apply::StepExecutor`]. [`StepContext`] is what every step may use: the desired
//! topology (connection details, bin_dir, os_user; secrets are resolved at the moment of use),
//! one transport per node, and a cache of SQL connections so that the connection a switchover
//! needs on its candidate is opened before the old primary stops, not inside the
//! writes-unavailable window.
//!
//! Architecture invariant: a step touches only its own node (the exceptions are named: a
//! wait_replay reads the stopped old primary's control file and may start it again as the
//! rollback of a switchover; a promote looks at every other node to prove none is primary; a
//! catch_up reads the primary's current WAL position).
//! Steps never print and never spawn a process except through a transport.

pub mod alter_system;
pub mod analyze;
pub mod catch_up;
pub mod checkpoint;
pub mod clone;
pub mod conf;
pub mod configure_standby;
pub mod control;
pub mod create_logical_slot;
pub mod create_role;
pub mod create_slot;
pub mod data_dir;
pub mod debian;
pub mod drop_slot;
pub mod fence;
pub mod hook;
pub mod own_config;
pub mod pause_pooler;
pub mod pgbackrest;
pub mod pooler_admin;
pub mod position;
pub mod promote;
pub mod reload;
pub mod restart;
pub mod resume_pooler;
pub mod rewind;
mod rewind_wal;
pub mod route_pooler;
pub mod server;
pub mod settings;
pub mod start;
pub mod stop;
pub mod sync_slots;
pub mod upgrade;
pub mod wait_replay;
pub mod write_hba;
pub mod write_pgpass;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::apply::{Executed, StepError, StepExecutor};
use crate::config::{Desired, DesiredNode};
use crate::plan::{Action, Step};
use crate::transport::{CommandOutput, CommandSpec, DynTransport};

/// Whether a step must run (Cargo's `Freshness`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Its result already holds.
    Fresh,
    /// It must run, because of this.
    Dirty(String),
}

/// What steps may use.
#[derive(Debug)]
pub struct StepContext {
    pub desired: Arc<Desired>,
    transports: BTreeMap<String, DynTransport>,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    /// Connect timeout for SQL.
    pub connect_timeout: Duration,
    /// How long a server may take to stop or start.
    pub server_timeout: Duration,
    /// Directories of garbage that steps moved aside (node, path), removed by
    /// [`StepContext::remove_set_aside`] once no step runs any more, off every step's clock.
    set_aside: Mutex<Vec<(String, PathBuf)>>,
}

impl StepContext {
    /// A context over these transports (one per node; nodes without one cannot be acted on).
    pub fn new(desired: Arc<Desired>, transports: BTreeMap<String, DynTransport>) -> Self {
        StepContext {
            desired,
            transports,
            clients: Mutex::new(HashMap::new()),
            connect_timeout: Duration::from_secs(3),
            server_timeout: Duration::from_secs(120),
            set_aside: Mutex::new(Vec::new()),
        }
    }

    /// Remember a directory of garbage on `node` to remove after the steps.
    pub fn remove_later(&self, node: &str, dir: PathBuf) {
        self.set_aside
            .lock()
            .expect("set-aside list")
            .push((node.to_string(), dir));
    }

    /// Remove the directories [`StepContext::remove_later`] collected; a failure is logged (the
    /// directory only holds garbage and the next run removes it again).
    pub async fn remove_set_aside(&self) {
        let dirs = std::mem::take(&mut *self.set_aside.lock().expect("set-aside list"));
        for (node, dir) in dirs {
            let Ok(t) = self.transport(&node) else {
                continue;
            };
            if let Err(e) = t.remove_tree(&dir).await {
                tracing::warn!(node, "{e}");
            }
        }
    }

    /// The declared node.
    pub fn node(&self, name: &str) -> Result<&DesiredNode, StepError> {
        self.desired
            .nodes
            .get(name)
            .ok_or_else(|| StepError::new(format!("node {name} is not in the topology")))
    }

    /// The node's transport.
    pub fn transport(&self, name: &str) -> Result<&DynTransport, StepError> {
        self.transports
            .get(name)
            .ok_or_else(|| StepError::new(format!("{name}: no transport to reach its host")))
    }

    /// A connection to the node: the cached one while it is open, else a new one.
    pub async fn client(&self, name: &str) -> Result<Arc<Client>, StepError> {
        self.client_with_timeout(name, self.connect_timeout).await
    }

    /// Like [`Self::client`] with another connect timeout.
    pub async fn client_with_timeout(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Arc<Client>, StepError> {
        if let Some(c) = self.cached(name) {
            return Ok(c);
        }
        let node = self.node(name)?;
        let c = crate::pg::connect(&self.desired, node, timeout)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        let c = Arc::new(c);
        self.clients
            .lock()
            .expect("client cache")
            .insert(name.to_string(), c.clone());
        Ok(c)
    }

    fn cached(&self, name: &str) -> Option<Arc<Client>> {
        let mut map = self.clients.lock().expect("client cache");
        match map.get(name) {
            Some(c) if !c.is_closed() => Some(c.clone()),
            Some(_) => {
                map.remove(name);
                None
            }
            None => None,
        }
    }

    /// Drop the cached connection (the server is about to stop or restart).
    pub fn forget(&self, name: &str) {
        self.clients.lock().expect("client cache").remove(name);
    }

    /// Open connections to these nodes now, concurrently, ignoring failures: later steps then
    /// find them ready (used for the candidate of a switchover, before the old primary stops).
    pub async fn prewarm(&self, names: &[String]) {
        futures::future::join_all(names.iter().map(|n| self.client(n))).await;
    }

    /// Run a query on the node, reconnecting once when the cached connection had been closed.
    pub async fn query(
        &self,
        name: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StepError> {
        let c = self.client(name).await?;
        match c.query(sql, params).await {
            Ok(rows) => Ok(rows),
            Err(e) if c.is_closed() => {
                self.forget(name);
                let c = self.client(name).await?;
                c.query(sql, params)
                    .await
                    .map_err(|_| sql_error(name, &e, sql_verb(sql)))
            }
            Err(e) => Err(sql_error(name, &e, sql_verb(sql))),
        }
    }

    /// Run statements (no parameters, no rows) on the node. Errors never echo the statement.
    pub async fn execute_batch(&self, name: &str, sql: &str, what: &str) -> Result<(), StepError> {
        let c = self.client(name).await?;
        c.batch_execute(sql)
            .await
            .map_err(|e| sql_error(name, &e, what))
    }

    /// Run a server tool on the node's host; a non-zero exit is an error carrying its stderr.
    pub async fn run_tool(
        &self,
        name: &str,
        cmd: &CommandSpec,
    ) -> Result<CommandOutput, StepError> {
        let started = std::time::Instant::now();
        let out = self
            .transport(name)?
            .run(cmd)
            .await
            .map_err(|e| StepError::new(e.to_string()))?;
        let prog = cmd
            .program
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        tracing::debug!(node = name, tool = %prog, code = ?out.code, elapsed_ms = started.elapsed().as_millis() as u64, "tool finished");
        if !out.success() {
            let how = match out.code {
                Some(c) => format!("exited with status {c}"),
                None => "was killed by a signal".into(),
            };
            return Err(StepError::with_stderr(
                format!("{name}: {prog} {how}"),
                if out.stderr.trim().is_empty() {
                    out.stdout_text().into_owned()
                } else {
                    out.stderr.clone()
                },
            ));
        }
        Ok(out)
    }

    /// `bin_dir/<tool>` of the node.
    pub fn tool(&self, node: &DesiredNode, tool: &str) -> CommandSpec {
        CommandSpec::new(node.bin_dir.join(tool))
    }
}

/// The first word of a statement, for error messages that must not echo the statement.
fn sql_verb(sql: &str) -> &str {
    sql.split_whitespace().next().unwrap_or("query")
}

/// An SQL error as a step error: the server's message, never the statement (it may hold a
/// password).
pub fn sql_error(node: &str, e: &tokio_postgres::Error, what: &str) -> StepError {
    StepError::new(format!("{node}: {what} failed: {}", crate::pg::describe(e)))
}

/// A string literal for SQL that does not depend on standard_conforming_strings: `E'…'` with
/// backslashes and quotes escaped.
pub fn sql_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push_str("E'");
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("''"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A quoted SQL identifier.
pub fn sql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The real executor: dispatches to the step kinds.
#[derive(Debug, Clone)]
pub struct Executor {
    pub ctx: Arc<StepContext>,
}

impl Executor {
    pub fn new(ctx: Arc<StepContext>) -> Self {
        Executor { ctx }
    }
}

/// check → (Fresh: already done) | act → verify; each phase's time is traced at debug level.
macro_rules! phases {
    ($m:ident, $ctx:expr, $node:expr, $p:expr) => {{
        let t = std::time::Instant::now();
        let fresh = $m::check($ctx, $node, $p).await?;
        let checked = t.elapsed();
        match fresh {
            Freshness::Fresh => {
                tracing::debug!(node = $node, kind = stringify!($m), ?checked, "already done");
                Ok(Executed::AlreadyDone)
            }
            Freshness::Dirty(why) => {
                $m::act($ctx, $node, $p).await?;
                let acted = t.elapsed();
                $m::verify($ctx, $node, $p).await?;
                tracing::debug!(
                    node = $node,
                    kind = stringify!($m),
                    reason = %why,
                    ?checked,
                    ?acted,
                    verified = ?t.elapsed(),
                    "step phases"
                );
                Ok(Executed::Done)
            }
        }
    }};
}

#[async_trait]
impl StepExecutor for Executor {
    async fn execute(&self, step: &Step) -> Result<Executed, StepError> {
        let ctx = &*self.ctx;
        let n = step.node.as_str();
        // Pooler and hook steps act on a pooler or on pgtopo's own machine, not on a node.
        match &step.action {
            Action::PausePooler(p) => return phases!(pause_pooler, ctx, n, p),
            Action::RoutePooler(p) => return phases!(route_pooler, ctx, n, p),
            Action::ResumePooler(p) => return phases!(resume_pooler, ctx, n, p),
            Action::Hook(p) => return phases!(hook, ctx, n, p),
            _ => {}
        }
        ctx.node(n)?;
        use pgbackrest::{check_archive, create_stanza};
        match &step.action {
            Action::Stop(p) => phases!(stop, ctx, n, p),
            Action::Start(p) => phases!(start, ctx, n, p),
            Action::Restart(p) => phases!(restart, ctx, n, p),
            Action::Reload(p) => phases!(reload, ctx, n, p),
            Action::AlterSystem(p) => phases!(alter_system, ctx, n, p),
            Action::WriteHba(p) => phases!(write_hba, ctx, n, p),
            Action::WritePgpass(p) => phases!(write_pgpass, ctx, n, p),
            Action::CreateRole(p) => phases!(create_role, ctx, n, p),
            Action::CreateSlot(p) => phases!(create_slot, ctx, n, p),
            Action::DropSlot(p) => phases!(drop_slot, ctx, n, p),
            Action::WaitReplay(p) => phases!(wait_replay, ctx, n, p),
            Action::CatchUp(p) => phases!(catch_up, ctx, n, p),
            Action::Promote(p) => phases!(promote, ctx, n, p),
            Action::Checkpoint(p) => phases!(checkpoint, ctx, n, p),
            Action::ConfigureStandby(p) => phases!(configure_standby, ctx, n, p),
            Action::Rewind(p) => phases!(rewind, ctx, n, p),
            Action::Clone(p) => phases!(clone, ctx, n, p),
            Action::Fence(p) => phases!(fence, ctx, n, p),
            Action::PausePooler(_)
            | Action::RoutePooler(_)
            | Action::ResumePooler(_)
            | Action::Hook(_) => unreachable!("dispatched above"),
            Action::CreateLogicalSlot(p) => phases!(create_logical_slot, ctx, n, p),
            Action::SyncSlots(p) => phases!(sync_slots, ctx, n, p),
            Action::Upgrade(p) => phases!(upgrade, ctx, n, p),
            Action::Analyze(p) => phases!(analyze, ctx, n, p),
            Action::CreateStanza(p) => phases!(create_stanza, ctx, n, p),
            Action::CheckArchive(p) => phases!(check_archive, ctx, n, p),
        }
    }
}

#[cfg(test)]
mod quoting_tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(sql_literal("a'b\\c"), "E'a''b\\\\c'");
        assert_eq!(sql_ident("we\"ird"), "\"we\"\"ird\"");
    }
}

#[cfg(test)]
mod tests;
