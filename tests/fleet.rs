//! Many clusters at once (SPEC §9), through the binary on real clusters: a directory of four
//! topology files — `alpha` (primary and standby, as declared), `beta` (one node, drifted: a
//! setting differs), `broken` (not a topology file) and `gamma` (its only node is not running)
//! — read by `validate`, `status`, `plan` and `drift` as one report in text, JSON and markdown,
//! with the fleet's exit codes; `apply` refuses several files; and `--format prometheus` that
//! `promtool check metrics` accepts, with the values the clusters have.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::TestCluster;

/// The three clusters (kept running for the test's length) and the directory of their files.
struct Fleet {
    _clusters: Vec<TestCluster>,
    dir: tempfile::TempDir,
}

impl Fleet {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.yaml"))
    }
}

fn fleet() -> Fleet {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, yaml: String| std::fs::write(dir.path().join(name), yaml).unwrap();

    let mut alpha = TestCluster::new();
    alpha.init_primary("n1");
    alpha.start("n1");
    alpha.add_standby_basebackup("n2", "n1");
    alpha.wait_streaming("n2");
    let mut topo = alpha.topology();
    topo.cluster = "alpha".into();
    write("alpha.yaml", topo.to_yaml());
    // Its pg_hba managed block written: nothing drifted.
    let out = pgtopo(
        &[&dir.path().join("alpha.yaml")],
        &["apply", "--auto-approve"],
    );
    assert!(out.status.success(), "{}", support::cli::show(&out));

    let mut beta = TestCluster::new();
    beta.init_primary("n1");
    beta.start("n1");
    let mut topo = beta.topology();
    topo.cluster = "beta".into();
    topo.settings.insert("work_mem".into(), "7MB".into());
    write("beta.yaml", topo.to_yaml());

    write("broken.yaml", "cluster: [unclosed\n".into());

    let mut gamma = TestCluster::new();
    gamma.declare_node("n1");
    let mut topo = gamma.topology();
    topo.cluster = "gamma".into();
    topo.role("n1", "primary", None);
    write("gamma.yml", topo.to_yaml());
    // Not a topology file: a directory holds other files too.
    write("README.md", "the fleet\n".into());

    Fleet {
        _clusters: vec![alpha, beta, gamma],
        dir,
    }
}

fn pgtopo(files: &[&Path], args: &[&str]) -> Output {
    let mut c = support::cli::stray_pgtopo();
    for f in files {
        c.arg("-f").arg(f);
    }
    c.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
    support::cli::run_with_deadline(c, Duration::from_secs(120)).expect("pgtopo ran")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

/// The summary row of `cluster` in a text report, split on whitespace.
fn row<'a>(text: &'a str, cluster: &str) -> Vec<&'a str> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(cluster))
        .unwrap_or_else(|| panic!("no row for {cluster} in\n{text}"))
        .split_whitespace()
        .collect()
}

#[test]
fn a_directory_is_one_report_in_text_json_and_markdown() {
    let f = fleet();
    let dir = f.dir.path();
    let show = support::cli::show;

    // drift over the directory: one cluster could not be read, so exit 1 (over 2).
    let out = pgtopo(&[dir], &["drift"]);
    let text = stdout(&out);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
    assert!(text.starts_with("CLUSTER"), "{text}");
    assert_eq!(row(&text, "alpha"), ["alpha", "2", "ok"], "{text}");
    assert_eq!(row(&text, "beta")[..2], ["beta", "1"]);
    assert!(row(&text, "beta")[3].starts_with("finding"), "{text}");
    assert_eq!(row(&text, "broken"), ["broken", "-", "error"]);
    assert_eq!(row(&text, "gamma"), ["gamma", "-", "error"]);
    assert!(!text.contains("README"), "{text}");
    let order: Vec<usize> = ["== alpha", "== beta", "== broken", "== gamma"]
        .iter()
        .map(|h| {
            text.find(h)
                .unwrap_or_else(|| panic!("no {h} section in\n{text}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(text.contains("No drift."), "{text}");
    assert!(text.contains("work_mem"), "{text}");
    assert!(
        text.contains("no node of cluster `gamma` answered"),
        "{text}"
    );

    // JSON: each cluster's own drift document, or its error.
    let out = pgtopo(&[dir], &["drift", "--format", "json"]);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["format_version"], 1);
    let c = &v["clusters"];
    assert_eq!(c.as_object().unwrap().len(), 4, "{v}");
    assert_eq!(c["alpha"]["cluster"], "alpha");
    assert_eq!(c["alpha"]["items"], Value::Array(vec![]));
    let kinds: Vec<&Value> = c["beta"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["kind"])
        .collect();
    assert!(kinds.contains(&&Value::from("setting_changed")), "{v}");
    assert!(c["broken"]["error"].as_str().is_some(), "{v}");
    assert!(
        c["gamma"]["error"].as_str().unwrap().contains("answered"),
        "{v}"
    );

    // Markdown: the table first, then a section for the drifted and the unreadable only.
    let out = pgtopo(&[dir], &["drift", "--format", "markdown"]);
    let md = stdout(&out);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
    assert!(md.starts_with("<!-- pgtopo:fleet-drift -->"), "{md}");
    assert!(md.contains("| `alpha` | 2 | ok |"), "{md}");
    assert!(md.contains("| `beta` | 1 | 2 findings |"), "{md}");
    assert!(md.contains("### pgtopo drift for `beta`"), "{md}");
    assert!(!md.contains("### pgtopo drift for `alpha`"), "{md}");
    assert!(md.contains("### `broken` could not be read"), "{md}");

    // Two readable files: beta drifted, so exit 2; alpha alone in a directory form stays 0.
    let (a, b) = (f.file("alpha"), f.file("beta"));
    let out = pgtopo(&[&a, &b], &["drift"]);
    assert_eq!(code(&out), Some(2), "{}", show(&out));
    let out = pgtopo(&[&a, &a], &["drift", "--parallelism", "1"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    // One file: the single form, as it always was.
    let out = pgtopo(&[&a], &["drift"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert_eq!(
        stdout(&out),
        "No drift. The cluster matches topology.yaml.\n"
    );

    // plan: beta has changes (exit 2); status and validate never exit 2.
    let out = pgtopo(&[&a, &b], &["plan"]);
    assert_eq!(code(&out), Some(2), "{}", show(&out));
    assert_eq!(row(&stdout(&out), "alpha"), ["alpha", "2", "ok"]);
    assert!(
        row(&stdout(&out), "beta")[3].starts_with("change"),
        "{}",
        show(&out)
    );
    let out = pgtopo(&[dir], &["plan", "--format", "json"]);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["clusters"]["alpha"]["cluster"], "alpha", "{v}");
    assert!(v["clusters"]["beta"]["steps"].as_array().is_some(), "{v}");
    assert!(v["clusters"]["gamma"]["error"].is_string(), "{v}");
    let out = pgtopo(&[&a, &b], &["status"]);
    assert_eq!(code(&out), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("cluster alpha"), "{}", show(&out));
    let out = pgtopo(&[dir], &["status", "--format", "json"]);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        v["clusters"]["alpha"]["nodes"]["n2"]["role"], "standby",
        "{v}"
    );
    let out = pgtopo(&[dir], &["validate"]);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
    assert_eq!(row(&stdout(&out), "gamma"), ["gamma", "1", "ok"]);
    assert_eq!(row(&stdout(&out), "broken"), ["broken", "-", "error"]);

    // apply is one cluster per run; nothing is read.
    let out = pgtopo(&[&a, &b], &["apply", "--auto-approve"]);
    assert_eq!(code(&out), Some(1), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("one cluster per run"), "{err}");
    let out = pgtopo(&[&b], &["drift"]);
    assert_eq!(code(&out), Some(2), "beta still drifted: {}", show(&out));
}

/// `promtool check metrics` on `text`; None when promtool is not installed.
fn promtool(text: &str) -> Option<Output> {
    use std::io::Write;
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => return None,
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    Some(child.wait_with_output().expect("promtool ran"))
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn prometheus_format_passes_promtool_with_the_clusters_values() {
    let f = fleet();
    let out = pgtopo(&[f.dir.path()], &["status", "--format", "prometheus"]);
    assert_eq!(code(&out), Some(1), "{}", support::cli::show(&out));
    let text = stdout(&out);
    assert!(text.ends_with("# EOF\n"), "{text}");
    for (series, value) in [
        (r#"pgtopo_cluster_up{cluster="alpha"}"#, 1.0),
        (r#"pgtopo_cluster_up{cluster="broken"}"#, 0.0),
        (r#"pgtopo_cluster_up{cluster="gamma"}"#, 0.0),
        (r#"pgtopo_node_up{cluster="alpha",node="n2"}"#, 1.0),
        (
            r#"pgtopo_node_role{cluster="alpha",node="n1",role="primary"}"#,
            1.0,
        ),
        (
            r#"pgtopo_node_role{cluster="alpha",node="n2",role="primary"}"#,
            0.0,
        ),
        (
            r#"pgtopo_drift_findings{cluster="beta",node="n1",kind="setting_changed"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&text, series), value, "{series}");
    }
    assert!(
        sample(
            &text,
            r#"pgtopo_replication_lag_bytes{cluster="alpha",node="n2"}"#
        ) >= 0.0
    );
    assert!(
        sample(
            &text,
            r#"pgtopo_slot_retained_bytes{cluster="alpha",node="n1",slot="n2"}"#
        ) >= 0.0
    );
    assert!(sample(&text, r#"pgtopo_observe_duration_seconds{cluster="beta"}"#) > 0.0);

    // The single form: the same series for one cluster, exit as `drift` always did.
    let single = pgtopo(&[&f.file("beta")], &["drift", "--format", "prometheus"]);
    assert_eq!(code(&single), Some(2), "{}", support::cli::show(&single));
    let single = stdout(&single);
    assert_eq!(sample(&single, r#"pgtopo_cluster_up{cluster="beta"}"#), 1.0);

    // A cluster none of whose nodes answers, alone: its nodes are down, status exits 0.
    let down = pgtopo(
        &[&f.dir.path().join("gamma.yml")],
        &["status", "--format", "prometheus"],
    );
    assert_eq!(code(&down), Some(0), "{}", support::cli::show(&down));
    let down = stdout(&down);
    assert_eq!(sample(&down, r#"pgtopo_cluster_up{cluster="gamma"}"#), 0.0);
    assert_eq!(
        sample(&down, r#"pgtopo_node_up{cluster="gamma",node="n1"}"#),
        0.0
    );

    for text in [text, single, down] {
        let Some(check) = promtool(&text) else {
            support::missing_prerequisite(
                "prometheus_format_passes_promtool",
                "promtool is not installed (apt-get install prometheus)",
            );
            return;
        };
        assert!(
            check.status.success(),
            "promtool check metrics: {}\n{}\n{text}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}
