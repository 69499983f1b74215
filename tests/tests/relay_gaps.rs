//! Records missing behind relays, over real QUIC on loopback:
//!
//! - a gap the origin's retention made reaches a target through a pass-through relay as
//!   the origin's announcement (the target skips it, counted, and catches up);
//! - a store-and-forward relay that lacks records (a hole in its copy, on a segment
//!   boundary) refuses to serve past them instead of leaving the target waiting: the
//!   target pulls from the origin when it has another way there, and otherwise shows the
//!   stall in its status and metrics.

mod support;

use std::sync::Arc;
use std::time::Duration;

use broker::batch::Batch;
use broker::storage::GapPolicy;
use router::config::NodeConfig;
use support::*;

const HEARTBEAT: Duration = Duration::from_millis(400);
const TOPIC: &str = "orders";

fn replicator(node: &TestNode) -> Arc<replicator::Replicator> {
    node.node.replicator().expect("replication on")
}

/// Fast heartbeats, 1 KiB segments and retention checked every 50 ms.
fn small_segments(config: &mut NodeConfig) {
    config.replication.heartbeat_interval_ms = HEARTBEAT.as_millis() as u64;
    config.storage.segment_bytes = 1024;
    config.retention.check_interval_ms = 50;
}

fn line(regions: [&str; 3]) -> TopologySpec {
    let [a, b, c] = regions;
    TopologySpec {
        regions: TopologySpec::mesh(&regions).regions,
        links: vec![LinkSpec::new(a, b, 10), LinkSpec::new(b, c, 10)],
    }
}

/// The status of `origin`'s sub-log of `TOPIC`/0 in `node`.
fn status_of(node: &TestNode, origin: &str) -> Option<replicator::SubLogStatus> {
    replicator(node)
        .status()
        .into_iter()
        .find(|s| s.topic == TOPIC && s.partition == 0 && s.origin == origin)
}

async fn shut_down(nodes: Vec<TestNode>) {
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_retention_gap_reaches_a_target_through_a_pass_through_relay() {
    let regions = ["a", "b", "c"];
    let deployment = Deployment::new(&regions);
    let tasks = [task("ac", &["a"], &["c"], TOPIC)];
    let residency = topology::ResidencySpec {
        pass_through: vec!["b".into()],
        rules: vec![],
    };
    let nodes = deployment
        .start_topology(line(regions), &tasks, |config| {
            small_segments(config);
            config.residency = residency.clone();
        })
        .await;
    let (a, c) = (&nodes[0], &nodes[2]);
    let retention = client::pb::RetentionPolicy {
        max_bytes: 2048,
        max_age_ms: 0,
    };
    a.client
        .create_topic(TOPIC, 1, Some(retention))
        .await
        .unwrap();
    produce(a, TOPIC, 0, "a", 10, 10).await;
    eventually("c to hold a's first records", || async {
        held_end(&c.node, TOPIC, 0, "a") == 10
    })
    .await;

    // c stops pulling; meanwhile a's retention removes records c has not pulled.
    replicator(c)
        .set_task_state(
            "ac",
            replicator::TaskState::Paused,
            None,
            &replicator::Authorship::region(),
        )
        .unwrap();
    produce(a, TOPIC, 0, "late", 300, 10).await;
    let a_start = || {
        a.node
            .broker
            .partition(TOPIC, 0)
            .unwrap()
            .sub_log("a")
            .unwrap()
            .start_offset
    };
    eventually("a's retention to remove records c lacks", || async {
        a_start() > 20
    })
    .await;
    assert_eq!(held_end(&c.node, TOPIC, 0, "a"), 10);

    // Resumed, c asks from 10 through the pass-through relay b; a announces its start.
    replicator(c)
        .set_task_state(
            "ac",
            replicator::TaskState::Running,
            None,
            &replicator::Authorship::region(),
        )
        .unwrap();
    eventually("c to catch up with a through b", || async {
        held_end(&c.node, TOPIC, 0, "a") == 310
    })
    .await;
    // Retention may have run on while c caught up, so c may have skipped more than once:
    // every record c holds is a's record at that offset, and what it lacks is exactly what
    // it counted as skipped, all of it below what a still holds.
    let skipped = replicator(c).metrics().records_skipped_by_retention.get();
    assert!(skipped > 0, "the skip is counted");
    let held = all_records(&c.client, TOPIC).await;
    let body = |i: u64| {
        if i < 10 {
            format!("a-{i}")
        } else {
            format!("late-{}", i - 10)
        }
    };
    for (partition, origin, offset, text) in &held {
        assert_eq!((*partition, origin.as_str()), (0, "a"));
        assert_eq!(*text, body(*offset), "the record at offset {offset}");
    }
    let offsets: Vec<u64> = held.iter().map(|r| r.2).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "in order, once each"
    );
    assert_eq!(
        offsets[..10],
        (0..10).collect::<Vec<_>>()[..],
        "c kept its first records"
    );
    assert_eq!(offsets.last(), Some(&309));
    assert_eq!(
        310 - offsets.len() as u64,
        skipped,
        "what is missing was counted"
    );
    let start = a_start();
    assert!(
        (10..310)
            .filter(|i| !offsets.contains(i))
            .all(|i| i < start),
        "nothing a still held was skipped"
    );
    assert_eq!(
        status_of(c, "a").and_then(|s| s.source).as_deref(),
        Some("b")
    );
    shut_down(nodes).await;
}

/// Records of origin "a" in a store-and-forward relay "b" with a hole on a segment
/// boundary: b holds a's batches [0, 10) and [20, 30), one batch per segment, and never
/// held [10, 20). Returns the nodes (a, b, c) with task a → c created afterwards.
async fn relay_with_a_hole(topology: TopologySpec) -> Vec<TestNode> {
    let regions = ["a", "b", "c"];
    let deployment = Deployment::new(&regions);
    let nodes = deployment
        .start_topology(topology, &[], small_segments)
        .await;
    let (a, b) = (&nodes[0], &nodes[1]);
    for node in [a, b] {
        create_if_missing(node, TOPIC, 1).await;
    }
    // One record per batch, each batch over half a segment: every batch starts a segment.
    let padding = "x".repeat(600);
    for i in 0..30 {
        a.client
            .produce(
                TOPIC,
                vec![record(&format!("a-{i}-{padding}"))],
                client::Partitioning::Partition(0),
            )
            .await
            .unwrap();
    }
    let mut reader = a
        .node
        .broker
        .partition(TOPIC, 0)
        .unwrap()
        .sub_log_reader("a", 0);
    let mut batches: Vec<Batch> = Vec::new();
    loop {
        let read = reader.read(usize::MAX).unwrap();
        if read.is_empty() {
            break;
        }
        batches.extend(read);
    }
    assert_eq!(batches.len(), 30);
    let (head, rest) = batches.split_at(10);
    for run in [head, &rest[10..]] {
        b.node
            .broker
            .append_replicated_run(TOPIC, 0, "a", run.to_vec(), GapPolicy::Allow)
            .await
            .unwrap();
    }
    let segment_20 = b
        .dir
        .path()
        .join(format!("topics/{TOPIC}/0/logs/a/{:020}.log", 20));
    assert!(
        segment_20.exists(),
        "the hole ends on a segment boundary: {segment_20:?}"
    );
    assert_eq!(held_end(&b.node, TOPIC, 0, "a"), 30);
    replicator(a)
        .create_task(
            task("ac", &["a"], &["c"], TOPIC),
            &replicator::Authorship::region(),
        )
        .unwrap();
    nodes
}

/// a's records `0..n` as c reads them.
fn a_records(n: u64) -> Vec<(u32, String, u64, String)> {
    let padding = "x".repeat(600);
    (0..n)
        .map(|i| (0, "a".to_string(), i, format!("a-{i}-{padding}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_missing_records_on_a_segment_boundary_sends_the_target_to_the_origin() {
    // c's cheapest way to a runs through b; the direct link costs more.
    let topology = TopologySpec {
        regions: TopologySpec::mesh(&["a", "b", "c"]).regions,
        links: vec![
            LinkSpec::new("a", "b", 10),
            LinkSpec::new("b", "c", 10),
            LinkSpec::new("a", "c", 100),
        ],
    };
    let nodes = relay_with_a_hole(topology).await;
    let c = &nodes[2];
    eventually("c to hold all of a's records", || async {
        held_end(&c.node, TOPIC, 0, "a") == 30
    })
    .await;
    assert_eq!(all_records(&c.client, TOPIC).await, a_records(30));
    shut_down(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_stalled_behind_a_relay_missing_records_shows_it() {
    // b is c's only way to a.
    let nodes = relay_with_a_hole(line(["a", "b", "c"])).await;
    let c = &nodes[2];
    eventually("c to report that it cannot get past the hole", || async {
        status_of(c, "a").is_some_and(|s| {
            s.local_end == 10
                && s.lag_records == 20
                && s.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("does not hold"))
                && s.stalled
        })
    })
    .await;
    eventually("the stall to be counted", || async {
        replicator(c).metrics().stalled_sub_logs.get() == 1
    })
    .await;
    assert_eq!(all_records(&c.client, TOPIC).await, a_records(10));
    shut_down(nodes).await;
}
