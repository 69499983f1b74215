//! `georouter status`: one screen of a region through its console API, as text and as
//! JSON, for a replicating pair and for a single region.

mod support;

use std::path::Path;
use std::process::Command;

use scenarios::cluster::{Cluster, ClusterPlan};

fn status(console: &str, token: Option<&str>, json: bool) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_georouter"));
    command.args(["status", "--console", console]);
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    if json {
        command.arg("--json");
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_links_routes_tasks_and_rpo_of_a_region() {
    let plan = ClusterPlan::direct(
        scenarios::deploy::line(&["eu", "us"]),
        vec![replicator::TaskSpec::new(
            "orders",
            &["eu"],
            &["us"],
            "orders",
        )],
    );
    let cluster = Cluster::start(&plan, &router::launch::InProcess)
        .await
        .unwrap();
    let console = cluster.region("us").bound.console.to_string();
    let token = cluster.token.clone();
    let (json, text) = tokio::task::spawn_blocking(move || {
        (
            status(&console, Some(&token), true),
            status(&console, Some(&token), false),
        )
    })
    .await
    .unwrap();
    let s: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(s["region"], "us");
    assert_eq!(s["tasks"][0]["name"], "orders", "{s}");
    let links = s["replication"]["links"].as_array().unwrap();
    assert!(links.iter().any(|l| l["peer"] == "eu"), "{s}");
    for part in [
        "region us",
        "links:",
        "eu",
        "routes:",
        "tasks:",
        "orders",
        "RPO",
        "stalled sub-logs: 0",
    ] {
        assert!(text.contains(part), "{part} missing:\n{text}");
    }
    cluster.stop().await.unwrap();
}

#[test]
fn status_of_a_single_region_says_replication_is_not_configured() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/region.toml");
    let node = support::spawn_with("solo", &dir.path().join("solo"), &example, &[]);
    let text = status(&node.console, None, false);
    assert!(text.contains("region solo"), "{text}");
    assert!(text.contains("replication: not configured"), "{text}");
}
