//! A region on the JetStream engine (a real cluster of three nats-server processes)
//! replicating with a region on the embedded engine, both ways, over real QUIC with mutual
//! TLS: every record of each origin reaches the other region once, at its offsets, and the
//! JetStream region's data outlives its node: a new node with an empty data directory,
//! started on the same cluster, serves every record and replication goes on through it.

mod support;

use std::collections::BTreeMap;

use jetstream_engine::JetStreamSettings;
use jetstream_engine::local_cluster::LocalCluster;
use router::config::StorageEngineKind;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_region_replicates_both_ways_with_an_embedded_one_and_outlives_its_node() {
    let cluster_dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(cluster_dir.path(), 3).unwrap();
    let urls = cluster.all_urls();
    let on_jetstream = move |config: &mut router::config::NodeConfig| {
        if config.region.id == "us" {
            config.storage.engine = StorageEngineKind::JetStream;
            config.storage.jetstream = Some(JetStreamSettings::new(urls.clone()));
        }
    };
    let deployment = Deployment::new(&["eu", "us"]);
    let mut orders = task("orders", &["eu"], &["us"], "orders");
    orders.direction = replicator::Direction::TwoWay;
    // us dials eu, so that a new us node finds eu where it was.
    let mut topology = TopologySpec::mesh(&["eu", "us"]);
    topology.links[0].dial = Some("us".into());
    let mut nodes = deployment
        .start_topology(topology.clone(), &[orders.clone()], &on_jetstream)
        .await;
    {
        let (eu, us) = (&nodes[0], &nodes[1]);
        create_if_missing(eu, "orders", 2).await;
        create_if_missing(us, "orders", 2).await;
        produce(eu, "orders", 0, "eu", 40, 8).await;
        produce(us, "orders", 1, "us", 40, 8).await;
        eventually("both regions to hold both origins", || async {
            [eu, us].iter().all(|n| {
                held_end(&n.node, "orders", 0, "eu") == 40
                    && held_end(&n.node, "orders", 1, "us") == 40
            })
        })
        .await;
        let expected = BTreeMap::from([
            ((0, "eu".to_string()), ("eu".to_string(), 40)),
            ((1, "us".to_string()), ("us".to_string(), 40)),
        ]);
        for node in [eu, us] {
            assert_exact(&all_records(&node.client, "orders").await, &expected);
        }
    }

    // The JetStream region's node goes; a new one, with nothing on its disk, takes its
    // place on the same cluster.
    let us = nodes.pop().unwrap();
    let eu = nodes.pop().unwrap();
    us.node.shut_down().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = topology.clone();
    spec.set_address("eu", eu.node.bound.replication);
    let mut config = deployment.config("us", dir.path(), &spec, &[orders]);
    on_jetstream(&mut config);
    let us = start_with(config, dir).await;
    assert_eq!(held_end(&us.node, "orders", 1, "us"), 40);
    produce(&us, "orders", 1, "us", 10, 5).await;
    produce(&eu, "orders", 0, "eu", 10, 5).await;
    eventually(
        "the new node's records to reach eu and eu's to reach it",
        || async {
            held_end(&eu.node, "orders", 1, "us") == 50
                && held_end(&us.node, "orders", 0, "eu") == 50
        },
    )
    .await;
    // Both regions hold the same records: each origin's offsets 0..50 once each.
    let mut held = Vec::new();
    for node in [&eu, &us] {
        let mut records = all_records(&node.client, "orders").await;
        records.sort();
        held.push(records);
    }
    assert_eq!(held[0], held[1]);
    for (partition, origin) in [(0, "eu"), (1, "us")] {
        let offsets: Vec<u64> = held[0]
            .iter()
            .filter(|r| r.0 == partition && r.1 == origin)
            .map(|r| r.2)
            .collect();
        assert_eq!(offsets, (0..50).collect::<Vec<_>>(), "{origin}");
    }
}
