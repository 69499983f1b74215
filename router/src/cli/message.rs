//! `georouter message query TOPIC [--id ID] [--key KEY] [--from TIME] [--to TIME]`:
//! messages of a topic through the console API (`GET /api/v1/topics/{topic}/messages`), by
//! identity (`origin-partition-offset`) or message id, key, and store time (RFC 3339).
//! `georouter message trace TOPIC ID`: one message's life across regions
//! (`GET /api/v1/topics/{topic}/messages/{id}/trace`).

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
    /// One message's life: produced, replicated, delivered, acknowledged, in time order.
    Trace {
        topic: String,
        /// The message's identity (origin-partition-offset).
        id: String,
        #[command(flatten)]
        console: ConsoleArg,
    },
}

pub async fn run(command: MessageCommand) -> Result<()> {
    let (topic, id, key, from, to, limit, console) = match command {
        MessageCommand::Trace { topic, id, console } => return trace(&topic, &id, &console).await,
        MessageCommand::Query {
            topic,
            id,
            key,
            from,
            to,
            limit,
            console,
        } => (topic, id, key, from, to, limit, console),
    };
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

async fn trace(topic: &str, id: &str, console: &ConsoleArg) -> Result<()> {
    let answer = console.client().trace(topic, id).await?;
    if console.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    for e in &events {
        let detail = e["detail"]
            .as_object()
            .map(|d| {
                d.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let at = u64::try_from(e["at_ms"].as_i64().unwrap_or(0)).unwrap_or(0);
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(at);
        println!(
            "{}  {:<13} {:<10} {detail}",
            humantime::format_rfc3339_millis(at),
            e["kind"].as_str().unwrap_or(""),
            e["region"].as_str().unwrap_or(""),
        );
    }
    if events.is_empty() {
        println!(
            "no trace of {id} here ({})",
            if answer["tracing"] == true {
                "is the identity right, and does a task carry georouter.trace here?"
            } else {
                "this region does not trace: [telemetry] trace = true"
            }
        );
    }
    if answer["complete"] != true {
        println!("(the trace topic was not read to its end)");
    }
    Ok(())
}
