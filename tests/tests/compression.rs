//! Compression on the link: batches packed by the sender arrive as the exact bytes it
//! stored (what is stored never changes), the link's bytes shrink, and `auto` packs on a
//! narrow link that the records fill.

mod support;

use bytes::Bytes;
use console_api::client::ConsoleClient;
use router::node::Node;
use scenarios::wan::{Impairment, WanLink};
use support::*;

/// Order events of about 2 KB, alike enough to compress several times.
fn order_events(prefix: &str, count: usize) -> Vec<client::pb::Record> {
    (0..count)
        .map(|i| {
            let line = format!(
                "{{\"order\":\"{prefix}-{i}\",\"customer\":\"c-{}\",\"status\":\"shipped\",\"amount\":{}}}\n",
                i % 97,
                i * 7 % 1000
            );
            client::pb::Record {
                body: line.repeat(2048 / line.len()).into_bytes(),
                ..Default::default()
            }
        })
        .collect()
}

async fn produce_events(node: &TestNode, topic: &str, count: usize) {
    for chunk in order_events("o", count).chunks(50) {
        node.client
            .produce(topic, chunk.to_vec(), client::Partitioning::Partition(0))
            .await
            .unwrap();
    }
}

/// Every stored batch of a sub-log, byte for byte.
fn stored_batches(node: &Node, topic: &str, origin: &str) -> Vec<Bytes> {
    let partition = node.broker.partition(topic, 0).unwrap();
    let mut reader = partition.sub_log_reader(origin, 0);
    let mut all = Vec::new();
    loop {
        let batches = reader.read(1 << 20).unwrap();
        if batches.is_empty() {
            return all;
        }
        all.extend(batches.iter().map(|b| b.bytes().clone()));
    }
}

/// `(raw, wire)` batch bytes `node` sent to `peer`, from its metrics.
async fn batch_bytes(node: &TestNode, peer: &str) -> (u64, u64) {
    let text = ConsoleClient::new(node.node.bound.console, None)
        .metrics()
        .await
        .unwrap();
    let value = |name: &str| {
        let prefix = format!("georouter_{name}_total{{peer=\"{peer}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.trim().parse().unwrap())
    };
    (
        value("link_batch_raw_bytes"),
        value("link_batch_wire_bytes"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_batches_are_stored_as_the_sender_stored_them() {
    let deployment = Deployment::new(&["eu", "us"]);
    let tasks = [task("orders", &["eu"], &["us"], "orders")];
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &tasks, |config| {
            if config.region.id == "eu" {
                config.replication.compression = "zstd".parse().unwrap();
            }
        })
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    produce_events(eu, "orders", 600).await;
    eventually("us to hold eu's records", || async {
        held_end(&us.node, "orders", 0, "eu") == 600
    })
    .await;
    let sent = stored_batches(&eu.node, "orders", "eu");
    assert!(!sent.is_empty());
    assert_eq!(stored_batches(&us.node, "orders", "eu"), sent);
    let (raw, wire) = batch_bytes(eu, "us").await;
    assert!(raw >= 600 * 2000, "raw {raw}");
    assert!(wire * 4 < raw, "packed to {wire} of {raw} bytes");
    let link = eu.node.replicator().unwrap().links();
    assert_eq!(link[0].compression.as_deref(), Some("zstd"));
    // us sends nothing packed: it had nothing to send.
    assert_eq!(batch_bytes(us, "eu").await, (0, 0));
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

/// Over a link capped at 16 Mbit/s, a backlog of compressible records fills the path:
/// `auto` measures that and packs; with compression off the same link carries the records
/// as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_packs_on_a_narrow_link_the_records_fill() {
    for (setting, packed) in [("auto", true), ("off", false)] {
        let deployment = Deployment::new(&["eu", "us"]);
        let tasks = [task("orders", &["eu"], &["us"], "orders")];
        let wan: std::sync::Mutex<Option<WanLink>> = Default::default();
        let mut topology = TopologySpec::mesh(&["eu", "us"]);
        topology.links[0].dial = Some("us".into());
        let nodes = deployment
            .start_topology(topology, &tasks, |config| {
                config.replication.compression = setting.parse().unwrap();
                // The window's floor assumes paths of at least this rate.
                config.replication.min_rate_mbps = 0;
                if config.region.id == "us" {
                    let eu = config.regions.iter_mut().find(|r| r.name == "eu").unwrap();
                    let narrow = Impairment {
                        bandwidth_bps: Some(16_000_000),
                        ..Impairment::default()
                    };
                    let link = WanLink::start_with(eu.address.expect("eu first"), narrow);
                    let link = link.unwrap();
                    eu.address = Some(link.address());
                    *wan.lock().unwrap() = Some(link);
                }
            })
            .await;
        let (eu, us) = (&nodes[0], &nodes[1]);
        create_if_missing(eu, "orders", 1).await;
        produce_events(eu, "orders", 4_000).await;
        eventually("us to hold eu's backlog", || async {
            held_end(&us.node, "orders", 0, "eu") == 4_000
        })
        .await;
        let (raw, wire) = batch_bytes(eu, "us").await;
        assert!(raw >= 4_000 * 2000, "{setting}: raw {raw}");
        if packed {
            // The first frames cross as stored until the link has measured itself (on a
            // loaded machine, a second or two of the path); from then on they are packed
            // to about a twentieth.
            assert!(
                wire * 3 < raw * 2,
                "{setting}: {wire} of {raw} bytes on the wire"
            );
        } else {
            assert_eq!(wire, raw, "{setting}");
        }
        for node in nodes {
            node.node.shut_down().await.unwrap();
        }
        drop(wan.lock().unwrap().take());
    }
}
