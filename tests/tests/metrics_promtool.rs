//! `/metrics` of a replicating region passes `promtool check metrics` (Debian's
//! `prometheus` package; `.ci/run` installs it) and carries the families operators need.
//! (Refused peers and bad frames, `georouter_link_refused_total{reason}` and
//! `georouter_replication_refused_total{reason}`, appear with their first refusal; the
//! link bad-input tests check them.)

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use console_api::client::ConsoleClient;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_cover_produce_fetch_replication_and_links() {
    let deployment = Deployment::new(&["eu", "us"]);
    let nodes = deployment
        .start_mesh(&["eu", "us"], &[task("m", &["eu"], &["us"], "orders")])
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    produce(eu, "orders", 0, "eu", 50, 10).await;
    eventually("replication", || async {
        held_end(&us.node, "orders", 0, "eu") == 50
    })
    .await;
    assert_eq!(all_records(&us.client, "orders").await.len(), 50);
    let console = ConsoleClient::new(us.node.bound.console, None);
    // Lag and RPO gauges are written once per checkpoint interval; the first may predate
    // the records' arrival.
    eventually("lag and RPO gauges of a caught-up region", || async {
        let text = console.metrics().await.unwrap();
        text.contains("georouter_replication_lag_records{")
            && text.contains("georouter_rpo_records{origin=\"eu\"} 0")
            && text.contains("georouter_rpo_bytes{origin=\"eu\"} 0")
    })
    .await;
    let mut text = String::new();
    for node in [eu, us] {
        text = ConsoleClient::new(node.node.bound.console, None)
            .metrics()
            .await
            .unwrap();
        let mut promtool = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (Debian package `prometheus`; .ci/run installs it)");
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = promtool.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics failed:\n{}{}\n---\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let eu_text = ConsoleClient::new(eu.node.bound.console, None)
        .metrics()
        .await
        .unwrap();
    for family in [
        "georouter_produced_records_total",
        "georouter_produce_latency_seconds_bucket",
        "georouter_produce_requests_total{outcome=\"ok\"}",
    ] {
        assert!(eu_text.contains(family), "eu lacks {family}:\n{eu_text}");
    }
    for family in [
        "georouter_fetched_records_total",
        "georouter_fetch_read_latency_seconds_bucket",
        "georouter_replicated_records_total{task=\"m\"}",
        "georouter_replication_lag_records{",
        "georouter_replication_lag_seconds{",
        "georouter_link_up{peer=\"eu\"} 1",
        "georouter_link_rtt_seconds{peer=\"eu\"}",
        "georouter_link_received_bytes_total{peer=\"eu\"}",
        // Written with the lag gauges: us holds all of eu's 50 records.
        "georouter_rpo_records{origin=\"eu\"} 0",
        "georouter_rpo_bytes{origin=\"eu\"} 0",
        "georouter_rpo_seconds{origin=\"eu\"}",
        "georouter_group_cursors_sent_total",
    ] {
        assert!(text.contains(family), "us lacks {family}:\n{text}");
    }
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
