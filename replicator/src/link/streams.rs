//! Streams a peer opens on a link: each gets its own task at once (reading one stream's
//! first frame before accepting the next can deadlock QUIC flow control), whose first
//! frame says what it is: a `Subscribe` is served from here (`serve::stream`), a `Push`
//! (a sub-log the peer serves before being asked, `serve::push`) goes to the planner,
//! which adopts it as a pull or stops it.

use std::sync::Arc;
use std::time::Duration;

use crate::node::{LinkCtx, Node, PlanEvent, Pushed};
use crate::serve::stream::{send_error, serve_subscription};
use crate::wire::{Frame, LinkCode, Refusal, io};

/// How long a peer may take to send a stream's first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes the streams the peer opens on `connection` (the link's own, or a data-only
/// connection under it) until the link ends or the connection closes.
pub(crate) async fn accept_streams(
    node: Arc<Node>,
    link: Arc<LinkCtx>,
    connection: quinn::Connection,
) {
    loop {
        let accepted = tokio::select! {
            a = connection.accept_bi() => a,
            () = link.stop.cancelled() => return,
        };
        let Ok((send, recv)) = accepted else { return };
        node.tracker
            .spawn(opened(node.clone(), link.clone(), send, recv));
    }
}

async fn opened(
    node: Arc<Node>,
    link: Arc<LinkCtx>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    // The first frame of a stream is read under the control limit (64 KiB): a peer cannot
    // make this region buffer a full-size frame per stream before it is authorized.
    let first = io::read_frame_within(&mut recv, node.limits.control(), FIRST_FRAME_TIMEOUT).await;
    match first {
        Ok(Some(Frame::Subscribe(subscribe))) => {
            serve_subscription(node, link, subscribe, send).await;
        }
        Ok(Some(Frame::Push(push))) if node.settings.push => {
            let pushed = Pushed {
                peer: link.peer.clone(),
                link_id: link.id,
                push,
                stream: recv,
            };
            node.planner.send(PlanEvent::Pushed(Box::new(pushed))).await;
        }
        Ok(Some(other)) => {
            node.metrics.frame_refused("protocol");
            let message = format!("expected Subscribe, got {:?}", other.kind());
            tracing::warn!(event = "sub_log_stream_refused", peer = %link.peer, %message, "refused a sub-log stream");
            send_error(&mut send, Refusal::new(LinkCode::Protocol, message)).await;
        }
        Ok(None) => {}
        Err(e) => {
            let mut code = LinkCode::Malformed;
            if let io::StreamError::Frame(f) = &e {
                node.metrics.frame_refused(f.reason());
                if f.reason() == "oversized" {
                    code = LinkCode::Oversized;
                }
            }
            tracing::warn!(event = "subscribe_bad", peer = %link.peer, error = %e, "refused a sub-log stream: bad Subscribe");
            send_error(&mut send, Refusal::new(code, e.to_string())).await;
        }
    }
}
