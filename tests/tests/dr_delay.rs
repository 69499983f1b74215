//! Delay messages through a forced failover: the primary holds them (with copies that the
//! DR task replicates), is killed before they fire, and the promoted standby fires each
//! one it had not fired, exactly once: a message fired before the kill is not fired again,
//! a recalled one never, and one due later fires at its time in the promoted region.

mod support;

use std::time::Duration;

fn now_ms() -> i64 {
    broker::record::now_ms()
}

fn bodies_by_origin(fetched: &client::Fetched) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = fetched
        .records
        .iter()
        .map(|r| {
            (
                r.origin.clone(),
                String::from_utf8(r.record.as_ref().unwrap().body.clone()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promoted_region_fires_the_delay_messages_the_lost_primary_held() {
    let mut cluster = support::two_regions(vec![support::dr_task("dr", "later")], 300).await;
    let (a, b) = (
        cluster.region("a").client.clone(),
        cluster.region("b").client.clone(),
    );
    a.create_topic("later", 1, None).await.unwrap();
    let one = |body: &str| vec![support::record(body)];
    let p0 = client::Partitioning::Partition(0);
    // Fires in a before the kill.
    a.produce_delayed("later", one("soon"), p0, now_ms() + 300)
        .await
        .unwrap();
    // Held when a dies; one of them recalled first.
    let due = now_ms() + 6_000;
    a.produce_delayed("later", one("after-failover"), p0, due)
        .await
        .unwrap();
    let recalled = a
        .produce_delayed("later", one("recalled"), p0, due)
        .await
        .unwrap();
    assert!(a.recall("later", &recalled[0]).await.unwrap());

    // b holds a's fired message and every copy (3 held, 1 cancel).
    support::eventually("b to hold the fired message and the copies", || async {
        let ends = |topic: &'static str| {
            let b = b.clone();
            async move {
                b.describe_topic(topic)
                    .await
                    .map(|d| {
                        d.partitions[0]
                            .sub_logs
                            .iter()
                            .map(|s| s.end_offset)
                            .sum::<u64>()
                    })
                    .unwrap_or(0)
            }
        };
        ends("later").await == 1 && ends("%HELD%later").await == 4
    })
    .await;

    cluster.kill("a").await.unwrap();
    let report = cluster
        .region("b")
        .console(&cluster.token)
        .failover(
            "dr",
            replicator::FailoverMode::Forced,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(report.promoted, "b");
    assert_eq!(report.adopted_delay_messages, 1, "{report:?}");

    support::eventually("the adopted message to fire in b", || async {
        b.fetch_all("later", client::earliest(), vec![])
            .await
            .is_ok_and(|f| f.records.len() >= 2)
    })
    .await;
    let fetched = b
        .fetch_all("later", client::earliest(), vec![])
        .await
        .unwrap();
    assert_eq!(
        bodies_by_origin(&fetched),
        [
            ("a".to_string(), "soon".to_string()),
            ("b".to_string(), "after-failover".to_string())
        ]
    );
    let fired = fetched.records.iter().find(|r| r.origin == "b").unwrap();
    assert!(
        fired.record.as_ref().unwrap().timestamp_ms >= due,
        "fired at its time, not at adoption"
    );
}
