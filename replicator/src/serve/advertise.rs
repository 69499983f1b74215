//! What a region advertises to a neighbour: every sub-log the neighbour needs (as a
//! task's target or as a relay on a route, see `routing`) that this region holds, or, on a
//! pass-through relay, can fetch from its next hop towards the origin; and its own sub-log
//! of each partition the neighbour needs before it has a record (end 0), so that the
//! neighbour is subscribed when the first record is written: no discovery on the data path.

use std::collections::BTreeMap;

use broker::storage::PartitionStore;

use crate::wire::message as msg;

use crate::node::Node;
use crate::observe::SubLogKey;
use crate::routing::{HopPath, Need, RouteView};

/// Own sub-logs offered before their first record, per advertisement: each one a peer
/// subscribes to holds a stream of the link (at most 16 384), so a region with many more
/// partitions than that offers the rest once they are written.
const MAX_UNWRITTEN_OFFERS: usize = 4_096;

pub(crate) fn advertisement(node: &Node, peer: &str) -> msg::Advertise {
    let view = node.view();
    let tasks = node.active_tasks();
    let needed = |topic: &str, origin: &str| {
        tasks
            .iter()
            .any(|t| t.matches(topic) && view.need(t, origin, peer).is_some())
    };
    let mut topics: BTreeMap<String, msg::TopicOffer> = BTreeMap::new();
    let mut unwritten = 0;
    for config in node.broker.topics() {
        let Ok(topic) = node.broker.topic(&config.name) else {
            continue;
        };
        let mut sub_logs = Vec::new();
        for partition in &topic.partitions {
            let mut own_written = false;
            for s in partition.sub_logs() {
                own_written |= s.origin == node.region;
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
            if !own_written
                && unwritten < MAX_UNWRITTEN_OFFERS
                && needed(&config.name, &node.region)
            {
                unwritten += 1;
                sub_logs.push(unwritten_offer(node, &config.name, partition.as_ref()));
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

/// This region's own sub-log of `partition`, offered before its first record: the peer
/// subscribes now, and the first record reaches it one one-way delay after it is durable
/// here, instead of after an advertisement and a subscribe round trip.
fn unwritten_offer(node: &Node, topic: &str, partition: &dyn PartitionStore) -> msg::SubLogOffer {
    let key = SubLogKey {
        topic: topic.to_string(),
        partition: partition.index(),
        origin: node.region.clone(),
    };
    msg::SubLogOffer {
        partition: partition.index(),
        path: node.path_of(&key),
        origin: node.region.clone(),
        start_offset: 0,
        end_offset: 0,
        bytes: 0,
        incarnation: partition.incarnation(),
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
