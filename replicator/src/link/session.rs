//! One link to a peer region, after the TLS handshake: the Hello exchange on the control
//! stream, then advertisements and heartbeats both ways, link states, task records and
//! group cursors taken in, the peer's subscriptions served (streams it opens) and this
//! region's pulls (streams the planner opens on the link).
//!
//! Tasks per link: the session itself (control reader), the control writer, the stream
//! acceptor (one task per accepted stream), and the cursor inbox's worker. The control
//! queue is bounded ([`CONTROL_QUEUE`]); see `LinkTable::flood` for what a full one drops.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use crate::wire::message as msg;
use tokio::sync::mpsc;
use topology::{HealthSettings, LinkHealth};

use super::congestion::{path_rate, size_send_window};
use super::streams::accept_streams;
use crate::budget::ByteBudget;
use crate::compression::LinkCompression;
use crate::identity::tls;
use crate::node::{LinkCtx, LinkHandle, Node, PlanEvent, mono_ms};
use crate::scan_pace;
use crate::serve::{advertise, push};
use crate::wire::{
    Codec, DATA_CONNECTIONS_FEATURE, DATA_ONLY_FEATURE, Frame, FrameError, FrameKind, LinkCode,
    PROTOCOL_VERSION, PUSH_FEATURE, StreamError, close, io,
};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An unchanged advertisement is still re-sent this often, so a peer re-evaluates what to
/// pull (a sub-log released by another link is picked up within this time).
const ADVERTISE_REFRESH: Duration = Duration::from_secs(1);
/// Control frames queued for a link's control stream. Heartbeat answers and flooded link
/// states are dropped when it is full (both are re-sent every heartbeat interval).
const CONTROL_QUEUE: usize = 256;

/// The control stream's send priority; sub-log streams keep quinn's default, 0.
const CONTROL_PRIORITY: i32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Acceptor,
}

/// Why the Hello exchange failed (the connection is closed with `BAD_HELLO`).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("no control stream within {0:?}")]
    NoControlStream(Duration),
    #[error("control stream: {0}")]
    Open(#[from] quinn::ConnectionError),
    #[error("writing Hello: {0}")]
    Write(#[source] StreamError),
    #[error("reading Hello: {0}")]
    Read(#[source] StreamError),
    #[error("peer speaks protocol version {0}, this region {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("Hello claims region \"{claimed}\" but the certificate is for \"{certified}\"")]
    Region { claimed: String, certified: String },
    #[error("expected Hello, got {0:?}")]
    Unexpected(FrameKind),
    #[error("control stream ended before Hello")]
    Ended,
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("peer closed the control stream")]
    PeerClosed,
    #[error("bad control frame: {0}")]
    BadFrame(#[source] FrameError),
    #[error("control stream: {0}")]
    Control(#[source] StreamError),
    #[error("unexpected {0:?} frame on the control stream")]
    Unexpected(FrameKind),
    #[error("connection closed: {0}")]
    Connection(#[source] quinn::ConnectionError),
    #[error("shutting down")]
    ShuttingDown,
}

/// Runs the link until it drops or the node stops.
pub(crate) async fn run(node: Arc<Node>, connection: quinn::Connection, peer: String, role: Role) {
    let remote = connection.remote_address();
    let Some((send, mut recv, peer_hello)) = open(&node, &connection, &peer, role, false).await
    else {
        return;
    };
    let data_only = peer_hello.features.iter().any(|f| f == DATA_ONLY_FEATURE);
    let data_protocol = tls::negotiated_data_only(&connection);
    if data_only || data_protocol {
        // Another node of the peer region pulling its share (`crate::crew`): served under
        // the link, never a link itself.
        if role == Role::Acceptor && data_only && data_protocol {
            super::data::serve(node, connection, peer, (send, recv)).await;
        } else {
            connection.close(
                close::BAD_HELLO,
                b"a data-only connection is dialled, on its own protocol, with a data-only Hello",
            );
        }
        return;
    }
    // Control frames (heartbeats and their answers above all) go before batches: queued
    // behind a link's send window of batches, heartbeats went unanswered for seconds in a
    // catch-up of 2 000 sub-logs, the link was taken for down, and its pulls restarted.
    let _ = send.set_priority(CONTROL_PRIORITY);
    let dialer = match role {
        Role::Dialer => node.region.clone(),
        Role::Acceptor => peer.clone(),
    };
    let stop = node.stop.child_token();
    let id = node.next_id();
    let ctx = link_ctx(&node, id, &connection, &peer, &peer_hello, stop, false);
    let (control_tx, control_rx) = mpsc::channel::<Frame>(CONTROL_QUEUE);
    let handle = Arc::new(LinkHandle {
        ctx: ctx.clone(),
        health: std::sync::Mutex::new(LinkHealth::new(
            HealthSettings::new(node.settings.heartbeat_interval),
            mono_ms(),
        )),
        dialer: dialer.clone(),
        control: control_tx.clone(),
        counted_tx: AtomicU64::new(0),
        counted_rx: AtomicU64::new(0),
    });
    // When both sides dial, the link dialled by the lower region id stays: otherwise each
    // new connection would replace the other's, forever. A newer connection from the same
    // dialer (a restart) replaces the old one.
    let kept = node.links.modify(|links| {
        if let Some(existing) = links.get(&peer)
            && existing.dialer < dialer
            && existing.ctx.connection.close_reason().is_none()
        {
            return (false, Some(existing.dialer.clone()));
        }
        if let Some(previous) = links.insert(peer.clone(), handle.clone()) {
            previous
                .ctx
                .connection
                .close(close::REPLACED, b"replaced by a newer link");
        }
        (true, None)
    });
    if let Some(kept) = kept {
        tracing::info!(%peer, %remote, "a link dialled by {kept} is up; closing this one");
        connection.close(
            close::REPLACED,
            b"a link dialled by the lower region id is up",
        );
        return;
    }
    tracing::info!(%peer, %remote, ?role, "link up");
    node.sync_link_states_to(&control_tx);
    let _ = control_tx.try_send(node.full_catalog_frame());
    crate::groups::send_all(&node, Some(&peer));
    node.links_changed();

    node.tracker
        .spawn(control_writer(node.clone(), ctx.clone(), send, control_rx));
    node.tracker.spawn(accept_streams(
        node.clone(),
        ctx.clone(),
        connection.clone(),
    ));
    if node.settings.push && peer_hello.features.iter().any(|f| f == PUSH_FEATURE) {
        node.tracker
            .spawn(push::push_new_sub_logs(node.clone(), ctx.clone()));
    }
    node.tracker.spawn(size_send_window(
        connection.clone(),
        node.settings.send_window_bytes,
        ctx.stop.clone(),
    ));

    let reason = tokio::select! {
        r = control_reader(&node, &handle, &mut recv) => r,
        e = connection.closed() => Ended::Connection(e),
        () = node.stop.cancelled() => Ended::ShuttingDown,
    };
    ctx.stop.cancel();
    let removed = node.links.modify(|links| {
        let ours = links.get(&peer).is_some_and(|l| l.id() == id);
        if ours {
            links.remove(&peer);
        }
        (ours, ours)
    });
    connection.close(close::NORMAL, b"link ended");
    tracing::info!(%peer, %reason, "link down");
    if removed {
        node.links_changed();
    }
    node.planner
        .send(PlanEvent::LinkEnded { peer, link_id: id })
        .await;
}

/// What pulls and serving streams need of a connection to `peer`, whose Hello was
/// `peer_hello`; it ends with `stop`. `alone`: see [`LinkCtx::alone`].
pub(crate) fn link_ctx(
    node: &Arc<Node>,
    id: u64,
    connection: &quinn::Connection,
    peer: &str,
    peer_hello: &msg::Hello,
    stop: tokio_util::sync::CancellationToken,
    alone: bool,
) -> Arc<LinkCtx> {
    Arc::new(LinkCtx {
        id,
        peer: peer.to_string(),
        connection: connection.clone(),
        cursors: crate::groups::inbox(node, peer, stop.clone()),
        limits: node.limits.for_link(peer_hello.max_frame_bytes),
        compression: LinkCompression::new(node.settings.compression, &peer_hello.features, {
            let connection = connection.clone();
            Box::new(move || path_rate(&connection))
        }),
        send_budget: ByteBudget::new(node.settings.link_buffer_bytes),
        receive_budget: ByteBudget::new(node.settings.link_buffer_bytes),
        serves_data_connections: peer_hello
            .features
            .iter()
            .any(|f| f == DATA_CONNECTIONS_FEATURE),
        stop,
        alone,
    })
}

/// [`handshake`], logged, counted and closed when it fails.
pub(crate) async fn open(
    node: &Node,
    connection: &quinn::Connection,
    peer: &str,
    role: Role,
    data_only: bool,
) -> Option<(quinn::SendStream, quinn::RecvStream, msg::Hello)> {
    match handshake(node, connection, peer, role, data_only).await {
        Ok(opened) => Some(opened),
        // The dialler closed before any Hello: a link dialled at a node that takes only
        // data-only connections learns so from the handshake and leaves at once.
        Err(HandshakeError::Open(quinn::ConnectionError::ApplicationClosed(close))) => {
            tracing::debug!(%peer, remote = %connection.remote_address(), reason = ?close.reason, "the peer closed the connection before its Hello");
            None
        }
        Err(error) => {
            let remote = connection.remote_address();
            tracing::warn!(event = "link_handshake_failed", %peer, %remote, %error, "link handshake failed");
            node.metrics.link_refused("bad_hello");
            connection.close(close::BAD_HELLO, error.to_string().as_bytes());
            None
        }
    }
}

/// The Hello exchange on a new connection's control stream; `data_only` says this is a
/// data-only connection (this node pulls its share of the region's sub-logs over it).
pub(crate) async fn handshake(
    node: &Node,
    connection: &quinn::Connection,
    peer: &str,
    role: Role,
    data_only: bool,
) -> Result<(quinn::SendStream, quinn::RecvStream, msg::Hello), HandshakeError> {
    let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        match role {
            Role::Dialer => connection.open_bi().await,
            Role::Acceptor => connection.accept_bi().await,
        }
    })
    .await
    .map_err(|_| HandshakeError::NoControlStream(HANDSHAKE_TIMEOUT))?;
    let (mut send, mut recv) = opened?;
    let hello = Frame::Hello(msg::Hello {
        protocol_version: PROTOCOL_VERSION,
        region: node.region.clone(),
        epoch: node.epoch,
        // Every codec is unpacked here, whatever this region sends; pushes are taken when
        // this region pushes.
        features: Codec::ALL
            .iter()
            .map(|c| c.feature())
            .chain((node.settings.push && !data_only).then(|| PUSH_FEATURE.to_string()))
            .chain(Some(
                if data_only {
                    DATA_ONLY_FEATURE
                } else {
                    DATA_CONNECTIONS_FEATURE
                }
                .to_string(),
            ))
            .collect(),
        max_frame_bytes: node.limits.max_frame as u64,
        config_digest: node.config_digest().to_string(),
    });
    io::write_frame(&mut send, &hello)
        .await
        .map_err(HandshakeError::Write)?;
    match io::read_frame_within(&mut recv, node.limits, HANDSHAKE_TIMEOUT).await {
        Ok(Some(Frame::Hello(h))) if h.protocol_version != PROTOCOL_VERSION => {
            Err(HandshakeError::Version(h.protocol_version))
        }
        Ok(Some(Frame::Hello(h))) if h.region != peer => Err(HandshakeError::Region {
            claimed: h.region,
            certified: peer.to_string(),
        }),
        Ok(Some(Frame::Hello(h))) => {
            node.peer_config(peer, h.config_digest.clone());
            Ok((send, recv, h))
        }
        Ok(Some(other)) => Err(HandshakeError::Unexpected(other.kind())),
        Ok(None) => Err(HandshakeError::Ended),
        Err(e) => Err(HandshakeError::Read(e)),
    }
}

async fn control_writer(
    node: Arc<Node>,
    link: Arc<LinkCtx>,
    mut send: quinn::SendStream,
    mut outgoing: mpsc::Receiver<Frame>,
) {
    let mut advertise = tokio::time::interval(node.settings.advertise_interval);
    let mut heartbeat = tokio::time::interval(node.settings.heartbeat_interval);
    // A new topic or sub-log is advertised at once, not at the next tick: as soon as the
    // last advertisement's cost has been rested (`scan_pace`).
    let mut sub_logs = node.broker.sub_logs_changed();
    let mut changed = false;
    let mut next_scan = Instant::now();
    let mut last: Option<(msg::Advertise, Instant)> = None;
    loop {
        let frame = tokio::select! {
            frame = outgoing.recv() => match frame { Some(f) => f, None => return },
            Ok(()) = sub_logs.changed(), if !changed => {
                changed = true;
                continue;
            }
            () = advertise_due(&mut advertise, changed.then_some(next_scan)) => {
                changed = false;
                let started = Instant::now();
                let current = advertise::advertisement(&node, &link.peer);
                next_scan = scan_pace::next_scan_at(started, Instant::now());
                let fresh = last.as_ref().is_some_and(|(a, at)| *a == current && at.elapsed() < ADVERTISE_REFRESH);
                if fresh {
                    continue;
                }
                last = Some((current.clone(), Instant::now()));
                Frame::Advertise(current)
            }
            _ = heartbeat.tick() => Frame::Heartbeat(msg::Heartbeat { sent_at_ms: mono_ms() }),
            () = link.stop.cancelled() => return,
        };
        if let Err(e) = io::write_frame(&mut send, &frame).await {
            tracing::debug!(peer = %link.peer, error = %e, "control stream write failed");
            return;
        }
    }
}

/// Returns at the next advertise tick, or at `changed_at`: when this region's topics or
/// sub-logs changed, once the last scan's cost has been rested.
async fn advertise_due(tick: &mut tokio::time::Interval, changed_at: Option<Instant>) {
    match changed_at {
        Some(at) => tokio::select! {
            _ = tick.tick() => {}
            () = tokio::time::sleep_until(at.into()) => {}
        },
        None => {
            tick.tick().await;
        }
    }
}

async fn control_reader(
    node: &Arc<Node>,
    link: &LinkHandle,
    recv: &mut quinn::RecvStream,
) -> Ended {
    let ctx = &link.ctx;
    let peer = &ctx.peer;
    loop {
        let frame = match io::read_frame(recv, node.limits).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ended::PeerClosed,
            Err(StreamError::Frame(e)) => {
                node.metrics.frame_refused(e.reason());
                tracing::warn!(event = "control_frame_bad", %peer, error = %e, "bad control frame; dropping the link");
                ctx.connection
                    .close(close::BAD_FRAME, LinkCode::Malformed.as_str().as_bytes());
                return Ended::BadFrame(e);
            }
            Err(e) => return Ended::Control(e),
        };
        match frame {
            Frame::Advertise(advertise) => {
                let heard = PlanEvent::Heard {
                    peer: peer.clone(),
                    link_id: ctx.id,
                    advertise: Arc::new(advertise),
                };
                if !node.planner.offer(heard) {
                    // The peer re-sends its advertisement within a second.
                    node.metrics.control_frames_dropped("advertise");
                }
            }
            Frame::Heartbeat(h) => {
                let _ = link.control.try_send(Frame::HeartbeatAck(h));
            }
            Frame::HeartbeatAck(h) => {
                let transition = link
                    .health
                    .lock()
                    .expect("link health lock")
                    .on_answer(h.sent_at_ms, mono_ms());
                if let Some(t) = transition {
                    tracing::info!(%peer, ?t, "link health changed: heartbeats answered again");
                    node.links_changed();
                }
            }
            Frame::LinkState(state) => node.on_link_state(peer, state),
            Frame::Tasks(tasks) => node.on_tasks(peer, tasks),
            Frame::GroupCursors(cursors) => crate::groups::on_group_cursors(node, ctx, cursors),
            Frame::Error(e) => {
                tracing::warn!(event = "peer_error", %peer, code = %e.code, message = %e.message, "peer reported an error on the control stream");
            }
            other => {
                node.metrics.frame_refused("protocol");
                tracing::warn!(event = "control_frame_unexpected", %peer, kind = ?other.kind(), "unexpected frame on the control stream; dropping the link");
                ctx.connection
                    .close(close::BAD_FRAME, LinkCode::Protocol.as_str().as_bytes());
                return Ended::Unexpected(other.kind());
            }
        }
    }
}
