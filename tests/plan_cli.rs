//! The plan, show, graph and drift commands end to end, offline (`--observed`): output and exit
//! codes of SPEC §3.

mod common;

use std::process::{Command, Output};

use common::*;

fn pgtopo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgtopo"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("PGTOPO_FILE")
        .output()
        .expect("run pgtopo")
}

fn example(name: &str) -> (String, String) {
    let dir = examples_dir().join(name);
    (
        dir.join("topology.yaml").display().to_string(),
        dir.join("observed.json").display().to_string(),
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn plan_offline_with_detailed_exitcode() {
    let (topo, obs) = example("switchover");
    let o = pgtopo(&[
        "-f",
        &topo,
        "plan",
        "--observed",
        &obs,
        "--detailed-exitcode",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("# node.n2 will be promoted (planned switchover from n1)"),
        "{out}"
    );
    assert!(out.contains("Writes unavailable: steps 4–6"), "{out}");
    let o = pgtopo(&["-f", &topo, "plan", "--observed", &obs]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn saved_plan_shows_and_graphs() {
    let (topo, obs) = example("failover-rejoin");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.json");
    let out_s = out.display().to_string();
    let o = pgtopo(&[
        "-f",
        &topo,
        "plan",
        "--observed",
        &obs,
        "--out",
        &out_s,
        "--format",
        "markdown",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("<!-- pgtopo:plan cluster=shop -->"));
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(plan["format_version"], 1);
    assert!(plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["kind"] == "rewind"));
    let o = pgtopo(&["show", &out_s]);
    assert_eq!(o.status.code(), Some(0));
    let shown = stdout(&o);
    assert!(
        shown.contains("n1 did not shut down cleanly")
            && shown.contains("may have WAL past the fork point")
            && shown.contains("of timeline 2"),
        "{shown}"
    );
    let o = pgtopo(&["show", &out_s, "--format", "json"]);
    assert_eq!(stdout(&o), std::fs::read_to_string(&out).unwrap());
    let o = pgtopo(&["graph", &out_s]);
    let dot = stdout(&o);
    assert!(
        dot.starts_with("digraph")
            && dot.contains("subgraph \"cluster_n1\"")
            && dot.contains("s2 -> s3;"),
        "{dot}"
    );
}

#[test]
fn failover_without_consent_is_refused_and_what_if_works() {
    let (topo, obs) = example("switchover");
    let o = pgtopo(&[
        "-f",
        &topo,
        "plan",
        "--observed",
        &obs,
        "--assume-down",
        "n1",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("failover from n1")
            && out.contains("--allow-failover")
            && out.contains("failover.allow"),
        "a what-if shows the failover and says apply would need consent: {out}"
    );
    let o = pgtopo(&[
        "-f",
        &topo,
        "plan",
        "--observed",
        &obs,
        "--assume-down",
        "n1",
        "--allow-failover",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("failover from n1"));
}

#[test]
fn graph_takes_the_planning_options_of_plan() {
    let (topo, obs) = example("switchover");
    let graph = |extra: &[&str]| {
        let mut args = vec!["-f", &topo, "graph", "--observed", &obs];
        args.extend_from_slice(extra);
        pgtopo(&args)
    };
    // n1 assumed down: the failover plan, drawn the way plan shows it.
    for extra in [
        &["--assume-down", "n1"][..],
        &["--assume-down", "n1", "--allow-failover"],
    ] {
        let o = graph(extra);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let dot = stdout(&o);
        assert!(
            dot.starts_with("digraph") && dot.contains("failover from n1, which is down"),
            "{dot}"
        );
    }
    let dot = stdout(&graph(&[]));
    assert!(dot.contains("planned switchover from n1"), "{dot}");
    // A saved plan is drawn as saved: planning options are refused, with exit 1.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.json");
    let out_s = out.display().to_string();
    let o = pgtopo(&["-f", &topo, "plan", "--observed", &obs, "--out", &out_s]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = pgtopo(&["-f", &topo, "graph", &out_s, "--assume-down", "n1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("plan anew"), "{}", stderr(&o));
}

#[test]
fn no_changes_and_no_drift() {
    let (topo, obs) = example("cascade-repoint");
    let d = load_topology(std::path::Path::new(&topo));
    let o = load_observed(std::path::Path::new(&obs));
    // The end state is the plan's own steps replayed by the oracle (`plan::replay`).
    let p = pgtopo::plan::build(&d, &o, &Default::default()).expect("the example plans");
    let end = pgtopo::plan::replay::replay(&d, &o, &p).expect("the plan replays");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("end.json");
    std::fs::write(&p, serde_json::to_string(&end).unwrap()).unwrap();
    let ps = p.display().to_string();
    let o = pgtopo(&[
        "-f",
        &topo,
        "plan",
        "--observed",
        &ps,
        "--detailed-exitcode",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "No changes. The cluster matches topology.yaml."
    );
    let o = pgtopo(&["-f", &topo, "drift", "--observed", &ps]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = pgtopo(&["-f", &topo, "drift", "--observed", &obs, "--format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(r["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["kind"] == "wrong_upstream"));
}

#[test]
fn no_secret_in_any_output() {
    let (topo, obs) = example("bootstrap-3-nodes");
    for format in ["text", "json", "markdown"] {
        let o = Command::new(env!("CARGO_BIN_EXE_pgtopo"))
            .args(["-f", &topo, "plan", "--observed", &obs, "--format", format])
            .env("PGTOPO_REPLICATION_PASSWORD", "s3cret-never-shown")
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&o.stdout).contains("s3cret-never-shown"));
        assert!(!String::from_utf8_lossy(&o.stderr).contains("s3cret-never-shown"));
    }
}
