//! Semantic rules of the TLS keys (`connect.ssl*`, `replication.tls`, `nodes.<name>.tls`),
//! checked on the span tree like the other rules of [`super::rules`]:
//!
//! - verify-ca and verify-full need `sslrootcert` (pgtopo does not fall back on libpq's
//!   `~/.postgresql/root.crt`: the file that is trusted is written in the topology);
//! - a client certificate comes with its key and the other way round;
//! - `replication.tls` is at least `require` (without TLS, leave `tls` out);
//! - `nodes.<name>.tls` overrides paths of `replication.tls`, which must then exist;
//! - `replication.hba_method: cert` needs `replication.tls` and a client certificate and key for
//!   every node (the cluster's or the node's own).
//!
//! File modes are checked where the files are read: pgtopo's own key when it connects
//! ([`crate::pg::tls`]), a standby's by its WAL receiver.

use super::diag::ConfigError;
use super::yaml::{Entry, Node};

/// Run the TLS rules on the document root.
pub fn check(root: &Node, errors: &mut Vec<ConfigError>) {
    if let Some(c) = root.get("connect") {
        verify_needs_root(&c.value, "connect", "prefer", errors);
        pair(&c.value, "connect", errors);
    }
    let repl = root.get("replication");
    let tls = repl.and_then(|r| r.value.get("tls"));
    if let Some(t) = tls {
        verify_needs_root(&t.value, "replication.tls", "verify-full", errors);
        pair(&t.value, "replication.tls", errors);
        at_least_require(t, errors);
    }
    let nodes = root
        .get("nodes")
        .map(|n| n.value.entries())
        .unwrap_or_default();
    for n in nodes {
        if let Some(nt) = n.value.get("tls") {
            node_tls(n, nt, tls, errors);
        }
    }
    let cert = repl
        .and_then(|r| r.value.get("hba_method"))
        .filter(|m| m.value.as_str().and_then(|s| s.split_whitespace().next()) == Some("cert"));
    if let Some(m) = cert {
        cert_method(m, tls, nodes, errors);
    }
}

fn has(node: &Node, key: &str) -> bool {
    node.get(key).is_some_and(|e| !e.value.is_null())
}

fn verify_needs_root(node: &Node, place: &str, default: &str, errors: &mut Vec<ConfigError>) {
    let mode = node.get("sslmode");
    let value = mode.and_then(|m| m.value.as_str()).unwrap_or(default);
    if !value.starts_with("verify-") || has(node, "sslrootcert") {
        return;
    }
    let mut err = ConfigError::new(
        "tls_root",
        format!("`{place}` checks the server certificate ({value}) but names no `sslrootcert`"),
    );
    if let Some(m) = mode {
        err = err.label(m.value.span, "checks the certificate against a CA");
    } else {
        err = err.label(node.span, format!("sslmode defaults to {value} here"));
    }
    errors.push(err.help(format!(
        "add `sslrootcert: {{file: /path/to/root.crt}}` to `{place}` (the CA that signs the \
         servers' certificates), or use `sslmode: require` to encrypt without checking"
    )));
}

fn pair(node: &Node, place: &str, errors: &mut Vec<ConfigError>) {
    for (have, missing) in [("sslcert", "sslkey"), ("sslkey", "sslcert")] {
        if let Some(e) = node.get(have).filter(|_| !has(node, missing)) {
            errors.push(
                ConfigError::new(
                    "tls_pair",
                    format!("`{place}.{have}` is set but `{place}.{missing}` is not"),
                )
                .label(e.span(), format!("needs its {missing}"))
                .help("a client certificate is used with its private key: set both or neither"),
            );
        }
    }
}

fn at_least_require(tls: &Entry, errors: &mut Vec<ConfigError>) {
    let Some(m) = tls.value.get("sslmode") else {
        return;
    };
    if let Some(v @ ("disable" | "prefer")) = m.value.as_str() {
        errors.push(
            ConfigError::new(
                "tls_mode",
                format!("`replication.tls.sslmode` cannot be `{v}`"),
            )
            .label(m.value.span, "replication would fall back on plain text")
            .help(
                "use require, verify-ca or verify-full; remove `replication.tls` for replication \
                 without TLS",
            ),
        );
    }
}

fn node_tls(n: &Entry, nt: &Entry, tls: Option<&Entry>, errors: &mut Vec<ConfigError>) {
    let place = format!("nodes.{}.tls", n.key);
    match tls {
        None => errors.push(
            ConfigError::new(
                "tls_node",
                format!("`{place}` is set but `replication.tls` is not"),
            )
            .label(nt.key_span, "overrides paths of replication.tls")
            .help("declare `replication.tls` (sslmode and the cluster's paths) first"),
        ),
        Some(t) => {
            // The node's pair is judged with the cluster's files filling in.
            let own = |k: &str| has(&nt.value, k) || has(&t.value, k);
            if own("sslcert") != own("sslkey") {
                errors.push(
                    ConfigError::new(
                        "tls_pair",
                        format!(
                            "`{place}` leaves node {} a certificate without a key",
                            n.key
                        ),
                    )
                    .label(nt.span(), "here")
                    .help("set both `sslcert` and `sslkey`, here or in `replication.tls`"),
                );
            }
        }
    }
}

fn cert_method(m: &Entry, tls: Option<&Entry>, nodes: &[Entry], errors: &mut Vec<ConfigError>) {
    let Some(t) = tls else {
        errors.push(
            ConfigError::new(
                "tls_cert",
                "`replication.hba_method: cert` needs `replication.tls`",
            )
            .label(m.value.span, "authenticates by client certificate")
            .help("add `replication.tls` with sslrootcert, sslcert and sslkey"),
        );
        return;
    };
    let lacking: Vec<&str> = nodes
        .iter()
        .filter(|n| {
            let own = n.value.get("tls");
            let has_cert = |k: &str| has(&t.value, k) || own.is_some_and(|o| has(&o.value, k));
            !(has_cert("sslcert") && has_cert("sslkey"))
        })
        .map(|n| n.key.as_str())
        .collect();
    if !lacking.is_empty() {
        errors.push(
            ConfigError::new(
                "tls_cert",
                format!(
                    "`replication.hba_method: cert` but no client certificate for {}",
                    lacking.join(", ")
                ),
            )
            .label(m.value.span, "authenticates by client certificate")
            .help(
                "set `replication.tls.sslcert` and `sslkey` (or per node under `nodes.<name>.tls`)",
            ),
        );
    }
}
