//! A switchover interrupted by SIGKILL at each of its steps in turn: the next `pgtopo apply`
//! (which takes over the dead apply's lock) plans from what it finds and finishes the job, with
//! no committed row lost and `pgtopo plan` reporting no changes afterwards.

mod support;

use support::show;

use support::scenario::{self, apply_killed_at};

#[test]
fn switchover_killed_at_every_step_converges_on_the_next_apply() {
    let c = scenario::primary_and_standby();
    let mut topo = c.topology();
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    c.psql("n1", "CREATE TABLE rows(i int PRIMARY KEY)");

    let mut primary = "n1";
    let mut killed_kinds = Vec::new();
    let mut reruns = Vec::new();
    for k in 1..=12u32 {
        let (new, old) = if primary == "n1" {
            ("n2", "n1")
        } else {
            ("n1", "n2")
        };
        c.psql(primary, &format!("INSERT INTO rows VALUES ({k})"));
        topo.role(new, "primary", None)
            .role(old, "standby", Some(new));
        c.write_topology(&topo);
        let killed = apply_killed_at(&c, |step, _| step == k);
        // One re-run finishes the job (observing again after its plan, it also does what the
        // first observation could not see, e.g. the slots of a node that was stopped then).
        let out = c.pgtopo(&["apply", "--auto-approve"]);
        assert!(
            out.status.success(),
            "apply after a kill at step {k} ({killed:?}): {}",
            show(&out)
        );
        let followups = String::from_utf8_lossy(&out.stdout)
            .matches("a follow-up plan")
            .count();
        reruns.push(followups);
        let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "after a kill at step {k}: {}",
            show(&out)
        );
        assert_eq!(c.psql(new, "SELECT pg_is_in_recovery()"), "f");
        c.wait_streaming(old);
        assert_eq!(
            c.psql(new, "SELECT count(*) FROM rows"),
            k.to_string(),
            "every committed row is on {new}"
        );
        primary = new;
        match killed {
            Some(step) => killed_kinds.push(step),
            None => break,
        }
    }
    let line = serde_json::json!({
        "test": "switchover_killed_at_every_step",
        "killed_at": killed_kinds,
        "follow_up_plans": reruns,
    });
    let path =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("switchover-measurements.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("measurements file");
    std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()).expect("write");
    assert!(killed_kinds.len() >= 5, "{killed_kinds:?}");
}
