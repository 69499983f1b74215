//! Two regions as separate `georouter serve` processes joined by a QUIC link, with a
//! two-way task. Producers write in region "a" while first the target ("b") and then the
//! source ("a") is killed with SIGKILL and restarted. At the end both regions hold the
//! same records under the same (origin, partition, offset): none lost, none duplicated.

mod support;

use std::sync::Arc;

use client::{Partitioning, pb};
use nix::sys::signal::Signal;
use support::ServeProcess;
use support::two_regions::{Acked, TOPIC, converged, ends, producer, wait_for, write_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_target_and_source_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path(), "a,b");
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));

    // "b" accepts; "a" (the lower id) dials it.
    let b_config = write_config(dir.path(), "b", None);
    let mut b = support::spawn_with("b", &b_data, &b_config, &[]);
    let b_replication = b.replication.clone();
    let a_config = write_config(dir.path(), "a", Some(&b_replication));
    let mut a = support::spawn_with("a", &a_data, &a_config, &[]);

    let a_client = client::Client::connect(&a.grpc).await.unwrap();
    a_client.create_topic(TOPIC, 2, None).await.unwrap();
    // A few records the other way, to check the reverse direction after the restarts.
    let b_client = client::Client::connect(&b.grpc).await.unwrap();
    wait_for("the topic to reach b", &[&a, &b], async || {
        b_client.describe_topic(TOPIC).await.is_ok()
    })
    .await;
    for i in 0..5 {
        b_client
            .produce(
                TOPIC,
                vec![pb::Record {
                    body: format!("from-b-{i}").into_bytes(),
                    ..Default::default()
                }],
                Partitioning::Partition(0),
            )
            .await
            .unwrap();
    }

    let acked: Acked = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = producer(a.grpc.clone(), acked.clone(), stop.clone(), 0);

    // Records of origin "a" a region holds.
    let replicated = |p: &ServeProcess| {
        let grpc = p.grpc.clone();
        async move {
            ends(&grpc)
                .await
                .iter()
                .filter(|((origin, _), _)| origin == "a")
                .map(|(_, end)| *end)
                .sum::<u64>()
        }
    };
    wait_for("replication to be under way", &[&a, &b], async || {
        replicated(&b).await >= 300
    })
    .await;

    // 1. The target dies mid-stream and comes back on the same replication address.
    b.signal(Signal::SIGKILL);
    let _ = b.child.wait();
    let acked_at_kill = acked.lock().unwrap().len();
    wait_for("more records while the target is down", &[&a], async || {
        acked.lock().unwrap().len() >= acked_at_kill + 300
    })
    .await;
    b = support::spawn_with(
        "b",
        &b_data,
        &b_config,
        &[("GEOROUTER__LISTEN__REPLICATION", b_replication.clone())],
    );
    wait_for(
        "the target to catch up after its restart",
        &[&a, &b],
        async || replicated(&b).await >= acked.lock().unwrap().len() as u64,
    )
    .await;

    // 2. The source dies mid-stream (producers and replication in flight).
    a.signal(Signal::SIGKILL);
    let _ = a.child.wait();
    let _ = writing.await;
    a = support::spawn_with("a", &a_data, &a_config, &[]);
    let writing = producer(a.grpc.clone(), acked.clone(), stop.clone(), 1_000_000);
    let acked_now = acked.lock().unwrap().len();
    wait_for(
        "more records after the source restarted",
        &[&a],
        async || acked.lock().unwrap().len() >= acked_now + 300,
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writing.await.unwrap();

    let (in_a, _) = converged(&a, &b, &acked).await;
    assert_eq!(
        in_a.keys().filter(|k| k.0 == "b").count(),
        5,
        "b's records reached a"
    );
}
