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

fn replicator(node: &TestNode) -> Arc<replicator::Replicator> {
    node.node.replicator().expect("replication on")
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
    eventually("some records from a in c, pulled from a", || async {
        held_end(&c.node, "orders", 0, "a") >= 50
            && source_of(c, "orders", "a").as_deref() == Some("a")
    })
    .await;

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
    assert!(wan.counts().cut > 0, "the cut dropped datagrams");
    shut_down(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_out_only_region_takes_part_both_ways_through_a_relay() {
    let regions = ["edge", "hub", "vpc"];
    let deployment = Deployment::new(&regions);
    let mut private = LinkSpec::new("hub", "vpc", 10);
    private.kind = topology::LinkKind::Vpc;
    private.dial = Some("vpc".into());
    // "vpc" has no address anywhere: it is reached only over the link it dials.
    let spec = TopologySpec {
        regions: TopologySpec::mesh(&regions).regions,
        links: vec![LinkSpec::new("edge", "hub", 10), private],
    };
    let tasks = [two_way("ev", &["edge"], &["vpc"], "orders")];
    let nodes = deployment
        .start_topology(spec, &tasks, fast_heartbeats)
        .await;
    let (edge, hub, vpc) = (&nodes[0], &nodes[1], &nodes[2]);
    for node in [edge, vpc] {
        create_if_missing(node, "orders", 1).await;
    }
    tokio::join!(
        produce(edge, "orders", 0, "edge", 120, 10),
        produce(vpc, "orders", 0, "vpc", 90, 10)
    );
    let counts = [("edge", 120), ("vpc", 90)];
    converge(edge, "orders", &counts).await;
    converge(vpc, "orders", &counts).await;
    assert_eq!(source_of(edge, "orders", "vpc").as_deref(), Some("hub"));
    let link = replicator(hub)
        .links()
        .into_iter()
        .find(|l| l.peer == "vpc")
        .unwrap();
    assert!(link.up);
    assert_eq!(link.dialer, "vpc");
    assert_eq!(link.kind, topology::LinkKind::Vpc);
    shut_down(nodes).await;
}

/// Whether any file under `dir` contains `needle`.
fn on_disk(dir: &std::path::Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
            {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residency_keeps_records_out_of_other_regions_and_a_pass_through_relay_stores_nothing() {
    let regions = ["eu1", "us", "eu2"];
    let deployment = Deployment::new(&regions);
    // The only path between the EU regions runs through "us".
    let tasks = [
        two_way("eu", &["eu1"], &["eu2"], "orders"),
        task("to-us", &["eu1"], &["us"], "orders"),
    ];
    let residency = topology::ResidencySpec {
        pass_through: vec!["us".into()],
        rules: vec![topology::ResidencyRule {
            name: "eu-pii".into(),
            tags: vec!["eu-only".into()],
            properties: BTreeMap::new(),
            regions: vec!["eu1".into(), "eu2".into()],
        }],
    };
    let nodes = deployment
        .start_topology(line(regions), &tasks, |config| {
            fast_heartbeats(config);
            config.residency = residency.clone();
        })
        .await;
    let (eu1, us, eu2) = (&nodes[0], &nodes[1], &nodes[2]);
    for node in [eu1, eu2] {
        create_if_missing(node, "orders", 1).await;
    }
    // Every even record of eu1 may live only in the EU.
    let eu1_records: Vec<client::pb::Record> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                client::pb::Record {
                    tag: Some("eu-only".into()),
                    ..record(&format!("EUSECRET-{i}"))
                }
            } else {
                record(&format!("eu1-open-{i}"))
            }
        })
        .collect();
    for chunk in eu1_records.chunks(10) {
        eu1.client
            .produce("orders", chunk.to_vec(), client::Partitioning::Partition(0))
            .await
            .unwrap();
    }
    produce(eu2, "orders", 0, "EU2REC", 50, 10).await;

    for node in [us, eu2] {
        eventually("eu1's sub-log to reach its end", || async {
            held_end(&node.node, "orders", 0, "eu1") == 100
        })
        .await;
    }
    eventually("eu2's records in eu1 through the relay", || async {
        held_end(&eu1.node, "orders", 0, "eu2") == 50
    })
    .await;
    let open: Vec<String> = (1..100)
        .step_by(2)
        .map(|i| format!("eu1-open-{i}"))
        .collect();
    let bodies_from = |records: Vec<(u32, String, u64, String)>, origin: &str| -> Vec<String> {
        records
            .into_iter()
            .filter(|r| r.1 == origin)
            .map(|r| r.3)
            .collect()
    };
    // The US reads only the open records; so does eu2, whose only path runs through the US.
    assert_eq!(
        bodies_from(all_records(&us.client, "orders").await, "eu1"),
        open
    );
    assert_eq!(
        bodies_from(all_records(&eu2.client, "orders").await, "eu1"),
        open
    );
    let in_eu1 = bodies_from(all_records(&eu1.client, "orders").await, "eu2");
    assert_eq!(in_eu1.len(), 50);
    assert!(replicator(eu1).metrics().residency_withheld_records.get() >= 50);

    // At rest in the US: the open records it is a target of, nothing it only relayed, and
    // no EU-only record.
    let us_dir = us.dir.path();
    assert!(on_disk(us_dir, b"eu1-open-1"), "positive control");
    assert!(
        !on_disk(us_dir, b"EUSECRET"),
        "an EU-only record is at rest in the US"
    );
    assert!(
        !on_disk(us_dir, b"EU2REC"),
        "the pass-through relay stored relayed records"
    );
    assert!(
        us.node
            .broker
            .partition("orders", 0)
            .unwrap()
            .sub_log("eu2")
            .is_none()
    );
    assert!(replicator(us).metrics().relayed_bytes.get() > 0);
    shut_down(nodes).await;
}
