//! `georouter task create|list|show|pause|resume|delete`: the console API's task routes
//! from the command line (`--console HOST:PORT`, `--token`), with `--json` for scripts.
//! Changes read the task's version first and send it in `If-Match`, like the web console.

use anyhow::Result;
use console_api::client::{ConsoleClient, Task};
use replicator::{Direction, Dr, TaskSpec};

#[derive(clap::Args, Clone)]
pub struct ConsoleArg {
    /// The region's console address.
    #[arg(
        long,
        env = "GEOROUTER_CONSOLE",
        default_value = "127.0.0.1:7300",
        global = true
    )]
    console: String,
    /// A console bearer token (`[console] admin_tokens` or `read_tokens`).
    #[arg(long, env = "GEOROUTER_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

#[derive(clap::Subcommand)]
pub enum TaskCommand {
    /// List every task with its state and lag.
    List(ConsoleArg),
    /// Show one task with its per-sub-log status.
    Show {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Create a task.
    Create {
        #[command(flatten)]
        spec: Box<SpecArgs>,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Pause a task (it keeps its checkpoints).
    Pause {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Resume a paused task from its checkpoints.
    Resume {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Delete a task.
    Delete {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
}

#[derive(clap::Args)]
pub struct SpecArgs {
    /// Task name.
    name: String,
    /// Source regions, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    sources: Vec<String>,
    /// Target regions, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    targets: Vec<String>,
    /// Topic glob.
    #[arg(long)]
    topics: String,
    /// one-way or two-way.
    #[arg(long, default_value = "one-way")]
    direction: String,
    /// Topic name at the target; {topic} is the source name.
    #[arg(long)]
    rename: Option<String>,
    /// Only records with these tags, comma-separated.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Only records a SQL92 filter over their properties and tag passes (with --tags:
    /// both), e.g. "amount > 100 AND region IN ('eu')".
    #[arg(long)]
    sql: Option<String>,
    /// earliest, latest or an RFC 3339 time.
    #[arg(long, default_value = "earliest")]
    start: String,
    #[arg(long)]
    max_records_per_s: Option<u32>,
    #[arg(long)]
    max_bytes_per_s: Option<u32>,
    /// Make it a DR task with this region as its primary (the others are read-only).
    #[arg(long)]
    dr_primary: Option<String>,
    /// Consumer groups (a glob) whose cursors sync among the task's regions.
    #[arg(long)]
    groups: Option<String>,
}

impl ConsoleArg {
    pub(crate) fn client(&self) -> ConsoleClient {
        ConsoleClient::new(&self.console, self.token.as_deref())
    }
}

fn print_task(task: &Task) {
    let status = &task.status;
    println!(
        "{:<24} {:<8} v{:<4} {} -> {} topics {} lag {} records {:.1} s, {:.0} records/s{}",
        task.name,
        state_name(task),
        task.version,
        task.spec.sources.join(","),
        task.spec.targets.join(","),
        task.spec.topics,
        status.lag_records,
        status.lag_seconds,
        status.records_per_s,
        status
            .last_error
            .as_ref()
            .map(|e| format!(" (last error: {e})"))
            .unwrap_or_default(),
    );
}

fn state_name(task: &Task) -> &'static str {
    match task.state {
        replicator::TaskState::Running => "running",
        replicator::TaskState::Paused => "paused",
    }
}

fn output(json: bool, task: &Task) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(task)?);
    } else {
        print_task(task);
    }
    Ok(())
}

impl SpecArgs {
    fn spec(self) -> Result<TaskSpec> {
        let direction = match self.direction.as_str() {
            "one-way" => Direction::OneWay,
            "two-way" => Direction::TwoWay,
            other => anyhow::bail!("--direction is one-way or two-way, not {other:?}"),
        };
        let sources: Vec<&str> = self.sources.iter().map(String::as_str).collect();
        let targets: Vec<&str> = self.targets.iter().map(String::as_str).collect();
        Ok(TaskSpec {
            direction,
            rename: self.rename,
            tags: self.tags,
            sql: self.sql,
            start: self.start,
            max_records_per_s: self.max_records_per_s,
            max_bytes_per_s: self.max_bytes_per_s,
            dr: self.dr_primary.map(|primary| Dr {
                primary,
                epoch: 0,
                promoting: None,
            }),
            groups: self.groups,
            ..TaskSpec::new(&self.name, &sources, &targets, &self.topics)
        })
    }
}

pub async fn run(command: TaskCommand) -> Result<()> {
    match command {
        TaskCommand::List(arg) => {
            let tasks = arg.client().tasks().await?;
            if arg.json {
                let list = console_api::client::TaskList { tasks };
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if tasks.is_empty() {
                println!("no tasks");
            } else {
                tasks.iter().for_each(print_task);
            }
            Ok(())
        }
        TaskCommand::Show { name, console } => {
            let task = console.client().task(&name).await?;
            output(console.json, &task)?;
            if !console.json {
                for s in &task.status.sub_logs {
                    println!(
                        "  {}/{}@{}  from {}  local end {}  lag {} records",
                        s.topic,
                        s.partition,
                        s.origin,
                        s.source.as_deref().unwrap_or("-"),
                        s.local_end,
                        s.lag_records
                    );
                }
            }
            Ok(())
        }
        TaskCommand::Create { spec, console } => {
            let task = console.client().create_task(&spec.spec()?).await?;
            output(console.json, &task)
        }
        TaskCommand::Pause { name, console } => {
            let client = console.client();
            let current = client.task(&name).await?;
            let task = client.pause_task(&name, current.version).await?;
            output(console.json, &task)
        }
        TaskCommand::Resume { name, console } => {
            let client = console.client();
            let current = client.task(&name).await?;
            let task = client.resume_task(&name, current.version).await?;
            output(console.json, &task)
        }
        TaskCommand::Delete { name, console } => {
            let client = console.client();
            let current = client.task(&name).await?;
            client.delete_task(&name, current.version).await?;
            if console.json {
                println!("{}", serde_json::json!({"deleted": name}));
            } else {
                println!("deleted task {name}");
            }
            Ok(())
        }
    }
}
