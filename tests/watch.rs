//! `pgtopo watch` through the binary on real clusters: `alpha` (one node, as declared) and
//! `beta` (one node, drifted: a setting differs). It serves `/healthz`, `/metrics` (what
//! `drift --format prometheus` prints; promtool accepts it) and the HTML overview with a red row
//! for `beta`, and stops with exit 0 on SIGTERM, its port closed.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::TestCluster;

/// The running `pgtopo watch`, killed if the test ends before it stopped.
struct Watch(Option<Child>);

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP/1.1 GET: the status code and the body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((code, body.to_string()))
}

fn promtool_ok(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        support::missing_prerequisite(
            "watch_serves_the_fleet",
            "promtool is not installed (apt-get install prometheus)",
        );
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", support::cli::show(&out));
}

fn write_fleet(dir: &Path) -> Vec<TestCluster> {
    let mut alpha = TestCluster::new();
    alpha.init_primary("n1");
    alpha.start("n1");
    let mut topo = alpha.topology();
    topo.cluster = "alpha".into();
    std::fs::write(dir.join("alpha.yaml"), topo.to_yaml()).unwrap();
    let mut c = support::cli::stray_pgtopo();
    c.arg("-f")
        .arg(dir.join("alpha.yaml"))
        .args(["apply", "--auto-approve"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    let out = support::cli::run_with_deadline(c, Duration::from_secs(120)).unwrap();
    assert!(out.status.success(), "{}", support::cli::show(&out));

    let mut beta = TestCluster::new();
    beta.init_primary("n1");
    beta.start("n1");
    let mut topo = beta.topology();
    topo.cluster = "beta".into();
    topo.settings.insert("work_mem".into(), "7MB".into());
    std::fs::write(dir.join("beta.yaml"), topo.to_yaml()).unwrap();
    vec![alpha, beta]
}

#[test]
fn watch_serves_the_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let _clusters = write_fleet(dir.path());
    let (port, claim) = support::ports::claim_port("127.0.0.1");
    let child = support::cli::stray_pgtopo()
        .process_group(0)
        .arg("-f")
        .arg(dir.path())
        .args(["watch", "--interval", "300ms", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgtopo watch runs");
    let mut w = Watch(Some(child));

    // Ready once /healthz says a round finished.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    loop {
        match get(port, "/healthz") {
            Ok((200, _)) => break,
            Ok((code, body)) => last = format!("{code} {body}"),
            Err(e) => last = e.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "/healthz never answered 200; last: {last}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let (code, metrics) = get(port, "/metrics").unwrap();
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.ends_with("# EOF\n"), "{metrics}");
    assert!(
        metrics.contains("pgtopo_cluster_up{cluster=\"alpha\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "pgtopo_drift_findings{cluster=\"beta\",node=\"n1\",kind=\"setting_changed\"} 1"
        ),
        "{metrics}"
    );
    promtool_ok(&metrics);

    let (code, page) = get(port, "/").unwrap();
    assert_eq!(code, 200, "{page}");
    let row = |name: &str| {
        page.lines()
            .find(|l| l.starts_with("<tr") && l.contains(&format!(">{name}</a>")))
            .unwrap_or_else(|| panic!("no row for {name} in\n{page}"))
            .to_string()
    };
    assert!(row("alpha").starts_with("<tr class=\"fine\">"), "{page}");
    assert!(row("beta").starts_with("<tr class=\"wrong\">"), "{page}");
    assert!(row("beta").contains("work_mem"), "{page}");
    assert!(row("alpha").contains("n1 primary"), "{page}");
    assert!(!page.contains("<script"), "{page}");

    let (code, detail) = get(port, "/cluster/beta").unwrap();
    assert_eq!(code, 200, "{detail}");
    assert!(
        detail.contains("<h1>beta</h1>") && detail.contains("work_mem"),
        "{detail}"
    );
    assert_eq!(get(port, "/cluster/nosuch").unwrap().0, 404);

    // SIGTERM: a clean stop, exit 0, the port closed, nothing left in its process group.
    let mut child = w.0.take().unwrap();
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pgtopo watch did not stop within 30s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port still open"
    );
    assert_eq!(
        nix::sys::signal::kill(group, None),
        Err(nix::errno::Errno::ESRCH),
        "a process of pgtopo watch's group outlived it"
    );
    let _ = std::fs::remove_file(claim);
}

/// Bad options: exit 1 with a diagnostic, nothing served.
#[test]
fn bad_options_exit_1() {
    let (port, claim) = support::ports::claim_port("127.0.0.1");
    let holder = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "cluster: a\n").unwrap();
    let listen = format!("127.0.0.1:{port}");
    for (args, says) in [
        (
            vec!["--interval", "0s"],
            "--interval must be longer than zero",
        ),
        (vec!["--listen", listen.as_str()], "cannot listen on"),
    ] {
        let mut c = support::cli::stray_pgtopo();
        c.arg("-f")
            .arg(dir.path())
            .arg("watch")
            .args(&args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        let out = support::cli::run_with_deadline(c, Duration::from_secs(30)).unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", support::cli::show(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            support::cli::show(&out)
        );
    }
    drop(holder);
    let _ = std::fs::remove_file(claim);
}
