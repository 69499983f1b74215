//! `georouter bench timers`: delay messages and transactions in an embedded broker on a
//! temporary data dir (sled metadata, each durable write flushed), beside the disk's
//! fdatasync latency measured in the same run:
//!
//! 1. **hold**: `--held` messages due 1 to 40 days from now, scheduled `--batch` at a time
//!    (one durable write each): messages held per second, and the data dir's size after;
//! 2. **fire**: `--fire` more messages due evenly over the next `--window-s` seconds, fired
//!    by the timer loop while the millions wait: each one's firing error (its store time
//!    minus its due time) p50/p99/max, and messages fired per second;
//! 3. **transactions**: `--transactions` half messages held and committed `--batch` at a time,
//!    until every one is appended: transactions per second, end to end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use broker::meta::{Retention, SledMetaStore};
use broker::storage::RecordFilter;
use broker::storage::StorageConfig;
use broker::{Broker, BrokerConfig, Cursor, Record, Scheduled};
use tokio_util::sync::CancellationToken;

use super::bench::{Quantiles, latency_histogram, write_json};
use super::bench_rocketmq::fsync_latency;

#[derive(clap::Args)]
pub struct TimersBench {
    /// Messages held far ahead while the others fire.
    #[arg(long, default_value_t = 1_000_000)]
    held: u64,
    /// Messages fired in the measured window.
    #[arg(long, default_value_t = 50_000)]
    fire: u64,
    /// The window the fired messages are due in, in seconds.
    #[arg(long, default_value_t = 5)]
    window_s: u64,
    /// Transactions held and committed.
    #[arg(long, default_value_t = 5_000)]
    transactions: u64,
    /// Messages per durable write (schedule, hold, commit).
    #[arg(long, default_value_t = 1_000)]
    batch: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const TOPIC: &str = "later";

fn now_ms() -> u64 {
    u64::try_from(broker::record::now_ms()).unwrap_or(0)
}

fn scheduled(index: u64, due_ms: u64, size: usize) -> Scheduled {
    Scheduled {
        partition: 0,
        message_id: index.to_string(),
        due_ms,
        record: Record {
            body: vec![b'x'; size].into(),
            properties: [("due_ms".to_string(), due_ms.to_string())].into(),
            ..Default::default()
        },
    }
}

/// Every record appended to the topic so far, with its store time.
fn appended(broker: &Broker) -> Result<Vec<Record>> {
    let partition = broker.partition(TOPIC, 0)?;
    let mut reader = partition.reader(Cursor::default(), RecordFilter::default());
    let mut out = Vec::new();
    loop {
        let read = reader.read(8 << 20)?;
        let empty = read.records.is_empty();
        out.extend(read.records.into_iter().map(|r| r.record));
        if read.caught_up || empty {
            return Ok(out);
        }
    }
}

async fn wait_appended(broker: &Broker, count: usize, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while appended(broker)?.len() < count {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: not all appended in 10 min"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    walk(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

pub async fn run(args: TimersBench) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let fsync = Quantiles::of(&fsync_latency(temp.path(), 500)?);
    let meta = SledMetaStore::open(&temp.path().join("meta")).context("opening the metadata")?;
    let config = BrokerConfig {
        region: "bench".into(),
        data_dir: temp.path().join("data"),
        storage: StorageConfig::default(),
        default_retention: Retention::default(),
    };
    let broker = Arc::new(Broker::open(config, Arc::new(meta))?);
    broker.create_topic(TOPIC, 1, None)?;
    let stop = CancellationToken::new();
    let timers = tokio::spawn(broker.clone().run_timers(stop.clone()));

    // 1. Held far ahead.
    let started = Instant::now();
    let day = 86_400_000;
    let base = now_ms();
    let mut index = 0;
    while index < args.held {
        let n = args.batch.min(args.held - index);
        let batch = (index..index + n)
            .map(|i| scheduled(i, base + day + (i * 7919) % (39 * day), args.size))
            .collect();
        broker.schedule(TOPIC, batch).await?;
        index += n;
    }
    let hold_s = started.elapsed().as_secs_f64();
    let held_per_s = args.held as f64 / hold_s;
    let held_bytes = dir_bytes(temp.path());

    // 2. Due now, fired while the others wait.
    let window = args.window_s * 1000;
    let first_due = now_ms() + 1000;
    let mut index = 0;
    while index < args.fire {
        let n = args.batch.min(args.fire - index);
        let batch = (index..index + n)
            .map(|i| scheduled(i, first_due + i * window / args.fire.max(1), args.size))
            .collect();
        broker.schedule(TOPIC, batch).await?;
        index += n;
    }
    wait_appended(&broker, args.fire as usize, "fire").await?;
    let fired = appended(&broker)?;
    let mut error = latency_histogram()?;
    let (mut first_store, mut last_store) = (i64::MAX, 0);
    for r in &fired {
        let due: i64 = r.properties["due_ms"].parse()?;
        error.record(((r.timestamp_ms - due).max(0) as u64 * 1000).max(1))?;
        first_store = first_store.min(r.timestamp_ms);
        last_store = last_store.max(r.timestamp_ms);
    }
    let error = Quantiles::of(&error);
    let fired_per_s = args.fire as f64 / ((last_store - first_store).max(1) as f64 / 1000.0);

    // 3. Transactions: held, committed, appended.
    let started = Instant::now();
    let mut index = 0;
    while index < args.transactions {
        let n = args.batch.min(args.transactions - index);
        let batch = (index..index + n)
            .map(|i| scheduled(i, 0, args.size))
            .collect();
        let b = broker.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for id in b.hold_half(TOPIC, batch)? {
                b.end_transaction(TOPIC, &id, true)?;
            }
            Ok(())
        })
        .await??;
        index += n;
    }
    wait_appended(
        &broker,
        (args.fire + args.transactions) as usize,
        "transactions",
    )
    .await?;
    let transactions_per_s = args.transactions as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = timers.await;

    println!(
        "georouter bench timers ({} B bodies, {} per durable write)",
        args.size, args.batch
    );
    println!("  disk fdatasync of 4 KiB  {}", fsync.line());
    println!(
        "  held: {} messages due in 1-40 days at {:.0} msg/s ({:.1} s); data dir {:.1} MiB",
        args.held,
        held_per_s,
        hold_s,
        held_bytes as f64 / 1_048_576.0
    );
    println!(
        "  fired: {} messages due over {} s with those held, {:.0} msg/s; firing error {}",
        args.fire,
        args.window_s,
        fired_per_s,
        error.line()
    );
    println!(
        "  transactions: {} held and committed (each commit one durable write), {:.0} tx/s end to end",
        args.transactions, transactions_per_s
    );
    if let Some(path) = &args.json {
        write_json(
            path,
            &serde_json::json!({
                "fsync": fsync.json(),
                "held": args.held,
                "held_per_s": held_per_s,
                "held_bytes": held_bytes,
                "fired": args.fire,
                "fired_per_s": fired_per_s,
                "firing_error": error.json(),
                "transactions": args.transactions,
                "transactions_per_s": transactions_per_s,
            }),
        )?;
    }
    Ok(())
}
