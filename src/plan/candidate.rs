//! The failover candidate choice: which reachable standby takes the place of a declared primary
//! that is unreachable. The one place that reads a node's promotion preferences
//! (`failover_priority`, `apply_delay`; [`crate::config::Promotability`]), SPEC §1:
//! - a delayed standby and a `failover_priority: 0` node are never chosen;
//! - among the others the most advanced (WAL received) is chosen: a failover loses as little as
//!   it can; among equally advanced ones the highest `failover_priority`, then name order.
//!
//! The failover rules of [`super::analysis`] then compare the choice with the most advanced
//! reachable standby of all (a delayed one included) and refuse what loses too much. Every
//! standby passed over is listed with why, for the what-if (`plan --assume-down`).

use crate::config::{Desired, DesiredRole};
use crate::diff::received;
use crate::observe::{ObservedCluster, Role};
use crate::units::Lsn;

/// The outcome of the choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The chosen node, its priority and what it received.
    pub chosen: Option<(String, u32, Lsn)>,
    /// Standbys passed over, with why.
    pub skipped: Vec<(String, String)>,
}

impl Choice {
    /// "n2 (apply_delay 1h: …), n4 (…)", or "" when none was passed over.
    pub fn skipped_text(&self) -> String {
        let v: Vec<String> = self
            .skipped
            .iter()
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        v.join(", ")
    }
}

/// Choose among the reachable running standbys of `d` other than `except`.
pub fn choose(d: &Desired, o: &ObservedCluster, except: &[&str]) -> Choice {
    let mut skipped = Vec::new();
    let mut pool: Vec<(String, u32, Lsn)> = Vec::new();
    for name in reachable_standbys(d, o, except) {
        let prefs = d.nodes[&name].promotion;
        match prefs.never_promoted() {
            Some(why) => skipped.push((name, why)),
            None => {
                let at = o.nodes.get(&name).and_then(received).unwrap_or_default();
                pool.push((name, prefs.failover_priority, at));
            }
        }
    }
    // Name order on ties: a later node replaces the best only when strictly better.
    let chosen = pool
        .iter()
        .fold(None::<&(String, u32, Lsn)>, |best, c| match best {
            Some(b) if (b.2, b.1) >= (c.2, c.1) => Some(b),
            _ => Some(c),
        })
        .cloned();
    if let Some((c, prio, at)) = &chosen {
        for (n, p, got) in pool.iter().filter(|x| &x.0 != c) {
            let why = if got < at {
                format!("received {got}, less than {c}")
            } else {
                format!("failover_priority {p}, not above {c}'s {prio} at the same position")
            };
            skipped.push((n.clone(), why));
        }
    }
    skipped.sort();
    Choice { chosen, skipped }
}

/// The reachable, running standbys that the topology keeps (declared, not retired), other than
/// `except`, in name order.
pub fn reachable_standbys(d: &Desired, o: &ObservedCluster, except: &[&str]) -> Vec<String> {
    o.nodes
        .iter()
        .filter(|(k, n)| {
            !except.contains(&k.as_str())
                && n.reachable
                && n.running
                && n.role == Some(Role::Standby)
                && d.nodes
                    .get(k.as_str())
                    .is_some_and(|x| x.role != DesiredRole::Absent)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::fixtures::{desired3, healthy};
    use crate::plan::{build, PlanError, PlanOptions};

    fn what_if() -> PlanOptions {
        PlanOptions {
            allow_failover: true,
            assume_down: vec!["n1".into()],
            accept_data_loss: false,
        }
    }

    #[test]
    fn the_higher_failover_priority_wins_over_name_order() {
        let mut d = desired3();
        let o = healthy(&d);
        assert_eq!(choose(&d, &o, &["n1"]).chosen.unwrap().0, "n2");
        d.nodes.get_mut("n3").unwrap().promotion.failover_priority = 2;
        let c = choose(&d, &o, &["n1"]);
        assert_eq!(
            c.chosen.as_ref().map(|c| (c.0.as_str(), c.1)),
            Some(("n3", 2))
        );
        assert_eq!(
            c.skipped_text(),
            "n2 (failover_priority 1, not above n3's 2 at the same position)"
        );
        let p = build(&d, &o, &what_if()).unwrap();
        assert!(p
            .steps
            .iter()
            .any(|s| s.node == "n3" && s.action.kind() == "promote"));
        assert!(
            p.summary
                .notes
                .iter()
                .any(|n| n.contains("n3 (failover_priority 2")),
            "{:?}",
            p.summary.notes
        );
    }

    #[test]
    fn a_more_advanced_standby_wins_over_a_preferred_one() {
        let mut d = desired3();
        let mut o = healthy(&d);
        d.nodes.get_mut("n3").unwrap().promotion.failover_priority = 5;
        let n2 = o.nodes.get_mut("n2").unwrap();
        n2.receive_lsn = n2.receive_lsn.map(|l| Lsn(l.0 + 8192));
        let c = choose(&d, &o, &["n1"]);
        assert_eq!(c.chosen.as_ref().unwrap().0, "n2");
        assert!(
            c.skipped_text().starts_with("n3 (received "),
            "{:?}",
            c.skipped
        );
    }

    #[test]
    fn delayed_and_priority_0_standbys_are_never_chosen() {
        let mut d = desired3();
        let o = healthy(&d);
        d.nodes.get_mut("n2").unwrap().promotion.failover_priority = 0;
        d.nodes.get_mut("n3").unwrap().promotion.apply_delay =
            Some(std::time::Duration::from_secs(3600));
        let c = choose(&d, &o, &["n1"]);
        assert_eq!(c.chosen, None);
        let e = build(&d, &o, &what_if()).unwrap_err();
        assert!(matches!(e, PlanError::NoCandidate { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("n2 (failover_priority 0: never promoted)")
                && msg.contains("n3 (apply_delay 1h: a delayed standby is never promoted)"),
            "{msg}"
        );
        d.nodes.get_mut("n2").unwrap().promotion.failover_priority = 1;
        let p = build(&d, &o, &what_if()).unwrap();
        assert!(
            p.summary.notes.iter().any(|n| n
                == "failover candidates passed over: n3 (apply_delay 1h: a delayed standby is never promoted)"),
            "{:?}",
            p.summary.notes
        );
    }
}
