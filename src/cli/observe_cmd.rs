//! Handlers of `status`, `observe` and `sandbox up|down`: load the topology, call the phase, hand
//! the result to a renderer or a file. No domain rules here.

use super::plan_cmd::{answered, drifted, observed};
use super::*;
use crate::observe::{observe, ObserveOptions};

/// `pgtopo status [--format text|json|prometheus]`: exit 0 whatever the nodes' state; 1 on a
/// bad topology. Several files or a directory: one fleet report, exit 1 when a cluster could not
/// be read.
pub async fn status(g: &GlobalArgs, out: OutputOptions, a: StatusArgs) -> CmdResult {
    use crate::fleet::{read_all, Fleet, Targets};
    use crate::render::{fleet, metrics};
    let files = match crate::fleet::targets(&g.file)? {
        Targets::One(f) => {
            match a.format {
                StatusFormat::Prometheus => {
                    let d = drifted(&f, None).await?;
                    print!("{}", metrics::text(&Fleet::one(f, d)));
                }
                StatusFormat::Text | StatusFormat::Json => {
                    let o = observed(&f, None).await?;
                    match a.format {
                        StatusFormat::Json => {
                            println!("{}", crate::render::status::json(&o.desired, &o.observed))
                        }
                        _ => print!(
                            "{}",
                            crate::render::status::text_with(&o.desired, &o.observed, out.color)
                        ),
                    }
                }
            }
            return Ok(exit::OK);
        }
        Targets::Many(files) => files,
    };
    let n = a.fleet.parallelism.into();
    match a.format {
        StatusFormat::Prometheus => {
            let f = read_all(
                &files,
                n,
                |f| async move { answered(drifted(&f, None).await) },
            )
            .await;
            print!("{}", metrics::text(&f));
            Ok(fleet_exit(&f))
        }
        StatusFormat::Text | StatusFormat::Json => {
            let f = read_all(
                &files,
                n,
                |f| async move { answered(observed(&f, None).await) },
            )
            .await;
            match a.format {
                StatusFormat::Json => print!("{}", fleet::json(&f)),
                _ => print!("{}", fleet::text(&f, out.color)),
            }
            Ok(fleet_exit(&f))
        }
    }
}

/// `pgtopo observe [--out FILE]`: the versioned recording, to FILE or stdout.
pub async fn observe_cmd(g: &GlobalArgs, out: OutputOptions, a: ObserveArgs) -> CmdResult {
    let desired = crate::config::load(&g.one_file("observe")?)?;
    let observed = observe(&desired, &ObserveOptions::default()).await;
    let json = serde_json::to_string_pretty(&observed)
        .map_err(|e| miette::miette!("cannot serialise the observed state: {e}"))?;
    match a.out {
        None => println!("{json}"),
        Some(path) => {
            std::fs::write(&path, format!("{json}\n"))
                .map_err(|e| miette::miette!("cannot write {}: {e}", path.display()))?;
            out.say(&format!(
                "observed state of {} nodes written to {}",
                observed.nodes.len(),
                path.display()
            ));
        }
    }
    Ok(exit::OK)
}

/// `pgtopo sandbox up|down`.
pub async fn sandbox(_g: &GlobalArgs, out: OutputOptions, cmd: SandboxCommand) -> CmdResult {
    match cmd {
        SandboxCommand::Up(a) => {
            let opts = crate::sandbox::UpOptions {
                dir: a.dir,
                nodes: a.nodes,
                port: a.port,
                bin_dir: a.bin_dir,
            };
            let sb = crate::sandbox::up(&opts)
                .await
                .map_err(miette::Report::new)?;
            let n1 = &sb.nodes[0];
            out.say(&format!(
                "sandbox up in {}: primary {} running on {}:{} ({}), {} standby(s) declared",
                sb.dir.display(),
                n1.name,
                n1.host,
                n1.port,
                sb.bin_dir.display(),
                sb.nodes.len() - 1
            ));
            out.say(&format!(
                "next: pgtopo apply -f {}   (then: pgtopo sandbox down --dir {})",
                sb.topology.display(),
                sb.dir.display()
            ));
            Ok(exit::OK)
        }
        SandboxCommand::Down(a) => {
            let stopped = crate::sandbox::down(&a.dir)
                .await
                .map_err(miette::Report::new)?;
            out.say(&format!(
                "sandbox down: stopped {} server(s), removed {}",
                stopped.len(),
                a.dir.display()
            ));
            Ok(exit::OK)
        }
    }
}
