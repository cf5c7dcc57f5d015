//! Secret values: resolved from `{env: …}` / `{file: …}` references at the moment they are
//! needed, never printed, never serialised.

use std::fmt;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to a secret. Inline secrets are not accepted.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(untagged)]
pub enum SecretRef {
    /// Read from an environment variable of pgtopo's process.
    Env { env: String },
    /// Read from a file (first line, trailing newline removed).
    File { file: PathBuf },
}

/// A resolved secret. `Debug` and `Display` print `***`; the only way out is [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret text, for handing to libpq or writing into a 0600 file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret reference could not be resolved. The message names the reference, never a value.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    #[diagnostic(code(pgtopo::secret::env), help("export {0} before running pgtopo"))]
    EnvMissing(String),
    #[error("cannot read secret file {path}: {source}")]
    #[diagnostic(code(pgtopo::secret::file))]
    File {
        path: String,
        source: std::io::Error,
    },
}

impl SecretRef {
    /// Resolve the reference now.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env { env } => std::env::var(env)
                .map(Secret)
                .map_err(|_| SecretError::EnvMissing(env.clone())),
            SecretRef::File { file } => std::fs::read_to_string(file)
                .map(|s| Secret(s.lines().next().unwrap_or("").to_string()))
                .map_err(|source| SecretError::File {
                    path: file.display().to_string(),
                    source,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret("hunter2".into());
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
    }
}
