//! The web console in real headless Chromium (Debian's `chromium`; `.ci/run` installs
//! it), driven over the DevTools protocol by `tests/web/console_test.mjs` (Node 20, no npm
//! packages): create a task through the form (an invalid one first, whose error shows at
//! the field), see it listed running, pause it, see "paused"; then fail a DR task over to
//! this region with the row's button and see it primary at epoch 1; see the topology
//! picture (both regions, the link up) and the charts drawn with data; find a message by key
//! in the message browser, open its trace and see the timeline drawn with its produce in
//! eu and its replication to us, and see a bad time refused at its field. The screenshot
//! is kept at `target/test-artifacts/web-console.png`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use console_api::client::ConsoleClient;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_console_creates_lists_and_pauses_a_task_in_chromium() {
    let deployment = Deployment::new(&["eu", "us"]);
    let tasks = [
        task("web-orders", &["eu"], &["us"], "web-orders"),
        trace_task(),
    ];
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &tasks, |config| {
            config.console.admin_tokens = vec!["web-admin".into()];
            config.telemetry.trace = true;
            config.replication.history_interval_ms = 200;
        })
        .await;
    let console = nodes[0].node.bound.console;
    nodes[0]
        .client
        .create_topic("web-orders", 1, None)
        .await
        .unwrap();
    let records = (0..5)
        .map(|i| {
            let mut r = record(&format!("web order {i}"));
            r.key = Some(format!("web-key-{i}").into_bytes());
            r
        })
        .collect();
    nodes[0]
        .client
        .produce("web-orders", records, client::Partitioning::Partition(0))
        .await
        .unwrap();
    // The replication of eu-0-3 to us is traced in us, and that trace reaches eu.
    let eu_console = ConsoleClient::new(console, Some("web-admin"));
    eventually("eu to hold us's trace of eu-0-3", || async {
        let trace = eu_console.trace("web-orders", "eu-0-3").await.unwrap();
        trace["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "replicated" && e["region"] == "us")
    })
    .await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let artifacts = root.join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("web-console.png");
    let _ = std::fs::remove_file(&screenshot);
    let profile = tempfile::tempdir().unwrap();
    let script = root.join("web/console_test.mjs");
    let output = tokio::task::spawn_blocking({
        let screenshot = screenshot.clone();
        let profile = profile.path().to_path_buf();
        move || {
            Command::new("node")
                .arg("--experimental-websocket")
                .arg(script)
                .arg(format!("http://{console}/"))
                .arg("web-admin")
                .arg(&screenshot)
                .arg(&profile)
                .output()
                .expect("node (Node 20) runs the browser test")
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "browser test failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    // What the browser did, seen through the API.
    let api = ConsoleClient::new(console, Some("web-admin"));
    let task = api.task("web-task").await.unwrap();
    assert_eq!(task.state, replicator::TaskState::Paused);
    assert_eq!(task.spec.targets, ["us"]);
    // The failover the page made through its button.
    let dr = api
        .task("web-dr")
        .await
        .unwrap()
        .spec
        .dr
        .expect("a DR task");
    assert_eq!(dr.primary, "eu");
    assert_eq!(dr.epoch, 1);
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
