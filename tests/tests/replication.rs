//! Replication between regions in one process, over real QUIC with mutual TLS on
//! loopback: convergence, exactly-once placement, no loops, filters, renames, start
//! positions, rate limits and vector cursors across regions.

mod support;

use std::collections::BTreeMap;

use client::Partitioning;

use support::*;

/// "eu" and "us", linked; "us" dials ("eu" sorts first and would dial by default).
fn eu_us(eu: Option<&TestNode>) -> TopologySpec {
    let mut spec = TopologySpec::mesh(&["eu", "us"]);
    spec.links[0].dial = Some("us".into());
    if let Some(eu) = eu {
        spec.set_address("eu", eu.node.bound.replication);
    }
    spec
}

/// Starts region "eu" alone; it waits for "us" to dial it.
async fn start_source(deployment: &Deployment, tasks: &[replicator::TaskSpec]) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment.config("eu", dir.path(), &eu_us(None), tasks);
    start_with(config, dir).await
}

/// Starts region "us", which dials `eu` ("eu" sorts first and would dial by default, but
/// it does not know this region's address).
async fn start_target(
    deployment: &Deployment,
    eu: &TestNode,
    tasks: &[replicator::TaskSpec],
) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let config = deployment.config("us", dir.path(), &eu_us(Some(eu)), tasks);
    start_with(config, dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_active_two_regions_converge_with_identical_positions() {
    let deployment = Deployment::new(&["eu", "us"]);
    let mut aa = task("orders-aa", &["eu"], &["us"], "orders");
    aa.direction = replicator::Direction::TwoWay;
    let nodes = deployment.start_mesh(&["eu", "us"], &[aa]).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    for node in [eu, us] {
        create_if_missing(node, "orders", 2).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_region_mesh_places_each_record_once_everywhere() {
    let regions = ["a", "b", "c"];
    let deployment = Deployment::new(&regions);
    let mut mesh = task("mesh", &regions, &regions, "orders");
    mesh.direction = replicator::Direction::TwoWay;
    let nodes = deployment.start_mesh(&regions, &[mesh]).await;
    for node in &nodes {
        create_if_missing(node, "orders", 1).await;
    }
    let counts = [200usize, 150, 90];
    let writes = nodes
        .iter()
        .zip(regions)
        .zip(counts)
        .map(|((node, region), n)| produce(node, "orders", 0, region, n, 10));
    futures_util::future::join_all(writes).await;
    let expected: BTreeMap<(u32, String), (String, usize)> = regions
        .iter()
        .zip(counts)
        .map(|(r, n)| ((0, r.to_string()), (r.to_string(), n)))
        .collect();
    for node in &nodes {
        eventually("every region to hold every record", || async {
            regions
                .iter()
                .zip(counts)
                .all(|(origin, n)| held_end(&node.node, "orders", 0, origin) == n as u64)
        })
        .await;
        // Each record once although it is offered on two paths (directly and via the
        // third region), and a region never holds a copy of its own records from others.
        assert_exact(&all_records(&node.client, "orders").await, &expected);
    }
    for node in &nodes {
        let replicator = node.node.replicator().unwrap();
        assert_eq!(replicator.metrics().frame_refusals("loop"), 0);
        // Data can converge through a relay before the last link is up; the mesh still
        // ends with two links per region.
        eventually("two links up per region", || async {
            replicator.links().iter().filter(|l| l.up).count() == 2
        })
        .await;
    }
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_renamed_task_keeps_origin_offsets_with_gaps() {
    let deployment = Deployment::new(&["eu", "us"]);
    let mut audit = task("audit", &["eu"], &["us"], "orders*");
    audit.rename = Some("audit.{topic}".into());
    audit.tags = vec!["pii-free".into()];
    // Beside the tags, a SQL filter over a property: a record must pass both.
    audit.sql = Some("amount >= 10".into());
    let nodes = deployment.start_mesh(&["eu", "us"], &[audit]).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    eu.client.create_topic("orders", 1, None).await.unwrap();
    eu.client.create_topic("payments", 1, None).await.unwrap();
    let records: Vec<_> = (0..60)
        .map(|i| {
            let mut r = record(&format!("o-{i}"));
            r.tag = Some(if i % 3 == 0 { "pii-free" } else { "pii" }.into());
            r.properties = [("amount".to_string(), i.to_string())].into();
            r
        })
        .collect();
    for chunk in records.chunks(7) {
        eu.client
            .produce("orders", chunk.to_vec(), Partitioning::Partition(0))
            .await
            .unwrap();
    }
    produce(eu, "payments", 0, "p", 10, 5).await;
    eventually("the filtered copy to reach the end", || async {
        held_end(&us.node, "audit.orders", 0, "eu") == 60
    })
    .await;
    let copied = all_records(&us.client, "audit.orders").await;
    let offsets: Vec<u64> = copied.iter().map(|r| r.2).collect();
    let passing: Vec<u64> = (0..60).step_by(3).filter(|i| *i >= 10).collect();
    assert_eq!(offsets, passing);
    assert!(copied.iter().all(|r| r.3 == format!("o-{}", r.2)));
    // Not matched by the pattern: not replicated, not even created.
    assert_eq!(topic_names(&us.client).await, vec!["audit.orders"]);
    // The gap left by the filter is not loss: the status shows no lag and no error.
    let status = us.node.replicator().unwrap().status();
    let entry = status
        .iter()
        .find(|s| s.topic == "audit.orders")
        .expect("status of the renamed topic");
    assert_eq!((entry.lag_records, entry.last_error.as_deref()), (0, None));
    assert_eq!(entry.applied_records, passing.len() as u64);
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_positions_latest_and_timestamp() {
    let deployment = Deployment::new(&["eu", "us"]);
    // The source region runs first, alone, and gets history.
    let mut latest = task("from-latest", &["eu"], &["us"], "recent*");
    latest.start = "latest".into();
    let mut since = task("from-time", &["eu"], &["us"], "timed");
    since.start = "2020-01-01T00:00:00Z".into();
    let tasks = [latest, since];
    let eu = start_source(&deployment, &tasks).await;
    eu.client.create_topic("recent", 1, None).await.unwrap();
    eu.client.create_topic("timed", 1, None).await.unwrap();
    produce(&eu, "recent", 0, "old", 30, 10).await;
    let stamped = |body: &str, ts: i64| {
        let mut r = record(body);
        r.timestamp_ms = ts;
        r
    };
    let old = (0..5)
        .map(|i| stamped(&format!("t-{i}"), 1_500_000_000_000))
        .collect();
    let new = (5..9)
        .map(|i| stamped(&format!("t-{i}"), 1_700_000_000_000))
        .collect();
    for batch in [old, new] {
        eu.client
            .produce("timed", batch, Partitioning::Partition(0))
            .await
            .unwrap();
    }

    let us = start_target(&deployment, &eu, &tasks).await;
    let meta = us.node.broker.meta().clone();
    eventually(
        "the latest position to be resolved and checkpointed",
        || async { !meta.checkpoints("from-latest").unwrap().is_empty() },
    )
    .await;
    assert_eq!(meta.checkpoints("from-latest").unwrap()[0].offset, 30);
    produce(&eu, "recent", 0, "new", 30, 10).await;
    eventually("new records to arrive", || async {
        held_end(&us.node, "recent", 0, "eu") == 60
    })
    .await;
    let recent = all_records(&us.client, "recent").await;
    assert_eq!(recent.len(), 30);
    assert_eq!(recent[0].2, 30, "history before the task was not copied");
    assert!(recent.iter().all(|r| r.3.starts_with("new-")));
    // A topic created after the task started is copied from its first record.
    eu.client
        .create_topic("recent-later", 1, None)
        .await
        .unwrap();
    produce(&eu, "recent-later", 0, "later", 10, 10).await;
    eventually("the later topic to arrive whole", || async {
        held_end(&us.node, "recent-later", 0, "eu") == 10
    })
    .await;
    assert_eq!(all_records(&us.client, "recent-later").await[0].2, 0);

    eventually("timed records to arrive", || async {
        held_end(&us.node, "timed", 0, "eu") == 9
    })
    .await;
    let timed = all_records(&us.client, "timed").await;
    assert_eq!(
        timed.iter().map(|r| r.2).collect::<Vec<_>>(),
        (5..9).collect::<Vec<u64>>(),
        "only records at or after the start time"
    );
    us.node.shut_down().await.unwrap();
    eu.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_honoured() {
    let deployment = Deployment::new(&["eu", "us"]);
    let mut limited = task("limited", &["eu"], &["us"], "orders");
    limited.max_records_per_s = Some(1_000);
    let tasks = [limited];
    let eu = start_source(&deployment, &tasks).await;
    eu.client.create_topic("orders", 1, None).await.unwrap();
    produce(&eu, "orders", 0, "r", 3_000, 50).await;
    let us = start_target(&deployment, &eu, &tasks).await;
    // Measured from the first applied records to the last.
    let mut first: Option<(std::time::Instant, u64)> = None;
    eventually("the backlog to be replicated", || {
        let end = held_end(&us.node, "orders", 0, "eu");
        if end > 0 && first.is_none() {
            first = Some((std::time::Instant::now(), end));
        }
        async move { end == 3_000 }
    })
    .await;
    let (at, end) = first.unwrap();
    let rate = (3_000 - end) as f64 / at.elapsed().as_secs_f64();
    // Never above the limit (10 % for the token bucket's burst and the polling); a loaded
    // two-core machine may fall somewhat below it.
    assert!(
        (800.0..=1_100.0).contains(&rate),
        "replicated at {rate:.0} records/s under a limit of 1000"
    );
    us.node.shut_down().await.unwrap();
    eu.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_does_not_read_zero_while_the_link_is_down() {
    let deployment = Deployment::new(&["eu", "us"]);
    let nodes = deployment
        .start_mesh(&["eu", "us"], &[task("dr", &["eu"], &["us"], "orders")])
        .await;
    let mut nodes = nodes.into_iter();
    let (eu, us) = (nodes.next().unwrap(), nodes.next().unwrap());
    eu.client.create_topic("orders", 1, None).await.unwrap();
    produce(&eu, "orders", 0, "r", 50, 10).await;
    let replicator = us.node.replicator().unwrap();
    eventually("caught up with the link up", || async {
        replicator
            .status()
            .iter()
            .any(|s| s.local_end == 50 && s.lag_records == 0 && s.lag_seconds == 0.0 && s.link_up)
    })
    .await;
    eu.node.shut_down().await.unwrap();
    eventually("the link to be seen down", || async {
        replicator.status().iter().all(|s| !s.link_up)
    })
    .await;
    let first = replicator.status()[0].lag_seconds;
    assert!(first > 0.0, "lag reads {first} s with the link down");
    eventually("lag to keep growing while the link is down", || async {
        replicator.status()[0].lag_seconds > first
    })
    .await;
    // After a restart with the source still down, the sub-log shows from its checkpoint
    // with the link down and lag growing (never absent, never 0).
    let config = us.node.config.clone();
    drop(replicator);
    us.node.shut_down().await.unwrap();
    let us = start_again(config, us.dir, us.jetstream).await;
    let replicator = us.node.replicator().unwrap();
    let status = replicator.status();
    assert_eq!(status.len(), 1);
    assert_eq!((status[0].local_end, status[0].link_up), (50, false));
    let first = status[0].lag_seconds;
    assert!(
        first > 0.0,
        "lag reads {first} s after a restart with the link down"
    );
    us.node.shut_down().await.unwrap();
}

/// `max_batch_bytes` limits what is produced in a region, not what it replicates: a target
/// with a far lower setting (and frame limit) takes a source's 10 MiB batch whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_a_smaller_batch_limit_takes_a_large_replicated_batch() {
    let deployment = Deployment::new(&["eu", "us"]);
    let nodes = deployment
        .start_topology(
            TopologySpec::mesh(&["eu", "us"]),
            &[task("mirror", &["eu"], &["us"], "orders")],
            |config| {
                if config.region.id == "us" {
                    config.storage.max_batch_bytes = 64 << 10;
                    config.storage.max_record_bytes = 64 << 10;
                    config.replication.max_frame_bytes = 1 << 20;
                }
            },
        )
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    // One batch of 40 records of 256 KiB: about 10 MiB.
    let records: Vec<client::pb::Record> = (0..40)
        .map(|i| client::pb::Record {
            body: vec![b'a' + (i % 26) as u8; 256 << 10],
            ..Default::default()
        })
        .collect();
    eu.client
        .produce("orders", records, Partitioning::Partition(0))
        .await
        .unwrap();
    eventually("us to hold the large batch", || async {
        held_end(&us.node, "orders", 0, "eu") == 40
    })
    .await;
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
