//! pgbouncer, the one place pgtopo talks to it: the admin console (`SHOW DATABASES`, `PAUSE`,
//! `RESUME`, `RELOAD` over the simple query protocol, the only one the console speaks) and the
//! `[databases]` section of its ini file, rewritten as text so that every other line, comment and
//! setting stays as the operator wrote it.
//!
//! Architecture invariant: observation of a pooler never fails as a whole (an unreachable pooler
//! is a value, like a node); the rewrite of the ini file is pure.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio_postgres::SimpleQueryMessage;

use crate::config::{Desired, DesiredPooler};

/// What a pooler's admin console showed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedPooler {
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_reason: Option<String>,
    /// The declared databases as `SHOW DATABASES` lists them (missing: not configured).
    #[serde(default)]
    pub databases: BTreeMap<String, PoolerRoute>,
}

/// Where one pooler database sends its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PoolerRoute {
    pub host: String,
    pub port: u16,
    pub paused: bool,
}

impl ObservedPooler {
    /// The declared node at a route's address, if any.
    pub fn node_at<'a>(d: &'a Desired, r: &PoolerRoute) -> Option<&'a str> {
        d.present()
            .find(|n| n.host == r.host && n.port == r.port)
            .map(|n| n.name.as_str())
    }
}

/// An error of the admin console, with the pooler's name and address.
pub fn admin_error(p: &DesiredPooler, what: &str, e: &tokio_postgres::Error) -> String {
    format!(
        "pooler {} ({}:{}): {what} failed: {}",
        p.name,
        p.host,
        p.port,
        crate::pg::describe(e)
    )
}

/// A connection to the pooler's admin console, opened by [`crate::pg::open`] (the keepalives and
/// `tcp_user_timeout` of every pgtopo connection) without TLS: pgtopo's pooler entries declare
/// none, and the console is reached on the pooler's own listen address.
pub async fn connect(
    p: &DesiredPooler,
    timeout: Duration,
) -> Result<tokio_postgres::Client, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&p.host)
        .port(p.port)
        .user(&p.admin_user)
        .dbname("pgbouncer")
        .connect_timeout(timeout);
    if let Some(r) = &p.admin_password {
        let s = r.resolve().map_err(|e| format!("pooler {}: {e}", p.name))?;
        cfg.password(s.expose());
    }
    let tls = crate::pg::tls::TlsSettings::disabled();
    match tokio::time::timeout(timeout, crate::pg::open(&mut cfg, &tls)).await {
        Err(_) => Err(format!(
            "pooler {} ({}:{}): no answer within {timeout:?}",
            p.name, p.host, p.port
        )),
        Ok(Err(crate::pg::OpenError::Pg(e))) => {
            Err(admin_error(p, "connecting to the admin console", &e))
        }
        Ok(Err(e)) => Err(format!("pooler {}: {e}", p.name)),
        Ok(Ok(client)) => Ok(client),
    }
}

/// `SHOW DATABASES`, the declared databases only.
pub async fn show_databases(
    p: &DesiredPooler,
    c: &tokio_postgres::Client,
) -> Result<BTreeMap<String, PoolerRoute>, String> {
    let msgs = c
        .simple_query("SHOW DATABASES")
        .await
        .map_err(|e| admin_error(p, "SHOW DATABASES", &e))?;
    let mut out = BTreeMap::new();
    for m in msgs {
        let SimpleQueryMessage::Row(r) = m else {
            continue;
        };
        let Some(name) = r.try_get("name").ok().flatten() else {
            continue;
        };
        if !p.databases.iter().any(|d| d == name) {
            continue;
        }
        let field = |k: &str| r.try_get(k).ok().flatten().unwrap_or_default().to_string();
        out.insert(
            name.to_string(),
            PoolerRoute {
                host: field("host"),
                port: field("port").parse().unwrap_or(0),
                paused: field("paused") == "1",
            },
        );
    }
    Ok(out)
}

/// One admin command (`PAUSE app`, `RESUME app`, `RELOAD`).
pub async fn command(
    p: &DesiredPooler,
    c: &tokio_postgres::Client,
    cmd: &str,
) -> Result<(), String> {
    c.simple_query(cmd)
        .await
        .map(|_| ())
        .map_err(|e| admin_error(p, cmd, &e))
}

/// Every declared pooler, observed concurrently; never fails.
pub async fn observe_all(d: &Desired, timeout: Duration) -> BTreeMap<String, ObservedPooler> {
    let obs = d.poolers.values().map(|p| async move {
        let o = match connect(p, timeout).await {
            Ok(c) => match show_databases(p, &c).await {
                Ok(databases) => ObservedPooler {
                    reachable: true,
                    unreachable_reason: None,
                    databases,
                },
                Err(e) => unreachable(e),
            },
            Err(e) => unreachable(e),
        };
        (p.name.clone(), o)
    });
    futures::future::join_all(obs).await.into_iter().collect()
}

fn unreachable(why: String) -> ObservedPooler {
    ObservedPooler {
        reachable: false,
        unreachable_reason: Some(why),
        databases: BTreeMap::new(),
    }
}

/// The ini text with the `[databases]` entries named in `dbs` sent to `host:port` (every other
/// byte unchanged). Returns the new text and the databases it did not find.
pub fn route_ini(ini: &str, dbs: &[String], host: &str, port: u16) -> (String, Vec<String>) {
    let mut out = String::with_capacity(ini.len() + 64);
    let mut section = String::new();
    let mut found: Vec<&str> = Vec::new();
    for line in ini.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') {
            section = t[1..t.len() - 1].trim().to_ascii_lowercase();
        }
        let entry = (section == "databases")
            .then(|| t.split_once('='))
            .flatten()
            .map(|(k, v)| (k.trim().trim_matches('"'), v));
        match entry {
            Some((name, value)) if !t.starts_with(';') && !t.starts_with('#') => {
                match dbs.iter().find(|d| *d == name) {
                    Some(d) => {
                        found.push(d);
                        let nl = if line.ends_with('\n') { "\n" } else { "" };
                        out.push_str(&format!("{name} = {}{nl}", with_address(value, host, port)));
                    }
                    None => out.push_str(line),
                }
            }
            _ => out.push_str(line),
        }
    }
    let missing = dbs
        .iter()
        .filter(|d| !found.contains(&d.as_str()))
        .cloned()
        .collect();
    (out, missing)
}

/// A libpq-style `key=value …` string with `host` and `port` replaced (added when absent).
fn with_address(conn: &str, host: &str, port: u16) -> String {
    let mut parts: Vec<String> = conn_tokens(conn)
        .into_iter()
        .filter(|t| !t.starts_with("host=") && !t.starts_with("port="))
        .collect();
    parts.insert(0, format!("port={port}"));
    parts.insert(0, format!("host={host}"));
    parts.join(" ")
}

/// `key=value` tokens, a single-quoted value kept whole.
fn conn_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for ch in s.trim().chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                cur.push(ch);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_rewrites_only_the_named_entries() {
        let ini = "[databases]\n; app = host=x\napp = host=127.0.0.1 port=5432 dbname=app password='a b'\nother = host=h port=1\n\n[pgbouncer]\nlisten_port = 6432\n";
        let (out, missing) = route_ini(ini, &["app".into(), "gone".into()], "127.0.0.2", 26001);
        assert_eq!(
            out,
            "[databases]\n; app = host=x\napp = host=127.0.0.2 port=26001 dbname=app password='a b'\nother = host=h port=1\n\n[pgbouncer]\nlisten_port = 6432\n"
        );
        assert_eq!(missing, vec!["gone".to_string()]);
        // Idempotent.
        let (again, _) = route_ini(&out, &["app".into()], "127.0.0.2", 26001);
        assert_eq!(again, out);
    }

    #[test]
    fn an_entry_without_address_gets_one() {
        let (out, missing) = route_ini("[databases]\napp = dbname=app", &["app".into()], "h", 1);
        assert_eq!(out, "[databases]\napp = host=h port=1 dbname=app");
        assert!(missing.is_empty());
    }
}
