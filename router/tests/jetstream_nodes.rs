//! Two georouter nodes of one region on one JetStream cluster: "a1" replicates (it has
//! the region's `[replication]`), "a2" only serves clients. Producers write through both
//! at once to the same sub-logs; the records reach region "b" (embedded) through a1,
//! including those a2 appended (a1 follows the streams), every acknowledged record once
//! at offsets the two nodes never shared, and both nodes read back the same records.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jetstream_engine::local_cluster::LocalCluster;
use support::two_regions::{
    Acked, TOPIC, contents, converged, on_jetstream, producer_retrying, wait_for, write_config_with,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_of_a_jetstream_region_produce_at_once_and_replicate_through_one() {
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path(), "a,b");
    let cluster = LocalCluster::start(&dir.path().join("jetstream"), 3).unwrap();
    let storage = on_jetstream(&cluster);
    let b = support::spawn_with(
        "b",
        &dir.path().join("b"),
        &write_config_with(dir.path(), "b", None, ""),
        &[],
    );
    let a1_config = write_config_with(dir.path(), "a", Some(&b.replication), &storage);
    let a1 = support::spawn_with("a", &dir.path().join("a1"), &a1_config, &[]);
    // The second node: the region's storage, no replication of its own.
    let a2_config = dir.path().join("a2.toml");
    std::fs::write(
        &a2_config,
        format!("[region]\nid = \"a\"\ndata_dir = \"unused\"\n{storage}"),
    )
    .unwrap();
    let a2 = support::spawn_with("a", &dir.path().join("a2"), &a2_config, &[]);

    client::Client::connect(&a1.grpc)
        .await
        .unwrap()
        .create_topic(TOPIC, 2, None)
        .await
        .unwrap();
    let (through_a1, through_a2): (Acked, Acked) = (Arc::default(), Arc::default());
    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        producer_retrying(a1.grpc.clone(), through_a1.clone(), stop.clone(), 0),
        producer_retrying(a2.grpc.clone(), through_a2.clone(), stop.clone(), 1_000_000),
    ];
    wait_for("records through both nodes", &[&a1, &a2, &b], async || {
        through_a1.lock().unwrap().len() >= 400 && through_a2.lock().unwrap().len() >= 400
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    // No offset acknowledged to both nodes' clients.
    let mut all: BTreeMap<(u32, u64), Vec<u8>> = through_a1.lock().unwrap().clone();
    for (key, body) in through_a2.lock().unwrap().iter() {
        assert!(
            all.insert(*key, body.clone()).is_none(),
            "offset {key:?} acknowledged through both nodes"
        );
    }
    let acked: Acked = Arc::new(std::sync::Mutex::new(all));
    let (in_a, _) = converged(&a1, &b, &acked).await;
    assert_eq!(
        contents(&a2).await,
        in_a,
        "both nodes read the same records"
    );
}
