//! Delay and transaction messages on the own gRPC API: records held until their delivery
//! time, then stored once (a recalled one never); half messages invisible until
//! EndTransaction commits them, a rollback discarding them; bad holds refused with
//! `invalid-hold` naming what was wrong.

mod support;

use support::*;

fn now_ms() -> i64 {
    broker::record::now_ms()
}

async fn held_bodies(node: &TestNode) -> Vec<String> {
    let fetched = node
        .client
        .fetch_all("orders", client::earliest(), vec![])
        .await
        .unwrap();
    bodies(&fetched.records)
}

fn records(prefix: &str, n: usize) -> Vec<client::pb::Record> {
    (0..n).map(|i| record(&format!("{prefix}-{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_messages_are_stored_once_when_due_and_a_recalled_one_never() {
    let node = start("eu").await;
    node.client.create_topic("orders", 1, None).await.unwrap();
    let due = now_ms() + 1_500;
    let handles = node
        .client
        .produce_delayed(
            "orders",
            records("later", 3),
            client::Partitioning::Partition(0),
            due,
        )
        .await
        .unwrap();
    assert_eq!(handles.len(), 3);
    assert!(node.client.recall("orders", &handles[1]).await.unwrap());
    assert!(
        !node.client.recall("orders", &handles[1]).await.unwrap(),
        "recalled once"
    );
    assert!(
        !node.client.recall("other", &handles[0]).await.unwrap(),
        "a handle is of its topic"
    );
    assert!(
        held_bodies(&node).await.is_empty(),
        "nothing before it is due"
    );
    eventually("the two delay messages stored", || async {
        held_bodies(&node).await.len() >= 2
    })
    .await;
    let fetched = node
        .client
        .fetch_all("orders", client::earliest(), vec![])
        .await
        .unwrap();
    assert_eq!(bodies(&fetched.records), ["later-0", "later-2"]);
    for r in &fetched.records {
        let stored = r.record.as_ref().unwrap().timestamp_ms;
        assert!(stored >= due, "stored at {stored}, due at {due}");
    }
    assert!(
        !node.client.recall("orders", &handles[0]).await.unwrap(),
        "a fired message can no longer be recalled"
    );
    node.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_messages_appear_only_when_committed() {
    let node = start("eu").await;
    node.client.create_topic("orders", 1, None).await.unwrap();
    let ids = node
        .client
        .produce_transactional(
            "orders",
            records("half", 2),
            client::Partitioning::Partition(0),
        )
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    assert!(
        held_bodies(&node).await.is_empty(),
        "invisible before commit"
    );
    assert!(
        !node
            .client
            .end_transaction("other", &ids[0], true)
            .await
            .unwrap(),
        "a transaction is of its topic"
    );
    assert!(
        node.client
            .end_transaction("orders", &ids[1], false)
            .await
            .unwrap()
    );
    assert!(
        node.client
            .end_transaction("orders", &ids[0], true)
            .await
            .unwrap()
    );
    assert!(
        !node
            .client
            .end_transaction("orders", &ids[0], true)
            .await
            .unwrap(),
        "ended once"
    );
    eventually("the committed message stored", || async {
        !held_bodies(&node).await.is_empty()
    })
    .await;
    assert_eq!(
        held_bodies(&node).await,
        ["half-0"],
        "the rolled back one never"
    );
    node.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_that_cannot_be_kept_are_refused_saying_why() {
    let node = start("eu").await;
    node.client.create_topic("orders", 1, None).await.unwrap();
    let far = now_ms() + 91 * 86_400_000;
    let err = node
        .client
        .produce_delayed(
            "orders",
            records("far", 1),
            client::Partitioning::Partition(0),
            far,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("invalid-hold"), "{err}");
    assert_eq!(err.grpc_code(), Some(tonic::Code::InvalidArgument));
    assert!(err.to_string().contains("deliver_at_ms"), "{err}");

    let both = client::pb::ProduceRequest {
        topic: "orders".into(),
        records: records("both", 1),
        deliver_at_ms: now_ms() + 1_000,
        transactional: true,
        ..Default::default()
    };
    let mut raw =
        proto::v1::broker_client::BrokerClient::connect(format!("http://{}", node.node.bound.grpc))
            .await
            .unwrap();
    let refused = raw.produce(both).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("transactional"), "{refused:?}");
    assert_eq!(
        refused.metadata().get("georouter-error-code").unwrap(),
        "invalid-hold"
    );

    let missing = node
        .client
        .produce_delayed(
            "no-such-topic",
            records("x", 1),
            client::Partitioning::Partition(0),
            now_ms() + 1_000,
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("unknown-topic"), "{missing}");
    let bad_partition = node
        .client
        .produce_transactional(
            "orders",
            records("x", 1),
            client::Partitioning::Partition(7),
        )
        .await
        .unwrap_err();
    assert_eq!(
        bad_partition.code(),
        Some("unknown-partition"),
        "{bad_partition}"
    );
    assert!(
        held_bodies(&node).await.is_empty(),
        "nothing refused was held"
    );
    node.node.shut_down().await.unwrap();
}
