//! Plan renderings: text (in the spirit of `terraform plan`), JSON (the plan file), markdown (a
//! pull-request comment under 60 KB, with the mermaid diagram of `render::mermaid`) and
//! Graphviz DOT (steps grouped by node).
//!
//! Renderers read a finished [`Plan`] and compute nothing that changes what is done: the only
//! work here is layout, and the unified diffs of file contents the plan already carries. Colour
//! is a parameter (the CLI passes `OutputOptions::color`), so golden tests render without it.

use crate::diff::address::Address;
use std::fmt::Write as _;

use owo_colors::OwoColorize;

use crate::plan::model::*;

/// The text-rendering's wording when there is nothing to do.
pub const NO_CHANGES: &str = "No changes. The cluster matches topology.yaml.";

/// Markdown comments stay under this size.
pub const MARKDOWN_LIMIT: usize = 60 * 1024;

fn sym(a: ChangeAction) -> &'static str {
    match a {
        ChangeAction::Add => "+",
        ChangeAction::Change => "~",
        ChangeAction::Remove => "-",
    }
}

fn paint(s: &str, a: ChangeAction, color: bool) -> String {
    if !color {
        return s.to_string();
    }
    match a {
        ChangeAction::Add => s.green().to_string(),
        ChangeAction::Change => s.yellow().to_string(),
        ChangeAction::Remove => s.red().to_string(),
    }
}

fn attr_sym(a: &AttributeChange) -> ChangeAction {
    match (&a.before, &a.after) {
        (None, Some(_)) => ChangeAction::Add,
        (Some(_), None) => ChangeAction::Remove,
        _ => ChangeAction::Change,
    }
}

fn q(v: &Option<String>) -> String {
    format!("\"{}\"", v.as_deref().unwrap_or(""))
}

/// The changes, one block or line each (no colour when `color` is false).
pub fn changes_text(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    for c in &plan.changes {
        let s = paint(sym(c.action), c.action, color);
        match &c.address {
            Address::Node(a) => {
                let _ = writeln!(out, "  # {} {}", c.address, c.reason);
                let _ = writeln!(out, "  {s} node \"{a}\" {{");
                let w = c.attributes.iter().map(|x| x.name.len()).max().unwrap_or(0);
                for at in &c.attributes {
                    let k = attr_sym(at);
                    let v = match k {
                        ChangeAction::Add => q(&at.after),
                        ChangeAction::Remove => q(&at.before),
                        ChangeAction::Change => format!("{} -> {}", q(&at.before), q(&at.after)),
                    };
                    let _ = writeln!(
                        out,
                        "      {} {:<w$} = {v}",
                        paint(sym(k), k, color),
                        at.name
                    );
                }
                let _ = writeln!(out, "    }}");
            }
            Address::Slot { holder: a, slot: b } => {
                let _ = writeln!(out, "  {s} slot \"{b}\" on {a}");
            }
            Address::LogicalSlot { node: a, slot: b } => {
                let _ = writeln!(out, "  {s} logical slot \"{b}\" on {a} ({})", c.reason);
            }
            Address::Setting { node: a, name: b } => {
                let _ = writeln!(out, "  # {} {}", c.address, c.reason);
                let at = c.attributes.first();
                let before = at.map(|x| q(&x.before)).unwrap_or_default();
                let after = at.map(|x| q(&x.after)).unwrap_or_default();
                match c.action {
                    ChangeAction::Add => {
                        let _ = writeln!(out, "  {s} setting \"{b}\" on {a} = {after}");
                    }
                    _ => {
                        let _ = writeln!(out, "  {s} setting \"{b}\" on {a} = {before} -> {after}");
                    }
                }
            }
            Address::Hba(a) => {
                let _ = writeln!(out, "  # {} {}", c.address, c.reason);
                let at = c.attributes.first();
                let _ = writeln!(
                    out,
                    "  {s} pg_hba managed block on {a} ({} -> {})",
                    at.and_then(|x| x.before.clone())
                        .unwrap_or_else(|| "none".into()),
                    at.and_then(|x| x.after.clone())
                        .unwrap_or_else(|| "none".into())
                );
            }
            _ => {
                let _ = writeln!(out, "  # {} {}", c.address, c.reason);
                for at in &c.attributes {
                    let _ = writeln!(
                        out,
                        "  {s} {} = {} -> {}",
                        at.name,
                        q(&at.before),
                        q(&at.after)
                    );
                }
            }
        }
    }
    out
}

fn marker(s: &Step) -> Option<&'static str> {
    match &s.action {
        Action::Stop(p) if p.writes_unavailable => Some("← writes unavailable from here"),
        Action::Promote(p) if p.writes_available => Some("← writes available"),
        Action::Restart(_) if s.destructive => Some("← writes unavailable while it restarts"),
        Action::Upgrade(p) if p.phase == crate::plan::UpgradePhase::Run => {
            Some("← the old cluster is kept until the next start")
        }
        _ => None,
    }
}

fn after_text(s: &Step) -> String {
    if s.after.is_empty() {
        String::new()
    } else {
        format!(
            "after {}",
            s.after
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The step table.
pub fn steps_text(plan: &Plan, color: bool) -> String {
    let nw = plan
        .steps
        .iter()
        .map(|s| s.node.chars().count())
        .max()
        .unwrap_or(2);
    let dw = plan
        .steps
        .iter()
        .map(|s| s.description.chars().count())
        .max()
        .unwrap_or(0)
        .min(44);
    let mut out = String::new();
    for s in &plan.steps {
        let after = after_text(s);
        let tail = match (after.is_empty(), marker(s)) {
            (true, None) => String::new(),
            (true, Some(m)) => m.to_string(),
            (false, None) => after,
            (false, Some(m)) => format!("{after}  {m}"),
        };
        let kind = format!("{:<18}", s.action.kind());
        let kind = if color && s.destructive {
            kind.red().to_string()
        } else {
            kind
        };
        let line = format!(
            "  {:>2}  {kind} {:<nw$}  {:<dw$}   {tail}",
            s.id, s.node, s.description
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

fn seconds(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// `Writes unavailable: …` and `Data loss: …` on one line, as in SPEC §3.
pub fn risk_line(plan: &Plan) -> String {
    let fenced = |id: u32| {
        plan.steps
            .get(id as usize - 1)
            .filter(|s| matches!(s.action, crate::plan::Action::Fence(_)))
            .map(|s| s.node.clone())
    };
    let w = match &plan.summary.write_unavailable {
        // A failover: the window opened when the old primary went down, not at a step.
        Some(w) if fenced(w.from_step).is_some() => format!(
            "Writes unavailable: since {} went down, until step {}.",
            fenced(w.from_step).unwrap_or_default(),
            w.to_step
        ),
        Some(w) if w.from_step == w.to_step => format!(
            "Writes unavailable: step {} (estimated < {} s).",
            w.from_step,
            seconds(w.estimated_ms)
        ),
        Some(w) => format!(
            "Writes unavailable: steps {}–{} (estimated < {} s).",
            w.from_step,
            w.to_step,
            seconds(w.estimated_ms)
        ),
        None => "Writes unavailable: never.".to_string(),
    };
    let d = match &plan.summary.data_loss {
        DataLoss::None { reason } => format!("Data loss: none ({reason})."),
        DataLoss::Possible {
            bytes: Some(0),
            reason,
        } => {
            format!("Data loss: possible, only writes made after the last observation ({reason}).")
        }
        DataLoss::Possible {
            bytes: Some(b),
            reason,
        } => format!(
            "Data loss: possible, up to {} ({reason}).",
            crate::units::ByteSize::human(*b)
        ),
        DataLoss::Possible {
            bytes: None,
            reason,
        } => {
            format!("Data loss: possible, amount unknown ({reason}).")
        }
    };
    format!("{w} {d}")
}

/// `Plan: N to add, N to change, N to remove. K steps.`
pub fn counts_line(plan: &Plan) -> String {
    let s = &plan.summary;
    format!(
        "Plan: {} to add, {} to change, {} to remove. {} step{}.",
        s.add,
        s.change,
        s.remove,
        s.steps,
        if s.steps == 1 { "" } else { "s" }
    )
}

/// A unified diff of one changed file. When `before` is an excerpt starting at line
/// `first_line`, the hunk headers count lines of the whole file.
pub fn file_diff_text(f: &FileDiff) -> String {
    let d = similar::TextDiff::from_lines(&f.before, &f.after);
    let a = format!("{}:{} (now)", f.node, f.path);
    let b = format!("{}:{} (planned)", f.node, f.path);
    let text = d
        .unified_diff()
        .context_radius(3)
        .header(&a, &b)
        .to_string();
    match f.first_line.map(|l| l.saturating_sub(1)).filter(|o| *o > 0) {
        None => text,
        Some(offset) => text
            .split_inclusive('\n')
            .map(|l| shift_hunk_header(l, offset).unwrap_or_else(|| l.to_string()))
            .collect(),
    }
}

/// `@@ -a,b +c,d @@` with `offset` added to `a` and `c`; None for any other line.
fn shift_hunk_header(line: &str, offset: u32) -> Option<String> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, tail) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let shift = |r: &str| -> Option<String> {
        let (start, count) = match r.split_once(',') {
            Some((s, c)) => (s, Some(c)),
            None => (r, None),
        };
        let start = start.parse::<u32>().ok()? + offset;
        Some(match count {
            Some(c) => format!("{start},{c}"),
            None => start.to_string(),
        })
    };
    Some(format!("@@ -{} +{} @@{tail}", shift(old)?, shift(new)?))
}

fn destructive_steps(plan: &Plan) -> Vec<&Step> {
    plan.steps.iter().filter(|s| s.destructive).collect()
}

/// The text rendering.
pub fn text(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    if is_no_change(plan) {
        let _ = writeln!(out, "{NO_CHANGES}");
        notes_text(plan, &mut out);
        return out;
    }
    let _ = writeln!(out, "pgtopo will perform the following actions:\n");
    let d = destructive_steps(plan);
    if !d.is_empty() {
        let head = "Destructive or disruptive steps:";
        let _ = writeln!(
            out,
            "{}",
            if color {
                head.red().bold().to_string()
            } else {
                head.to_string()
            }
        );
        for s in d {
            let bang = if color {
                "!".red().bold().to_string()
            } else {
                "!".to_string()
            };
            let _ = writeln!(
                out,
                "  {bang} step {} {} on {}: {}",
                s.id,
                s.action.kind(),
                s.node,
                s.description
            );
        }
        out.push('\n');
    }
    out.push_str(&changes_text(plan, color));
    if !plan.steps.is_empty() {
        let _ = writeln!(out, "\nSteps:");
        out.push_str(&steps_text(plan, color));
    }
    if !plan.file_diffs.is_empty() {
        let _ = writeln!(out, "\nFile changes:");
        for f in &plan.file_diffs {
            for l in file_diff_text(f).lines() {
                let l2 = if color && l.starts_with('+') && !l.starts_with("+++") {
                    l.green().to_string()
                } else if color && l.starts_with('-') && !l.starts_with("---") {
                    l.red().to_string()
                } else {
                    l.to_string()
                };
                let _ = writeln!(out, "  {l2}");
            }
        }
    }
    let _ = writeln!(out, "\n{}", counts_line(plan));
    let _ = writeln!(out, "{}", risk_line(plan));
    if !plan.summary.restarts.is_empty() {
        let _ = writeln!(out, "Restarts: {}.", plan.summary.restarts.join(", "));
    }
    notes_text(plan, &mut out);
    out
}

fn notes_text(plan: &Plan, out: &mut String) {
    cannot_fix_text(plan, out);
    if plan.summary.notes.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nNotes:");
    for n in &plan.summary.notes {
        let _ = writeln!(out, "  - {n}");
    }
}

/// The drift this plan cannot fix: after the apply the cluster will still not match.
fn cannot_fix_text(plan: &Plan, out: &mut String) {
    if plan.summary.cannot_fix.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nCannot fix (the cluster will not match topology.yaml after this plan):"
    );
    for c in &plan.summary.cannot_fix {
        let _ = writeln!(out, "  x {}: {} — {}", c.address, c.finding, c.why);
    }
}

/// Nothing to do and nothing left unfixed.
pub fn is_no_change(plan: &Plan) -> bool {
    plan.changes.is_empty() && plan.steps.is_empty() && plan.summary.cannot_fix.is_empty()
}

/// The JSON rendering: the plan file.
pub fn json(plan: &Plan) -> String {
    crate::plan::wire::write(plan)
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Appends while under a byte budget, then counts what it left out.
struct Budget {
    out: String,
    limit: usize,
    dropped: usize,
}

impl Budget {
    fn push(&mut self, s: &str) -> bool {
        if self.dropped > 0 || self.out.len() + s.len() > self.limit {
            self.dropped += 1;
            return false;
        }
        self.out.push_str(s);
        true
    }
}

/// The markdown rendering for a pull-request comment (under [`MARKDOWN_LIMIT`] bytes).
pub fn markdown(plan: &Plan) -> String {
    let mut head = String::new();
    let _ = writeln!(head, "<!-- pgtopo:plan cluster={} -->", plan.cluster);
    let _ = writeln!(head, "### pgtopo plan for `{}`\n", plan.cluster);
    if is_no_change(plan) {
        let _ = writeln!(head, "{NO_CHANGES}");
        return head;
    }
    md_summary(plan, &mut head);
    md_destructive(plan, &mut head);
    if let Some(t) = &plan.topology {
        let _ = writeln!(
            head,
            "#### Topology\n\n```mermaid\n{}```\n",
            super::mermaid::topology(t)
        );
    }
    let tail_reserve = 2048;
    let mut b = Budget {
        out: head,
        limit: MARKDOWN_LIMIT - tail_reserve,
        dropped: 0,
    };
    let dropped_changes = md_changes(plan, &mut b);
    let dropped_steps = md_steps(plan, &mut b);
    let dropped_files = md_file_diffs(plan, &mut b);
    let mut out = b.out;
    md_cannot_fix(plan, &mut out);
    md_notes(plan, &mut out);
    if dropped_changes + dropped_steps + dropped_files > 0 {
        let _ = writeln!(
            out,
            "> Truncated to stay under 60 KB: {dropped_changes} change lines, {dropped_steps} steps and {dropped_files} file diffs are not shown. The full plan: `pgtopo plan --format json` or `pgtopo show PLAN`."
        );
    }
    out
}

/// The counts table and the risk line.
fn md_summary(plan: &Plan, head: &mut String) {
    let s = &plan.summary;
    let _ = writeln!(
        head,
        "| to add | to change | to remove | steps | restarts |"
    );
    let _ = writeln!(head, "|---:|---:|---:|---:|---|");
    let _ = writeln!(
        head,
        "| {} | {} | {} | {} | {} |\n",
        s.add,
        s.change,
        s.remove,
        s.steps,
        if s.restarts.is_empty() {
            "none".to_string()
        } else {
            s.restarts.join(", ")
        }
    );
    let risk = risk_line(plan);
    let (w, d) = risk.split_once(" Data loss:").unwrap_or((&risk, ""));
    let _ = writeln!(
        head,
        "**Writes unavailable:**{}  ",
        w.trim_start_matches("Writes unavailable:")
    );
    let _ = writeln!(head, "**Data loss:**{d}\n");
}

/// The destructive or disruptive steps, listed before anything else can be cut.
fn md_destructive(plan: &Plan, head: &mut String) {
    let dsteps = destructive_steps(plan);
    if dsteps.is_empty() {
        return;
    }
    let _ = writeln!(head, "#### ⚠️ Destructive or disruptive steps\n");
    for st in dsteps {
        let _ = writeln!(
            head,
            "- **!** step {} `{}` on **{}**: {}",
            st.id,
            st.action.kind(),
            st.node,
            md_cell(&st.description)
        );
    }
    head.push('\n');
}

/// The changes as a diff block; returns how many lines did not fit.
fn md_changes(plan: &Plan, b: &mut Budget) -> usize {
    b.push("#### Changes\n\n```diff\n");
    let mut dropped_changes = 0;
    for l in changes_text(plan, false).lines() {
        let l = l.strip_prefix("  ").unwrap_or(l);
        if !b.push(&format!("{l}\n")) {
            dropped_changes += 1;
        }
    }
    b.dropped = 0;
    b.out.push_str("```\n\n");
    dropped_changes
}

/// The steps table; returns how many steps did not fit.
fn md_steps(plan: &Plan, b: &mut Budget) -> usize {
    b.push("#### Steps\n\n| # | step | node | what | after |\n|---:|---|---|---|---|\n");
    let mut shown = 0;
    for st in &plan.steps {
        let row = format!(
            "| {} | `{}` | {} | {}{} | {} |\n",
            st.id,
            st.action.kind(),
            st.node,
            if st.destructive { "**!** " } else { "" },
            md_cell(&st.description),
            st.after
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !b.push(&row) {
            break;
        }
        shown += 1;
    }
    b.dropped = 0;
    b.out.push('\n');
    plan.steps.len() - shown
}

/// One collapsed block per file diff; returns how many did not fit.
fn md_file_diffs(plan: &Plan, b: &mut Budget) -> usize {
    let mut dropped_files = 0;
    for f in &plan.file_diffs {
        let name = f.path.rsplit('/').next().unwrap_or(&f.path);
        let block = format!(
            "<details><summary><code>{name}</code> on {}</summary>\n\n```diff\n{}```\n\n</details>\n\n",
            f.node,
            file_diff_text(f)
        );
        if !b.push(&block) {
            dropped_files += 1;
            b.dropped = 0;
        }
    }
    dropped_files
}

/// What the plan leaves unfixed, always shown (it is in the tail's reserve).
fn md_cannot_fix(plan: &Plan, out: &mut String) {
    if plan.summary.cannot_fix.is_empty() {
        return;
    }
    let mut cf = String::from(
        "#### Cannot fix\n\nThe cluster will not match topology.yaml after this plan:\n\n",
    );
    for c in &plan.summary.cannot_fix {
        let _ = writeln!(
            cf,
            "- `{}`: {} — {}",
            c.address,
            md_cell(&c.finding),
            md_cell(&c.why)
        );
    }
    cf.push('\n');
    out.push_str(&cf);
}

/// The notes, when they fit.
fn md_notes(plan: &Plan, out: &mut String) {
    if plan.summary.notes.is_empty() {
        return;
    }
    let mut notes = String::from("#### Notes\n\n");
    for n in &plan.summary.notes {
        let _ = writeln!(notes, "- {}", md_cell(n));
    }
    notes.push('\n');
    if out.len() + notes.len() < MARKDOWN_LIMIT - 512 {
        out.push_str(&notes);
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT of the step DAG, steps clustered by node.
pub fn dot(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "digraph \"pgtopo plan {}\" {{",
        dot_escape(&plan.cluster)
    );
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(out, "  node [shape=box, fontname=\"monospace\"];");
    let mut nodes: Vec<&str> = plan.steps.iter().map(|s| s.node.as_str()).collect();
    nodes.sort();
    nodes.dedup();
    for n in nodes {
        let _ = writeln!(out, "  subgraph \"cluster_{}\" {{", dot_escape(n));
        let _ = writeln!(out, "    label=\"{}\";", dot_escape(n));
        for s in plan.steps.iter().filter(|s| s.node == n) {
            let style = if s.destructive {
                ", color=red, penwidth=2"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "    s{} [label=\"{} {}\\n{}\"{style}];",
                s.id,
                s.id,
                s.action.kind(),
                dot_escape(&s.description)
            );
        }
        let _ = writeln!(out, "  }}");
    }
    for s in &plan.steps {
        for a in &s.after {
            let _ = writeln!(out, "  s{a} -> s{};", s.id);
        }
    }
    let _ = writeln!(out, "}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{managed_block, managed_block_line, managed_text};
    use crate::steps::write_hba::with_block;

    /// The plan's pg_hba diff for `file` and the desired block, as the planner builds it.
    fn hba_diff(file: &str, block: &[String]) -> (String, String) {
        let f = FileDiff {
            node: "n1".into(),
            path: "/data/n1/pg_hba.conf".into(),
            first_line: Some(managed_block_line(file)),
            before: managed_block(file)
                .map(|b| managed_text(&b))
                .unwrap_or_default(),
            after: managed_text(block),
        };
        (file_diff_text(&f), with_block(file, block))
    }

    fn line_of(text: &str, n: usize) -> &str {
        text.lines().nth(n - 1).unwrap()
    }

    #[test]
    fn hba_hunk_headers_count_lines_of_the_whole_file() {
        let comments: String = (1..=10).map(|i| format!("# comment {i}\n")).collect();
        let block = vec![
            "host replication rep 127.0.0.2/32 scram-sha-256".to_string(),
            "host replication rep 127.0.0.3/32 scram-sha-256".to_string(),
        ];
        // A block at line 11 gains a rule.
        let file = format!(
            "{comments}# BEGIN pgtopo managed\n{}\n# END pgtopo managed\nlocal all all peer\n",
            block[0]
        );
        let (diff, written) = hba_diff(&file, &block);
        assert!(diff.contains("\n@@ -11,3 +11,4 @@\n"), "{diff}");
        assert_eq!(line_of(&file, 11), "# BEGIN pgtopo managed");
        assert_eq!(line_of(&written, 13), block[1]);
        // No block yet: it goes before the first rule, line 11.
        let file = format!("{comments}local all all peer\n");
        let (diff, written) = hba_diff(&file, &block);
        assert!(diff.contains("\n@@ -10,0 +11,4 @@\n"), "{diff}");
        assert_eq!(line_of(&written, 11), "# BEGIN pgtopo managed");
        // A file of comments only: after its last line.
        let (diff, written) = hba_diff(&comments, &block);
        assert!(diff.contains("\n@@ -10,0 +11,4 @@\n"), "{diff}");
        assert_eq!(line_of(&written, 11), "# BEGIN pgtopo managed");
        // The block on line 1 and other diffs: unchanged headers.
        let (diff, _) = hba_diff("", &block);
        assert!(diff.contains("\n@@ -0,0 +1,4 @@\n"), "{diff}");
        assert_eq!(
            shift_hunk_header("@@ -1 +1,2 @@\n", 4).unwrap(),
            "@@ -5 +5,2 @@\n"
        );
        assert_eq!(shift_hunk_header("+host all", 4), None);
    }
}
