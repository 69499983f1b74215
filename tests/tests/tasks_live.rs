//! Replication tasks changed while regions run: created in one region and known in the
//! others, paused (nothing more shipped, checkpoint kept), resumed (caught up, nothing
//! lost or duplicated), rate limit changed, deleted; versions refuse stale changes.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use replicator::{ChangeError, TaskState};
use support::*;

fn replicator(node: &TestNode) -> Arc<replicator::Replicator> {
    node.node.replicator().expect("replication on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_change_live_and_spread_to_every_region() {
    let regions = ["eu", "us"];
    let deployment = Deployment::new(&regions);
    // No task at start: the link is up, nothing flows.
    let nodes = deployment.start_mesh(&regions, &[]).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    produce(eu, "orders", 0, "eu", 100, 10).await;

    // Created in us (the target), known in eu, which starts serving it.
    let created = replicator(us)
        .create_task(
            task("live", &["eu"], &["us"], "orders"),
            &replicator::Authorship::region(),
        )
        .unwrap();
    assert_eq!(created.version, 1);
    eventually("eu to know the task", || async {
        replicator(eu).task("live").is_some_and(|r| r.version == 1)
    })
    .await;
    eventually("us to catch up", || async {
        held_end(&us.node, "orders", 0, "eu") == 100
    })
    .await;
    let again = replicator(eu).create_task(
        task("live", &["eu"], &["us"], "x"),
        &replicator::Authorship::region(),
    );
    assert!(matches!(again, Err(ChangeError::Exists(_))), "{again:?}");

    // Paused in eu (the source): nothing more is shipped.
    let paused = replicator(eu)
        .set_task_state(
            "live",
            TaskState::Paused,
            Some(1),
            &replicator::Authorship::region(),
        )
        .unwrap();
    assert_eq!(paused.version, 2);
    eventually("us to know it is paused", || async {
        replicator(us).task("live").is_some_and(|r| r.version == 2)
    })
    .await;
    produce(eu, "orders", 0, "eu", 50, 10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // what a pause must hold for
    assert_eq!(
        held_end(&us.node, "orders", 0, "eu"),
        100,
        "shipped while paused"
    );

    // A stale version is refused.
    let stale = replicator(us).set_task_state(
        "live",
        TaskState::Running,
        Some(1),
        &replicator::Authorship::region(),
    );
    assert!(
        matches!(
            stale,
            Err(ChangeError::Conflict {
                current: 2,
                given: 1,
                ..
            })
        ),
        "{stale:?}"
    );
    // Resumed from us: catches up from the checkpoint.
    replicator(us)
        .set_task_state(
            "live",
            TaskState::Running,
            Some(2),
            &replicator::Authorship::region(),
        )
        .unwrap();
    eventually("us to catch up after the resume", || async {
        held_end(&us.node, "orders", 0, "eu") == 150
    })
    .await;
    let records = all_records(&us.client, "orders").await;
    let bodies: Vec<String> = records.iter().map(|r| r.3.clone()).collect();
    let mut want: Vec<String> = (0..100).map(|i| format!("eu-{i}")).collect();
    want.extend((0..50).map(|i| format!("eu-{i}")));
    assert_eq!(bodies, want, "each record once, in order");
    let offsets: Vec<u64> = records.iter().map(|r| r.2).collect();
    assert_eq!(offsets, (0..150).collect::<Vec<u64>>());

    // A rate limit set on the running task applies to it.
    let mut limited = replicator(eu).task("live").unwrap().spec;
    limited.max_records_per_s = Some(200);
    let version = replicator(eu).task("live").unwrap().version;
    replicator(eu)
        .put_task(limited, Some(version), &replicator::Authorship::region())
        .unwrap();
    eventually("us to know the limit", || async {
        replicator(us)
            .task("live")
            .is_some_and(|r| r.spec.max_records_per_s == Some(200))
    })
    .await;
    let started = std::time::Instant::now();
    produce(eu, "orders", 0, "eu-limited", 400, 50).await;
    eventually("the limited records", || async {
        held_end(&us.node, "orders", 0, "eu") == 550
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "400 records at 200/s took only {took:?}"
    );

    // Deleted: gone everywhere, and nothing more flows.
    let version = replicator(us).task("live").unwrap().version;
    replicator(us)
        .delete_task("live", Some(version), &replicator::Authorship::region())
        .unwrap();
    eventually("eu to drop the task", || async {
        replicator(eu).task("live").is_none()
    })
    .await;
    produce(eu, "orders", 0, "after", 10, 10).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(held_end(&us.node, "orders", 0, "eu"), 550);
    let listed: BTreeMap<String, u64> = replicator(eu)
        .tasks()
        .into_iter()
        .map(|r| (r.spec.name, r.version))
        .collect();
    assert!(listed.is_empty(), "{listed:?}");
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_changes_survive_a_restart() {
    let deployment = Deployment::new(&["eu", "us"]);
    let dir = tempfile::tempdir().unwrap();
    let mut topology = TopologySpec::mesh(&["eu", "us"]);
    topology.links[0].dial = Some("us".into()); // "us" never runs here
    let config = deployment.config(
        "eu",
        dir.path(),
        &topology,
        &[task("seeded", &["eu"], &["us"], "orders")],
    );
    let node = start_with(config.clone(), dir).await;
    let r = replicator(&node);
    r.set_task_state(
        "seeded",
        TaskState::Paused,
        Some(1),
        &replicator::Authorship::region(),
    )
    .unwrap();
    r.create_task(
        task("added", &["us"], &["eu"], "x"),
        &replicator::Authorship::region(),
    )
    .unwrap();
    // The replicator holds the broker: let go of it before the node shuts down.
    drop(r);
    let TestNode {
        node,
        dir,
        client,
        jetstream,
    } = node;
    drop(client);
    node.shut_down().await.unwrap();
    let node = start_again(config, dir, jetstream).await;
    let tasks: BTreeMap<String, (u64, TaskState)> = replicator(&node)
        .tasks()
        .into_iter()
        .map(|r| (r.spec.name, (r.version, r.spec.state)))
        .collect();
    assert_eq!(
        tasks,
        BTreeMap::from([
            ("added".to_string(), (1, TaskState::Running)),
            ("seeded".to_string(), (2, TaskState::Paused)),
        ])
    );
    node.node.shut_down().await.unwrap();
}
