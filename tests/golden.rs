//! Golden plans: every example is planned offline against its recorded observed state, and the
//! text (no colour), JSON and markdown renderings are compared with `plans/<example>.{txt,json,md}`.
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them.

mod common;

use common::*;
use pgtopo::plan::{build, PlanOptions};
use pgtopo::render::plan::{json, markdown, text};

fn compare(path: &std::path::Path, got: &str) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, got).unwrap();
        return None;
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    if want == got {
        return None;
    }
    let d = similar::TextDiff::from_lines(want.as_str(), got);
    Some(format!(
        "{} is out of date (UPDATE_GOLDEN=1 rewrites it):\n{}",
        path.display(),
        d.unified_diff().context_radius(2)
    ))
}

fn check(example: &str) {
    let dir = examples_dir().join(example);
    let d = load_topology(&dir.join("topology.yaml"));
    let o = load_observed(&dir.join("observed.json"));
    let plan = build(&d, &o, &PlanOptions::default())
        .unwrap_or_else(|e| panic!("{example}: {:?}", miette::Report::new(e)));
    if let Some(e) = files_not_shown(&plan) {
        panic!("{example}: {e}");
    }
    let plans = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut failures = Vec::new();
    for (ext, got) in [
        ("txt", text(&plan, false)),
        ("json", json(&plan)),
        ("md", markdown(&plan)),
    ] {
        failures.extend(compare(&plans.join(format!("{example}.{ext}")), &got));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn bootstrap_3_nodes() {
    check("bootstrap-3-nodes");
}

#[test]
fn switchover() {
    check("switchover");
}

#[test]
fn cascade_repoint() {
    check("cascade-repoint");
}

#[test]
fn failover_rejoin() {
    check("failover-rejoin");
}

#[test]
fn settings_rolling_restart() {
    check("settings-rolling-restart");
}

#[test]
fn sync_quorum() {
    check("sync-quorum");
}

#[test]
fn retire_node() {
    check("retire-node");
}
