//! A region serves its new sub-logs to the neighbours that need them before they ask: the
//! first record of a topic created after the link came up reaches the target one one-way
//! delay after it is durable at the source, not after an advertisement and a subscribe
//! round trip (three one-way delays). With pushes turned off the same record takes at
//! least two one-way delays more, which shows what the test measures.

mod support;

use std::time::{Duration, Instant};

use console_api::client::ConsoleClient;
use scenarios::wan::{Impairment, WanLink};
use support::*;

/// One-way delay of the emulated link: large against the processing on a loaded machine.
const DELAY: Duration = Duration::from_millis(250);

async fn metric(node: &TestNode, line: &str) -> u64 {
    let text = ConsoleClient::new(node.node.bound.console, None)
        .metrics()
        .await
        .unwrap();
    let prefix = format!("{line} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Time from the acknowledgement of the first record of a new topic in eu to us holding
/// it, over a link of `DELAY` each way.
async fn first_record_wait(push: bool) -> (Duration, u64) {
    let deployment = Deployment::new(&["eu", "us"]);
    let tasks = [task("orders", &["eu"], &["us"], "orders*")];
    let wan: std::sync::Mutex<Option<WanLink>> = Default::default();
    let mut topology = TopologySpec::mesh(&["eu", "us"]);
    topology.links[0].dial = Some("us".into());
    let nodes = deployment
        .start_topology(topology, &tasks, |config| {
            config.replication.push = push;
            if config.region.id == "us" {
                let eu = config.regions.iter_mut().find(|r| r.name == "eu").unwrap();
                let delayed = Impairment {
                    delay: DELAY,
                    ..Impairment::default()
                };
                let link = WanLink::start_with(eu.address.expect("eu first"), delayed).unwrap();
                eu.address = Some(link.address());
                *wan.lock().unwrap() = Some(link);
            }
        })
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    eventually("the link up both ways", || async {
        nodes.iter().all(|n| {
            n.node
                .replicator()
                .is_some_and(|r| r.links().iter().any(|l| l.up))
        })
    })
    .await;
    eu.client.create_topic("orders.new", 1, None).await.unwrap();
    produce(eu, "orders.new", 0, "first", 1, 1).await;
    let acked = Instant::now();
    eventually("us to hold the first record", || async {
        held_end(&us.node, "orders.new", 0, "eu") == 1
    })
    .await;
    let waited = acked.elapsed();
    let adopted = metric(us, "georouter_pushes_received_total{outcome=\"adopted\"}").await;
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
    drop(wan.lock().unwrap().take());
    (waited, adopted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_record_of_a_new_topic_costs_one_one_way_delay() {
    let (pushed, adopted) = first_record_wait(true).await;
    assert!(adopted >= 1, "us adopted no pushed stream");
    assert!(
        pushed < DELAY * 2,
        "with pushes the first record took {pushed:?} over a {DELAY:?} link"
    );
    let (discovered, adopted) = first_record_wait(false).await;
    assert_eq!(adopted, 0);
    assert!(
        discovered >= DELAY * 2,
        "without pushes the first record waits for a discovery round, yet took {discovered:?}"
    );
}
