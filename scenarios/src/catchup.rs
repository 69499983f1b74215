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

const TOPIC: &str = "bench";
/// Records per produce request while the backlog is written.
const BATCH: u64 = 200;

/// What to catch up, over which link.
pub struct Backlog {
    pub records: u64,
    pub size: usize,
    pub payload: Payload,
    pub partitions: u32,
    pub impairment: Impairment,
    /// Settings of both regions (`deploy::merge` form), e.g. `{"replication": {...}}`.
    pub node_settings: serde_json::Value,
}

/// What a catch-up measured.
#[derive(Clone, Copy, Debug)]
pub struct CatchUp {
    pub records: u64,
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
            TOPIC,
        )],
        impairment: backlog.impairment,
        direct_links: false,
        heartbeat_ms: replicator::LinkSettings::default()
            .heartbeat_interval
            .as_millis() as u64,
        node_settings: backlog.node_settings.clone(),
    }
}

pub async fn catch_up(backlog: &Backlog, launcher: &dyn Launcher) -> Result<CatchUp> {
    let mut cluster = Cluster::start_only(&plan(backlog), launcher, &["source"]).await?;
    let client = cluster.region("source").client.clone();
    client.create_topic(TOPIC, backlog.partitions, None).await?;
    let batches = backlog.records.div_ceil(BATCH);
    let mut bytes = 0u64;
    let mut seq = 0u64;
    for i in 0..batches {
        let records: Vec<client::pb::Record> = (0..BATCH.min(backlog.records - seq))
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
        let partition = (i % u64::from(backlog.partitions)) as u32;
        client
            .produce(TOPIC, records, client::Partitioning::Partition(partition))
            .await?;
    }
    let started = Instant::now();
    cluster.start_regions(&["target"], launcher).await?;
    let (mut first, mut quarter) = (None, None);
    loop {
        let held = cluster.region("target").held(TOPIC, "source").await?;
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
        bytes,
        seconds,
        first_s: first.unwrap_or_default().as_secs_f64(),
        from_quarter_mb_s: bytes as f64 * 0.75 / 1e6 / after_quarter.max(1e-9),
        wan_bytes,
    })
}
