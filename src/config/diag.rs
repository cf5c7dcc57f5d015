//! Diagnostics of the topology file.
//!
//! Every problem is one [`ConfigError`]: a message, labels on the exact spans of the file, a help
//! line that says how to fix it, and a stable code (`pgtopo::config::…`). All problems of a file
//! are gathered and returned together as one [`ConfigErrors`] whose `related` list miette renders
//! one after the other, each with its own source snippet.
//!
//! Secrets: the source text handed to miette is a redacted copy in which every inline password
//! value is overwritten with `*` (same byte length, so spans stay valid). No message built in
//! this module's callers quotes a password value; [`redact`] scrubs foreign messages (serde's).

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use super::yaml::Span;

/// The file's name and redacted text, shared by every diagnostic of one load.
pub type Source = NamedSource<Arc<String>>;

/// One problem of the topology file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub code: &'static str,
    pub message: String,
    pub labels: Vec<(Span, String)>,
    pub help: Option<String>,
    pub source: Option<Source>,
}

impl ConfigError {
    /// A problem with a message; add labels and a help line with the builder methods.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
            source: None,
        }
    }

    pub fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push((span, text.into()));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Where the problem starts, for ordering problems as they appear in the file.
    pub fn position(&self) -> usize {
        self.labels.iter().map(|(s, _)| s.start).min().unwrap_or(0)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Diagnostic for ConfigError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!("pgtopo::config::{}", self.code)))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() || self.source.is_none() {
            return None;
        }
        Some(Box::new(self.labels.iter().map(|(span, text)| {
            LabeledSpan::new_with_span(
                (!text.is_empty()).then(|| text.clone()),
                miette::SourceSpan::from(*span),
            )
        })))
    }
}

/// Every problem of one topology file, reported at once.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    pub file: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not a valid topology: {} problems",
            self.file,
            self.errors.len()
        )
    }
}

impl std::error::Error for ConfigErrors {}

impl Diagnostic for ConfigErrors {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("pgtopo::config::invalid"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(
            "nothing was changed; fix every problem below and run `pgtopo validate` again",
        ))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.errors.iter().map(|e| e as &dyn Diagnostic)))
    }
}

/// Turn the collected problems into one report: the single problem itself, or all of them as
/// related diagnostics of a summary. Problems are ordered as they appear in the file.
pub fn report(file: &str, source: Option<&Source>, mut errors: Vec<ConfigError>) -> miette::Report {
    for e in &mut errors {
        if e.source.is_none() && !e.labels.is_empty() {
            e.source = source.cloned();
        }
        // Every label must lie inside the text and on character boundaries, whatever the
        // parser reported, or the renderer would fail.
        match &e.source {
            Some(src) => {
                let text = src.inner().as_str();
                for (span, _) in &mut e.labels {
                    *span = Span::new(floor(text, span.start), floor(text, span.end));
                }
            }
            None => e.labels.clear(),
        }
    }
    errors.sort_by_key(ConfigError::position);
    if errors.len() == 1 {
        miette::Report::new(errors.remove(0))
    } else {
        miette::Report::new(ConfigErrors {
            file: file.to_string(),
            errors,
        })
    }
}

/// The largest character boundary of `text` at or before `at`.
fn floor(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Replace every occurrence of a secret in a foreign message with `***`.
pub fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s.as_str(), "***");
    }
    out
}

/// A copy of `text` in which each of `spans` is overwritten with `*`, byte for byte.
pub fn mask(text: &str, spans: &[Span]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for s in spans {
        for b in bytes.iter_mut().take(s.end.min(text.len())).skip(s.start) {
            *b = b'*';
        }
    }
    // Overwriting whole spans keeps the text valid UTF-8 when the spans fall on char
    // boundaries, which the YAML parser's spans do; fall back to a lossy copy otherwise.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Spans of inline password values found by a line scan, for text the YAML parser rejected:
/// the value after `password:` up to the end of the line (or the next `,`/`}` in flow style),
/// unless it starts a reference mapping `{`.
pub fn password_spans_by_line(text: &str) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let mut search = 0;
        while let Some(i) = line[search..].find("password") {
            let key_end = search + i + "password".len();
            let rest = &line[key_end..];
            let after_quote = rest.trim_start_matches(['"', '\'']);
            let skipped = rest.len() - after_quote.len();
            let trimmed = after_quote.trim_start();
            if let Some(value) = trimmed.strip_prefix(':') {
                let lead = value.len() - value.trim_start().len();
                let value_start =
                    key_end + skipped + (after_quote.len() - trimmed.len()) + 1 + lead;
                let v = &line[value_start..];
                if !v.starts_with('{') {
                    let end = v.find(['\n', '#']).unwrap_or(v.len());
                    let v_trim = v[..end].trim_end();
                    if !v_trim.is_empty() {
                        spans.push(Span::new(
                            offset + value_start,
                            offset + value_start + v_trim.len(),
                        ));
                    }
                }
            }
            search = key_end;
        }
        offset += line.len();
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_clamped_into_the_source() {
        let src: Source = NamedSource::new("t", Arc::new("aé".to_string()));
        let e = ConfigError::new("x", "m").label(Span::new(2, 9), "l");
        let report = report("t", Some(&src), vec![e]);
        let l = report.labels().unwrap().next().unwrap();
        assert_eq!((l.offset(), l.len()), (1, 2));
    }

    #[test]
    fn line_scan_masks_inline_passwords_only() {
        let text = "connect:\n  password: hunter2 # x\nreplication:\n  password: {env: X}\nx: {password: \"s3cr\"}\n";
        let masked = mask(text, &password_spans_by_line(text));
        assert!(!masked.contains("hunter2"));
        assert!(!masked.contains("s3cr"));
        assert!(masked.contains("{env: X}"));
        assert_eq!(masked.len(), text.len());
    }
}
