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
use std::time::Instant;

use crate::node::{LinkCtx, Node};
use crate::routing::Need;
use crate::scan_pace;
use crate::tasks::Task;
use crate::wire::Frame;
use crate::wire::message::{self as msg, StartFrom};

use super::stream::{Authorized, authorize, serve};

/// One of this region's own sub-logs, still empty.
struct Empty {
    topic: String,
    partition: u32,
    incarnation: u64,
    partitions: u32,
    message_type: String,
}

impl Empty {
    fn id(&self) -> (String, u32, u64) {
        (self.topic.clone(), self.partition, self.incarnation)
    }
}

/// Runs for the life of a link to a peer that takes pushes: whenever this region's topics
/// or sub-logs change, pushes what appeared since the link came up.
pub(crate) async fn push_new_sub_logs(node: Arc<Node>, link: Arc<LinkCtx>) {
    let mut changed = node.broker.sub_logs_changed();
    // What exists at link-up is offered by the first advertisement, and subscribed to.
    let mut started = Instant::now();
    let mut known: HashSet<_> = empty_sub_logs(&node).iter().map(Empty::id).collect();
    loop {
        let next_scan = scan_pace::next_scan_at(started, Instant::now());
        tokio::select! {
            c = changed.changed() => if c.is_err() { return },
            () = link.stop.cancelled() => return,
        }
        // The changes that come while the last scan's cost is rested are taken together.
        tokio::select! {
            () = tokio::time::sleep_until(next_scan.into()) => {}
            () = link.stop.cancelled() => return,
        }
        started = Instant::now();
        let empty_at_ms = broker::record::now_ms();
        let fresh = newly(&mut known, empty_sub_logs(&node), Empty::id);
        for (task, sub_log) in needed(&node, &link.peer, fresh) {
            node.tracker
                .spawn(push(node.clone(), link.clone(), task, sub_log, empty_at_ms));
        }
    }
}

/// What of `current` was not seen before (`known`), each looked at once. `known` keeps
/// only what is still in `current`: a sub-log once written, or of a deleted topic, is
/// never empty again under the same incarnation, so the set stays as small as the empty
/// sub-logs are few.
fn newly<T, K: std::hash::Hash + Eq>(
    known: &mut HashSet<K>,
    current: Vec<T>,
    id: impl Fn(&T) -> K,
) -> Vec<T> {
    let ids: HashSet<K> = current.iter().map(&id).collect();
    known.retain(|k| ids.contains(k));
    current
        .into_iter()
        .filter(|item| known.insert(id(item)))
        .collect()
}

/// This region's own sub-logs without a record (a partition it has not written yet).
fn empty_sub_logs(node: &Node) -> Vec<Empty> {
    let me = &node.region;
    let mut found = Vec::new();
    for config in node.broker.topics() {
        let Ok(topic) = node.broker.topic(&config.name) else {
            continue;
        };
        for partition in &topic.partitions {
            let empty = partition
                .sub_log(me)
                .is_none_or(|s| s.start_offset == 0 && s.end_offset == 0);
            if empty {
                found.push(Empty {
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

/// Those of `sub_logs` that `peer` stores as a task's target and pulls from this region,
/// with the task.
fn needed(node: &Node, peer: &str, sub_logs: Vec<Empty>) -> Vec<(Arc<Task>, Empty)> {
    let me = &node.region;
    let view = node.view();
    if sub_logs.is_empty()
        || view
            .candidates(peer, me)
            .first()
            .is_none_or(|(n, _)| n != me)
    {
        return Vec::new();
    }
    let tasks = node.active_tasks();
    sub_logs
        .into_iter()
        .filter_map(|s| {
            let task = tasks
                .iter()
                .find(|t| t.matches(&s.topic) && view.need(t, me, peer) == Some(Need::Store))?;
            Some((task.clone(), s))
        })
        .collect()
}

/// Serves `sub_log` to the peer on a stream this region opens, as if the peer had
/// subscribed from offset 0.
async fn push(
    node: Arc<Node>,
    link: Arc<LinkCtx>,
    task: Arc<Task>,
    sub_log: Empty,
    empty_at_ms: i64,
) {
    let subscription = msg::Subscribe {
        task: task.name().to_string(),
        topic: sub_log.topic,
        partition: sub_log.partition,
        origin: node.region.clone(),
        from: Some(StartFrom::Offset(0)),
        via: Vec::new(),
        incarnation: sub_log.incarnation,
    };
    // The same rules as the peer's own subscription; a refusal means the peer would not
    // be served either, so nothing is pushed.
    let Ok(Authorized::Stored(served)) = authorize(&node, &link.peer, &subscription) else {
        return;
    };
    let Ok((send, _recv)) = link.connection.open_bi().await else {
        return;
    };
    node.metrics.pushes_sent.inc();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sub_log_is_pushed_once_and_the_known_set_stays_small() {
        let same = |n: &u32| *n;
        let mut known = HashSet::from([1, 2]);
        assert_eq!(
            newly(&mut known, vec![1, 2, 3], same),
            [3],
            "1 and 2 were there at link-up"
        );
        assert!(
            newly(&mut known, vec![1, 2, 3], same).is_empty(),
            "once only"
        );
        // 1 and 2 were written: no longer pushable, and forgotten.
        assert_eq!(newly(&mut known, vec![3, 4], same), [4]);
        assert_eq!(known, HashSet::from([3, 4]));
    }
}
