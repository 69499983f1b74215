//! A region of two georouter nodes on one JetStream cluster, both configured to replicate:
//! one at a time holds the region's replication lease and runs its links, the other
//! takes no links. Region "b" (embedded) dials "a" at both nodes' addresses. While
//! producers write through both nodes of "a" and through "b", the node replicating for
//! "a" is killed with SIGKILL, twice (each time started again, as the standby): the other
//! node takes over, and at the end both regions hold the same records, every acknowledged
//! one once, each sub-log dense from 0. How long each takeover took is printed.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use console_api::client::ConsoleClient;
use jetstream_engine::local_cluster::LocalCluster;
use nix::sys::signal::Signal;
use support::ServeProcess;
use support::two_regions::{
    Acked, TOPIC, converged, ends, on_jetstream, producer_retrying, wait_for, write_pair_config,
};

/// The config of a region of the pair with b dialling a at `a_addresses` (none for a's
/// own nodes), and `extra` at its end.
fn write_config(
    dir: &std::path::Path,
    name: &str,
    region: &str,
    a_addresses: &[String],
    extra: &str,
) -> std::path::PathBuf {
    let addresses = match a_addresses {
        [] => String::new(),
        [first, others @ ..] => {
            let others: Vec<String> = others.iter().map(|a| format!("\"{a}\"")).collect();
            format!(
                "address = \"{first}\"\nother_addresses = [{}]\n",
                others.join(", ")
            )
        }
    };
    let topology = format!(
        "[[regions]]\nname = \"a\"\n{addresses}\n[[regions]]\nname = \"b\"\n\n\
         [[links]]\nbetween = [\"a\", \"b\"]\ndial = \"b\"\n"
    );
    write_pair_config(dir, name, region, &topology, extra)
}

/// Region a's two nodes, with data directories `a1` and `a2` in `dir`.
fn nodes_of_a(dir: &std::path::Path, config: &std::path::Path) -> [ServeProcess; 2] {
    [1, 2].map(|n| support::spawn_with("a", &dir.join(format!("a{n}")), config, &[]))
}

/// Whether `node` replicates for its region now: its link to b is up.
async fn replicating(node: &ServeProcess) -> bool {
    ConsoleClient::new(&node.console, None)
        .links()
        .await
        .is_ok_and(|links| links.iter().any(|l| l.peer == "b" && l.up))
}

/// How many records of `origin` `process` holds (0 before the topic exists there).
async fn held_from(process: &ServeProcess, origin: &str) -> u64 {
    ends(&process.grpc)
        .await
        .iter()
        .filter(|((o, _), _)| o == origin)
        .map(|(_, end)| end)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replicating_node_of_a_region_dies_and_another_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path(), "a,b");
    let cluster = LocalCluster::start(&dir.path().join("jetstream"), 3).unwrap();
    let a_config = write_config(dir.path(), "a", "a", &[], &on_jetstream(&cluster));
    let data = |name: &str| dir.path().join(name);
    let mut nodes = nodes_of_a(dir.path(), &a_config);
    let addresses: Vec<String> = nodes.iter().map(|n| n.replication.clone()).collect();
    let b_config = write_config(dir.path(), "b", "b", &addresses, "");
    let b = support::spawn_with("b", &data("b"), &b_config, &[]);
    client::Client::connect(&nodes[0].grpc)
        .await
        .unwrap()
        .create_topic(TOPIC, 2, None)
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (acked_a, acked_b): (Acked, Acked) = (Arc::default(), Arc::default());
    let mut writers = vec![
        producer_retrying(b.grpc.clone(), acked_b.clone(), stop.clone(), 0),
        producer_retrying(
            nodes[0].grpc.clone(),
            acked_a.clone(),
            stop.clone(),
            1_000_000,
        ),
        producer_retrying(
            nodes[1].grpc.clone(),
            acked_a.clone(),
            stop.clone(),
            2_000_000,
        ),
    ];
    let mut holder = None;
    wait_for(
        "one node of a to replicate",
        &[&nodes[0], &nodes[1], &b],
        async || {
            for (i, node) in nodes.iter().enumerate() {
                if replicating(node).await {
                    holder = Some(i);
                    return true;
                }
            }
            false
        },
    )
    .await;
    let mut holder = holder.expect("found above");

    for round in 0..2 {
        let in_b_before = held_from(&b, "a").await;
        wait_for(
            "a's records reaching b",
            &[&nodes[0], &nodes[1], &b],
            async || held_from(&b, "a").await >= in_b_before + 200,
        )
        .await;
        nodes[holder].signal(Signal::SIGKILL);
        let _ = nodes[holder].child.wait();
        let killed = Instant::now();
        let other = 1 - holder;
        wait_for(
            "the other node to take over",
            &[&nodes[other], &b],
            async || replicating(&nodes[other]).await,
        )
        .await;
        let took_over = killed.elapsed();
        let in_b = held_from(&b, "a").await;
        wait_for(
            "a's records reaching b again",
            &[&nodes[other], &b],
            async || held_from(&b, "a").await > in_b,
        )
        .await;
        eprintln!(
            "round {round}: replicating node killed; the other replicates after {took_over:?}, a's records reach b again after {:?}",
            killed.elapsed()
        );
        // The killed node comes back on its address (b dials it there), as the standby.
        let config = a_config.clone();
        let replication = ("GEOROUTER__LISTEN__REPLICATION", addresses[holder].clone());
        let name = if holder == 0 { "a1" } else { "a2" };
        nodes[holder] = support::spawn_with("a", &data(name), &config, &[replication]);
        writers.push(producer_retrying(
            nodes[holder].grpc.clone(),
            acked_a.clone(),
            stop.clone(),
            3_000_000 + round * 1_000_000,
        ));
        holder = other;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let (in_a, _) = converged(&nodes[holder], &b, &acked_a).await;
    for ((partition, offset), body) in acked_b.lock().unwrap().iter() {
        assert_eq!(
            in_a.get(&("b".to_string(), *partition, *offset)),
            Some(body),
            "record b/{partition}/{offset} acknowledged in b missing or different in a"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_of_a_dr_standby_region_refuses_produce() {
    let dir = tempfile::tempdir().unwrap();
    support::certs(dir.path(), "a,b");
    let cluster = LocalCluster::start(&dir.path().join("jetstream"), 3).unwrap();
    // "a" holds a read-only copy of "billing": b is the DR task's primary.
    let extra = format!(
        "{}\n[[tasks]]\nname = \"dr\"\nsources = [\"b\"]\ntargets = [\"a\"]\n\
         topics = \"billing\"\ndr = {{ primary = \"b\" }}\n",
        on_jetstream(&cluster)
    );
    let a_config = write_config(dir.path(), "a", "a", &[], &extra);
    let nodes = nodes_of_a(dir.path(), &a_config);
    let first = client::Client::connect(&nodes[0].grpc).await.unwrap();
    first.create_topic("billing", 1, None).await.unwrap();
    for node in &nodes {
        let client = client::Client::connect(&node.grpc).await.unwrap();
        let record = client::pb::Record {
            body: b"not here".to_vec(),
            ..Default::default()
        };
        let refused = client
            .produce("billing", vec![record], client::Partitioning::Partition(0))
            .await
            .expect_err("a DR standby region refuses produce on every node");
        assert!(
            refused
                .to_string()
                .contains("read-only copy of topic billing"),
            "{refused}"
        );
    }
}
