//! What a recovery test wrote, and the damage it does to files: cut to a length, a byte
//! flipped.

use std::path::Path;
use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::storage::{GapPolicy, StorageConfig};
use broker::{Record, StoredRecord};

use super::{LOCAL, open, record};
use broker::storage::PartitionStore;

/// What a test wrote: per batch `(origin, base, records, encoded length)`, in arrival order.
pub struct Written {
    pub batches: Vec<(String, u64, Vec<Record>, u64)>,
}

impl Written {
    pub fn stored(&self) -> Vec<StoredRecord> {
        self.batches
            .iter()
            .flat_map(|(origin, base, records, _)| {
                records.iter().enumerate().map(move |(i, r)| StoredRecord {
                    origin: origin.clone(),
                    offset: base + i as u64,
                    record: r.clone(),
                })
            })
            .collect()
    }
}

/// Appends `rounds` rounds of one local batch and one `r1` batch, then shuts down.
pub async fn write_batches(dir: &Path, config: &Arc<StorageConfig>, rounds: usize) -> Written {
    let (p, cut) = open(dir, config);
    assert!(cut.is_empty());
    let mut batches = Vec::new();
    let mut r1_next = 0;
    for round in 0..rounds {
        let n = 1 + round % 3;
        let local: Vec<Record> = (0..n)
            .map(|i| record(&format!("l{round}.{i}"), 1_000 + round as i64))
            .collect();
        let pending = PendingBatch::consecutive(&local);
        let len = pending.len() as u64;
        let (base, _) = p.append_local(pending).await.unwrap();
        batches.push((LOCAL.to_string(), base, local, len));

        let remote: Vec<Record> = (0..2)
            .map(|i| record(&format!("r{round}.{i}"), 2_000 + round as i64))
            .collect();
        let bytes = PendingBatch::consecutive(&remote).seal(r1_next);
        let len = bytes.len() as u64;
        p.append_replicated("r1", bytes, GapPolicy::Refuse)
            .await
            .unwrap();
        batches.push(("r1".to_string(), r1_next, remote, len));
        r1_next += 2;
    }
    p.shut_down().await.unwrap();
    Written { batches }
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

pub fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

pub fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}
