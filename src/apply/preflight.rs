//! Before the first step: every node the plan acts on can be used over its transport — connected
//! (host key, authentication) and acting as its os_user ([`Transport::check_access`]) — and
//! every node the plan clones can have its data directory made: its os_user can write the data
//! directory's parent (created first, as the clone would, when missing). One that cannot stops
//! the apply before anything is changed, with the node, the host and the cause. A node that a
//! switchover stops (the running primary's stop, writes unavailable) and that systemd runs must
//! have a unit whose stop is a fast shutdown: the unit is read (`systemctl show`, through the
//! node's transport) and judged by [`crate::config::service::unit_stop`].
//!
//! [`Transport::check_access`]: crate::transport::Transport::check_access

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use futures::future::join_all;

use crate::config::service::{self, UnitStop};
use crate::config::{Desired, Service};
use crate::plan::{Action, Plan};
use crate::transport::{CommandSpec, DynTransport};

/// Nodes of the plan whose transport cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("nothing was changed: {}", .failures.join("; "))]
#[diagnostic(
    code(pgtopo::apply::preflight),
    help("fix the connection (known_hosts, key, sudoers) or the directory's owner and run `pgtopo apply` again")
)]
pub struct PreflightError {
    /// `node: transport error` (which names the host and the cause), one per failing node.
    pub failures: Vec<String>,
}

/// Check the transport of every node the plan has a step on, all at once, and the data
/// directory's parent of every node it clones.
pub async fn preflight(
    plan: &Plan,
    desired: &Desired,
    transports: &BTreeMap<String, DynTransport>,
) -> Result<(), PreflightError> {
    let nodes: BTreeSet<&str> = plan.steps.iter().map(|s| s.node.as_str()).collect();
    let cloned: BTreeSet<&str> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Clone(_)))
        .map(|s| s.node.as_str())
        .collect();
    let switched: BTreeSet<&str> = plan
        .steps
        .iter()
        .filter(|s| matches!(&s.action, Action::Stop(p) if p.writes_unavailable))
        .map(|s| s.node.as_str())
        .collect();
    let checks = nodes.into_iter().filter_map(|n| {
        let t = transports.get(n)?;
        let parent = cloned
            .contains(n)
            .then(|| desired.nodes.get(n)?.data_dir.parent())
            .flatten();
        let unit = match desired.nodes.get(n).map(|d| &d.service) {
            Some(Service::Systemd { unit }) if switched.contains(n) => Some(unit.as_str()),
            _ => None,
        };
        Some(async move {
            t.check_access().await.map_err(|e| format!("{n}: {e}"))?;
            if let Some(unit) = unit {
                fast_unit_stop(t, unit)
                    .await
                    .map_err(|e| format!("{n}: {e}"))?;
            }
            match parent {
                Some(p) => writable_parent(t, p).await.map_err(|e| format!("{n}: {e}")),
                None => Ok(()),
            }
        })
    });
    let failures: Vec<String> = join_all(checks)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect();
    match failures.is_empty() {
        true => Ok(()),
        false => Err(PreflightError { failures }),
    }
}

/// The unit that runs a node a switchover stops ends its server with a fast shutdown (the
/// shutdown checkpoint the candidate must replay past; a smart one waits for every session).
async fn fast_unit_stop(t: &DynTransport, unit: &str) -> Result<(), String> {
    let argv = service::show_unit(unit);
    let show = CommandSpec::new(&argv[0])
        .args(&argv[1..])
        .timeout(Duration::from_secs(10));
    let out = match t.run(&show).await {
        Ok(out) if out.success() => out,
        Ok(out) => {
            return Err(format!(
                "cannot read the systemd unit {unit} (`{}` exited {:?}: {}); a switchover \
                 stops this node and its unit's stop must be a fast shutdown",
                service::display(&argv),
                out.code,
                out.stderr.trim()
            ))
        }
        Err(e) => return Err(format!("cannot read the systemd unit {unit}: {e}")),
    };
    match service::unit_stop(&out.stdout_text()) {
        UnitStop::Fast(_) => Ok(()),
        UnitStop::NotFast(why) => Err(format!(
            "the switchover stops this node with `sudo -n systemctl stop {unit}`, but the unit \
             {unit} does not stop PostgreSQL with a fast shutdown: {why}. Give the unit \
             KillSignal=SIGINT (PGDG's postgresql-N.service) or an ExecStop with `-m fast` \
             (Debian's postgresql@.service)"
        )),
    }
}

/// The os_user can create entries in `parent` (made first when missing, as the clone would).
async fn writable_parent(t: &DynTransport, parent: &Path) -> Result<(), String> {
    let shown = parent.display();
    let made = async {
        if t.list_dir(parent).await?.is_none() {
            t.create_dir(parent, 0o755).await?;
        }
        let test = CommandSpec::new("test")
            .arg("-w")
            .arg(parent)
            .timeout(Duration::from_secs(10));
        t.run(&test).await
    };
    match made.await {
        Ok(out) if out.success() => Ok(()),
        Ok(_) => Err(format!(
            "the data directory's parent {shown} is not writable by the os_user: give it to \
             the os_user (chown) or choose another data_dir"
        )),
        Err(e) => Err(format!(
            "the data directory's parent {shown} cannot be made: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::{plan, step};
    use crate::transport::FakeTransport;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_node_of_the_plan_that_cannot_be_reached_is_named() {
        let plan = plan(vec![step(1, "n1", &[]), step(2, "n2", &[1])]);
        let mut ts: BTreeMap<String, DynTransport> = BTreeMap::new();
        ts.insert("n1".into(), Arc::new(FakeTransport::new()));
        ts.insert("n2".into(), Arc::new(FakeTransport::new().unreachable()));
        ts.insert("n3".into(), Arc::new(FakeTransport::new().unreachable()));
        let d = crate::observe::fixtures::desired3();
        let err = preflight(&plan, &d, &ts).await.unwrap_err();
        assert_eq!(err.failures.len(), 1, "{err}");
        assert!(
            err.failures[0].starts_with("n2: fake: unreachable"),
            "{err}"
        );
        ts.remove("n2");
        preflight(&plan, &d, &ts).await.unwrap();
    }

    /// A plan whose step 1 is the stop of n1 that opens a switchover's window.
    fn switchover_stop() -> Plan {
        let mut s = step(1, "n1", &[]);
        s.action = Action::Stop(crate::plan::StopParams {
            mode: crate::plan::ShutdownMode::Fast,
            writes_unavailable: true,
            timeout_ms: None,
            checkpointed: false,
            candidate: Some("n2".into()),
        });
        plan(vec![s])
    }

    async fn unit_checked(show: &str) -> (Result<(), PreflightError>, Vec<CommandSpec>) {
        let mut d = crate::observe::fixtures::desired3();
        d.nodes.get_mut("n1").unwrap().service = Service::Systemd {
            unit: "postgresql@15-main".into(),
        };
        let f = FakeTransport::new()
            .with_output("systemctl", crate::transport::CommandOutput::ok(show));
        let mut ts: BTreeMap<String, DynTransport> = BTreeMap::new();
        ts.insert("n1".into(), Arc::new(f.clone()));
        let r = preflight(&switchover_stop(), &d, &ts).await;
        (r, f.commands())
    }

    #[tokio::test]
    async fn a_switchover_refuses_a_unit_whose_stop_is_not_fast_naming_it() {
        let (r, cmds) = unit_checked("KillSignal=15\nExecStop=\nKillMode=control-group\n").await;
        let err = r.unwrap_err().to_string();
        assert!(err.contains("n1: the switchover stops this node with `sudo -n systemctl stop postgresql@15-main`"), "{err}");
        assert!(err.contains("SIGTERM") && err.contains("smart"), "{err}");
        assert_eq!(
            cmds.iter().map(|c| c.display()).collect::<Vec<_>>(),
            ["systemctl show postgresql@15-main -p KillSignal -p ExecStop -p KillMode"]
        );
        let (r, _) = unit_checked("KillSignal=2\nExecStop=\nKillMode=mixed\n").await;
        r.unwrap();
    }
}
