//! Producer timestamps are bounded, and a record stamped far ahead (replicated from an
//! origin that did not bound it) cannot hold a sub-log back from age retention.

mod common;

use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::meta::{MemoryMetaStore, Retention};
use broker::record::now_ms;
use broker::storage::PartitionStore;
use broker::storage::{GapPolicy, StorageConfig};
use broker::{Broker, BrokerConfig, BrokerError, Partitioning};

const HOUR_MS: i64 = 3_600_000;

fn broker(dir: &std::path::Path) -> Broker {
    let config = BrokerConfig {
        region: "eu".to_string(),
        data_dir: dir.to_path_buf(),
        storage: StorageConfig {
            max_timestamp_skew_ms: HOUR_MS as u64,
            ..StorageConfig::default()
        },
        default_retention: Retention::default(),
    };
    Broker::open(config, Arc::new(MemoryMetaStore::default())).unwrap()
}

#[tokio::test]
async fn a_produce_stamped_past_the_skew_or_before_the_epoch_is_refused_and_stores_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let broker = broker(temp.path());
    broker.create_topic("orders", 1, None).unwrap();
    let now = now_ms();
    for (timestamp, reason) in [
        (now + 2 * HOUR_MS, "too far in the future"),
        (-5, "before the epoch"),
    ] {
        let records = vec![
            common::record("fine", now),
            common::record("bad", timestamp),
        ];
        match broker
            .produce("orders", records, Partitioning::Explicit(0))
            .await
        {
            Err(e @ BrokerError::InvalidTimestamp { index: 1, .. }) => {
                assert_eq!(e.code(), "invalid-timestamp");
                let message = e.to_string();
                assert!(
                    message.contains(reason) && message.contains("max_timestamp_skew_ms"),
                    "{message}"
                );
            }
            other => panic!("timestamp {timestamp} was not refused as invalid: {other:?}"),
        }
    }
    // Within the skew is fine.
    broker
        .produce(
            "orders",
            vec![common::record("soon", now + HOUR_MS / 2)],
            Partitioning::Explicit(0),
        )
        .await
        .unwrap();
    let (_, partitions) = broker.describe("orders").unwrap();
    assert_eq!(
        partitions[0][0].end_offset, 1,
        "a refused produce stored records"
    );
}

#[tokio::test]
async fn a_far_future_replicated_record_does_not_pin_age_retention() {
    let temp = tempfile::tempdir().unwrap();
    let config = Arc::new(StorageConfig {
        segment_bytes: 512,
        max_timestamp_skew_ms: HOUR_MS as u64,
        ..StorageConfig::default()
    });
    let (partition, _) = common::open(temp.path(), &config);
    let now = now_ms();
    let ten_years = 10 * 365 * 24 * HOUR_MS;
    // The first segment: an ordinary record and one stamped ten years ahead.
    let first = PendingBatch::consecutive(&[
        common::record("old", now - HOUR_MS),
        common::record("outlier", now + ten_years),
    ])
    .seal(0);
    partition
        .append_replicated("us", first, GapPolicy::Refuse)
        .await
        .unwrap();
    // Later records roll into new segments.
    for offset in 2..12 {
        let body = "x".repeat(200);
        let batch = PendingBatch::consecutive(&[common::record(&body, now)]).seal(offset);
        partition
            .append_replicated("us", batch, GapPolicy::Refuse)
            .await
            .unwrap();
    }
    let before = partition.sub_log("us").unwrap();
    assert!(before.segments > 2, "{before:?}");
    // Three hours on, with a one-hour age limit, the first segment is past it: the outlier
    // counts as written at arrival + the skew.
    let removed = partition
        .apply_retention(0, HOUR_MS as u64, now + 3 * HOUR_MS)
        .unwrap();
    assert!(
        removed >= 1,
        "the segment holding a far-future record was never removed by age"
    );
    assert!(partition.sub_log("us").unwrap().start_offset >= 2);
}
