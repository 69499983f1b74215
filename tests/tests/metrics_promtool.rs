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
        "georouter_delayed_messages_fired_total",
        "georouter_transaction_orphan_checks_total",
        "georouter_transaction_orphans_rolled_back_total",
        "georouter_partitions_fenced",
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
    // Every metric the alerting rules and the Grafana dashboard use is one a region exports.
    // Two families appear with their first event (a refusal), which the tests that cause
    // one check: forged_control.rs and rocketmq_sdk.rs.
    let on_first_event = [
        "georouter_control_refused_total",
        "georouter_auth_denied_total",
    ];
    for used in used_metrics()
        .into_iter()
        .filter(|u| !on_first_event.contains(&u.as_str()))
    {
        assert!(
            text.contains(&used) || eu_text.contains(&used),
            "deploy/ uses {used}, which no region exports"
        );
    }
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

fn deploy_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// The `georouter_*` metric names the alerting rules and the dashboard use.
fn used_metrics() -> std::collections::BTreeSet<String> {
    let mut used = std::collections::BTreeSet::new();
    for file in ["prometheus/georouter.rules.yml", "grafana/georouter.json"] {
        let text = std::fs::read_to_string(deploy_file(file)).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("georouter_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            // Histogram queries name their series (`_bucket`); the family is what matters.
            used.insert(name.trim_end_matches("_bucket").to_string());
        }
    }
    assert!(used.len() >= 8, "{used:?}");
    used
}

#[test]
fn the_alerting_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy_file("prometheus");
    for args in [
        &["check", "rules", "georouter.rules.yml"][..],
        &["test", "rules", "georouter.rules.test.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (Debian package `prometheus`; .ci/run installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
