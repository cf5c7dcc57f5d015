//! Reading `synchronous_standby_names` back into the topology's `replication.synchronous`: the
//! one parser of the value (import reads the set from it, diff compares sets with it, the plan's
//! picture names the members with it), and the one comparison of two sets ([`same_set`]).
//! Unquoted names are lower-cased, as PostgreSQL folds them.

use crate::config::{SyncMode, SyncSpec};

/// Whether two synchronous_standby_names values ask for the same set: the same method, count and
/// names (in order for `FIRST`, in any order for `ANY`). A value the parser cannot read is
/// compared as text.
pub fn same_set(a: &str, b: &str) -> bool {
    match (parse_sync_names(a), parse_sync_names(b)) {
        (Ok(x), Ok(y)) => normal(x) == normal(y),
        _ => a.trim() == b.trim(),
    }
}

fn normal(s: Option<SyncSpec>) -> Option<SyncSpec> {
    s.map(|mut s| {
        if s.mode == SyncMode::Quorum {
            s.standbys.sort();
        }
        s
    })
}

/// The member names of a value, lower-cased unless quoted (empty when it cannot be read).
pub fn members(value: &str) -> Vec<String> {
    match parse_sync_names(value) {
        Ok(Some(s)) => s.standbys,
        _ => Vec::new(),
    }
}

/// Parse `ANY n (a, b)`, `FIRST n (a, b)`, `n (a, b)` and the bare list `a, b` (PostgreSQL's
/// `FIRST 1`). Names may be double-quoted. `None` for an empty value; `Err` for what the
/// topology cannot express (`*`, a malformed value).
pub fn parse_sync_names(value: &str) -> Result<Option<SyncSpec>, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let (mode, count, list) = match v.find('(') {
        Some(open) => {
            let close = v
                .rfind(')')
                .filter(|c| *c > open && v[c + 1..].trim().is_empty())
                .ok_or_else(|| format!("unbalanced parentheses in `{v}`"))?;
            let head: Vec<&str> = v[..open].split_whitespace().collect();
            let (mode, count) = match head.as_slice() {
                [kw, n] if kw.eq_ignore_ascii_case("any") => (SyncMode::Quorum, *n),
                [kw, n] if kw.eq_ignore_ascii_case("first") => (SyncMode::Priority, *n),
                [n] => (SyncMode::Priority, *n),
                _ => return Err(format!("cannot read `{v}`")),
            };
            let count: u32 = count
                .parse()
                .map_err(|_| format!("`{count}` is not a count in `{v}`"))?;
            (mode, count, &v[open + 1..close])
        }
        None => (SyncMode::Priority, 1, v),
    };
    let mut standbys = Vec::new();
    for item in list.split(',') {
        let name = item.trim();
        let name = name
            .strip_prefix('"')
            .and_then(|n| n.strip_suffix('"'))
            .map(|n| n.replace("\"\"", "\""))
            .unwrap_or_else(|| name.to_ascii_lowercase());
        if name == "*" {
            return Err(format!(
                "`{v}` names `*` (any standby): the topology lists its synchronous standbys by name"
            ));
        }
        if name.is_empty() {
            return Err(format!("an empty name in `{v}`"));
        }
        standbys.push(name);
    }
    Ok(Some(SyncSpec {
        mode,
        count,
        standbys,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: &str, want: Option<(SyncMode, u32, &[&str])>) {
        let got = parse_sync_names(v).unwrap();
        let want = want.map(|(mode, count, s)| SyncSpec {
            mode,
            count,
            standbys: s.iter().map(|x| x.to_string()).collect(),
        });
        assert_eq!(got, want, "{v}");
    }

    #[test]
    fn one_set_in_two_spellings() {
        assert!(same_set(r#"ANY 1 ("n2", "n3")"#, "any 1 (N3, n2)"));
        assert!(same_set(" FIRST 1 (n2) ", r#"FIRST 1 ("n2")"#));
        assert!(same_set("n2", "FIRST 1 (n2)"));
        assert!(!same_set("FIRST 1 (n2, n3)", "FIRST 1 (n3, n2)"));
        assert!(!same_set("ANY 1 (n2)", "FIRST 1 (n2)"));
        assert!(!same_set("", "n2"));
        assert!(same_set("", "  "));
        assert_eq!(members(r#"ANY 1 ("N2", N3)"#), vec!["N2", "n3"]);
    }

    #[test]
    fn forms() {
        check("", None);
        check(
            r#"ANY 1 ("n2", "n3")"#,
            Some((SyncMode::Quorum, 1, &["n2", "n3"])),
        );
        check(
            "first 2 (n2,n3,n4)",
            Some((SyncMode::Priority, 2, &["n2", "n3", "n4"])),
        );
        check("1 (n2, n3)", Some((SyncMode::Priority, 1, &["n2", "n3"])));
        check("N2, n3", Some((SyncMode::Priority, 1, &["n2", "n3"])));
        assert!(parse_sync_names("ANY 1 (*)").is_err());
        assert!(parse_sync_names("ANY x (a)").is_err());
        assert!(parse_sync_names("ANY 1 (a").is_err());
    }
}
