//! A region of two georouter nodes on one JetStream cluster divides its pulls: region "a"
//! dials "b" (embedded), and b's topic has 16 partitions, so a pulls 16 sub-logs of b.
//! The node holding a's replication lease plans them and gives each to one of the two
//! nodes alive; the other node pulls its share over data-only connections to b. Both
//! nodes apply records (each one's `replicated_records` counter moves). The node that
//! does not plan is then killed with SIGKILL while b produces: its share goes to the
//! planning node, which catches up on every sub-log (time printed); started again, it
//! takes a share again. Then the planning node is killed: the other takes the lease, pulls
//! everything and catches up, and the killed one, started again, takes a share. At the end
//! a holds every record b acknowledged, once, each sub-log dense from 0.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use client::Partitioning;
use client::pb;
use console_api::client::ConsoleClient;
use jetstream_engine::local_cluster::LocalCluster;
use nix::sys::signal::Signal;
use support::ServeProcess;
use support::two_regions::{
    Acked, TOPIC, contents, ends, on_jetstream, wait_for, write_config_with,
};

const PARTITIONS: u32 = 16;

/// Records this node applied by replication (its `replicated_records` counter).
async fn applied_here(node: &ServeProcess) -> u64 {
    let Ok(text) = ConsoleClient::new(&node.console, None).metrics().await else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("georouter_replicated_records_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Whether `node` plans its region's replication now: its link to b is up.
async fn planning(node: &ServeProcess) -> bool {
    ConsoleClient::new(&node.console, None)
        .links()
        .await
        .is_ok_and(|links| links.iter().any(|l| l.peer == "b" && l.up))
}

/// Produces to every partition of b in turn until `stop`, recording what was
/// acknowledged.
fn producer(grpc: String, acked: Acked, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = client::Client::connect(&grpc).await.expect("b serves");
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let records: Vec<_> = (0..10)
                .map(|k| pb::Record {
                    body: format!("rec-{}", i + k).into_bytes(),
                    ..Default::default()
                })
                .collect();
            let bodies: Vec<_> = records.iter().map(|r| r.body.clone()).collect();
            let partition = (i / 10) as u32 % PARTITIONS;
            let ids = client
                .produce(TOPIC, records, Partitioning::Partition(partition))
                .await
                .expect("b takes records");
            let mut acked = acked.lock().unwrap();
            for (id, body) in ids.into_iter().zip(bodies) {
                acked.insert((id.partition, id.offset), body);
            }
            drop(acked);
            i += 10;
        }
    })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regions_nodes_divide_its_pulls_and_one_takes_over_a_dead_nodes_share() {
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path(), "a,b");
    let cluster = LocalCluster::start(&dir.path().join("jetstream"), 3).unwrap();
    let b_config = write_config_with(dir.path(), "b", None, "");
    let b = support::spawn_with("b", &dir.path().join("b"), &b_config, &[]);
    client::Client::connect(&b.grpc)
        .await
        .unwrap()
        .create_topic(TOPIC, PARTITIONS, None)
        .await
        .unwrap();
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
    let writer = producer(b.grpc.clone(), acked.clone(), stop.clone());

    wait_for(
        "both nodes of a to apply records of b",
        &[&nodes[0], &nodes[1], &b],
        async || applied_here(&nodes[0]).await > 0 && applied_here(&nodes[1]).await > 0,
    )
    .await;
    let mut planner = None;
    wait_for(
        "one node of a to plan",
        &[&nodes[0], &nodes[1]],
        async || {
            for (i, node) in nodes.iter().enumerate() {
                if planning(node).await {
                    planner = Some(i);
                    return true;
                }
            }
            false
        },
    )
    .await;
    let mut planner = planner.expect("found above");
    assert!(
        !planning(&nodes[1 - planner]).await,
        "exactly one node of a holds the link"
    );

    // First the node pulling a share without planning dies, then the planning node.
    for (round, victim) in ["the node pulling a share", "the planning node"]
        .into_iter()
        .enumerate()
    {
        let dead = if round == 0 { 1 - planner } else { planner };
        let survivor = 1 - dead;
        nodes[dead].signal(Signal::SIGKILL);
        let _ = nodes[dead].child.wait();
        let killed = Instant::now();
        // What b holds once it has produced to every sub-log since the kill: records that
        // only the survivor (or a node it handed them to) can have pulled.
        let at_kill = held_of_b(&b).await;
        assert_eq!(
            at_kill.len(),
            PARTITIONS as usize,
            "b produced to every partition"
        );
        let mut in_b = BTreeMap::new();
        wait_for("b to produce to every sub-log again", &[&b], async || {
            in_b = held_of_b(&b).await;
            at_kill
                .iter()
                .all(|(p, end)| in_b.get(p).is_some_and(|e| e > end))
        })
        .await;
        wait_for(
            "the other node to catch up on every sub-log of b",
            &[&nodes[survivor], &b],
            async || {
                let held = held_of_b(&nodes[survivor]).await;
                in_b.iter()
                    .all(|(p, end)| held.get(p).is_some_and(|h| h >= end))
            },
        )
        .await;
        eprintln!(
            "{victim} was killed; the other caught up on every sub-log of b after {:?}",
            killed.elapsed()
        );
        wait_for("the survivor to plan", &[&nodes[survivor]], async || {
            planning(&nodes[survivor]).await
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
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();

    let in_b = held_of_b(&b).await;
    wait_for(
        "a to hold every record of b",
        &[&nodes[planner], &b],
        async || held_of_b(&nodes[planner]).await == in_b,
    )
    .await;
    let in_a = contents(&nodes[planner]).await;
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
