//! A region without replication through the console: its task list is empty (the web
//! console shows "No tasks yet."), a task read is 404 `NOT_FOUND`, and a change is refused
//! with 404 `REPLICATION_DISABLED`, which says why.

mod support;

use console_api::client::{ConsoleClient, Method};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_region_lists_no_tasks_instead_of_an_error() {
    let node = start("solo").await;
    assert!(
        node.node.replicator().is_none(),
        "a region without replication"
    );
    let console = ConsoleClient::new(node.node.bound.console, None);
    assert!(console.tasks().await.unwrap().is_empty());
    let read = console
        .raw(Method::GET, "/api/v1/tasks/orders", &[], None)
        .await
        .unwrap();
    assert_eq!(read.status, 404, "{}", read.text());
    assert!(read.text().contains("NOT_FOUND"), "{}", read.text());
    let spec = replicator::TaskSpec::new("orders", &["solo"], &["elsewhere"], "orders");
    let create = console.create_task(&spec).await.unwrap_err();
    assert_eq!(create.status(), Some(404), "{create}");
    assert!(
        create.to_string().contains("REPLICATION_DISABLED"),
        "{create}"
    );
    node.node.shut_down().await.unwrap();
}
