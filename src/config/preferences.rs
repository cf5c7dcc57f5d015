//! Rules on a node's promotion preferences (`failover_priority`, `apply_delay`): the declared
//! primary must be a node that may be promoted, since declaring it primary asks pgtopo to make
//! it one (a switchover or failover target).

use super::diag::ConfigError;
use super::yaml::{Entry, Node};
use crate::units::Duration;

/// The declared (present) primary has `failover_priority: 0` or a non-zero `apply_delay`.
pub fn check(root: &Node) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let Some(nodes) = root.get("nodes") else {
        return errors;
    };
    for n in nodes.value.entries() {
        let Some(role) = n
            .value
            .get("role")
            .filter(|r| r.value.as_str() == Some("primary"))
        else {
            continue;
        };
        if n.value.get("state").and_then(|s| s.value.as_str()) == Some("absent") {
            continue;
        }
        if let Some(p) = n.value.get("failover_priority") {
            if p.value.as_int() == Some(0) {
                errors.push(refusal(
                    n,
                    role,
                    p,
                    "failover_priority 0 means never promote",
                ));
            }
        }
        if let Some(d) = n.value.get("apply_delay") {
            let delay = d.value.as_str().and_then(|s| s.parse::<Duration>().ok());
            if delay.is_some_and(|d| !d.0.is_zero()) {
                errors.push(refusal(n, role, d, "a delayed standby is never promoted"));
            }
        }
    }
    errors
}

fn refusal(n: &Entry, role: &Entry, key: &Entry, why: &str) -> ConfigError {
    ConfigError::new(
        "primary_not_promotable",
        format!(
            "node `{}` is declared primary but may never be promoted",
            n.key
        ),
    )
    .label(role.span(), "declared primary")
    .label(key.span(), why.to_string())
    .help(format!(
        "declare another node primary, or remove `{}` from `{}`",
        key.key, n.key
    ))
}
