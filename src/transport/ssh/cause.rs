//! What ssh (and sudo behind it) printed, turned into the one cause a person acts on: a host key
//! that does not match, a key the server refuses, a sudo that wants a password.

use crate::config::SshSpec;

/// The cause of a failed connection or user switch, from ssh's or sudo's stderr.
pub fn cause(spec: &SshSpec, stderr: &str) -> String {
    let addr = format!("{}:{}", spec.host, spec.port.unwrap_or(22));
    let known_hosts = spec.known_hosts_file.as_ref().map_or_else(
        || "~/.ssh/known_hosts".to_string(),
        |p| p.display().to_string(),
    );
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("has changed and you have requested strict checking")
    {
        return format!("host key for {addr} does not match known_hosts file {known_hosts}");
    }
    if stderr.contains("host key is known for") || stderr.contains("Host key verification failed") {
        return format!("host key for {addr} is not in known_hosts file {known_hosts}");
    }
    if let Some(methods) = after(stderr, "Permission denied (") {
        return format!("permission denied ({}", methods.to_lowercase());
    }
    if stderr.contains("a password is required") {
        return "sudo: a password is required".into();
    }
    if stderr.contains("is not in the sudoers file") || stderr.contains("is not allowed to execute")
    {
        return format!("sudo refused: {}", last_line(stderr));
    }
    for (needle, said) in [
        ("Connection refused", "connection refused"),
        ("Connection timed out", "connection timed out"),
        ("No route to host", "no route to host"),
        ("Could not resolve hostname", "host name not resolved"),
    ] {
        if stderr.contains(needle) {
            return format!("{said} ({addr})");
        }
    }
    match last_line(stderr) {
        "" => "ssh failed without a message".into(),
        l => l.to_string(),
    }
}

/// The text after `needle` up to the end of its line.
fn after<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    let rest = &text[text.find(needle)? + needle.len()..];
    Some(rest.lines().next().unwrap_or("").trim_end_matches('.'))
}

fn last_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SshSpec {
        SshSpec {
            host: "127.0.0.1".into(),
            user: Some("root".into()),
            port: Some(2222),
            identity_file: None,
            known_hosts_file: Some("/k/known_hosts".into()),
            jump: None,
            config_file: None,
        }
    }

    #[test]
    fn ssh_and_sudo_messages_become_causes() {
        let cases = [
            (
                "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
                 Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\n\
                 Host key verification failed.\n",
                "host key for 127.0.0.1:2222 does not match known_hosts file /k/known_hosts",
            ),
            (
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\n\
                 Host key verification failed.\n",
                "host key for 127.0.0.1:2222 is not in known_hosts file /k/known_hosts",
            ),
            (
                "root@127.0.0.1: Permission denied (publickey).\n",
                "permission denied (publickey)",
            ),
            (
                "sudo: a password is required\n",
                "sudo: a password is required",
            ),
            (
                "ssh: connect to host 127.0.0.1 port 2222: Connection refused\n",
                "connection refused (127.0.0.1:2222)",
            ),
            ("something new\n\n", "something new"),
        ];
        for (stderr, want) in cases {
            assert_eq!(cause(&spec(), stderr), want, "{stderr}");
        }
    }
}
