//! The gRPC client API end to end: a real node on loopback, the Rust client library.

mod support;

use client::{Partitioning, pb};
use support::{bodies, record, start, topic_names};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_round_trip() {
    let t = start("eu").await;
    let info = t
        .client
        .create_topic(
            "orders",
            3,
            Some(pb::RetentionPolicy {
                max_bytes: 1 << 20,
                max_age_ms: 0,
            }),
        )
        .await
        .unwrap();
    assert_eq!((info.name.as_str(), info.partitions), ("orders", 3));
    t.client.create_topic("audit", 1, None).await.unwrap();
    assert_eq!(topic_names(&t.client).await, vec!["audit", "orders"]);

    t.client
        .produce(
            "orders",
            vec![record("a"), record("b")],
            Partitioning::Partition(1),
        )
        .await
        .unwrap();
    let d = t.client.describe_topic("orders").await.unwrap();
    assert_eq!(d.topic.unwrap().retention.unwrap().max_bytes, 1 << 20);
    assert_eq!(d.partitions.len(), 3);
    let p1 = &d.partitions[1].sub_logs[0];
    assert_eq!(
        (p1.origin.as_str(), p1.start_offset, p1.end_offset),
        ("eu", 0, 2)
    );
    assert!(p1.bytes > 0);
    assert!(d.partitions[0].sub_logs.is_empty() || d.partitions[0].sub_logs[0].end_offset == 0);

    t.client.delete_topic("orders").await.unwrap();
    let err = t.client.describe_topic("orders").await.unwrap_err();
    assert_eq!(err.code(), Some("unknown-topic"));
    assert!(!t.dir.path().join("topics/orders").exists());
    // A topic of the same name starts empty.
    t.client.create_topic("orders", 1, None).await.unwrap();
    let fetched = t
        .client
        .fetch_all("orders", client::earliest(), vec![])
        .await
        .unwrap();
    assert!(fetched.records.is_empty() && fetched.end_of_stream);
    t.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_partitioning_and_ids() {
    let t = start("eu").await;
    t.client.create_topic("orders", 4, None).await.unwrap();
    let keyed: Vec<_> = (0..8)
        .map(|i| pb::Record {
            key: Some(b"customer-7".to_vec()),
            ..record(&format!("k{i}"))
        })
        .collect();
    let ids = t
        .client
        .produce("orders", keyed, Partitioning::ByKey)
        .await
        .unwrap();
    assert!(
        ids.iter().all(|id| id.partition == ids[0].partition),
        "one key, one partition"
    );
    assert_eq!(
        ids.iter().map(|id| id.offset).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
    assert!(ids.iter().all(|id| id.origin == "eu"));

    let ids = t
        .client
        .produce(
            "orders",
            (0..8).map(|i| record(&format!("r{i}"))).collect(),
            Partitioning::RoundRobin,
        )
        .await
        .unwrap();
    let mut per_partition = [0; 4];
    for id in &ids {
        per_partition[id.partition as usize] += 1;
    }
    assert_eq!(per_partition, [2, 2, 2, 2]);

    let ids = t
        .client
        .produce("orders", vec![record("x")], Partitioning::Partition(3))
        .await
        .unwrap();
    assert_eq!(ids[0].partition, 3);
    let all = t
        .client
        .fetch_all("orders", client::earliest(), vec![])
        .await
        .unwrap();
    assert_eq!(all.records.len(), 17);
    t.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_positions_cursors_and_groups() {
    let t = start("eu").await;
    t.client.create_topic("orders", 1, None).await.unwrap();
    let early: Vec<_> = (0..5)
        .map(|i| pb::Record {
            timestamp_ms: 1_000 + i,
            ..record(&format!("old{i}"))
        })
        .collect();
    t.client
        .produce("orders", early, Partitioning::Partition(0))
        .await
        .unwrap();
    let late: Vec<_> = (0..5)
        .map(|i| pb::Record {
            timestamp_ms: 9_000 + i,
            ..record(&format!("new{i}"))
        })
        .collect();
    t.client
        .produce("orders", late, Partitioning::Partition(0))
        .await
        .unwrap();

    let all = t
        .client
        .fetch_all("orders", client::earliest(), vec![])
        .await
        .unwrap();
    assert_eq!(
        bodies(&all.records),
        [
            "old0", "old1", "old2", "old3", "old4", "new0", "new1", "new2", "new3", "new4"
        ]
    );
    assert_eq!(all.cursors[&0].next["eu"], 10);

    let from_time = t
        .client
        .fetch_all("orders", client::at_time(9_002), vec![])
        .await
        .unwrap();
    assert_eq!(bodies(&from_time.records), ["new2", "new3", "new4"]);
    let latest = t
        .client
        .fetch_all("orders", client::latest(), vec![])
        .await
        .unwrap();
    assert!(latest.records.is_empty());

    // An exact cursor resumes after offset 6.
    let cursor = pb::PartitionCursor {
        partition: 0,
        cursor: Some(pb::Cursor {
            next: [("eu".to_string(), 7)].into(),
            ..Default::default()
        }),
    };
    let resumed = t
        .client
        .fetch_all("orders", client::earliest(), vec![cursor.clone()])
        .await
        .unwrap();
    assert_eq!(bodies(&resumed.records), ["new2", "new3", "new4"]);

    // Consumer groups keep the cursor.
    t.client
        .commit("billing", "orders", vec![cursor.clone()])
        .await
        .unwrap();
    assert_eq!(
        t.client.group_cursors("billing", "orders").await.unwrap(),
        vec![cursor]
    );
    assert!(
        t.client
            .group_cursors("other", "orders")
            .await
            .unwrap()
            .is_empty()
    );
    t.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_tails_new_records_and_filters_tags() {
    let t = start("eu").await;
    t.client.create_topic("orders", 2, None).await.unwrap();
    let request = pb::FetchRequest {
        topic: "orders".into(),
        follow: true,
        tag: Some("eu-only".into()),
        ..Default::default()
    };
    let mut stream = t.client.fetch(request).await.unwrap();
    let tagged = |b: &str| pb::Record {
        tag: Some("eu-only".into()),
        ..record(b)
    };
    t.client
        .produce(
            "orders",
            vec![record("plain"), tagged("t1")],
            Partitioning::Partition(0),
        )
        .await
        .unwrap();
    t.client
        .produce("orders", vec![tagged("t2")], Partitioning::Partition(1))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut cursor_p0 = None;
    while seen.len() < 2 {
        let response = stream.message().await.unwrap().expect("stream stays open");
        assert!(!response.end_of_stream);
        seen.extend(bodies(&response.records));
        for pc in response.cursors.iter().filter(|pc| pc.partition == 0) {
            cursor_p0 = pc.cursor.clone();
        }
    }
    seen.sort();
    assert_eq!(seen, ["t1", "t2"]);
    // The filtered record still moved partition 0's cursor past it.
    assert_eq!(cursor_p0.unwrap().next["eu"], 2);
    drop(stream);
    t.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_clear_errors() {
    let t = start("eu").await;
    let c = &t.client;
    let code = |e: client::ClientError| {
        (
            e.grpc_code().unwrap(),
            e.code().unwrap().to_string(),
            e.to_string(),
        )
    };

    let (grpc, code_, msg) = code(c.create_topic("orders", 0, None).await.unwrap_err());
    assert_eq!(
        (grpc, code_.as_str()),
        (tonic::Code::InvalidArgument, "invalid-partition-count")
    );
    assert!(msg.contains("partition count 0"), "{msg}");
    let (_, code_, msg) = code(c.create_topic("a/b", 1, None).await.unwrap_err());
    assert_eq!(code_, "invalid-name");
    assert!(msg.contains("'a/b'"), "{msg}");

    c.create_topic("orders", 2, None).await.unwrap();
    let (grpc, code_, _) = code(c.create_topic("orders", 2, None).await.unwrap_err());
    assert_eq!(
        (grpc, code_.as_str()),
        (tonic::Code::AlreadyExists, "topic-exists")
    );

    let (grpc, code_, msg) = code(
        c.produce("nope", vec![record("x")], Partitioning::ByKey)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (grpc, code_.as_str()),
        (tonic::Code::NotFound, "unknown-topic")
    );
    assert!(msg.contains("'nope'"), "{msg}");

    let big = pb::Record {
        body: vec![0u8; (1 << 20) + 1],
        ..Default::default()
    };
    let (grpc, code_, msg) = code(
        c.produce("orders", vec![record("ok"), big], Partitioning::ByKey)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (grpc, code_.as_str()),
        (tonic::Code::InvalidArgument, "record-too-large")
    );
    assert!(
        msg.contains("record 1") && msg.contains("max_record_bytes"),
        "{msg}"
    );
    // Nothing of the refused request was stored.
    assert!(
        c.fetch_all("orders", client::earliest(), vec![])
            .await
            .unwrap()
            .records
            .is_empty()
    );

    let (_, code_, _) = code(
        c.produce("orders", vec![], Partitioning::ByKey)
            .await
            .unwrap_err(),
    );
    assert_eq!(code_, "empty-produce");
    let (_, code_, msg) = code(
        c.produce("orders", vec![record("x")], Partitioning::Partition(2))
            .await
            .unwrap_err(),
    );
    assert_eq!(code_, "unknown-partition");
    assert!(msg.contains("partition 2"), "{msg}");

    let bad_origin = pb::PartitionCursor {
        partition: 0,
        cursor: Some(pb::Cursor {
            next: [("no/such".to_string(), 1)].into(),
            ..Default::default()
        }),
    };
    let (grpc, code_, _) = code(
        c.fetch_all("orders", client::earliest(), vec![bad_origin])
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (grpc, code_.as_str()),
        (tonic::Code::InvalidArgument, "invalid-cursor")
    );
    let outside = pb::FetchRequest {
        topic: "orders".into(),
        partitions: vec![1],
        cursors: vec![pb::PartitionCursor {
            partition: 0,
            cursor: None,
        }],
        ..Default::default()
    };
    let (_, code_, _) = code(c.fetch(outside).await.unwrap_err());
    assert_eq!(code_, "invalid-cursor");
    let unknown_partition = pb::FetchRequest {
        topic: "orders".into(),
        partitions: vec![9],
        ..Default::default()
    };
    let (_, code_, _) = code(c.fetch(unknown_partition).await.unwrap_err());
    assert_eq!(code_, "unknown-partition");
    let (_, code_, _) = code(c.commit("bad group", "orders", vec![]).await.unwrap_err());
    assert_eq!(code_, "invalid-name");
    t.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_groups_survive_a_restart() {
    let t = start("eu").await;
    t.client.create_topic("orders", 1, None).await.unwrap();
    t.client
        .produce(
            "orders",
            vec![record("one"), record("two")],
            Partitioning::ByKey,
        )
        .await
        .unwrap();
    let cursor = pb::PartitionCursor {
        partition: 0,
        cursor: Some(pb::Cursor {
            next: [("eu".to_string(), 1)].into(),
            ..Default::default()
        }),
    };
    t.client
        .commit("g", "orders", vec![cursor.clone()])
        .await
        .unwrap();
    let config = t.node.config.clone();
    t.node.shut_down().await.unwrap();

    let again = support::start_with(config, t.dir).await;
    assert_eq!(
        again.client.group_cursors("g", "orders").await.unwrap(),
        vec![cursor.clone()]
    );
    let rest = again
        .client
        .fetch_all("orders", client::earliest(), vec![cursor])
        .await
        .unwrap();
    assert_eq!(bodies(&rest.records), ["two"]);
    let ids = again
        .client
        .produce("orders", vec![record("three")], Partitioning::ByKey)
        .await
        .unwrap();
    assert_eq!(ids[0].offset, 2);
    again.node.shut_down().await.unwrap();
}

/// A produce of very many tiny records is refused before it is decoded (a message limit
/// alone lets 2 encoded bytes become a record of a hundred bytes and more), and stores
/// nothing; the node keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_too_many_records_is_refused_before_decoding() {
    let t = start("eu").await;
    t.client.create_topic("orders", 1, None).await.unwrap();
    let empty = vec![pb::Record::default(); proto::codec::MAX_PRODUCE_RECORDS + 1];
    let err = t
        .client
        .produce("orders", empty, Partitioning::Partition(0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("request-too-large"), "{err}");
    assert!(err.to_string().contains("records"), "{err}");
    let d = t.client.describe_topic("orders").await.unwrap();
    assert!(
        d.partitions[0].sub_logs.iter().all(|s| s.end_offset == 0),
        "a refused produce stored records"
    );
    t.client
        .produce("orders", vec![record("after")], Partitioning::Partition(0))
        .await
        .unwrap();
    t.node.shut_down().await.unwrap();
}

/// A fetch that names one partition several times reads it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_naming_a_partition_twice_delivers_each_record_once() {
    let t = start("eu").await;
    t.client.create_topic("orders", 2, None).await.unwrap();
    t.client
        .produce(
            "orders",
            vec![record("a"), record("b")],
            Partitioning::Partition(1),
        )
        .await
        .unwrap();
    let mut stream = t
        .client
        .fetch(pb::FetchRequest {
            topic: "orders".into(),
            partitions: vec![1, 1, 1],
            start: Some(client::earliest()),
            max_bytes: u32::MAX,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut fetched = client::Fetched::default();
    while let Some(response) = stream.message().await.unwrap() {
        fetched.absorb(response);
    }
    assert_eq!(bodies(&fetched.records), vec!["a", "b"]);
    t.node.shut_down().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_filters_by_sql_and_a_bad_expression_names_where() {
    let node = start("eu").await;
    node.client.create_topic("payments", 1, None).await.unwrap();
    let records = (0..10)
        .map(|i| {
            let mut r = record(&format!("p{i}"));
            r.tag = Some(if i % 2 == 0 { "card" } else { "cash" }.into());
            r.properties = [("amount".to_string(), (i * 10).to_string())].into();
            r
        })
        .collect();
    node.client
        .produce("payments", records, client::Partitioning::Partition(0))
        .await
        .unwrap();
    let request = |sql: &str| pb::FetchRequest {
        topic: "payments".into(),
        start: Some(client::earliest()),
        sql: Some(sql.into()),
        ..Default::default()
    };
    let mut stream = node
        .client
        .fetch(request("amount >= 40 AND TAGS = 'card'"))
        .await
        .unwrap();
    let mut bodies_seen = Vec::new();
    let mut cursors = Vec::new();
    while let Some(response) = stream.message().await.unwrap() {
        bodies_seen.extend(bodies(&response.records));
        if !response.cursors.is_empty() {
            cursors = response.cursors;
        }
    }
    assert_eq!(bodies_seen, ["p4", "p6", "p8"]);
    let next = cursors[0].cursor.as_ref().unwrap().next["eu"];
    assert_eq!(next, 10, "the skipped records advance the cursor");
    let bad = node
        .client
        .fetch(request("amount >"))
        .await
        .map(|_| ())
        .unwrap_err();
    assert_eq!(bad.code(), Some("invalid-filter"), "{bad}");
    assert!(bad.to_string().contains("offset 8"), "{bad}");
    node.node.shut_down().await.unwrap();
}
