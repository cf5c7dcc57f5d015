//! `pgtopo watch`'s pages: the overview (`/`, one row per cluster) and one cluster's detail
//! (`/cluster/NAME`). Plain HTML with inline CSS, no JavaScript; every value is escaped. A
//! cluster's row (class `wrong`) is red when it could not be read, a node is down or it
//! drifted. Layout only: the values are the last round's observation and drift report.

use std::fmt::Write as _;

use crate::fleet::{Drifted, Member, Observation};
use crate::observe::Role;
use crate::units::ByteSize;

/// Which round the page shows.
#[derive(Debug, Clone)]
pub struct RoundInfo {
    pub number: u64,
    pub finished: String,
}

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment percent-encoded (for the cluster links).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;width:100%}\
th,td{border:1px solid #ccc;padding:.35em .6em;text-align:left;vertical-align:top}\
th{background:#eee}tr.fine td{background:#eef8ee}tr.wrong td{background:#fbdada}\
.bad{color:#b00000;font-weight:bold}.ok{color:#1a6b1a}\
ul{margin:0;padding-left:1.1em}pre{background:#f6f6f6;padding:.8em;overflow:auto}\
small{color:#666}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    )
}

fn round_line(r: &RoundInfo) -> String {
    format!(
        "<p><small>Round {} finished {} · read-only · <a href=\"/metrics\">/metrics</a></small></p>\n",
        r.number,
        escape(&r.finished)
    )
}

/// Before the first round finished.
pub fn waiting() -> String {
    page(
        "pgtopo watch",
        "<h1>pgtopo watch</h1>\n<p>The first round of observation has not finished yet.</p>\n",
    )
}

/// `/cluster/NAME` for a name no cluster has.
pub fn no_cluster(name: &str) -> String {
    page(
        "pgtopo watch",
        &format!(
            "<h1>No cluster named {}</h1>\n<p><a href=\"/\">All clusters</a></p>\n",
            escape(name)
        ),
    )
}

/// Something is wrong with the cluster: unreadable, a node down, or drifted.
fn wrong(m: &Member<Drifted>) -> bool {
    match &m.read {
        Err(_) => true,
        Ok(d) => !d.report.items.is_empty() || down(&d.observation) > 0,
    }
}

fn down(o: &Observation) -> usize {
    o.desired
        .present()
        .filter(|n| !o.observed.nodes.get(&n.name).is_some_and(|x| x.reachable))
        .count()
}

/// One node's cell line: name, role as observed, lag behind its upstream.
fn node_line(o: &Observation, name: &str) -> String {
    let Some(n) = o.observed.nodes.get(name) else {
        return format!("{} <span class=\"bad\">not observed</span>", escape(name));
    };
    if !n.reachable {
        return format!("{} <span class=\"bad\">down</span>", escape(name));
    }
    let role = match n.role {
        Some(Role::Primary) => "primary",
        Some(Role::Standby) => "standby",
        None => "unknown",
    };
    let lag = super::metrics::upstream_of(o, n)
        .and_then(|up| super::metrics::replica_on(up, name))
        .map(|r| {
            let bytes = r
                .lag_bytes
                .map(ByteSize::human)
                .unwrap_or_else(|| "?".into());
            match r.replay_lag_ms {
                Some(ms) => format!(", lag {bytes} / {:.1}s", ms as f64 / 1000.0),
                None => format!(", lag {bytes}"),
            }
        })
        .unwrap_or_default();
    format!("{} {role}{}", escape(name), escape(&lag))
}

fn findings_list(d: &Drifted) -> String {
    if d.report.items.is_empty() {
        return "<span class=\"ok\">no drift</span>".into();
    }
    let mut s = String::from("<ul>");
    for i in &d.report.items {
        let _ = write!(
            s,
            "<li><span class=\"bad\">{}</span> {}: {}</li>",
            escape(super::drift::label(i.kind)),
            escape(&i.node),
            escape(&i.detail)
        );
    }
    s.push_str("</ul>");
    s
}

fn row(m: &Member<Drifted>) -> String {
    let class = if wrong(m) { "wrong" } else { "fine" };
    let link = format!(
        "<a href=\"/cluster/{}\">{}</a>",
        escape(&path_segment(&m.name)),
        escape(&m.name)
    );
    let (nodes, findings) = match &m.read {
        Err(e) => (
            String::new(),
            format!(
                "<span class=\"bad\">could not be read: {}</span>",
                escape(&e.to_string())
            ),
        ),
        Ok(d) => {
            let o = &d.observation;
            let lines: Vec<String> = o
                .desired
                .present()
                .map(|n| format!("<li>{}</li>", node_line(o, &n.name)))
                .collect();
            (format!("<ul>{}</ul>", lines.concat()), findings_list(d))
        }
    };
    format!("<tr class=\"{class}\"><td>{link}</td><td>{nodes}</td><td>{findings}</td></tr>\n")
}

/// `/`: one row per cluster.
pub fn index(members: &crate::fleet::Fleet<Drifted>, r: &RoundInfo) -> String {
    let wrong_n = members.members.iter().filter(|m| wrong(m)).count();
    let summary = match wrong_n {
        0 => format!(
            "<p class=\"ok\">All {} clusters match their topology.</p>\n",
            members.members.len()
        ),
        n => format!(
            "<p class=\"bad\">{n} of {} clusters need attention.</p>\n",
            members.members.len()
        ),
    };
    let rows: String = members.members.iter().map(row).collect();
    page(
        "pgtopo watch",
        &format!(
            "<h1>pgtopo watch</h1>\n{}{summary}<table>\n\
             <tr><th>Cluster</th><th>Nodes</th><th>Drift</th></tr>\n{rows}</table>\n",
            round_line(r)
        ),
    )
}

/// `/cluster/NAME`: the cluster's status tree and its findings.
pub fn cluster(m: &Member<Drifted>, r: &RoundInfo) -> String {
    let body = match &m.read {
        Err(e) => format!(
            "<p class=\"bad\">{} could not be read: {}</p>\n",
            escape(&m.file.display().to_string()),
            escape(&e.to_string())
        ),
        Ok(d) => {
            let o = &d.observation;
            format!(
                "<h2>Status</h2>\n<pre>{}</pre>\n<h2>Drift</h2>\n{}\n",
                escape(&super::status::text_with(&o.desired, &o.observed, false)),
                findings_list(d)
            )
        }
    };
    page(
        &format!("pgtopo watch: {}", m.name),
        &format!(
            "<p><a href=\"/\">All clusters</a></p>\n<h1>{}</h1>\n{}{body}",
            escape(&m.name),
            round_line(r)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_encodes_links() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(path_segment("a b/<c>"), "a%20b%2F%3Cc%3E");
    }
}
