//! The named ordering transforms: each one rule of SPEC §4, each a small function in a file of its
//! own that adds the steps of its rule to the DAG. They run in the order of [`TRANSFORMS`]; a
//! transform may only wait for steps that earlier transforms (or itself) added, which keeps the DAG
//! acyclic by construction. [`run`] logs the DAG after each one at `-vv` (debug).
//!
//! What they share, [`Ctx`], is split three ways:
//! - [`Inputs`]: what the rules read (desired, observed, the analysis, the slots that exist);
//!   reachable through `Ctx` by `Deref` only, so no rule can change it;
//! - [`Anchors`]: the steps a rule publishes for later rules to wait for (the primary accepts
//!   writes, a standby streams, a node's settings or pg_hba are in effect, …);
//! - [`Drawn`]: what the plan has already drawn, so that no rule draws it twice (a slot, a
//!   `.pgpass`, a stop, the checkpoint before pg_rewind) and the restarts the summary lists.
//!
//! The drawing helpers several rules use (slot, configure_standby, start, .pgpass, stop, hooks)
//! are in [`draw`]; those of poolers (pause, route, resume) in [`poolers`], of failover slots in
//! [`logical`] (which also holds the `logical_slots` rule).

pub mod archive;
pub mod draw;
pub mod hba_managed_block;
pub mod hooks_after;
pub mod hooks_before;
pub mod logical;
pub mod pooler_drift;
pub mod poolers;
pub mod promotion;
pub mod replication_role;
pub mod retire;
pub mod settings_rolling;
pub mod slot_cleanup;
pub mod standbys;
pub mod start_stopped_primary;
pub mod synchronous_set;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::config::Desired;
use crate::observe::ObservedCluster;

use super::analysis::{Analysis, Fate};
use super::graph::{Dag, Idx};

pub use draw::configure;
pub use promotion::CANCEL_GRACE_MS;

/// What the rules read; the same for every rule.
pub struct Inputs<'a> {
    pub eff: &'a Desired,
    /// The (effective) primary's name.
    pub primary_name: &'a str,
    pub o: &'a ObservedCluster,
    pub a: &'a Analysis,
    /// (holder, slot) pairs that exist now and survive the plan (a fresh copy has none).
    pub slot_index: HashSet<(String, String)>,
}

/// The steps rules publish for later rules to wait for.
#[derive(Default)]
pub struct Anchors {
    /// The primary accepts writes after this step (promote, or start of a stopped primary).
    pub primary_ready: Option<Idx>,
    /// Writes become unavailable with this step (the stop or fence of a promotion).
    pub writes_down: Option<Idx>,
    /// Writes are available again after this step (the promotion).
    pub writes_up: Option<Idx>,
    /// The primary's restart for postmaster settings (writes unavailable while it runs).
    pub primary_restart: Option<Idx>,
    /// The replication role exists after this step.
    pub role_step: Option<Idx>,
    /// A node's pg_hba.conf is in effect after this step.
    pub hba_ready: HashMap<String, Idx>,
    /// A node's settings are in effect after this step.
    pub settings_ready: HashMap<String, Idx>,
    /// A standby streams from its declared upstream after this step.
    pub streaming: HashMap<String, Idx>,
    /// The primary's synchronous set is the declared one after this step.
    pub sync_step: Option<Idx>,
    /// A retired node is stopped after this step.
    pub retire_stop: HashMap<String, Idx>,
    /// The pgBackRest stanza exists after this step (when the plan creates it).
    pub stanza: Option<Idx>,
}

/// What the plan has drawn so far, so that no rule draws it twice.
#[derive(Default)]
pub struct Drawn {
    /// Slots created by the plan: (holder, slot) → step.
    pub slots_made: HashMap<(String, String), Idx>,
    /// The CHECKPOINT on the primary before the first pg_rewind.
    pub checkpoint: Option<Idx>,
    /// Nodes a step stops (not started again by the plan unless they rejoin).
    pub stopped: HashSet<String>,
    /// Nodes whose os_user's .pgpass the plan writes (once per node).
    pub pgpass_written: HashSet<String>,
    /// The plan set the candidate's synchronous_standby_names to '' before promoting it.
    pub sync_cleared: bool,
    /// Nodes the plan restarts (or stops and starts), for the summary.
    pub restarts: BTreeSet<String>,
}

/// The state shared by the transforms: the inputs (read through `Deref`), the DAG and notes they
/// draw, the anchors they publish and the record of what they drew.
pub struct Ctx<'a> {
    inputs: Inputs<'a>,
    pub dag: Dag,
    pub notes: Vec<String>,
    pub anchors: Anchors,
    pub drawn: Drawn,
}

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = Inputs<'a>;

    fn deref(&self) -> &Inputs<'a> {
        &self.inputs
    }
}

impl<'a> Ctx<'a> {
    pub fn new(eff: &'a Desired, o: &'a ObservedCluster, a: &'a Analysis) -> Self {
        // The slots that will still be there: a fresh copy has none of its own.
        let slot_index = o
            .nodes
            .iter()
            .filter(|(h, _)| !a.fates.get(*h).is_some_and(Fate::copies_data))
            .flat_map(|(h, x)| x.slots.iter().map(move |s| (h.clone(), s.clone())))
            .collect();
        Ctx {
            inputs: Inputs {
                eff,
                primary_name: &eff.primary().name,
                o,
                a,
                slot_index,
            },
            dag: Dag::default(),
            notes: Vec::new(),
            anchors: Anchors::default(),
            drawn: Drawn::default(),
        }
    }

    pub fn primary(&self) -> &'a str {
        self.inputs.primary_name
    }

    pub fn fate(&self, n: &str) -> &'a Fate {
        self.inputs.a.fates.get(n).unwrap_or(&Fate::Keep)
    }

    /// The step after which `up` can serve a standby (if the plan changes it).
    pub fn ready(&self, up: &str) -> Vec<Idx> {
        let mut v = Vec::new();
        if up == self.primary() {
            v.extend(self.anchors.primary_ready);
        } else {
            v.extend(self.anchors.streaming.get(up).copied());
        }
        v.extend(self.anchors.hba_ready.get(up).copied());
        v.extend(self.anchors.settings_ready.get(up).copied());
        v
    }
}

/// A transform: one ordering rule.
pub type Transform = fn(&mut Ctx);

/// Every transform, in the order they run.
pub const TRANSFORMS: &[(&str, Transform)] = &[
    ("hooks_before", hooks_before::hooks_before),
    (
        "start_stopped_primary",
        start_stopped_primary::start_stopped_primary,
    ),
    ("archive_stanza", archive::archive_stanza),
    ("hba_managed_block", hba_managed_block::hba_managed_block),
    ("settings_rolling", settings_rolling::settings_rolling),
    ("promotion", promotion::promotion),
    ("replication_role", replication_role::replication_role),
    ("standbys", standbys::standbys),
    ("synchronous_set", synchronous_set::synchronous_set),
    ("retire", retire::retire),
    ("logical_slots", logical::logical_slots),
    ("archive", archive::archive),
    ("slot_cleanup", slot_cleanup::slot_cleanup),
    ("pooler_drift", pooler_drift::pooler_drift),
    ("hooks_after", hooks_after::hooks_after),
];

/// Run every transform in order; at debug level (`-vv`) log the DAG after each one, as
/// Terraform logs its graph after each transformer.
pub fn run(c: &mut Ctx) {
    for (name, t) in TRANSFORMS {
        let before = c.dag.len();
        t(c);
        let added = c.dag.len() - before;
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                transform = name,
                added,
                "plan: DAG after transform {name}:\n{}",
                c.dag.trace()
            );
        }
    }
}
