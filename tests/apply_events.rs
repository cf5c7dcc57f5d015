//! `pgtopo apply --format json`: the committed schema `schemas/apply-events.schema.json` is the
//! one the types generate (`UPDATE_SCHEMAS=1 cargo test --test apply_events` rewrites it), and a
//! real apply (a standby built by clone on real PostgreSQL) writes only JSON lines on stdout,
//! each valid against that schema, in the documented order, ending with the exit code; a stale
//! saved plan ends its stream with exit 3.

mod support;

use support::show;

use pgtopo::render::json_events::schema_text;

fn schema_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/apply-events.schema.json")
}

#[test]
fn committed_event_schema_is_up_to_date() {
    let want = schema_text();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(schema_path(), &want).unwrap();
    }
    let have = std::fs::read_to_string(schema_path()).unwrap_or_default();
    assert!(
        have == want,
        "schemas/apply-events.schema.json is out of date: UPDATE_SCHEMAS=1 cargo test --test apply_events"
    );
}

/// Every stdout line parsed and validated; panics naming the line.
fn events(out: &std::process::Output) -> Vec<serde_json::Value> {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path()).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{l}: {errors:?}");
            assert_eq!(v["format_version"], 1, "{l}");
            v
        })
        .collect()
}

fn types(ev: &[serde_json::Value]) -> Vec<&str> {
    ev.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

#[test]
fn a_real_apply_streams_valid_events_in_order() {
    let c = support::scenario::primary_and_declared(&["n2"]);
    let topo = c.topology();
    c.write_topology(&topo);

    // JSON never asks: without a saved plan it needs --auto-approve.
    let out = c.pgtopo(&["apply", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));

    let plan = c.dir.join("plan.json");
    let out = c.pgtopo(&["plan", "--out", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let out = c.pgtopo(&["apply", "--format", "json", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let ev = events(&out);
    let t = types(&ev);
    // The lock first: the saved plan is checked against the cluster under it.
    assert_eq!(&t[..2], ["lock", "plan"], "{t:?}");
    assert_eq!(ev[0]["state"], "acquired");
    assert_eq!(ev[1]["saved"], true);
    assert!(ev[1]["steps"].as_u64().unwrap() > 0);
    assert_eq!(&t[t.len() - 3..], ["end_state", "lock", "outcome"], "{t:?}");
    assert_eq!(ev[t.len() - 3]["matches"], true);
    assert_eq!(ev[t.len() - 2]["state"], "released");
    assert_eq!(ev[t.len() - 1]["exit_code"], 0);
    // Every step started once and finished once, after it started, with its timing.
    let steps = ev[1]["steps"].as_u64().unwrap() as usize;
    let started: Vec<usize> = (0..ev.len()).filter(|i| t[*i] == "step_started").collect();
    let done: Vec<usize> = (0..ev.len()).filter(|i| t[*i] == "step_done").collect();
    assert_eq!((started.len(), done.len()), (steps, steps), "{t:?}");
    for d in &done {
        let id = &ev[*d]["step"];
        let s = started.iter().find(|s| &ev[**s]["step"] == id).unwrap();
        assert!(s < d, "step {id} done before it started");
        assert!(ev[*d]["elapsed_ms"].is_u64());
    }
    assert!(
        ev.iter()
            .any(|e| e["type"] == "step_done" && e["kind"] == "clone" && e["node"] == "n2"),
        "{t:?}"
    );
    assert_eq!(c.psql("n2", "select pg_is_in_recovery()"), "t");

    // The same saved plan again: stale, and the stream says so as its last event.
    let out = c.pgtopo(&["apply", "--format", "json", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    let ev = events(&out);
    let last = ev.last().unwrap();
    assert_eq!(last["type"], "outcome");
    assert_eq!(last["exit_code"], 3);
    assert!(
        last["error"].as_str().unwrap().contains("stale plan"),
        "{last}"
    );
}
