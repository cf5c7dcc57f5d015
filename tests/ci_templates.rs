//! The CI templates in `examples/ci/` are parsed (serde_yaml), their shell scripts pass
//! `bash -n`, and every `pgtopo` command line of their plan, apply and drift jobs runs against a
//! real cluster with exactly the template's flags and variables, in the template's working
//! directory layout: a renamed flag or a changed exit code breaks this test.
//!
//! The flow, for GitHub Actions then GitLab CI on one cluster: plan (exit 2: changes, the
//! comment's first line is the marker the templates look for, the plan file saved), apply of the
//! saved plan (exit 0), the same apply again (exit 3: stale, "stale plan"), drift (exit 0), a
//! standby stopped, drift again (exit 2).
//!
//! The fleet forms of the nightly drift job (`github/pgtopo-fleet.yml`,
//! `gitlab/fleet.gitlab-ci.yml`) run their `drift -f clusters` over a directory: clean (exit 0),
//! a file that is not a topology (exit 1, the report still written), a cluster drifted (exit 2).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_yaml::Value;
use support::{run_with_deadline, show, TestCluster};

fn template(rel: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/ci")
        .join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
        .collect()
}

/// A template's jobs: name → (variables, shell scripts).
struct Jobs {
    vars: BTreeMap<String, String>,
    scripts: BTreeMap<String, Vec<String>>,
}

fn github() -> Jobs {
    let t = template("github/pgtopo.yml");
    let on = &t["on"];
    for trigger in ["pull_request", "push", "schedule"] {
        assert!(!on[trigger].is_null(), "github: no `on.{trigger}`");
    }
    let mut scripts = BTreeMap::new();
    for (name, job) in t["jobs"].as_mapping().unwrap() {
        let runs: Vec<String> = job["steps"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|s| s["run"].as_str().map(str::to_string))
            .collect();
        scripts.insert(name.as_str().unwrap().to_string(), runs);
    }
    Jobs {
        vars: strings(&t["env"]),
        scripts,
    }
}

fn gitlab() -> Jobs {
    let t = template("gitlab/.gitlab-ci.yml");
    let mut scripts = BTreeMap::new();
    for name in ["plan", "apply", "drift"] {
        let s: Vec<String> = t[name]["script"]
            .as_sequence()
            .unwrap_or_else(|| panic!("gitlab: no job {name}"))
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        scripts.insert(name.to_string(), s);
    }
    Jobs {
        vars: strings(&t["variables"]),
        scripts,
    }
}

/// The fleet drift templates: GitHub's `drift` job and GitLab's `fleet-drift` job, as `drift`.
fn fleet_templates() -> [(&'static str, Jobs); 2] {
    let gh = template("github/pgtopo-fleet.yml");
    assert!(!gh["on"]["schedule"].is_null(), "github fleet: no schedule");
    let runs = gh["jobs"]["drift"]["steps"]
        .as_sequence()
        .expect("github fleet: a drift job")
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_string))
        .collect();
    let gl = template("gitlab/fleet.gitlab-ci.yml");
    let script = gl["fleet-drift"]["script"]
        .as_sequence()
        .expect("gitlab fleet: a fleet-drift job")
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let jobs = |vars: &Value, scripts: Vec<String>| Jobs {
        vars: strings(vars),
        scripts: BTreeMap::from([("drift".to_string(), scripts)]),
    };
    [
        ("github fleet", jobs(&gh["env"], runs)),
        ("gitlab fleet", jobs(&gl["variables"], script)),
    ]
}

/// The pgtopo invocations of a script: each line that starts with `pgtopo `, up to its
/// redirection or `||`, split into words with `"$VAR"` replaced from `vars`.
fn pgtopo_lines(script: &str, vars: &BTreeMap<String, String>) -> Vec<(Vec<String>, bool)> {
    script
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("pgtopo "))
        .map(|l| {
            let cmd = l.split(" || ").next().unwrap();
            let (cmd, redirected) = match cmd.split_once(" > ") {
                Some((c, _)) => (c, true),
                None => (cmd, false),
            };
            let words = cmd
                .split_whitespace()
                .skip(1)
                .map(|w| {
                    let w = w.trim_matches('"');
                    match w.strip_prefix('$') {
                        Some(v) => vars
                            .get(v)
                            .unwrap_or_else(|| panic!("{l}: ${v} is not a template variable"))
                            .clone(),
                        None => w.to_string(),
                    }
                })
                .collect();
            (words, redirected)
        })
        .collect()
}

fn bash_syntax_ok(what: &str, script: &str) {
    // GitHub's ${{ … }} expressions are replaced before bash sees the script.
    let mut s = script.to_string();
    while let Some(a) = s.find("${{") {
        let b = s[a..].find("}}").map(|b| a + b + 2).unwrap();
        s.replace_range(a..b, "X");
    }
    let out = Command::new("bash")
        .args(["-n", "-c", &s])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one pgtopo command of `job`, run in the cluster's directory with the template's variables
/// (its PGTOPO_FILE, topology.yaml, is the cluster's file there).
fn run(c: &TestCluster, jobs: &Jobs, job: &str) -> Output {
    let lines: Vec<_> = jobs.scripts[job]
        .iter()
        .flat_map(|s| pgtopo_lines(s, &jobs.vars))
        .collect();
    assert_eq!(lines.len(), 1, "{job}: one pgtopo command, got {lines:?}");
    let (args, _) = &lines[0];
    let mut cmd = support::cli::stray_pgtopo();
    cmd.args(args)
        .current_dir(&c.dir)
        .envs(&jobs.vars)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    run_with_deadline(cmd, Duration::from_secs(300)).expect("pgtopo ran")
}

fn flow(c: &TestCluster, name: &str, jobs: &Jobs) {
    for (job, scripts) in &jobs.scripts {
        for s in scripts {
            bash_syntax_ok(&format!("{name} {job}"), s);
        }
    }
    assert_eq!(
        jobs.vars.get("PGTOPO_FILE").map(String::as_str),
        Some("topology.yaml")
    );
    assert_eq!(c.topology_file(), c.dir.join("topology.yaml"));
    let plan_file = c.dir.join(&jobs.vars["PLAN_FILE"]);
    let _ = std::fs::remove_file(&plan_file);

    let out = run(c, jobs, "plan");
    assert_eq!(out.status.code(), Some(2), "{name} plan: {}", show(&out));
    let comment = String::from_utf8_lossy(&out.stdout);
    assert!(
        comment.starts_with("<!-- pgtopo:plan cluster="),
        "{name}: the comment's first line is the marker: {comment}"
    );
    assert!(comment.contains("```mermaid"), "{name}: {comment}");
    assert!(plan_file.is_file(), "{name}: the plan is saved");

    let out = run(c, jobs, "apply");
    assert_eq!(out.status.code(), Some(0), "{name} apply: {}", show(&out));
    let out = run(c, jobs, "apply");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{name} apply again: {}",
        show(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stale plan"),
        "{}",
        show(&out)
    );

    let out = run(c, jobs, "drift");
    assert_eq!(out.status.code(), Some(0), "{name} drift: {}", show(&out));
    c.stop("n2", "fast");
    let out = run(c, jobs, "drift");
    assert_eq!(out.status.code(), Some(2), "{name} drift: {}", show(&out));
    assert!(!out.stdout.is_empty());
}

#[test]
fn the_ci_templates_run_their_commands_against_a_real_cluster() {
    let (gh, gl) = (github(), gitlab());
    let c = support::scenario::primary_and_declared(&["n2"]);
    let topo = c.topology();
    c.write_topology(&topo);
    // GitHub builds n2; the drift check stops it, so GitLab's plan starts it again.
    flow(&c, "github", &gh);
    flow(&c, "gitlab", &gl);
}

#[test]
fn the_fleet_drift_templates_run_over_a_directory_of_clusters() {
    let c = support::scenario::primary_and_declared(&[]);
    let topo = c.topology();
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    for (name, jobs) in fleet_templates() {
        for s in &jobs.scripts["drift"] {
            bash_syntax_ok(name, s);
        }
        let dir = c.dir.join(&jobs.vars["PGTOPO_CLUSTERS"]);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("one.yaml"), topo.to_yaml()).unwrap();
        let out = run(&c, &jobs, "drift");
        assert_eq!(out.status.code(), Some(0), "{name}: {}", show(&out));

        std::fs::write(dir.join("broken.yaml"), "cluster: [unclosed\n").unwrap();
        let out = run(&c, &jobs, "drift");
        assert_eq!(out.status.code(), Some(1), "{name}: {}", show(&out));
        assert!(!out.stdout.is_empty(), "{name}: the report is written");
        std::fs::remove_file(dir.join("broken.yaml")).unwrap();

        let mut drifted = topo.clone();
        drifted.settings.insert("work_mem".into(), "7MB".into());
        std::fs::write(dir.join("two.yaml"), drifted.to_yaml()).unwrap();
        let out = run(&c, &jobs, "drift");
        assert_eq!(out.status.code(), Some(2), "{name}: {}", show(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("work_mem"),
            "{name}"
        );
    }
}
