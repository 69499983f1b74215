//! TLS on the client surfaces: with `[tls]` the gRPC API and the console speak TLS only
//! (a client that trusts the deployment CA gets through, a plaintext one does not), using a
//! server certificate from `georouter certs --server-names`; a key file readable by others
//! is refused at start, and a non-loopback listener without TLS is a config error.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `dir/server.pem`, `dir/server.key` for localhost and 127.0.0.1, and the CA's PEM.
fn server_certificate(dir: &std::path::Path) -> Vec<u8> {
    replicator::certs::write_server(dir, &["localhost".into(), "127.0.0.1".into()], 1).unwrap();
    std::fs::read(dir.join("ca.pem")).unwrap()
}

/// `GET path` over TLS to `address`, trusting `ca_pem`: the response's status line.
async fn https_get(address: std::net::SocketAddr, ca_pem: &[u8], path: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    response.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_api_and_the_console_speak_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let ca = server_certificate(&certs);
    let mut config = support::node_config("eu", dir.path());
    config.tls.cert = Some(certs.join("server.pem"));
    config.tls.key = Some(certs.join("server.key"));
    let node = support::start_with(config, dir).await;
    let grpc = node.node.bound.grpc;

    let secure = client::Client::connect_tls(&format!("localhost:{}", grpc.port()), None, &ca)
        .await
        .unwrap();
    secure.create_topic("orders", 1, None).await.unwrap();
    let plaintext = client::Client::connect(&grpc.to_string()).await;
    let refused = match plaintext {
        Ok(client) => client.list_topics().await.err(),
        Err(e) => Some(e),
    };
    assert!(refused.is_some(), "a plaintext client gets nowhere");

    let console = node.node.bound.console;
    assert_eq!(https_get(console, &ca, "/healthz").await, "HTTP/1.1 200 OK");
    let plain = console_api::client::ConsoleClient::new(console, None)
        .healthy()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|ok| !ok),
        "no plaintext answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readable_key_and_plaintext_off_loopback_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    server_certificate(&certs);
    let key = certs.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut config = support::node_config("eu", dir.path());
    config.tls.cert = Some(certs.join("server.pem"));
    config.tls.key = Some(key);
    let error = match router::node::Node::start(config).await {
        Ok(_) => panic!("a node started with a key readable by others"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("chmod 600"), "{error}");

    let text = "[region]\nid = \"eu\"\ndata_dir = \"/tmp/x\"\n[listen]\ngrpc = \"0.0.0.0:7100\"\nreplication = \"127.0.0.1:0\"\nconsole = \"127.0.0.1:0\"\n";
    let file = dir.path().join("open.toml");
    std::fs::write(&file, text).unwrap();
    let error = format!("{:#}", router::config::NodeConfig::load(&file).unwrap_err());
    assert!(
        error.contains("grpc = 0.0.0.0:7100 is not a loopback address"),
        "{error}"
    );
    std::fs::write(&file, format!("{text}allow_plaintext = true\n")).unwrap();
    assert!(router::config::NodeConfig::load(&file).is_ok());
}
