//! The spelling of names the topology declares (a leaf: the node and pooler rules both check it).

/// `[a-z][a-z0-9_]{0,62}`: names become replication slot names and application_name.
pub fn valid_node_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
