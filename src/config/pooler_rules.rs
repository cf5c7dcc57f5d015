//! Semantic rules for `poolers` and `hooks`, read leniently on the span tree like
//! [`super::rules`]: a value of the wrong shape was already reported by the structural check.

use super::diag::ConfigError;
use super::yaml::{Entry, Node};

/// Every rule about poolers and hooks.
pub fn check(root: &Node, errors: &mut Vec<ConfigError>) {
    if let Some(poolers) = root.get("poolers") {
        for e in poolers.value.entries() {
            pooler(root, e, errors);
        }
    }
    if let Some(hooks) = root.get("hooks") {
        for point in hooks.value.entries() {
            for (i, h) in point.value.items().iter().enumerate() {
                hook(&format!("hooks.{}[{i}]", point.key), h, errors);
            }
        }
    }
}

fn pooler(root: &Node, e: &Entry, errors: &mut Vec<ConfigError>) {
    let name = &e.key;
    if !super::names::valid_node_name(name) {
        errors.push(
            ConfigError::new(
                "pooler_name",
                format!("pooler name `{name}` is not allowed"),
            )
            .label(e.span(), "not [a-z][a-z0-9_]{0,62}")
            .help("use lower-case letters, digits and `_`, starting with a letter"),
        );
    }
    let p = &e.value;
    if let Some(dbs) = p.get("databases") {
        if dbs.value.items().is_empty() {
            errors.push(
                ConfigError::new(
                    "pooler_databases",
                    format!("pooler `{name}` follows no database"),
                )
                .label(dbs.value.span, "empty list")
                .help("list the [databases] entries of pgbouncer.ini that must follow the primary"),
            );
        }
    }
    if let (Some(ssh), None) = (p.get("ssh"), p.get("config_file")) {
        errors.push(
            ConfigError::new(
                "pooler_ssh",
                format!("pooler `{name}` has `ssh` but no `config_file`"),
            )
            .label(ssh.span(), "reaches no file")
            .help("add `config_file` (the pgbouncer.ini pgtopo rewrites), or remove `ssh` for an admin-console-only pooler"),
        );
    }
    same_address_as_a_node(root, name, p, errors);
}

/// A pooler cannot listen where a declared server does.
fn same_address_as_a_node(root: &Node, name: &str, p: &Node, errors: &mut Vec<ConfigError>) {
    let Some(host) = p.get("host").and_then(|h| h.value.as_str()) else {
        return;
    };
    let port = p.get("port").and_then(|e| e.value.as_int()).unwrap_or(6432);
    let Some(nodes) = root.get("nodes") else {
        return;
    };
    for n in nodes.value.entries() {
        let nh = n.value.get("host").and_then(|h| h.value.as_str());
        let np = n
            .value
            .get("port")
            .and_then(|e| e.value.as_int())
            .unwrap_or(5432);
        if nh == Some(host) && np == port {
            errors.push(
                ConfigError::new(
                    "pooler_address",
                    format!(
                        "pooler `{name}` and node `{}` both use {host}:{port}",
                        n.key
                    ),
                )
                .label(p.get("host").map_or(n.span(), Entry::span), "this address")
                .help("give the pooler its own port (pgbouncer's listen_port)"),
            );
        }
    }
}

fn hook(place: &str, h: &Node, errors: &mut Vec<ConfigError>) {
    let Some(cmd) = h.get("command") else {
        return;
    };
    let argv = cmd.value.items();
    let empty_program = argv
        .first()
        .map(|a| a.as_str().unwrap_or("").trim().is_empty());
    if empty_program.unwrap_or(true) {
        errors.push(
            ConfigError::new("hook_command", format!("`{place}.command` names no program"))
                .label(cmd.value.span, "empty")
                .help("write the program and its arguments as a list: `[/usr/local/bin/notify, --cluster, main]`"),
        );
    }
}
