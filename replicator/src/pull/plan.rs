//! Pull planning, pure: from every neighbour's latest advertisement and the route view,
//! which link pulls each sub-log this region needs. For each sub-log the neighbour on the
//! cheapest path that offers it wins (ties: the neighbour's name, then the task's place
//! in the task set), unless it refused the sub-log a moment ago. Two source topics renamed
//! into one target sub-log are a collision: the first stays, the other is reported.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use proto::link::v1 as pb;

use crate::observe::SubLogKey;
use crate::routing::{HopPath, Need, RouteView};
use crate::tasks::Task;

/// What a plan is made from.
pub(crate) struct Inputs<'a> {
    pub region: &'a str,
    pub view: &'a RouteView,
    pub tasks: &'a [Arc<Task>],
    /// The latest advertisement of each neighbour.
    pub heard: Vec<(&'a str, &'a pb::Advertise)>,
    /// The open link to each neighbour, by id.
    pub links: &'a HashMap<String, u64>,
    /// (sub-log, link) pairs that gave the sub-log up a moment ago.
    pub refused: &'a HashSet<(SubLogKey, u64)>,
    /// This region relays without storing: it pulls only what it is a target of.
    pub pass_through: bool,
    pub hop_limit: usize,
}

/// One neighbour's offer of a sub-log this region needs.
#[derive(Clone, Debug)]
pub(crate) struct Offer {
    pub peer: String,
    pub link_id: u64,
    pub task: Arc<Task>,
    pub source_topic: String,
    pub need: Need,
    pub partitions: u32,
    /// Path cost through the neighbour, its name and the task's index: lowest wins.
    pub rank: (u64, String, usize),
    pub start: u64,
    pub end: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Which offer each needed sub-log is pulled by.
    pub pulls: HashMap<SubLogKey, Offer>,
    /// Target topics a neighbour writes to, created here before their first record:
    /// (task, topic, partitions).
    pub topics: Vec<(Arc<Task>, String, u32)>,
    /// Offers refused because another source topic already lands in the same target
    /// sub-log: (task, sub-log, what was wrong).
    pub collisions: Vec<(Arc<Task>, SubLogKey, String)>,
}

pub(crate) fn plan(inputs: &Inputs<'_>) -> Plan {
    let me = inputs.region;
    let view = inputs.view;
    let mut plan = Plan::default();
    let mut topics_seen = HashSet::new();
    for &(peer, advertise) in &inputs.heard {
        let Some(&link_id) = inputs.links.get(peer) else {
            continue;
        };
        for entry in &advertise.topics {
            for (index, task) in inputs.tasks.iter().enumerate() {
                if !task.running() || !task.matches(&entry.topic) {
                    continue;
                }
                if view.need(task, peer, me) == Some(Need::Store) {
                    let target = task.target_topic(&entry.topic);
                    if topics_seen.insert(target.clone()) {
                        plan.topics.push((task.clone(), target, entry.partitions));
                    }
                }
                for s in &entry.sub_logs {
                    let Some(need) = view.need(task, &s.origin, me) else {
                        continue;
                    };
                    if (need == Need::Relay && inputs.pass_through)
                        || HopPath(&s.path).admits(me, inputs.hop_limit).is_err()
                    {
                        continue;
                    }
                    let Some((_, cost)) = view
                        .candidates(me, &s.origin)
                        .iter()
                        .find(|(n, _)| n == peer)
                    else {
                        continue;
                    };
                    let key = SubLogKey {
                        topic: match need {
                            Need::Store => task.target_topic(&entry.topic),
                            // A relay keeps the source's name; the target renames.
                            Need::Relay => entry.topic.clone(),
                        },
                        partition: s.partition,
                        origin: s.origin.clone(),
                    };
                    if inputs.refused.contains(&(key.clone(), link_id)) {
                        continue;
                    }
                    let offer = Offer {
                        peer: peer.to_string(),
                        link_id,
                        task: task.clone(),
                        source_topic: entry.topic.clone(),
                        need,
                        partitions: entry.partitions,
                        rank: (*cost, peer.to_string(), index),
                        start: s.start_offset,
                        end: s.end_offset,
                        bytes: s.bytes,
                    };
                    match plan.pulls.get(&key) {
                        Some(held) if held.source_topic != offer.source_topic => {
                            // Two source topics would land in one target sub-log at the
                            // same offsets.
                            let message = format!(
                                "target topic {} already receives topic {} (task {}); topic {} of task {} would mix into it",
                                key.topic,
                                held.source_topic,
                                held.task.name(),
                                offer.source_topic,
                                task.name()
                            );
                            plan.collisions.push((task.clone(), key, message));
                        }
                        Some(held) if held.rank <= offer.rank => {}
                        _ => {
                            plan.pulls.insert(key, offer);
                        }
                    }
                }
            }
        }
    }
    plan
}
