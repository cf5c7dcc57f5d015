//! The binaries of a running node: the major of its declared bin_dir (`postgres --version`) and,
//! when that differs from the server's own major, where the running postmaster's executable
//! lives (`/proc/<pid>/exe`). Facts for planning a major-version upgrade; nothing is decided.

use std::path::Path;
use std::time::Duration;

use super::ObservedBinaries;
use crate::config::DesiredNode;
use crate::transport::{CommandSpec, Transport};

/// `postgres (PostgreSQL) 18.6` → 18, `… 15.14 (Debian 15.14-1)` → 15, `… 18beta1` → 18.
pub fn parse_major(version_line: &str) -> Option<u32> {
    let word = version_line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = word.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The major of `<bin_dir>/postgres`, or why it could not be read.
pub async fn bin_dir_major(transport: &dyn Transport, bin_dir: &Path) -> Result<u32, String> {
    let postgres = bin_dir.join("postgres");
    let cmd = CommandSpec::new(&postgres)
        .arg("--version")
        .timeout(Duration::from_secs(10));
    let out = transport
        .run(&cmd)
        .await
        .map_err(|e| format!("{}: {e}", postgres.display()))?;
    if !out.success() {
        return Err(format!(
            "{} --version failed: {}",
            postgres.display(),
            out.stderr.trim()
        ));
    }
    let text = out.stdout_text();
    parse_major(&text).ok_or_else(|| {
        format!(
            "{} --version printed no version: {}",
            postgres.display(),
            text.trim()
        )
    })
}

/// The directory of the running postmaster's executable.
async fn running_bin_dir(transport: &dyn Transport, node: &DesiredNode) -> Option<String> {
    let pid_file = transport
        .read_file(&node.data_dir.join("postmaster.pid"))
        .await
        .ok()??;
    let pid: u32 = String::from_utf8_lossy(&pid_file)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    let cmd = CommandSpec::new("readlink")
        .arg(format!("/proc/{pid}/exe"))
        .timeout(Duration::from_secs(10));
    let out = transport.run(&cmd).await.ok().filter(|o| o.success())?;
    let exe = out.stdout_text().trim().to_string();
    Path::new(&exe)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The node's binaries; `obs` is what SQL saw (its server_version_num).
pub async fn observe(
    transport: &dyn Transport,
    node: &DesiredNode,
    obs: &super::ObservedNode,
) -> ObservedBinaries {
    let (major, error) = match bin_dir_major(transport, &node.bin_dir).await {
        Ok(m) => (Some(m), None),
        Err(e) => (None, Some(e)),
    };
    let server_major = obs.version.map(|v| v / 10000).or(obs.data_dir.pg_version);
    let running_bin_dir = if major.is_some() && major != server_major {
        running_bin_dir(transport, node).await
    } else {
        None
    };
    ObservedBinaries {
        bin_dir: node.bin_dir.display().to_string(),
        major,
        error,
        running_bin_dir,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn majors_from_version_lines() {
        assert_eq!(parse_major("postgres (PostgreSQL) 18.6\n"), Some(18));
        assert_eq!(
            parse_major("postgres (PostgreSQL) 15.14 (Debian 15.14-1.pgdg12+1)"),
            Some(15)
        );
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_major("no version here"), None);
    }
}
