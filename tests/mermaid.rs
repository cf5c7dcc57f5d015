//! The mermaid pictures: the before/after topology in the markdown plan and the step DAG of
//! `pgtopo graph --format mermaid`. Every diagram passes a small structural check (a
//! `flowchart` header, every node id defined once, both ends of every edge defined, every class
//! applied to defined nodes and defined by a classDef), the example diagrams are insta snapshots,
//! a 200-node cluster's comment stays under GitHub's comment limit, and
//! `docs/pr-comment-example.md` is the rendered comment of the switchover example
//! (`UPDATE_GOLDEN=1 cargo test --test mermaid` rewrites it).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use pgtopo::observe::fixtures;
use pgtopo::plan::{build, Plan, PlanOptions};
use pgtopo::render::{mermaid, plan::markdown, plan::MARKDOWN_LIMIT};

/// A flowchart's ids, edges and classes, parsed from the subset of mermaid pgtopo writes.
#[derive(Debug, Default)]
struct Chart {
    nodes: BTreeMap<String, String>,
    subgraphs: BTreeSet<String>,
    edges: Vec<(String, String)>,
    class_defs: BTreeSet<String>,
    classes: Vec<(String, String)>,
}

/// `id[label]`, `id[(label)]`, `id[[label]]` → (id, label).
fn node_def(s: &str) -> Option<(String, String)> {
    let open = s.find('[')?;
    let (id, rest) = s.split_at(open);
    let ok = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let inner = rest
        .strip_prefix("[(")
        .and_then(|r| r.strip_suffix(")]"))
        .or_else(|| rest.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")))
        .or_else(|| rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')))?;
    let label = inner.strip_prefix('"')?.strip_suffix('"')?;
    (ok && !label.contains('"')).then(|| (id.to_string(), label.to_string()))
}

/// Parse and check a diagram; panics with the offending line.
fn check(text: &str) -> Chart {
    let mut lines = text.lines();
    let head = lines.next().unwrap_or_default();
    assert!(
        head == "flowchart LR" || head == "flowchart TB",
        "header: {head:?}"
    );
    let mut c = Chart::default();
    let mut depth = 0;
    for line in lines {
        let l = line.trim();
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.as_slice() {
            ["subgraph", ..] => {
                let def = l.strip_prefix("subgraph ").unwrap();
                let (id, _) = node_def(def).unwrap_or_else(|| panic!("subgraph: {line}"));
                assert!(c.subgraphs.insert(id), "subgraph id twice: {line}");
                depth += 1;
            }
            ["end"] => depth -= 1,
            ["direction", "TB" | "LR"] => {}
            ["classDef", name, ..] => assert!(c.class_defs.insert(name.to_string()), "{line}"),
            ["class", ids, name] => {
                for id in ids.split(',') {
                    c.classes.push((id.to_string(), name.to_string()));
                }
            }
            [a, arrow, b] if ["-->", "==>|sync|"].contains(arrow) => {
                c.edges.push((a.to_string(), b.to_string()));
            }
            _ => {
                let (id, label) = node_def(l).unwrap_or_else(|| panic!("not a node: {line}"));
                assert!(c.nodes.insert(id, label).is_none(), "defined twice: {line}");
            }
        }
        assert!(depth >= 0, "end without subgraph: {line}");
    }
    assert_eq!(depth, 0, "unclosed subgraph");
    for (a, b) in &c.edges {
        assert!(
            c.nodes.contains_key(a) && c.nodes.contains_key(b),
            "edge {a} → {b}"
        );
    }
    for (id, class) in &c.classes {
        assert!(c.nodes.contains_key(id), "class on undefined node {id}");
        assert!(
            c.class_defs.contains(class),
            "class {class} has no classDef"
        );
    }
    c
}

/// The mermaid blocks of a markdown text.
fn mermaid_blocks(md: &str) -> Vec<String> {
    md.split("```mermaid\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap().to_string())
        .collect()
}

fn example_plan(example: &str) -> Plan {
    let dir = examples_dir().join(example);
    let d = load_topology(&dir.join("topology.yaml"));
    let o = load_observed(&dir.join("observed.json"));
    build(&d, &o, &PlanOptions::default()).unwrap()
}

fn labels(c: &Chart, class: &str) -> Vec<String> {
    c.classes
        .iter()
        .filter(|(_, k)| k == class)
        .map(|(id, _)| c.nodes[id].clone())
        .collect()
}

#[test]
fn every_example_comment_has_a_valid_before_and_after_diagram() {
    for example in EXAMPLES {
        let plan = example_plan(example);
        let blocks = mermaid_blocks(&markdown(&plan));
        assert_eq!(blocks.len(), 1, "{example}: one diagram");
        let c = check(&blocks[0]);
        assert!(c.subgraphs.contains("b") && c.subgraphs.contains("a"));
        insta::assert_snapshot!(format!("topology_{example}"), blocks[0]);
        check(&mermaid::steps(&plan));
    }
}

#[test]
fn the_switchover_diagram_shows_the_new_primary_and_the_changed_nodes() {
    let c = check(&mermaid::topology(
        example_plan("switchover").topology.as_ref().unwrap(),
    ));
    let before: Vec<&String> = c
        .nodes
        .iter()
        .filter(|(id, _)| id.starts_with('b'))
        .map(|(_, l)| l)
        .collect();
    assert!(
        before.iter().any(|l| l.starts_with("n1 · primary")),
        "{c:?}"
    );
    let after: Vec<&String> = c
        .nodes
        .iter()
        .filter(|(id, _)| id.starts_with('a'))
        .map(|(_, l)| l)
        .collect();
    assert!(after.iter().any(|l| l.starts_with("n2 · primary")), "{c:?}");
    assert!(after.iter().any(|l| l.starts_with("n1 · standby")), "{c:?}");
    assert!(
        labels(&c, "changed").iter().any(|l| l.starts_with("n2")),
        "{c:?}"
    );
    let retire = check(&mermaid::topology(
        example_plan("retire-node").topology.as_ref().unwrap(),
    ));
    assert!(
        labels(&retire, "retired")
            .iter()
            .any(|l| l.starts_with("n4 · retired")),
        "{retire:?}"
    );
    let build3 = check(&mermaid::topology(
        example_plan("bootstrap-3-nodes").topology.as_ref().unwrap(),
    ));
    assert!(labels(&build3, "added").len() >= 2, "{build3:?}");
}

/// A 200-node cluster where every node changes (a restart setting everywhere) or the primary
/// moves: the diagram collapses, and the whole comment stays under GitHub's 65,536 characters
/// (pgtopo aims for 60 KB).
#[test]
fn a_200_node_comment_collapses_and_stays_under_the_limit() {
    let d = fixtures::generated(200);
    let o = fixtures::healthy(&d);
    let mut everywhere = d.clone();
    for n in everywhere.nodes.values_mut() {
        n.settings.insert("max_wal_senders".into(), "30".into());
    }
    let mut switched = d.clone();
    fixtures::set_primary(&mut switched, "n2");
    let mut grown = d.clone();
    grown.nodes.retain(|name, _| name != "n200");
    let o_small = fixtures::healthy(&grown);
    for (what, desired, observed) in [
        ("restart everywhere", &everywhere, &o),
        ("switchover", &switched, &o),
        ("one standby added", &d, &o_small),
    ] {
        let plan = build(desired, observed, &PlanOptions::default()).unwrap();
        let md = markdown(&plan);
        assert!(md.len() < MARKDOWN_LIMIT, "{what}: {} bytes", md.len());
        let blocks = mermaid_blocks(&md);
        assert_eq!(blocks.len(), 1, "{what}");
        let c = check(&blocks[0]);
        assert!(
            c.nodes.len() <= 2 * (mermaid::MAX_DRAWN + 2),
            "{what}: {} nodes drawn",
            c.nodes.len()
        );
        assert!(blocks[0].len() < 8 * 1024, "{what}: {}", blocks[0].len());
        // Nothing disappears: drawn nodes plus summarised ones are 200 on each side.
        for side in ["b", "a"] {
            let total: usize = c
                .nodes
                .iter()
                .filter(|(id, _)| id.starts_with(side))
                .map(|(id, l)| match id[1..].starts_with('g') {
                    true => l.split(' ').next().unwrap().parse::<usize>().unwrap(),
                    false => 1,
                })
                .sum();
            let want = match (what, side) {
                ("one standby added", "b") => 199,
                _ => 200,
            };
            assert_eq!(total, want, "{what} {side}: {blocks:?}");
        }
        check(&mermaid::steps(&plan));
    }
}

/// `docs/pr-comment-example.md`: the comment a pull request gets for the switchover example.
#[test]
fn the_pr_comment_example_in_docs_is_current() {
    let comment = markdown(&example_plan("switchover"));
    let text = format!(
        "# Example: the pull-request comment of a switchover\n\n\
         What the CI templates in `examples/ci/` post on a pull request that moves the primary of\n\
         `examples/switchover` from n1 to n2. Generated by `UPDATE_GOLDEN=1 cargo test --test mermaid`\n\
         from `pgtopo -f examples/switchover/topology.yaml plan --observed examples/switchover/observed.json --format markdown`.\n\n\
         ---\n\n{comment}"
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/pr-comment-example.md");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == text,
        "{} is out of date: UPDATE_GOLDEN=1 cargo test --test mermaid",
        path.display()
    );
}
