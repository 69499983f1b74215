//! Consumer-group cursor sync. A task with `groups` (a glob over group names) keeps the
//! committed cursors of matching groups on its topics the same in all of its regions:
//!
//! - every cursor change in the broker (a commit, or a merge of a synced cursor) is sent at
//!   once, in a `GroupCursors` control frame, to each neighbour that shares such a task
//!   (as one of its regions, or as a relay on a route between them: a relay merges and
//!   passes cursors on like any region, so a region behind a VPC link syncs too);
//! - when a link comes up, and every [`RESYNC_INTERVAL`], all matching cursors are sent
//!   (a frame dropped on a full control queue, or on a full merge queue at the receiver,
//!   is repaired by the next one);
//! - the receiver merges (`Broker::merge_cursors`: per origin the larger next offset wins;
//!   a cursor past the end the region knows exists, held or advertised, is refused)
//!   and passes on only what changed, so repetition and order do not matter and the
//!   exchange stops by itself.
//!
//! A vector cursor names exact positions in each origin's sub-log, which hold the same
//! records under the same offsets in every region: nothing is translated, and a group
//! resumes in another region exactly where it committed. Merging by maximum means a group
//! consuming in two regions at once never loses a commit and never moves back; records one
//! side read are not re-read by the other. A deliberate rewind (committing an older cursor)
//! does not spread, and is undone by the next sync from a region that holds the larger
//! cursor (within [`RESYNC_INTERVAL`]): to rewind a synced group, use a new group name.

use std::sync::Arc;
use std::time::Duration;

use crate::wire::message as msg;
use broker::Cursor;
use broker::broker::CursorChange;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::inbox::Inbox;
use crate::node::{LinkCtx, Node};
use crate::routing::RouteView;
use crate::tasks::Task;
use crate::wire::Frame;

/// Every cursor is resent this often, repairing anything a full control queue dropped.
pub(crate) const RESYNC_INTERVAL: Duration = Duration::from_secs(10);

/// Cursors per frame, well under the frame size limit.
const PER_FRAME: usize = 1_000;

/// Sends cursor changes as they happen, and everything every [`RESYNC_INTERVAL`].
pub(crate) async fn sync_loop(node: Arc<Node>) {
    let mut changes = node.broker.cursor_changes();
    let mut resync = tokio::time::interval(RESYNC_INTERVAL);
    resync.tick().await;
    loop {
        let first = tokio::select! {
            change = changes.recv() => change,
            _ = resync.tick() => {
                send_all(&node, None);
                continue;
            }
            () = node.stop.cancelled() => return,
        };
        let mut batch = match first {
            Ok(change) => vec![change],
            Err(RecvError::Lagged(_)) => {
                send_all(&node, None);
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        while batch.len() < PER_FRAME {
            match changes.try_recv() {
                Ok(change) => batch.push(change),
                Err(_) => break,
            }
        }
        send(&node, &batch, None);
    }
}

/// Sends every matching cursor held here (to `only`, or to every neighbour).
pub(crate) fn send_all(node: &Node, only: Option<&str>) {
    match node.broker.all_group_cursors() {
        Ok(all) => {
            let changes: Vec<CursorChange> = all
                .into_iter()
                .map(|(group, topic, partition, cursor)| CursorChange {
                    group,
                    topic,
                    partition,
                    cursor,
                })
                .collect();
            for chunk in changes.chunks(PER_FRAME) {
                send(node, chunk, only);
            }
        }
        Err(e) => {
            tracing::error!(event = "group_cursor_read_failed", error = %e, "reading group cursors to sync failed")
        }
    }
}

fn send(node: &Node, changes: &[CursorChange], only: Option<&str>) {
    let tasks = node.active_tasks();
    let view = node.view();
    let links = node.links.load();
    for (peer, link) in links.iter() {
        if only.is_some_and(|o| o != peer) {
            continue;
        }
        let cursors: Vec<msg::GroupCursor> = changes
            .iter()
            .filter(|c| synced(&tasks, &view, &node.region, peer, &c.group, &c.topic))
            .map(|c| msg::GroupCursor {
                group: c.group.clone(),
                topic: c.topic.clone(),
                partition: c.partition,
                next: c.cursor.next.clone().into_iter().collect(),
                incarnations: c.cursor.incarnations.clone().into_iter().collect(),
                epoch: c.cursor.epoch,
            })
            .collect();
        if cursors.is_empty() {
            continue;
        }
        let n = cursors.len() as u64;
        if link
            .control
            .try_send(Frame::GroupCursors(msg::GroupCursors { cursors }))
            .is_ok()
        {
            node.metrics.group_cursors_sent.inc_by(n);
        }
    }
}

/// Whether some task syncs `group` on `topic` between neighbours `a` and `b` (each one of
/// its regions or a relay between them: cursors travel the task's routes).
fn synced(
    tasks: &[Arc<Task>],
    view: &RouteView,
    a: &str,
    b: &str,
    group: &str,
    topic: &str,
) -> bool {
    tasks.iter().any(|t| {
        t.syncs_group(group) && t.matches(topic) && view.takes_part(t, a) && view.takes_part(t, b)
    })
}

/// Cursor frames queued per link for merging. A full queue drops the frame (counted in
/// `georouter_replication_control_dropped_total{kind="group_cursors"}`): the next
/// resync, within [`RESYNC_INTERVAL`], sends every cursor again.
const INBOX_FRAMES: usize = 16;

/// A link's inbox of cursors received from `peer`: one blocking worker per link merges
/// them in order, so a burst of frames costs at most [`INBOX_FRAMES`] frames of memory and
/// one thread. It stops with `stop` (the link's end).
pub(crate) fn inbox(
    node: &Arc<Node>,
    peer: &str,
    stop: CancellationToken,
) -> Inbox<Vec<msg::GroupCursor>> {
    let (weak, from) = (Arc::downgrade(node), peer.to_string());
    Inbox::start(
        &node.tracker,
        stop,
        INBOX_FRAMES,
        move |cursors: Vec<msg::GroupCursor>| {
            if let Some(node) = weak.upgrade() {
                merge(&node, &from, cursors);
            }
        },
    )
}

/// Cursors from the neighbour on `link`: those a shared task syncs are queued to be
/// merged off the async runtime (a merge that changes something is an fsync); the others
/// are counted and dropped.
pub(crate) fn on_group_cursors(node: &Arc<Node>, link: &LinkCtx, frame: msg::GroupCursors) {
    let from = &link.peer;
    let tasks = node.active_tasks();
    let view = node.view();
    let (allowed, refused): (Vec<_>, Vec<_>) = frame
        .cursors
        .into_iter()
        .partition(|c| synced(&tasks, &view, &node.region, from, &c.group, &c.topic));
    if !refused.is_empty() {
        node.metrics
            .group_cursors_refused
            .inc_by(refused.len() as u64);
        tracing::warn!(event = "group_cursors_unexpected", peer = %from, count = refused.len(), example = %format!("{}/{}", refused[0].group, refused[0].topic), "group cursors no task syncs with this neighbour; ignored");
    }
    if allowed.is_empty() {
        return;
    }
    if !link.cursors.offer(allowed) {
        node.metrics.control_frames_dropped("group_cursors");
        tracing::debug!(peer = %from, "group cursors dropped: the link's merge queue is full (the next resync repairs this)");
    }
}

/// The end of `origin`'s sub-log of `topic`'s `partition` this region knows exists: what
/// it holds, or what a neighbour advertised holding, whichever is further.
fn known_end(node: &Node, topic: &str, partition: u32, origin: &str) -> u64 {
    let heard = node.heard.load();
    let advertised = heard
        .values()
        .flat_map(|(_, advertise)| advertise.topics.iter())
        .filter(|t| t.topic == topic)
        .flat_map(|t| t.sub_logs.iter())
        .filter(|s| s.partition == partition && s.origin == origin)
        .map(|s| s.end_offset)
        .max()
        .unwrap_or(0);
    advertised.max(node.broker.held_end(topic, partition, origin))
}

/// Merges cursors from neighbour `from` (on the blocking pool).
fn merge(node: &Node, from: &str, cursors: Vec<msg::GroupCursor>) {
    for c in cursors {
        let topic = c.topic.clone();
        let bound = |partition: u32, origin: &str| known_end(node, &topic, partition, origin);
        let cursor = Cursor {
            next: c.next.into_iter().collect(),
            incarnations: c.incarnations.into_iter().collect(),
            epoch: c.epoch,
        };
        match node
            .broker
            .merge_cursors(&c.group, &c.topic, &[(c.partition, cursor)], &bound)
        {
            Ok(changed) => {
                node.metrics
                    .group_cursors_merged
                    .inc_by(changed.len() as u64);
            }
            Err(e) => {
                node.metrics.group_cursors_refused.inc();
                tracing::warn!(event = "group_cursor_refused", peer = %from, group = %c.group, topic = %c.topic, error = %e, "a synced group cursor was refused");
            }
        }
    }
}
