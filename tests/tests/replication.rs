//! Replication between regions in one process, over real QUIC with mutual TLS on
//! loopback: convergence, exactly-once placement, no loops, filters, renames, start
//! positions, rate limits and vector cursors across regions.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use client::Partitioning;
use support::*;

/// Produces `count` records named `<prefix>-<i>` in batches of `batch` to `partition`.
async fn produce(
    node: &TestNode,
    topic: &str,
    partition: u32,
    prefix: &str,
    count: usize,
    batch: usize,
) {
    for start in (0..count).step_by(batch) {
        let records = (start..(start + batch).min(count))
            .map(|i| record(&format!("{prefix}-{i}")))
            .collect();
        node.client
            .produce(topic, records, Partitioning::Partition(partition))
            .await
            .unwrap();
    }
}

/// Checks that a region holds exactly the expected records per (partition, origin): the
/// offsets 0..n once each, in per-origin order, with the right bodies.
fn assert_exact(
    records: &[(u32, String, u64, String)],
    expected: &BTreeMap<(u32, String), (String, usize)>,
) {
    let mut per_sublog: BTreeMap<(u32, String), Vec<(u64, String)>> = BTreeMap::new();
    for (p, origin, offset, body) in records {
        per_sublog
            .entry((*p, origin.clone()))
            .or_default()
            .push((*offset, body.clone()));
    }
    assert_eq!(
        per_sublog.keys().collect::<BTreeSet<_>>(),
        expected.keys().collect::<BTreeSet<_>>()
    );
    for (key, (prefix, n)) in expected {
        let got = &per_sublog[key];
        let want: Vec<(u64, String)> = (0..*n)
            .map(|i| (i as u64, format!("{prefix}-{i}")))
            .collect();
        assert_eq!(got, &want, "sub-log {key:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_two_regions_converge_with_identical_positions() {
    let deployment = Deployment::new(&["eu", "us"]);
    let mut aa = task("orders-aa", &["eu"], &["us"], "orders");
    aa.direction = replicator::Direction::TwoWay;
    let nodes = deployment.start_mesh(&["eu", "us"], &[aa]).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    for node in [eu, us] {
        node.client.create_topic("orders", 2, None).await.unwrap();
    }
    let (eu_writes, us_writes) = tokio::join!(
        async {
            produce(eu, "orders", 0, "eu0", 300, 7).await;
            produce(eu, "orders", 1, "eu1", 120, 10).await;
        },
        async {
            produce(us, "orders", 0, "us0", 250, 9).await;
            produce(us, "orders", 1, "us1", 80, 1).await;
        }
    );
    let _ = (eu_writes, us_writes);
    let expected: BTreeMap<(u32, String), (String, usize)> = [
        ((0, "eu".to_string()), ("eu0".to_string(), 300)),
        ((1, "eu".to_string()), ("eu1".to_string(), 120)),
        ((0, "us".to_string()), ("us0".to_string(), 250)),
        ((1, "us".to_string()), ("us1".to_string(), 80)),
    ]
    .into();
    for node in [eu, us] {
        eventually("both regions to hold every record", || async {
            expected.iter().all(|((p, origin), (_, n))| {
                held_end(&node.node, "orders", *p, origin) == *n as u64
            })
        })
        .await;
        assert_exact(&all_records(&node.client, "orders").await, &expected);
    }

    // A vector cursor taken in one region reads the same remaining records in the other.
    let mut stream = eu
        .client
        .fetch(client::pb::FetchRequest {
            topic: "orders".into(),
            partitions: vec![0],
            start: Some(client::earliest()),
            max_bytes: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut first = client::Fetched::default();
    while first.records.len() < 100 {
        first.absorb(stream.message().await.unwrap().expect("a response"));
    }
    drop(stream);
    eu.client
        .commit("readers", "orders", first.partition_cursors())
        .await
        .unwrap();
    let cursors = us.client.group_cursors("readers", "orders").await;
    // Group cursors are region-local metadata: the cursor value itself moves regions.
    assert!(cursors.unwrap().is_empty());
    let rest = |node: &TestNode| {
        let cursors = first.partition_cursors();
        let client = node.client.clone();
        async move {
            let fetched = client
                .fetch_all("orders", client::earliest(), cursors)
                .await
                .unwrap();
            let mut per_origin: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for r in fetched.records.iter().filter(|r| r.partition == 0) {
                per_origin
                    .entry(r.origin.clone())
                    .or_default()
                    .push(r.offset);
            }
            per_origin
        }
    };
    let (in_eu, in_us) = (rest(eu).await, rest(us).await);
    assert_eq!(in_eu, in_us);
    let remaining: usize = in_eu.values().map(Vec::len).sum();
    assert_eq!(remaining, 550 - first.records.len());
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
