//! `georouter topic create|list|describe|delete`.

use anyhow::Result;
use clap::Subcommand;

use super::{BrokerArg, connect};

#[derive(Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Retention by size per origin sub-log, in bytes (0 = unlimited).
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// Retention by age, in milliseconds (0 = unlimited).
        #[arg(long)]
        retention_ms: Option<u64>,
        /// What producers of the RocketMQ access point may send: normal, fifo, delay or
        /// transaction.
        #[arg(long, default_value = "normal")]
        message_type: String,
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// List topics.
    List {
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// Per partition and origin: start and end offsets, bytes, segments.
    Describe {
        name: String,
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// Delete a topic and its data in this region.
    Delete {
        name: String,
        #[command(flatten)]
        broker: BrokerArg,
    },
}

pub async fn run(command: TopicCommand) -> Result<()> {
    match command {
        TopicCommand::Create {
            name,
            partitions,
            retention_bytes,
            retention_ms,
            message_type,
            broker,
        } => {
            let retention = (retention_bytes.is_some() || retention_ms.is_some()).then(|| {
                client::pb::RetentionPolicy {
                    max_bytes: retention_bytes.unwrap_or(0),
                    max_age_ms: retention_ms.unwrap_or(0),
                }
            });
            let topic = connect(&broker)
                .await?
                .create_topic_of(&name, partitions, retention, &message_type)
                .await?;
            println!(
                "created topic {} with {} partitions ({} messages)",
                topic.name, topic.partitions, topic.message_type
            );
        }
        TopicCommand::List { broker } => {
            for topic in connect(&broker).await?.list_topics().await? {
                println!("{}\t{} partitions", topic.name, topic.partitions);
            }
        }
        TopicCommand::Describe { name, broker } => {
            let d = connect(&broker).await?.describe_topic(&name).await?;
            let topic = d.topic.unwrap_or_default();
            let r = topic.retention.unwrap_or_default();
            println!(
                "topic {}: {} partitions, retention {} bytes / {} ms (0 = unlimited), incarnation {}",
                topic.name, topic.partitions, r.max_bytes, r.max_age_ms, topic.incarnation
            );
            println!(
                "{:>9}  {:<16} {:>12} {:>12} {:>14} {:>8}  incarnation",
                "partition", "origin", "start", "end", "bytes", "segments"
            );
            for p in d.partitions {
                if p.sub_logs.is_empty() {
                    println!("{:>9}  (empty)", p.partition);
                }
                for s in p.sub_logs {
                    println!(
                        "{:>9}  {:<16} {:>12} {:>12} {:>14} {:>8}  {}",
                        p.partition,
                        s.origin,
                        s.start_offset,
                        s.end_offset,
                        s.bytes,
                        s.segments,
                        s.incarnation
                    );
                }
            }
        }
        TopicCommand::Delete { name, broker } => {
            connect(&broker).await?.delete_topic(&name).await?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}
