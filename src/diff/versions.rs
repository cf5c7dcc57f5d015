//! The PostgreSQL majors a cluster runs: the one judgement of "these nodes run different majors"
//! (a drift finding, outside an upgrade) and of "this major is not one pgtopo is tested on" (a
//! plan note). Pure: reads `server_version_num` and the declared binaries from the observation.

use crate::observe::{ObservedCluster, ObservedNode};

/// The majors the project's CI runs every integration test on (README, SPEC §10).
pub const TESTED_MAJORS: std::ops::RangeInclusive<u32> = 14..=18;

/// `170011` → `"17.11"` (the form `SHOW server_version` prints).
pub fn version_text(num: u32) -> String {
    format!("{}.{}", num / 10000, num % 10000)
}

/// A node's running major, when it answered.
fn major(x: &ObservedNode) -> Option<u32> {
    x.reachable.then_some(x.version?).map(|v| v / 10000)
}

/// Whether a node's declared bin_dir is of a newer major than its running server: a
/// major-version upgrade is planned or under way, and mixed majors are its ordinary course.
/// (A node running a newer major than declared is never an upgrade.)
fn upgrading(x: &ObservedNode) -> bool {
    matches!((major(x), x.binaries.as_ref().and_then(|b| b.major)), (Some(r), Some(d)) if d > r)
}

/// Nodes answering on different majors outside an upgrade: `(node, its version, the primary's
/// or first node's name and version)` for each node whose major differs from the reference,
/// which is the node running the most common major (ties: the first by name).
pub fn mixed_majors(o: &ObservedCluster) -> Vec<(String, String, String, String)> {
    let running: Vec<(&String, &ObservedNode, u32)> = o
        .nodes
        .iter()
        .filter_map(|(name, x)| Some((name, x, major(x)?)))
        .collect();
    if running.iter().any(|(_, x, _)| upgrading(x)) {
        return Vec::new();
    }
    let count = |m: u32| running.iter().filter(|(_, _, r)| *r == m).count();
    let Some(&(ref_name, ref_x, ref_major)) = running
        .iter()
        .max_by(|a, b| count(a.2).cmp(&count(b.2)).then(b.0.cmp(a.0)))
    else {
        return Vec::new();
    };
    let text = |x: &ObservedNode| x.version.map(version_text).unwrap_or_default();
    running
        .iter()
        .filter(|(_, _, m)| *m != ref_major)
        .map(|(name, x, _)| (name.to_string(), text(x), ref_name.clone(), text(ref_x)))
        .collect()
}

/// One note per major that a node runs and pgtopo's CI does not test.
pub fn untested_notes(o: &ObservedCluster) -> Vec<String> {
    let mut notes: Vec<String> = Vec::new();
    for (name, x) in &o.nodes {
        let Some(m) = major(x).filter(|m| !TESTED_MAJORS.contains(m)) else {
            continue;
        };
        notes.push(format!(
            "{name} runs PostgreSQL {m}, which pgtopo is not tested on (tested: {}–{})",
            TESTED_MAJORS.start(),
            TESTED_MAJORS.end()
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::ObservedBinaries;

    fn cluster(nodes: &[(&str, u32, Option<u32>)]) -> ObservedCluster {
        let mut o = ObservedCluster {
            format_version: 1,
            cluster: "c".into(),
            observed_at: String::new(),
            nodes: Default::default(),
            poolers: Default::default(),
        };
        for (name, version, declared) in nodes {
            let mut x = ObservedNode {
                reachable: true,
                running: true,
                version: Some(*version),
                ..Default::default()
            };
            x.binaries = declared.map(|major| ObservedBinaries {
                bin_dir: "/x".into(),
                major: Some(major),
                error: None,
                running_bin_dir: None,
            });
            o.nodes.insert(name.to_string(), x);
        }
        o
    }

    #[test]
    fn different_majors_are_named_against_the_most_common_one() {
        let o = cluster(&[
            ("n1", 170011, None),
            ("n2", 170011, None),
            ("n3", 160015, None),
        ]);
        assert_eq!(
            mixed_majors(&o),
            vec![("n3".into(), "16.15".into(), "n1".into(), "17.11".into())]
        );
        assert!(mixed_majors(&cluster(&[("n1", 170011, None), ("n2", 170002, None)])).is_empty());
    }

    #[test]
    fn an_upgrade_under_way_is_not_mixed_majors() {
        let o = cluster(&[("n1", 180006, Some(18)), ("n2", 170011, Some(18))]);
        assert!(mixed_majors(&o).is_empty());
    }

    #[test]
    fn majors_outside_the_tested_range_get_a_note() {
        let notes = untested_notes(&cluster(&[("n1", 130020, None), ("n2", 150018, None)]));
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("n1 runs PostgreSQL 13"), "{notes:?}");
    }
}
