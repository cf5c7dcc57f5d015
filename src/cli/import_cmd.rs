//! Handler of `pgtopo import`: options → `import::import` → the topology file (or stdout) and a
//! summary. No discovery rule here.

use super::*;
use crate::config::SecretRef;
use crate::import::{import as discover, ImportOptions};

/// `pgtopo import --from HOST:PORT [--from …] [--out FILE]`: exit 0 with the file written, 1 when
/// the cluster cannot be imported (nothing written).
pub async fn import(_g: &GlobalArgs, out: OutputOptions, a: ImportArgs) -> CmdResult {
    if let Some(out) = &a.out {
        if out.exists() && !a.force {
            return Err(miette::miette!(
                help = "use --force to replace it",
                "{} exists: import does not overwrite a topology file",
                out.display()
            )
            .into());
        }
    }
    let opts = ImportOptions {
        from: a.from,
        cluster: a.cluster,
        user: a.user,
        dbname: a.dbname,
        password: match (a.password_env, a.password_file) {
            (Some(env), _) => Some(SecretRef::Env { env }),
            (None, Some(file)) => Some(SecretRef::File { file }),
            (None, None) => None,
        },
        replication_password: a.replication_password_env.map(|env| SecretRef::Env { env }),
        ports: a.ports,
        bin_dir: a.bin_dir,
        os_user: a.os_user,
        ..ImportOptions::default()
    };
    let imported = discover(&opts).await.map_err(miette::Report::new)?;
    match &a.out {
        None => print!("{}", imported.yaml),
        Some(path) => {
            std::fs::write(path, &imported.yaml)
                .map_err(|e| miette::miette!("cannot write {}: {e}", path.display()))?;
            let d = &imported.desired;
            out.say(&format!(
                "imported cluster {}: {} node(s), primary {} → {}",
                d.cluster,
                imported.nodes.len(),
                d.primary().name,
                path.display()
            ));
            for n in &imported.nodes {
                out.say(&format!(
                    "  {:<8} {}:{}  {}{}",
                    n.name,
                    n.host,
                    n.port,
                    n.data_dir,
                    n.upstream
                        .as_ref()
                        .map(|u| format!("  (standby of {u})"))
                        .unwrap_or_else(|| "  (primary)".into())
                ));
            }
            for note in &imported.notes {
                out.say(&format!("note: {note}"));
            }
        }
    }
    Ok(exit::OK)
}
