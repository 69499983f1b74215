//! Topic incarnations: records of two incarnations of an origin's topic are never merged.
//! A newer incarnation replaces the stale copy and starts from scratch; an older one is
//! refused; a cursor position of one incarnation is never applied to another.

mod common;

use std::sync::Arc;

use broker::batch::{Batch, PendingBatch};
use broker::meta::{MemoryMetaStore, Retention};
use broker::storage::PartitionStore;
use broker::storage::{GapPolicy, Partition, StorageConfig};
use broker::{Broker, BrokerConfig, BrokerError, Cursor};

const OLD: u64 = 10 << 16;
const NEW: u64 = 20 << 16;

fn batches(prefix: &str, offsets: std::ops::Range<u64>) -> Vec<Batch> {
    offsets
        .map(|o| {
            let bytes =
                PendingBatch::consecutive(&[common::record(&format!("{prefix}{o}"), 1)]).seal(o);
            Batch::from_bytes(bytes, usize::MAX).unwrap()
        })
        .collect()
}

fn bodies(partition: &Arc<Partition>, cursor: Cursor) -> Vec<(String, u64, String)> {
    common::ids(&common::read_all_from(partition, cursor, None, 1 << 20).0)
}

#[tokio::test]
async fn a_newer_incarnation_starts_from_scratch_and_an_older_one_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let config = common::small_config();
    let (partition, _) = common::open(temp.path(), &config);
    partition
        .append_replicated_run_in("eu", OLD, batches("old-", 0..10), GapPolicy::Refuse)
        .await
        .unwrap();
    let (_, consumed) = common::read_all_from(&partition, Cursor::default(), None, 1 << 20);
    assert_eq!(
        (consumed.next_offset("eu"), consumed.incarnation("eu")),
        (10, OLD)
    );

    // The origin deleted and re-created the topic: its offsets start again at 0.
    let run = partition
        .append_replicated_run_in("eu", NEW, batches("new-", 0..3), GapPolicy::Refuse)
        .await
        .unwrap();
    assert_eq!((run.replaced, run.appended), (Some(OLD), 3));
    let held = partition.sub_log("eu").unwrap();
    assert_eq!(
        (held.incarnation, held.start_offset, held.end_offset),
        (NEW, 0, 3)
    );
    let expected: Vec<(String, u64, String)> = (0..3)
        .map(|o| ("eu".to_string(), o, format!("new-{o}")))
        .collect();
    assert_eq!(bodies(&partition, Cursor::default()), expected);
    // The old incarnation's position is not applied to the new one.
    assert_eq!(bodies(&partition, consumed.clone()), expected);

    // A neighbour still serving the deleted topic: refused, nothing merged.
    let refused = partition
        .append_replicated_run_in("eu", OLD, batches("old-", 10..12), GapPolicy::Refuse)
        .await
        .unwrap_err();
    match &refused {
        BrokerError::StaleIncarnation { held, offered, .. } => {
            assert_eq!((*held, *offered), (NEW, OLD));
            assert_eq!(refused.code(), "stale-incarnation");
            let message = refused.to_string();
            assert!(message.contains(&OLD.to_string()) && message.contains(&NEW.to_string()));
        }
        other => panic!("an older incarnation was not refused: {other:?}"),
    }
    assert_eq!(partition.sub_log("eu").unwrap().end_offset, 3);

    // After a restart: the same, and the retired arrival entries are gone.
    partition.shut_down().await.unwrap();
    drop(partition);
    let (partition, _) = common::open(temp.path(), &config);
    assert_eq!(partition.sub_log("eu").unwrap().incarnation, NEW);
    assert_eq!(bodies(&partition, Cursor::default()), expected);
    partition
        .append_replicated_run_in("eu", NEW, batches("new-", 3..4), GapPolicy::Refuse)
        .await
        .unwrap();
    assert_eq!(bodies(&partition, Cursor::default()).len(), 4);
}

#[tokio::test]
async fn a_topic_created_again_is_a_new_incarnation() {
    let temp = tempfile::tempdir().unwrap();
    let broker = Broker::open(
        BrokerConfig {
            region: "eu".into(),
            data_dir: temp.path().to_path_buf(),
            storage: StorageConfig::default(),
            default_retention: Retention::default(),
        },
        Arc::new(MemoryMetaStore::default()),
    )
    .unwrap();
    let first = broker.create_topic("orders", 1, None).unwrap().incarnation;
    broker.delete_topic("orders").unwrap();
    let second = broker.create_topic("orders", 1, None).unwrap().incarnation;
    assert!(first != 0 && second > first, "{first} then {second}");
    let (_, partitions) = broker.describe("orders").unwrap();
    broker
        .produce(
            "orders",
            vec![common::record("a", 0)],
            broker::Partitioning::Explicit(0),
        )
        .await
        .unwrap();
    let (_, partitions_after) = broker.describe("orders").unwrap();
    assert!(partitions[0].is_empty());
    assert_eq!(partitions_after[0][0].incarnation, second);
}
