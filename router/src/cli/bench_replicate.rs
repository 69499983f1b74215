//! `georouter bench replicate`: two in-process regions ("source" and "target", a scenario
//! [`Cluster`] with direct links) on loopback joined by a real QUIC link with mutual TLS
//! and a one-way task, or (`--relay`) by two links through a third region that stores and
//! forwards or passes through.
//!
//! 1. Catch-up: a backlog is produced in the source before the target starts; measured
//!    from the target's start until it holds the whole backlog.
//! 2. Throughput: with the link up, records produced as fast as possible; measured from
//!    the first produce until the target holds everything.
//! 3. Lag: records produced at a paced rate; for each record, the time from its produce
//!    acknowledgement in the source to its delivery by a follow-fetch in the target.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use scenarios::cluster::{Cluster, ClusterPlan, Region};

use super::bench::{Load, OnAck, Quantiles, drive, latency_histogram, write_json};
use crate::launch::InProcess;

#[derive(clap::Args)]
pub struct ReplicateBench {
    /// Records of the backlog, and again of the throughput phase.
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Records per produce request in the backlog and throughput phases.
    #[arg(long, default_value_t = 200)]
    batch: u64,
    /// Produce requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Partitions of the benchmark topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Paced rate of the lag phase, records/s.
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Records per produce request in the lag phase.
    #[arg(long, default_value_t = 5)]
    paced_batch: u64,
    /// Duration of the lag phase, seconds.
    #[arg(long, default_value_t = 10)]
    paced_seconds: u64,
    /// A third region between source and target: none, store (store-and-forward) or
    /// pass-through (forwards without storing).
    #[arg(long, value_enum, default_value_t = RelayMode::None)]
    relay: RelayMode,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

const TOPIC: &str = "bench";

/// (partition, offset) of a record of the source's origin.
type RecordKey = (u32, u64);

/// What stands between the source and the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RelayMode {
    /// A direct link.
    None,
    /// A third region that stores and forwards.
    Store,
    /// A third region that forwards without storing.
    PassThrough,
}

/// Source and target on loopback, joined directly or through the relay, each region
/// dialling the one before it; one task from source to target.
fn plan(relay: RelayMode) -> ClusterPlan {
    let line: &[&str] = match relay {
        RelayMode::None => &["source", "target"],
        _ => &["source", "relay", "target"],
    };
    let mut residency = topology::ResidencySpec::default();
    if relay == RelayMode::PassThrough {
        residency.pass_through = vec!["relay".into()];
    }
    ClusterPlan {
        residency,
        ..ClusterPlan::direct(
            scenarios::deploy::line(line),
            vec![replicator::TaskSpec::new(
                "bench",
                &["source"],
                &["target"],
                TOPIC,
            )],
        )
    }
}

/// Waits until the target holds `records` of the source's origin.
async fn until_held(target: &Region, records: u64) -> Result<()> {
    while target.held(TOPIC, "source").await? < records {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

pub async fn run(args: ReplicateBench) -> Result<()> {
    let plan = plan(args.relay);
    let mut cluster = Cluster::start_only(&plan, &InProcess, &["source"]).await?;
    let producer = cluster.region("source").client.clone();
    producer.create_topic(TOPIC, args.partitions, None).await?;
    let load = |records, rate, batch| Load {
        records,
        size: args.size,
        batch,
        concurrency: args.concurrency,
        partitions: args.partitions,
        rate,
    };
    let mb = |records: u64, seconds: f64| records as f64 * args.size as f64 / 1e6 / seconds;

    // 1. Catch-up over a backlog.
    drive(&producer, TOPIC, &load(args.records, 0, args.batch), None).await?;
    let started = Instant::now();
    // A relay starts with the target, so catch-up runs through it.
    let later: &[&str] = match args.relay {
        RelayMode::None => &["target"],
        _ => &["relay", "target"],
    };
    cluster.start_regions(later, &InProcess).await?;
    let target = cluster.region("target");
    until_held(target, args.records).await?;
    let catchup_s = started.elapsed().as_secs_f64();
    let catchup_mb_per_s = mb(args.records, catchup_s);
    let catchup_records_per_s = args.records as f64 / catchup_s;

    // 2. Throughput with the link up.
    let started = Instant::now();
    drive(&producer, TOPIC, &load(args.records, 0, args.batch), None).await?;
    let produced_s = started.elapsed().as_secs_f64();
    until_held(target, 2 * args.records).await?;
    let live_s = started.elapsed().as_secs_f64();
    let records_per_s = args.records as f64 / live_s;
    let mb_per_s = mb(args.records, live_s);

    // 3. End-to-end lag at a paced rate.
    let mut stream = target
        .client
        .fetch(client::pb::FetchRequest {
            topic: TOPIC.into(),
            start: Some(client::latest()),
            follow: true,
            ..Default::default()
        })
        .await?;
    let paced_records = args.rate * args.paced_seconds;
    let seen: Arc<Mutex<Vec<(RecordKey, Instant)>>> = Arc::default();
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(response)) = stream.message().await {
                let now = Instant::now();
                let mut seen = seen.lock().expect("seen lock");
                seen.extend(
                    response
                        .records
                        .iter()
                        .map(|r| ((r.partition, r.offset), now)),
                );
                if seen.len() as u64 >= paced_records {
                    return;
                }
            }
        })
    };
    let acked: Arc<Mutex<HashMap<RecordKey, Instant>>> = Arc::default();
    let on_ack: OnAck = {
        let acked = acked.clone();
        Arc::new(move |ids, at| {
            let mut acked = acked.lock().expect("acked lock");
            for id in ids {
                acked.insert((id.partition, id.offset), at);
            }
        })
    };
    let paced = load(paced_records, args.rate, args.paced_batch);
    drive(&producer, TOPIC, &paced, Some(on_ack)).await?;
    tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .context("the target did not deliver every paced record within 60 s")??;
    let mut lag = latency_histogram()?;
    {
        let acked = acked.lock().expect("acked lock");
        for (id, at) in seen.lock().expect("seen lock").iter() {
            if let Some(acked_at) = acked.get(id) {
                // Replication can win the race with the producer's ack: count that as 0.
                let micros = at.saturating_duration_since(*acked_at).as_micros();
                lag.record((micros as u64).max(1))?;
            }
        }
    }
    let lag_ms = Quantiles::of(&lag);

    println!(
        "replicate: {} records of {} B x2, batch {}, concurrency {}, {} partitions, {} on loopback (QUIC, mTLS)",
        args.records,
        args.size,
        args.batch,
        args.concurrency,
        args.partitions,
        match args.relay {
            RelayMode::None => "source -> target",
            RelayMode::Store => "source -> relay (store-and-forward) -> target",
            RelayMode::PassThrough => "source -> relay (pass-through) -> target",
        }
    );
    println!(
        "  catch-up    {catchup_records_per_s:>12.0} records/s  {catchup_mb_per_s:>8.1} MB/s  ({catchup_s:.2} s for the backlog)"
    );
    println!(
        "  replicated  {records_per_s:>12.0} records/s  {mb_per_s:>8.1} MB/s  (produced in {produced_s:.2} s, replicated by {live_s:.2} s)"
    );
    println!(
        "  lag at {} records/s (batch {}): {}  ({} records)",
        args.rate,
        args.paced_batch,
        lag_ms.line(),
        lag.len()
    );
    if let Some(path) = &args.json {
        let figures = serde_json::json!({
            "records": args.records, "size": args.size, "batch": args.batch,
            "concurrency": args.concurrency, "partitions": args.partitions,
            "records_per_s": records_per_s, "mb_per_s": mb_per_s,
            "catchup_records_per_s": catchup_records_per_s, "catchup_mb_per_s": catchup_mb_per_s,
            "paced_rate": args.rate, "paced_batch": args.paced_batch,
            "relay": format!("{:?}", args.relay).to_lowercase(),
            "lag_ms": lag_ms.json(),
        });
        write_json(path, &figures)?;
    }
    cluster.stop().await
}
