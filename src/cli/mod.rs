//! Command-line surface: clap types, and the wiring of phases for each command
//! (config → observe → diff → plan → render | apply). No domain rules and no formatting here:
//! those live in the phase modules and in `render`.

mod apply_cmd;
mod args;
mod docs_cmd;
mod import_cmd;
mod observe_cmd;
mod output;
mod plan_cmd;
pub mod schema;
mod watch_cmd;

pub use args::*;
pub use docs_cmd::{completions_text, man_text};

use std::process::ExitCode;

use crate::render::OutputOptions;

/// Exit codes of SPEC §3.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const CHANGES: u8 = 2;
    pub const STALE: u8 = 3;
    pub const LOCKED: u8 = 4;
    pub const NOT_APPROVED: u8 = 5;
}

/// A command's failure: the diagnostic to print and the exit code to return.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub report: miette::Report,
}

impl From<miette::Report> for Failure {
    fn from(report: miette::Report) -> Self {
        Failure {
            code: exit::ERROR,
            report,
        }
    }
}

/// What a command returns: its exit code on success (0 or 2), or a failure.
pub type CmdResult = Result<u8, Failure>;

impl GlobalArgs {
    /// The one topology file of a command that acts on one cluster; several files or a
    /// directory are refused (exit 1) before anything is read.
    pub fn one_file(&self, command: &str) -> miette::Result<std::path::PathBuf> {
        match crate::fleet::targets(&self.file)? {
            crate::fleet::Targets::One(f) => Ok(f),
            crate::fleet::Targets::Many(files) => Err(miette::miette!(
                help = "run it once per topology file; `validate`, `status`, `plan` and `drift` \
                        take several",
                "`pgtopo {command}` acts on one cluster per run, and -f names {} topology files",
                files.len()
            )),
        }
    }
}

/// The exit code of a fleet report (SPEC §9): 1 when a cluster could not be read — the report
/// is incomplete, and a CI job must not take it for a finished check — over 2 when a cluster
/// drifted or has changes, over 0.
pub fn fleet_exit<T: crate::fleet::Reading>(f: &crate::fleet::Fleet<T>) -> u8 {
    if f.any_error() {
        exit::ERROR
    } else if f.any_changed() {
        exit::CHANGES
    } else {
        exit::OK
    }
}

/// Parse arguments, run the command, map the outcome to an exit code.
pub fn run() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let out = output::init(&cli.global);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        let outcome = dispatch(cli, out).await;
        crate::transport::ssh::close_all().await;
        outcome
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("{:?}", f.report);
            ExitCode::from(f.code)
        }
    }
}

/// Run one command with the output options `output::init` decided.
async fn dispatch(cli: Cli, out: OutputOptions) -> CmdResult {
    let g = &cli.global;
    match cli.command {
        Command::Validate(a) => commands::validate(g, out, a).await,
        Command::Schema(a) => commands::schema(g, a).await,
        Command::Status(a) => observe_cmd::status(g, out, a).await,
        Command::Observe(a) => observe_cmd::observe_cmd(g, out, a).await,
        Command::Sandbox(c) => observe_cmd::sandbox(g, out, c).await,
        Command::Plan(a) => plan_cmd::plan(g, out, a).await,
        Command::Show(a) => plan_cmd::show(g, out, a).await,
        Command::Graph(a) => plan_cmd::graph(g, a).await,
        Command::Drift(a) => plan_cmd::drift(g, out, a).await,
        Command::Watch(a) => watch_cmd::watch(g, out, a).await,
        Command::Import(a) => import_cmd::import(g, out, a).await,
        Command::Demo(a) => commands::demo(out, a).await,
        Command::Bench(a) => commands::bench(a).await,
        Command::Apply(a) => apply_cmd::apply(g, out, a).await,
        Command::Unlock => apply_cmd::unlock(g, out).await,
        Command::Completions(a) => docs_cmd::completions(a).await,
        Command::Man(a) => docs_cmd::man(a).await,
    }
}

mod commands {
    use super::*;

    pub async fn demo(out: OutputOptions, a: DemoArgs) -> CmdResult {
        let opts = crate::demo::DemoOptions {
            dir: a.dir,
            port: a.port,
            bin_dir: a.bin_dir,
            keep: a.keep,
            color: out.color,
        };
        crate::demo::demo(&opts).await?;
        Ok(exit::OK)
    }

    pub async fn bench(a: BenchArgs) -> CmdResult {
        let (BenchCommand::Switchover(b) | BenchCommand::Build(b) | BenchCommand::Failover(b)) =
            &a.what;
        let opts = crate::demo::BenchOptions {
            runs: b.runs,
            port: b.port,
            bin_dir: b.bin_dir.clone(),
            dir: b.dir.clone(),
            results: b.results.clone(),
            pooler: b.pooler,
            conflict: b.conflict,
            ssh: b.ssh.then(|| crate::demo::BenchSsh {
                user: b.ssh_user.clone(),
                rtt: b.rtt_ms.map(std::time::Duration::from_millis),
            }),
            fault: b.fault,
        };
        match a.what {
            BenchCommand::Switchover(_) => match crate::demo::bench_switchover(&opts).await? {
                true => Ok(exit::OK),
                false => Err(miette::miette!("acknowledged writes were lost").into()),
            },
            BenchCommand::Build(_) => crate::demo::bench_build(&opts)
                .await
                .map(|_| exit::OK)
                .map_err(Into::into),
            BenchCommand::Failover(_) => crate::demo::failover_bench::bench_failover(&opts)
                .await
                .map(|_| exit::OK)
                .map_err(Into::into),
        }
    }

    /// `pgtopo validate`: one file's line, or the fleet report.
    pub async fn validate(g: &GlobalArgs, out: OutputOptions, a: FleetArgs) -> CmdResult {
        use crate::fleet::{read_all, targets, Targets};
        match targets(&g.file)? {
            Targets::One(f) => {
                out.say(&crate::render::fleet::valid_line(&validated(f)?));
                Ok(exit::OK)
            }
            Targets::Many(files) => {
                let fleet =
                    read_all(&files, a.parallelism.into(), |f| async { validated(f) }).await;
                print!("{}", crate::render::fleet::text(&fleet, out.color));
                Ok(fleet_exit(&fleet))
            }
        }
    }

    /// One cluster's `validate`.
    fn validated(file: std::path::PathBuf) -> miette::Result<crate::fleet::Validated> {
        let desired = crate::config::load(&file)?;
        Ok(crate::fleet::Validated { file, desired })
    }

    pub async fn schema(_g: &GlobalArgs, a: SchemaArgs) -> CmdResult {
        use super::schema::{text, Kind};
        let kind = match a.kind {
            SchemaKind::Topology => Kind::Topology,
            SchemaKind::Plan => Kind::Plan,
            SchemaKind::Observed => Kind::Observed,
        };
        // Data for editors and tools: printed even with -q.
        print!("{}", text(kind));
        Ok(exit::OK)
    }
}
