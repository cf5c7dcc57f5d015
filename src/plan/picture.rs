//! The topology before (observed) and after (as the plan realises it), node by node, for the
//! diagram of the markdown plan (`render::mermaid`). Data only: who is primary, who streams
//! from whom, who is in the synchronous set, and which nodes the plan adds, changes or retires.

use std::collections::BTreeSet;

use super::model::{Change, Step};
pub use super::model::{Mark, PictureNode, PictureRole, TopologyPicture};
use crate::config::{Desired, DesiredRole};
use crate::observe::{ObservedCluster, ObservedNode, Role};

/// The names in a synchronous_standby_names value (`ANY 1 ("n2", n3)`, `FIRST 2 (a, b)`,
/// `a, b`) that are declared nodes.
fn sync_names(value: &str, d: &Desired) -> BTreeSet<String> {
    crate::config::sync_names::members(value)
        .into_iter()
        .filter(|t| d.nodes.contains_key(t))
        .collect()
}

fn before_role(o: Option<&ObservedNode>) -> (PictureRole, bool) {
    let Some(o) = o else {
        return (PictureRole::Missing, true);
    };
    let down = !o.running || !o.reachable;
    let role = match o.role {
        Some(Role::Primary) => PictureRole::Primary,
        Some(Role::Standby) => PictureRole::Standby,
        None if o.system_identifier.is_some() || o.control.is_some() => PictureRole::Unknown,
        None if o.data_dir.exists && !o.data_dir.empty => PictureRole::Unknown,
        None => PictureRole::Missing,
    };
    (role, down)
}

/// The picture of plan `steps` and `changes`, from the observed state `o` to `eff`, the
/// topology the plan realises. A node is changed when a step acts on it or a change's address
/// names it (`node.n2`, `slot.n1.n2`, `setting.n1.x`, `hba.n1`).
pub fn picture(
    eff: &Desired,
    o: &ObservedCluster,
    changes: &[Change],
    steps: &[Step],
) -> TopologyPicture {
    let sync_before = eff
        .nodes
        .keys()
        .filter_map(|n| o.nodes.get(n))
        .find(|x| x.role == Some(Role::Primary) && x.running)
        .and_then(|p| p.settings.get("synchronous_standby_names"))
        .map(|s| sync_names(&s.value, eff))
        .unwrap_or_default();
    let sync_after = sync_names(&eff.synchronous_standby_names(), eff);
    let acted: BTreeSet<&str> = steps
        .iter()
        .map(|s| s.node.as_str())
        .chain(changes.iter().filter_map(|c| c.address.node()))
        .collect();
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (name, n) in &eff.nodes {
        let obs = o.nodes.get(name);
        let (brole, down) = before_role(obs);
        let acted = acted.contains(name.as_str());
        let mark = match (&n.role, brole) {
            (DesiredRole::Absent, _) if acted => Mark::Retired,
            (DesiredRole::Absent, _) => Mark::Unchanged,
            (_, PictureRole::Missing) => Mark::Added,
            _ if acted => Mark::Changed,
            _ => Mark::Unchanged,
        };
        before.push(PictureNode {
            name: name.clone(),
            role: brole,
            upstream: obs.and_then(|x| x.upstream.clone()),
            sync: sync_before.contains(name),
            down,
            mark,
        });
        let (role, upstream) = match &n.role {
            DesiredRole::Primary => (PictureRole::Primary, None),
            DesiredRole::Standby { upstream } => (PictureRole::Standby, Some(upstream.clone())),
            DesiredRole::Absent => (PictureRole::Retired, None),
        };
        after.push(PictureNode {
            name: name.clone(),
            role,
            upstream,
            sync: sync_after.contains(name),
            down: false,
            mark,
        });
    }
    TopologyPicture { before, after }
}
