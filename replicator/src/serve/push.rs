//! Pushing new sub-logs: this region's own sub-log of a partition created after the link
//! came up (a new topic, more partitions, a topic created again), which the peer needs as
//! a task's target and would pull from this region (its cheapest route to this origin),
//! is served on a stream this region opens while it is still empty, announced with
//! `Push`, without waiting for the peer to hear an advertisement and subscribe: the first
//! record reaches the peer one one-way delay after it is durable here, not three.
//!
//! A push is a subscription this region makes on the peer's behalf, admitted by the same
//! rules (`stream::authorize`) and served by the same loop (`stream::serve`); the peer
//! adopts it only where it would have subscribed the same way (`pull::adopt`). Sub-logs
//! that existed when the link came up are advertised as before, and a peer that did not
//! list the feature in its Hello is never pushed to.

use std::collections::HashSet;
use std::sync::Arc;

use crate::node::{LinkCtx, Node};
use crate::routing::Need;
use crate::tasks::Task;
use crate::wire::Frame;
use crate::wire::message::{self as msg, StartFrom};

use super::stream::{Authorized, Served, authorize, serve};

/// One empty sub-log of this region's own that a peer will pull from it.
struct Pushable {
    task: Arc<Task>,
    topic: String,
    partition: u32,
    incarnation: u64,
    partitions: u32,
    message_type: String,
}

impl Pushable {
    fn id(&self) -> (String, u32, u64) {
        (self.topic.clone(), self.partition, self.incarnation)
    }
}

/// Runs for the life of a link to a peer that takes pushes: whenever this region's topics
/// or sub-logs change, pushes what appeared since the link came up.
pub(crate) async fn push_new_sub_logs(node: Arc<Node>, link: Arc<LinkCtx>) {
    let mut changed = node.broker.sub_logs_changed();
    // What the first advertisement offers is subscribed to as before.
    let mut known: HashSet<_> = pushable(&node, &link.peer)
        .iter()
        .map(Pushable::id)
        .collect();
    loop {
        tokio::select! {
            c = changed.changed() => if c.is_err() { return },
            () = link.stop.cancelled() => return,
        }
        let empty_at_ms = broker::record::now_ms();
        for sub_log in pushable(&node, &link.peer) {
            if known.insert(sub_log.id()) {
                node.tracker
                    .spawn(push(node.clone(), link.clone(), sub_log, empty_at_ms));
            }
        }
    }
}

/// This region's own empty sub-logs that `peer` stores as a task's target and pulls from
/// this region.
fn pushable(node: &Node, peer: &str) -> Vec<Pushable> {
    let me = &node.region;
    let view = node.view();
    if view
        .candidates(peer, me)
        .first()
        .is_none_or(|(n, _)| n != me)
    {
        return Vec::new();
    }
    let tasks = node.active_tasks();
    let mut found = Vec::new();
    for config in node.broker.topics() {
        let Some(task) = tasks
            .iter()
            .find(|t| t.matches(&config.name) && view.need(t, me, peer) == Some(Need::Store))
        else {
            continue;
        };
        let Ok(topic) = node.broker.topic(&config.name) else {
            continue;
        };
        for partition in &topic.partitions {
            let empty = partition
                .sub_log(me)
                .is_none_or(|s| s.start_offset == 0 && s.end_offset == 0);
            if empty {
                found.push(Pushable {
                    task: task.clone(),
                    topic: config.name.clone(),
                    partition: partition.index(),
                    incarnation: partition.incarnation(),
                    partitions: config.partitions,
                    message_type: config.message_type.as_str().to_string(),
                });
            }
        }
    }
    found
}

/// Serves `sub_log` to the peer on a stream this region opens, as if the peer had
/// subscribed from offset 0.
async fn push(node: Arc<Node>, link: Arc<LinkCtx>, sub_log: Pushable, empty_at_ms: i64) {
    let subscription = msg::Subscribe {
        task: sub_log.task.name().to_string(),
        topic: sub_log.topic,
        partition: sub_log.partition,
        origin: node.region.clone(),
        from: Some(StartFrom::Offset(0)),
        via: Vec::new(),
        incarnation: sub_log.incarnation,
    };
    // The same rules as the peer's own subscription; a refusal means the peer would not
    // be served either, so nothing is pushed.
    let Ok(Authorized::Stored {
        task,
        partition,
        key,
    }) = authorize(&node, &link.peer, &subscription)
    else {
        return;
    };
    let Ok((send, _recv)) = link.connection.open_bi().await else {
        return;
    };
    node.metrics.pushes_sent.inc();
    let served = Served {
        task,
        partition,
        key,
        from: subscription.from,
        incarnation: subscription.incarnation,
    };
    let (partitions, message_type) = (sub_log.partitions, sub_log.message_type);
    serve(node, link, served, send, move |subscribed| {
        Frame::Push(msg::Push {
            subscription,
            subscribed,
            partitions,
            message_type,
            empty_at_ms,
        })
    })
    .await;
}
