//! The planner: one task per node that owns what only planning touches (the neighbours'
//! advertisements, recent refusals, the running pulls) and takes events on a bounded
//! channel (`node::events`). After taking every queued event it plans (`plan`) and makes
//! the running pulls match: pulls no longer planned are cancelled, missing ones started
//! (on a stream the source pushed for the sub-log when there is one, `adopt`), target
//! topics created. Planning runs on the blocking pool (creating a topic is an
//! fsync) with the state moved into it: no lock is held, and nothing else waits on it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::wire::message as msg;

use super::adopt::with_pushed;
use super::plan::{Inputs, Offer, Plan, plan};
use super::stream::{self, PullSpec};
use crate::crew::{Assigned, Assignment, divide, may_give_away};
use crate::node::{Heard, Node, PlanEvent, Pushed};
use crate::observe::SubLogKey;
use crate::routing::Need;
use crate::tasks::Task;
use crate::wire::close;

/// How long a link that gave a sub-log up (loop, hop limit, missing records) is passed
/// over for it, in heartbeat intervals: long enough for routes to settle after a change.
pub(crate) const REFUSAL_HOLD_HEARTBEATS: u32 = 5;

/// A running pull of one sub-log.
struct Pull {
    id: u64,
    link_id: u64,
    /// The task it pulls for; a changed task (a new object) restarts the pull.
    task: Arc<Task>,
    /// The incarnation of the local topic it pulls into: a topic deleted and created again
    /// here is another topic, whose pull starts afresh (an idle stream would not notice).
    target_incarnation: u64,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    heard: Heard,
    refused: HashMap<(SubLogKey, u64), Instant>,
    pulls: HashMap<SubLogKey, Pull>,
    /// Streams neighbours pushed since the last plan: each is adopted by the pull it
    /// starts, or stopped.
    pushed: Vec<Pushed>,
}

pub(crate) async fn run(node: Arc<Node>, mut events: mpsc::Receiver<PlanEvent>) {
    let mut state = State::default();
    loop {
        let first = tokio::select! {
            event = events.recv() => event,
            () = node.stop.cancelled() => return,
        };
        let Some(first) = first else { return };
        let mut heard_changed = state.take(first);
        while let Ok(event) = events.try_recv() {
            heard_changed |= state.take(event);
        }
        if heard_changed {
            node.heard.publish(state.heard.clone());
        }
        let n = node.clone();
        let planned = tokio::task::spawn_blocking(move || {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.reconcile(&n)));
            if result.is_err() {
                tracing::error!(
                    event = "planner_panicked",
                    "planning the pulls panicked; the next event plans again"
                );
            }
            state
        })
        .await;
        match planned {
            Ok(s) => state = s,
            // Only when the runtime shuts down.
            Err(_) => return,
        }
    }
}

impl State {
    /// Takes one event; returns whether the heard advertisements changed.
    fn take(&mut self, event: PlanEvent) -> bool {
        match event {
            PlanEvent::Replan => false,
            PlanEvent::Heard {
                peer,
                link_id,
                advertise,
            } => {
                self.heard.insert(peer, (link_id, advertise));
                true
            }
            PlanEvent::Pushed(pushed) => {
                let pushed = *pushed;
                let merged = match self.heard.get(&pushed.peer) {
                    Some((id, advertise)) if *id == pushed.link_id => {
                        with_pushed(advertise, &pushed.push)
                    }
                    _ => with_pushed(&msg::Advertise { topics: Vec::new() }, &pushed.push),
                };
                self.heard
                    .insert(pushed.peer.clone(), (pushed.link_id, Arc::new(merged)));
                self.pushed.push(pushed);
                true
            }
            PlanEvent::LinkEnded { peer, link_id } => {
                let ours = self.heard.get(&peer).is_some_and(|(id, _)| *id == link_id);
                if ours {
                    self.heard.remove(&peer);
                }
                ours
            }
            PlanEvent::PullEnded {
                key,
                pull_id,
                gave_up,
            } => {
                if let Some(link_id) = gave_up {
                    self.refused.insert((key.clone(), link_id), Instant::now());
                }
                if self.pulls.get(&key).is_some_and(|p| p.id == pull_id) {
                    self.pulls.remove(&key);
                }
                false
            }
        }
    }

    /// Plans, then stops the pulls that no longer match the plan and starts the missing
    /// ones, creating target topics as needed.
    fn reconcile(&mut self, node: &Arc<Node>) {
        let hold = node.settings.heartbeat_interval * REFUSAL_HOLD_HEARTBEATS;
        self.refused.retain(|_, at| at.elapsed() < hold);
        let refused: HashSet<(SubLogKey, u64)> = self.refused.keys().cloned().collect();
        let table = node.links.load();
        let links: HashMap<String, u64> = table.iter().map(|(p, l)| (p.clone(), l.id())).collect();
        let view = node.view();
        let tasks = node.active_tasks();
        let plan = plan(&Inputs {
            region: &node.region,
            view: &view,
            tasks: &tasks,
            heard: self
                .heard
                .iter()
                .map(|(peer, (_, a))| (peer.as_str(), &**a))
                .collect(),
            links: &links,
            refused: &refused,
            pass_through: node.pass_through(),
            hop_limit: node.settings.hop_limit,
        });
        let mut plan = plan;
        share_out(node, &mut plan);
        self.apply(node, plan);
    }

    fn apply(&mut self, node: &Arc<Node>, plan: Plan) {
        for (task, topic, partitions, message_type) in &plan.topics {
            // Topics a neighbour writes to appear here before their first record.
            if let Err(e) = node
                .broker
                .ensure_topic_of(topic, *partitions, *message_type)
            {
                tracing::warn!(event = "target_topic_create_failed", task = task.name(), %topic, error = %e, "cannot create the target topic");
            }
        }
        for (task, key, message) in plan.collisions {
            if node.status.error(task.name(), &key, message.clone()) {
                tracing::error!(event = "rename_collision", task = task.name(), %message, "rename collision; not replicated");
            }
        }
        let incarnation_here = |key: &SubLogKey| {
            node.broker
                .partition(&key.topic, key.partition)
                .map_or(0, |p| p.incarnation())
        };
        let holds_nothing = |key: &SubLogKey| {
            node.broker
                .partition(&key.topic, key.partition)
                .ok()
                .and_then(|p| p.sub_log(&key.origin))
                .is_none_or(|s| s.end_offset == 0)
        };
        let pushed = &self.pushed;
        self.pulls.retain(|key, pull| {
            let planned = plan.pulls.get(key);
            // A pull started from the advertisement that raced the push, with nothing
            // received yet, gives way to the pushed stream, which already carries the
            // records its subscription is still asking for.
            let superseded =
                planned.is_some_and(|o| pushed_for(pushed, key, o).is_some() && holds_nothing(key));
            let keep = planned
                .is_some_and(|o| o.link_id == pull.link_id && Arc::ptr_eq(&o.task, &pull.task))
                && incarnation_here(key) == pull.target_incarnation
                && !superseded;
            if !keep {
                pull.cancel.cancel();
            }
            keep
        });
        let table = node.links.load();
        for (key, offer) in plan.pulls {
            let task = &offer.task;
            let Some(link) = table.get(&offer.peer).filter(|l| l.id() == offer.link_id) else {
                continue;
            };
            if !self.pulls.contains_key(&key) {
                if !target_ready(node, &key, &offer) {
                    continue;
                }
                let cancel = link.ctx.stop.child_token();
                let id = node.next_id();
                let pushed =
                    pushed_for(&self.pushed, &key, &offer).map(|at| self.pushed.swap_remove(at));
                self.pulls.insert(
                    key.clone(),
                    Pull {
                        id,
                        link_id: offer.link_id,
                        task: task.clone(),
                        target_incarnation: incarnation_here(&key),
                        cancel: cancel.clone(),
                    },
                );
                node.tracker.spawn(stream::run(
                    node.clone(),
                    link.ctx.clone(),
                    PullSpec {
                        id,
                        task: task.clone(),
                        source_topic: offer.source_topic.clone(),
                        key: key.clone(),
                        relay: offer.need == Need::Relay,
                        pushed: pushed.map(|p| (p.push, p.stream)),
                    },
                    cancel,
                ));
            }
            node.status.advertised(
                task.name(),
                &key,
                &offer.peer,
                offer.start,
                offer.end,
                offer.bytes,
            );
        }
        // Pushed streams no pull took: the sub-log is pulled from another link, already
        // pulled, or not needed here.
        for mut pushed in self.pushed.drain(..) {
            node.metrics.push_received(false);
            let _ = pushed.stream.stop(close::NOT_ADOPTED);
        }
    }
}

/// Creates the target topic of `key` when missing; whether it has the sub-log's partition
/// (a target with fewer partitions than the source is reported, not replicated).
fn target_ready(node: &Node, key: &SubLogKey, offer: &Offer) -> bool {
    let task = &offer.task;
    let created = node
        .broker
        .ensure_topic_of(&key.topic, offer.partitions, offer.message_type);
    let partitions = match created {
        Ok(config) => config.partitions,
        Err(e) => {
            tracing::warn!(event = "target_topic_create_failed", task = task.name(), topic = %key.topic, error = %e, "cannot create the target topic");
            return false;
        }
    };
    if key.partition >= partitions {
        let message = format!(
            "target topic {} has {partitions} partitions; the source's has {}: partition {} is not replicated",
            key.topic, offer.partitions, key.partition
        );
        if node.status.error(task.name(), key, message.clone()) {
            tracing::warn!(event = "sub_log_not_replicated", task = task.name(), %message, "sub-log not replicated");
        }
        return false;
    }
    true
}

/// On a region of several nodes: gives each planned sub-log to one node alive
/// (`crew::divide`), hands the division to be stored for the others, and leaves in `plan`
/// only this node's share. What the others pull shows here by what the shared storage
/// holds of it (their pulls append there).
fn share_out(node: &Node, plan: &mut Plan) {
    let Some(crew) = &node.crew else { return };
    let members = crew.members.borrow().clone();
    // Neighbours the other nodes can reach: this region dials them, and they serve
    // data-only connections.
    let links = node.links.load();
    let dialled: HashSet<String> = node
        .topology
        .neighbours(&node.region)
        .into_iter()
        .filter(|n| n.dial && !n.addresses.is_empty())
        .filter(|n| {
            links
                .get(&n.region)
                .is_some_and(|l| l.ctx.serves_data_connections)
        })
        .map(|n| n.region)
        .collect();
    let division = divide(
        plan.pulls.iter().map(|(key, offer)| {
            let stored = offer.need == Need::Store;
            let reach = dialled.contains(&offer.peer);
            (key, may_give_away(&key.origin, &offer.peer, stored, reach))
        }),
        &crew.me,
        &members,
    );
    let mut shared = Vec::new();
    plan.pulls.retain(|key, offer| {
        let puller = &division[key];
        if *puller == crew.me {
            return true;
        }
        if !target_ready(node, key, offer) {
            return false;
        }
        let task = offer.task.name();
        node.status
            .advertised(task, key, &offer.peer, offer.start, offer.end, offer.bytes);
        let held = node
            .broker
            .partition(&key.topic, key.partition)
            .ok()
            .and_then(|p| p.sub_log(&key.origin))
            .map_or(0, |s| s.end_offset);
        node.status.applied(task, key, held, 0, 0);
        shared.push(Assigned {
            node: puller.clone(),
            peer: offer.peer.clone(),
            task: task.to_string(),
            source_topic: offer.source_topic.clone(),
            topic: key.topic.clone(),
            partition: key.partition,
            origin: key.origin.clone(),
        });
        false
    });
    shared.sort_by_key(Assigned::key);
    let linked = dialled
        .iter()
        .filter_map(|peer| {
            Some((
                peer.clone(),
                links.get(peer)?.ctx.connection.remote_address(),
            ))
        })
        .collect();
    let assignment = Assignment {
        holder: crew.me.clone(),
        pulls: shared,
        linked,
    };
    crew.assignment
        .send_if_modified(|current| std::mem::replace(current, assignment.clone()) != assignment);
}

/// Where in `pushed` a stream serving `key` as `offer` plans it is (same link, task and
/// source sub-log).
fn pushed_for(pushed: &[Pushed], key: &SubLogKey, offer: &Offer) -> Option<usize> {
    pushed.iter().position(|p| {
        let asked = &p.push.subscription;
        p.link_id == offer.link_id
            && asked.task == offer.task.name()
            && asked.topic == offer.source_topic
            && asked.partition == key.partition
            && asked.origin == key.origin
    })
}
