//! The apply journal: one JSON object per line, appended to `--journal PATH`, for audit.
//! Each line records a step's id, kind, node, start and end (RFC 3339, UTC, milliseconds),
//! outcome and error (the tool's stderr included). Lines are flushed as they are written, so a
//! killed apply leaves a journal that is complete up to the kill. No secret ever reaches a step's
//! error text, so none reaches the journal.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::plan::{Step, StepId};

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub step: StepId,
    pub kind: String,
    pub node: String,
    pub start: Option<String>,
    pub end: Option<String>,
    /// `done`, `already_done`, `failed`, `skipped`, `not_started`.
    pub outcome: String,
    pub error: Option<String>,
}

/// Why the journal could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the journal {path}: {source}")]
pub struct JournalError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// An open journal file (append mode).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Journal {
    /// Open (create) `path` for appending.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| JournalError {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Append one step's line.
    pub fn record(
        &mut self,
        step: &Step,
        outcome: &Outcome,
        start: Option<SystemTime>,
        end: Option<SystemTime>,
    ) -> Result<(), JournalError> {
        let error = match outcome {
            Outcome::Failed(e) => Some(match &e.stderr {
                Some(s) => format!("{}\n{}", e.message, s),
                None => e.message.clone(),
            }),
            _ => None,
        };
        let entry = JournalEntry {
            step: step.id,
            kind: step.action.kind().to_string(),
            node: step.node.clone(),
            start: start.map(rfc3339),
            end: end.map(rfc3339),
            outcome: outcome.name().to_string(),
            error,
        };
        let mut line = serde_json::to_string(&entry).expect("journal entries serialise");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
            .map_err(|source| JournalError {
                path: self.path.clone(),
                source,
            })
    }
}
