//! `pgtopo bench failover`: how long a failover keeps writes away, as a user runs it.
//!
//! Each run: a fresh 2-node sandbox built by `apply`, the probe writer (multi-host,
//! `target_session_attrs=read-write`, reconnecting every ≤ 5 ms), the primary crashed with an
//! immediate shutdown (SIGQUIT to its postmaster, waited for until it is gone), the topology
//! switched to n2, then `pgtopo apply --auto-approve --allow-failover`. The figure is from that
//! apply's start to the first write the writer gets acknowledged after it (on n2, the only
//! server left that accepts writes); the apply's own wall time is reported beside it.

use std::time::{Duration, Instant, SystemTime};

use miette::{miette, IntoDiagnostic, Result};

use super::writer::Writer;
use super::{
    bench_pair, hosts, median_range, pgtopo_ok, pgtopo_stdout, switch_topology, BenchOptions,
};
use crate::apply::wait::{wait_until, Poll, WaitSpec};
use crate::sandbox::{self, Sandbox};

/// One failover run's figures (seconds).
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailoverRun {
    pub tool: &'static str,
    /// From `apply --allow-failover` starting to the first acknowledged write.
    pub first_write_s: f64,
    /// The apply's wall time (the old primary rejoined included).
    pub apply_wall_s: f64,
    /// Where the time before the first write went.
    pub breakdown: super::breakdown::Breakdown,
}

/// Immediate shutdown of `sb`'s node `i`, waited for until its postmaster is gone.
async fn crash(sb: &Sandbox, i: usize) -> Result<()> {
    use nix::sys::signal::{kill, Signal};
    let data_dir = &sb.nodes[i].data_dir;
    let pid =
        sandbox::postmaster_pid(data_dir).ok_or_else(|| miette!("n{} is not running", i + 1))?;
    let pid = nix::unistd::Pid::from_raw(pid);
    kill(pid, Signal::SIGQUIT).into_diagnostic()?;
    wait_until(
        &WaitSpec::new("the crashed postmaster to be gone", Duration::from_secs(30)),
        || async move {
            match kill(pid, None) {
                Err(_) => Poll::Ready(()),
                Ok(()) => Poll::Pending(format!("pid {pid} still there")),
            }
        },
    )
    .await
    .map_err(|e| miette!("{e}"))
}

async fn run(opts: &BenchOptions, run: usize) -> Result<FailoverRun> {
    let (_tmp, sb) = bench_pair(opts, &format!("failover{run}")).await?;
    let r = async {
        pgtopo_ok(
            &sb.topology,
            &["apply", "--auto-approve"],
            super::Child::Quiet,
        )
        .await?;
        let w = Writer::start(&hosts(&sb), "postgres")
            .await
            .map_err(|e| miette!("writer: {e}"))?;
        let writer_err = |e: String| miette!("writer: {e}");
        w.wait_for_more_acks(200, Duration::from_secs(30))
            .await
            .map_err(writer_err)?;
        crash(&sb, 0).await?;
        switch_topology(&sb, 1)?;
        let (t0, t0_sys) = (Instant::now(), SystemTime::now());
        let args = [
            "apply",
            "--auto-approve",
            "--allow-failover",
            "--format",
            "json",
        ];
        let events = pgtopo_stdout(&sb.topology, &args).await?;
        let wall = t0.elapsed();
        w.wait_for_more_acks(100, Duration::from_secs(30))
            .await
            .map_err(writer_err)?;
        let log = w.stop().await;
        let first = log
            .acks
            .iter()
            .find(|(_, t)| *t > t0)
            .ok_or_else(|| miette!("no write acknowledged after the failover"))?;
        let first_write = first.1 - t0;
        Ok(FailoverRun {
            tool: "pgtopo",
            first_write_s: first_write.as_secs_f64(),
            apply_wall_s: wall.as_secs_f64(),
            breakdown: super::breakdown::Breakdown::from_events(&events, t0_sys, first_write),
        })
    }
    .await;
    sandbox::down(&sb.dir).await?;
    r
}

/// `pgtopo bench failover`.
pub async fn bench_failover(opts: &BenchOptions) -> Result<()> {
    let mut runs = Vec::new();
    for i in 1..=opts.runs.max(1) {
        let r = run(opts, i).await?;
        println!("{}", serde_json::to_string(&r).into_diagnostic()?);
        println!("  {}", r.breakdown.describe());
        runs.push(r);
    }
    let (m, lo, hi) = median_range(runs.iter().map(|r| r.first_write_s).collect());
    let (wm, wlo, whi) = median_range(runs.iter().map(|r| r.apply_wall_s).collect());
    println!(
        "\n{} runs: first write on the new primary {m:.3} s median ({lo:.3}-{hi:.3}) after \
         `apply --allow-failover` started; apply wall {wm:.3} s ({wlo:.3}-{whi:.3})",
        runs.len()
    );
    Ok(())
}
