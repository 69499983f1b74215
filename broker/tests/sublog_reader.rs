//! Replication's view of storage: runs of replicated batches applied with one durability
//! wait, per-sub-log durable ends, and the sub-log reader that serves stored batches byte
//! for byte across segment rolls and retention.

mod common;

use broker::batch::{Batch, PendingBatch};
use broker::storage::PartitionStore;
use broker::storage::{GapPolicy, SubLogReader};
use broker::{BrokerError, Record};
use common::*;

fn batch(prefix: &str, base: u64, n: usize) -> Batch {
    let records: Vec<Record> = (0..n)
        .map(|i| record(&format!("{prefix}-{}", base + i as u64), 1_000 + i as i64))
        .collect();
    Batch::from_bytes(PendingBatch::consecutive(&records).seal(base), usize::MAX).unwrap()
}

#[tokio::test]
async fn a_run_applies_in_order_and_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, _) = open(dir.path(), &small_config());
    let run = partition
        .append_replicated_run(
            "eu",
            vec![batch("a", 0, 5), batch("a", 5, 5)],
            GapPolicy::Refuse,
        )
        .await
        .unwrap();
    assert_eq!(
        (run.appended, run.already_held, run.records, run.end_offset),
        (2, 0, 10, 10)
    );
    // Held batches are skipped; new ones after them are stored.
    let run = partition
        .append_replicated_run(
            "eu",
            vec![batch("a", 5, 5), batch("a", 10, 3)],
            GapPolicy::Refuse,
        )
        .await
        .unwrap();
    assert_eq!((run.appended, run.already_held, run.end_offset), (1, 1, 13));
    let info = partition.sub_log("eu").unwrap();
    assert_eq!((info.end_offset, info.durable_end), (13, 13));
}

#[tokio::test]
async fn a_refused_batch_keeps_the_ones_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, _) = open(dir.path(), &small_config());
    let err = partition
        .append_replicated_run(
            "eu",
            vec![batch("a", 0, 4), batch("a", 9, 1), batch("a", 10, 1)],
            GapPolicy::Refuse,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BrokerError::OffsetGap {
                expected: 4,
                base: 9,
                ..
            }
        ),
        "{err}"
    );
    let info = partition.sub_log("eu").unwrap();
    assert_eq!((info.end_offset, info.durable_end), (4, 4));
    assert_eq!(read_all(&partition).len(), 4);
}

#[tokio::test]
async fn the_reader_serves_stored_bytes_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    let (partition, _) = open(dir.path(), &config);
    let mut sent = Vec::new();
    for i in 0..40u64 {
        let b = batch("a", i * 4, 4);
        sent.push(b.bytes().clone());
        partition
            .append_replicated_run("eu", vec![b], GapPolicy::Refuse)
            .await
            .unwrap();
    }
    let info = partition.sub_log("eu").unwrap();
    assert!(info.segments >= 2, "segments rolled: {info:?}");
    // From an offset inside a batch: that whole batch first.
    let mut reader = SubLogReader::new(partition.clone(), "eu", 42);
    let mut served = Vec::new();
    loop {
        let batches = reader.read(1_000).unwrap();
        if batches.is_empty() {
            break;
        }
        served.extend(batches.into_iter().map(|b| b.bytes().clone()));
    }
    assert_eq!(
        served,
        sent[10..].to_vec(),
        "byte-for-byte, in order, from the batch holding 42"
    );
    assert_eq!(reader.next_offset(), 160);

    // A reader waits for more, and wakes when it is durable.
    let waiter = {
        let mut reader = SubLogReader::new(partition.clone(), "eu", 160);
        tokio::spawn(async move {
            reader.wait_for_data().await.unwrap();
            reader.read(1 << 20).unwrap()
        })
    };
    partition
        .append_replicated_run("eu", vec![batch("a", 160, 2)], GapPolicy::Refuse)
        .await
        .unwrap();
    let woke = waiter.await.unwrap();
    assert_eq!(woke.len(), 1);
    assert_eq!(woke[0].header().base_offset, 160);
}

#[tokio::test]
async fn the_reader_moves_past_what_retention_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, _) = open(dir.path(), &small_config());
    for i in 0..40u64 {
        partition
            .append_replicated_run("eu", vec![batch("a", i * 4, 4)], GapPolicy::Refuse)
            .await
            .unwrap();
    }
    let removed = partition.apply_retention(4096, 0, 0).unwrap();
    assert!(removed > 0);
    let start = partition.sub_log("eu").unwrap().start_offset;
    assert!(start > 0);
    let mut reader = SubLogReader::new(partition.clone(), "eu", 0);
    let first = reader.read(1).unwrap();
    assert_eq!(first[0].header().base_offset, start);
}

#[tokio::test]
async fn an_unknown_origin_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (partition, _) = open(dir.path(), &small_config());
    let mut reader = SubLogReader::new(partition.clone(), "nowhere", 0);
    assert!(reader.read(1 << 20).unwrap().is_empty());
    assert!(
        partition
            .sub_log_offset_for_time("nowhere", 0)
            .unwrap()
            .is_none()
    );
}
