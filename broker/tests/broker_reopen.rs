//! A broker reopens its topics and data (sled metadata), and rebuilds damaged segment
//! indexes.

mod common;

use std::path::Path;
use std::sync::Arc;

use broker::batch::PendingBatch;
use broker::meta::{Retention, SledMetaStore};
use broker::storage::GapPolicy;
use broker::{Broker, BrokerConfig, Cursor, Partitioning, StoredRecord};

use common::damage::{file_len, set_len};
use common::{active_segment, read_all, read_all_from, record, small_config};

fn broker_config(dir: &Path) -> BrokerConfig {
    BrokerConfig {
        region: "eu".to_string(),
        data_dir: dir.join("data"),
        storage: (*small_config()).clone(),
        default_retention: Retention::default(),
    }
}

fn open_broker(dir: &Path) -> Broker {
    let meta = SledMetaStore::open(&dir.join("meta")).unwrap();
    Broker::open(broker_config(dir), Arc::new(meta)).unwrap()
}

fn read_partition(broker: &Broker, topic: &str, partition: u32) -> Vec<StoredRecord> {
    read_all(&broker.partition(topic, partition).unwrap())
}

#[tokio::test]
async fn broker_reopens_topics_and_data_with_sled() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    let retention = Retention {
        max_bytes: 1 << 20,
        max_age_ms: 0,
    };
    let (before, cursor) = {
        let broker = open_broker(dir);
        broker.create_topic("orders", 2, Some(retention)).unwrap();
        broker.create_topic("audit", 1, None).unwrap();
        for i in 0..50 {
            broker
                .produce(
                    "orders",
                    vec![
                        record(&format!("o{i}"), 1_000 + i),
                        record(&format!("o{i}b"), 1_000 + i),
                    ],
                    Partitioning::RoundRobin,
                )
                .await
                .unwrap();
        }
        broker
            .produce("audit", vec![record("a0", 5)], Partitioning::Explicit(0))
            .await
            .unwrap();
        broker
            .append_replicated(
                "orders",
                1,
                "us",
                PendingBatch::consecutive(&[record("us0", 7)]).seal(0),
                GapPolicy::Refuse,
            )
            .await
            .unwrap();
        let cursor: Cursor = [("eu", 12u64), ("us", 1)].into_iter().collect();
        broker
            .commit("readers", "orders", &[(1, cursor.clone())])
            .unwrap();
        let before: Vec<Vec<StoredRecord>> = vec![
            read_partition(&broker, "orders", 0),
            read_partition(&broker, "orders", 1),
            read_partition(&broker, "audit", 0),
        ];
        assert_eq!(
            before[0].len() + before[1].len(),
            101,
            "100 produced, 1 replicated"
        );
        broker.shut_down().await.unwrap();
        (before, cursor)
    };

    let broker = open_broker(dir);
    assert!(broker.recovery_report().is_empty());
    let mut topics = broker.topics();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions, t.retention))
            .collect::<Vec<_>>(),
        vec![("audit", 1, Retention::default()), ("orders", 2, retention)]
    );
    assert_eq!(read_partition(&broker, "orders", 0), before[0]);
    assert_eq!(read_partition(&broker, "orders", 1), before[1]);
    assert_eq!(read_partition(&broker, "audit", 0), before[2]);
    assert_eq!(
        broker.group_cursors("readers", "orders").unwrap(),
        vec![(1, cursor)]
    );
    // Produce continues at the next local offset of the partition.
    let next = before[0].iter().filter(|r| r.origin == "eu").count() as u64;
    let ids = broker
        .produce(
            "orders",
            vec![record("after", 9)],
            Partitioning::Explicit(0),
        )
        .await
        .unwrap();
    assert_eq!(ids[0].offset, next);
    broker.shut_down().await.unwrap();
    drop(broker);

    // A torn tail found at broker open is in the recovery report.
    let segment = active_segment(&dir.join("data/topics/orders/0"), "eu");
    set_len(&segment, file_len(&segment) - 5);
    let broker = open_broker(dir);
    let report = broker.recovery_report();
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0].path, segment);
    assert_eq!(read_partition(&broker, "orders", 0), before[0]);
    broker.shut_down().await.unwrap();
}

#[tokio::test]
async fn damaged_segment_indexes_are_rebuilt() {
    let temp = tempfile::tempdir().unwrap();
    let meta: Arc<broker::meta::MemoryMetaStore> = Arc::new(Default::default());
    let config = BrokerConfig {
        data_dir: temp.path().to_path_buf(),
        ..broker_config(temp.path())
    };
    let broker = Broker::open(config.clone(), meta.clone()).unwrap();
    broker.create_topic("t", 1, None).unwrap();
    let mut produced = Vec::new();
    for i in 0..150i64 {
        let r = record(&format!("m{i}"), 50_000 + 3 * i);
        broker
            .produce("t", vec![r.clone()], Partitioning::Explicit(0))
            .await
            .unwrap();
        produced.push(r);
    }
    broker.shut_down().await.unwrap();
    drop(broker);

    let pdir = temp.path().join("topics/t/0");
    let segments = common::segment_files(&pdir, "eu");
    assert!(segments.len() >= 4, "only {} segments", segments.len());
    let index =
        |i: usize, ext: &str| common::segment_path(&pdir, "eu", segments[i].0).with_extension(ext);
    // Sealed segment 0: offset index gone. 1: time index torn. 2: entries out of order.
    std::fs::remove_file(index(0, "index")).unwrap();
    set_len(&index(1, "timeindex"), file_len(&index(1, "timeindex")) - 5);
    let mut swapped = std::fs::read(index(2, "index")).unwrap();
    assert!(swapped.len() >= 16, "segment 2 has a single index entry");
    swapped[..16].rotate_left(8);
    std::fs::write(index(2, "index"), swapped).unwrap();

    let broker = Broker::open(config, meta).unwrap();
    assert!(
        broker.recovery_report().is_empty(),
        "{:?}",
        broker.recovery_report()
    );
    let partition = broker.partition("t", 0).unwrap();
    let all = read_all(&partition);
    assert_eq!(
        all.iter().map(|r| r.record.clone()).collect::<Vec<_>>(),
        produced
    );
    // Every offset is found through the rebuilt indexes.
    for from in 0..=150u64 {
        let cursor: Cursor = [("eu", from)].into_iter().collect();
        let (rest, _) = read_all_from(&partition, cursor, None, 1 << 20);
        assert_eq!(rest.first().map(|r| r.offset), (from < 150).then_some(from));
        assert_eq!(rest.len() as u64, 150 - from);
    }
    for at in [0, 50_000, 50_001, 50_200, 50_447, 50_448] {
        let cursor = broker
            .start_cursor(partition.as_ref(), broker::StartPosition::Timestamp(at))
            .unwrap();
        let first = produced
            .iter()
            .position(|r| r.timestamp_ms >= at)
            .unwrap_or(150) as u64;
        assert_eq!(cursor.next_offset("eu"), first, "timestamp {at}");
    }
    // Appends continue.
    let ids = broker
        .produce("t", vec![record("m150", 60_000)], Partitioning::Explicit(0))
        .await
        .unwrap();
    assert_eq!(ids[0].offset, 150);
    broker.shut_down().await.unwrap();
}
