//! PoP consumption over a real broker: gaps, incarnations, topics created again.
use super::*;
use broker::Partitioning;
use broker::batch::PendingBatch;
use broker::meta::{MemoryMetaStore, Retention};
use broker::storage::{GapPolicy, StorageConfig};

fn broker(dir: &std::path::Path) -> Arc<Broker> {
    let config = broker::BrokerConfig {
        region: "eu".into(),
        data_dir: dir.to_path_buf(),
        storage: StorageConfig::default(),
        default_retention: Retention::default(),
    };
    Arc::new(Broker::open(config, Arc::new(MemoryMetaStore::default())).unwrap())
}

fn receive() -> Receive<'static> {
    Receive {
        group: "billing",
        topic: "orders",
        filter: &Filter::All,
        batch: 10,
        invisible: Duration::from_secs(30),
        hint: None,
        max_attempts: 16,
        fifo: true,
    }
}

fn record(body: &'static str) -> Record {
    Record {
        key: None,
        tag: None,
        properties: Default::default(),
        body: bytes::Bytes::from_static(body.as_bytes()),
        timestamp_ms: 1_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_inside_a_replicated_batch_does_not_pin_the_frontier() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    broker.create_topic("orders", 1, None).unwrap();
    // Origin us's batch covers offsets 0..=2 but holds 0 and 2 (a filter removed 1).
    let (a, c) = (record("a"), record("c"));
    let bytes = PendingBatch::covering(2, [(0, &a), (2, &c)]).seal(0);
    broker
        .append_replicated("orders", 0, "us", bytes, GapPolicy::Refuse)
        .await
        .unwrap();
    let consumption = Consumption::new(broker.clone());
    let receive = receive();
    let taken = tokio::task::block_in_place(|| consumption.take(&receive)).unwrap();
    let offsets: Vec<u64> = taken.deliveries.iter().map(|d| d.offset).collect();
    assert_eq!(offsets, [0, 2]);
    let handles: Vec<String> = taken.deliveries.iter().map(|d| d.handle.clone()).collect();
    let acked = tokio::task::block_in_place(|| consumption.ack("billing", "orders", &handles));
    assert!(acked.iter().all(Result::is_ok), "{acked:?}");
    let again = tokio::task::block_in_place(|| consumption.take(&receive)).unwrap();
    assert!(again.deliveries.is_empty());
    let group = consumption.group("billing", "orders").unwrap();
    let part = Consumption::partition_state(&group, 0);
    let partition = part.lock().unwrap();
    assert_eq!(partition.frontier("us"), 3, "past the gap");
    assert!(partition.done.is_empty(), "nothing left out of order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_is_consumed_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let consumption = Consumption::new(broker.clone());
    let receive = receive();
    for round in ["first", "second"] {
        broker.create_topic("orders", 1, None).unwrap();
        broker
            .produce("orders", vec![record("m")], Partitioning::Explicit(0))
            .await
            .unwrap();
        let taken = tokio::task::block_in_place(|| consumption.take(&receive)).unwrap();
        let offsets: Vec<u64> = taken.deliveries.iter().map(|d| d.offset).collect();
        assert_eq!(offsets, [0], "{round} incarnation");
        let handles: Vec<String> = taken.deliveries.iter().map(|d| d.handle.clone()).collect();
        let acked = tokio::task::block_in_place(|| consumption.ack("billing", "orders", &handles));
        assert!(acked.iter().all(Result::is_ok));
        broker.delete_topic("orders").unwrap();
    }
    assert!(
        broker
            .meta()
            .pop_states("billing", "orders")
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_topic_created_again_is_consumed_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    broker.create_topic("orders", 1, None).unwrap();
    let batch = |bodies: &[&'static str]| {
        let records: Vec<Record> = bodies.iter().map(|b| record(b)).collect();
        let bytes = PendingBatch::consecutive(&records).seal(0);
        broker::batch::Batch::from_bytes(bytes, usize::MAX).unwrap()
    };
    let old = broker::incarnation::new_incarnation();
    broker
        .append_replicated_run_in(
            "orders",
            0,
            "us",
            old,
            vec![batch(&["a", "b", "c"])],
            GapPolicy::Refuse,
        )
        .await
        .unwrap();
    let consumption = Consumption::new(broker.clone());
    let taken = tokio::task::block_in_place(|| consumption.take(&receive())).unwrap();
    assert_eq!(taken.deliveries.len(), 3);
    let handles: Vec<String> = taken.deliveries.iter().map(|d| d.handle.clone()).collect();
    tokio::task::block_in_place(|| consumption.ack("billing", "orders", &handles));
    // The origin deleted and created its topic: a newer incarnation replaces the old.
    let new = old + (1 << 16);
    let run = broker
        .append_replicated_run_in(
            "orders",
            0,
            "us",
            new,
            vec![batch(&["x", "y"])],
            GapPolicy::Allow,
        )
        .await
        .unwrap();
    assert_eq!(run.replaced, Some(old));
    let taken = tokio::task::block_in_place(|| consumption.take(&receive())).unwrap();
    let bodies: Vec<&[u8]> = taken
        .deliveries
        .iter()
        .map(|d| d.record.body.as_ref())
        .collect();
    assert_eq!(bodies, [b"x".as_slice(), b"y"]);
}
