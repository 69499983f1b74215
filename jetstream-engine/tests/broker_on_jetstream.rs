//! A broker on the JetStream engine, on a real cluster of three nats-server processes: it
//! produces, takes replicated batches idempotently, reads in arrival order from a vector
//! cursor, finds positions by time, and a second node of the region (another broker on the
//! same cluster, with no data directory of its own in use) sees the topic and its records
//! and appends after them without sharing an offset.

use std::sync::Arc;

use broker::cursor::Cursor;
use broker::meta::{MetaStore, Retention};
use broker::record::{Record, StoredRecord};
use broker::storage::{GapPolicy, PartitionStore, RecordFilter, StorageConfig};
use broker::{Broker, BrokerConfig, Partitioning, StartPosition};
use bytes::Bytes;
use jetstream_engine::local_cluster::LocalCluster;
use jetstream_engine::{Engine, JetStreamMetaStore, JetStreamSettings, JetStreamStorage};

fn node(cluster: &LocalCluster, region: &str) -> Broker {
    let engine = Engine::connect(JetStreamSettings::new(cluster.all_urls())).unwrap();
    let meta: Arc<dyn MetaStore> =
        Arc::new(JetStreamMetaStore::open(engine.clone(), region).unwrap());
    let storage = Arc::new(JetStreamStorage::new(engine, region));
    let config = BrokerConfig {
        region: region.to_string(),
        // Never written: the engine keeps everything in the cluster.
        data_dir: std::path::PathBuf::from("/nonexistent/georouter"),
        storage: StorageConfig::default(),
        default_retention: Retention::default(),
    };
    Broker::open_on(config, meta, storage).unwrap()
}

fn record(body: &str, timestamp_ms: i64) -> Record {
    Record {
        body: Bytes::copy_from_slice(body.as_bytes()),
        timestamp_ms,
        ..Record::default()
    }
}

fn read_all(partition: Arc<dyn PartitionStore>, cursor: Cursor) -> Vec<StoredRecord> {
    let mut reader = partition.reader(cursor, RecordFilter::default());
    let mut out = Vec::new();
    loop {
        let read = reader.read(1 << 20).unwrap();
        out.extend(read.records);
        if read.caught_up {
            return out;
        }
    }
}

fn bodies(records: &[StoredRecord]) -> Vec<(String, u64, String)> {
    records
        .iter()
        .map(|r| {
            let body = String::from_utf8(r.record.body.to_vec()).unwrap();
            (r.origin.clone(), r.offset, body)
        })
        .collect()
}

fn sealed(records: &[Record], base: u64) -> Bytes {
    broker::batch::PendingBatch::consecutive(records).seal(base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_on_jetstream_produces_replicates_reads_and_shares_its_region() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let first = node(&cluster, "eu");
    first.create_topic("orders", 2, None).unwrap();
    first
        .produce(
            "orders",
            vec![record("a", 1_000), record("b", 2_000)],
            Partitioning::Explicit(1),
        )
        .await
        .unwrap();
    let us = [record("u0", 1_500), record("u1", 2_500)];
    for _ in 0..2 {
        // The second time it is held already: nothing written twice.
        first
            .append_replicated_run_in(
                "orders",
                1,
                "us",
                9,
                vec![broker::batch::Batch::from_bytes(sealed(&us, 0), 1 << 20).unwrap()],
                GapPolicy::Refuse,
            )
            .await
            .unwrap();
    }
    first
        .produce(
            "orders",
            vec![record("c", 3_000)],
            Partitioning::Explicit(1),
        )
        .await
        .unwrap();

    let partition = first.partition("orders", 1).unwrap();
    let all = read_all(partition.clone(), Cursor::default());
    assert_eq!(
        bodies(&all),
        [
            ("eu".to_string(), 0, "a".to_string()),
            ("eu".to_string(), 1, "b".to_string()),
            ("us".to_string(), 0, "u0".to_string()),
            ("us".to_string(), 1, "u1".to_string()),
            ("eu".to_string(), 2, "c".to_string()),
        ],
        "arrival order"
    );
    // A cursor past some of each origin reads the rest, in the same order.
    let cursor: Cursor = [("eu", 1u64), ("us", 1)].into_iter().collect();
    let rest: Vec<_> = bodies(&read_all(partition.clone(), cursor))
        .into_iter()
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(rest, ["b", "u1", "c"]);
    assert_eq!(partition.incarnation_of("us"), 9);
    let at = first
        .start_cursor(partition.as_ref(), StartPosition::Timestamp(2_000))
        .unwrap();
    assert_eq!(at.next.get("eu"), Some(&1));
    assert_eq!(at.next.get("us"), Some(&1));
    let latest = partition.latest_cursor();
    assert_eq!(latest.next.get("eu"), Some(&3));
    let big: Vec<Record> = (0..100)
        .map(|i| record(&format!("{i:01024}"), 1_000))
        .collect();
    first
        .produce("orders", big, Partitioning::Explicit(0))
        .await
        .unwrap();
    let mut big_reader = first
        .partition("orders", 0)
        .unwrap()
        .sub_log_reader("eu", 0);
    assert_eq!(
        big_reader.read(1 << 20).unwrap().len(),
        1,
        "a batch of 100 KiB"
    );
    let mut local = partition.clone().sub_log_reader("eu", 0);
    let local_batches = local.read(1 << 20).unwrap();
    assert_eq!(local_batches.len(), 2, "this region's own sub-log, served");
    let mut replicated = partition.clone().sub_log_reader("us", 0);
    assert_eq!(replicated.read(1 << 20).unwrap().len(), 1);
    assert_eq!(replicated.next_offset(), 2);

    // A second node of the region: same topics, same records, the next offsets.
    let second = node(&cluster, "eu");
    assert_eq!(second.topics(), first.topics());
    let seen = read_all(second.partition("orders", 1).unwrap(), Cursor::default());
    assert_eq!(bodies(&seen), bodies(&all));
    let ids = second
        .produce(
            "orders",
            vec![record("d", 4_000)],
            Partitioning::Explicit(1),
        )
        .await
        .unwrap();
    assert_eq!(ids[0].offset, 3);
    // The first node learns of the second's append from the stream, without appending:
    // its readers and its replication see it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while partition.sub_log("eu").map(|s| s.end_offset) != Some(4) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first node never saw offset 3"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let seen = bodies(&read_all(partition.clone(), latest.clone()));
    assert_eq!(seen, [("eu".to_string(), 3, "d".to_string())]);
    // Appends from both nodes take the next offsets, whoever knew the end last.
    let ids = first
        .produce(
            "orders",
            vec![record("e", 5_000)],
            Partitioning::Explicit(1),
        )
        .await
        .unwrap();
    assert_eq!(ids[0].offset, 4);

    // Deleting the topic removes its streams; a topic of the same name starts afresh.
    first.delete_topic("orders").unwrap();
    first.create_topic("orders", 1, None).unwrap();
    assert!(read_all(first.partition("orders", 0).unwrap(), Cursor::default()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_opened_again_in_one_process_never_takes_its_appends_for_earlier_ones() {
    use broker::storage::StorageEngine;
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let engine = Engine::connect(JetStreamSettings::new(cluster.all_urls())).unwrap();
    let storage = JetStreamStorage::new(engine, "eu");
    let topic = broker::meta::TopicConfig {
        name: "orders".into(),
        partitions: 1,
        retention: Retention::default(),
        message_type: Default::default(),
        incarnation: 7,
    };
    // The same partition opened twice in this process (a topic taken up again): each
    // opening's first append must be stored, not found a duplicate of the other's.
    let first = storage.create_topic(&topic).unwrap().remove(0);
    let again = storage.open_topic(&topic).unwrap().0.remove(0);
    let one = broker::batch::PendingBatch::consecutive(&[record("one", 1)]);
    assert_eq!(first.append_local(one).await.unwrap(), (0, 0));
    let two = broker::batch::PendingBatch::consecutive(&[record("two", 2)]);
    assert_eq!(again.append_local(two).await.unwrap(), (1, 1));
    let read: Vec<String> = bodies(&read_all(again, Cursor::default()))
        .into_iter()
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(read, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_starts_at_batches_its_node_has_not_heard_of() {
    use jetstream_engine::{JetStreamPartition, SubLogId, SubLogs, Tail};
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let connect = || Engine::connect(JetStreamSettings::new(cluster.all_urls())).unwrap();
    let logs = Arc::new(SubLogs::new(connect(), "eu"));
    logs.create_topic("orders", 7).await.unwrap();
    // A partition opened here with no follower: it hears of nothing another node stores.
    let here = Arc::new(
        JetStreamPartition::open(logs.clone(), "orders", 7, 0, "eu", "here")
            .await
            .unwrap(),
    );
    let elsewhere = SubLogs::new(connect(), "eu");
    let us = SubLogId {
        topic: "orders".into(),
        incarnation: 7,
        partition: 0,
        origin: "us".into(),
    };
    elsewhere
        .append_replicated(
            &us,
            &mut Tail::default(),
            sealed(&[record("u0", 1)], 0),
            GapPolicy::Refuse,
            3,
        )
        .await
        .unwrap();
    here.append_local(broker::batch::PendingBatch::consecutive(&[record("e0", 2)]))
        .await
        .unwrap();
    let read = bodies(&read_all(here, Cursor::default()));
    assert_eq!(
        read,
        [
            ("us".to_string(), 0, "u0".to_string()),
            ("eu".to_string(), 0, "e0".to_string()),
        ],
        "the batch another node stored first is read first"
    );
}

/// Two nodes of a region creating one topic at the same moment (a client through each, or
/// replication's target topic beside a client): one creates it, the other is told it
/// exists and takes it up. Before, each made the topic anew, the second deleting the
/// streams the first had made: the first node's appends failed or were lost.
#[test]
fn two_nodes_creating_one_topic_at_once_make_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let nodes = [node(&cluster, "eu"), node(&cluster, "eu")];
    for round in 0..6 {
        let topic = format!("orders-{round}");
        let barrier = std::sync::Barrier::new(2);
        let created: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|n| {
                    let (topic, barrier) = (&topic, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        n.create_topic(topic, 1, None)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let made = created.iter().filter(|c| c.is_ok()).count();
        assert_eq!(made, 1, "{topic}: created {made} times: {created:?}");
        for c in &created {
            if let Err(e) = c {
                assert!(
                    matches!(e, broker::BrokerError::TopicExists { .. }),
                    "{topic}: {e}"
                );
            }
        }
        let runtime = tokio::runtime::Runtime::new().unwrap();
        for (i, n) in nodes.iter().enumerate() {
            runtime
                .block_on(n.produce(
                    &topic,
                    vec![record(&format!("via-{i}"), 1_000)],
                    Partitioning::Explicit(0),
                ))
                .unwrap_or_else(|e| panic!("{topic}: producing through node {i}: {e}"));
        }
        let incarnations: Vec<u64> = nodes
            .iter()
            .map(|n| n.topic(&topic).unwrap().config.incarnation)
            .collect();
        assert_eq!(
            incarnations[0], incarnations[1],
            "{topic}: two incarnations"
        );
        for n in &nodes {
            let partition = n.partition(&topic, 0).unwrap();
            let mut seen: Vec<_> = bodies(&read_all(partition, Cursor::default()))
                .into_iter()
                .map(|(_, offset, body)| (offset, body))
                .collect();
            seen.sort();
            assert_eq!(seen.len(), 2, "{topic}: {seen:?}");
            assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1]);
        }
    }
}
