//! Drift report renderings: text, JSON and markdown. Layout only.

use std::fmt::Write as _;

use owo_colors::OwoColorize;

use crate::diff::drift::{DriftKind, DriftReport};

/// Wording when nothing drifted.
pub const NO_DRIFT: &str = "No drift. The cluster matches topology.yaml.";

pub fn label(k: DriftKind) -> &'static str {
    match k {
        DriftKind::NodeDown => "node down",
        DriftKind::Role => "role",
        DriftKind::WrongUpstream => "wrong upstream",
        DriftKind::NotStreaming => "not streaming",
        DriftKind::SettingChanged => "setting changed",
        DriftKind::PendingRestart => "pending restart",
        DriftKind::HbaEdited => "pg_hba edited",
        DriftKind::MissingSlot => "missing slot",
        DriftKind::OrphanSlot => "slot",
        DriftKind::SyncSet => "synchronous set",
        DriftKind::RetiredRunning => "retired node running",
        DriftKind::SplitBrain => "split brain",
        DriftKind::Diverged => "diverged",
        DriftKind::ForeignSystem => "another system",
        DriftKind::SlotLost => "slot lost",
        DriftKind::SlotUnreserved => "slot unreserved (warning)",
        DriftKind::MixedMajors => "mixed majors",
        DriftKind::NotReceiving => "not receiving",
        DriftKind::ReplayBlocked => "replay blocked",
        DriftKind::PoolerDown => "pooler down",
        DriftKind::PoolerRoute => "pooler route",
        DriftKind::PoolerPaused => "pooler paused",
        DriftKind::LogicalSlot => "logical slot",
        DriftKind::Archive => "archive",
    }
}

/// Text rendering.
pub fn text(r: &DriftReport, color: bool) -> String {
    let mut out = String::new();
    if r.is_empty() {
        let _ = writeln!(out, "{NO_DRIFT}");
        return out;
    }
    let _ = writeln!(
        out,
        "Drift in cluster {} (observed {}):\n",
        r.cluster, r.observed_at
    );
    let w = r
        .items
        .iter()
        .map(|i| label(i.kind).len())
        .max()
        .unwrap_or(0);
    for i in &r.items {
        let l = format!("{:<w$}", label(i.kind));
        let l = if color { l.yellow().to_string() } else { l };
        let _ = writeln!(out, "  ! {l}  {}", i.detail);
    }
    let n = r.items.len();
    let _ = writeln!(
        out,
        "\n{n} finding{}. `pgtopo plan` shows how to bring the cluster back to topology.yaml.",
        if n == 1 { "" } else { "s" }
    );
    out
}

/// JSON rendering.
pub fn json(r: &DriftReport) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("a drift report serialises");
    s.push('\n');
    s
}

/// Markdown rendering (a CI comment; starts with a marker a job can find again).
pub fn markdown(r: &DriftReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<!-- pgtopo:drift cluster={} -->", r.cluster);
    let _ = writeln!(out, "### pgtopo drift for `{}`\n", r.cluster);
    if r.is_empty() {
        let _ = writeln!(out, "{NO_DRIFT}");
        return out;
    }
    let _ = writeln!(out, "| kind | node | address | detail |\n|---|---|---|---|");
    for i in &r.items {
        let _ = writeln!(
            out,
            "| {} | {} | `{}` | {} |",
            label(i.kind),
            i.node,
            i.address,
            i.detail.replace('|', "\\|")
        );
    }
    out
}
