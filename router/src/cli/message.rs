//! `georouter message query TOPIC [--id ID] [--key KEY] [--from TIME] [--to TIME]`:
//! messages of a topic through the console API (`GET /api/v1/topics/{topic}/messages`), by
//! identity (`origin-partition-offset`) or message id, key, and store time (RFC 3339).

use anyhow::Result;

use super::task::ConsoleArg;

#[derive(clap::Subcommand)]
pub enum MessageCommand {
    /// Look messages of a topic up.
    Query {
        topic: String,
        /// An identity (origin-partition-offset) or a RocketMQ message id.
        #[arg(long)]
        id: Option<String>,
        /// A record key, or one of a RocketMQ message's keys.
        #[arg(long)]
        key: Option<String>,
        /// Stored at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Stored before this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        console: ConsoleArg,
    },
}

pub async fn run(command: MessageCommand) -> Result<()> {
    let MessageCommand::Query {
        topic,
        id,
        key,
        from,
        to,
        limit,
        console,
    } = command;
    let limit = limit.to_string();
    let mut query: Vec<(&str, &str)> = vec![("limit", &limit)];
    for (name, value) in [("id", &id), ("key", &key), ("from", &from), ("to", &to)] {
        if let Some(value) = value {
            query.push((name, value));
        }
    }
    let answer = console.client().messages(&topic, &query).await?;
    if console.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let messages = answer["messages"].as_array().cloned().unwrap_or_default();
    for m in &messages {
        let body = m["body"]["text"].as_str().map_or_else(
            || format!("base64:{}", m["body"]["base64"].as_str().unwrap_or("")),
            str::to_string,
        );
        println!(
            "{}  t={}  tag={}  {}",
            m["id"].as_str().unwrap_or(""),
            m["timestamp_ms"],
            m["tag"].as_str().unwrap_or("-"),
            body
        );
    }
    if answer["complete"] != true {
        println!("(stopped early: raise --limit, or narrow with --from/--to)");
    } else if messages.is_empty() {
        println!("no message matches");
    }
    Ok(())
}
