//! Retention on the JetStream engine, on a real cluster of three nats-server processes: a
//! sub-log's oldest batches go by size and by age, never its last one, so a sub-log whose
//! batches all expired goes on at its end offset; a reader from offset 0 starts at what is
//! held; another node of the region opening the topic finds the same start and end.

use std::sync::Arc;

use broker::cursor::Cursor;
use broker::meta::{Retention, TopicConfig};
use broker::record::Record;
use broker::storage::{PartitionStore, RecordFilter, StorageEngine};
use bytes::Bytes;
use jetstream_engine::local_cluster::LocalCluster;
use jetstream_engine::{Engine, JetStreamSettings, JetStreamStorage};

fn storage(cluster: &LocalCluster) -> JetStreamStorage {
    let engine = Engine::connect(JetStreamSettings::new(cluster.all_urls())).unwrap();
    JetStreamStorage::new(engine, "eu")
}

/// The offsets a reader from offset 0 delivers.
fn offsets(partition: &Arc<dyn PartitionStore>) -> Vec<u64> {
    let mut reader = partition
        .clone()
        .reader(Cursor::default(), RecordFilter::default());
    let mut out = Vec::new();
    loop {
        let read = reader.read(1 << 20).unwrap();
        out.extend(read.records.iter().map(|r| r.offset));
        if read.caught_up {
            return out;
        }
    }
}

fn extent(partition: &Arc<dyn PartitionStore>) -> (u64, u64) {
    let s = partition.sub_log("eu").expect("eu's sub-log");
    (s.start_offset, s.end_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_batches_go_but_a_sub_log_keeps_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let here = storage(&cluster);
    let topic = TopicConfig {
        name: "orders".into(),
        partitions: 1,
        retention: Retention::default(),
        message_type: Default::default(),
        incarnation: 7,
    };
    let partition = here.create_topic(&topic).unwrap().remove(0);
    // Five batches of one 1 000-byte record each, written at 1 s, 2 s, ... 5 s.
    for i in 0..5u64 {
        let record = Record {
            body: Bytes::from(vec![b'x'; 1_000]),
            timestamp_ms: (i as i64 + 1) * 1_000,
            ..Record::default()
        };
        let pending = broker::batch::PendingBatch::consecutive(&[record]);
        assert_eq!(partition.append_local(pending).await.unwrap(), (i, i));
    }
    let now = 6_000;
    assert_eq!(
        partition.apply_retention(0, 0, now).unwrap(),
        0,
        "no limits"
    );
    assert_eq!(extent(&partition), (0, 5));

    // By size: at most about two batches' worth stays.
    let removed = tokio::task::block_in_place(|| partition.apply_retention(2_500, 0, now)).unwrap();
    assert_eq!(removed, 3);
    assert_eq!(extent(&partition), (3, 5));
    assert_eq!(
        tokio::task::block_in_place(|| offsets(&partition)),
        [3, 4],
        "a reader from 0 starts at what is held"
    );

    // By age, everything expired: the last batch stays, so the end is still known.
    let removed =
        tokio::task::block_in_place(|| partition.apply_retention(0, 1, 1_000_000)).unwrap();
    assert_eq!(removed, 1);
    assert_eq!(extent(&partition), (4, 5));

    // Another node of the region opening the topic finds the same extent, and the next
    // append goes on at the end, not at 0.
    let there = storage(&cluster);
    let (mut opened, _) = tokio::task::block_in_place(|| there.open_topic(&topic)).unwrap();
    let elsewhere = opened.remove(0);
    assert_eq!(extent(&elsewhere), (4, 5));
    let next = broker::batch::PendingBatch::consecutive(&[Record {
        body: Bytes::from_static(b"after"),
        timestamp_ms: 1_000_001,
        ..Record::default()
    }]);
    assert_eq!(elsewhere.append_local(next).await.unwrap(), (5, 5));
    assert_eq!(tokio::task::block_in_place(|| offsets(&elsewhere)), [4, 5]);
}
