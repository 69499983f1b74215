//! A region of two georouter nodes on one JetStream cluster divides its pulls: region "a"
//! dials "b", and b's topic has 16 partitions, so a pulls 16 sub-logs of b. The node
//! holding a's replication lease plans them and gives each to one of the two nodes alive;
//! the other node pulls its share over data-only connections to b.
//!
//! First test (b one embedded node): both nodes of a apply records (each one's
//! `replicated_records` counter moves). The node that does not plan is then killed with
//! SIGKILL while b produces: its share goes to the planning node, which catches up on
//! every sub-log (time printed); started again, it takes a share again. Then the planning
//! node is killed: the other takes the lease, pulls everything and catches up, and the
//! killed one, started again, takes a share.
//!
//! Second test (b two nodes on a JetStream cluster of its own): serving is divided too. a's
//! planning node links with b's planning node (b's other node is listed first: dialled
//! there, a's link is told by the handshake that the links are held elsewhere), and a's
//! other node pulls its share from b's other node: both nodes of b send batches. b's other node is then killed: a's share moves to b's
//! planning node and a catches up.
//!
//! At the end of each, a holds every record b acknowledged, once, each sub-log dense
//! from 0.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use console_api::client::ConsoleClient;
use jetstream_engine::local_cluster::LocalCluster;
use jetstream_engine::{Engine, JetStreamMetaStore, JetStreamSettings};
use nix::sys::signal::Signal;
use router::replication::REPLICATION_DUTY;
use support::ServeProcess;
use support::two_regions::{
    Acked, TOPIC, contents, ends, on_jetstream, producer_over, wait_for, write_config_with,
    write_pair_config,
};

const PARTITIONS: u32 = 16;

/// The sum of `node`'s metric `name` over its labels (0 while it does not answer).
async fn metric(node: &ServeProcess, name: &str) -> u64 {
    let Ok(text) = ConsoleClient::new(&node.console, None).metrics().await else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Records this node applied by replication (its `replicated_records` counter).
async fn applied_here(node: &ServeProcess) -> u64 {
    metric(node, "georouter_replicated_records_total").await
}

/// Stored bytes of batches this node sent to neighbours.
async fn served_here(node: &ServeProcess) -> u64 {
    metric(node, "georouter_link_batch_raw_bytes_total").await
}

/// Whether `node` plans its region's replication now: its link to `peer` is up.
async fn planning(node: &ServeProcess, peer: &str) -> bool {
    ConsoleClient::new(&node.console, None)
        .links()
        .await
        .is_ok_and(|links| links.iter().any(|l| l.peer == peer && l.up))
}

/// Which of `nodes` plans (its link to `peer` is up), once one does.
async fn planner_of(nodes: &[ServeProcess], peer: &str) -> usize {
    let mut planner = None;
    let all: Vec<&ServeProcess> = nodes.iter().collect();
    wait_for("one node to plan", &all, async || {
        for (i, node) in nodes.iter().enumerate() {
            if planning(node, peer).await {
                planner = Some(i);
                return true;
            }
        }
        false
    })
    .await;
    let planner = planner.expect("found above");
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            i == planner || !planning(node, peer).await,
            "exactly one node holds the link"
        );
    }
    planner
}

/// b's sub-logs as `node` holds them: (partition) -> end.
async fn held_of_b(node: &ServeProcess) -> BTreeMap<u32, u64> {
    ends(&node.grpc)
        .await
        .into_iter()
        .filter(|((origin, _), _)| origin == "b")
        .map(|((_, partition), end)| (partition, end))
        .collect()
}

/// Waits for b (its node `b`) to produce to every sub-log after now, then for `reader` to
/// hold all of it; how long that took.
async fn catch_up(b: &ServeProcess, reader: &ServeProcess) -> std::time::Duration {
    let since = Instant::now();
    let at_start = held_of_b(b).await;
    assert_eq!(
        at_start.len(),
        PARTITIONS as usize,
        "b produced to every partition"
    );
    let mut in_b = BTreeMap::new();
    wait_for("b to produce to every sub-log again", &[b], async || {
        in_b = held_of_b(b).await;
        at_start
            .iter()
            .all(|(p, end)| in_b.get(p).is_some_and(|e| e > end))
    })
    .await;
    wait_for(
        "a to catch up on every sub-log of b",
        &[reader, b],
        async || {
            let held = held_of_b(reader).await;
            in_b.iter()
                .all(|(p, end)| held.get(p).is_some_and(|h| h >= end))
        },
    )
    .await;
    since.elapsed()
}

/// Stops the producer; then `reader` (a node of a) must come to hold everything b (its
/// node `b`) holds, every acknowledged record once, each sub-log dense from 0.
async fn every_acked_record_once(
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    acked: Acked,
    b: &ServeProcess,
    reader: &ServeProcess,
) {
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let in_b = held_of_b(b).await;
    wait_for("a to hold every record of b", &[reader, b], async || {
        held_of_b(reader).await == in_b
    })
    .await;
    let in_a = contents(reader).await;
    let acked = acked.lock().unwrap();
    for ((partition, offset), body) in acked.iter() {
        assert_eq!(
            in_a.get(&("b".to_string(), *partition, *offset)),
            Some(body),
            "record b/{partition}/{offset} acknowledged in b missing or different in a"
        );
    }
    let mut offsets: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for (origin, partition, offset) in in_a.keys() {
        if origin == "b" {
            offsets.entry(*partition).or_default().push(*offset);
        }
    }
    for (partition, offsets) in offsets {
        let dense: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(
            offsets, dense,
            "sub-log b/{partition} has holes or duplicates"
        );
    }
}

/// Reads who holds the replication lease of the region on `cluster` (blocking I/O).
fn replication_lease(cluster: &LocalCluster) -> Arc<dyn Fn() -> Option<String> + Send + Sync> {
    let engine = Engine::connect(JetStreamSettings::new(cluster.all_urls())).unwrap();
    let meta = JetStreamMetaStore::open(engine, "b").unwrap();
    Arc::new(move || meta.lease_holder(REPLICATION_DUTY).ok().flatten())
}

async fn create_topic(node: &ServeProcess) {
    client::Client::connect(&node.grpc)
        .await
        .unwrap()
        .create_topic(TOPIC, PARTITIONS, None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regions_nodes_divide_its_pulls_and_one_takes_over_a_dead_nodes_share() {
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path(), "a,b");
    let cluster = LocalCluster::start(&dir.path().join("jetstream"), 3).unwrap();
    let b_config = write_config_with(dir.path(), "b", None, "");
    let b = support::spawn_with("b", &dir.path().join("b"), &b_config, &[]);
    create_topic(&b).await;
    let a_config = write_config_with(
        dir.path(),
        "a",
        Some(&b.replication),
        &on_jetstream(&cluster),
    );
    let data = |n: usize| dir.path().join(format!("a{n}"));
    let mut nodes = [1, 2].map(|n| support::spawn_with("a", &data(n), &a_config, &[]));

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    let writer = producer_over(b.grpc.clone(), acked.clone(), stop.clone(), 0, PARTITIONS);

    wait_for(
        "both nodes of a to apply records of b",
        &[&nodes[0], &nodes[1], &b],
        async || applied_here(&nodes[0]).await > 0 && applied_here(&nodes[1]).await > 0,
    )
    .await;
    let mut planner = planner_of(&nodes, "b").await;

    // First the node pulling a share without planning dies, then the planning node.
    for (round, victim) in ["the node pulling a share", "the planning node"]
        .into_iter()
        .enumerate()
    {
        let dead = if round == 0 { 1 - planner } else { planner };
        let survivor = 1 - dead;
        nodes[dead].signal(Signal::SIGKILL);
        let _ = nodes[dead].child.wait();
        // Records that only the survivor (or a node it handed them to) can have pulled.
        let took = catch_up(&b, &nodes[survivor]).await;
        eprintln!("{victim} was killed; the other caught up on every sub-log of b after {took:?}");
        wait_for("the survivor to plan", &[&nodes[survivor]], async || {
            planning(&nodes[survivor], "b").await
        })
        .await;
        planner = survivor;
        // Started again, it takes a share again.
        nodes[dead] = support::spawn_with("a", &data(dead + 1), &a_config, &[]);
        wait_for(
            "the node started again to apply records of b",
            &[&nodes[0], &nodes[1], &b],
            async || applied_here(&nodes[dead]).await > 0,
        )
        .await;
    }
    every_acked_record_once(stop, vec![writer], acked, &b, &nodes[planner]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbours_other_node_serves_the_pulls_given_away_and_its_planning_node_takes_them_over()
{
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path(), "a,b");
    let cluster_a = LocalCluster::start(&dir.path().join("jetstream-a"), 3).unwrap();
    let cluster_b = LocalCluster::start(&dir.path().join("jetstream-b"), 3).unwrap();
    let b_config = write_config_with(dir.path(), "b", None, &on_jetstream(&cluster_b));
    let b_node =
        |n: usize| support::spawn_with("b", &dir.path().join(format!("b{n}")), &b_config, &[]);
    // b's first node takes the region's replication lease before the second starts, and
    // a lists the second first: a's link is dialled there first and told to move on.
    let b1 = b_node(1);
    let lease = replication_lease(&cluster_b);
    wait_for(
        "b's first node to hold the replication lease",
        &[&b1],
        async || {
            let lease = lease.clone();
            tokio::task::spawn_blocking(move || lease().is_some())
                .await
                .unwrap()
        },
    )
    .await;
    let mut b = [b1, b_node(2)];
    create_topic(&b[0]).await;
    let topology = format!(
        "[[regions]]\nname = \"a\"\n\n[[regions]]\nname = \"b\"\naddress = \"{}\"\nother_addresses = [\"{}\"]\n\n[[links]]\nbetween = [\"a\", \"b\"]\n",
        b[1].replication, b[0].replication
    );
    let a_config = write_pair_config(dir.path(), "a", "a", &topology, &on_jetstream(&cluster_a));
    let a =
        [1, 2].map(|n| support::spawn_with("a", &dir.path().join(format!("a{n}")), &a_config, &[]));
    let b_planner = planner_of(&b, "a").await;
    assert_eq!(b_planner, 0, "b's first node holds the lease");
    let b_other = 1;

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Acked = Arc::default();
    // Through both nodes of b, as its clients would (the one killed below stops there).
    let writers: Vec<_> = b
        .iter()
        .enumerate()
        .map(|(n, node)| {
            let seed = n as u64 * 1_000_000_000;
            producer_over(
                node.grpc.clone(),
                acked.clone(),
                stop.clone(),
                seed,
                PARTITIONS,
            )
        })
        .collect();
    wait_for(
        "both nodes of a to apply records, and both nodes of b to serve them",
        &[&a[0], &a[1], &b[0], &b[1]],
        async || {
            applied_here(&a[0]).await > 0
                && applied_here(&a[1]).await > 0
                && served_here(&b[0]).await > 0
                && served_here(&b[1]).await > 0
        },
    )
    .await;
    let a_planner = planner_of(&a, "b").await;
    assert!(
        metric(
            &a[a_planner],
            "georouter_link_refused_total{reason=\"not_replicating\"}"
        )
        .await
            > 0,
        "a's link, dialled at b's other node first, was told the links are held elsewhere"
    );

    // b's other node dies: what it served moves to b's planning node.
    b[b_other].signal(Signal::SIGKILL);
    let _ = b[b_other].child.wait();
    let took = catch_up(&b[b_planner], &a[1 - a_planner]).await;
    eprintln!(
        "b's node serving a's share was killed; a caught up on every sub-log of b after {took:?}"
    );
    every_acked_record_once(stop, writers, acked, &b[b_planner], &a[a_planner]).await;
    // A read of b's own sub-log on the node that did not write it can come back short of
    // the end it has learnt; that is read again, never refused as a hole (each refusal
    // held the sub-log back for seconds).
    for (n, says) in [(1, "link up"), (2, "pulling and serving this node's share")] {
        let log = std::fs::read_to_string(dir.path().join(format!("b{n}.log"))).unwrap();
        assert!(log.contains(says), "b{n}'s log holds its info lines");
        assert!(
            !log.contains("cannot serve a sub-log past a gap"),
            "b{n} refused its own sub-log as holed"
        );
    }
}
