//! Replication through a topology that is not a full mesh, over real QUIC on loopback:
//! relays on a line, rerouting around a cut link (cut in an emulated WAN link) and back,
//! a region that only dials out, and residency (records kept out of regions, a relay that
//! keeps nothing at rest).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use router::config::NodeConfig;
use scenarios::wan::WanLink;
use support::*;

const HEARTBEAT: Duration = Duration::from_millis(400);

fn fast_heartbeats(config: &mut NodeConfig) {
    config.replication.heartbeat_interval_ms = HEARTBEAT.as_millis() as u64;
}

fn two_way(name: &str, a: &[&str], b: &[&str], topics: &str) -> replicator::TaskSpec {
    let mut t = task(name, a, b, topics);
    t.direction = replicator::Direction::TwoWay;
    t
}

fn line(regions: [&str; 3]) -> TopologySpec {
    let [a, b, c] = regions;
    TopologySpec {
        regions: TopologySpec::mesh(&regions).regions,
        links: vec![LinkSpec::new(a, b, 10), LinkSpec::new(b, c, 10)],
    }
}

fn replicator(node: &TestNode) -> &Arc<replicator::Replicator> {
    node.node.replicator.as_ref().expect("replication on")
}

/// The region `node` pulls `origin`'s sub-log of `topic`/0 from now.
fn source_of(node: &TestNode, topic: &str, origin: &str) -> Option<String> {
    replicator(node)
        .status()
        .into_iter()
        .find(|s| s.topic == topic && s.partition == 0 && s.origin == origin)
        .and_then(|s| s.source)
}

/// The neighbour `node` reaches `region` through now.
fn route_to(node: &TestNode, region: &str) -> Option<String> {
    replicator(node)
        .routes()
        .into_iter()
        .find(|r| r.region == region)
        .and_then(|r| r.via.first().map(|(n, _)| n.clone()))
}

fn expected(counts: &[(&str, usize)]) -> BTreeMap<(u32, String), (String, usize)> {
    counts
        .iter()
        .map(|(origin, n)| ((0, origin.to_string()), (origin.to_string(), *n)))
        .collect()
}

async fn converge(node: &TestNode, topic: &str, counts: &[(&str, usize)]) {
    eventually("every record in every region", || async {
        counts
            .iter()
            .all(|(origin, n)| held_end(&node.node, topic, 0, origin) == *n as u64)
    })
    .await;
    assert_exact(&all_records(&node.client, topic).await, &expected(counts));
}

async fn shut_down(nodes: Vec<TestNode>) {
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_relays_both_ways_between_regions_without_a_link() {
    let regions = ["a", "b", "c"];
    let deployment = Deployment::new(&regions);
    // "b" is in no task: it carries a's and c's data only because it is on the route.
    let tasks = [two_way("ac", &["a"], &["c"], "orders")];
    let nodes = deployment
        .start_topology(line(regions), &tasks, fast_heartbeats)
        .await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    for node in [a, c] {
        create_if_missing(node, "orders", 1).await;
    }
    tokio::join!(
        produce(a, "orders", 0, "a", 200, 10),
        produce(c, "orders", 0, "c", 150, 10)
    );
    let counts = [("a", 200), ("c", 150)];
    converge(a, "orders", &counts).await;
    converge(c, "orders", &counts).await;
    // Store-and-forward by default: the relay holds what it carried.
    assert_exact(&all_records(&b.client, "orders").await, &expected(&counts));
    assert_eq!(source_of(c, "orders", "a").as_deref(), Some("b"));
    assert_eq!(source_of(a, "orders", "c").as_deref(), Some("b"));
    for node in &nodes {
        assert_eq!(replicator(node).metrics().frame_refusals("loop"), 0);
    }
    shut_down(nodes).await;
}

/// Produces records named `<region>-<i>` to partition 0 in small batches until `stop`.
fn producer(
    node: &TestNode,
    region: &'static str,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<()> {
    let client = node.client.clone();
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let at = count.load(Ordering::SeqCst);
            let records = (at..at + 5)
                .map(|i| record(&format!("{region}-{i}")))
                .collect();
            client
                .produce("orders", records, client::Partitioning::Partition(0))
                .await
                .unwrap();
            count.fetch_add(5, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_is_routed_around_and_back_without_loss_or_duplicates() {
    let regions = ["a", "b", "c"];
    let deployment = Deployment::new(&regions);
    let tasks = [two_way("mesh", &regions, &regions, "orders")];
    // a dials c through an emulated WAN link that the test cuts.
    let wan: std::sync::Mutex<Option<WanLink>> = Default::default();
    let mut topology = TopologySpec::mesh(&regions);
    topology.links.retain(|l| !(l.joins("a") && l.joins("c")));
    topology.links.push(LinkSpec::new("a", "c", 10));
    // a dials b and c, b dials c: c starts first, then b, then a.
    let nodes = deployment
        .start_topology(topology, &tasks, |config| {
            fast_heartbeats(config);
            if config.region.id == "a" {
                let c = config.regions.iter_mut().find(|r| r.name == "c").unwrap();
                let link = WanLink::start(c.address.expect("c started first")).unwrap();
                c.address = Some(link.address());
                *wan.lock().unwrap() = Some(link);
            }
        })
        .await;
    let wan = wan.lock().unwrap().take().expect("a's link to c");
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    for node in &nodes {
        create_if_missing(node, "orders", 1).await;
    }
    eventually("c to pull a's records over the direct link", || async {
        route_to(c, "a").as_deref() == Some("a") && route_to(a, "c").as_deref() == Some("c")
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::default()).collect();
    let writers: Vec<_> = nodes
        .iter()
        .zip(regions)
        .zip(&counts)
        .map(|((node, region), count)| producer(node, region, stop.clone(), count.clone()))
        .collect();
    eventually("some records from a in c", || async {
        held_end(&c.node, "orders", 0, "a") >= 50
    })
    .await;
    assert_eq!(source_of(c, "orders", "a").as_deref(), Some("a"));

    wan.cut();
    let cut_at = Instant::now();
    eventually("c to route to a through b", || async {
        route_to(c, "a").as_deref() == Some("b") && route_to(a, "c").as_deref() == Some("b")
    })
    .await;
    let switched = cut_at.elapsed();
    eprintln!("routes switched {switched:?} after the cut (heartbeat {HEARTBEAT:?})");
    assert!(
        switched <= HEARTBEAT * 3,
        "routes switched {switched:?} after the cut; the heartbeat interval is {HEARTBEAT:?}"
    );
    // Data keeps flowing while the direct link is cut.
    let during = held_end(&c.node, "orders", 0, "a");
    eventually("a's records to reach c through b", || async {
        held_end(&c.node, "orders", 0, "a") >= during + 50
            && source_of(c, "orders", "a").as_deref() == Some("b")
    })
    .await;
    let at_c = held_end(&a.node, "orders", 0, "c");
    eventually("c's records to reach a through b", || async {
        held_end(&a.node, "orders", 0, "c") >= at_c + 50
    })
    .await;

    wan.heal();
    eventually("routes to return to the direct link", || async {
        route_to(c, "a").as_deref() == Some("a")
            && route_to(a, "c").as_deref() == Some("c")
            && source_of(c, "orders", "a").as_deref() == Some("a")
            && source_of(a, "orders", "c").as_deref() == Some("c")
    })
    .await;
    let back = held_end(&c.node, "orders", 0, "a");
    eventually("a's records to flow on the direct link again", || async {
        held_end(&c.node, "orders", 0, "a") >= back + 50
    })
    .await;

    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    let totals: Vec<(&str, usize)> = regions
        .iter()
        .zip(&counts)
        .map(|(r, n)| (*r, n.load(Ordering::SeqCst)))
        .collect();
    for node in [a, b, c] {
        converge(node, "orders", &totals).await;
    }
    let (_, dropped) = wan.counts();
    assert!(dropped > 0, "the cut dropped datagrams");
    for node in &nodes {
        assert_eq!(replicator(node).metrics().frame_refusals("loop"), 0);
    }
    shut_down(nodes).await;
}
