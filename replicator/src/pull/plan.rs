//! Pull planning, pure: from every neighbour's latest advertisement and the route view,
//! which link pulls each sub-log this region needs. For each sub-log the neighbour on the
//! cheapest path that offers it wins (ties: the neighbour's name, then the task's place
//! in the task set), unless it refused the sub-log a moment ago. Two source topics renamed
//! into one target sub-log are a collision: the first stays, the other is reported.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::wire::message as msg;

use broker::meta::MessageType;

use crate::observe::SubLogKey;
use crate::routing::{HopPath, Need, RouteView};
use crate::tasks::Task;

/// What a plan is made from.
pub(crate) struct Inputs<'a> {
    pub region: &'a str,
    pub view: &'a RouteView,
    pub tasks: &'a [Arc<Task>],
    /// The latest advertisement of each neighbour.
    pub heard: Vec<(&'a str, &'a msg::Advertise)>,
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
    /// The source topic's message type, which a target created here inherits.
    pub message_type: MessageType,
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
    /// (task, topic, partitions, message type).
    pub topics: Vec<(Arc<Task>, String, u32, MessageType)>,
    /// Offers refused because another source topic already lands in the same target
    /// sub-log: (task, sub-log, what was wrong).
    pub collisions: Vec<(Arc<Task>, SubLogKey, String)>,
}

/// The message type an advertised topic carries (unknown: normal, as from an older peer).
fn message_type_of(entry: &msg::TopicOffer) -> MessageType {
    MessageType::parse(&entry.message_type).unwrap_or_default()
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
                        plan.topics.push((
                            task.clone(),
                            target,
                            entry.partitions,
                            message_type_of(entry),
                        ));
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
                        message_type: message_type_of(entry),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::fixture::{tasks, triangle, view};
    use crate::tasks::TaskSpec;

    fn advertise(topic: &str, path: &[&str], end: u64) -> msg::Advertise {
        msg::Advertise {
            topics: vec![msg::TopicOffer {
                topic: topic.into(),
                partitions: 2,
                message_type: "fifo".into(),
                sub_logs: vec![msg::SubLogOffer {
                    partition: 1,
                    path: path.iter().map(|r| r.to_string()).collect(),
                    origin: path[0].into(),
                    start_offset: 0,
                    end_offset: end,
                    bytes: end * 10,
                    incarnation: 7,
                }],
            }],
        }
    }

    fn key(topic: &str) -> SubLogKey {
        SubLogKey {
            topic: topic.into(),
            partition: 1,
            origin: "a".into(),
        }
    }

    /// Plans in region c of the triangle, with links to a (id 1) and b (id 2).
    fn plan_in_c(
        tasks: &[Arc<Task>],
        heard: &[(&str, msg::Advertise)],
        refused: &HashSet<(SubLogKey, u64)>,
        hop_limit: usize,
    ) -> Plan {
        let topology = triangle("c");
        let view = view(&topology, tasks);
        let links = HashMap::from([("a".to_string(), 1), ("b".to_string(), 2)]);
        plan(&Inputs {
            region: "c",
            view: &view,
            tasks,
            heard: heard.iter().map(|(p, a)| (*p, a)).collect(),
            links: &links,
            refused,
            pass_through: false,
            hop_limit,
        })
    }

    fn orders_a_to_c() -> Vec<Arc<Task>> {
        tasks(
            &triangle("c"),
            &[TaskSpec::new("t", &["a"], &["c"], "orders")],
        )
    }

    #[test]
    fn the_neighbour_on_the_cheapest_path_pulls() {
        let heard = [
            ("a", advertise("orders", &["a"], 10)),
            ("b", advertise("orders", &["a", "b"], 8)),
        ];
        let plan = plan_in_c(&orders_a_to_c(), &heard, &HashSet::new(), 8);
        let offer = &plan.pulls[&key("orders")];
        assert_eq!(offer.peer, "b", "a - b - c costs 20, a - c 30");
        assert_eq!((offer.link_id, offer.end, offer.need), (2, 8, Need::Store));
        assert_eq!(plan.pulls.len(), 1);
    }

    #[test]
    fn a_link_that_refused_the_sub_log_is_passed_over() {
        let heard = [
            ("a", advertise("orders", &["a"], 10)),
            ("b", advertise("orders", &["a", "b"], 8)),
        ];
        let refused = HashSet::from([(key("orders"), 2)]);
        let plan = plan_in_c(&orders_a_to_c(), &heard, &refused, 8);
        assert_eq!(plan.pulls[&key("orders")].peer, "a");
    }

    #[test]
    fn data_that_passed_here_or_reached_the_hop_limit_is_not_pulled() {
        let looped = [("b", advertise("orders", &["a", "c", "b"], 8))];
        assert!(
            plan_in_c(&orders_a_to_c(), &looped, &HashSet::new(), 8)
                .pulls
                .is_empty()
        );
        let long = [("b", advertise("orders", &["a", "b"], 8))];
        assert!(
            plan_in_c(&orders_a_to_c(), &long, &HashSet::new(), 2)
                .pulls
                .is_empty()
        );
    }

    #[test]
    fn a_neighbour_without_an_open_link_or_a_paused_task_gives_nothing() {
        let heard = [("z", advertise("orders", &["a"], 8))];
        assert!(
            plan_in_c(&orders_a_to_c(), &heard, &HashSet::new(), 8)
                .pulls
                .is_empty()
        );
        let mut paused = TaskSpec::new("t", &["a"], &["c"], "orders");
        paused.state = crate::tasks::TaskState::Paused;
        let tasks = tasks(&triangle("c"), &[paused]);
        let heard = [("a", advertise("orders", &["a"], 8))];
        assert!(
            plan_in_c(&tasks, &heard, &HashSet::new(), 8)
                .pulls
                .is_empty()
        );
    }

    #[test]
    fn a_target_topic_is_created_before_its_first_record_and_renamed() {
        let mut renamed = TaskSpec::new("t", &["a"], &["c"], "orders");
        renamed.rename = Some("copy.{topic}".into());
        let tasks = tasks(&triangle("c"), &[renamed]);
        let mut empty = advertise("orders", &["a"], 0);
        empty.topics[0].sub_logs.clear();
        let plan = plan_in_c(&tasks, &[("a", empty)], &HashSet::new(), 8);
        assert!(plan.pulls.is_empty());
        let topics: Vec<(&str, u32, MessageType)> = plan
            .topics
            .iter()
            .map(|(_, t, n, m)| (t.as_str(), *n, *m))
            .collect();
        assert_eq!(
            topics,
            [("copy.orders", 2, MessageType::Fifo)],
            "the type is inherited"
        );
    }

    #[test]
    fn two_source_topics_renamed_into_one_sub_log_collide() {
        let topology = triangle("c");
        let mut x = TaskSpec::new("tx", &["a"], &["c"], "x");
        x.rename = Some("merged".into());
        let mut y = TaskSpec::new("ty", &["a"], &["c"], "y");
        y.rename = Some("merged".into());
        // Each valid on its own (as records from two regions can be until the catalogs meet).
        let mut both = tasks(&topology, &[x]);
        both.extend(tasks(&topology, &[y]));
        let mut heard = advertise("x", &["a"], 5);
        heard.topics.extend(advertise("y", &["a"], 5).topics);
        let plan = plan_in_c(&both, &[("a", heard)], &HashSet::new(), 8);
        assert_eq!(plan.pulls.len(), 1);
        assert_eq!(plan.pulls[&key("merged")].source_topic, "x");
        assert_eq!(plan.collisions.len(), 1);
        assert!(plan.collisions[0].2.contains("would mix into it"));
    }
}
