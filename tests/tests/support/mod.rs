//! Shared helpers: an in-process region node on port 0 with a temporary data dir.

#![allow(dead_code)]

pub mod pop;
pub mod sdk;

use router::config::NodeConfig;
use router::node::Node;
use scenarios::deploy::{self, Certificates, NodePlan, start_order};
#[allow(unused_imports)]
pub use topology::{LinkSpec, TopologySpec};

pub struct TestNode {
    pub node: Node,
    pub client: client::Client,
    pub dir: tempfile::TempDir,
    /// The node's JetStream cluster, when the tests run on that engine (see
    /// [`ENGINE_VARIABLE`]).
    pub jetstream: Option<jetstream_engine::local_cluster::LocalCluster>,
}

/// `GEOROUTER_TEST_ENGINE=jetstream` runs every node these helpers start, whose config
/// leaves `[storage] engine` at its default, on a JetStream cluster of three nats-server
/// processes of its own (`.ci/run` runs the suite once on each engine).
pub const ENGINE_VARIABLE: &str = "GEOROUTER_TEST_ENGINE";

/// Whether the tests run on the JetStream engine.
pub fn on_jetstream() -> bool {
    std::env::var(ENGINE_VARIABLE).is_ok_and(|e| e == "jetstream")
}

pub fn node_config(region: &str, dir: &std::path::Path) -> NodeConfig {
    NodeConfig::loopback(region, dir)
}

pub async fn start(region: &str) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    start_with(node_config(region, dir.path()), dir).await
}

pub async fn start_with(config: NodeConfig, dir: tempfile::TempDir) -> TestNode {
    start_again(config, dir, None).await
}

/// Starts a node with `config` in `dir` again, on `jetstream` (the cluster of the node it
/// replaces) or, on that engine, a new cluster (see [`ENGINE_VARIABLE`]).
pub async fn start_again(
    mut config: NodeConfig,
    dir: tempfile::TempDir,
    jetstream: Option<jetstream_engine::local_cluster::LocalCluster>,
) -> TestNode {
    let jetstream = jetstream.or_else(|| {
        (on_jetstream() && config.storage.engine == router::config::StorageEngineKind::Embedded)
            .then(|| {
                jetstream_engine::local_cluster::LocalCluster::start(&dir.path().join("nats"), 3)
                    .expect("a JetStream cluster for the node")
            })
    });
    if let Some(cluster) = &jetstream {
        config.storage.engine = router::config::StorageEngineKind::JetStream;
        config.storage.jetstream =
            Some(jetstream_engine::JetStreamSettings::new(cluster.all_urls()));
    }
    let replicating = config.replication.certificate_files().is_some();
    let node = Node::start(config).await.expect("node starts");
    if jetstream.is_some() && replicating {
        // Alone in its region, the node takes the replication lease at once.
        eventually(
            "the node to take its region's replication lease",
            || async { node.replicator().is_some() },
        )
        .await;
    }
    let client = client::Client::connect(&node.bound.grpc.to_string())
        .await
        .expect("client connects");
    TestNode {
        node,
        client,
        dir,
        jetstream,
    }
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
    pub certs: Certificates,
    _dir: tempfile::TempDir,
}

impl Deployment {
    pub fn new(regions: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let regions: Vec<String> = regions.iter().map(|r| r.to_string()).collect();
        let certs = Certificates::write(dir.path(), &regions, 30).unwrap();
        Deployment { certs, _dir: dir }
    }

    /// A port-0 node config of `region` with replication on, in `topology`, with `tasks`.
    pub fn config(
        &self,
        region: &str,
        dir: &std::path::Path,
        topology: &TopologySpec,
        tasks: &[replicator::TaskSpec],
    ) -> NodeConfig {
        let config = deploy::node_config(&NodePlan {
            region,
            data_dir: dir,
            certs: &self.certs,
            topology,
            residency: &Default::default(),
            tasks,
        });
        let mut config: NodeConfig = serde_json::from_value(config).expect("a node config");
        config.replication.advertise_interval_ms = 20;
        config
    }

    /// Starts `regions` (sorted ids) as a full mesh.
    pub async fn start_mesh(
        &self,
        regions: &[&str],
        tasks: &[replicator::TaskSpec],
    ) -> Vec<TestNode> {
        self.start_topology(TopologySpec::mesh(regions), tasks, |_| {})
            .await
    }

    /// Starts every region of `topology`, each after the regions it dials (so their
    /// addresses are known), with `tweak` applied to each config. Returns the nodes in
    /// the order of `topology.regions`.
    pub async fn start_topology(
        &self,
        mut topology: TopologySpec,
        tasks: &[replicator::TaskSpec],
        tweak: impl Fn(&mut NodeConfig),
    ) -> Vec<TestNode> {
        let names: Vec<String> = topology.regions.iter().map(|r| r.name.clone()).collect();
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        let order = start_order(&topology, &all, &[]).unwrap();
        let mut started: Vec<(String, TestNode)> = Vec::new();
        for region in order {
            let dir = tempfile::tempdir().unwrap();
            let mut config = self.config(&region, dir.path(), &topology, tasks);
            tweak(&mut config);
            let node = start_with(config, dir).await;
            topology.set_address(&region, node.node.bound.replication);
            started.push((region, node));
        }
        names
            .iter()
            .map(|name| {
                let at = started.iter().position(|(s, _)| s == name).unwrap();
                started.remove(at).1
            })
            .collect()
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

/// Produces `count` records named `<prefix>-<i>` in batches of `batch` to `partition`.
pub async fn produce(
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
            .produce(topic, records, client::Partitioning::Partition(partition))
            .await
            .unwrap();
    }
}

/// Creates a topic unless replication already created it from a peer's advertisement.
/// Creates consumer group `name` in `node` through its console (shared with every region).
pub async fn create_group(node: &TestNode, name: &str, fifo: bool, max_attempts: u32) {
    let console = console_api::client::ConsoleClient::new(node.node.bound.console, None);
    let spec = broker::catalog::GroupSpec {
        name: name.into(),
        fifo,
        max_attempts,
    };
    console
        .create_group(&spec)
        .await
        .expect("the group is created");
}

pub async fn create_if_missing(node: &TestNode, topic: &str, partitions: u32) {
    match node.client.create_topic(topic, partitions, None).await {
        Ok(_) => {}
        Err(e) if e.code() == Some("topic-exists") => {}
        Err(e) => panic!("creating {topic}: {e}"),
    }
}

/// Checks that a region holds exactly the expected records per (partition, origin): the
/// offsets 0..n once each, in per-origin order, with the right bodies.
pub fn assert_exact(
    records: &[(u32, String, u64, String)],
    expected: &std::collections::BTreeMap<(u32, String), (String, usize)>,
) {
    let mut per_sublog: std::collections::BTreeMap<(u32, String), Vec<(u64, String)>> =
        Default::default();
    for (p, origin, offset, body) in records {
        per_sublog
            .entry((*p, origin.clone()))
            .or_default()
            .push((*offset, body.clone()));
    }
    assert_eq!(
        per_sublog.keys().collect::<std::collections::BTreeSet<_>>(),
        expected.keys().collect::<std::collections::BTreeSet<_>>()
    );
    for (key, (prefix, n)) in expected {
        let got = &per_sublog[key];
        let want: Vec<(u64, String)> = (0..*n)
            .map(|i| (i as u64, format!("{prefix}-{i}")))
            .collect();
        assert_eq!(got, &want, "sub-log {key:?}");
    }
}

/// A task carrying the trace topic both ways between eu and us.
pub fn trace_task() -> replicator::TaskSpec {
    let mut traces = task("traces", &["eu"], &["us"], "georouter.trace");
    traces.direction = replicator::Direction::TwoWay;
    traces
}

/// DR task `name` on `topics` with primary a and standby b.
pub fn dr_task(name: &str, topics: &str) -> replicator::TaskSpec {
    let mut dr = task(name, &["a"], &["b"], topics);
    dr.dr = Some(replicator::Dr {
        primary: "a".into(),
        epoch: 0,
        promoting: None,
    });
    dr
}

/// Regions a and b in this process, joined through the WAN emulator (no delay), with
/// `tasks` and a `heartbeat_ms` heartbeat.
pub async fn two_regions(
    tasks: Vec<replicator::TaskSpec>,
    heartbeat_ms: u64,
) -> scenarios::cluster::Cluster {
    let plan = scenarios::cluster::ClusterPlan {
        topology: TopologySpec::mesh(&["a", "b"]),
        residency: Default::default(),
        tasks,
        impairment: Default::default(),
        direct_links: false,
        heartbeat_ms,
        node_settings: serde_json::Value::Null,
        engine: Default::default(),
        nodes_per_region: 1,
    };
    scenarios::cluster::Cluster::start(&plan, &router::launch::InProcess)
        .await
        .unwrap()
}

/// The binary `binary` of the virtualenv `~/.cache/georouter/<venv>` that `.ci/run` makes
/// (PyPI tools the tests drive), or `$<env>`; `install` says how to make it.
pub fn venv_tool(env: &str, venv: &str, binary: &str, install: &str) -> std::path::PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return path.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    let path = std::path::PathBuf::from(home)
        .join(".cache/georouter")
        .join(venv)
        .join("bin")
        .join(binary);
    assert!(
        path.exists(),
        "{} is missing: run .ci/run, or `python3 -m venv ~/.cache/georouter/{venv} && ~/.cache/georouter/{venv}/bin/pip install {install}` (or set {env})",
        path.display()
    );
    path
}
