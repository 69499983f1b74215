//! A fresh target catching up a backlog over the emulated WAN, start-up included: the
//! source region holds the backlog before the target region starts; the time runs from
//! the target's start (node start, QUIC and TLS handshake, Hello, first pushes and
//! subscriptions, the congestion window's growth) until it holds every record.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cluster::{Cluster, ClusterPlan};
use crate::launch::Launcher;
use crate::wan::Impairment;
use crate::workload::{self, Payload};

/// Topics are `bench-0`, `bench-1`, …: a topic has at most this many partitions.
const PARTITIONS_PER_TOPIC: u32 = 4_000;
/// Records per produce request while the backlog is written, at most.
const BATCH: u64 = 200;

/// What to catch up, over which link.
pub struct Backlog {
    pub records: u64,
    pub size: usize,
    pub payload: Payload,
    /// Sub-logs the backlog is spread over: partitions of as many topics as needed.
    pub sub_logs: u32,
    pub impairment: Impairment,
    /// Settings of both regions (`deploy::merge` form), e.g. `{"replication": {...}}`.
    pub node_settings: serde_json::Value,
}

/// What a catch-up measured.
#[derive(Clone, Copy, Debug)]
pub struct CatchUp {
    pub records: u64,
    pub sub_logs: usize,
    pub bytes: u64,
    pub seconds: f64,
    /// Until the first record was held.
    pub first_s: f64,
    /// The rate from a quarter of the records on: the transfer once the link is up and
    /// its window has grown.
    pub from_quarter_mb_s: f64,
    /// Bytes that crossed the emulated link, both ways.
    pub wan_bytes: u64,
}

impl CatchUp {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds
    }
}

/// Source and target; the target dials the source through the emulated link.
fn plan(backlog: &Backlog) -> ClusterPlan {
    ClusterPlan {
        topology: crate::deploy::line(&["source", "target"]),
        residency: Default::default(),
        tasks: vec![replicator::TaskSpec::new(
            "catch-up",
            &["source"],
            &["target"],
            "bench-*",
        )],
        impairment: backlog.impairment,
        direct_links: false,
        heartbeat_ms: replicator::LinkSettings::default()
            .heartbeat_interval
            .as_millis() as u64,
        node_settings: backlog.node_settings.clone(),
        engine: Default::default(),
        nodes_per_region: 1,
    }
}

/// The backlog's topics and their partition counts.
fn topics(sub_logs: u32) -> Vec<(String, u32)> {
    let sub_logs = sub_logs.max(1);
    let count = sub_logs.div_ceil(PARTITIONS_PER_TOPIC);
    (0..count)
        .map(|i| {
            let partitions = sub_logs / count + u32::from(i < sub_logs % count);
            (format!("bench-{i}"), partitions)
        })
        .collect()
}

pub async fn catch_up(backlog: &Backlog, launcher: &dyn Launcher) -> Result<CatchUp> {
    let mut cluster = Cluster::start_only(&plan(backlog), launcher, &["source"]).await?;
    let client = cluster.region("source").client.clone();
    let topics = topics(backlog.sub_logs);
    let mut sub_logs = Vec::new();
    for (topic, partitions) in &topics {
        client.create_topic(topic, *partitions, None).await?;
        sub_logs.extend((0..*partitions).map(|p| (topic.clone(), p)));
    }
    // Every sub-log gets records: smaller requests when there are many.
    let batch = (backlog.records / sub_logs.len() as u64).clamp(1, BATCH);
    let mut bytes = 0u64;
    let mut seq = 0u64;
    let mut i = 0;
    while seq < backlog.records {
        let records: Vec<client::pb::Record> = (0..batch.min(backlog.records - seq))
            .map(|_| {
                seq += 1;
                let body = workload::body(seq, backlog.size, backlog.payload);
                bytes += body.len() as u64;
                client::pb::Record {
                    body,
                    ..Default::default()
                }
            })
            .collect();
        let (topic, partition) = &sub_logs[i % sub_logs.len()];
        i += 1;
        client
            .produce(topic, records, client::Partitioning::Partition(*partition))
            .await?;
    }
    let started = Instant::now();
    cluster.start_regions(&["target"], launcher).await?;
    let (mut first, mut quarter) = (None, None);
    loop {
        let mut held = 0;
        for (topic, _) in &topics {
            held += cluster.region("target").held(topic, "source").await?;
        }
        if held > 0 {
            first.get_or_insert_with(|| started.elapsed());
        }
        if held >= seq / 4 {
            quarter.get_or_insert_with(|| started.elapsed());
        }
        if held >= seq {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after_quarter = seconds - quarter.unwrap_or_default().as_secs_f64();
    let wan_bytes = cluster.link("source", "target").wan.counts().bytes;
    cluster.stop().await?;
    Ok(CatchUp {
        records: seq,
        sub_logs: sub_logs.len(),
        bytes,
        seconds,
        first_s: first.unwrap_or_default().as_secs_f64(),
        from_quarter_mb_s: bytes as f64 * 0.75 / 1e6 / after_quarter.max(1e-9),
        wan_bytes,
    })
}
