//! Mermaid flowcharts, which GitHub and GitLab draw inside markdown: the topology before and
//! after a plan (in the PR comment), and the step DAG (`pgtopo graph --format mermaid`).
//!
//! Node ids are positions (`b3`, `a3`, `s12`), never names, so no name needs escaping in an id;
//! labels are quoted with `"` written as `#quot;`. A large cluster is collapsed so that the
//! diagram stays small: beyond [`MAX_DRAWN`] nodes, unchanged standbys outside the synchronous
//! set are summarised as one node per nearest drawn ancestor, and beyond that, every standby
//! outside the synchronous set that no drawn node streams from is summarised per ancestor and
//! per mark ("120 standbys · added").

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::plan::model::{Plan, Step};
use crate::plan::picture::{Mark, PictureNode, PictureRole, TopologyPicture};

/// More nodes than this in one picture and it is collapsed.
pub const MAX_DRAWN: usize = 30;

/// The class definitions both diagrams use.
const CLASS_DEFS: &str = "  classDef primary stroke-width:3px\n  \
classDef changed fill:#fff3cd,stroke:#b08800,color:#000\n  \
classDef added fill:#d4edda,stroke:#1e7e34,color:#000\n  \
classDef retired fill:#eeeeee,stroke:#888888,color:#555555,stroke-dasharray:5 5\n  \
classDef down fill:#f8d7da,stroke:#c82333,color:#000\n  \
classDef destructive fill:#f8d7da,stroke:#c82333,stroke-width:2px,color:#000\n";

fn label(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "#quot;"))
}

fn mark_word(m: Mark) -> &'static str {
    match m {
        Mark::Unchanged => "unchanged",
        Mark::Changed => "changed",
        Mark::Added => "added",
        Mark::Retired => "retired",
    }
}

fn node_text(n: &PictureNode) -> String {
    let role = match n.role {
        PictureRole::Primary => "primary",
        PictureRole::Standby => "standby",
        PictureRole::Unknown => "role unknown",
        PictureRole::Missing => "not built",
        PictureRole::Retired => "retired",
    };
    let mut t = format!("{} · {role}", n.name);
    if n.sync {
        t.push_str(" · sync");
    }
    if n.down {
        t.push_str(" · down");
    }
    if n.mark != Mark::Unchanged {
        let _ = write!(t, " · {}", mark_word(n.mark));
    }
    t
}

/// The class a node is drawn with.
fn class_of(n: &PictureNode) -> Option<&'static str> {
    match n.mark {
        Mark::Added => Some("added"),
        Mark::Retired => Some("retired"),
        Mark::Changed => Some("changed"),
        Mark::Unchanged if n.role == PictureRole::Retired => Some("retired"),
        Mark::Unchanged if n.down => Some("down"),
        Mark::Unchanged if n.role == PictureRole::Primary => Some("primary"),
        Mark::Unchanged => None,
    }
}

/// One picture, ready to print: which nodes stand alone and which are summarised under which
/// drawn ancestor.
struct Layout<'a> {
    /// (index in the picture, node) drawn on its own.
    drawn: Vec<(usize, &'a PictureNode)>,
    /// (ancestor index or None, mark) → how many standbys.
    groups: BTreeMap<(Option<usize>, Mark), usize>,
}

/// Whether `n` is drawn in a picture of more than [`MAX_DRAWN`] nodes at collapse `level`
/// (1: unchanged standbys outside the sync set are summarised; 2: every such standby is).
fn stands_alone(n: &PictureNode, level: u8) -> bool {
    let plain = matches!(n.role, PictureRole::Standby | PictureRole::Unknown) && !n.sync;
    match level {
        0 => true,
        1 => !(plain && n.mark == Mark::Unchanged),
        _ => !plain,
    }
}

fn layout(nodes: &[PictureNode], shown: impl Fn(&PictureNode) -> bool, level: u8) -> Layout<'_> {
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let visible: Vec<usize> = (0..nodes.len()).filter(|i| shown(&nodes[*i])).collect();
    // Alone: by the level's rule, plus every ancestor of a node that is alone.
    let mut alone: BTreeSet<usize> = visible
        .iter()
        .copied()
        .filter(|i| stands_alone(&nodes[*i], level))
        .collect();
    for i in alone.clone() {
        let mut seen = BTreeSet::new();
        let mut at = i;
        while let Some(up) = nodes[at].upstream.as_deref().and_then(|u| index.get(u)) {
            if !seen.insert(*up) || !visible.contains(up) {
                break;
            }
            alone.insert(*up);
            at = *up;
        }
    }
    let mut groups = BTreeMap::new();
    for i in visible.iter().copied().filter(|i| !alone.contains(i)) {
        // The nearest ancestor drawn on its own.
        let mut seen = BTreeSet::new();
        let mut at = i;
        let anchor = loop {
            match nodes[at].upstream.as_deref().and_then(|u| index.get(u)) {
                Some(up) if alone.contains(up) => break Some(*up),
                Some(up) if seen.insert(*up) => at = *up,
                _ => break None,
            }
        };
        *groups.entry((anchor, nodes[i].mark)).or_insert(0) += 1;
    }
    Layout {
        drawn: alone.into_iter().map(|i| (i, &nodes[i])).collect(),
        groups,
    }
}

/// The collapse level a picture needs: the first whose drawn nodes and groups fit.
fn picture_layout(
    nodes: &[PictureNode],
    shown: impl Fn(&PictureNode) -> bool + Copy,
) -> Layout<'_> {
    let mut level = 0;
    loop {
        let l = layout(nodes, shown, level);
        if level == 2 || l.drawn.len() + l.groups.len() <= MAX_DRAWN {
            return l;
        }
        level += 1;
    }
}

/// One subgraph: `prefix` makes its ids unique (`b`, `a`).
fn subgraph(out: &mut String, prefix: &str, title: &str, nodes: &[PictureNode], l: &Layout) {
    let _ = writeln!(out, "  subgraph {prefix}[{}]", label(title));
    let _ = writeln!(out, "    direction TB");
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let drawn: BTreeSet<usize> = l.drawn.iter().map(|(i, _)| *i).collect();
    let mut classes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, n) in &l.drawn {
        let text = label(&node_text(n));
        let shape = match n.role {
            PictureRole::Primary => format!("{prefix}{i}[({text})]"),
            _ => format!("{prefix}{i}[{text}]"),
        };
        let _ = writeln!(out, "    {shape}");
        if let Some(c) = class_of(n) {
            classes.entry(c).or_default().push(format!("{prefix}{i}"));
        }
    }
    for (g, ((_, mark), count)) in l.groups.iter().enumerate() {
        let text = format!(
            "{count} standby{} · {}",
            if *count == 1 { "" } else { "s" },
            mark_word(*mark)
        );
        let _ = writeln!(out, "    {prefix}g{g}[[{}]]", label(&text));
        let proto = PictureNode {
            name: String::new(),
            role: PictureRole::Standby,
            upstream: None,
            sync: false,
            down: false,
            mark: *mark,
        };
        if let Some(c) = class_of(&proto) {
            classes.entry(c).or_default().push(format!("{prefix}g{g}"));
        }
    }
    for (i, n) in &l.drawn {
        let Some(up) = n.upstream.as_deref().and_then(|u| index.get(u)) else {
            continue;
        };
        if drawn.contains(up) {
            let arrow = if n.sync { "==>|sync|" } else { "-->" };
            let _ = writeln!(out, "    {prefix}{up} {arrow} {prefix}{i}");
        }
    }
    for (g, ((anchor, _), _)) in l.groups.iter().enumerate() {
        if let Some(a) = anchor {
            let _ = writeln!(out, "    {prefix}{a} --> {prefix}g{g}");
        }
    }
    let _ = writeln!(out, "  end");
    for (c, ids) in classes {
        let _ = writeln!(out, "  class {} {c}", ids.join(","));
    }
}

/// The before/after diagram of a plan's topology (a mermaid flowchart, without the fence).
pub fn topology(p: &TopologyPicture) -> String {
    let mut out = String::from("flowchart LR\n");
    out.push_str(CLASS_DEFS);
    let before = picture_layout(&p.before, |n| n.role != PictureRole::Missing);
    let after = picture_layout(&p.after, |_| true);
    subgraph(&mut out, "b", "before (observed)", &p.before, &before);
    subgraph(&mut out, "a", "after (topology.yaml)", &p.after, &after);
    out
}

fn step_text(s: &Step) -> String {
    format!("{} {}\n{}", s.id, s.action.kind(), s.description).replace('\n', "<br/>")
}

/// The step DAG of a plan (`pgtopo graph --format mermaid`): steps grouped by node, an edge
/// from each step to the steps that wait for it, destructive steps highlighted.
pub fn steps(plan: &Plan) -> String {
    let mut out = String::from("flowchart TB\n");
    out.push_str(CLASS_DEFS);
    let nodes: BTreeSet<&str> = plan.steps.iter().map(|s| s.node.as_str()).collect();
    for (i, n) in nodes.iter().enumerate() {
        let _ = writeln!(out, "  subgraph n{i}[{}]", label(n));
        for s in plan.steps.iter().filter(|s| s.node == *n) {
            let _ = writeln!(out, "    s{}[{}]", s.id, label(&step_text(s)));
        }
        let _ = writeln!(out, "  end");
    }
    for s in &plan.steps {
        for a in &s.after {
            let _ = writeln!(out, "  s{a} --> s{}", s.id);
        }
    }
    let destructive: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| s.destructive)
        .map(|s| format!("s{}", s.id))
        .collect();
    if !destructive.is_empty() {
        let _ = writeln!(out, "  class {} destructive", destructive.join(","));
    }
    out
}
