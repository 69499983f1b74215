//! The official RocketMQ 5 Python SDK (`rocketmq-python-client` from PyPI, installed by
//! `.ci/run` into a virtualenv) against a region's RocketMQ access point, unchanged: what
//! it sends is stored as georouter records with everything the message carried.

mod support;

use std::path::PathBuf;
use std::time::Duration;

/// The Python with the SDK: `$GEOROUTER_ROCKETMQ_PYTHON`, or the virtualenv `.ci/run`
/// makes.
fn sdk_python() -> PathBuf {
    if let Some(python) = std::env::var_os("GEOROUTER_ROCKETMQ_PYTHON") {
        return python.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    let python = PathBuf::from(home).join(".cache/georouter/rocketmq-sdk/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run .ci/run, or `python3 -m venv ~/.cache/georouter/rocketmq-sdk && ~/.cache/georouter/rocketmq-sdk/bin/pip install rocketmq-python-client==5.1.2`",
        python.display()
    );
    python
}

/// Runs `script` (in tests/rocketmq) with `args`; its last stdout line as JSON.
async fn run_sdk(script: &str, args: &[String]) -> serde_json::Value {
    run_sdk_with(script, args, &[]).await
}

/// Runs `script` with `args` and the environment variables `env`.
async fn run_sdk_with(script: &str, args: &[String], env: &[(&str, &str)]) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("rocketmq")
        .join(script);
    let child = tokio::process::Command::new(sdk_python())
        .arg(&path)
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("the SDK script finishes within 120 s")
        .expect("the SDK script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout
        .lines()
        .last()
        .expect("the script printed its result");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script} printed {last}: {e}"))
}

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
    let records: Vec<client::pb::Record> = (0..12)
        .map(|i| client::pb::Record {
            body: format!("payment {i}").into_bytes(),
            tag: Some(if i % 3 == 0 { "TagB" } else { "TagA" }.to_string()),
            properties: [("index".to_string(), i.to_string())].into(),
            ..Default::default()
        })
        .collect();
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
async fn the_python_sdk_filters_by_sql_on_the_server() {
    let node = support::start("eu").await;
    node.client.create_topic("payments", 2, None).await.unwrap();
    let records: Vec<client::pb::Record> = (0..20)
        .map(|i| client::pb::Record {
            body: format!("payment {i}").into_bytes(),
            tag: Some(if i % 2 == 0 { "card" } else { "cash" }.to_string()),
            properties: [
                ("index".to_string(), i.to_string()),
                (
                    "region".to_string(),
                    if i < 10 { "eu" } else { "us" }.to_string(),
                ),
            ]
            .into(),
            ..Default::default()
        })
        .collect();
    node.client
        .produce("payments", records, client::Partitioning::RoundRobin)
        .await
        .unwrap();
    let sql =
        "sql:index BETWEEN 4 AND 15 AND (TAGS = 'card' OR region IN ('us')) AND missing IS NULL";
    let wanted: Vec<i64> = (4..=15).filter(|i| i % 2 == 0 || *i >= 10).collect();
    let endpoint = node.node.bound.rocketmq.to_string();
    let result = run_sdk(
        "consumer.py",
        &[
            endpoint,
            "payments".into(),
            "sql-group".into(),
            sql.into(),
            wanted.len().to_string(),
        ],
    )
    .await;
    let mut got: Vec<i64> = result["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["index"].as_i64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, wanted, "the SQL filter runs on the server: {result}");
    assert_eq!(result["left"], 0, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_delay_messages_arrive_when_due_and_a_recalled_one_never_does() {
    let node = support::start("eu").await;
    node.client
        .create_topic_of("reminders", 2, None, "delay")
        .await
        .unwrap();
    let endpoint = node.node.bound.rocketmq.to_string();
    let (count, delay_ms) = (4, 3_000);
    let result = run_sdk(
        "delay.py",
        &[
            endpoint,
            "reminders".into(),
            "reminder-group".into(),
            count.to_string(),
            delay_ms.to_string(),
        ],
    )
    .await;
    let due = result["due_ms"].as_i64().unwrap();
    let received = result["received"].as_array().unwrap();
    let mut indexes: Vec<i64> = received
        .iter()
        .map(|m| m["index"].as_i64().unwrap())
        .collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        [0, 1, 2, 3],
        "each once, not the recalled one: {result}"
    );
    for m in received {
        let late = m["at_ms"].as_i64().unwrap() - due;
        // Not before its time; within the second precision the protocol promises, plus the
        // consumer's long poll turnaround.
        assert!(
            (0..2_000).contains(&late),
            "received {late} ms after due: {result}"
        );
    }
    assert!(
        result["recalled"].as_str().is_some_and(|id| !id.is_empty()),
        "{result}"
    );
    assert!(
        result["recall_again"]
            .as_str()
            .is_some_and(|e| e.contains("recall handle")),
        "a second recall names the problem: {result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_transactions_commit_roll_back_and_answer_the_servers_checks() {
    let node = support::start("eu").await;
    node.client
        .create_topic_of("transfers", 2, None, "transaction")
        .await
        .unwrap();
    let endpoint = node.node.bound.rocketmq.to_string();
    let result = run_sdk(
        "transaction.py",
        &[endpoint, "transfers".into(), "ledger".into()],
    )
    .await;
    assert_eq!(
        result["while_half"], 0,
        "a half message is invisible: {result}"
    );
    let mut received: Vec<i64> = result["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect();
    received.sort_unstable();
    assert_eq!(
        received,
        [0, 2],
        "the committed one and the orphan its checker committed, once each: {result}"
    );
    assert_eq!(result["checked"], serde_json::json!([2, 3]), "{result}");
    assert_eq!(result["after"], 0, "nothing rolled back appears: {result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_progress_in_one_region_is_where_it_continues_in_another() {
    let deployment = support::Deployment::new(&["eu", "us"]);
    let mut task = support::task("orders", &["eu"], &["us"], "orders");
    task.groups = Some("billing*".into());
    let nodes = deployment.start_mesh(&["eu", "us"], &[task]).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    eu.client.create_topic("orders", 1, None).await.unwrap();
    let records: Vec<client::pb::Record> = (0..20)
        .map(|i| client::pb::Record {
            body: format!("order {i}").into_bytes(),
            properties: [("index".to_string(), i.to_string())].into(),
            ..Default::default()
        })
        .collect();
    eu.client
        .produce("orders", records, client::Partitioning::Partition(0))
        .await
        .unwrap();
    support::eventually("us holds eu's records", || async {
        support::held_end(&us.node, "orders", 0, "eu") == 20
    })
    .await;

    // In eu the group acknowledges the first 8 and fails with the rest in flight.
    let eu_run = run_sdk(
        "ack_some.py",
        &[
            eu.node.bound.rocketmq.to_string(),
            "orders".into(),
            "billing".into(),
            "20".into(),
            "8".into(),
        ],
    )
    .await;
    assert_eq!(eu_run["acked"].as_array().unwrap().len(), 8, "{eu_run}");
    support::eventually("the group's progress in us", || async {
        us.client
            .group_cursors("billing", "orders")
            .await
            .is_ok_and(|c| {
                c.iter().any(|p| {
                    p.cursor
                        .as_ref()
                        .is_some_and(|c| c.next.get("eu") == Some(&8))
                })
            })
    })
    .await;

    // The group continues in us from there: everything not acknowledged in eu, once.
    let us_run = run_sdk(
        "consumer.py",
        &[
            us.node.bound.rocketmq.to_string(),
            "orders".into(),
            "billing".into(),
            "*".into(),
            "12".into(),
        ],
    )
    .await;
    let mut got: Vec<i64> = us_run["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["index"].as_i64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (8..20).collect::<Vec<i64>>(), "{us_run}");
    assert_eq!(us_run["left"], 0, "{us_run}");
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
