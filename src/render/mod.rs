//! Everything that reaches a person: plan renderings (text, JSON, markdown, DOT, mermaid), the
//! status tree, progress of an apply (for people, or as JSON events), and plain messages.
//! Renderers read finished values and compute nothing that changes what is done.

pub mod drift;
pub mod fleet;
pub mod html;
pub mod json_events;
pub mod mermaid;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod status;

use std::sync::atomic::{AtomicBool, Ordering};

static COLOR: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// How output looks: decided once by `cli` from the flags, NO_COLOR and the terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputOptions {
    /// Colour (and unicode) in what reaches a person.
    pub color: bool,
    /// `-q`: [`say`] prints nothing.
    pub quiet: bool,
}

/// Set colour and verbosity for everything printed afterwards.
pub fn init_output(o: OutputOptions) {
    COLOR.store(o.color, Ordering::Relaxed);
    QUIET.store(o.quiet, Ordering::Relaxed);
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
