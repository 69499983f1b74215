//! `georouter bench produce`: produce throughput and acknowledgement latency (fsync
//! included) against a running broker (`--broker`) or an embedded one (`--embedded`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use client::{Partitioning, pb};
use hdrhistogram::Histogram;

use super::BrokerArg;
use super::produce::generated_body;
use crate::config::NodeConfig;
use crate::node::Node;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Produce throughput and ack latency.
    Produce(ProduceBench),
    /// Replication between two embedded regions on loopback: throughput, catch-up of a
    /// fresh target over a backlog, and end-to-end lag at a paced rate.
    Replicate(super::bench_replicate::ReplicateBench),
    /// The RocketMQ 5 access point of an embedded region: send throughput beside the own
    /// API and the disk's fsync, paced ack latency, and send-to-receipt latency.
    Rocketmq(super::bench_rocketmq::RocketMqBench),
    /// Delay messages and transactions in an embedded broker: messages held per second
    /// with a million waiting, firing error and rate, transactions per second.
    Timers(super::bench_timers::TimersBench),
    /// Replication over the emulated WAN at several delays, beside the disk's limits.
    Wan(super::bench_wan::WanBench),
    /// The same load on a region with each storage engine (embedded, JetStream), with
    /// the CPU seconds per MB of every process, beside the disk's limits.
    Engines(super::bench_engines::EnginesBench),
}

#[derive(clap::Args)]
pub struct ProduceBench {
    /// Start a broker in this process (temporary data dir) instead of using --broker.
    #[arg(long)]
    embedded: bool,
    /// Records to produce in all.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Records per produce request.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Target records per second in all (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    #[command(flatten)]
    broker: BrokerArg,
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Produce(args) => produce(args).await,
        BenchCommand::Replicate(args) => super::bench_replicate::run(args).await,
        BenchCommand::Rocketmq(args) => super::bench_rocketmq::run(args).await,
        BenchCommand::Timers(args) => super::bench_timers::run(args).await,
        BenchCommand::Wan(args) => super::bench_wan::run(args).await,
        BenchCommand::Engines(args) => super::bench_engines::run(args).await,
    }
}

async fn produce(args: ProduceBench) -> Result<()> {
    let temp = tempfile::tempdir()?;
    let node = if args.embedded {
        Some(start_embedded(temp.path()).await?)
    } else {
        None
    };
    let address = node
        .as_ref()
        .map_or(args.broker.broker.clone(), |n| n.bound.grpc.to_string());
    let credential = if node.is_some() {
        None
    } else {
        args.broker.credential.as_deref()
    };
    let client = client::Client::connect_as(&address, credential).await?;
    let topic = format!("bench-{}", std::process::id());
    client
        .create_topic(&topic, args.partitions, None)
        .await
        .context("creating the benchmark topic")?;

    let load = Load {
        records: args.records,
        size: args.size,
        batch: args.batch,
        concurrency: args.concurrency,
        partitions: args.partitions,
        rate: args.rate,
    };
    let started = Instant::now();
    let latency = drive(&client, &topic, &load, None).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let records_per_s = args.records as f64 / elapsed;
    let mb_per_s = records_per_s * args.size as f64 / 1e6;
    println!(
        "produce: {} records of {} B, batch {}, concurrency {}, {} partitions{}{}",
        args.records,
        args.size,
        args.batch,
        args.concurrency,
        args.partitions,
        if args.rate > 0 {
            format!(", paced at {} records/s", args.rate)
        } else {
            String::new()
        },
        if args.embedded {
            ", embedded broker"
        } else {
            ""
        },
    );
    println!(
        "  throughput  {records_per_s:>12.0} records/s  {mb_per_s:>8.1} MB/s  ({elapsed:.2} s)"
    );
    let ack = Quantiles::of(&latency);
    println!("  ack latency {}  ({} requests)", ack.line(), latency.len());
    if let Some(path) = &args.json {
        let figures = serde_json::json!({
            "records": args.records, "size": args.size, "batch": args.batch, "concurrency": args.concurrency,
            "rate": args.rate, "records_per_s": records_per_s, "mb_per_s": mb_per_s,
            "ack_ms": ack.json(),
        });
        write_json(path, &figures)?;
    }
    client.delete_topic(&topic).await.ok();
    if let Some(node) = node {
        node.shut_down().await?;
    }
    Ok(())
}

/// A produce load: `records` records of `size` bytes in requests of `batch`, with
/// `concurrency` requests in flight, spread over `partitions`, paced at `rate` records/s
/// in all (0: as fast as possible).
pub(super) struct Load {
    pub records: u64,
    pub size: usize,
    pub batch: u64,
    pub concurrency: usize,
    pub partitions: u32,
    pub rate: u64,
}

/// Called with each acknowledged request's record ids and the time of the ack.
pub(super) type OnAck = Arc<dyn Fn(&[pb::RecordId], Instant) + Send + Sync>;

/// Runs a produce load to the end; returns the ack latency histogram (microseconds).
pub(super) async fn drive(
    client: &client::Client,
    topic: &str,
    load: &Load,
    on_ack: Option<OnAck>,
) -> Result<Histogram<u64>> {
    anyhow::ensure!(
        load.batch > 0 && load.concurrency > 0 && load.records > 0,
        "--records, --batch and --concurrency must be positive"
    );
    let requests = load.records.div_ceil(load.batch);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..load.concurrency {
        let (client, topic, next, on_ack) = (
            client.clone(),
            topic.to_string(),
            next.clone(),
            on_ack.clone(),
        );
        let (size, batch, records, rate, partitions) = (
            load.size,
            load.batch,
            load.records,
            load.rate,
            load.partitions,
        );
        workers.spawn(async move {
            let mut latency = latency_histogram()?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return Ok::<_, anyhow::Error>(latency);
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64((i * batch) as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let first = i * batch;
                let n = batch.min(records - first);
                let body = generated_body(first, size);
                let batch_records = (0..n)
                    .map(|_| pb::Record {
                        body: body.clone(),
                        ..Default::default()
                    })
                    .collect();
                let sent = Instant::now();
                let ids = client
                    .produce(
                        &topic,
                        batch_records,
                        Partitioning::Partition((i % u64::from(partitions)) as u32),
                    )
                    .await?;
                let acked = Instant::now();
                if let Some(on_ack) = &on_ack {
                    on_ack(&ids, acked);
                }
                latency.record((acked - sent).as_micros().max(1) as u64)?;
            }
        });
    }
    let mut latency = latency_histogram()?;
    while let Some(joined) = workers.join_next().await {
        latency.add(joined??)?;
    }
    Ok(latency)
}

/// A histogram of latencies in microseconds, 1 µs to 60 s, 3 significant digits.
pub(super) fn latency_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// The quantiles a benchmark reports of a microsecond histogram, in milliseconds.
pub(super) struct Quantiles {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Quantiles {
    pub(super) fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Quantiles {
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        }
    }

    pub(super) fn line(&self) -> String {
        format!(
            "p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
            self.p50, self.p99, self.p999, self.max
        )
    }

    /// `{p50, p99, p999, max}`, the form every `--json` report uses.
    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::json!({ "p50": self.p50, "p99": self.p99, "p999": self.p999, "max": self.max })
    }
}

/// Writes a benchmark's `--json` report.
pub(super) fn write_json(path: &std::path::Path, figures: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(figures)?)
        .with_context(|| format!("writing {}", path.display()))
}

async fn start_embedded(dir: &std::path::Path) -> Result<Node> {
    Node::start(NodeConfig::loopback("bench", dir)).await
}
