//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

pub mod damage;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::storage::{Partition, StorageConfig, Truncation};
use broker::storage::{PartitionStore, RecordFilter};
use broker::{Cursor, Record, StoredRecord};
use bytes::Bytes;

pub const TOPIC: &str = "orders";
pub const LOCAL: &str = "local";
/// The incarnation of the test topic.
pub const INCARNATION: u64 = 1 << 16;

/// Small segments and a dense index, so rolls, index lookups and retention happen.
pub fn small_config() -> Arc<StorageConfig> {
    Arc::new(StorageConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..StorageConfig::default()
    })
}

pub fn open(dir: &Path, config: &Arc<StorageConfig>) -> (Arc<Partition>, Vec<Truncation>) {
    let (partition, cut) = Partition::open(
        dir.to_path_buf(),
        TOPIC,
        INCARNATION,
        0,
        LOCAL,
        config.clone(),
    )
    .expect("open partition");
    (Arc::new(partition), cut)
}

/// A record whose body names it, so a mix-up shows in the assertion message.
pub fn record(body: &str, timestamp_ms: i64) -> Record {
    Record {
        key: Some(Bytes::copy_from_slice(format!("k-{body}").as_bytes())),
        tag: None,
        properties: [("p".to_string(), body.to_string())].into(),
        body: Bytes::copy_from_slice(body.as_bytes()),
        timestamp_ms,
    }
}

pub fn tagged(body: &str, tag: &str, timestamp_ms: i64) -> Record {
    Record {
        tag: Some(tag.to_string()),
        ..record(body, timestamp_ms)
    }
}

/// Reads from `cursor` with `max_bytes` per call until caught up.
pub fn read_all_from(
    partition: &Arc<impl PartitionStore + ?Sized>,
    cursor: Cursor,
    tag: Option<&str>,
    max_bytes: usize,
) -> (Vec<StoredRecord>, Cursor) {
    let filter = RecordFilter::tag(tag.map(str::to_string));
    let mut reader = partition.clone().reader(cursor, filter);
    let mut out = Vec::new();
    for _ in 0..100_000 {
        let outcome = reader.read(max_bytes).expect("read");
        out.extend(outcome.records);
        if outcome.caught_up {
            return (out, reader.cursor().clone());
        }
    }
    panic!("reader never caught up");
}

pub fn read_all(partition: &Arc<impl PartitionStore + ?Sized>) -> Vec<StoredRecord> {
    read_all_from(partition, Cursor::default(), None, 1 << 20).0
}

/// `(origin, offset, body)` of each record, for compact comparisons.
pub fn ids(records: &[StoredRecord]) -> Vec<(String, u64, String)> {
    records
        .iter()
        .map(|r| {
            (
                r.origin.clone(),
                r.offset,
                String::from_utf8_lossy(&r.record.body).into_owned(),
            )
        })
        .collect()
}

pub fn sublog_dir(partition_dir: &Path, origin: &str) -> PathBuf {
    partition_dir.join("logs").join(origin)
}

/// The `.log` files of a sub-log, `(base, size)`, sorted by base.
pub fn segment_files(partition_dir: &Path, origin: &str) -> Vec<(u64, u64)> {
    let dir = sublog_dir(partition_dir, origin);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, u64)> = entries
        .map(|e| e.expect("dir entry"))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".log")?;
            (stem.len() == 20).then_some(())?;
            Some((stem.parse().ok()?, e.metadata().expect("stat").len()))
        })
        .collect();
    out.sort_unstable();
    out
}

pub fn segment_path(partition_dir: &Path, origin: &str, base: u64) -> PathBuf {
    sublog_dir(partition_dir, origin).join(format!("{base:020}.log"))
}

/// The active (last) segment file of a sub-log.
pub fn active_segment(partition_dir: &Path, origin: &str) -> PathBuf {
    let (base, _) = *segment_files(partition_dir, origin)
        .last()
        .expect("sub-log has a segment");
    segment_path(partition_dir, origin, base)
}

/// `records` sealed as one batch at offsets from `base`.
pub fn batch(records: &[Record], base: u64) -> Bytes {
    PendingBatch::consecutive(records).seal(base)
}

pub fn records(prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| record(&format!("{prefix}-{i}"), 1_000 + i as i64))
        .collect()
}

/// `(origin, offset, body)`, as `ids` gives them.
pub fn row(origin: &str, offset: u64, body: &str) -> (String, u64, String) {
    (origin.to_string(), offset, body.to_string())
}
