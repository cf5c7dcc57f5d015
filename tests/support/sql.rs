//! SQL on a node through psql (over TCP, as postgres, with the harness's passfile).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cli::run_with_deadline;
use super::cluster::{TestCluster, DEFAULT_BIN_DIR};

impl TestCluster {
    /// Run SQL on a node as postgres over TCP (`psql -X -At -v ON_ERROR_STOP=1`); panics with
    /// psql's stderr on failure. Returns stdout with the final newline removed.
    pub fn psql(&self, name: &str, sql: &str) -> String {
        match self.try_psql(name, sql) {
            Ok(s) => s,
            Err(e) => panic!("psql on {name} failed for {sql:?}: {e}"),
        }
    }

    /// [`TestCluster::psql`] that returns psql's stderr as the error.
    pub fn try_psql(&self, name: &str, sql: &str) -> Result<String, String> {
        let n = self.node(name);
        let mut c = Command::new(psql_path(&self.bin_dir));
        c.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", &n.host])
            .args([
                "-p",
                &n.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg(format!("--command={sql}"))
            .stdin(Stdio::null());
        self.harness_env(&mut c, true);
        c.env("PGCONNECT_TIMEOUT", "10");
        let out = run_with_deadline(c, Duration::from_secs(60))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl TestCluster {
    /// A tokio-postgres configuration for `nodes` (several: a multi-host one), as `postgres`
    /// with its password, database `postgres`.
    pub fn sql_config(&self, nodes: &[&str]) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        for n in nodes {
            let n = self.node(n);
            cfg.host(&n.host).port(n.port);
        }
        cfg.user("postgres").dbname("postgres");
        if let Some(pw) = self.password() {
            cfg.password(pw);
        }
        cfg
    }
}

pub fn psql_path(bin_dir: &Path) -> PathBuf {
    [
        bin_dir.join("psql"),
        Path::new(DEFAULT_BIN_DIR).join("psql"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or_else(|| PathBuf::from("psql"))
}
