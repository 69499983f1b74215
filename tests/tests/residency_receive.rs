//! Receivers check residency rules too: a region whose sender's configuration drifted (it
//! knows no rule) still refuses the records its own rules keep out of it. They are not
//! stored (their offsets are intended gaps, so identity holds) and are counted. The drift
//! itself is reported on the link by both regions.

mod support;

use support::*;
use topology::ResidencyRule;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_refuses_records_its_rules_keep_out_even_when_the_sender_sends_them() {
    let deployment = Deployment::new(&["eu", "us"]);
    let task = task("orders", &["eu"], &["us"], "orders");
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &[task], |config| {
            // Only us knows the rule: eu's configuration drifted.
            if config.region.id == "us" {
                config.residency.rules = vec![ResidencyRule {
                    name: "eu-pii".into(),
                    tags: vec!["eu-only".into()],
                    properties: Default::default(),
                    regions: vec!["eu".into()],
                }];
            }
        })
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    let mut secret = record("secret");
    secret.tag = Some("eu-only".into());
    eu.client
        .produce(
            "orders",
            vec![record("a"), secret, record("b")],
            client::Partitioning::Partition(0),
        )
        .await
        .unwrap();
    eventually("us to hold eu's sub-log to its end", || async {
        held_end(&us.node, "orders", 0, "eu") == 3
    })
    .await;
    let held: Vec<(u64, String)> = all_records(&us.client, "orders")
        .await
        .into_iter()
        .map(|(_, _, offset, body)| (offset, body))
        .collect();
    assert_eq!(held, [(0, "a".to_string()), (2, "b".to_string())]);
    let metrics = console_api::client::ConsoleClient::new(us.node.bound.console, None)
        .metrics()
        .await
        .unwrap();
    assert!(
        metrics.contains("residency_refused_records_total 1"),
        "{metrics}"
    );

    // Their configurations differ: both report drift on the link between them.
    for (node, peer) in [(eu, "us"), (us, "eu")] {
        let replicator = node.node.replicator().unwrap();
        let link = replicator
            .links()
            .into_iter()
            .find(|l| l.peer == peer)
            .unwrap();
        assert_eq!(link.config_drift, Some(true), "{peer}");
    }
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_with_the_same_configuration_report_no_drift() {
    let deployment = Deployment::new(&["eu", "us"]);
    let nodes = deployment.start_mesh(&["eu", "us"], &[]).await;
    let eu = nodes[0].node.replicator().unwrap();
    eventually("the link to be up", || async {
        eu.links().iter().any(|l| l.up)
    })
    .await;
    assert_eq!(eu.links()[0].config_drift, Some(false));
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
