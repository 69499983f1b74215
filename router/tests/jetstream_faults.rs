//! Faults on the JetStream engine, with each region a `georouter serve` process: region
//! "a" keeps its data in a cluster of three nats-server processes, region "b" on its own
//! disk, with a two-way task between them. While producers write in "a", each server of
//! a's cluster in turn is killed with SIGKILL and started again, and then a's georouter node
//! itself, twice. At the end both regions hold the same records under the same (origin,
//! partition, offset): every acknowledged record, once, each sub-log dense from 0. How
//! long each fault kept "a" from acknowledging is printed.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use jetstream_engine::local_cluster::LocalCluster;
use nix::sys::signal::Signal;
use support::two_regions::{
    Acked, TOPIC, converged, on_jetstream, producer_retrying, wait_for, write_config_with,
};

/// Waits for `acked` to grow by `more` records; returns how long the first one took.
async fn more_acked(
    what: &str,
    acked: &Acked,
    more: usize,
    processes: &[&support::ServeProcess],
) -> std::time::Duration {
    let started = Instant::now();
    let from = acked.lock().unwrap().len();
    wait_for(what, processes, async || acked.lock().unwrap().len() > from).await;
    let first = started.elapsed();
    wait_for(what, processes, async || {
        acked.lock().unwrap().len() >= from + more
    })
    .await;
    first
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkills_of_servers_and_nodes_of_a_jetstream_region_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path(), "a,b");
    let mut cluster = LocalCluster::start(&dir.path().join("jetstream"), 3).unwrap();
    let on_jetstream = on_jetstream(&cluster);
    let (a_data, b_data) = (dir.path().join("a"), dir.path().join("b"));
    let b_config = write_config_with(dir.path(), "b", None, "");
    let b = support::spawn_with("b", &b_data, &b_config, &[]);
    let a_config = write_config_with(dir.path(), "a", Some(&b.replication), &on_jetstream);
    let mut a = support::spawn_with("a", &a_data, &a_config, &[]);
    let a_client = client::Client::connect(&a.grpc).await.unwrap();
    a_client.create_topic(TOPIC, 2, None).await.unwrap();

    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut seed = 0;
    let mut writing = producer_retrying(a.grpc.clone(), acked.clone(), stop.clone(), seed);
    more_acked("the first records", &acked, 200, &[&a, &b]).await;

    // 1. Each server of a's cluster dies mid-produce and comes back.
    for server in 0..cluster.len() {
        // A produce in flight may fail while a stream's leader is elected: the producer
        // goes on (what failed was not acknowledged).
        cluster.kill(server).unwrap();
        let waited = more_acked("records with a server down", &acked, 200, &[&a, &b]).await;
        eprintln!("server {server} killed: next acknowledgement after {waited:?}");
        cluster.restart(server).unwrap();
    }

    // 2. a's georouter node dies mid-produce and mid-replication, twice; a new process
    // with the same config serves the region from the cluster.
    for round in 0..2 {
        a.signal(Signal::SIGKILL);
        let _ = a.child.wait();
        stop.store(true, Ordering::Relaxed);
        let _ = writing.await;
        stop.store(false, Ordering::Relaxed);
        let killed = Instant::now();
        a = support::spawn_with("a", &a_data, &a_config, &[]);
        seed += 1_000_000;
        writing = producer_retrying(a.grpc.clone(), acked.clone(), stop.clone(), seed);
        more_acked("records after the node restarted", &acked, 200, &[&a, &b]).await;
        eprintln!(
            "node killed (round {round}): serving again after {:?}",
            killed.elapsed()
        );
    }
    stop.store(true, Ordering::Relaxed);
    writing.await.unwrap();
    let (_, in_b) = converged(&a, &b, &acked).await;
    assert!(in_b.len() >= acked.lock().unwrap().len());
}
