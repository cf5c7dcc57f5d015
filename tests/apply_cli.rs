//! The guard rails of `pgtopo apply`, against a real cluster: a stale saved plan is refused
//! (exit 3, nothing done), a plan of another format version is refused (exit 1), a held lock is
//! refused naming its holder (exit 4) and `unlock` removes only a lock whose holder is gone, no
//! terminal and no --auto-approve is refused (exit 5, nothing done), and after the apply a
//! second one is a no-op.

mod support;

use support::show;

/// stderr with miette's line wrapping undone: one line, single spaces.
fn flat(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches('|')
                .trim_start_matches('x')
                .trim()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn holder_json(pid: u32) -> String {
    let host = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    serde_json::json!({
        "cluster": "test", "user": "someone", "host": host, "pid": pid,
        "since": "2026-01-01T00:00:00Z", "token": "abc"
    })
    .to_string()
}

#[test]
fn stale_plan_lock_and_approval_are_enforced() {
    let c = support::scenario::primary_and_declared(&["n2"]);
    let mut topo = c.topology();
    c.write_topology(&topo);
    let n2_dir = c.node("n2").data_dir.clone();

    // Not approved: no terminal, no --auto-approve.
    let out = c.pgtopo(&["apply"]);
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(!n2_dir.exists(), "nothing was done");

    // Stale plan: the cluster changed after the plan was saved.
    let plan = c.dir.join("plan.json");
    let out = c.pgtopo(&["plan", "--out", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    c.psql(
        "n1",
        "SELECT pg_create_physical_replication_slot('elsewhere')",
    );
    let out = c.pgtopo(&["apply", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(flat(&out).contains("stale plan"), "{}", show(&out));
    assert!(!n2_dir.exists(), "nothing was done");
    c.psql("n1", "SELECT pg_drop_replication_slot('elsewhere')");
    // A plan of another format version is refused by its version (exit 1), nothing done.
    let text = std::fs::read_to_string(&plan).unwrap();
    let newer = text.replacen("\"format_version\": 1,", "\"format_version\": 2,", 1);
    assert_ne!(newer, text);
    std::fs::write(&plan, newer).unwrap();
    let out = c.pgtopo(&["apply", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        flat(&out).contains("plan format 2, this pgtopo reads 1"),
        "{}",
        show(&out)
    );
    assert!(!n2_dir.exists(), "nothing was done");
    // … and when the topology file changed.
    let out = c.pgtopo(&["plan", "--out", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    topo.settings.insert("work_mem".into(), "8MB".into());
    c.write_topology(&topo);
    let out = c.pgtopo(&["apply", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert!(
        flat(&out).contains("topology.yaml changed since the plan was made"),
        "{}",
        show(&out)
    );
    topo.settings.clear();
    c.write_topology(&topo);

    // A lock held by a live process on this host (this test) is refused at once, naming it.
    let lock = c.dir.join("n1.pgtopo.lock");
    std::fs::write(&lock, holder_json(std::process::id())).unwrap();
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    let stderr = flat(&out);
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{}",
        show(&out)
    );
    assert!(stderr.contains("someone@"), "{}", show(&out));
    // --lock-timeout waits, then gives up the same way.
    let t = std::time::Instant::now();
    let out = c.pgtopo(&["apply", "--auto-approve", "--lock-timeout", "1s"]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(t.elapsed() >= std::time::Duration::from_secs(1));
    // unlock refuses while the holder lives …
    let out = c.pgtopo(&["unlock"]);
    assert_eq!(out.status.code(), Some(4), "{}", show(&out));
    assert!(lock.exists());
    // … and removes the lock of a holder that is gone.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(&lock, holder_json(dead)).unwrap();
    let out = c.pgtopo(&["unlock"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!lock.exists());
    assert!(!n2_dir.exists(), "nothing was done");

    // The saved plan, still fresh, is applied without a question; then nothing is left to do.
    let out = c.pgtopo(&["plan", "--out", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    let out = c.pgtopo(&["apply", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    c.wait_streaming("n2");
    let out = c.pgtopo(&["apply"]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("No changes"),
        "{}",
        show(&out)
    );
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}
