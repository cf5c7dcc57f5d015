//! Port claims: each test process claims its ports with an exclusive file in
//! `/tmp/pgtopo-test-ports/` and a bind probe, so that concurrent tests never share one.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::os::set_mode;

const PORT_RANGE: std::ops::Range<u16> = 26000..27000;
const CLAIM_DIR: &str = "/tmp/pgtopo-test-ports";

/// A random number (std's randomly seeded hasher; no extra dependency).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Claim a free port for `host`: exclusive claim file, then a bind probe. Returns the port and
/// the claim file to remove when done.
pub fn claim_port(host: &str) -> (u16, PathBuf) {
    let _ = std::fs::create_dir_all(CLAIM_DIR);
    set_mode(Path::new(CLAIM_DIR), 0o777);
    let span = (PORT_RANGE.end - PORT_RANGE.start) as u64;
    let start = random_u64() % span;
    for i in 0..span {
        let port = PORT_RANGE.start + ((start + i) % span) as u16;
        let claim = Path::new(CLAIM_DIR).join(port.to_string());
        if !take_claim(&claim) {
            continue;
        }
        let free = [host, "127.0.0.1"]
            .iter()
            .all(|h| std::net::TcpListener::bind((*h, port)).is_ok());
        if free {
            return (port, claim);
        }
        let _ = std::fs::remove_file(&claim);
    }
    panic!("no free port in {PORT_RANGE:?}");
}

/// `count` consecutive ports, port `base + i` free on `127.0.0.<i+1>` (the sandbox layout),
/// claimed until the block is dropped.
pub struct PortBlock {
    pub base: u16,
    claims: Vec<PathBuf>,
}

impl Drop for PortBlock {
    fn drop(&mut self) {
        for c in &self.claims {
            let _ = std::fs::remove_file(c);
        }
    }
}

/// Claim a [`PortBlock`] of `count` ports in 26000–26999.
pub fn claim_port_block(count: u16) -> PortBlock {
    let _ = std::fs::create_dir_all(CLAIM_DIR);
    set_mode(Path::new(CLAIM_DIR), 0o777);
    let span = (PORT_RANGE.end - PORT_RANGE.start - count) as u64;
    let start = random_u64() % span;
    'candidates: for i in 0..span {
        let base = PORT_RANGE.start + ((start + i) % span) as u16;
        let mut claims = Vec::new();
        for k in 0..count {
            let port = base + k;
            let claim = Path::new(CLAIM_DIR).join(port.to_string());
            let host = format!("127.0.0.{}", k + 1);
            if !take_claim(&claim) {
                drop(PortBlock { base, claims });
                continue 'candidates;
            }
            claims.push(claim);
            if std::net::TcpListener::bind((host.as_str(), port)).is_err() {
                drop(PortBlock { base, claims });
                continue 'candidates;
            }
        }
        return PortBlock { base, claims };
    }
    panic!("no block of {count} free ports in {PORT_RANGE:?}");
}

fn take_claim(claim: &Path) -> bool {
    let create = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(claim)
    };
    if create().is_ok() {
        return true;
    }
    let stale = std::fs::metadata(claim)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(3600));
    stale && std::fs::remove_file(claim).is_ok() && create().is_ok()
}
