//! A pass-through relay: a neighbour's subscription is served by subscribing, with the same
//! Subscribe, at this region's next hop towards the origin and forwarding what comes back,
//! frame by frame (the hop paths of `Subscribed` and of Batches frames name the regions
//! that stored the data, so this one is not added; the request's `via` names it instead). Nothing is written at rest: the
//! batches live in memory only between reading one frame and writing it on. Backpressure
//! is end to end: the next frame is read upstream only once the last one is written
//! downstream.

use std::sync::Arc;
use std::time::Duration;

use crate::wire::message as msg;

use super::filter::filter_for;
use super::send::send_batches;
use super::stream::send_error;
use crate::node::{LinkCtx, Node};
use crate::routing::HopPath;
use crate::tasks::Task;
use crate::wire::{BatchesFrame, Frame, LinkCode, Refusal, io};

const SUBSCRIBED_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `subscribe` from `link`'s peer by relaying it; ends with the stream.
pub(crate) async fn relay(
    node: Arc<Node>,
    link: Arc<LinkCtx>,
    task: Arc<Task>,
    subscribe: msg::Subscribe,
    mut down: quinn::SendStream,
) {
    let view = node.view();
    let upstream = view
        .upstream_for(&node.region, &subscribe.origin, &link.peer)
        .and_then(|peer| node.links.get(peer))
        .map(|l| l.ctx.clone());
    let result = match upstream {
        Some(upstream) => forward(&node, &link, &upstream, &task, subscribe, &mut down).await,
        None => Err(Refusal::new(
            LinkCode::NoRoute,
            format!(
                "{} relays without storing and has no link up towards {}",
                node.region, subscribe.origin
            ),
        )),
    };
    if let Err(refusal) = result {
        send_error(&mut down, refusal).await;
    }
}

async fn forward(
    node: &Node,
    link: &LinkCtx,
    upstream: &LinkCtx,
    task: &Arc<Task>,
    mut subscribe: msg::Subscribe,
    down: &mut quinn::SendStream,
) -> Result<(), Refusal> {
    let me = &node.region;
    let origin = subscribe.origin.clone();
    // A change of routes that moves this relay's way towards the origin ends the stream,
    // so the downstream re-subscribes (from its held end) along the new route.
    let mut routes = node.routes.subscribe();
    let mut tasks = node.tasks.subscribe();
    let moved = |node: &Node| {
        node.view().upstream_for(&node.region, &origin, &link.peer) != Some(upstream.peer.as_str())
    };
    subscribe.via.push(me.clone());
    let lost = |e: &dyn std::fmt::Display| {
        Refusal::new(
            LinkCode::NoRoute,
            format!("relaying through {}: {e}", upstream.peer),
        )
    };
    let opened = tokio::select! {
        o = upstream.connection.open_bi() => o,
        _ = down.stopped() => return Ok(()),
    };
    let (mut up_send, mut up_recv) = opened.map_err(|e| lost(&e))?;
    io::write_frame(&mut up_send, &Frame::Subscribe(subscribe))
        .await
        .map_err(|e| lost(&e))?;
    let answer = tokio::select! {
        a = io::read_frame_within(&mut up_recv, node.limits.control(), SUBSCRIBED_TIMEOUT) => a,
        _ = down.stopped() => return Ok(()),
    };
    match answer {
        // The upstream's answer, passed on unchanged: its path names the regions that
        // stored the data, like a Batches frame's, so a path of the origin alone tells
        // the puller that the origin itself announced the start (a retention gap).
        Ok(Some(Frame::Subscribed(subscribed))) => {
            if io::write_frame(down, &Frame::Subscribed(subscribed))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        // The upstream's refusal, passed on as it is.
        Ok(Some(Frame::Error(e))) => {
            let _ = io::write_frame(down, &Frame::Error(e)).await;
            let _ = down.finish();
            return Ok(());
        }
        Ok(Some(other)) => {
            return Err(Refusal::new(
                LinkCode::Protocol,
                format!("{} answered {:?} to Subscribe", upstream.peer, other.kind()),
            ));
        }
        Ok(None) => return Err(lost(&"stream ended before Subscribed")),
        Err(e) => return Err(lost(&e)),
    }
    loop {
        let frame = tokio::select! {
            f = io::read_frame_held(&mut up_recv, upstream.limits, &upstream.receive_budget) => f,
            _ = down.stopped() => return Ok(()),
            () = link.stop.cancelled() => return Ok(()),
            () = upstream.stop.cancelled() => return Err(lost(&"the link closed")),
            _ = routes.changed() => {
                if moved(node) {
                    return Err(lost(&"the route towards the origin moved"));
                }
                continue;
            }
            _ = tasks.changed() => {
                if !node.tasks.is_live(task) {
                    return Err(Refusal::new(LinkCode::NotAllowed, format!("task \"{}\" changed", task.name())));
                }
                continue;
            }
        };
        // The frame holds its share of the upstream link's receive budget until it is
        // written downstream.
        let (frame, _held) = match frame {
            Ok(Some((Frame::Batches(frame), held))) => (frame, held),
            Ok(Some((Frame::Error(e), _))) => {
                let _ = io::write_frame(down, &Frame::Error(e)).await;
                let _ = down.finish();
                return Ok(());
            }
            Ok(None) => {
                let _ = down.finish();
                return Ok(());
            }
            Ok(Some((other, _))) => {
                return Err(Refusal::new(
                    LinkCode::Protocol,
                    format!(
                        "{} sent {:?} on a sub-log stream",
                        upstream.peer,
                        other.kind()
                    ),
                ));
            }
            Err(e) => {
                if let io::StreamError::Frame(f) = &e {
                    node.metrics.frame_refused(f.reason());
                }
                return Err(Refusal::new(
                    LinkCode::Malformed,
                    format!("from {}: {e}", upstream.peer),
                ));
            }
        };
        // The hop path names the regions that stored the data; this one stores nothing, so
        // it is not added (its requests carry it in `via` instead).
        let path = frame.header.hop_path;
        if let Err(e) = HopPath(&path).admits(&link.peer, node.settings.hop_limit) {
            node.metrics.frame_refused(e.reason());
            return Err(Refusal::new(LinkCode::Loop, format!("relayed data {e}")));
        }
        let batches = filter_for(node, task, &link.peer, frame.batches);
        let out = BatchesFrame::new(batches, path);
        let bytes = out.bytes() as u64;
        let written = tokio::select! {
            w = send_batches(node, link, down, out) => w,
            () = link.stop.cancelled() => return Ok(()),
        };
        if written.is_err() {
            return Ok(());
        }
        node.metrics.relayed_bytes.inc_by(bytes);
    }
}
