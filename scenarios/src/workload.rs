//! The records scenarios write and the producers that write them.
//!
//! Record body format (little-endian): `seq: u64`, `produced_at: u64` (µs since the Unix
//! epoch, the producer's clock), then filler up to the record size. A producer owns one
//! stream — one region writing one partition of one topic — and numbers its records
//! 0, 1, 2, … in the order it produces them, one request at a time, so within the
//! stream's sub-log the sequence numbers must rise with the offsets. The sequence number
//! also decides a record's tag and properties (see [`Labels`]), so a check can tell from
//! `seq` alone where a record may be held.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use client::{Partitioning, pb};
use tokio_util::sync::CancellationToken;

pub const HEADER_BYTES: usize = 16;

/// Partitions of every scenario topic.
pub const PARTITIONS: u32 = 2;

/// Records per produce request when the rate does not ask for fewer.
const MAX_BATCH: u64 = 100;

pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What fills a record after its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// One byte repeated (compresses almost to nothing).
    #[default]
    Fill,
    /// JSON-like order events, different from record to record (compresses about 3-6×,
    /// like business messages).
    Text,
    /// Pseudo-random bytes (does not compress).
    Random,
}

/// A body of `size` bytes (at least the header) carrying `seq` and the time now.
pub fn body(seq: u64, size: usize, payload: Payload) -> Vec<u8> {
    let size = size.max(HEADER_BYTES);
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&now_micros().to_le_bytes());
    match payload {
        Payload::Fill => body.resize(size, (seq % 251) as u8),
        Payload::Text => {
            let mut item = seq;
            while body.len() < size {
                item = item
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let line = format!(
                    "{{\"order\":{seq},\"item\":{},\"customer\":\"c-{}\",\"status\":\"{}\",\"amount\":{}.{:02}}}\n",
                    item >> 48,
                    (item >> 20) % 9973,
                    ["created", "paid", "shipped", "delivered"][(item % 4) as usize],
                    (item >> 8) % 1000,
                    item % 100
                );
                body.extend_from_slice(line.as_bytes());
            }
            body.truncate(size);
        }
        Payload::Random => {
            let mut state = seq ^ 0x9e37_79b9_7f4a_7c15;
            while body.len() < size {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                body.extend_from_slice(&state.to_le_bytes());
            }
            body.truncate(size);
        }
    }
    body
}

/// `(seq, produced_at_micros)` of a scenario record; `None` for a body too short.
pub fn header(body: &[u8]) -> Option<(u64, u64)> {
    let seq = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let at = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
    Some((seq, at))
}

/// Tag and properties by sequence number.
pub type Labels = Arc<dyn Fn(u64) -> (Option<String>, BTreeMap<String, String>) + Send + Sync>;

pub fn unlabelled() -> Labels {
    Arc::new(|_| (None, BTreeMap::new()))
}

/// Identifies a sub-log: topic, partition, origin region.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stream {
    pub topic: String,
    pub partition: u32,
    pub origin: String,
}

/// What a producer had acknowledged: `offsets[seq]` is the offset of record `seq`.
#[derive(Clone, Debug)]
pub struct Acked {
    pub stream: Stream,
    pub offsets: Vec<u64>,
    pub bytes: u64,
    /// Why the producer stopped early, if it did.
    pub stopped_by: Option<String>,
}

/// Records and bytes acknowledged so far, per producing region (for progress lines).
#[derive(Default)]
pub struct Tally {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
}

/// How much and how fast one region writes.
#[derive(Clone)]
pub struct Load {
    /// Records the region writes in all, spread over its streams.
    pub records: u64,
    pub size: usize,
    pub payload: Payload,
    /// Records per second for the region, all streams together; `None`: as fast as acked.
    pub rate: Option<u32>,
    /// Stop at this time even if `records` are not all written.
    pub until: Option<tokio::time::Instant>,
    pub labels: Labels,
}

type Limiter = governor::DefaultDirectRateLimiter;

/// Writes `load` into `region` through `clients` (the region's nodes: stream `i` through
/// `clients[i % len]`), on every partition of `topics`, one stream per partition; returns what each stream had acknowledged when it stopped
/// (finished, out of time, cancelled, or failed).
pub async fn produce(
    clients: &[client::Client],
    region: &str,
    topics: &[String],
    load: &Load,
    tally: Arc<Tally>,
    cancel: CancellationToken,
) -> Vec<Acked> {
    let streams: Vec<Stream> = topics
        .iter()
        .flat_map(|t| {
            (0..PARTITIONS).map(move |partition| Stream {
                topic: t.clone(),
                partition,
                origin: region.to_string(),
            })
        })
        .collect();
    let batch = load
        .rate
        .map_or(MAX_BATCH, |r| (u64::from(r) / 100).clamp(1, MAX_BATCH));
    // A burst of one batch per stream: the rate holds from the first second on.
    let burst = NonZeroU32::new((batch * PARTITIONS as u64 * topics.len() as u64) as u32)
        .unwrap_or(NonZeroU32::MIN);
    let limiter: Option<Arc<Limiter>> = load.rate.and_then(NonZeroU32::new).map(|r| {
        let quota = governor::Quota::per_second(r).allow_burst(burst);
        Arc::new(governor::RateLimiter::direct(quota))
    });
    let count = streams.len() as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, stream) in streams.into_iter().enumerate() {
        // Spread the records: the first streams take the remainder.
        let share = load.records / count + u64::from((i as u64) < load.records % count);
        let job = StreamJob {
            client: clients[i % clients.len()].clone(),
            stream,
            records: share,
            batch,
            load: load.clone(),
            limiter: limiter.clone(),
            tally: tally.clone(),
            cancel: cancel.clone(),
        };
        tasks.spawn(job.run());
    }
    let mut acked: Vec<Acked> = tasks.join_all().await;
    acked.sort_by(|a, b| a.stream.cmp(&b.stream));
    acked
}

struct StreamJob {
    client: client::Client,
    stream: Stream,
    records: u64,
    batch: u64,
    load: Load,
    limiter: Option<Arc<Limiter>>,
    tally: Arc<Tally>,
    cancel: CancellationToken,
}

impl StreamJob {
    async fn run(self) -> Acked {
        let mut acked = Acked {
            stream: self.stream.clone(),
            // Bounded: with --duration the count is open-ended.
            offsets: Vec::with_capacity(self.records.min(1 << 20) as usize),
            bytes: 0,
            stopped_by: None,
        };
        while (acked.offsets.len() as u64) < self.records {
            if self.cancel.is_cancelled() {
                acked.stopped_by = Some("cancelled".into());
                break;
            }
            if self
                .load
                .until
                .is_some_and(|t| tokio::time::Instant::now() >= t)
            {
                break;
            }
            let first = acked.offsets.len() as u64;
            let n = self.batch.min(self.records - first);
            if let Some(limiter) = &self.limiter {
                let n = NonZeroU32::new(n as u32).expect("batch of at least one");
                if limiter.until_n_ready(n).await.is_err() {
                    acked.stopped_by = Some("the batch exceeds the rate".into());
                    break;
                }
            }
            let records: Vec<pb::Record> = (first..first + n)
                .map(|seq| {
                    let (tag, properties) = (self.load.labels)(seq);
                    pb::Record {
                        body: body(seq, self.load.size, self.load.payload),
                        tag,
                        properties: properties.into_iter().collect(),
                        ..Default::default()
                    }
                })
                .collect();
            let bytes: u64 = records.iter().map(|r| r.body.len() as u64).sum();
            let sent = tokio::select! {
                sent = self.client.produce(
                    &self.stream.topic,
                    records,
                    Partitioning::Partition(self.stream.partition),
                ) => sent,
                () = self.cancel.cancelled() => {
                    acked.stopped_by = Some("cancelled".into());
                    break;
                }
            };
            match sent {
                Ok(ids) => {
                    if first == 0 {
                        tracing::debug!(topic = %self.stream.topic, partition = self.stream.partition, origin = %self.stream.origin, "first batch acknowledged");
                    }
                    acked.offsets.extend(ids.iter().map(|id| id.offset));
                    acked.bytes += bytes;
                    self.tally.records.fetch_add(n, Ordering::Relaxed);
                    self.tally.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                Err(e) => {
                    acked.stopped_by = Some(format!("produce failed: {e}"));
                    break;
                }
            }
        }
        acked
    }
}

/// Creates `topics` in every region (existing ones are kept).
pub async fn create_topics(clients: &[&client::Client], topics: &[String]) -> Result<()> {
    for client in clients {
        for topic in topics {
            match client.create_topic(topic, PARTITIONS, None).await {
                Ok(_) => {}
                Err(e) if e.code() == Some("topic-exists") => {}
                Err(e) => return Err(anyhow::anyhow!("creating topic {topic}: {e}")),
            }
        }
    }
    Ok(())
}

/// Waits `d`, or less if cancelled.
pub async fn pause(d: Duration, cancel: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        () = cancel.cancelled() => {}
    }
}
