//! Looking messages up through the console API: by identity, by RocketMQ message id, by
//! key (the record's, or one of the message's keys), by store time, with a limit; bad
//! queries refused naming the field.

mod support;

use console_api::client::ConsoleClient;
use support::*;

/// 1 700 000 000 s after the epoch: 2023-11-14T22:13:20Z.
const BASE_MS: i64 = 1_700_000_000_000;

fn indexes(answer: &serde_json::Value) -> Vec<u64> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_found_by_id_key_and_time() {
    let node = start("eu").await;
    node.client.create_topic("orders", 1, None).await.unwrap();
    let records: Vec<client::pb::Record> = (0..30)
        .map(|i| {
            let mut r = record(&format!("order {i}"));
            r.timestamp_ms = BASE_MS + i * 1000;
            r.key = (i % 10 == 0).then(|| format!("own-{i}").into_bytes());
            r.properties = [
                ("mq:message_id".to_string(), format!("MID-{i}")),
                ("mq:keys".to_string(), format!("k-{i} batch-{}", i / 10)),
            ]
            .into();
            r
        })
        .collect();
    node.client
        .produce("orders", records, client::Partitioning::Partition(0))
        .await
        .unwrap();
    let console = ConsoleClient::new(node.node.bound.console, None);
    let find = |query: Vec<(&'static str, String)>| {
        let console = console.clone();
        async move {
            let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            console.messages("orders", &pairs).await
        }
    };

    let by_id = find(vec![("id", "MID-7".into())]).await.unwrap();
    assert_eq!(indexes(&by_id), [7]);
    let m = &by_id["messages"][0];
    assert_eq!(m["id"], "eu-0-7");
    assert_eq!(m["message_id"], "MID-7");
    assert_eq!(m["body"]["text"], "order 7");
    assert_eq!(m["timestamp_ms"], BASE_MS + 7000);
    assert_eq!(
        indexes(&find(vec![("id", "eu-0-12".into())]).await.unwrap()),
        [12]
    );
    assert_eq!(
        indexes(&find(vec![("key", "k-5".into())]).await.unwrap()),
        [5]
    );
    assert_eq!(
        indexes(&find(vec![("key", "own-20".into())]).await.unwrap()),
        [20]
    );
    let window = find(vec![
        ("from", "2023-11-14T22:13:30Z".into()),
        ("to", "2023-11-14T22:13:35Z".into()),
    ])
    .await
    .unwrap();
    assert_eq!(indexes(&window), [10, 11, 12, 13, 14]);
    assert_eq!(window["complete"], true);
    let both = find(vec![
        ("key", "batch-2".into()),
        ("from", "2023-11-14T22:13:45Z".into()),
    ])
    .await
    .unwrap();
    assert_eq!(indexes(&both), (25..30).collect::<Vec<u64>>());
    let limited = find(vec![("key", "batch-1".into()), ("limit", "3".into())])
        .await
        .unwrap();
    assert_eq!(indexes(&limited), [10, 11, 12]);
    assert_eq!(limited["complete"], false, "stopped by the limit");
    assert!(indexes(&find(vec![("id", "MID-99".into())]).await.unwrap()).is_empty());

    let bad = find(vec![("from", "yesterday".into())]).await.unwrap_err();
    assert_eq!(bad.status(), Some(400), "{bad}");
    assert!(bad.to_string().contains("from"), "{bad}");
    let unknown = console.messages("no-such-topic", &[]).await.unwrap_err();
    assert_eq!(unknown.status(), Some(404), "{unknown}");
    node.node.shut_down().await.unwrap();
}
