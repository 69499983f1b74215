//! What a region advertises to a neighbour: every sub-log the neighbour needs (as a
//! task's target or as a relay on a route, see `routing`) that this region holds, or, on a
//! pass-through relay, can fetch from its next hop towards the origin.

use std::collections::BTreeMap;

use crate::wire::message as msg;

use crate::node::Node;
use crate::observe::SubLogKey;
use crate::routing::{HopPath, Need, RouteView};

pub(crate) fn advertisement(node: &Node, peer: &str) -> msg::Advertise {
    let view = node.view();
    let tasks = node.active_tasks();
    let needed = |topic: &str, origin: &str| {
        tasks
            .iter()
            .any(|t| t.matches(topic) && view.need(t, origin, peer).is_some())
    };
    let mut topics: BTreeMap<String, msg::TopicOffer> = BTreeMap::new();
    for config in node.broker.topics() {
        let Ok(topic) = node.broker.topic(&config.name) else {
            continue;
        };
        let mut sub_logs = Vec::new();
        for partition in &topic.partitions {
            for s in partition.sub_logs() {
                if !needed(&config.name, &s.origin) {
                    continue;
                }
                let key = SubLogKey {
                    topic: config.name.clone(),
                    partition: partition.index(),
                    origin: s.origin.clone(),
                };
                let path = node.path_of(&key);
                if HopPath(&path).passed(peer) {
                    continue;
                }
                sub_logs.push(msg::SubLogOffer {
                    partition: partition.index(),
                    path,
                    origin: s.origin,
                    start_offset: s.start_offset,
                    end_offset: s.durable_end,
                    bytes: s.bytes,
                    incarnation: s.incarnation,
                });
            }
        }
        // A topic the peer is a target of shows even before it holds records, so that the
        // peer creates it.
        let created = tasks.iter().any(|t| {
            t.matches(&config.name) && view.need(t, &node.region, peer) == Some(Need::Store)
        });
        if !sub_logs.is_empty() || created {
            topics.insert(
                config.name.clone(),
                msg::TopicOffer {
                    topic: config.name.clone(),
                    partitions: config.partitions,
                    sub_logs,
                    message_type: config.message_type.as_str().to_string(),
                },
            );
        }
    }
    if node.pass_through() {
        add_relayed(node, &view, peer, &mut topics);
    }
    msg::Advertise {
        topics: topics.into_values().collect(),
    }
}

/// On a pass-through relay: the sub-logs `peer` needs that this region relays without
/// storing, as advertised by this region's next hop towards their origin.
fn add_relayed(
    node: &Node,
    view: &RouteView,
    peer: &str,
    topics: &mut BTreeMap<String, msg::TopicOffer>,
) {
    let me = &node.region;
    let tasks = node.active_tasks();
    let heard = node.heard.load();
    for (upstream, (_, advertise)) in heard.iter() {
        if upstream == peer {
            continue;
        }
        for entry in &advertise.topics {
            for s in &entry.sub_logs {
                let relayed = tasks.iter().any(|t| {
                    t.matches(&entry.topic)
                        && view.need(t, &s.origin, peer).is_some()
                        && view.need(t, &s.origin, me) == Some(Need::Relay)
                });
                if !relayed
                    || HopPath(&s.path).passed(peer)
                    || view.upstream_for(me, &s.origin, peer) != Some(upstream.as_str())
                {
                    continue;
                }
                let s = s.clone();
                topics
                    .entry(entry.topic.clone())
                    .or_insert_with(|| msg::TopicOffer {
                        topic: entry.topic.clone(),
                        partitions: entry.partitions,
                        sub_logs: Vec::new(),
                        message_type: entry.message_type.clone(),
                    })
                    .sub_logs
                    .push(s);
            }
        }
    }
}
