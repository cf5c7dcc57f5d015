//! `pgtopo completions SHELL` and `pgtopo man [COMMAND]`: generated from the clap definitions,
//! so they always list the commands and flags this binary has.

use super::{exit, Cli, CmdResult, CompletionsArgs, ManArgs};

/// The completion script for `shell`.
pub fn completions_text(shell: clap_complete::Shell) -> String {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "pgtopo", &mut out);
    String::from_utf8(out).expect("clap_complete writes UTF-8")
}

/// The man page (roff): pgtopo(1), or pgtopo-COMMAND(1) for `command`. None for a command that
/// does not exist.
pub fn man_text(command: Option<&str>) -> Option<String> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    let page = match command {
        None => cmd,
        Some(name) => {
            let sub = cmd.find_subcommand(name)?.clone();
            // clap names are `&'static str` (without its `string` feature); this process prints
            // one page and exits.
            let full: &'static str =
                Box::leak(format!("pgtopo-{}", sub.get_name()).into_boxed_str());
            sub.name(full).bin_name(format!("pgtopo {name}"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .expect("rendering to memory");
    Some(String::from_utf8(out).expect("clap_mangen writes UTF-8"))
}

/// `pgtopo completions SHELL`: data for the shell, printed even with -q.
pub async fn completions(a: CompletionsArgs) -> CmdResult {
    print!("{}", completions_text(a.shell));
    Ok(exit::OK)
}

/// `pgtopo man [COMMAND]`.
pub async fn man(a: ManArgs) -> CmdResult {
    match man_text(a.command.as_deref()) {
        Some(page) => {
            print!("{page}");
            Ok(exit::OK)
        }
        None => Err(miette::miette!(
            help = "`pgtopo --help` lists the commands",
            "no command `{}`",
            a.command.unwrap_or_default()
        )
        .into()),
    }
}
