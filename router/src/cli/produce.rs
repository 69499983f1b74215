//! `georouter produce TOPIC`: one record per stdin line, or `--count N --size BYTES`
//! generated records. Each request is acknowledged only once its records are durable.

use std::io::BufRead;

use anyhow::{Context, Result};
use client::{Partitioning, pb};

use super::{BrokerArg, connect};

#[derive(clap::Args)]
pub struct ProduceArgs {
    topic: String,
    /// Generate this many records instead of reading stdin.
    #[arg(long, requires = "size")]
    count: Option<u64>,
    /// Body size of generated records, in bytes.
    #[arg(long)]
    size: Option<usize>,
    /// Key of every record (records then go to hash(key) mod partitions).
    #[arg(long)]
    key: Option<String>,
    /// Tag of every record.
    #[arg(long)]
    tag: Option<String>,
    /// Send every record to this partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Records per produce request.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[command(flatten)]
    broker: BrokerArg,
}

pub async fn run(args: ProduceArgs) -> Result<()> {
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let client = connect(&args.broker).await?;
    let partitioning = args
        .partition
        .map_or(Partitioning::ByKey, Partitioning::Partition);
    let make = |body: Vec<u8>| pb::Record {
        key: args.key.as_ref().map(|k| k.as_bytes().to_vec()),
        tag: args.tag.clone(),
        body,
        ..Default::default()
    };
    let mut produced = 0u64;
    let mut pending = Vec::with_capacity(args.batch);
    let mut send = async |pending: &mut Vec<pb::Record>| -> Result<()> {
        if !pending.is_empty() {
            let n = pending.len() as u64;
            client
                .produce(&args.topic, std::mem::take(pending), partitioning)
                .await?;
            produced += n;
        }
        Ok(())
    };
    match args.count {
        Some(count) => {
            let size = args.size.unwrap_or(0);
            for i in 0..count {
                pending.push(make(generated_body(i, size)));
                if pending.len() == args.batch {
                    send(&mut pending).await?;
                }
            }
        }
        None => {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let line = line.context("reading stdin")?;
                pending.push(make(line.into_bytes()));
                if pending.len() == args.batch {
                    send(&mut pending).await?;
                }
            }
        }
    }
    send(&mut pending).await?;
    eprintln!("produced {produced} records to {}", args.topic);
    Ok(())
}

/// A body of `size` printable bytes that starts with the record's sequence number.
pub fn generated_body(seq: u64, size: usize) -> Vec<u8> {
    let mut body = format!("{seq:012}-").into_bytes();
    body.resize(size, b'x');
    body
}
