//! `hook`: an operator's argv command (never a shell string) run on pgtopo's machine with the
//! plan's environment (`PGTOPO_CLUSTER`, `PGTOPO_OLD_PRIMARY`, `PGTOPO_NEW_PRIMARY`, their
//! `_HOST` and `_PORT`) and a timeout after which it is killed. A non-zero exit fails the step.
//! A hook always runs (it has no result to find already done). The environment variables that
//! hold the topology's secrets are removed from the hook's environment, and any secret value
//! in its output is replaced by `***` before it reaches an error or a log.

use std::process::Stdio;
use std::time::Duration;

use super::{Freshness, StepContext};
use crate::apply::StepError;
use crate::config::{Desired, SecretRef};
use crate::plan::HookParams;

pub async fn check(_: &StepContext, _: &str, p: &HookParams) -> Result<Freshness, StepError> {
    Ok(Freshness::Dirty(format!("{} hook", p.point.name())))
}

/// Every secret reference of the topology.
fn secret_refs(d: &Desired) -> Vec<&SecretRef> {
    let mut v: Vec<&SecretRef> = Vec::new();
    v.extend(d.connect.password.as_ref());
    v.extend(d.replication.password.as_ref());
    v.extend(d.poolers.values().filter_map(|p| p.admin_password.as_ref()));
    v
}

/// `text` with every resolvable secret value replaced by `***`.
fn redact(d: &Desired, text: &str) -> String {
    let mut out = text.to_string();
    for r in secret_refs(d) {
        if let Ok(s) = r.resolve() {
            if !s.expose().is_empty() {
                out = out.replace(s.expose(), "***");
            }
        }
    }
    out
}

pub async fn act(ctx: &StepContext, _: &str, p: &HookParams) -> Result<(), StepError> {
    let what = format!("{} hook `{}`", p.point.name(), p.command.join(" "));
    let (program, args) = p
        .command
        .split_first()
        .ok_or_else(|| StepError::new(format!("{what}: no program")))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(&p.env)
        .env("PGTOPO_HOOK", p.point.name())
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for r in secret_refs(&ctx.desired) {
        if let SecretRef::Env { env } = r {
            cmd.env_remove(env);
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| StepError::new(format!("{what} could not start: {e}")))?;
    let timeout = Duration::from_millis(p.timeout_ms);
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => {
            return Err(StepError::new(format!(
                "{what} did not finish within {timeout:?} and was killed"
            )))
        }
        Ok(r) => r.map_err(|e| StepError::new(format!("{what}: {e}")))?,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    tracing::debug!(hook = %what, stdout = %redact(&ctx.desired, &stdout), "hook output");
    if out.status.success() {
        return Ok(());
    }
    let how = match out.status.code() {
        Some(c) => format!("exited with status {c}"),
        None => "was killed by a signal".into(),
    };
    let shown = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    Err(StepError::with_stderr(
        format!("{what} {how}"),
        redact(&ctx.desired, &shown),
    ))
}

pub async fn verify(_: &StepContext, _: &str, _: &HookParams) -> Result<(), StepError> {
    Ok(())
}
