//! The node's QUIC endpoint: its transport settings, the accept loop (links from
//! neighbours that dial this region) and one dial loop per neighbour this region dials,
//! reconnecting with jittered exponential backoff.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{IdleTimeout, VarInt};

use super::session::{self, Role};
use crate::identity::tls;
use crate::node::Node;
use crate::settings::LinkSettings;
use crate::wire::close;

/// Why a dial attempt failed (logged; the loop retries).
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("cannot start connecting: {0}")]
    Connect(#[source] quinn::ConnectError),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("{reason}: {source}")]
    Refused {
        reason: &'static str,
        #[source]
        source: quinn::ConnectionError,
    },
}

/// Concurrent sub-log streams per link and direction. quinn sets up per-stream state for
/// the whole allowance at connection start (1 << 20 made every link take about a second
/// to come up), so this stays moderate; sub-logs beyond it wait for a stream.
const MAX_SUB_LOGS_PER_LINK: u32 = 16_384;

/// BBR's congestion window before it has measured the path (see docs/replication.md, "Links").
const INITIAL_WINDOW: u64 = 1 << 20;

pub(crate) fn transport_config(settings: &LinkSettings) -> quinn::TransportConfig {
    let var = |v: u64| VarInt::from_u64(v).unwrap_or(VarInt::MAX);
    let mut bbr = quinn::congestion::BbrConfig::default();
    bbr.initial_window(INITIAL_WINDOW);
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(var(settings.stream_window_bytes))
        .receive_window(var(settings.connection_window_bytes))
        .send_window(settings.send_window_bytes)
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_SUB_LOGS_PER_LINK))
        .max_idle_timeout(IdleTimeout::try_from(settings.idle_timeout).ok())
        .keep_alive_interval(Some(settings.idle_timeout / 4))
        // BBR: Cubic's slow ramp and loss response collapse catch-up over long links
        // (docs/replication.md, "Links").
        .congestion_controller_factory(Arc::new(bbr));
    transport
}

pub(crate) async fn accept_loop(node: Arc<Node>, endpoint: quinn::Endpoint) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = node.stop.cancelled() => return,
        };
        let Some(incoming) = incoming else { return };
        let node2 = node.clone();
        node.tracker.spawn(async move {
            let remote = incoming.remote_address();
            let connection = match incoming.await {
                Ok(connection) => connection,
                Err(error) => {
                    let reason = tls::refusal_reason(&error);
                    tracing::warn!(event = "link_refused", %remote, reason, %error, "replication link refused");
                    node2.metrics.link_refused(reason);
                    return;
                }
            };
            let Some(peer) = tls::region_of(&connection, &node2.peers) else {
                tracing::warn!(event = "link_refused_unknown_peer", %remote, "replication link refused: the certificate names no configured peer region");
                node2.metrics.link_refused("unknown_region");
                connection.close(close::UNKNOWN_REGION, b"not a peer of this region");
                return;
            };
            session::run(node2, connection, peer, Role::Acceptor).await;
        });
    }
}

pub(crate) async fn dial_loop(
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
    peer: String,
    address: SocketAddr,
) {
    let settings = &node.settings;
    let mut backoff = settings.reconnect_min;
    loop {
        if node.stop.is_cancelled() {
            return;
        }
        let connected = match endpoint.connect(address, &peer) {
            Ok(connecting) => tokio::select! {
                c = tokio::time::timeout(settings.idle_timeout, connecting) => match c {
                    Err(_) => Err(DialError::TimedOut(settings.idle_timeout)),
                    Ok(Err(e)) => {
                        let reason = tls::refusal_reason(&e);
                        node.metrics.link_refused(reason);
                        Err(DialError::Refused { reason, source: e })
                    }
                    Ok(Ok(c)) => Ok(c),
                },
                () = node.stop.cancelled() => return,
            },
            Err(e) => Err(DialError::Connect(e)),
        };
        match connected {
            Ok(connection) => {
                let since = Instant::now();
                session::run(node.clone(), connection, peer.clone(), Role::Dialer).await;
                if since.elapsed() > Duration::from_secs(10) {
                    backoff = settings.reconnect_min;
                }
            }
            Err(error) => {
                tracing::warn!(event = "peer_unreachable", %peer, %address, %error, retry_in = ?backoff, "cannot reach peer");
            }
        }
        let jitter = backoff.mul_f64(rand::random::<f64>() * 0.2);
        tokio::select! {
            () = tokio::time::sleep(backoff + jitter) => {}
            () = node.stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(settings.reconnect_max);
    }
}
