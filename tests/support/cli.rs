//! Running programs: the pgtopo binary (with the cluster's topology file, in a caller's stray
//! libpq environment), and any command with a deadline and its output collected.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cluster::TestCluster;

/// The libpq environment every pgtopo run of the harness gets, as an operator's shell or a CI
/// job has it: every variable points away from the cluster (a closed loopback port, a wrong
/// user, password and database, TLS required, a service that does not exist). pgtopo takes
/// nothing from it (SPEC §5d): its connections use the topology, its tools and servers get a
/// clean environment.
pub const STRAY_LIBPQ_ENV: &[(&str, &str)] = &[
    ("PGHOST", "127.0.0.1"),
    ("PGHOSTADDR", "127.0.0.1"),
    ("PGPORT", "1"),
    ("PGUSER", "nobody"),
    ("PGDATABASE", "nowhere"),
    ("PGPASSWORD", "wrong-password"),
    ("PGPASSFILE", "/nonexistent/pgpass"),
    ("PGSSLMODE", "require"),
    ("PGCONNECT_TIMEOUT", "1"),
    ("PGAPPNAME", "stray"),
    ("PGOPTIONS", "-c statement_timeout=1"),
    ("PGTARGETSESSIONATTRS", "standby"),
    ("PGSERVICE", "nowhere"),
    ("PGDATA", "/nonexistent/pgdata"),
];

impl TestCluster {
    /// Run the pgtopo binary with `-f DIR/topology.yaml` (`NO_COLOR` set), e.g.
    /// `c.pgtopo(&["plan", "--format", "json"])`.
    pub fn pgtopo(&self, args: &[&str]) -> Output {
        run_with_deadline(self.pgtopo_command(args), Duration::from_secs(300)).expect("pgtopo ran")
    }

    /// The command [`TestCluster::pgtopo`] runs, for a test that runs it in the background.
    pub fn pgtopo_command(&self, args: &[&str]) -> Command {
        let mut c = stray_pgtopo();
        c.arg("-f").arg(self.topology_file());
        c.args(args).env("NO_COLOR", "1").stdin(Stdio::null());
        c.envs(self.pgtopo_env.iter().map(|(k, v)| (k, v)));
        c
    }
}

/// The pgtopo binary in the [`STRAY_LIBPQ_ENV`].
pub fn stray_pgtopo() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pgtopo"));
    c.envs(STRAY_LIBPQ_ENV.iter().copied());
    c
}

impl TestCluster {}

/// A finished pgtopo run for an assertion message: exit status, stdout and stderr.
pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run a command to completion, killing it after `limit`.
pub fn run_with_deadline(mut c: Command, limit: Duration) -> Result<Output, String> {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {c:?}: {e}"))?;
    wait_child_with_deadline(child, limit)
}

fn wait_child_with_deadline(
    mut child: std::process::Child,
    limit: Duration,
) -> Result<Output, String> {
    use std::io::Read;
    // Drain the pipes in threads so a chatty child never blocks on a full pipe.
    let mut so = child.stdout.take().expect("piped");
    let mut se = child.stderr.take().expect("piped");
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e.to_string()),
        }
    };
    Ok(Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    })
}
