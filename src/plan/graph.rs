//! The step DAG while it is being built: a petgraph graph of draft steps.
//!
//! Two rules keep it acyclic by construction: an edge always goes from an earlier-inserted step to
//! a later one, and every step waits for the previous step on the same node (one thing at a time
//! on a node). Step ids are therefore the insertion order, which is a topological order. `after`
//! lists direct dependencies with the redundant ones (implied through another dependency) removed,
//! so a reader sees `after 2`, not `after 1, 2`.

use std::collections::HashMap;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use super::model::{Action, Step, StepId};

/// A step before it has an id.
#[derive(Debug, Clone)]
pub struct Draft {
    pub node: String,
    pub action: Action,
    pub destructive: bool,
    pub description: String,
}

/// The DAG under construction.
#[derive(Debug, Default)]
pub struct Dag {
    pub g: DiGraph<Draft, ()>,
    last_on: HashMap<String, NodeIndex>,
    /// Every step added from now on waits for this one (a `before_switchover` hook).
    pub gate: Option<Idx>,
}

/// Handle of a step in the DAG.
pub type Idx = NodeIndex;

impl Dag {
    /// Add a step that waits for `deps` and for the previous step on the same node.
    pub fn add(
        &mut self,
        node: &str,
        action: Action,
        destructive: bool,
        description: impl Into<String>,
        deps: &[Idx],
    ) -> Idx {
        let ix = self.g.add_node(Draft {
            node: node.to_string(),
            action,
            destructive,
            description: description.into(),
        });
        if let Some(prev) = self.last_on.insert(node.to_string(), ix) {
            self.g.update_edge(prev, ix, ());
        }
        let gate = self.gate;
        for &d in deps.iter().chain(gate.as_ref()) {
            self.dep(d, ix);
        }
        ix
    }

    /// Steps nothing waits for yet.
    pub fn sinks(&self) -> Vec<Idx> {
        self.g
            .node_indices()
            .filter(|&i| {
                self.g
                    .neighbors_directed(i, Direction::Outgoing)
                    .next()
                    .is_none()
            })
            .collect()
    }

    /// `after` must wait for `before`. Edges only go forward in insertion order.
    pub fn dep(&mut self, before: Idx, after: Idx) {
        assert!(
            before.index() < after.index(),
            "plan edges go from earlier to later steps"
        );
        self.g.update_edge(before, after, ());
    }

    /// The last step on a node so far.
    pub fn last_on(&self, node: &str) -> Option<Idx> {
        self.last_on.get(node).copied()
    }

    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// The DAG as text, one step a line (`3 stop n1 ← 1, 2`: its id, kind, node and every edge
    /// into it), for the debug log of the plan's transforms.
    pub fn trace(&self) -> String {
        let id = |i: Idx| i.index() + 1;
        let mut out = String::new();
        for ix in self.g.node_indices() {
            let d = &self.g[ix];
            let mut deps: Vec<usize> = self
                .g
                .neighbors_directed(ix, Direction::Incoming)
                .map(id)
                .collect();
            deps.sort_unstable();
            let deps: Vec<String> = deps.iter().map(usize::to_string).collect();
            out.push_str(&format!("  {} {} {}", id(ix), d.action.kind(), d.node));
            if !deps.is_empty() {
                out.push_str(&format!(" ← {}", deps.join(", ")));
            }
            out.push('\n');
        }
        out
    }

    /// Whether `from` reaches `to` through dependencies, exploring at most `budget` steps.
    fn reaches(&self, from: Idx, to: Idx, budget: usize) -> bool {
        let mut stack = vec![from];
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = stack.pop() {
            if seen.len() > budget {
                return false;
            }
            for m in self.g.neighbors_directed(n, Direction::Outgoing) {
                if m == to {
                    return true;
                }
                // Everything reachable lies between `n` and `to` in insertion order.
                if m.index() < to.index() && seen.insert(m) {
                    stack.push(m);
                }
            }
        }
        false
    }

    /// The finished steps, ids 1-based in insertion (topological) order.
    pub fn finish(self) -> Vec<Step> {
        let mut steps = Vec::with_capacity(self.g.node_count());
        for ix in self.g.node_indices() {
            let mut deps: Vec<Idx> = self.g.neighbors_directed(ix, Direction::Incoming).collect();
            deps.sort();
            deps.dedup();
            let direct: Vec<Idx> = deps
                .iter()
                .copied()
                .filter(|&d| {
                    !deps
                        .iter()
                        .any(|&other| other != d && other > d && self.reaches(d, other, 256))
                })
                .collect();
            let draft = &self.g[ix];
            steps.push(Step {
                id: ix.index() as StepId + 1,
                node: draft.node.clone(),
                action: draft.action.clone(),
                after: direct.iter().map(|d| d.index() as StepId + 1).collect(),
                destructive: draft.destructive,
                description: draft.description.clone(),
            });
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{CheckpointParams, ReloadParams};

    fn reload() -> Action {
        Action::Reload(ReloadParams { reason: "x".into() })
    }

    #[test]
    fn same_node_steps_chain_and_redundant_edges_drop() {
        let mut g = Dag::default();
        let a = g.add("n1", reload(), false, "a", &[]);
        let b = g.add("n2", reload(), false, "b", &[a]);
        let c = g.add(
            "n2",
            Action::Checkpoint(CheckpointParams {
                reason: "c".into(),
                timeout_ms: None,
            }),
            false,
            "c",
            &[a],
        );
        let _ = c;
        let trace = g.trace();
        let steps = g.finish();
        assert_eq!(steps[0].after, Vec::<u32>::new());
        assert_eq!(steps[1].after, vec![1]);
        // c waits for a (direct) and b (same node); a is implied through b.
        assert_eq!(steps[2].after, vec![2]);
        assert_eq!(b.index(), 1);
        assert_eq!(
            trace,
            "  1 reload n1\n  2 reload n2 ← 1\n  3 checkpoint n2 ← 1, 2\n"
        );
    }

    #[test]
    #[should_panic(expected = "earlier to later")]
    fn backward_edges_are_refused() {
        let mut g = Dag::default();
        let a = g.add("n1", reload(), false, "a", &[]);
        let b = g.add("n2", reload(), false, "b", &[]);
        g.dep(b, a);
    }
}
