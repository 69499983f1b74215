//! The official RocketMQ 5 Python SDK (`rocketmq-python-client` from PyPI, installed by
//! `.ci/run` into a virtualenv) against a region's RocketMQ access point, unchanged: what
//! it sends is stored as georouter records with everything the message carried.

mod support;

use std::time::Duration;

use support::sdk::{indexed, run_sdk, run_sdk_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_sends_normal_messages_that_keep_what_they_carry() {
    let node = support::start("eu").await;
    node.client.create_topic("orders", 4, None).await.unwrap();
    let endpoint = node.node.bound.rocketmq.to_string();
    let count = 20;
    let result = run_sdk(
        "producer.py",
        &[endpoint, "orders".into(), count.to_string()],
    )
    .await;

    let sent = result["sent"].as_array().unwrap();
    assert_eq!(sent.len(), count);
    let fetched = node
        .client
        .fetch_all("orders", client::earliest(), vec![])
        .await
        .unwrap();
    assert_eq!(
        fetched.records.len(),
        count,
        "every acknowledged send is stored once"
    );
    for receipt in sent {
        let index = receipt["index"].as_u64().unwrap();
        let id = receipt["message_id"].as_str().unwrap();
        let stored = fetched
            .records
            .iter()
            .find(|r| {
                r.record
                    .as_ref()
                    .unwrap()
                    .properties
                    .get("mq:message_id")
                    .map(String::as_str)
                    == Some(id)
            })
            .unwrap_or_else(|| panic!("message {index} ({id}) is stored"));
        let record = stored.record.as_ref().unwrap();
        assert_eq!(stored.origin, "eu", "sent into the local origin's sub-log");
        assert_eq!(
            receipt["offset"].as_u64().unwrap(),
            stored.offset,
            "the SDK's offset is the origin offset"
        );
        assert_eq!(record.body, format!("message {index}").into_bytes());
        let tag = if index % 2 == 0 { "TagA" } else { "TagB" };
        assert_eq!(record.tag.as_deref(), Some(tag));
        assert_eq!(record.properties["index"], index.to_string());
        assert_eq!(record.properties["mq:keys"], format!("key-{index}"));
        assert!(record.properties.contains_key("mq:born_ms"));
    }
    let unknown = result["unknown_topic"]
        .as_str()
        .expect("a send to a topic that does not exist fails");
    assert!(
        unknown.contains("no-such-topic")
            || unknown.contains("TOPIC_NOT_FOUND")
            || unknown.contains("40402"),
        "the SDK's error names the problem: {unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_receives_filters_acknowledges_and_gets_unacknowledged_messages_again() {
    let node = support::start("eu").await;
    node.client.create_topic("payments", 2, None).await.unwrap();
    // Produced through georouter's own API: any record is a message to the access point.
    let mut records = indexed(12, "payment");
    for (i, r) in records.iter_mut().enumerate() {
        r.tag = Some(if i % 3 == 0 { "TagB" } else { "TagA" }.to_string());
    }
    node.client
        .produce("payments", records, client::Partitioning::RoundRobin)
        .await
        .unwrap();
    let tag_a = (0..12).filter(|i| i % 3 != 0).count();
    let endpoint = node.node.bound.rocketmq.to_string();
    let args = |group: &str| {
        vec![
            endpoint.clone(),
            "payments".to_string(),
            group.to_string(),
            "TagA".to_string(),
            tag_a.to_string(),
        ]
    };
    let result = run_sdk("consumer.py", &args("billing")).await;

    let received = result["received"].as_array().unwrap();
    assert_eq!(received.len(), tag_a, "every TagA message once: {result}");
    for m in received {
        assert_eq!(m["tag"], "TagA", "the filter runs on the server");
        assert_eq!(m["attempt"], 1);
        let index = m["index"].as_i64().unwrap();
        assert_eq!(m["body"], format!("payment {index}"));
    }
    let again = result["again"].as_array().unwrap();
    let odd = received
        .iter()
        .filter(|m| m["index"].as_i64().unwrap() % 2 == 1)
        .count();
    assert_eq!(
        again.len(),
        odd,
        "each message made visible again came back: {result}"
    );
    assert!(
        again
            .iter()
            .all(|m| m["attempt"] == 2 && m["index"].as_i64().unwrap() % 2 == 1)
    );
    assert_eq!(result["left"], 0, "nothing acknowledged comes back");

    // The group's progress is stored: a new client of the group gets nothing; another
    // group gets everything.
    let again = run_sdk("consumer.py", &{
        let mut a = args("billing");
        a[4] = "0".into();
        a
    })
    .await;
    assert_eq!(again["received"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["left"], 0);
    let other = run_sdk("consumer.py", &args("audit")).await;
    assert_eq!(other["received"].as_array().unwrap().len(), tag_a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_push_consumer_retries_what_its_listener_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::node_config("eu", dir.path());
    // The push consumer's receives long-poll this long: short, so shutdown is quick.
    config.rocketmq.long_polling_ms = 2_000;
    let node = support::start_with(config, dir).await;
    node.client.create_topic("events", 2, None).await.unwrap();
    let count = 8;
    let records: Vec<client::pb::Record> = (0..count)
        .map(|i| client::pb::Record {
            body: format!("event {i}").into_bytes(),
            properties: [("index".to_string(), i.to_string())].into(),
            ..Default::default()
        })
        .collect();
    node.client
        .produce("events", records, client::Partitioning::RoundRobin)
        .await
        .unwrap();
    let endpoint = node.node.bound.rocketmq.to_string();
    let result = run_sdk(
        "push.py",
        &[
            endpoint,
            "events".into(),
            "workers".into(),
            count.to_string(),
        ],
    )
    .await;
    let attempts = result["attempts"].as_object().unwrap();
    assert_eq!(attempts.len(), count, "{result}");
    for (index, seen) in attempts {
        let seen: Vec<u64> = seen
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_u64().unwrap())
            .collect();
        let expected: &[u64] = if index.parse::<u64>().unwrap() % 4 == 0 {
            &[1, 2]
        } else {
            &[1]
        };
        assert_eq!(seen, expected, "message {index}: {result}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_in_one_region_is_consumed_in_another_with_its_identity() {
    let deployment = support::Deployment::new(&["eu", "us"]);
    let task = support::task("orders", &["eu"], &["us"], "orders");
    let nodes = deployment.start_mesh(&["eu", "us"], &[task]).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    eu.client.create_topic("orders", 2, None).await.unwrap();
    let count = 10;
    let sent = run_sdk(
        "producer.py",
        &[
            eu.node.bound.rocketmq.to_string(),
            "orders".into(),
            count.to_string(),
        ],
    )
    .await;
    support::eventually("us holds every record of eu", || async {
        (0..2)
            .map(|p| support::held_end(&us.node, "orders", p, "eu"))
            .sum::<u64>()
            == count as u64
    })
    .await;

    // In us, eu's queues are readable: a group there receives eu's messages under the ids
    // the producer got.
    let tag_a: Vec<&str> = sent["sent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["index"].as_u64().unwrap() % 2 == 0)
        .map(|r| r["message_id"].as_str().unwrap())
        .collect();
    let consumed = run_sdk(
        "consumer.py",
        &[
            us.node.bound.rocketmq.to_string(),
            "orders".into(),
            "billing".into(),
            "TagA".into(),
            tag_a.len().to_string(),
        ],
    )
    .await;
    let mut ids: Vec<&str> = consumed["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected = tag_a.clone();
    expected.sort();
    assert_eq!(ids, expected, "{consumed}");
    assert_eq!(consumed["left"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_sends_fifo_messages_and_each_group_is_received_in_order() {
    let node = support::start("eu").await;
    node.client
        .create_topic_of("ledger", 2, None, "fifo")
        .await
        .unwrap();
    support::create_group(&node, "posting", true, 16).await;
    let per_group = 5;
    let result = run_sdk(
        "fifo.py",
        &[
            node.node.bound.rocketmq.to_string(),
            "ledger".into(),
            "posting".into(),
            per_group.to_string(),
        ],
    )
    .await;
    let received = result["received"].as_array().unwrap();
    assert_eq!(received.len(), 2 * per_group, "{result}");
    for group in ["g1", "g2"] {
        let order: Vec<u64> = received
            .iter()
            .filter(|r| r[0] == group)
            .map(|r| {
                assert_eq!(r[2], group, "the message group travels with the message");
                r[1].as_u64().unwrap()
            })
            .collect();
        assert_eq!(
            order,
            (0..per_group as u64).collect::<Vec<_>>(),
            "{group}: {result}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_sends_over_tls_with_signed_requests() {
    // An anonymous caller would be let in (test nodes are open): the credentials are
    // checked all the same, and the principal's grants decide.
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    let ca = replicator::certs::Ca::generate().unwrap();
    let server = ca.issue("localhost", 1).unwrap();
    let (ca_file, cert, key) = (
        tls.join("ca.pem"),
        tls.join("localhost.pem"),
        tls.join("localhost.key"),
    );
    std::fs::write(&ca_file, &ca.cert_pem).unwrap();
    std::fs::write(&cert, &server.cert_pem).unwrap();
    std::fs::write(&key, &server.key_pem).unwrap();
    // A key readable by others is refused at start.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut config = support::node_config("eu", dir.path());
    config.rocketmq.tls_cert = Some(cert);
    config.rocketmq.tls_key = Some(key);
    config.auth.principals = vec![principal("shop", "AK1", "shop-secret-123", "topic:orders")];
    let node = support::start_with(config, dir).await;
    node.client.create_topic("orders", 2, None).await.unwrap();
    let port = node.node.bound.rocketmq.port();

    let result = run_sdk_with(
        "producer.py",
        &[format!("localhost:{port}"), "orders".into(), "4".into()],
        &[
            ("GEOROUTER_TLS", "1"),
            (
                "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
                ca_file.to_str().unwrap(),
            ),
            ("ROCKETMQ_ACCESS_KEY", "AK1"),
            ("ROCKETMQ_SECRET_KEY", "shop-secret-123"),
        ],
    )
    .await;
    assert_eq!(result["sent"].as_array().unwrap().len(), 4, "{result}");
    let stored = support::all_records(&node.client, "orders").await;
    assert_eq!(stored.len(), 4);

    // The port speaks TLS only: a plaintext client gets nowhere.
    let plaintext = async {
        let mut client =
            proto::rocketmq::v2::messaging_service_client::MessagingServiceClient::connect(
                format!("http://127.0.0.1:{port}"),
            )
            .await?;
        client
            .query_route(proto::rocketmq::v2::QueryRouteRequest::default())
            .await
            .map_err(Into::<Box<dyn std::error::Error + Send + Sync>>::into)
    };
    let refused = tokio::time::timeout(Duration::from_secs(10), plaintext)
        .await
        .expect("a plaintext client is answered (refused) at once");
    assert!(refused.is_err(), "{refused:?}");
}

/// A principal `name` (access key `access_key`) that may produce to, consume from and
/// describe the topics of `topics` (a glob after `topic:`), and consume in any group.
fn principal(name: &str, access_key: &str, secret: &str, topics: &str) -> auth::PrincipalSpec {
    use auth::{Action, GrantSpec};
    auth::PrincipalSpec {
        name: name.into(),
        access_key: access_key.into(),
        secret: secret.into(),
        grants: vec![
            GrantSpec {
                resource: topics.into(),
                actions: vec![Action::Produce, Action::Consume, Action::Describe],
            },
            GrantSpec {
                resource: "group:*".into(),
                actions: vec![Action::Consume],
            },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_signs_with_its_principal_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::node_config("eu", dir.path());
    config.auth.mode = router::config::AuthMode::Enforce;
    config.auth.principals = vec![
        principal("shop", "shop-ak", "shop-secret-123", "topic:shop.*"),
        auth::PrincipalSpec {
            grants: vec![auth::GrantSpec {
                resource: "cluster".into(),
                actions: vec![auth::Action::Admin],
            }],
            ..principal("ops", "ops-ak", "ops-secret-1234", "topic:*")
        },
    ];
    let node = support::start_with(config, dir).await;
    let admin = client::Client::connect_as(
        &node.node.bound.grpc.to_string(),
        Some("ops-ak:ops-secret-1234"),
    )
    .await
    .unwrap();
    let endpoint = node.node.bound.rocketmq.to_string();
    // Namespaces scope grants: topic `orders` of namespace `shop` is `shop.orders`.
    let attempt = |namespaced: &str, access_key: &str, secret: &str| {
        let (namespace, topic) = namespaced.split_once('.').unwrap();
        let args = [
            endpoint.clone(),
            namespace.to_string(),
            topic.to_string(),
            access_key.to_string(),
            secret.to_string(),
        ];
        async move { run_sdk("refused.py", &args).await }
    };
    // Topics are made by a principal allowed to (shop may not create).
    let denied = client::Client::connect_as(
        &node.node.bound.grpc.to_string(),
        Some("shop-ak:shop-secret-123"),
    )
    .await
    .unwrap()
    .create_topic("shop.orders", 1, None)
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Some("forbidden"), "{denied}");
    admin.create_topic("shop.orders", 1, None).await.unwrap();
    admin.create_topic("bank.ledger", 1, None).await.unwrap();

    let signed = attempt("shop.orders", "shop-ak", "shop-secret-123").await;
    assert_eq!(signed["sent"], true, "{signed}");
    for (topic, access_key, secret, why) in [
        (
            "shop.orders",
            "shop-ak",
            "wrong-secret-123",
            "a wrong secret",
        ),
        ("shop.orders", "", "", "no credentials"),
        (
            "shop.orders",
            "nobody",
            "nobody-secret-1",
            "an unknown access key",
        ),
        (
            "bank.ledger",
            "shop-ak",
            "shop-secret-123",
            "a topic outside its grants",
        ),
    ] {
        let refused = attempt(topic, access_key, secret).await;
        assert_eq!(refused["sent"], false, "{why}: {refused}");
    }
    let stored = support::all_records(&admin, "shop.orders").await;
    assert_eq!(stored.len(), 1, "only the signed send was stored");
    assert!(support::all_records(&admin, "bank.ledger").await.is_empty());
    let metrics = console_api::client::ConsoleClient::new(
        node.node.bound.console,
        Some("ops-ak:ops-secret-1234"),
    )
    .metrics()
    .await
    .unwrap();
    // The SDK reports each refusal as a failed route; the access point counted why.
    let count = |labels: &str| -> f64 {
        let name = format!("georouter_auth_denied_total{{{labels}}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count("surface=\"rocketmq\",reason=\"unauthenticated\"") >= 3.0,
        "{metrics}"
    );
    assert!(
        count("surface=\"rocketmq\",reason=\"forbidden\"") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        count("surface=\"grpc\",reason=\"forbidden\""),
        1.0,
        "{metrics}"
    );
}
