//! `georouter serve` as a process: environment overrides, the runtime file, graceful
//! shutdown on SIGTERM and SIGINT, and the data after a restart.

mod support;

use client::{Partitioning, pb};
use nix::sys::signal::Signal;

fn record(body: &str) -> pb::Record {
    pb::Record {
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_writes_runtime_file_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("eu");
    let mut node = support::spawn("eu-west", &data);
    let runtime: toml::Table =
        toml::from_str(&std::fs::read_to_string(data.join("runtime/effective.toml")).unwrap())
            .unwrap();
    assert_eq!(
        runtime["region"]["id"].as_str(),
        Some("eu-west"),
        "environment override applied"
    );
    for key in ["grpc", "replication", "console", "rocketmq"] {
        let address = runtime["listen"][key].as_str().unwrap();
        assert!(
            !address.ends_with(":0"),
            "{key} is the bound address, got {address}"
        );
    }
    let console = runtime["listen"]["console"].as_str().unwrap();
    let mut http = tokio::net::TcpStream::connect(console).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    http.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    http.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let client = client::Client::connect(&node.grpc).await.unwrap();
    client.create_topic("orders", 1, None).await.unwrap();
    client
        .produce(
            "orders",
            vec![record("one"), record("two")],
            Partitioning::ByKey,
        )
        .await
        .unwrap();

    node.signal(Signal::SIGTERM);
    let status = node.child.wait().unwrap();
    assert!(status.success(), "exit {status}:\n{}", node.logs());
    assert!(node.logs().contains("shut down cleanly"), "{}", node.logs());
    assert!(
        !data.join("runtime/effective.toml").exists(),
        "runtime file removed on shutdown"
    );
    drop(node);

    let node = support::spawn("eu-west", &data);
    let client = client::Client::connect(&node.grpc).await.unwrap();
    let fetched = client
        .fetch_all("orders", client::earliest(), vec![])
        .await
        .unwrap();
    assert_eq!(fetched.records.len(), 2);
    node.signal(Signal::SIGINT);
    let mut node = node;
    assert!(node.child.wait().unwrap().success(), "{}", node.logs());
}
