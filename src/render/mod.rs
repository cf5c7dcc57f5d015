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

/// How output looks: decided once by `cli` from the flags, NO_COLOR and the terminal, and handed
/// down as a value to whatever prints (no global state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputOptions {
    /// Colour (and unicode) in what reaches a person.
    pub color: bool,
    /// `-q`, or stdout kept for machine output: [`OutputOptions::say`] prints nothing.
    pub quiet: bool,
}

impl OutputOptions {
    /// Print a line to stdout unless quiet.
    pub fn say(&self, line: &str) {
        if !self.quiet {
            println!("{line}");
        }
    }

    /// These options with stdout kept for machine output (`apply --format json`): nothing said.
    pub fn reserving_stdout(self) -> Self {
        OutputOptions {
            quiet: true,
            ..self
        }
    }
}
