//! Active-active consumer groups: one group consuming in two regions at once, each
//! region's consumers receiving their own origin's messages while both are up; when eu's
//! consumers are gone, us takes eu's waiting messages over after `takeover_after_ms`
//! (reported in the replication status and metrics), and hands them back once eu makes
//! progress again, with nothing delivered twice.

mod support;

use console_api::client::ConsoleClient;
use support::pop::{ack, receive, texts};
use support::*;

fn expected(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let mut out: Vec<String> = range.map(|i| format!("{prefix}-{i}")).collect();
    out.sort();
    out
}

async fn eu_progress(node: &TestNode) -> u64 {
    node.client
        .group_cursors("billing", "orders")
        .await
        .ok()
        .and_then(|c| c.into_iter().next())
        .and_then(|c| c.cursor?.next.get("eu").copied())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_origin_is_consumed_in_its_region_and_taken_over_when_its_consumers_are_gone() {
    let deployment = Deployment::new(&["eu", "us"]);
    let mut orders = task("orders", &["eu"], &["us"], "orders");
    orders.direction = replicator::Direction::TwoWay;
    orders.groups = Some("billing*".into());
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &[orders], |config| {
            config.rocketmq.takeover_after_ms = 2_000;
        })
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    create_if_missing(us, "orders", 1).await;
    produce(eu, "orders", 0, "eu", 10, 10).await;
    produce(us, "orders", 0, "us", 10, 10).await;
    eventually("both regions to hold both origins", || async {
        [eu, us].iter().all(|n| {
            held_end(&n.node, "orders", 0, "eu") == 10 && held_end(&n.node, "orders", 0, "us") == 10
        })
    })
    .await;
    let (at_eu, at_us) = (eu.node.bound.rocketmq, us.node.bound.rocketmq);

    // Both up: each region's consumers get their own origin's messages, and only those.
    let in_eu = receive(at_eu, "billing", "orders", "eu-consumer", 500).await;
    let in_us = receive(at_us, "billing", "orders", "us-consumer", 500).await;
    assert_eq!(texts(&in_eu), expected("eu", 0..10));
    assert_eq!(texts(&in_us), expected("us", 0..10));
    ack(at_eu, "billing", "orders", &in_eu).await;
    ack(at_us, "billing", "orders", &in_us).await;

    eventually("eu's progress to reach us", || async {
        eu_progress(us).await == 10
    })
    .await;

    // eu's consumers are gone; eu's new messages wait in us, then us takes them over.
    produce(eu, "orders", 0, "eu", 5, 5).await;
    eventually("us to hold eu's new messages", || async {
        held_end(&us.node, "orders", 0, "eu") == 15
    })
    .await;
    let started = std::time::Instant::now();
    let mut taken = Vec::new();
    while taken.is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "us never took eu's messages over"
        );
        taken = receive(at_us, "billing", "orders", "us-consumer", 500).await;
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1_500),
        "taken over only after waiting: {:?}",
        started.elapsed()
    );
    assert_eq!(
        texts(&taken),
        ["eu-0", "eu-1", "eu-2", "eu-3", "eu-4"].map(String::from),
        "exactly eu's waiting messages (produce names restart at 0)"
    );
    let status = ConsoleClient::new(us.node.bound.console, None)
        .replication()
        .await
        .unwrap();
    assert_eq!(status.takeovers.len(), 1, "{:?}", status.takeovers);
    let takeover = &status.takeovers[0];
    assert_eq!(
        (takeover.group.as_str(), takeover.origin.as_str()),
        ("billing", "eu")
    );
    assert_eq!(takeover.delivered, 5);
    let metrics = ConsoleClient::new(us.node.bound.console, None)
        .metrics()
        .await
        .unwrap();
    assert!(
        metrics.contains("georouter_group_takeovers_total 1"),
        "{metrics}"
    );
    ack(at_us, "billing", "orders", &taken).await;

    // eu's consumers return: after us's progress reaches eu, they get only what is new.
    eventually("us's acknowledgements to reach eu", || async {
        eu_progress(eu).await == 15
    })
    .await;
    produce(eu, "orders", 0, "back", 3, 3).await;
    let back = receive(at_eu, "billing", "orders", "eu-consumer", 500).await;
    assert_eq!(texts(&back), expected("back", 0..3), "nothing twice");
    ack(at_eu, "billing", "orders", &back).await;
    // Progress eu made reaches us, which hands eu's messages back.
    eventually("us to hand eu's messages back", || async {
        let _ = receive(at_us, "billing", "orders", "us-consumer", 0).await;
        ConsoleClient::new(us.node.bound.console, None)
            .replication()
            .await
            .unwrap()
            .takeovers
            .is_empty()
    })
    .await;
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
