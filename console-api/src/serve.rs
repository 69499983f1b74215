//! Serving the console, over plaintext or TLS: each accepted connection is handshaken with
//! rustls when TLS is on (within the request bound) and served by hyper's HTTP/1.1, whose
//! header read timeout bounds how long a client may take to send a request's head (the
//! body and the answer are bounded by `deadline`). Shutdown stops accepting, lets each
//! connection finish the request it serves, and waits for them.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    bound: Duration,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(event = "console_accept_failed", error = %e, "console: accepting a connection failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // The client's address (the audit log records it).
        let app = app
            .clone()
            .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
        let (acceptor, stop) = (acceptor.clone(), shutdown.clone());
        connections.spawn(async move {
            let Some(acceptor) = acceptor else {
                return connection(stream, app, bound, stop).await;
            };
            match tokio::time::timeout(bound, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => connection(tls, app, bound, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "console: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "console: TLS handshake timed out"),
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves one connection until it closes, or finishes its request on shutdown.
async fn connection<S>(stream: S, app: Router, bound: Duration, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(bound)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
