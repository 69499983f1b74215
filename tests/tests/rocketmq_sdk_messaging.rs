//! Business messaging with the official RocketMQ 5 Python SDK (`rocketmq-python-client`)
//! against a region's access point, unchanged: SQL92 filters on the server, delay messages
//! and their recall, transactions with the server's orphan checks, and a group's progress
//! shared between regions.

mod support;

use support::sdk::{indexed, run_sdk};

/// In the region at `endpoint`, the group `billing` acknowledges the first 8 of the 20
/// messages of `orders` and leaves the rest in flight, as a consumer that fails.
async fn acknowledge_first_eight(endpoint: String) {
    let run = run_sdk(
        "ack_some.py",
        &[
            endpoint,
            "orders".into(),
            "billing".into(),
            "20".into(),
            "8".into(),
        ],
    )
    .await;
    assert_eq!(run["acked"].as_array().unwrap().len(), 8, "{run}");
}

/// The `index` properties of the messages a script received, sorted.
fn received_indexes(result: &serde_json::Value) -> Vec<i64> {
    let mut indexes: Vec<i64> = result["received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["index"].as_i64().unwrap())
        .collect();
    indexes.sort_unstable();
    indexes
}

/// Whether `client`'s region has the group `billing` at `next` of `origin` on `orders`.
async fn progress_is(client: &client::Client, origin: &str, next: u64) -> bool {
    client
        .group_cursors("billing", "orders")
        .await
        .is_ok_and(|c| {
            c.iter().any(|p| {
                p.cursor
                    .as_ref()
                    .is_some_and(|c| c.next.get(origin) == Some(&next))
            })
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_filters_by_sql_on_the_server() {
    let node = support::start("eu").await;
    node.client.create_topic("payments", 2, None).await.unwrap();
    let mut records = indexed(20, "payment");
    for (i, r) in records.iter_mut().enumerate() {
        r.tag = Some(if i % 2 == 0 { "card" } else { "cash" }.to_string());
        let region = if i < 10 { "eu" } else { "us" };
        r.properties
            .insert("region".to_string(), region.to_string());
    }
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
    assert_eq!(
        received_indexes(&result),
        wanted,
        "the SQL filter runs on the server: {result}"
    );
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
    assert_eq!(
        received_indexes(&result),
        [0, 1, 2, 3],
        "each once, not the recalled one: {result}"
    );
    for m in received {
        let late = m["at_ms"].as_i64().unwrap() - due;
        // Not before its time; late by the consumer's long-poll turnaround at most (the
        // firing itself is measured by the broker's tests and `georouter bench timers`).
        assert!(
            (0..5_000).contains(&late),
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
    let records = indexed(20, "order");
    eu.client
        .produce("orders", records, client::Partitioning::Partition(0))
        .await
        .unwrap();
    support::eventually("us holds eu's records", || async {
        support::held_end(&us.node, "orders", 0, "eu") == 20
    })
    .await;

    // In eu the group acknowledges the first 8 and fails with the rest in flight.
    acknowledge_first_eight(eu.node.bound.rocketmq.to_string()).await;
    support::eventually("the group's progress in us", || {
        progress_is(&us.client, "eu", 8)
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
    assert_eq!(
        received_indexes(&us_run),
        (8..20).collect::<Vec<i64>>(),
        "{us_run}"
    );
    assert_eq!(us_run["left"], 0, "{us_run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_redelivers_one_message_to_a_group() {
    let node = support::start("eu").await;
    node.client.create_topic("orders", 1, None).await.unwrap();
    let records = indexed(3, "order");
    node.client
        .produce("orders", records, client::Partitioning::Partition(0))
        .await
        .unwrap();
    let endpoint = node.node.bound.rocketmq.to_string();
    let consume = |expected: &'static str| {
        let args = vec![
            endpoint.clone(),
            "orders".to_string(),
            "audit".to_string(),
            "*".to_string(),
            expected.to_string(),
        ];
        async move { run_sdk("consumer.py", &args).await }
    };
    let first = consume("3").await;
    assert_eq!(first["received"].as_array().unwrap().len(), 3, "{first}");
    assert_eq!(first["left"], 0, "all acknowledged: {first}");

    let console = console_api::client::ConsoleClient::new(node.node.bound.console, None);
    let redeliver = |id: &str| {
        let body = serde_json::json!({"topic": "orders", "id": id});
        let console = console.clone();
        async move {
            console
                .raw(
                    console_api::client::Method::POST,
                    "/api/v1/groups/audit/redeliver",
                    &[("content-type", "application/json")],
                    Some(body.to_string().into_bytes()),
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(redeliver("eu-0-1").await.status, 202);
    let again = consume("1").await;
    let received = again["received"].as_array().unwrap();
    assert_eq!(received.len(), 1, "{again}");
    assert_eq!(received[0]["index"], 1, "{again}");
    assert_eq!(again["left"], 0, "{again}");
    let missing = redeliver("eu-0-99").await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    let bad = redeliver("order-one").await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("\"field\":\"id\""), "{}", bad.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_consumer_takes_over_in_the_standby_after_the_primary_is_killed() {
    let mut task = support::dr_task("dr", "orders");
    task.groups = Some("billing*".into());
    let mut cluster = support::two_regions(vec![task], 300).await;
    let (a, b) = (
        cluster.region("a").client.clone(),
        cluster.region("b").client.clone(),
    );
    a.create_topic("orders", 1, None).await.unwrap();
    a.produce(
        "orders",
        indexed(20, "order"),
        client::Partitioning::Partition(0),
    )
    .await
    .unwrap();
    // The group works in a: acknowledges the first 8, the rest still in flight when a dies.
    acknowledge_first_eight(cluster.region("a").bound.rocketmq.to_string()).await;
    support::eventually("b holds a's records and the group's progress", || async {
        let held = b
            .describe_topic("orders")
            .await
            .is_ok_and(|d| d.partitions[0].sub_logs.iter().any(|s| s.end_offset == 20));
        held && progress_is(&b, "a", 8).await
    })
    .await;

    cluster.kill("a").await.unwrap();
    let report = cluster
        .region("b")
        .console(&cluster.token)
        .failover(
            "dr",
            replicator::FailoverMode::Forced,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(report.promoted, "b");

    // A PushConsumer of the group in b gets exactly what a had not acknowledged.
    let in_b = run_sdk(
        "push.py",
        &[
            cluster.region("b").bound.rocketmq.to_string(),
            "orders".into(),
            "billing".into(),
            "12".into(),
        ],
    )
    .await;
    let mut indexes: Vec<i64> = in_b["attempts"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    indexes.sort_unstable();
    assert_eq!(indexes, (8..20).collect::<Vec<i64>>(), "{in_b}");
    cluster.stop().await.unwrap();
}

/// The sequences of `group` in a fifo.py result, in receipt order.
fn fifo_order(result: &serde_json::Value, group: &str) -> Vec<u64> {
    result["received"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[0] == group)
        .map(|r| r[1].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_group_keeps_its_order_in_the_region_that_takes_over() {
    let deployment = support::Deployment::new(&["eu", "us"]);
    let mut task = support::task("ledger", &["eu"], &["us"], "ledger");
    task.groups = Some("posting*".into());
    let nodes = deployment.start_mesh(&["eu", "us"], &[task]).await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    eu.client
        .create_topic_of("ledger", 2, None, "fifo")
        .await
        .unwrap();
    support::create_group(eu, "posting", true, 16).await;
    support::eventually("the FIFO group's settings in us", || async {
        us.node
            .broker
            .groups()
            .get("posting")
            .is_some_and(|g| g.fifo)
    })
    .await;
    let per_group: u64 = 6;
    // In eu, the group acknowledges 5 messages in order, then stops.
    let in_eu = run_sdk(
        "fifo.py",
        &[
            eu.node.bound.rocketmq.to_string(),
            "ledger".into(),
            "posting".into(),
            per_group.to_string(),
            "1".into(),
            "5".into(),
        ],
    )
    .await;
    let done: Vec<usize> = ["g1", "g2"].map(|g| fifo_order(&in_eu, g).len()).into();
    assert_eq!(done.iter().sum::<usize>(), 5, "{in_eu}");
    support::eventually("us holds the messages and the group's progress", || async {
        let held: u64 = (0..2)
            .map(|p| support::held_end(&us.node, "ledger", p, "eu"))
            .sum();
        let progress: u64 = us
            .client
            .group_cursors("posting", "ledger")
            .await
            .map(|c| {
                c.iter()
                    .filter_map(|p| p.cursor.as_ref()?.next.get("eu").copied())
                    .sum()
            })
            .unwrap_or(0);
        held == 2 * per_group && progress == 5
    })
    .await;
    // In us, each message group continues in order from where eu left it.
    let in_us = run_sdk(
        "fifo.py",
        &[
            us.node.bound.rocketmq.to_string(),
            "ledger".into(),
            "posting".into(),
            per_group.to_string(),
            "0".into(),
            "7".into(),
        ],
    )
    .await;
    for (group, done) in ["g1", "g2"].into_iter().zip(done) {
        assert_eq!(
            fifo_order(&in_us, group),
            (done as u64..per_group).collect::<Vec<_>>(),
            "{group}: eu {in_eu}, us {in_us}"
        );
    }
}
