//! Data-only connections: another node of a neighbour region pulls its share of that
//! region's sub-logs (`crate::crew`) over a connection of its own, authenticated by the
//! same region certificate, with ALPN `georouter-data/1` and a Hello that says
//! `data-only`. Nothing but sub-log subscriptions travels on it.
//!
//! Either node of this region may serve it. The planning node (the one holding the links)
//! serves it under the link it holds with that region: the same authorization, budgets and
//! end — closed when the link ends, and refused while there is none (it has not linked
//! yet), so that the puller dials again. A node that pulls its own share
//! (the crew worker) serves it alone, for as long as the connection lasts, judging each
//! subscription by the region's tasks as it last read them: what it serves is this
//! region's own sub-logs to the regions the tasks carry them to (the pulls a planning node
//! gives away are those, see `pull::planner`), so serving is divided among the region's
//! nodes as pulling is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::session::{self, Role};
use super::streams::accept_streams;
use crate::node::{LinkCtx, Node};
use crate::wire::{DATA_CONNECTIONS_FEATURE, DATA_ONLY_FEATURE, close};

/// Serves a data-only connection from `peer` (its Hello exchanged on `control`, which
/// stays open while it is served) for as long as this region's link with `peer` lasts.
pub(crate) async fn serve(
    node: Arc<Node>,
    connection: quinn::Connection,
    peer: String,
    control: (quinn::SendStream, quinn::RecvStream),
) {
    let Some(link) = node.links.get(&peer) else {
        node.metrics.link_refused("no_link");
        tracing::info!(%peer, remote = %connection.remote_address(), "a data-only connection from a region with no link here now; closed (it dials again)");
        connection.close(close::NO_LINK, b"no link with this region here now");
        return;
    };
    let ended = std::future::pending();
    serve_on(
        node,
        link.ctx.clone(),
        connection,
        control,
        ended,
        b"the link ended",
    )
    .await;
}

/// Serves a data-only connection `peer` opened to this node, which pulls and serves its
/// share of the region's replication without links (the crew worker), while `fresh` says
/// the tasks that judge it were read lately.
pub(crate) async fn serve_alone(
    node: Arc<Node>,
    connection: quinn::Connection,
    peer: String,
    mut fresh: watch::Receiver<bool>,
) {
    if !*fresh.borrow_and_update() {
        connection.close(close::NO_LINK, STALE);
        return;
    }
    let Some((send, recv, hello)) =
        session::open(&node, &connection, &peer, Role::Acceptor, false).await
    else {
        return;
    };
    if !hello.features.iter().any(|f| f == DATA_ONLY_FEATURE) {
        node.metrics.link_refused("bad_hello");
        connection.close(
            close::BAD_HELLO,
            b"this node takes data-only connections only",
        );
        return;
    }
    let ctx = session::link_ctx(
        &node,
        node.next_id(),
        &connection,
        &peer,
        &hello,
        node.stop.child_token(),
        true,
    );
    let stop = ctx.stop.clone();
    let stale = async move {
        if fresh.wait_for(|fresh| !*fresh).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    serve_on(node, ctx, connection, (send, recv), stale, STALE).await;
    stop.cancel();
}

/// Why a node serving alone closes a data-only connection: it cannot read its region's
/// tasks now (or it stops).
const STALE: &[u8] = b"this node cannot judge subscriptions now";

/// Takes the streams `connection` opens under `ctx` until either ends or `until` does;
/// then stops what it serves on it and closes it with `reason`.
async fn serve_on(
    node: Arc<Node>,
    ctx: Arc<LinkCtx>,
    connection: quinn::Connection,
    control: (quinn::SendStream, quinn::RecvStream),
    until: impl std::future::Future<Output = ()>,
    reason: &[u8],
) {
    tracing::debug!(peer = %ctx.peer, remote = %connection.remote_address(), "data-only connection up");
    tokio::select! {
        () = accept_streams(node, ctx, connection.clone()) => {}
        _ = connection.closed() => {}
        () = until => {}
    }
    drop(control);
    connection.close(close::NO_LINK, reason);
}

/// Why a data-only connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("no address to dial")]
    NoAddress,
    #[error("{address}: {message}")]
    Failed {
        address: SocketAddr,
        message: String,
    },
}

/// How long a dial waits for an address's answer before it tries the next one as well.
const STAGGER: Duration = Duration::from_millis(300);

/// Opens a data-only connection to `peer` at the first of `addresses` that answers, each
/// attempt within `bound`: the next address is tried once the one before failed or has
/// not answered within [`STAGGER`] (a node that is gone, or not serving yet, does not hold
/// the dial up for its whole bound), and the first connection to open is kept.
/// The returned context ends when the connection closes or `node` stops.
pub(crate) async fn dial(
    node: &Arc<Node>,
    endpoint: &quinn::Endpoint,
    peer: &str,
    addresses: &[SocketAddr],
    bound: Duration,
) -> Result<Arc<LinkCtx>, DialError> {
    let mut attempts = tokio::task::JoinSet::new();
    let mut waiting = addresses.iter().copied();
    let mut error = DialError::NoAddress;
    let mut start_next = true;
    loop {
        if start_next && let Some(address) = waiting.next() {
            let (node, endpoint, peer) = (node.clone(), endpoint.clone(), peer.to_string());
            attempts.spawn(async move {
                let opened = dial_one(&node, &endpoint, &peer, address, bound).await;
                (address, opened)
            });
        }
        let more = waiting.len() > 0;
        let joined = tokio::select! {
            joined = attempts.join_next() => joined,
            () = tokio::time::sleep(STAGGER), if more => {
                start_next = true;
                continue;
            }
        };
        start_next = true;
        match joined {
            Some(Ok((_, Ok(ctx)))) => {
                // Any other attempt that opens as well is closed.
                node.tracker.spawn(async move {
                    while let Some(joined) = attempts.join_next().await {
                        if let Ok((_, Ok(other))) = joined {
                            other.stop.cancel();
                        }
                    }
                });
                return Ok(ctx);
            }
            Some(Ok((address, Err(message)))) => error = DialError::Failed { address, message },
            Some(Err(_)) => {}
            None if !more => return Err(error),
            None => {}
        }
    }
}

async fn dial_one(
    node: &Arc<Node>,
    endpoint: &quinn::Endpoint,
    peer: &str,
    address: SocketAddr,
    bound: Duration,
) -> Result<Arc<LinkCtx>, String> {
    let connecting = endpoint.connect(address, peer).map_err(|e| e.to_string())?;
    let opened = tokio::time::timeout(bound, async {
        let connection = connecting.await.map_err(|e| e.to_string())?;
        let (send, recv, hello) = session::handshake(node, &connection, peer, Role::Dialer, true)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((connection, send, recv, hello))
    })
    .await
    .map_err(|_| format!("no answer within {bound:?}"))?;
    let (connection, send, recv, hello) = opened?;
    if !hello.features.iter().any(|f| f == DATA_CONNECTIONS_FEATURE) {
        connection.close(close::NORMAL, b"data-only connections not served");
        return Err("the peer does not serve data-only connections".into());
    }
    let ctx = session::link_ctx(
        node,
        node.next_id(),
        &connection,
        peer,
        &hello,
        node.stop.child_token(),
        false,
    );
    let watched = ctx.clone();
    node.tracker.spawn(async move {
        // The control stream stays open while the connection is used.
        let _control = (send, recv);
        tokio::select! {
            _ = connection.closed() => {}
            () = watched.stop.cancelled() => {}
        }
        watched.stop.cancel();
        connection.close(close::NORMAL, b"data-only connection ended");
    });
    Ok(ctx)
}
