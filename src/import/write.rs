//! The imported file's text: the topology through the one writer
//! ([`crate::config::TopologyFile::to_yaml_with_header`]) below a header that says where it came
//! from and every note.

use crate::config::TopologyFile;

/// The file as `pgtopo import` writes it.
pub fn text(file: &TopologyFile, system_identifier: Option<&str>, notes: &[String]) -> String {
    let mut header = vec![
        format!(
            "Imported with `pgtopo import` from the running cluster (system identifier {}).",
            system_identifier.unwrap_or("unknown")
        ),
        "Nodes on other machines need an `ssh:` section; passwords are references only.".into(),
    ];
    header.extend(notes.iter().map(|n| format!("note: {n}")));
    file.to_yaml_with_header(&header)
}
