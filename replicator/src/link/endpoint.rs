//! The node's QUIC endpoint: its transport settings, the accept loop (links from
//! neighbours that dial this region) and one dial loop per neighbour this region dials,
//! reconnecting with jittered exponential backoff after a refusal, and at once after an
//! attempt that got no answer: each attempt is bounded by a few round trips of the link's
//! last known RTT (at least a heartbeat interval), so that after a partition heals the
//! next attempt comes within about a heartbeat and completes in a few round trips.

use super::congestion::FlooredFactory;
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
    #[error("the node takes only data-only connections: another node holds its region's links")]
    DataOnly,
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
        // (docs/replication.md, "Links"); floored, so that its probing never stalls a
        // link (`congestion.rs`).
        .congestion_controller_factory(Arc::new(FlooredFactory {
            inner: Arc::new(bbr),
            floor: INITIAL_WINDOW,
            // Mbit/s to bytes per second.
            floor_rate: settings.min_rate_mbps.saturating_mul(125_000),
        }));
    transport
}

/// What a node's endpoint takes.
#[derive(Clone, Debug)]
pub(crate) enum Accepts {
    /// Links, and data-only connections served under them: the planning node.
    Links,
    /// Data-only connections alone, served on their own while the watch says the tasks
    /// that judge them are fresh: a node pulling and serving its share of a region of
    /// several (the crew worker).
    DataAlone(tokio::sync::watch::Receiver<bool>),
}

/// The node endpoint's server and client configurations: for links and data-only
/// connections, or (`data_only`) for data-only connections alone.
pub(crate) fn configs(
    identity: &tls::Identity,
    settings: &LinkSettings,
    data_only: bool,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), tls::TlsError> {
    let transport = Arc::new(transport_config(settings));
    let (server, client) = if data_only {
        (
            identity.data_only_server_config()?,
            identity.data_only_client_config()?,
        )
    } else {
        (identity.server_config()?, identity.client_config()?)
    };
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(if data_only {
        Arc::new(data_transport_config(settings))
    } else {
        transport
    });
    Ok((server, client))
}

/// The transport of a data-only connection a node dials: a serving node that died is
/// noticed within three heartbeat intervals (as a link notices by its heartbeats), not the
/// idle timeout, so that the pulls it served move to another node soon. The idle timeout
/// in effect is the lower of both sides'; the dialler's keep-alives hold it open.
pub(crate) fn data_transport_config(settings: &LinkSettings) -> quinn::TransportConfig {
    let idle = settings.idle_timeout.min(settings.heartbeat_interval * 3);
    let mut transport = transport_config(settings);
    transport
        .max_idle_timeout(IdleTimeout::try_from(idle).ok())
        .keep_alive_interval(Some(idle / 4));
    transport
}

pub(crate) async fn accept_loop(node: Arc<Node>, endpoint: quinn::Endpoint, accepts: Accepts) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = node.stop.cancelled() => return,
        };
        let Some(incoming) = incoming else { return };
        let node2 = node.clone();
        let accepts = accepts.clone();
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
            match accepts {
                Accepts::Links => session::run(node2, connection, peer, Role::Acceptor).await,
                Accepts::DataAlone(fresh) => {
                    super::data::serve_alone(node2, connection, peer, fresh).await
                }
            }
        });
    }
}

/// Stops a node's tasks (its pulls, links and loops) and closes its endpoint, waiting up
/// to ten seconds for the tasks to end.
pub(crate) async fn stop_node(node: &Node, quic: &quinn::Endpoint, reason: &[u8]) {
    node.stop.cancel();
    quic.close(close::SHUTDOWN, reason);
    node.tracker.close();
    if tokio::time::timeout(Duration::from_secs(10), node.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            event = "replication_stop_slow",
            "replication tasks did not stop within 10 s"
        );
    }
}

/// How long one connect attempt may wait for the peer: eight round trips of the link's
/// last known RTT, at least a heartbeat interval, at most the idle timeout (also when the
/// RTT is not known yet).
pub(crate) fn attempt_timeout(settings: &LinkSettings, rtt: Option<Duration>) -> Duration {
    match rtt {
        Some(rtt) if !rtt.is_zero() => (rtt * 8)
            .max(settings.heartbeat_interval)
            .min(settings.idle_timeout),
        _ => settings.idle_timeout,
    }
}

/// Refuses every link on `socket` until `until` is cancelled, then closes the endpoint
/// (see `Replicator::refuse_links`).
pub(crate) async fn refuse_links(
    server: quinn::ServerConfig,
    socket: std::net::UdpSocket,
    until: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    socket.set_nonblocking(true)?;
    let quic = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    refuse_on(&quic, until).await;
    quic.close(close::SHUTDOWN, b"not replicating");
    quic.wait_idle().await;
    Ok(())
}

/// Refuses every connection `quic` is offered until `until` is cancelled: a node that
/// does not replicate for its region now, so that a neighbour dialling it is refused at
/// once and dials the region's next address.
async fn refuse_on(quic: &quinn::Endpoint, until: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            incoming = quic.accept() => match incoming {
                Some(incoming) => incoming.refuse(),
                None => break,
            },
            () = until.cancelled() => break,
        }
    }
}

/// Dials `peer` at `addresses` (a region of several nodes holds its links at one of them;
/// the others refuse at once, or settle on the data-only protocol in the handshake): the
/// same address again after a link ends, the next one after a
/// failed attempt, and a backoff only once every address failed in a row.
pub(crate) async fn dial_loop(
    node: Arc<Node>,
    endpoint: quinn::Endpoint,
    peer: String,
    addresses: Vec<SocketAddr>,
) {
    let settings = &node.settings;
    let mut backoff = settings.reconnect_min;
    let mut unanswered = 0u32;
    let mut turn = DialTurn::new(addresses.len());
    // The path's RTT as the last connection measured it.
    let mut last_rtt: Option<Duration> = None;
    loop {
        if node.stop.is_cancelled() {
            return;
        }
        let address = addresses[turn.at()];
        let bound = attempt_timeout(settings, last_rtt);
        let connected = match endpoint.connect(address, &peer) {
            Ok(connecting) => tokio::select! {
                c = tokio::time::timeout(bound, connecting) => match c {
                    Err(_) => Err(DialError::TimedOut(bound)),
                    Ok(Err(e)) => {
                        let reason = tls::refusal_reason(&e);
                        node.metrics.link_refused(reason);
                        Err(DialError::Refused { reason, source: e })
                    }
                    // A node of a region of several that pulls and serves only its
                    // share answers with the data-only protocol: not the region's links.
                    Ok(Ok(c)) if tls::negotiated_data_only(&c) => {
                        c.close(close::NORMAL, b"a link was asked for");
                        node.metrics.link_refused(tls::NOT_REPLICATING);
                        Err(DialError::DataOnly)
                    }
                    Ok(Ok(c)) => Ok(c),
                },
                () = node.stop.cancelled() => return,
            },
            Err(e) => Err(DialError::Connect(e)),
        };
        match connected {
            Ok(connection) => {
                unanswered = 0;
                turn.connected();
                let since = Instant::now();
                let path = connection.clone();
                session::run(node.clone(), connection, peer.clone(), Role::Dialer).await;
                last_rtt = Some(path.rtt());
                if since.elapsed() > Duration::from_secs(10) {
                    backoff = settings.reconnect_min;
                }
            }
            // Nothing came back within the bound: the attempt already waited, try again
            // at once (logged once per outage).
            Err(error @ DialError::TimedOut(_)) => {
                if unanswered == 0 {
                    tracing::warn!(event = "peer_unreachable", %peer, %address, %error, "cannot reach peer; dialling again until it answers");
                }
                unanswered += 1;
                turn.failed();
                continue;
            }
            Err(error) => {
                if turn.failed() {
                    tracing::debug!(%peer, %address, %error, "refused; dialling the peer's next address");
                    continue;
                }
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

/// Which of a peer's addresses to dial next: the one that answered last, else each in
/// turn.
#[derive(Debug)]
struct DialTurn {
    count: usize,
    at: usize,
    /// Attempts failed in a row since the last connection.
    failed: usize,
}

impl DialTurn {
    fn new(count: usize) -> Self {
        DialTurn {
            count: count.max(1),
            at: 0,
            failed: 0,
        }
    }

    fn at(&self) -> usize {
        self.at
    }

    fn connected(&mut self) {
        self.failed = 0;
    }

    /// Moves to the next address; whether some address has not failed in this turn yet
    /// (dial it at once) — `false` once every one failed in a row (back off first).
    fn failed(&mut self) -> bool {
        self.at = (self.at + 1) % self.count;
        self.failed += 1;
        if self.failed >= self.count {
            self.failed = 0;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_is_tried_in_turn_before_backing_off() {
        let mut turn = DialTurn::new(3);
        assert_eq!(turn.at(), 0);
        assert!(turn.failed(), "two addresses left to try");
        assert_eq!(turn.at(), 1);
        turn.connected();
        assert_eq!(turn.at(), 1, "the address that answered is dialled again");
        assert!(turn.failed());
        assert!(turn.failed());
        assert!(!turn.failed(), "all three failed in a row: back off");
        assert_eq!(turn.at(), 1, "and start again after the last that failed");
        let mut single = DialTurn::new(1);
        assert!(!single.failed(), "one address: back off after each failure");
        assert_eq!(single.at(), 0);
    }

    #[test]
    fn an_attempt_waits_a_few_round_trips_within_bounds() {
        let settings = LinkSettings::default();
        assert_eq!(attempt_timeout(&settings, None), settings.idle_timeout);
        assert_eq!(
            attempt_timeout(&settings, Some(Duration::from_millis(1))),
            settings.heartbeat_interval,
            "at least a heartbeat"
        );
        assert_eq!(
            attempt_timeout(&settings, Some(Duration::from_millis(200))),
            Duration::from_millis(1600)
        );
        assert_eq!(
            attempt_timeout(&settings, Some(Duration::from_secs(5))),
            settings.idle_timeout
        );
    }
}
