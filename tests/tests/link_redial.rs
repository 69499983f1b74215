//! A link silent for a few heartbeats is closed and dialled afresh: after a partition the
//! regions replicate again over a new connection (the old one's retransmission timers
//! backed off during the cut), counted in `georouter_link_closed_silent_total`.

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_link_is_closed_and_dialled_again_after_the_partition() {
    let cluster =
        support::two_regions(vec![support::task("orders", &["a"], &["b"], "orders")], 200).await;
    let (a, b) = (
        cluster.region("a").client.clone(),
        cluster.region("b").client.clone(),
    );
    a.create_topic("orders", 1, None).await.unwrap();
    let one = |body: &str| vec![support::record(body)];
    let p0 = client::Partitioning::Partition(0);
    a.produce("orders", one("before"), p0).await.unwrap();
    let held = |n: usize| {
        let b = b.clone();
        async move {
            b.fetch_all("orders", client::earliest(), vec![])
                .await
                .is_ok_and(|f| f.records.len() == n)
        }
    };
    support::eventually("b to hold the first record", || held(1)).await;

    let link = cluster.link("a", "b");
    link.cut();
    let silent = |region: &str| {
        let console = cluster.region(region).console(&cluster.token);
        async move {
            console.metrics().await.is_ok_and(|m| {
                m.lines().any(|l| {
                    l.starts_with("georouter_link_closed_silent_total ") && !l.ends_with(" 0")
                })
            })
        }
    };
    support::eventually("both sides to close the silent link", || async {
        silent("a").await && silent("b").await
    })
    .await;
    a.produce("orders", one("during"), p0).await.unwrap();
    link.heal();
    support::eventually("b to receive what a wrote during the cut", || held(2)).await;
}
