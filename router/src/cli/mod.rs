//! Command-line interface. The command forms are a contract for scripts; see README.md.

mod bench;
mod bench_engines;
mod bench_replicate;
mod bench_rocketmq;
mod bench_timers;
mod bench_wan;
mod certs;
mod consume;
mod failover;
mod group;
mod message;
mod produce;
mod repair;
mod scenario;
mod serve;
mod soak;
pub mod status;
mod task;
mod topic;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "georouter",
    version,
    about = "A geo-replicating message router"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text, or as one JSON object each (timestamp, level, target, message
    /// and fields), for log pipelines.
    #[arg(
        long,
        env = "GEOROUTER_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where the client commands connect.
#[derive(clap::Args, Clone)]
pub struct BrokerArg {
    /// The region broker's gRPC address.
    #[arg(
        long,
        env = "GEOROUTER_BROKER",
        default_value = "127.0.0.1:7100",
        global = true
    )]
    broker: String,
    /// The principal to call as: `<access key>:<secret>` (a node given no principal made an
    /// admin credential in `<data dir>/admin.credential` at its first start).
    #[arg(
        long,
        env = "GEOROUTER_CREDENTIAL",
        hide_env_values = true,
        global = true
    )]
    credential: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one region node.
    Serve(serve::ServeArgs),
    /// Manage topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Produce records: one per stdin line, or generated with --count and --size.
    Produce(produce::ProduceArgs),
    /// Consume records.
    Consume(consume::ConsumeArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Create a deployment CA and region certificates for replication links.
    Certs(certs::CertsArgs),
    /// Manage replication tasks through a region's console API.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Manage consumer groups' settings (FIFO, max attempts) through a region's console API.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// One screen of a region: links, routes, tasks with lag, RPO, stalled sub-logs, bytes
    /// held (through its console API; --json for scripts).
    Status(status::StatusArgs),
    /// Look messages of a topic up (by id, key, store time) through a region's console API.
    #[command(subcommand)]
    Message(message::MessageCommand),
    /// Promote the region whose console is called to primary of a DR task.
    Failover(failover::FailoverArgs),
    /// Return a DR task to its first source (run against that region's console).
    Failback(failover::FailbackArgs),
    /// Repair damaged segments of a stopped node's partition (skip the damage, or cut it
    /// for replication to pull again).
    Repair(repair::RepairArgs),
    /// Run a multi-region scenario over emulated WAN links and report on it.
    Scenario(scenario::ScenarioArgs),
    /// A randomized soak: topic re-creation, link cuts, kills and restarts across three
    /// regions, then every region must converge.
    Soak(soak::SoakArgs),
    /// Active-active across three in-process regions with 30 ms links, with a report.
    Demo(scenario::DemoArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Serve(_)), cli.log_format);
    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Topic(command) => topic::run(command).await,
            Command::Produce(args) => produce::run(args).await,
            Command::Consume(args) => consume::run(args).await,
            Command::Bench(command) => bench::run(command).await,
            Command::Certs(args) => certs::run(args),
            Command::Task(command) => task::run(command).await,
            Command::Group(command) => group::run(command).await,
            Command::Message(command) => message::run(command).await,
            Command::Status(args) => status::run(args).await,
            Command::Failover(args) => failover::failover(args).await,
            Command::Failback(args) => failover::failback(args).await,
            Command::Repair(args) => repair::run(args),
            Command::Scenario(args) => scenario::run(args).await,
            Command::Demo(args) => scenario::demo(args).await,
            Command::Soak(args) => soak::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, as text or JSON lines; `RUST_LOG` overrides the level (info for
/// serve, warn otherwise).
fn init_tracing(serving: bool, format: LogFormat) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
}

async fn connect(broker: &BrokerArg) -> anyhow::Result<client::Client> {
    Ok(client::Client::connect_as(&broker.broker, broker.credential.as_deref()).await?)
}

/// Raises the soft limit on open files to the hard one, before storage sizes its bound on
/// descriptors from it (a quarter of the soft limit; `broker::storage::open_files`): the
/// soft limit is often 1 024 where the hard one is far higher, and a region with a few
/// hundred partitions would otherwise reopen files all the time.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(event = "open_file_limit_kept", soft, hard, error = %e, "cannot raise the soft limit on open files");
    }
}
