//! One link to a peer region, after the TLS handshake: the Hello exchange on the control
//! stream, then advertisements and heartbeats both ways, the peer's subscriptions served
//! (streams it opens) and this region's subscriptions pulled (streams it opens).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use proto::link::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::inbox::Inbox;
use crate::io::{self, StreamError};
use crate::protocol::{Frame, PROTOCOL_VERSION, close, codes};
use crate::service::{LinkEntry, Shared};
use crate::{advertise, pull, routing, serve};
use topology::{HealthSettings, LinkHealth};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An unchanged advertisement is still re-sent this often, so a peer re-evaluates what to
/// pull (a sub-log released by another link is picked up within this time).
const ADVERTISE_REFRESH: Duration = Duration::from_secs(1);
/// Control frames queued for a link's control stream. Heartbeat answers and flooded link
/// states are dropped when it is full (both are re-sent every heartbeat interval).
const CONTROL_QUEUE: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Dialer,
    Acceptor,
}

/// What the pulling and serving code needs of a link.
pub(crate) struct LinkCtx {
    pub id: u64,
    pub peer: String,
    pub connection: quinn::Connection,
    pub stop: CancellationToken,
    /// Group cursors received on this link, waiting to be merged (one worker per link).
    pub cursors: Inbox<crate::groups::Received>,
    /// Frame limits on this link: this region's, raised to what the peer may send.
    pub limits: crate::io::FrameLimits,
}

/// Runs the link until it drops or the service stops.
pub(crate) async fn run(
    shared: Arc<Shared>,
    connection: quinn::Connection,
    peer: String,
    role: Role,
) {
    let remote = connection.remote_address();
    let (send, mut recv, peer_max_frame) = match handshake(&shared, &connection, &peer, role).await
    {
        Ok(opened) => opened,
        Err(error) => {
            tracing::warn!(%peer, %remote, %error, "link handshake failed");
            shared.metrics.link_refused("bad_hello");
            connection.close(close::BAD_HELLO, error.as_bytes());
            return;
        }
    };
    let dialer = match role {
        Role::Dialer => shared.region.clone(),
        Role::Acceptor => peer.clone(),
    };
    let stop = shared.stop.child_token();
    let link = Arc::new(LinkCtx {
        id: shared.next_id(),
        peer: peer.clone(),
        connection: connection.clone(),
        cursors: crate::groups::inbox(&shared.tracker, stop.clone()),
        limits: shared.limits.for_link(peer_max_frame),
        stop,
    });
    let health = Arc::new(std::sync::Mutex::new(LinkHealth::new(
        HealthSettings::new(shared.settings.heartbeat_interval),
        routing::mono_ms(),
    )));
    let (control_tx, control_rx) = mpsc::channel::<Frame>(CONTROL_QUEUE);
    {
        let mut links = shared.links.lock().expect("links lock");
        // When both sides dial, the link dialled by the lower region id stays: otherwise
        // each new connection would replace the other's, forever. A newer connection from
        // the same dialer (a restart) replaces the old one.
        if let Some(existing) = links.get(&peer)
            && existing.dialer < dialer
            && existing.connection.close_reason().is_none()
        {
            let kept = existing.dialer.clone();
            drop(links);
            tracing::info!(%peer, %remote, "a link dialled by {kept} is up; closing this one");
            connection.close(
                close::REPLACED,
                b"a link dialled by the lower region id is up",
            );
            return;
        }
        if let Some(previous) = links.insert(
            peer.clone(),
            LinkEntry {
                id: link.id,
                ctx: link.clone(),
                connection: connection.clone(),
                health: health.clone(),
                dialer,
                control: control_tx.clone(),
                counted_tx: AtomicU64::new(0),
                counted_rx: AtomicU64::new(0),
            },
        ) {
            previous
                .connection
                .close(close::REPLACED, b"replaced by a newer link");
        }
    }
    tracing::info!(%peer, %remote, ?role, "link up");
    routing::sync_to(&shared, &control_tx);
    {
        let records = shared.snapshot.load().records();
        let _ = control_tx.try_send(crate::service::tasks_frame(&records));
    }
    crate::groups::send_all(&shared, Some(&peer));
    routing::links_changed(&shared);

    shared.tracker.spawn(control_writer(
        shared.clone(),
        link.clone(),
        send,
        control_rx,
    ));
    shared
        .tracker
        .spawn(accept_streams(shared.clone(), link.clone()));

    let reason = tokio::select! {
        r = control_reader(&shared, &link, &mut recv, &control_tx, &health) => r,
        e = connection.closed() => format!("connection closed: {e}"),
        () = shared.stop.cancelled() => "shutting down".to_string(),
    };
    link.stop.cancel();
    let removed = {
        let mut links = shared.links.lock().expect("links lock");
        let ours = links.get(&peer).is_some_and(|l| l.id == link.id);
        if ours {
            links.remove(&peer);
            shared.heard.lock().expect("heard lock").remove(&peer);
        }
        ours
    };
    connection.close(close::NORMAL, b"link ended");
    tracing::info!(%peer, %reason, "link down");
    if removed {
        routing::links_changed(&shared);
        pull::request_reconcile(&shared);
    }
}

async fn handshake(
    shared: &Shared,
    connection: &quinn::Connection,
    peer: &str,
    role: Role,
) -> Result<(quinn::SendStream, quinn::RecvStream, u64), String> {
    let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        match role {
            Role::Dialer => connection.open_bi().await,
            Role::Acceptor => connection.accept_bi().await,
        }
    })
    .await
    .map_err(|_| "no control stream in time".to_string())?;
    let (mut send, mut recv) = opened.map_err(|e| format!("control stream: {e}"))?;
    let hello = Frame::Hello(pb::Hello {
        protocol_version: PROTOCOL_VERSION,
        region: shared.region.clone(),
        epoch: shared.epoch,
        features: vec![],
        max_frame_bytes: shared.limits.max_frame as u64,
    });
    io::write_frame(&mut send, &hello)
        .await
        .map_err(|e| e.to_string())?;
    match io::read_frame_within(&mut recv, shared.limits, HANDSHAKE_TIMEOUT).await {
        Ok(Some(Frame::Hello(h))) if h.protocol_version != PROTOCOL_VERSION => Err(format!(
            "peer speaks protocol version {}, this region {PROTOCOL_VERSION}",
            h.protocol_version
        )),
        Ok(Some(Frame::Hello(h))) if h.region != peer => Err(format!(
            "Hello claims region \"{}\" but the certificate is for \"{peer}\"",
            h.region
        )),
        Ok(Some(Frame::Hello(h))) => Ok((send, recv, h.max_frame_bytes)),
        Ok(Some(other)) => Err(format!("expected Hello, got {:?}", other.kind())),
        Ok(None) => Err("control stream ended before Hello".into()),
        Err(e) => Err(format!("reading Hello: {e}")),
    }
}

async fn control_writer(
    shared: Arc<Shared>,
    link: Arc<LinkCtx>,
    mut send: quinn::SendStream,
    mut outgoing: mpsc::Receiver<Frame>,
) {
    let mut advertise = tokio::time::interval(shared.settings.advertise_interval);
    let mut heartbeat = tokio::time::interval(shared.settings.heartbeat_interval);
    let mut last: Option<(pb::Advertise, Instant)> = None;
    loop {
        let frame = tokio::select! {
            frame = outgoing.recv() => match frame { Some(f) => f, None => return },
            _ = advertise.tick() => {
                let current = advertise::advertisement(&shared, &link.peer);
                let fresh = last.as_ref().is_some_and(|(a, at)| *a == current && at.elapsed() < ADVERTISE_REFRESH);
                if fresh {
                    continue;
                }
                last = Some((current.clone(), Instant::now()));
                Frame::Advertise(current)
            }
            _ = heartbeat.tick() => Frame::Heartbeat(pb::Heartbeat { sent_at_ms: routing::mono_ms() }),
            () = link.stop.cancelled() => return,
        };
        if let Err(e) = io::write_frame(&mut send, &frame).await {
            tracing::debug!(peer = %link.peer, error = %e, "control stream write failed");
            return;
        }
    }
}

async fn control_reader(
    shared: &Arc<Shared>,
    link: &Arc<LinkCtx>,
    recv: &mut quinn::RecvStream,
    control: &mpsc::Sender<Frame>,
    health: &std::sync::Mutex<LinkHealth>,
) -> String {
    loop {
        let frame = match io::read_frame(recv, shared.limits).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return "peer closed the control stream".into(),
            Err(StreamError::Frame(e)) => {
                shared.metrics.frame_refused(e.reason());
                tracing::warn!(peer = %link.peer, error = %e, "bad control frame; dropping the link");
                link.connection
                    .close(close::BAD_FRAME, codes::MALFORMED.as_bytes());
                return format!("bad control frame: {e}");
            }
            Err(e) => return format!("control stream: {e}"),
        };
        match frame {
            Frame::Advertise(advertise) => pull::on_advertise(shared, link, advertise),
            Frame::Heartbeat(h) => {
                let _ = control.try_send(Frame::HeartbeatAck(h));
            }
            Frame::HeartbeatAck(h) => {
                let now = routing::mono_ms();
                let transition = health
                    .lock()
                    .expect("health lock")
                    .on_answer(h.sent_at_ms, now);
                if let Some(t) = transition {
                    tracing::info!(peer = %link.peer, ?t, "link health changed: heartbeats answered again");
                    routing::links_changed(shared);
                }
            }
            Frame::LinkState(state) => routing::on_link_state(shared, &link.peer, state),
            Frame::Tasks(tasks) => crate::service::on_tasks(shared, &link.peer, tasks),
            Frame::GroupCursors(cursors) => crate::groups::on_group_cursors(shared, link, cursors),
            Frame::Error(e) => {
                tracing::warn!(peer = %link.peer, code = %e.code, message = %e.message, "peer reported an error on the control stream");
            }
            other => {
                shared.metrics.frame_refused("protocol");
                tracing::warn!(peer = %link.peer, kind = ?other.kind(), "unexpected frame on the control stream; dropping the link");
                link.connection
                    .close(close::BAD_FRAME, codes::PROTOCOL.as_bytes());
                return format!("unexpected {:?} frame on the control stream", other.kind());
            }
        }
    }
}

async fn accept_streams(shared: Arc<Shared>, link: Arc<LinkCtx>) {
    loop {
        let accepted = tokio::select! {
            a = link.connection.accept_bi() => a,
            () = link.stop.cancelled() => return,
        };
        let Ok((send, recv)) = accepted else { return };
        // Every stream gets its own task at once: reading one stream's first frame before
        // accepting the next can deadlock QUIC flow control (TRANSPORT.md).
        shared.tracker.spawn(serve::serve_stream(
            shared.clone(),
            link.clone(),
            send,
            recv,
        ));
    }
}
