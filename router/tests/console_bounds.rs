//! The console bounds how long a request may take (`[console] request_timeout_ms`, here
//! 1 s), so a slow or stalled client cannot hold a connection: a head that does not
//! finish gets the connection closed, a body that does not finish gets 408
//! `REQUEST_TIMEOUT`, and callers that are not slow are served meanwhile.

mod support;

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above the 1 s bound and far below the 30 s default: a connection still open
/// after this was not bounded.
const GIVE_UP: Duration = Duration::from_secs(15);

/// Everything the server sends on `stream` until it closes it.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(GIVE_UP, stream.read_to_end(&mut answer))
        .await
        .expect("the console to close the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_are_cut_off_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("eu");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/region.toml");
    let bound = [("GEOROUTER__CONSOLE__REQUEST_TIMEOUT_MS", "1000".to_string())];
    let node = support::spawn_with("eu", &data, &example, &bound);

    // A head that never ends.
    let mut head = TcpStream::connect(&node.console).await.unwrap();
    head.write_all(b"GET /api/v1/topics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // A body that never arrives whole.
    let mut body = TcpStream::connect(&node.console).await.unwrap();
    body.write_all(
        b"POST /api/v1/groups HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
    )
    .await
    .unwrap();

    // Meanwhile a caller that is not slow is answered.
    let console = console_api::client::ConsoleClient::new(&node.console, None);
    assert!(console.topics().await.unwrap().is_empty());

    let answer = until_closed(&mut body).await;
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("REQUEST_TIMEOUT"),
        "{answer}"
    );
    until_closed(&mut head).await;
    // A new client: the first one's idle connection is cut off by the same timeout, and a
    // pooled connection closed while the request is sent fails with no answer.
    let console = console_api::client::ConsoleClient::new(&node.console, None);
    assert!(
        console.groups().await.unwrap().is_empty(),
        "nothing was made"
    );
}
