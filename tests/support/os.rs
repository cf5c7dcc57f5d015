//! The OS user, file ownership and modes.

use std::path::Path;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub(super) fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("current user has a name")
}

pub(super) fn chown_to(path: &Path, user: &str) {
    let u = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no OS user {user}"));
    nix::unistd::chown(path, Some(u.uid), Some(u.gid)).expect("chown");
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

pub(super) fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// A test whose prerequisite is missing (no root, no network namespaces, a PostgreSQL built
/// without SSL, a bin directory that is not installed): it fails when `PGTOPO_REQUIRE_ALL=1`
/// (which `scripts/test.sh`, and so CI, sets for everything it installs), else it says so on
/// stderr and the caller returns. Returns true when the test should stop here.
pub fn missing_prerequisite(test: &str, why: &str) -> bool {
    if std::env::var("PGTOPO_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: prerequisite missing with PGTOPO_REQUIRE_ALL=1: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    true
}
