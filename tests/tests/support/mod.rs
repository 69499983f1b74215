//! Shared helpers: an in-process region node on port 0 with a temporary data dir.

#![allow(dead_code)]

use router::config::NodeConfig;
use router::node::Node;

pub struct TestNode {
    pub node: Node,
    pub client: client::Client,
    pub dir: tempfile::TempDir,
}

pub fn node_config(region: &str, dir: &std::path::Path) -> NodeConfig {
    NodeConfig::loopback(region, dir)
}

pub async fn start(region: &str) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    start_with(node_config(region, dir.path()), dir).await
}

pub async fn start_with(config: NodeConfig, dir: tempfile::TempDir) -> TestNode {
    let node = Node::start(config).await.expect("node starts");
    let client = client::Client::connect(&node.bound.grpc.to_string())
        .await
        .expect("client connects");
    TestNode { node, client, dir }
}

pub fn record(body: &str) -> client::pb::Record {
    client::pb::Record {
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

pub fn bodies(records: &[client::pb::FetchedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.record.as_ref().unwrap().body.clone()).unwrap())
        .collect()
}

/// Certificates of a test deployment, written once into a temporary directory.
pub struct Deployment {
    pub certs: tempfile::TempDir,
}

impl Deployment {
    pub fn new(regions: &[&str]) -> Self {
        let certs = tempfile::tempdir().unwrap();
        let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
        replicator::certs::write_deployment(certs.path(), &regions, 30).unwrap();
        Deployment { certs }
    }

    /// A port-0 node config of `region` with replication on, the given peers and tasks.
    pub fn config(
        &self,
        region: &str,
        dir: &std::path::Path,
        peers: &[(&str, Option<std::net::SocketAddr>)],
        tasks: &[replicator::TaskSpec],
    ) -> NodeConfig {
        let mut config = NodeConfig::loopback(region, dir);
        let file = |name: String| Some(self.certs.path().join(name));
        config.replication.ca = file("ca.pem".into());
        config.replication.cert = file(format!("{region}.pem"));
        config.replication.key = file(format!("{region}.key"));
        config.replication.advertise_interval_ms = 20;
        config.peers = peers
            .iter()
            .map(|(peer, address)| router::config::PeerSection {
                region: peer.to_string(),
                address: *address,
                dial: None,
            })
            .collect();
        config.tasks = tasks.to_vec();
        config
    }

    /// Starts `regions` (sorted ids) as a full mesh in reverse order, so that each region
    /// dials the ones started before it (the lower id dials).
    pub async fn start_mesh(
        &self,
        regions: &[&str],
        tasks: &[replicator::TaskSpec],
    ) -> Vec<TestNode> {
        let mut started: Vec<(String, TestNode)> = Vec::new();
        for region in regions.iter().rev() {
            let dir = tempfile::tempdir().unwrap();
            let peers: Vec<(&str, Option<std::net::SocketAddr>)> = regions
                .iter()
                .filter(|r| *r != region)
                .map(|r| {
                    let address = started
                        .iter()
                        .find(|(name, _)| name == r)
                        .map(|(_, n)| n.node.bound.replication);
                    (*r, address)
                })
                .collect();
            let config = self.config(region, dir.path(), &peers, tasks);
            started.push((region.to_string(), start_with(config, dir).await));
        }
        started.reverse();
        started.into_iter().map(|(_, n)| n).collect()
    }
}

pub fn task(name: &str, sources: &[&str], targets: &[&str], topics: &str) -> replicator::TaskSpec {
    replicator::TaskSpec::new(name, sources, targets, topics)
}

/// Waits (polling, up to 60 s) until `done` holds; panics with `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The end offset of `origin`'s sub-log of `topic/partition` in a node (0 when absent).
pub fn held_end(node: &Node, topic: &str, partition: u32, origin: &str) -> u64 {
    node.broker
        .partition(topic, partition)
        .ok()
        .and_then(|p| p.sub_log(origin))
        .map_or(0, |s| s.durable_end)
}

/// Every record of a topic in a node as (partition, origin, offset, body), in read order.
pub async fn all_records(client: &client::Client, topic: &str) -> Vec<(u32, String, u64, String)> {
    let fetched = client
        .fetch_all(topic, client::earliest(), vec![])
        .await
        .unwrap();
    fetched
        .records
        .iter()
        .map(|r| {
            (
                r.partition,
                r.origin.clone(),
                r.offset,
                String::from_utf8(r.record.as_ref().unwrap().body.clone()).unwrap(),
            )
        })
        .collect()
}

/// The names of a region's topics, sorted.
pub async fn topic_names(client: &client::Client) -> Vec<String> {
    client
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect()
}
