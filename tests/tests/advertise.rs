//! What a region can offer is advertised when it changes, not at the next tick: with the
//! periodic advertisement five minutes apart, a topic created after the link came up and
//! its first records still reach the target.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_topic_is_advertised_at_once() {
    let deployment = Deployment::new(&["eu", "us"]);
    let tasks = [task("orders", &["eu"], &["us"], "orders*")];
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &tasks, |config| {
            config.replication.advertise_interval_ms = 300_000;
        })
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    eventually("the link up", || async {
        us.node
            .replicator()
            .is_some_and(|r| r.links().iter().any(|l| l.up))
    })
    .await;
    // Created after both sides advertised once, at link-up.
    eu.client.create_topic("orders.new", 1, None).await.unwrap();
    produce(eu, "orders.new", 0, "fresh", 3, 3).await;
    eventually("us to receive the new topic's records", || async {
        held_end(&us.node, "orders.new", 0, "eu") == 3
    })
    .await;
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

/// A region offers its own sub-log of a partition before the first record is written, so
/// that the target is already pulling it (subscribed at the source) when the first record
/// arrives: the first record costs one one-way delay, not a discovery round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_subscribes_before_the_first_record() {
    let deployment = Deployment::new(&["eu", "us"]);
    let tasks = [task("orders", &["eu"], &["us"], "orders*")];
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &tasks, |_| {})
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    eu.client.create_topic("orders", 2, None).await.unwrap();
    let pulling = |partition: u32| {
        us.node.replicator().is_some_and(|r| {
            r.status().iter().any(|s| {
                s.topic == "orders"
                    && s.partition == partition
                    && s.origin == "eu"
                    && s.source.as_deref() == Some("eu")
            })
        })
    };
    eventually("us to pull both partitions of eu's empty topic", || async {
        pulling(0) && pulling(1)
    })
    .await;
    assert_eq!(
        held_end(&eu.node, "orders", 0, "eu"),
        0,
        "nothing written yet"
    );
    produce(eu, "orders", 1, "first", 2, 2).await;
    eventually("us to receive the first records", || async {
        held_end(&us.node, "orders", 1, "eu") == 2
    })
    .await;
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
