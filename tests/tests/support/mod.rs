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
