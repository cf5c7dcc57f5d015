//! Comparing a setting as the topology writes it with the setting as PostgreSQL reports it.
//!
//! The topology may say `128MB` where pg_settings says `16384` in units of `8kB`, `on` where the
//! server says `true`, `1min` where it says `60` seconds. Both sides are normalised to a number in
//! bytes or milliseconds when they carry a PostgreSQL unit, to a boolean when they read like one,
//! and otherwise compared as trimmed text (case-insensitively, quotes removed).

use crate::observe::ObservedSetting;

/// A normalised value.
#[derive(Debug, Clone, PartialEq)]
enum Norm {
    Num(f64),
    Bool(bool),
    Text(String),
}

/// Bytes per memory unit, milliseconds per time unit (PostgreSQL's unit names).
fn unit_factor(unit: &str) -> Option<f64> {
    let u = unit.trim();
    // pg_settings units may carry a multiplier, e.g. "8kB", "16MB".
    let split = u.find(|c: char| !c.is_ascii_digit()).unwrap_or(u.len());
    let (mult, name) = u.split_at(split);
    let mult: f64 = if mult.is_empty() {
        1.0
    } else {
        mult.parse().ok()?
    };
    let f = match name {
        "B" => 1.0,
        "kB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some(mult * f)
}

/// Split `128MB` into (128, Some("MB")); `10` into (10, None).
fn split_number(s: &str) -> Option<(f64, Option<&str>)> {
    let t = s.trim();
    let end = t
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
        .map(|(i, _)| i)
        .unwrap_or(t.len());
    if end == 0 {
        return None;
    }
    let n: f64 = t[..end].parse().ok()?;
    let rest = t[end..].trim();
    Some((n, if rest.is_empty() { None } else { Some(rest) }))
}

fn as_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

fn text(s: &str) -> String {
    s.trim()
        .trim_matches('\'')
        .trim_matches('"')
        .to_ascii_lowercase()
}

/// Normalise `s`; a number without a unit is read in `base_unit` (pg_settings' unit), as the
/// server would read it.
fn normalise(s: &str, base_unit: Option<&str>) -> Norm {
    if let Some((n, unit)) = split_number(s) {
        match unit {
            Some(u) => {
                if let Some(f) = unit_factor(u) {
                    return Norm::Num(n * f);
                }
            }
            None => {
                let f = base_unit.and_then(unit_factor).unwrap_or(1.0);
                return Norm::Num(n * f);
            }
        }
    }
    if let Some(b) = as_bool(s) {
        return Norm::Bool(b);
    }
    Norm::Text(text(s))
}

fn same(a: &Norm, b: &Norm) -> bool {
    match (a, b) {
        (Norm::Num(x), Norm::Num(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
        (Norm::Num(x), Norm::Bool(b)) | (Norm::Bool(b), Norm::Num(x)) => {
            (*x == 1.0 && *b) || (*x == 0.0 && !*b)
        }
        _ => a == b,
    }
}

/// Whether the desired text value equals the observed setting.
pub fn setting_matches(desired: &str, observed: &ObservedSetting) -> bool {
    let unit = observed.unit.as_deref().filter(|u| !u.is_empty());
    let want = normalise(desired, unit);
    if let Some(raw) = &observed.raw {
        if same(&want, &normalise(raw, unit)) {
            return true;
        }
    }
    same(&want, &normalise(&observed.value, unit))
}

/// Compare two desired-style values (`"128MB"` vs `"131072kB"`).
pub fn values_equal(a: &str, b: &str) -> bool {
    same(&normalise(a, None), &normalise(b, None))
}

/// Numeric value of a setting (for "increase or decrease" of counts such as max_connections).
pub fn numeric(s: &str) -> Option<f64> {
    match normalise(s, None) {
        Norm::Num(n) => Some(n),
        _ => None,
    }
}

/// The observed setting's value as a number, when it is one.
pub fn observed_numeric(o: &ObservedSetting) -> Option<f64> {
    let unit = o.unit.as_deref().filter(|u| !u.is_empty());
    let v = o.raw.as_deref().unwrap_or(&o.value);
    match normalise(v, unit) {
        Norm::Num(n) => Some(n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(value: &str, raw: Option<&str>, unit: Option<&str>) -> ObservedSetting {
        ObservedSetting {
            value: value.into(),
            raw: raw.map(Into::into),
            unit: unit.map(Into::into),
            pending_restart: false,
            context: "postmaster".into(),
            source: "default".into(),
        }
    }

    #[test]
    fn memory_units_compare_by_bytes() {
        let shared = obs("128MB", Some("16384"), Some("8kB"));
        assert!(setting_matches("128MB", &shared));
        assert!(setting_matches("131072kB", &shared));
        assert!(setting_matches("16384", &shared));
        assert!(!setting_matches("256MB", &shared));
        assert!(setting_matches(
            "1GB",
            &obs("1GB", Some("1024"), Some("MB"))
        ));
    }

    #[test]
    fn time_units_compare_by_milliseconds() {
        let t = obs("1min", Some("60"), Some("s"));
        assert!(setting_matches("60s", &t));
        assert!(setting_matches("1min", &t));
        assert!(setting_matches("60000ms", &t));
        assert!(!setting_matches("2min", &t));
    }

    #[test]
    fn booleans_and_text() {
        assert!(setting_matches("on", &obs("on", Some("on"), None)));
        assert!(setting_matches("true", &obs("on", None, None)));
        assert!(!setting_matches("off", &obs("on", None, None)));
        assert!(setting_matches("replica", &obs("replica", None, None)));
        assert!(setting_matches("'replica'", &obs("replica", None, None)));
        assert!(!setting_matches("logical", &obs("replica", None, None)));
        assert!(setting_matches("100", &obs("100", Some("100"), None)));
        assert!(setting_matches(
            "ANY 1 (\"n2\", \"n3\")",
            &obs("ANY 1 (\"n2\", \"n3\")", None, None)
        ));
    }

    #[test]
    fn numeric_reads_units() {
        assert_eq!(numeric("200"), Some(200.0));
        assert_eq!(numeric("1kB"), Some(1024.0));
        assert_eq!(numeric("on"), None);
    }
}
