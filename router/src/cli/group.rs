//! `georouter group create|list|show|delete|rewind`: consumer groups through the console
//! API (`--console HOST:PORT`, `--token`, `--json`). A change is shared with every region.
//! `create` on an existing group replaces its settings, sending the version it read.
//! `rewind` moves a group's cursor of one partition under a new epoch (cluster admin).

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use broker::catalog::GroupSpec;
use broker::catalog::groups::DEFAULT_MAX_ATTEMPTS;
use console_api::client::{Group, GroupList};

use super::task::ConsoleArg;

#[derive(clap::Subcommand)]
pub enum GroupCommand {
    /// List the groups created, with their settings.
    List(ConsoleArg),
    /// Show one group.
    Show {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Create a group, or change the settings of one that exists.
    Create {
        name: String,
        /// Consume each message group of a FIFO topic in order, one message at a time.
        #[arg(long)]
        fifo: bool,
        /// Deliveries of a message before it moves to the dead-letter topic %DLQ%<group>.
        #[arg(long, default_value_t = DEFAULT_MAX_ATTEMPTS)]
        max_attempts: u32,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Delete a group's settings (it consumes with the region's defaults again).
    Delete {
        name: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
    /// Move a group's cursor of one partition (usually back, to undo a bad commit), in
    /// every region a task syncs the group to. Stop the group's consumers first.
    Rewind {
        name: String,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 0)]
        partition: u32,
        /// ORIGIN=OFFSET: the next offset to read of an origin's sub-log (repeat per origin).
        #[arg(long = "to", required = true, value_parser = origin_offset)]
        to: Vec<(String, u64)>,
        #[command(flatten)]
        console: ConsoleArg,
    },
}

/// `ORIGIN=OFFSET`.
fn origin_offset(text: &str) -> Result<(String, u64)> {
    let (origin, offset) = text
        .split_once('=')
        .with_context(|| format!("--to {text:?}: expected ORIGIN=OFFSET"))?;
    let offset = offset
        .parse()
        .with_context(|| format!("--to {text:?}: {offset:?} is not an offset"))?;
    Ok((origin.to_string(), offset))
}

fn print(json: bool, group: &Group) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(group)?);
    } else {
        println!(
            "{:<32} {:<5} max attempts {:<4} v{} (changed in {})",
            group.name,
            if group.fifo { "fifo" } else { "-" },
            group.max_attempts,
            group.version,
            group.changed_by
        );
    }
    Ok(())
}

pub async fn run(command: GroupCommand) -> Result<()> {
    match command {
        GroupCommand::List(arg) => {
            let groups = arg.client().groups().await?;
            if arg.json {
                println!("{}", serde_json::to_string_pretty(&GroupList { groups })?);
            } else if groups.is_empty() {
                println!("no groups created (groups in use consume with the defaults)");
            } else {
                for group in &groups {
                    print(false, group)?;
                }
            }
        }
        GroupCommand::Show { name, console } => {
            print(console.json, &console.client().group(&name).await?)?;
        }
        GroupCommand::Create {
            name,
            fifo,
            max_attempts,
            console,
        } => {
            let client = console.client();
            let spec = GroupSpec {
                name: name.clone(),
                fifo,
                max_attempts,
            };
            let group = match client.group(&name).await {
                Ok(current) => client.put_group(&spec, Some(current.version)).await?,
                Err(e) if e.status() == Some(404) => client.create_group(&spec).await?,
                Err(e) => return Err(e.into()),
            };
            print(console.json, &group)?;
        }
        GroupCommand::Rewind {
            name,
            topic,
            partition,
            to,
            console,
        } => {
            let next: BTreeMap<String, u64> = to.into_iter().collect();
            let rewound = console
                .client()
                .rewind_group(&name, &topic, partition, &next)
                .await?;
            if console.json {
                println!("{}", serde_json::to_string_pretty(&rewound)?);
            } else {
                println!(
                    "group {name}, {topic} partition {partition}: {:?} (epoch {})",
                    rewound.next, rewound.epoch
                );
            }
        }
        GroupCommand::Delete { name, console } => {
            let client = console.client();
            let current = client.group(&name).await?;
            client.delete_group(&name, current.version).await?;
            if !console.json {
                println!("group {name} deleted");
            }
        }
    }
    Ok(())
}
