//! Topic incarnations across regions: a topic deleted and created again, at the origin or
//! at a target, is a new topic everywhere; its records are never merged with the old
//! one's under the same identities, and history is never silently missing.

mod support;

use support::*;

fn sub_log(node: &TestNode, topic: &str, origin: &str) -> Option<broker::storage::SubLogInfo> {
    node.node
        .broker
        .partition(topic, 0)
        .ok()
        .and_then(|p| p.sub_log(origin))
}

fn eu_records(records: &[(u32, String, u64, String)]) -> Vec<(u64, String)> {
    records
        .iter()
        .filter(|r| r.1 == "eu")
        .map(|r| (r.2, r.3.clone()))
        .collect()
}

fn numbered(prefix: &str, n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|i| (i as u64, format!("{prefix}-{i}")))
        .collect()
}

/// The origin deletes and re-creates the topic: its offsets start again at 0. The target
/// drops its copy of the old incarnation and holds exactly the new one's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_recreated_at_the_origin_replaces_the_old_incarnation_in_the_target() {
    let deployment = Deployment::new(&["eu", "us"]);
    let mut aa = task("orders-aa", &["eu"], &["us"], "orders");
    aa.direction = replicator::Direction::TwoWay;
    let nodes = deployment.start_mesh(&["eu", "us"], &[aa]).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    produce(eu, "orders", 0, "old", 10, 5).await;
    eventually("us to hold the old incarnation", || async {
        held_end(&us.node, "orders", 0, "eu") == 10
    })
    .await;
    let old = sub_log(us, "orders", "eu").unwrap().incarnation;

    eu.client.delete_topic("orders").await.unwrap();
    // In active-active, replication may create it again here first (us advertises it):
    // either way it is a new incarnation.
    create_if_missing(eu, "orders", 1).await;
    let new = eu.node.broker.topic("orders").unwrap().config.incarnation;
    assert!(old != 0 && new > old, "incarnations {old} then {new}");
    produce(eu, "orders", 0, "new", 3, 3).await;
    eventually("us to hold the new incarnation", || async {
        sub_log(us, "orders", "eu").is_some_and(|s| s.incarnation == new && s.durable_end == 3)
    })
    .await;
    let records = all_records(&us.client, "orders").await;
    assert_eq!(
        eu_records(&records),
        numbered("new", 3),
        "us merged the two incarnations"
    );
    // Still replicating.
    produce(eu, "orders", 0, "more", 2, 2).await;
    eventually("us to hold what followed", || async {
        held_end(&us.node, "orders", 0, "eu") == 5
    })
    .await;
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

/// A target deletes the topic and replication creates it again: the old task checkpoint
/// does not apply to the new topic, so the whole history is pulled again, not just what
/// followed the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_recreated_at_a_target_gets_its_whole_history_again() {
    let deployment = Deployment::new(&["eu", "us"]);
    let mirror = task("mirror", &["eu"], &["us"], "orders");
    let nodes = deployment.start_mesh(&["eu", "us"], &[mirror]).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    produce(eu, "orders", 0, "r", 10, 5).await;
    eventually("us to hold the history", || async {
        held_end(&us.node, "orders", 0, "eu") == 10
    })
    .await;
    // The checkpoint is saved every second; let it be.
    eventually("the task checkpoint to be saved", || async {
        us.node
            .broker
            .meta()
            .checkpoints("mirror")
            .unwrap()
            .iter()
            .any(|c| c.offset == 10)
    })
    .await;

    us.client.delete_topic("orders").await.unwrap();
    eventually(
        "replication to re-create the topic and pull everything",
        || async { held_end(&us.node, "orders", 0, "eu") == 10 },
    )
    .await;
    produce(eu, "orders", 0, "r", 12, 12).await; // r-0..r-11 again: offsets 10..21
    eventually("us to follow", || async {
        held_end(&us.node, "orders", 0, "eu") == 22
    })
    .await;
    let records = all_records(&us.client, "orders").await;
    let held = eu_records(&records);
    assert_eq!(
        held.len(),
        22,
        "history missing after re-creation: {held:?}"
    );
    assert_eq!(held[..10], numbered("r", 10)[..]);
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
