//! Parsing of the few text formats observation reads: libpq connection strings
//! (`primary_conninfo`), PostgreSQL configuration files (`postgresql.auto.conf` of a stopped
//! node) and pg_hba's managed block. Passwords are dropped while parsing and never kept.

use super::model::ConninfoSummary;

/// The first line of pgtopo's managed block in pg_hba.conf.
pub const HBA_BEGIN: &str = "# BEGIN pgtopo managed";
/// The last line of pgtopo's managed block in pg_hba.conf.
pub const HBA_END: &str = "# END pgtopo managed";

/// The lines between the managed block markers (markers excluded); None without a block.
pub fn managed_block(hba: &str) -> Option<Vec<String>> {
    let mut lines = hba.lines();
    lines.by_ref().find(|l| l.trim_end() == HBA_BEGIN)?;
    let mut block = Vec::new();
    for l in lines {
        if l.trim_end() == HBA_END {
            return Some(block);
        }
        block.push(l.to_string());
    }
    // A begin marker without an end marker: treat the rest as the block, as a writer would.
    Some(block)
}

/// The managed block as it stands in pg_hba.conf: the markers around `block`'s lines.
pub fn managed_text(block: &[String]) -> String {
    let mut s = String::with_capacity(64 + block.iter().map(|l| l.len() + 1).sum::<usize>());
    s.push_str(HBA_BEGIN);
    s.push('\n');
    for l in block {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str(HBA_END);
    s.push('\n');
    s
}

/// A pg_hba.conf line that is a rule (neither blank nor a comment).
pub fn is_hba_rule(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The 1-based line where the managed block starts (its begin marker, when an end marker
/// follows), or where it would be inserted: before the first rule, else after the last line.
pub fn managed_block_line(hba: &str) -> u32 {
    let lines: Vec<&str> = hba.lines().collect();
    let begin = lines.iter().position(|l| l.trim_end() == HBA_BEGIN);
    let ended = begin.is_some_and(|b| lines[b..].iter().any(|l| l.trim_end() == HBA_END));
    let at = match begin.filter(|_| ended) {
        Some(b) => b,
        None => lines
            .iter()
            .position(|l| is_hba_rule(l))
            .unwrap_or(lines.len()),
    };
    at as u32 + 1
}

/// Parse a libpq connection string (`key=value …` or a `postgresql://` URI) into its
/// password-free summary. Unknown keys are ignored; the password is never kept.
pub fn parse_conninfo(s: &str) -> ConninfoSummary {
    let s = s.trim();
    if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        return parse_uri(s);
    }
    let mut out = ConninfoSummary::default();
    for (k, v) in conninfo_pairs(s) {
        match k.as_str() {
            "host" | "hostaddr" if out.host.is_none() || k == "host" => {
                out.host = Some(first_of_list(&v))
            }
            "port" => out.port = first_of_list(&v).parse().ok(),
            "user" => out.user = Some(v),
            "application_name" => out.application_name = Some(v),
            "dbname" => out.dbname = Some(v),
            k => tls_keyword(&mut out, k, v),
        }
    }
    out
}

/// Keep a TLS keyword (sslmode, sslrootcert, sslcert, sslkey); ignore any other.
fn tls_keyword(out: &mut ConninfoSummary, k: &str, v: String) {
    match k {
        "sslmode" => out.sslmode = Some(v),
        "sslrootcert" => out.sslrootcert = Some(v),
        "sslcert" => out.sslcert = Some(v),
        "sslkey" => out.sslkey = Some(v),
        _ => {}
    }
}

fn first_of_list(v: &str) -> String {
    v.split(',').next().unwrap_or("").trim().to_string()
}

/// `key = value` pairs of a keyword/value connection string (values may be single-quoted with
/// `\'` and `\\` escapes).
fn conninfo_pairs(s: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            break;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n)
                        }
                    }
                    '\'' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        val.push(n);
                    }
                } else {
                    val.push(c);
                }
            }
        }
        pairs.push((key, val));
    }
    pairs
}

fn parse_uri(s: &str) -> ConninfoSummary {
    let mut out = ConninfoSummary::default();
    let rest = s.split_once("://").map(|x| x.1).unwrap_or("");
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = authority.split('/').next().unwrap_or("");
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hp)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if !user.is_empty() {
                out.user = Some(percent_decode(user));
            }
            hp
        }
        None => authority,
    };
    let first = hostport.split(',').next().unwrap_or("");
    let (host, port) = if let Some(rest) = first.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h.to_string(), p.strip_prefix(':').map(str::to_string)),
            None => (rest.to_string(), None),
        }
    } else {
        match first.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.to_string())),
            None => (first.to_string(), None),
        }
    };
    if !host.is_empty() {
        out.host = Some(percent_decode(&host));
    }
    out.port = port.and_then(|p| p.parse().ok());
    for kv in query.unwrap_or("").split('&') {
        if let Some((k, v)) = kv.split_once('=') {
            let v = percent_decode(v);
            match k {
                "host" => out.host = Some(v),
                "port" => out.port = v.parse().ok(),
                "user" => out.user = Some(v),
                "application_name" => out.application_name = Some(v),
                k => tls_keyword(&mut out, k, v),
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The settings of a PostgreSQL configuration file (`name = value`, `name value`, `#` comments,
/// single-quoted values with `''` or `\'`), later lines winning. Include directives are ignored.
pub fn parse_config_file(text: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(line.len());
        let name = line[..name_end].to_ascii_lowercase();
        let mut rest = line[name_end..].trim_start();
        if let Some(r) = rest.strip_prefix('=') {
            rest = r.trim_start();
        }
        let value = if let Some(r) = rest.strip_prefix('\'') {
            let mut v = String::new();
            let mut it = r.chars().peekable();
            while let Some(c) = it.next() {
                match c {
                    '\'' if it.peek() == Some(&'\'') => {
                        it.next();
                        v.push('\'');
                    }
                    '\'' => break,
                    '\\' => {
                        if let Some(n) = it.next() {
                            v.push(n);
                        }
                    }
                    c => v.push(c),
                }
            }
            v
        } else {
            rest.split(|c: char| c.is_whitespace() || c == '#')
                .next()
                .unwrap_or("")
                .to_string()
        };
        if !name.is_empty() && !name.starts_with("include") {
            out.insert(name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_keeps_no_password() {
        let c = parse_conninfo(
            "user=replicator password='se cr\\'et' host=127.0.0.1 port=5433 \
             application_name=n2 sslmode=prefer",
        );
        assert_eq!(c.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(c.port, Some(5433));
        assert_eq!(c.user.as_deref(), Some("replicator"));
        assert_eq!(c.application_name.as_deref(), Some("n2"));
        assert_eq!(c.sslmode.as_deref(), Some("prefer"));
        assert!(!format!("{c:?}").contains("cr"));
        let c = parse_conninfo("host=a sslmode=verify-full sslrootcert='/t ls/ca.crt' sslkey=/k");
        assert_eq!(c.sslrootcert.as_deref(), Some("/t ls/ca.crt"));
        assert_eq!((c.sslcert, c.sslkey.as_deref()), (None, Some("/k")));
    }

    #[test]
    fn conninfo_uri() {
        let c = parse_conninfo("postgresql://rep:pw@db1:5444/postgres?application_name=n3");
        assert_eq!(c.host.as_deref(), Some("db1"));
        assert_eq!(c.port, Some(5444));
        assert_eq!(c.user.as_deref(), Some("rep"));
        assert_eq!(c.application_name.as_deref(), Some("n3"));
        assert!(!format!("{c:?}").contains("pw"));
        let c = parse_conninfo("postgresql://[::1]:5432");
        assert_eq!((c.host.as_deref(), c.port), (Some("::1"), Some(5432)));
    }

    #[test]
    fn config_files() {
        let m = parse_config_file(
            "# Do not edit\nprimary_conninfo = 'host=a port=1 password=''x'''\n\
             primary_slot_name = 'n2'\nport 5433 # comment\nport = 5434\n",
        );
        assert_eq!(m["primary_conninfo"], "host=a port=1 password='x'");
        assert_eq!(m["primary_slot_name"], "n2");
        assert_eq!(m["port"], "5434");
    }

    #[test]
    fn managed_blocks() {
        let f = "local all all trust\n# BEGIN pgtopo managed\nhost replication r 1/32 md5\n\
                 # END pgtopo managed\nhost all all 0/0 reject\n";
        assert_eq!(
            managed_block(f).unwrap(),
            vec!["host replication r 1/32 md5".to_string()]
        );
        assert_eq!(managed_block("local all all trust\n"), None);
        assert_eq!(managed_block_line(f), 2);
        assert_eq!(managed_block_line("# c\n\nlocal all all trust\n"), 3);
        // A begin marker without an end is not a block: the writer inserts one before the
        // first rule.
        assert_eq!(
            managed_block_line("# BEGIN pgtopo managed\nlocal all all trust\n"),
            2
        );
        assert_eq!(managed_block_line(""), 1);
    }
}
