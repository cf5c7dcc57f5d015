//! clap argument types. Low-level: they only parse and validate shapes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Plan and apply PostgreSQL streaming-replication topologies.
#[derive(Debug, Parser)]
#[command(name = "pgtopo", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Topology file; `validate`, `status`, `plan`, `drift` and `watch` take a directory (every
    /// `*.yaml` / `*.yml` in it) or the option repeated, and report on every cluster at once.
    #[arg(
        short = 'f',
        long = "file",
        env = "PGTOPO_FILE",
        default_value = "topology.yaml",
        global = true
    )]
    pub file: Vec<PathBuf>,
    /// Never colour output (also NO_COLOR).
    #[arg(long, global = true)]
    pub no_color: bool,
    /// More output (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the topology file and report every problem.
    Validate(FleetArgs),
    /// Print the JSON Schema of the topology file (or of a plan / observed recording).
    Schema(SchemaArgs),
    /// Show the live cluster as a tree.
    Status(StatusArgs),
    /// Record the observed state as JSON.
    Observe(ObserveArgs),
    /// Show what apply would do.
    Plan(PlanArgs),
    /// Render a saved plan.
    Show(ShowArgs),
    /// Print the step DAG of a plan (Graphviz DOT or mermaid).
    Graph(GraphArgs),
    /// Make the cluster match the topology file.
    Apply(ApplyArgs),
    /// Report where the live cluster no longer matches the file (exit 2 when it does not).
    Drift(DriftArgs),
    /// Read every cluster on a schedule and serve /metrics, /healthz and an HTML overview
    /// (read-only; runs until Ctrl-C or SIGTERM).
    Watch(WatchArgs),
    /// Remove the apply lock left by a holder that is gone.
    Unlock,
    /// Write a topology file that matches an existing cluster.
    Import(ImportArgs),
    /// Local clusters to try pgtopo on.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
    /// The whole story on a sandbox: build, write, switch over, verify, tear down.
    Demo(DemoArgs),
    /// Measure a switchover on a sandbox under a writer.
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page (roff): pgtopo(1), or pgtopo-COMMAND(1) for one command.
    Man(ManArgs),
}

impl Command {
    /// The subcommand's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Validate(_) => "validate",
            Command::Schema(_) => "schema",
            Command::Status(_) => "status",
            Command::Observe(_) => "observe",
            Command::Plan(_) => "plan",
            Command::Show(_) => "show",
            Command::Graph(_) => "graph",
            Command::Apply(_) => "apply",
            Command::Drift(_) => "drift",
            Command::Watch(_) => "watch",
            Command::Unlock => "unlock",
            Command::Import(_) => "import",
            Command::Sandbox(_) => "sandbox",
            Command::Demo(_) => "demo",
            Command::Bench(_) => "bench",
            Command::Completions(_) => "completions",
            Command::Man(_) => "man",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SchemaKind {
    #[default]
    Topology,
    Plan,
    Observed,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema.
    #[arg(value_enum, default_value_t = SchemaKind::Topology)]
    pub kind: SchemaKind,
}

/// How the reading commands go over several clusters.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Clusters read at once when given several files or a directory.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallelism: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum StatusFormat {
    #[default]
    Text,
    Json,
    /// OpenMetrics text (node_exporter's textfile collector, `promtool check metrics`).
    Prometheus,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct ObserveArgs {
    /// Where to write the recording (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum PlanFormat {
    #[default]
    Text,
    Json,
    Markdown,
}

/// How a plan is computed: the options `plan` and `graph` share.
#[derive(Debug, Args)]
pub struct PlanningArgs {
    /// Plan against a recording instead of the live cluster.
    #[arg(long)]
    pub observed: Option<PathBuf>,
    /// Consent to promote while the current primary is unreachable.
    #[arg(long)]
    pub allow_failover: bool,
    /// Plan as if this node were unreachable (repeatable).
    #[arg(long, value_name = "NODE")]
    pub assume_down: Vec<String>,
    /// Consent to a failover that would lose WAL acknowledged as synchronous.
    #[arg(long)]
    pub accept_data_loss: bool,
}

impl PlanningArgs {
    /// Whether any option was given (they mean nothing for a saved plan).
    pub fn any(&self) -> bool {
        self.observed.is_some()
            || self.allow_failover
            || !self.assume_down.is_empty()
            || self.accept_data_loss
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub planning: PlanningArgs,
    /// Save the plan (JSON) for `pgtopo apply PLAN`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Exit 2 when there are changes, 0 when there are none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub plan: PathBuf,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum GraphFormat {
    /// Graphviz DOT.
    #[default]
    Dot,
    /// A mermaid flowchart (GitHub and GitLab render it in markdown).
    Mermaid,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// A saved plan; without it the current plan is computed.
    pub plan: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    #[command(flatten)]
    pub planning: PlanningArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ApplyFormat {
    /// Progress for people: live lines on a terminal, timestamped lines elsewhere.
    #[default]
    Text,
    /// One JSON event per line on stdout (schemas/apply-events.schema.json).
    Json,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A saved, reviewed plan to apply exactly.
    pub plan: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ApplyFormat::Text)]
    pub format: ApplyFormat,
    /// Do not ask for `yes`.
    #[arg(long)]
    pub auto_approve: bool,
    /// Steps run at once where the DAG allows.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Append a JSON-lines journal of every step here.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// Wait this long for another apply's lock instead of failing at once (e.g. 30s).
    #[arg(long)]
    pub lock_timeout: Option<crate::units::Duration>,
    #[arg(long)]
    pub allow_failover: bool,
    /// Consent to a failover that would lose WAL acknowledged as synchronous.
    #[arg(long)]
    pub accept_data_loss: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DriftFormat {
    #[default]
    Text,
    Json,
    Markdown,
    /// OpenMetrics text (node_exporter's textfile collector, `promtool check metrics`).
    Prometheus,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[arg(long, value_enum, default_value_t = DriftFormat::Text)]
    pub format: DriftFormat,
    /// Compare with a recording instead of the live cluster.
    #[arg(long)]
    pub observed: Option<PathBuf>,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Time between the starts of two rounds of observation (e.g. 30s, 200ms).
    #[arg(long, default_value = "30s")]
    pub interval: crate::units::Duration,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:9816")]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A node of the cluster, HOST:PORT; repeat to add nodes that discovery cannot find (a
    /// standby on another port or machine).
    #[arg(long, required = true)]
    pub from: Vec<String>,
    /// Write the topology here (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Cluster name to write.
    #[arg(long, default_value = "imported")]
    pub cluster: String,
    /// User pgtopo connects as (written as `connect.user`).
    #[arg(long, default_value = "postgres")]
    pub user: String,
    /// Database pgtopo connects to (written as `connect.dbname`).
    #[arg(long, default_value = "postgres")]
    pub dbname: String,
    /// Environment variable that holds the connection password (written as
    /// `connect.password: {env: VAR}`; the value is never written).
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// File that holds the connection password (written as `connect.password: {file: PATH}`).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Environment variable of the replication password (written as
    /// `replication.password: {env: VAR}`).
    #[arg(long, value_name = "VAR")]
    pub replication_password_env: Option<String>,
    /// Ports to try for standbys found in pg_stat_replication (their client address with each
    /// port); the ports of the nodes found are always tried.
    #[arg(long = "port", value_name = "PORT", default_values_t = [5432u16])]
    pub ports: Vec<u16>,
    /// `postgres.bin_dir` to write (default: the running primary's own, from the pg_config view,
    /// else /usr/lib/postgresql/<major>/bin when it exists).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// `postgres.os_user` to write.
    #[arg(long)]
    pub os_user: Option<String>,
    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Initialise and start a primary under DIR and write DIR/topology.yaml with its standbys.
    Up(SandboxUpArgs),
    /// Stop every node the sandbox started and remove DIR.
    Down(SandboxDownArgs),
}

#[derive(Debug, Args)]
pub struct SandboxUpArgs {
    #[arg(long, default_value = "pgtopo-sandbox")]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// First port; node i uses port + i - 1.
    #[arg(long, default_value_t = 54320)]
    pub port: u16,
    /// PostgreSQL bin directory (default: pg_config, else /usr/lib/postgresql/*/bin).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SandboxDownArgs {
    #[arg(long, default_value = "pgtopo-sandbox")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, default_value_t = 54320)]
    pub port: u16,
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Keep the sandbox running afterwards.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Switchover of a 2-node cluster under a writer: writes-unavailable window, apply wall, loss.
    Switchover(BenchSwitchoverArgs),
    /// Wall time of an apply that builds 1 standby against one that builds 2 in parallel.
    Build(BenchSwitchoverArgs),
    /// Failover of a 2-node cluster whose primary crashed: from `apply --allow-failover`
    /// starting to the first write acknowledged on the new primary.
    Failover(BenchSwitchoverArgs),
}

#[derive(Debug, Args)]
pub struct BenchSwitchoverArgs {
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    #[arg(long, default_value_t = 55451)]
    pub port: u16,
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Append one JSON line per run here (same fields as shared/bench).
    #[arg(long)]
    pub results: Option<PathBuf>,
    /// Switchover: the writer goes through a pgbouncer that pgtopo pauses, routes and resumes;
    /// each run is repeated with the pooler routed but not paused, for comparison.
    #[arg(long)]
    pub pooler: bool,
    /// Switchover: a report session on the candidate blocks its replay (a lock held across a
    /// `TRUNCATE` on the primary); each run is repeated without the option
    /// `switchover.cancel_conflicting_queries` (refused before the stop), with it, and without
    /// the report session, for comparison.
    #[arg(long, conflicts_with = "pooler")]
    pub conflict: bool,
    /// Put every node behind an sshd of its own on its loopback address (needs root), so every
    /// command and file of the apply goes over SSH.
    #[arg(long)]
    pub ssh: bool,
    /// With --ssh: log in as this user (default root). `postgres` logs in as the nodes' os_user,
    /// whose shell reads no rc file here: the figure for a clean login.
    #[arg(long, requires = "ssh", default_value = "root")]
    pub ssh_user: String,
    /// With --ssh: a round trip of this many milliseconds between pgtopo and every sshd (a
    /// delaying proxy in front of each; SQL is not delayed).
    #[arg(long, requires = "ssh")]
    pub rtt_ms: Option<u64>,
    /// Switchover: inject a fault between plan and apply (with `switchover.timeout: 5s`).
    #[arg(long, value_enum)]
    pub fault: Option<crate::demo::BenchFault>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (e.g. `apply`); without it, pgtopo(1).
    pub command: Option<String>,
}
