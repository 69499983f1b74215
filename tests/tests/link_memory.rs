//! What a link holds in memory is bounded per link, not per sub-log: a catch-up of many
//! sub-logs at once, each with a backlog of several frames, stays within the link's
//! `link_buffer_bytes` on both sides (read to be sent, received and not yet applied).

mod support;

use support::*;

const PARTITIONS: u32 = 48;
/// Per partition: four frames of 64 KiB.
const RECORDS: usize = 64;
const BUDGET: usize = 512 << 10;

fn replicator(node: &TestNode) -> std::sync::Arc<replicator::Replicator> {
    node.node.replicator().expect("replication on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_of_many_sub_logs_holds_at_most_the_link_budget() {
    let deployment = Deployment::new(&["eu", "us"]);
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &[], |config| {
            config.replication.link_buffer_bytes = BUDGET;
            config.replication.frame_target_bytes = 64 << 10;
        })
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", PARTITIONS).await;
    let body = "x".repeat(4 << 10);
    for partition in 0..PARTITIONS {
        // Batches of 32 KiB, two to a frame.
        for start in (0..RECORDS).step_by(8) {
            let records = (start..start + 8)
                .map(|i| record(&format!("{partition}-{i}-{body}")))
                .collect();
            eu.client
                .produce(
                    "orders",
                    records,
                    client::Partitioning::Partition(partition),
                )
                .await
                .unwrap();
        }
    }
    // The backlog is there before the task: every sub-log starts catching up at once.
    replicator(eu)
        .create_task(
            task("orders", &["eu"], &["us"], "orders"),
            &replicator::Authorship::region(),
        )
        .unwrap();
    eventually("us to hold every partition's backlog", || async {
        (0..PARTITIONS).all(|p| held_end(&us.node, "orders", p, "eu") == RECORDS as u64)
    })
    .await;
    let sent = replicator(eu).links()[0].send_buffer_peak_bytes;
    let received = replicator(us).links()[0].receive_buffer_peak_bytes;
    // 48 sub-logs × 256 KiB would be 12 MiB held at once without the budget.
    assert!(sent > 0 && received > 0, "sent {sent}, received {received}");
    assert!(sent <= BUDGET as u64, "sent side held {sent} bytes");
    assert!(
        received <= BUDGET as u64,
        "receive side held {received} bytes"
    );
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
