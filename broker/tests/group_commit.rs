//! Concurrent appends to one partition sharing group commits, and a reader waiting for
//! data: it wakes when data is durable and ends when the partition closes.

mod common;

use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::storage::{GapPolicy, Partition, PartitionReader, ReplicatedAppend, StorageConfig};
use broker::{BrokerError, Cursor, Record, StoredRecord};

use broker::storage::PartitionStore;
use broker::storage::RecordFilter;
use common::{LOCAL, TOPIC};

/// Many appends at once share group commits: each gets its own offsets, every record is
/// stored once with the offsets its append returned, and a reader tailing the partition
/// meanwhile (waking on the durable watermark) sees each origin in offset order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_and_a_tailing_reader() {
    let temp = tempfile::tempdir().unwrap();
    let config = Arc::new(StorageConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        ..StorageConfig::default()
    });
    let (partition, _) = Partition::open(
        temp.path().to_path_buf(),
        TOPIC,
        common::INCARNATION,
        0,
        LOCAL,
        config,
    )
    .unwrap();
    let partition = Arc::new(partition);
    const PRODUCERS: usize = 6;
    const BATCHES: usize = 25;
    const REMOTE_BATCHES: u64 = 40;
    let total = PRODUCERS * BATCHES * 2 + 2 * REMOTE_BATCHES as usize;

    let reader = {
        let partition = partition.clone();
        tokio::spawn(async move {
            let mut reader =
                PartitionReader::new(partition, Cursor::default(), RecordFilter::default());
            let mut seen: Vec<StoredRecord> = Vec::new();
            while seen.len() < total {
                let outcome = reader.read(700).unwrap();
                seen.extend(outcome.records);
                if outcome.caught_up && seen.len() < total {
                    reader.wait_for_data().await.unwrap();
                }
            }
            seen
        })
    };
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let partition = partition.clone();
        producers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for b in 0..BATCHES {
                let records = [
                    common::record(&format!("p{p}.b{b}.0"), 1),
                    common::record(&format!("p{p}.b{b}.1"), 1),
                ];
                let (first, last) = partition
                    .append_local(PendingBatch::consecutive(&records))
                    .await
                    .unwrap();
                assert_eq!(last, first + 1);
                acked.push((first, records[0].clone()));
                acked.push((last, records[1].clone()));
            }
            acked
        }));
    }
    let mut replicators = Vec::new();
    for origin in ["r1", "r2"] {
        let partition = partition.clone();
        replicators.push(tokio::spawn(async move {
            for base in 0..REMOTE_BATCHES {
                let bytes =
                    PendingBatch::consecutive(&[common::record(&format!("{origin}.{base}"), 1)])
                        .seal(base);
                let outcome = partition
                    .append_replicated(origin, bytes, GapPolicy::Refuse)
                    .await
                    .unwrap();
                assert_eq!(outcome, ReplicatedAppend::Appended { base, last: base });
            }
        }));
    }
    let mut acked: Vec<(u64, Record)> = Vec::new();
    for producer in producers {
        acked.extend(producer.await.unwrap());
    }
    for replicator in replicators {
        replicator.await.unwrap();
    }
    let seen = reader.await.unwrap();
    // Every local offset 0..n was handed out exactly once, to the record stored there.
    acked.sort_by_key(|(offset, _)| *offset);
    let offsets: Vec<u64> = acked.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (0..(PRODUCERS * BATCHES * 2) as u64).collect::<Vec<_>>()
    );
    let stored: Vec<(u64, Record)> = seen
        .iter()
        .filter(|r| r.origin == LOCAL)
        .map(|r| (r.offset, r.record.clone()))
        .collect();
    assert_eq!(
        stored, acked,
        "the tailing reader saw the local origin out of order"
    );
    for origin in ["r1", "r2"] {
        let offsets: Vec<u64> = seen
            .iter()
            .filter(|r| r.origin == origin)
            .map(|r| r.offset)
            .collect();
        assert_eq!(offsets, (0..REMOTE_BATCHES).collect::<Vec<_>>());
    }
    // A fresh full read gives the same stream as the tailing reader.
    assert_eq!(common::read_all(&partition), seen);
    partition.shut_down().await.unwrap();
}

/// A reader waiting for data wakes when it is durable, and ends when the partition closes.
#[tokio::test]
async fn waiting_reader_wakes_on_append_and_on_close() {
    let temp = tempfile::tempdir().unwrap();
    let (partition, _) = common::open(temp.path(), &common::small_config());
    let mut reader = PartitionReader::new(
        partition.clone(),
        Cursor::default(),
        RecordFilter::default(),
    );
    let outcome = reader.read(1 << 20).unwrap();
    assert!(outcome.records.is_empty() && outcome.caught_up);
    let waiting = tokio::spawn(async move {
        reader.wait_for_data().await.unwrap();
        let got = reader.read(1 << 20).unwrap();
        (reader, got.records)
    });
    partition
        .append_local(PendingBatch::consecutive(&[common::record("wake", 1)]))
        .await
        .unwrap();
    let (mut reader, records) = waiting.await.unwrap();
    assert_eq!(
        common::ids(&records),
        vec![(LOCAL.to_string(), 0, "wake".to_string())]
    );

    let waiting = tokio::spawn(async move { reader.wait_for_data().await });
    partition.mark_deleted();
    assert!(matches!(
        waiting.await.unwrap(),
        Err(BrokerError::TopicDeleted { .. })
    ));
    assert!(matches!(
        partition
            .append_local(PendingBatch::consecutive(&[common::record("late", 1)]))
            .await,
        Err(BrokerError::TopicDeleted { .. })
    ));
}
