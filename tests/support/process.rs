//! Postmasters by PID: whether one runs, and ending those a test left behind (checked to be the
//! postmaster of the data directory before any signal).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The PID in a data directory's postmaster.pid.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether a process exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// postmaster.pid files under `dir` (data directories up to two levels deep).
pub(super) fn find_pid_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name() == "postmaster.pid" {
                found.push(p);
            } else if depth < 2 && e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
                stack.push((p, depth + 1));
            }
        }
    }
    found
}

/// SIGQUIT, then SIGKILL after 5 s, to the postmaster `pid` of `data_dir` — only when that
/// process's working directory is `data_dir` (a postmaster chdirs into its data directory), so a
/// stale pid file never gets another process killed.
pub(super) fn end_postmaster(pid: i32, data_dir: &Path) {
    use nix::sys::signal::{kill, Signal};
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let ours = match (cwd, std::fs::canonicalize(data_dir).ok()) {
        (Some(c), Some(d)) => c == d,
        _ => false,
    };
    if !ours || !pid_alive(pid) {
        return;
    }
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = kill(p, Signal::SIGQUIT);
    if !wait_pid_gone(pid, Duration::from_secs(5)) {
        let _ = kill(p, Signal::SIGKILL);
        wait_pid_gone(pid, Duration::from_secs(5));
    }
}

fn wait_pid_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    !pid_alive(pid)
}
