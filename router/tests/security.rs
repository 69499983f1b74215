//! Secure by default: a `georouter serve` given no principal and no console token makes an
//! admin credential at its first start (stored 0600 in its data dir, printed once, never in
//! the runtime file), refuses callers without credentials on the gRPC API and the console,
//! and serves the admin; a restart reuses the credential without printing it again.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use console_api::client::{ConsoleClient, Method};

fn stored_secret(data: &Path) -> String {
    let file = data.join("admin.credential");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the credential file is private");
    let stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(stored["access_key"], "admin");
    stored["secret"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_principals_makes_an_admin_credential_and_refuses_anonymous_callers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("eu");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/region.toml");
    let enforce = [("GEOROUTER__AUTH__MODE", "enforce".to_string())];
    let node = support::spawn_with("eu", &data, &example, &enforce);
    let secret = stored_secret(&data);
    assert_eq!(node.logs().matches(&secret).count(), 1, "printed once");
    let runtime = std::fs::read_to_string(data.join("runtime/effective.toml")).unwrap();
    assert!(!runtime.contains(&secret), "not in the runtime file");

    let anonymous = client::Client::connect(&node.grpc).await.unwrap();
    let refused = anonymous.list_topics().await.unwrap_err();
    assert_eq!(refused.code(), Some("unauthenticated"), "{refused}");
    let wrong = client::Client::connect_as(&node.grpc, Some("admin:not-the-secret"))
        .await
        .unwrap();
    assert_eq!(
        wrong.list_topics().await.unwrap_err().code(),
        Some("unauthenticated")
    );
    let credential = format!("admin:{secret}");
    let admin = client::Client::connect_as(&node.grpc, Some(&credential))
        .await
        .unwrap();
    admin.create_topic("orders", 1, None).await.unwrap();

    let console = ConsoleClient::new(&node.console, None);
    let reply = console
        .raw(Method::GET, "/api/v1/topics", &[], None)
        .await
        .unwrap();
    assert_eq!(reply.status, 401, "{}", reply.text());
    let topics = console
        .with_token(Some(&credential))
        .topics()
        .await
        .unwrap();
    assert_eq!(topics[0].name, "orders");
    drop(node);

    let again = support::spawn_with("eu", &data, &example, &enforce);
    assert_eq!(stored_secret(&data), secret, "the same credential");
    assert_eq!(
        again.logs().matches(&secret).count(),
        1,
        "not printed again"
    );
}
