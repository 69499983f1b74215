//! Creating a topic of thousands of partitions takes a while (files and directories for
//! each); other topics stay readable and writable meanwhile. The topics map used to stay
//! locked for the whole creation, so every produce and lookup on the node waited (in a
//! replicating region, long enough for its links to miss heartbeats).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use broker::meta::{Retention, SledMetaStore};
use broker::{Broker, BrokerConfig, Partitioning};

const PARTITIONS: u32 = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_topics_are_served_while_a_large_topic_is_created() {
    let temp = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        region: "eu".to_string(),
        data_dir: temp.path().join("data"),
        storage: (*common::small_config()).clone(),
        default_retention: Retention::default(),
    };
    let open = || {
        let meta = SledMetaStore::open(&temp.path().join("meta")).unwrap();
        Arc::new(Broker::open(config.clone(), Arc::new(meta)).unwrap())
    };
    let broker = open();
    broker.create_topic("small", 1, None).unwrap();

    let created = Arc::new(AtomicBool::new(false));
    let creation = std::thread::spawn({
        let (broker, created) = (broker.clone(), created.clone());
        move || {
            broker.create_topic("large", PARTITIONS, None).unwrap();
            created.store(true, Ordering::SeqCst);
        }
    });
    // The creation is under way once its first partition's directory is there.
    let first = temp.path().join("data/topics/large/0");
    while !first.exists() {
        assert!(
            !creation.is_finished(),
            "the creation ended before its first partition appeared"
        );
        std::thread::yield_now();
    }
    let receipt = broker
        .produce(
            "small",
            vec![common::record("during", 1)],
            Partitioning::Explicit(0),
        )
        .await
        .unwrap();
    assert!(
        !created.load(Ordering::SeqCst),
        "a produce to another topic waited for the creation of {PARTITIONS} partitions"
    );
    assert!(broker.topic("small").is_ok());
    creation.join().unwrap();
    assert_eq!(receipt.len(), 1);

    // The new topic is whole after a restart.
    broker.shut_down().await.unwrap();
    drop(broker);
    let broker = open();
    assert_eq!(
        broker.topic("large").unwrap().partitions.len() as u32,
        PARTITIONS
    );
    let read = common::read_all(&broker.partition("small", 0).unwrap());
    assert_eq!(read.len(), 1);
}
