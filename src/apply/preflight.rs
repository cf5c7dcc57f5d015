//! Before the first step: every node the plan acts on can be used over its transport — connected
//! (host key, authentication) and acting as its os_user ([`Transport::check_access`]). One that
//! cannot stops the apply before anything is changed, with the node, the host and the cause.
//!
//! [`Transport::check_access`]: crate::transport::Transport::check_access

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;

use crate::plan::Plan;
use crate::transport::DynTransport;

/// Nodes of the plan whose transport cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("nothing was changed: {}", .failures.join("; "))]
#[diagnostic(
    code(pgtopo::apply::preflight),
    help("fix the connection (known_hosts, key, sudoers) and run `pgtopo apply` again")
)]
pub struct PreflightError {
    /// `node: transport error` (which names the host and the cause), one per failing node.
    pub failures: Vec<String>,
}

/// Check the transport of every node the plan has a step on, all at once.
pub async fn preflight(
    plan: &Plan,
    transports: &BTreeMap<String, DynTransport>,
) -> Result<(), PreflightError> {
    let nodes: BTreeSet<&str> = plan.steps.iter().map(|s| s.node.as_str()).collect();
    let checks = nodes.into_iter().filter_map(|n| {
        let t = transports.get(n)?;
        Some(async move { t.check_access().await.map_err(|e| format!("{n}: {e}")) })
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
        let err = preflight(&plan, &ts).await.unwrap_err();
        assert_eq!(err.failures.len(), 1, "{err}");
        assert!(
            err.failures[0].starts_with("n2: fake: unreachable"),
            "{err}"
        );
        ts.remove("n2");
        preflight(&plan, &ts).await.unwrap();
    }
}
