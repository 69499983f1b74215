//! Data-only connections: another node of a neighbour region pulls its share of that
//! region's sub-logs (`crate::crew`) over a connection of its own, authenticated by the
//! same region certificate and opened with a Hello that says `data-only`. It is served
//! under the link this region holds with that region: the same authorization, budgets and
//! end — the connection is closed when the link ends, and refused while there is none
//! (the region's planning node has not linked yet), so that the puller dials again.
//! Nothing but sub-log subscriptions travels on it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::session::{self, Role};
use super::streams::accept_streams;
use crate::node::{LinkCtx, Node};
use crate::wire::{DATA_CONNECTIONS_FEATURE, close};

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
    let ctx = link.ctx.clone();
    tracing::debug!(%peer, remote = %connection.remote_address(), "data-only connection up");
    tokio::select! {
        () = accept_streams(node.clone(), ctx, connection.clone()) => {}
        _ = connection.closed() => {}
    }
    drop(control);
    connection.close(close::NO_LINK, b"the link ended");
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

/// Opens a data-only connection to `peer`, trying `addresses` in turn (a region of several
/// nodes answers at its planning node; the others refuse at once), each within `bound`.
/// The returned context ends when the connection closes or `node` stops.
pub(crate) async fn dial(
    node: &Arc<Node>,
    endpoint: &quinn::Endpoint,
    peer: &str,
    addresses: &[SocketAddr],
    bound: Duration,
) -> Result<Arc<LinkCtx>, DialError> {
    let mut error = DialError::NoAddress;
    for &address in addresses {
        match dial_one(node, endpoint, peer, address, bound).await {
            Ok(ctx) => return Ok(ctx),
            Err(message) => error = DialError::Failed { address, message },
        }
    }
    Err(error)
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
