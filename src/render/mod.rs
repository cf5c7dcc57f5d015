//! Everything that reaches a person: plan renderings (text, JSON, markdown, DOT, mermaid), the
//! status tree, progress of an apply (for people, or as JSON events), and plain messages.
//! Renderers read finished values and compute nothing that changes what is done.

pub mod drift;
pub mod json_events;
pub mod mermaid;
pub mod plan;
pub mod progress;
pub mod status;

use std::sync::atomic::{AtomicBool, Ordering};

use crate::cli::GlobalArgs;

static COLOR: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// Decide colour and verbosity once, from the flags, NO_COLOR and whether stdout is a terminal.
pub fn init_output(g: &GlobalArgs) {
    use std::io::IsTerminal;
    let color =
        !g.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
    COLOR.store(color, Ordering::Relaxed);
    QUIET.store(g.quiet, Ordering::Relaxed);
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
        .with_ansi(
            !g.no_color
                && std::env::var_os("NO_COLOR").is_none()
                && std::io::stderr().is_terminal(),
        )
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
}

/// Whether output may use colour.
pub fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// Keep stdout for machine output (`apply --format json`): from now on [`say`] prints nothing.
pub fn reserve_stdout() {
    QUIET.store(true, Ordering::Relaxed);
}

/// Print a line to stdout unless `-q`.
pub fn say(line: &str) {
    if !QUIET.load(Ordering::Relaxed) {
        println!("{line}");
    }
}
