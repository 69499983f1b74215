//! The console over TLS: each accepted connection is handshaken with rustls (within 10 s)
//! and served by hyper's HTTP/1.1, the same router as over plaintext. Shutdown stops
//! accepting, lets each connection finish the request it serves, and waits for them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client has for its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "console: accepting a connection failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let (acceptor, app, stop) = (acceptor.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "console: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // The client's address, as over plaintext (the audit log records it).
            let app = app.layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            let service = TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}
