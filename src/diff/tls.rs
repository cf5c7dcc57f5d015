//! Whether a standby's primary_conninfo carries the TLS keywords the topology asks for
//! (`replication.tls` with the node's own paths). Without `replication.tls` nothing is asked: a
//! conninfo's TLS keywords written by hand are left alone.

use crate::config::Desired;
use crate::observe::{ConninfoSummary, ObservedNode};

/// The TLS part of `name`'s primary_conninfo as observation reads it back (only the TLS fields
/// are set).
pub fn expected(d: &Desired, name: &str) -> ConninfoSummary {
    let Some(t) = d.replication_tls(name) else {
        return ConninfoSummary::default();
    };
    let path = |p: Option<std::path::PathBuf>| p.map(|p| p.display().to_string());
    ConninfoSummary {
        sslmode: Some(t.sslmode.as_str().to_string()),
        sslrootcert: path(t.sslrootcert),
        sslcert: path(t.sslcert),
        sslkey: path(t.sslkey),
        ..ConninfoSummary::default()
    }
}

/// Whether the observed conninfo of `name` has the TLS keywords asked for (true when nothing is
/// asked, or when the conninfo cannot be seen).
pub fn conninfo_tls_ok(d: &Desired, name: &str, o: &ObservedNode) -> bool {
    if d.replication.tls.is_none() {
        return true;
    }
    let Some(c) = &o.primary_conninfo else {
        return true;
    };
    let want = expected(d, name);
    (&c.sslmode, &c.sslrootcert, &c.sslcert, &c.sslkey)
        == (
            &want.sslmode,
            &want.sslrootcert,
            &want.sslcert,
            &want.sslkey,
        )
}
