//! What replication keeps per task and sub-log (status entries, metric label sets) goes
//! with the task or topic: a region that saw many tasks and topics come and go does not
//! keep them all.

mod support;

use console_api::client::ConsoleClient;
use support::*;

fn replicator(node: &TestNode) -> std::sync::Arc<replicator::Replicator> {
    node.node.replicator().expect("replication on")
}

async fn metrics(node: &TestNode) -> String {
    ConsoleClient::new(node.node.bound.console, None)
        .metrics()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_task_and_topic_leave_no_status_or_metric_labels() {
    let deployment = Deployment::new(&["eu", "us"]);
    let tasks = [task("gone", &["eu"], &["us"], "orders")];
    let nodes = deployment.start_mesh(&["eu", "us"], &tasks).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    produce(eu, "orders", 0, "eu", 20, 10).await;
    eventually("us to hold eu's records", || async {
        held_end(&us.node, "orders", 0, "eu") == 20
    })
    .await;
    let labelled = |text: &str| text.lines().any(|l| l.contains("task=\"gone\""));
    eventually("the task's status and labels in us", || async {
        replicator(us).status().iter().any(|s| s.task == "gone") && labelled(&metrics(us).await)
    })
    .await;

    replicator(eu)
        .delete_task("gone", None, &replicator::Authorship::region())
        .unwrap();
    us.client.delete_topic("orders").await.unwrap();
    eventually("the task's status and labels to go", || async {
        replicator(us).task("gone").is_none()
            && replicator(us).status().is_empty()
            && !labelled(&metrics(us).await)
    })
    .await;
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
