//! Handlers of `status`, `observe` and `sandbox up|down`: load the topology, call the phase, hand
//! the result to a renderer or a file. No domain rules here.

use super::*;
use crate::observe::{observe, ObserveOptions};

/// `pgtopo status [--format text|json]`: exit 0 whatever the nodes' state; 1 on a bad topology.
pub async fn status(g: &GlobalArgs, a: StatusArgs) -> CmdResult {
    let desired = crate::config::load(&g.file)?;
    let observed = observe(&desired, &ObserveOptions::default()).await;
    match a.format {
        StatusFormat::Text => print!("{}", crate::render::status::text(&desired, &observed)),
        StatusFormat::Json => println!("{}", crate::render::status::json(&desired, &observed)),
    }
    Ok(exit::OK)
}

/// `pgtopo observe [--out FILE]`: the versioned recording, to FILE or stdout.
pub async fn observe_cmd(g: &GlobalArgs, a: ObserveArgs) -> CmdResult {
    let desired = crate::config::load(&g.file)?;
    let observed = observe(&desired, &ObserveOptions::default()).await;
    let json = serde_json::to_string_pretty(&observed)
        .map_err(|e| miette::miette!("cannot serialise the observed state: {e}"))?;
    match a.out {
        None => println!("{json}"),
        Some(path) => {
            std::fs::write(&path, format!("{json}\n"))
                .map_err(|e| miette::miette!("cannot write {}: {e}", path.display()))?;
            crate::render::say(&format!(
                "observed state of {} nodes written to {}",
                observed.nodes.len(),
                path.display()
            ));
        }
    }
    Ok(exit::OK)
}
