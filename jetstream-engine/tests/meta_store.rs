//! The JetStream metadata store against a real cluster of three nats-server processes
//! (replicas 3, fsync before acknowledging): the same conformance check as the embedded
//! stores, shared by the nodes of a region, kept apart from other regions, and kept
//! through the SIGKILL of any one server.

use std::sync::Arc;

use broker::meta::{MetaStore, Retention, TopicConfig};
use jetstream_engine::local_cluster::LocalCluster;
use jetstream_engine::{Engine, JetStreamMetaStore, JetStreamSettings};

fn node(cluster: &LocalCluster, region: &str) -> JetStreamMetaStore {
    let engine = Engine::connect(JetStreamSettings::new(cluster.all_urls())).unwrap();
    JetStreamMetaStore::open(engine, region).unwrap()
}

fn topic(name: &str) -> TopicConfig {
    TopicConfig {
        name: name.to_string(),
        partitions: 2,
        retention: Retention::default(),
        message_type: Default::default(),
        incarnation: 1,
    }
}

#[test]
fn the_metadata_store_does_what_every_engine_must_and_is_shared_by_a_region_s_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let first = node(&cluster, "eu.west");
    broker::meta::conformance::exercise(&first);

    // A second node of the region, on a connection of its own, reads what the first wrote
    // and cannot move a once-only value.
    let second = node(&cluster, "eu.west");
    assert_eq!(second.topics().unwrap(), first.topics().unwrap());
    assert_eq!(second.task_started("dr", 100).unwrap(), 5);
    assert_eq!(
        second.checkpoints("dr").unwrap(),
        first.checkpoints("dr").unwrap()
    );

    // Another region in the same cluster has a bucket of its own.
    let other = node(&cluster, "eu-west");
    assert!(other.topics().unwrap().is_empty());
    assert_eq!(other.task_started("dr", 100).unwrap(), 100);
}

#[test]
fn nodes_racing_to_record_a_task_s_start_all_read_the_one_that_won() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let nodes: Vec<Arc<JetStreamMetaStore>> =
        (0..4).map(|_| Arc::new(node(&cluster, "eu"))).collect();
    let starts: Vec<i64> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| scope.spawn(move || n.task_started("t", 1_000 + i as i64).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!((1_000..1_004).contains(&starts[0]), "{starts:?}");
    assert!(starts.iter().all(|s| *s == starts[0]), "{starts:?}");
}

#[test]
fn metadata_acknowledged_before_a_server_is_killed_is_read_after_it_from_any_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3).unwrap();
    let writer = node(&cluster, "eu");
    let mut written = Vec::new();
    for victim in 0..cluster.len() {
        for i in 0..5 {
            let name = format!("t{victim}-{i}");
            writer.put_topic(&topic(&name)).unwrap();
            written.push(name);
        }
        cluster.kill(victim).unwrap();
        // Two of three servers are a quorum: reads and writes go on.
        let reader = node(&cluster, "eu");
        let names: Vec<String> = reader
            .topics()
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        let mut expected = written.clone();
        expected.sort();
        assert_eq!(names, expected, "after the SIGKILL of server {victim}");
        writer
            .put_topic(&topic(&format!("after-kill-{victim}")))
            .unwrap();
        written.push(format!("after-kill-{victim}"));
        cluster.restart(victim).unwrap();
    }
}
