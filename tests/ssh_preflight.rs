//! Nodes behind a real sshd on loopback (tests/support/ssh.rs), through the pgtopo binary: a
//! transport that cannot be used (wrong host key, a sudo that wants a password) makes the node
//! unreachable with that cause in `status` and `plan`, and stops `apply` before anything is
//! changed; an unprivileged login with NOPASSWD sudo to postgres applies the plan.

mod support;

use std::process::Output;

use support::ssh::{LoginUser, Sshd};
use support::{show, TestCluster, Topology};

/// Whether stdout or stderr says `needle`, however miette wrapped and framed the lines.
fn says(out: &Output, needle: &str) -> bool {
    let squeeze = |t: &str| -> String {
        t.lines()
            .map(|l| l.trim().trim_start_matches(['│', '|']))
            .collect::<String>()
            .split_whitespace()
            .collect()
    };
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    squeeze(&all).contains(&squeeze(needle))
}

/// Whether work_mem is written in n1's or n2's postgresql.auto.conf (what the plan changes).
fn changed(c: &TestCluster) -> bool {
    ["n1", "n2"].iter().any(|n| {
        let auto = c.node(n).data_dir.join("postgresql.auto.conf");
        std::fs::read_to_string(auto).unwrap().contains("work_mem")
    })
}

/// The default topology (n1 primary, n2 its standby) with work_mem 8MB and both nodes behind
/// `sshd`.
fn behind_ssh(c: &TestCluster, sshd: &Sshd, user: &str) -> Topology {
    let mut topo = c.topology();
    topo.settings.insert("work_mem".into(), "8MB".into());
    sshd.declare_nodes(&mut topo, &["n1", "n2"], user, "known_hosts");
    topo
}

#[test]
fn an_unusable_transport_is_named_and_changes_nothing() {
    let c = support::scenario::primary_and_standby();
    let sshd = Sshd::start();
    c.write_topology(&behind_ssh(&c, &sshd, "root"));
    let plan = c.dir.join("plan.json");
    let out = c.pgtopo(&["plan", "--out", plan.to_str().unwrap()]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(!changed(&c));

    // The host key in known_hosts no longer matches the host's.
    let known_hosts = sshd.dir.path().join("known_hosts");
    let good = std::fs::read(&known_hosts).unwrap();
    std::fs::copy(sshd.dir.path().join("wrong_known_hosts"), &known_hosts).unwrap();
    let mismatch = format!(
        "host key for 127.0.0.1:{} does not match known_hosts file {}",
        sshd.port,
        known_hosts.display()
    );
    let out = c.pgtopo(&["status"]);
    assert!(says(&out, &mismatch), "{}", show(&out));
    assert!(
        says(&out, "running, its host unreachable"),
        "{}",
        show(&out)
    );
    let out = c.pgtopo(&["plan"]);
    assert!(says(&out, &mismatch), "{}", show(&out));
    for args in [
        vec!["apply", plan.to_str().unwrap()],
        vec!["apply", "--auto-approve"],
    ] {
        let out = c.pgtopo(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", show(&out));
        assert!(says(&out, &mismatch), "{args:?}: {}", show(&out));
        assert!(
            says(&out, "n1: ssh root@127.0.0.1"),
            "{args:?}: {}",
            show(&out)
        );
        assert!(!changed(&c), "{args:?}: nothing was changed");
    }
    std::fs::write(&known_hosts, good).unwrap();

    // An unprivileged login whose sudo wants a password.
    let no_nopasswd = LoginUser::create(false);
    c.write_topology(&behind_ssh(&c, &sshd, &no_nopasswd.name));
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(says(&out, "sudo: a password is required"), "{}", show(&out));
    assert!(!changed(&c), "nothing was changed");

    // With NOPASSWD sudo to postgres the same login applies the plan over ssh.
    let deploy = LoginUser::create(true);
    c.write_topology(&behind_ssh(&c, &sshd, &deploy.name));
    let out = c.pgtopo(&["apply", "--auto-approve"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(c.psql("n2", "SHOW work_mem"), "8MB");
    c.wait_streaming("n2");
    let out = c.pgtopo(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}
