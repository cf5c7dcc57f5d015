//! The output set-up of a run, from the global flags: colour and verbosity for `render`, the
//! tracing subscriber (stderr, `PGTOPO_LOG` or `-v`/`-q`) and miette's report handler.

use std::io::IsTerminal;

use super::GlobalArgs;
use crate::render::OutputOptions;

/// Decide colour and verbosity once, from the flags, NO_COLOR and whether stdout is a terminal:
/// the options every command is handed.
pub fn init(g: &GlobalArgs) -> OutputOptions {
    let color = colour_allowed(g) && std::io::stdout().is_terminal();
    let level = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGTOPO_LOG")
                .unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour_allowed(g) && std::io::stderr().is_terminal())
        .try_init();
    miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(color)
                .unicode(color)
                .terminal_links(false)
                .build(),
        )
    }))
    .ok();
    OutputOptions {
        color,
        quiet: g.quiet,
    }
}

/// Neither `--no-color` nor `NO_COLOR`.
fn colour_allowed(g: &GlobalArgs) -> bool {
    !g.no_color && std::env::var_os("NO_COLOR").is_none()
}
