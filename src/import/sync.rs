//! Reading `synchronous_standby_names` back into the topology's `replication.synchronous`.

use crate::config::{SyncMode, SyncSpec};

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
