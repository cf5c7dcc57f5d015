//! `pgtopo demo` and `pgtopo bench`: whole stories on a local sandbox.
//!
//! Both drive the real `pgtopo` binary (this executable) for every plan and apply, so what the
//! demo shows is exactly what a user sees, and what the benchmark times is exactly what a user
//! runs. Around it: a sandbox (`crate::sandbox`), the probe writer ([`writer`]) and the
//! verification that no acknowledged write was lost. This module prints: it is a front end.

pub mod breakdown;
pub mod conflict;
pub mod failover_bench;
pub mod ssh;
pub mod writer;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use miette::{miette, IntoDiagnostic, Result};

use crate::config::PoolerSpec;
use crate::sandbox::{self, Sandbox, UpOptions};
use writer::{lost_writes, Writer};

/// Options of the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub dir: Option<PathBuf>,
    pub port: u16,
    pub bin_dir: Option<PathBuf>,
    pub keep: bool,
    /// Colour in what the demo shows (`cli`'s `OutputOptions::color`).
    pub color: bool,
}

fn heading(n: u32, text: &str, color: bool) {
    let line = format!("── {n}. {text} ");
    if color {
        use owo_colors::OwoColorize;
        println!("\n{}", line.bold());
    } else {
        println!("\n{line}");
    }
}

/// This executable with `-f topology args`, stdin closed; `--no-color` unless `color`.
fn pgtopo_command(topology: &Path, args: &[&str], color: bool) -> Result<tokio::process::Command> {
    let exe = std::env::current_exe().into_diagnostic()?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("-f").arg(topology).args(args).stdin(Stdio::null());
    if !color {
        cmd.arg("--no-color");
    }
    Ok(cmd)
}

/// What becomes of a child pgtopo's stdout: shown on this terminal (coloured or not), or dropped.
#[derive(Debug, Clone, Copy)]
enum Child {
    Shown { color: bool },
    Quiet,
}

fn failed(args: &[&str], st: std::process::ExitStatus) -> miette::Report {
    miette!("`pgtopo {}` failed ({st})", args.join(" "))
}

/// Run this executable with `args`, its output shown (indented by nothing: it is pgtopo's own).
async fn pgtopo(topology: &Path, args: &[&str], child: Child) -> Result<std::process::ExitStatus> {
    let mut cmd = match child {
        Child::Shown { color } => {
            println!("$ pgtopo -f {} {}", topology.display(), args.join(" "));
            pgtopo_command(topology, args, color)?
        }
        Child::Quiet => {
            let mut cmd = pgtopo_command(topology, args, false)?;
            cmd.stdout(Stdio::null());
            cmd
        }
    };
    cmd.status().await.into_diagnostic()
}

async fn pgtopo_ok(topology: &Path, args: &[&str], child: Child) -> Result<()> {
    let st = pgtopo(topology, args, child).await?;
    match st.success() {
        true => Ok(()),
        false => Err(failed(args, st)),
    }
}

/// Run this executable with `args`, its stdout captured (stderr shown), and fail unless it exits 0.
async fn pgtopo_stdout(topology: &Path, args: &[&str]) -> Result<String> {
    let (status, stdout) = pgtopo_output(topology, args).await?;
    if !status.success() {
        return Err(failed(args, status));
    }
    Ok(stdout)
}

/// Run this executable with `args`: its exit status and captured stdout (stderr shown).
async fn pgtopo_output(
    topology: &Path,
    args: &[&str],
) -> Result<(std::process::ExitStatus, String)> {
    let mut cmd = pgtopo_command(topology, args, false)?;
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .await
        .into_diagnostic()?;
    Ok((out.status, String::from_utf8(out.stdout).into_diagnostic()?))
}

/// The candidate's WAL receiver, stopped with SIGSTOP until this is dropped (SIGCONT).
struct FrozenReceiver(Option<i32>);

impl FrozenReceiver {
    async fn freeze(n: &sandbox::SandboxNode) -> Result<FrozenReceiver> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&n.host)
            .port(n.port)
            .user("postgres")
            .dbname("postgres");
        let c = crate::pg::open(&mut cfg, &crate::pg::tls::TlsSettings::disabled())
            .await
            .map_err(|e| miette!("{}: {e}", n.name))?;
        let rows = c
            .query("SELECT pid FROM pg_stat_wal_receiver", &[])
            .await
            .map_err(|e| miette!("{}: {e}", n.name))?;
        let pid: i32 = rows
            .first()
            .map(|r| r.get(0))
            .ok_or_else(|| miette!("{} has no WAL receiver", n.name))?;
        signal(pid, nix::sys::signal::Signal::SIGSTOP);
        Ok(FrozenReceiver(Some(pid)))
    }
}

fn signal(pid: i32, s: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s);
}

impl Drop for FrozenReceiver {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            signal(pid, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// Rewrite a sandbox topology so that `new_primary` is the primary and every other node follows it.
pub fn switch_topology(sb: &Sandbox, new_primary: usize) -> Result<()> {
    let mut order = sb.nodes.clone();
    let p = order.remove(new_primary);
    order.insert(0, p);
    std::fs::write(
        &sb.topology,
        sandbox::topology_yaml(&sb.bin_dir, &sb.os_user, &order),
    )
    .into_diagnostic()
}

fn hosts(sb: &Sandbox) -> Vec<(String, u16)> {
    sb.nodes.iter().map(|n| (n.host.clone(), n.port)).collect()
}

/// A timeline, role and streaming line per node, read over SQL.
async fn node_facts(sb: &Sandbox) -> Vec<String> {
    let desired = match crate::config::load(&sb.topology) {
        Ok(d) => d,
        Err(_) => return vec![],
    };
    let obs = crate::observe::observe(&desired, &crate::observe::ObserveOptions::default()).await;
    obs.nodes
        .iter()
        .map(|(name, n)| {
            let role = n
                .role
                .map(|r| format!("{r:?}").to_lowercase())
                .unwrap_or_else(|| "down".into());
            let up = n
                .upstream
                .as_deref()
                .map(|u| format!(", streaming from {u}"))
                .unwrap_or_default();
            let tl = n
                .timeline
                .map(|t| format!("timeline {t}"))
                .unwrap_or_default();
            format!(
                "{name}: {role}, {tl}{}",
                if n.streaming { up } else { String::new() }
            )
        })
        .collect()
}

/// `pgtopo demo`.
pub async fn demo(opts: &DemoOptions) -> Result<()> {
    let tmp;
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("pgtopo-demo-")
                .tempdir()
                .into_diagnostic()?;
            tmp.path().join("sandbox")
        }
    };
    println!(
        "pgtopo demo: a 3-node cluster on this machine, built from a topology file, switched over"
    );
    println!(
        "under a continuous writer, and checked for lost writes. Everything runs on 127.0.0.x."
    );

    sandbox::pgbouncer::require()?;
    heading(
        1,
        "a sandbox: one primary, two standbys declared but not built yet, a pgbouncer",
        opts.color,
    );
    let sb = sandbox::up(&UpOptions {
        dir: dir.clone(),
        nodes: 3,
        port: opts.port,
        bin_dir: opts.bin_dir.clone(),
    })
    .await?;
    // Applications reach the cluster through a pgbouncer that pgtopo pauses, re-points and
    // resumes around the switchover.
    let result = match sandbox_pooler(&sb, true).await {
        Ok(pooler) => {
            println!(
                "{}",
                std::fs::read_to_string(&sb.topology).into_diagnostic()?
            );
            story(&sb, &pooler, opts.color).await
        }
        Err(e) => Err(e),
    };

    if opts.keep {
        println!(
            "\nThe sandbox keeps running: `pgtopo sandbox down --dir {}` removes it.",
            sb.dir.display()
        );
    } else {
        heading(7, "teardown", opts.color);
        let stopped = sandbox::down(&sb.dir).await?;
        println!(
            "stopped {} servers by their PID, removed {}",
            stopped.len(),
            sb.dir.display()
        );
    }
    result
}

async fn story(
    sb: &Sandbox,
    pooler: &(sandbox::pgbouncer::Pooler, PoolerSpec),
    color: bool,
) -> Result<()> {
    let (pgb, pooler_spec) = pooler;
    let topo = &sb.topology;
    let shown = Child::Shown { color };
    let heading = |n, text: &str| heading(n, text, color);
    heading(2, "plan: what it takes to build the standbys");
    pgtopo_ok(topo, &["plan"], shown).await?;

    heading(
        3,
        "apply: pg_hba, replication role, slots, two base backups in parallel",
    );
    let t = Instant::now();
    pgtopo_ok(topo, &["apply", "--auto-approve"], shown).await?;
    println!("built in {:.2} s", t.elapsed().as_secs_f64());
    pgtopo_ok(topo, &["status"], shown).await?;

    heading(
        4,
        "a writer: one autocommit INSERT per round trip, through pgbouncer",
    );
    let w = Writer::start_through_pooler(&pgb.host, pgb.port, "postgres")
        .await
        .map_err(|e| miette!("writer: {e}"))?;
    w.wait_for_more_acks(2000, Duration::from_secs(30))
        .await
        .map_err(|e| miette!("writer: {e}"))?;
    println!("{} writes acknowledged so far", w.acked());

    heading(5, "switchover: the topology now says n2 is the primary");
    switch_topology(sb, 1)?;
    declare_pooler(sb, pooler_spec)?;
    let t = Instant::now();
    pgtopo_ok(topo, &["apply", "--auto-approve"], shown).await?;
    let wall = t.elapsed();
    w.wait_for_more_acks(2000, Duration::from_secs(30))
        .await
        .map_err(|e| miette!("writer: {e}"))?;
    let log = w.stop().await;

    heading(6, "verification");
    let n2 = &sb.nodes[1];
    let lost = lost_writes(&n2.host, n2.port, "postgres", &log)
        .await
        .map_err(|e| miette!("verify: {e}"))?;
    let gap = log
        .max_gap()
        .map(|g| g.length.as_secs_f64() * 1000.0)
        .unwrap_or(0.0);
    println!(
        "apply took {:.2} s; the longest commit through pgbouncer waited {gap:.0} ms; {} client transactions failed",
        wall.as_secs_f64(),
        log.errors
    );
    println!(
        "{} writes acknowledged, {} of them missing on the new primary n2{}",
        log.acks.len(),
        lost.len(),
        if lost.is_empty() {
            " — none lost"
        } else {
            ""
        }
    );
    for line in node_facts(sb).await {
        println!("  {line}");
    }
    pgtopo_ok(topo, &["plan", "--detailed-exitcode"], shown).await?;
    if !lost.is_empty() {
        return Err(miette!(
            "{} acknowledged writes were lost: {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    Ok(())
}

/// Options of `pgtopo bench switchover`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub runs: usize,
    pub port: u16,
    pub bin_dir: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub results: Option<PathBuf>,
    /// Through a pgbouncer (`bench switchover --pooler`).
    pub pooler: bool,
    /// A report session blocking the candidate's replay (`bench switchover --conflict`).
    pub conflict: bool,
    /// Every node behind an sshd of its own ([`ssh`]).
    pub ssh: Option<BenchSsh>,
    /// A fault injected between plan and apply (`bench switchover --fault`).
    pub fault: Option<BenchFault>,
}

/// How `bench --ssh` reaches the nodes.
#[derive(Debug, Clone)]
pub struct BenchSsh {
    /// The login user (root, or the os_user for a login whose shell reads no rc file).
    pub user: String,
    /// A round trip added between pgtopo and every sshd.
    pub rtt: Option<Duration>,
}

/// A fault `bench switchover` injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchFault {
    /// The candidate's WAL receiver frozen (SIGSTOP) until the apply ends: the candidate stops
    /// acknowledging WAL as a partition without reset would make it, and the old primary's
    /// walsender holds its fast shutdown.
    PartitionCandidate,
}

/// How the writer of a switchover run reaches the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A multi-host connection string (`target_session_attrs=read-write`).
    Direct,
    /// A pgbouncer that pgtopo routes, pausing it around the switchover or not.
    Pooler { pause: bool },
    /// Direct, with a report session blocking the candidate's replay
    /// ([`conflict`]); `cancel`: `switchover.cancel_conflicting_queries: true`.
    Conflict { cancel: bool },
}

impl Via {
    fn tool(self) -> &'static str {
        match self {
            Via::Direct => "pgtopo",
            Via::Pooler { pause: true } => "pgtopo+pgbouncer (pause/resume)",
            Via::Pooler { pause: false } => "pgtopo+pgbouncer (no pause)",
            Via::Conflict { cancel: false } => "pgtopo, report query on the candidate",
            Via::Conflict { cancel: true } => {
                "pgtopo, report query on the candidate, cancel_conflicting_queries"
            }
        }
    }
}

/// Start a pgbouncer in the sandbox (routing to n1) and declare it in the topology.
async fn sandbox_pooler(
    sb: &Sandbox,
    pause: bool,
) -> Result<(sandbox::pgbouncer::Pooler, PoolerSpec)> {
    let n1 = &sb.nodes[0];
    let port = n1.port + sb.nodes.len() as u16;
    let p = sandbox::pgbouncer::start(
        &sb.dir.join("pgbouncer"),
        &sb.os_user,
        &n1.host,
        port,
        (&n1.host, n1.port),
    )
    .await?;
    let spec = sandbox::pgbouncer::pooler_spec(&p, pause);
    declare_pooler(sb, &spec)?;
    Ok((p, spec))
}

/// Declare the sandbox's pgbouncer (`pgb`) in its topology file.
fn declare_pooler(sb: &Sandbox, spec: &PoolerSpec) -> Result<()> {
    sandbox::edit_topology(&sb.topology, |f| {
        f.poolers.insert("pgb".into(), spec.clone());
    })?;
    Ok(())
}

/// One switchover run's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SwitchoverRun {
    /// The fault injected between plan and apply, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<&'static str>,
    /// Whether the apply switched over (else it failed and rolled back).
    pub switched_over: bool,
    pub tool: &'static str,
    /// `local` or `ssh`: how pgtopo reached the nodes.
    pub transport: &'static str,
    pub write_unavailable_s: f64,
    pub switchover_wall_s: f64,
    pub acked: usize,
    pub lost: usize,
    pub errors: u64,
    /// The apply failed (a switchover refused before the stop: the primary did not change).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    pub gap_start_rel_s: f64,
    pub gap_end_rel_s: f64,
    /// Where the apply's time went until the writes came back.
    pub breakdown: breakdown::Breakdown,
}

fn scratch(dir: &Option<PathBuf>, name: &str) -> Result<(Option<tempfile::TempDir>, PathBuf)> {
    match dir {
        Some(d) => Ok((None, d.join(name))),
        None => {
            let t = tempfile::Builder::new()
                .prefix("pgtopo-bench-")
                .tempdir()
                .into_diagnostic()?;
            let p = t.path().join(name);
            Ok((Some(t), p))
        }
    }
}

/// A fresh 2-node sandbox for one bench run, in `name` under `--dir` or in a temporary directory
/// (removed when the returned guard drops).
async fn bench_pair(
    opts: &BenchOptions,
    name: &str,
) -> Result<(Option<tempfile::TempDir>, Sandbox)> {
    let (tmp, dir) = scratch(&opts.dir, name)?;
    let sb = sandbox::up(&UpOptions {
        dir,
        nodes: 2,
        port: opts.port,
        bin_dir: opts.bin_dir.clone(),
    })
    .await?;
    Ok((tmp, sb))
}

/// One switchover of a fresh 2-node sandbox under the writer.
async fn switchover_run(opts: &BenchOptions, run: usize, via: Via) -> Result<SwitchoverRun> {
    let (_tmp, sb) = bench_pair(opts, &format!("run{run}")).await?;
    let r = async {
        let pooler = match via {
            Via::Pooler { pause } => Some(sandbox_pooler(&sb, pause).await?),
            _ => None,
        };
        let sshds = behind_ssh(&sb, opts.ssh.as_ref()).await?;
        pgtopo_ok(&sb.topology, &["apply", "--auto-approve"], Child::Quiet).await?;
        let w = match &pooler {
            None => Writer::start(&hosts(&sb), "postgres").await,
            Some((p, _)) => Writer::start_through_pooler(&p.host, p.port, "postgres").await,
        }
        .map_err(|e| miette!("writer: {e}"))?;
        w.wait_for_more_acks(3000, Duration::from_secs(30))
            .await
            .map_err(|e| miette!("writer: {e}"))?;
        let report = match via {
            Via::Conflict { .. } => Some(conflict::make(&sb).await?),
            _ => None,
        };
        switch_topology(&sb, 1)?;
        if let Some((_, spec)) = &pooler {
            declare_pooler(&sb, spec)?;
        }
        if via == (Via::Conflict { cancel: true }) {
            sandbox::edit_topology(&sb.topology, |f| {
                f.switchover.cancel_conflicting_queries = true;
            })?;
        }
        ssh::declare_ssh(&sb.topology, &sshds)?;
        let frozen = match opts.fault {
            None => None,
            Some(_) => {
                let mut t = std::fs::read_to_string(&sb.topology).into_diagnostic()?;
                t.push_str("switchover: {timeout: 5s}\n");
                std::fs::write(&sb.topology, t).into_diagnostic()?;
                Some(FrozenReceiver::freeze(&sb.nodes[1]).await?)
            }
        };
        let (t0, t0_sys) = (Instant::now(), std::time::SystemTime::now());
        let args = ["apply", "--auto-approve", "--format", "json"];
        let (status, events) = pgtopo_output(&sb.topology, &args).await?;
        let wall = t0.elapsed();
        drop(frozen);
        let refused = !status.success();
        if refused && report.is_none() && opts.fault.is_none() {
            return Err(failed(&args, status));
        }
        w.wait_for_more_acks(3000, Duration::from_secs(30))
            .await
            .map_err(|e| miette!("writer: {e}"))?;
        let log = w.stop().await;
        drop(report);
        // A refused or failed apply (a conflict, a fault) leaves the old primary primary.
        let primary = &sb.nodes[usize::from(status.success())];
        let lost = lost_writes(&primary.host, primary.port, "postgres", &log)
            .await
            .map_err(|e| miette!("verify: {e}"))?;
        let gap = log
            .max_gap()
            .ok_or_else(|| miette!("the writer acknowledged nothing"))?;
        let rel = |t: Instant| {
            t.checked_duration_since(t0)
                .map(|d| d.as_secs_f64())
                .unwrap_or(-(t0 - t).as_secs_f64())
        };
        Ok(SwitchoverRun {
            fault: opts.fault.map(|_| "partition-candidate"),
            switched_over: status.success(),
            tool: via.tool(),
            transport: if opts.ssh.is_some() { "ssh" } else { "local" },
            write_unavailable_s: gap.length.as_secs_f64(),
            switchover_wall_s: wall.as_secs_f64(),
            acked: log.acks.len(),
            lost: lost.len(),
            errors: log.errors,
            refused,
            gap_start_rel_s: rel(gap.start),
            gap_end_rel_s: rel(gap.end),
            breakdown: breakdown::Breakdown::from_events(
                &events,
                t0_sys,
                gap.end.saturating_duration_since(t0),
            ),
        })
    }
    .await;
    sandbox::down(&sb.dir).await?;
    r
}

/// With `on`, an sshd in front of every node of `sb` and its topology file saying so; the
/// sshds end when the returned value is dropped.
/// The sshds start together, then each is waited for.
async fn behind_ssh(sb: &Sandbox, how: Option<&BenchSsh>) -> Result<Vec<ssh::NodeSshd>> {
    let Some(how) = how else {
        return Ok(Vec::new());
    };
    let sshds = sb
        .nodes
        .iter()
        .map(|n| {
            let port = std::net::TcpListener::bind((n.host.as_str(), 0))
                .and_then(|l| l.local_addr())
                .into_diagnostic()?
                .port();
            ssh::NodeSshd::start(n, port, &sb.dir.join(format!("sshd-{}", n.name)), how)
        })
        .collect::<Result<Vec<_>>>()?;
    for sshd in &sshds {
        sshd.wait_listening().await?;
    }
    ssh::declare_ssh(&sb.topology, &sshds)?;
    Ok(sshds)
}

fn median_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let mid = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (mid, v[0], v[v.len() - 1])
}

/// `pgtopo bench switchover`.
pub async fn bench_switchover(opts: &BenchOptions) -> Result<bool> {
    let vias = match (opts.pooler, opts.conflict) {
        (true, _) => vec![Via::Pooler { pause: true }, Via::Pooler { pause: false }],
        (false, true) => vec![
            Via::Conflict { cancel: false },
            Via::Conflict { cancel: true },
            Via::Direct,
        ],
        (false, false) => vec![Via::Direct],
    };
    let mut ok = true;
    for via in vias {
        ok &= bench_switchover_via(opts, via).await?;
    }
    Ok(ok)
}

async fn bench_switchover_via(opts: &BenchOptions, via: Via) -> Result<bool> {
    let mut runs = Vec::new();
    for i in 1..=opts.runs.max(1) {
        let r = switchover_run(opts, i, via).await?;
        let line = serde_json::to_string(&r).into_diagnostic()?;
        println!("{line}");
        println!("  {}", r.breakdown.describe());
        if let Some(p) = &opts.results {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .into_diagnostic()?;
            writeln!(f, "{line}").into_diagnostic()?;
        }
        runs.push(r);
    }
    let (m, lo, hi) = median_range(runs.iter().map(|r| r.write_unavailable_s).collect());
    let (wm, wlo, whi) = median_range(runs.iter().map(|r| r.switchover_wall_s).collect());
    let lost: usize = runs.iter().map(|r| r.lost).sum();
    let acked: usize = runs.iter().map(|r| r.acked).sum();
    let errors: Vec<u64> = runs.iter().map(|r| r.errors).collect();
    let refused = runs.iter().filter(|r| r.refused).count();
    let refused = match refused {
        0 => String::new(),
        n => format!("; {n} of them refused before the stop (the primary did not change)"),
    };
    println!(
        "\n{}: {} runs{refused}: writes unavailable (longest commit wait) {m:.3} s median ({lo:.3}-{hi:.3}); apply wall {wm:.3} s ({wlo:.3}-{whi:.3}); \
         {acked} writes acknowledged, {lost} lost; failed client transactions per run {errors:?}",
        via.tool(),
        runs.len()
    );
    Ok(lost == 0)
}

/// `pgtopo bench build`: wall time of an apply that builds 1 standby, then one that builds 2.
pub async fn bench_build(opts: &BenchOptions) -> Result<()> {
    for standbys in [1usize, 2] {
        let mut walls = Vec::new();
        for i in 1..=opts.runs.max(1) {
            let (_tmp, dir) = scratch(&opts.dir, &format!("build{standbys}-{i}"))?;
            let sb = sandbox::up(&UpOptions {
                dir,
                nodes: standbys + 1,
                port: opts.port,
                bin_dir: opts.bin_dir.clone(),
            })
            .await?;
            let sshds = behind_ssh(&sb, opts.ssh.as_ref()).await;
            let t = Instant::now();
            let r = match &sshds {
                Ok(_) => pgtopo_ok(&sb.topology, &["apply", "--auto-approve"], Child::Quiet).await,
                Err(e) => Err(miette!("{e}")),
            };
            walls.push(t.elapsed().as_secs_f64());
            sandbox::down(&sb.dir).await?;
            r?;
        }
        let (m, lo, hi) = median_range(walls);
        println!(
            "build {standbys} standby(s): apply wall {m:.3} s median ({lo:.3}-{hi:.3}), {} runs",
            opts.runs.max(1)
        );
    }
    Ok(())
}
