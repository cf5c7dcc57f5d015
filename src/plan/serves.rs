//! Which change of the plan's change list each step makes (its address, SPEC §3): the change list
//! and the steps are one plan, and every step belongs to a shown change.
//!
//! A step that does a thing of its own names it by its kind (`write_hba` → `hba.n1`,
//! `create_slot` → `slot.n1.n2`, `alter_system` → each setting, `clone`/`promote`/`stop`/… →
//! `node.x`); a rule that means something else names it where it draws the step
//! ([`super::graph::Dag::serve`]). A supporting step (a hook, `create_role`, `.pgpass`, a reload,
//! a restart, a checkpoint) serves the changes of the steps it prepares (those that wait for it)
//! or, when nothing waits for it, of the steps it completes (those it waits for).

use crate::diff::address::Address;

use super::model::Action;

/// Whether a supporting step is looked up through the steps after it or before it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Makes something later possible (a hook, a role, a .pgpass, a pooler pause).
    Prepares,
    /// Makes something earlier take effect (a reload, a restart, a checkpoint).
    Completes,
}

/// The addresses a step on `node` serves by its kind, or how it supports others.
pub fn own(node: &str, action: &Action) -> Result<Vec<Address>, Support> {
    let n = || vec![Address::Node(node.to_string())];
    Ok(match action {
        Action::AlterSystem(p) => p
            .set
            .keys()
            .chain(p.reset.iter())
            .map(|k| Address::Setting {
                node: node.to_string(),
                name: k.clone(),
            })
            .collect(),
        Action::WriteHba(_) => vec![Address::Hba(node.to_string())],
        Action::CreateSlot(p) | Action::DropSlot(p) => vec![Address::Slot {
            holder: node.to_string(),
            slot: p.slot.clone(),
        }],
        Action::CreateLogicalSlot(p) => vec![Address::LogicalSlot {
            node: node.to_string(),
            slot: p.slot.clone(),
        }],
        // pg_basebackup -C creates the standby's slot on its source.
        Action::Clone(p) => n()
            .into_iter()
            .chain(p.slot.iter().map(|s| Address::Slot {
                holder: p.source.clone(),
                slot: s.clone(),
            }))
            .collect(),
        Action::Stop(_)
        | Action::Start(_)
        | Action::Rewind(_)
        | Action::Promote(_)
        | Action::ConfigureStandby(_)
        | Action::Fence(_)
        | Action::WaitReplay(_)
        | Action::CatchUp(_)
        | Action::Upgrade(_) => n(),
        Action::Restart(_)
        | Action::Reload(_)
        | Action::Checkpoint(_)
        | Action::SyncSlots(_)
        | Action::Analyze(_)
        | Action::ResumePooler(_)
        | Action::RoutePooler(_)
        | Action::CheckArchive(_) => return Err(Support::Completes),
        Action::Hook(_)
        | Action::CreateRole(_)
        | Action::WritePgpass(_)
        | Action::PausePooler(_)
        | Action::CreateStanza(_) => return Err(Support::Prepares),
    })
}

/// Where the change list and the steps disagree: a change no step serves, a step that serves no
/// shown change (empty when they are one plan). `served` is indexed like `plan.steps`. A step may
/// serve an address besides a shown one (a clone removes every slot of the directory it
/// replaces, some of which no change names).
pub fn mismatches(plan: &super::Plan, served: &[Vec<Address>]) -> Vec<String> {
    let shown: std::collections::BTreeSet<&Address> =
        plan.changes.iter().map(|c| &c.address).collect();
    let made: std::collections::BTreeSet<&Address> = served.iter().flatten().collect();
    let mut out: Vec<String> = shown
        .iter()
        .filter(|a| !made.contains(*a))
        .map(|a| format!("change {a} has no step"))
        .collect();
    for (s, addrs) in plan.steps.iter().zip(served) {
        if !addrs.iter().any(|a| shown.contains(a)) {
            let addrs: Vec<String> = addrs.iter().map(Address::to_string).collect();
            out.push(format!(
                "step {} {} {} serves no shown change (serves: {})",
                s.id,
                s.action.kind(),
                s.node,
                addrs.join(", ")
            ));
        }
    }
    out
}
