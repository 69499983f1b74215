//! Which node of the region pulls each sub-log, pure. The planning node (the holder of
//! the region's replication lease) plans as before — which neighbour each needed sub-log
//! comes from — and then gives each sub-log to one node alive: the node whose hash with
//! the sub-log is highest (rendezvous hashing). Every sub-log has exactly one puller; when
//! a node joins it takes about its share from the others and nothing moves between the
//! rest, and when one dies only its sub-logs move. A sub-log from a neighbour the region
//! does not dial (it dials in, as a VPC link's private side does) stays with the planning
//! node, which holds the only connection to it.
//!
//! The division is stored as one [`Assignment`], written by the planning node; a node
//! pulls what an assignment gives it only while the assignment's author holds the
//! replication lease ([`mine`]), so a new holder's division replaces an old one's at once.
//!
//! Serving is divided the same way: a node dials a neighbour's nodes in its own order
//! ([`dial_order`], rendezvous hashing again), the neighbour's planning node (where this
//! region's link is held, which the assignment names) last, so that the pulls a region
//! gives away are served by the neighbour's other nodes, spread among them.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::observe::SubLogKey;

/// The division of a region's pulls, as its planning node wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The node that wrote it: the holder of the replication lease then.
    pub holder: String,
    /// The pulls given to nodes other than the holder, in sub-log order.
    pub pulls: Vec<Assigned>,
    /// Each neighbour's node holding the link with this region, by the address it answers at.
    #[serde(default)]
    pub linked: BTreeMap<String, SocketAddr>,
}

/// Why a stored division could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DivisionError {
    #[error("unpacking the stored division: {0}")]
    Unpack(#[source] std::io::Error),
    #[error("the stored division unpacks to more than {0} bytes")]
    TooLarge(u64),
    #[error("reading the stored division: {0}")]
    Json(#[source] serde_json::Error),
}

/// The most a stored division may unpack to.
const MAX_UNPACKED: u64 = 256 << 20;

impl Assignment {
    /// The stored form: the JSON, packed with zstd. JSON takes about 150 bytes per pull
    /// given away, most of it names repeated from pull to pull, which packing all but
    /// removes: a region giving away 100 000 sub-logs fits one value of nats-server's
    /// default 1 MiB payload (plain JSON held some 7 000).
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a division serializes");
        zstd::bulk::compress(&json, 3).expect("zstd compresses any input in memory")
    }

    /// Reads what [`Assignment::encode`] stored.
    pub fn decode(stored: &[u8]) -> Result<Assignment, DivisionError> {
        use std::io::Read;
        let decoder = zstd::stream::read::Decoder::new(stored).map_err(DivisionError::Unpack)?;
        let mut json = Vec::new();
        decoder
            .take(MAX_UNPACKED + 1)
            .read_to_end(&mut json)
            .map_err(DivisionError::Unpack)?;
        if json.len() as u64 > MAX_UNPACKED {
            return Err(DivisionError::TooLarge(MAX_UNPACKED));
        }
        serde_json::from_slice(&json).map_err(DivisionError::Json)
    }
}

/// What one node pulls by an [`Assignment`], and where each neighbour's link is held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Share {
    pub pulls: Vec<Assigned>,
    pub linked: BTreeMap<String, SocketAddr>,
}

/// One sub-log given to one node: everything that node needs to pull it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assigned {
    /// The node that pulls it.
    pub node: String,
    /// The neighbour it is pulled from.
    pub peer: String,
    pub task: String,
    /// The topic's name at the source (the target may rename it).
    pub source_topic: String,
    /// The sub-log here.
    pub topic: String,
    pub partition: u32,
    pub origin: String,
}

impl Assigned {
    pub fn key(&self) -> SubLogKey {
        SubLogKey {
            topic: self.topic.clone(),
            partition: self.partition,
            origin: self.origin.clone(),
        }
    }
}

/// The rendezvous score of `node` with `item`: SipHash with fixed keys, the same on every
/// node and every build.
fn score(node: &str, item: impl Hash) -> u64 {
    let mut hasher = siphasher::sip::SipHasher13::new();
    node.hash(&mut hasher);
    item.hash(&mut hasher);
    hasher.finish()
}

/// The node that pulls `key`, among `members` and `me` (the planning node, always a
/// candidate): the one whose hash with the sub-log is highest.
pub fn puller<'a>(key: &SubLogKey, me: &'a str, members: &'a [String]) -> &'a str {
    let item = (&key.topic, key.partition, &key.origin);
    members
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(me))
        .max_by_key(|node| (score(node, item), *node))
        .expect("me is a candidate")
}

/// The order in which node `me` dials a neighbour's `addresses` for data-only connections:
/// by its hash with each, highest first, then `linked` (the neighbour's planning node), and
/// `lost` (the node whose connection just ended, likely gone) last.
pub fn dial_order(
    me: &str,
    addresses: &[SocketAddr],
    linked: Option<SocketAddr>,
    lost: Option<SocketAddr>,
) -> Vec<SocketAddr> {
    let mut order = addresses.to_vec();
    order.sort_by_key(|a| {
        (
            Some(*a) == lost,
            Some(*a) == linked,
            std::cmp::Reverse(score(me, a)),
            *a,
        )
    });
    order
}

/// Whether a sub-log the planning node pulls from neighbour `peer` may go to another node:
/// only one pulled from its `origin` itself, to be `stored` here, from a neighbour the
/// other nodes can `reach` (this region dials it, and it serves data-only connections).
/// One pulled through a relay may give its source up (a hole, a loop), and only the
/// planning node can then choose another; one this region relays is served only where the
/// neighbour's routes are known, at its planning node (`link::data`); a neighbour that
/// dials in (a VPC link's private side) is reached only over the planning node's link.
pub fn may_give_away(origin: &str, peer: &str, stored: bool, reach: bool) -> bool {
    peer == origin && stored && reach
}

/// Divides `planned` (each sub-log with whether it [may be given
/// away](may_give_away)) among `members` and `me`: the node pulling each, `me` for one
/// that may not.
pub fn divide<'a>(
    planned: impl IntoIterator<Item = (&'a SubLogKey, bool)>,
    me: &str,
    members: &[String],
) -> HashMap<SubLogKey, String> {
    planned
        .into_iter()
        .map(|(key, shareable)| {
            let node = if shareable {
                puller(key, me, members)
            } else {
                me
            };
            (key.clone(), node.to_string())
        })
        .collect()
}

/// What `assignment` gives node `me` to pull, when its author is `holder`, the holder of
/// the region's replication lease now (none when another node wrote it, or no node
/// holds the lease: a division by a node that no longer plans is not followed).
pub fn mine(assignment: &Assignment, holder: Option<&str>, me: &str) -> Share {
    if holder != Some(assignment.holder.as_str()) || assignment.holder == me {
        return Share::default();
    }
    Share {
        pulls: assignment
            .pulls
            .iter()
            .filter(|a| a.node == me)
            .cloned()
            .collect(),
        linked: assignment.linked.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(partition: u32) -> SubLogKey {
        SubLogKey {
            topic: "orders".into(),
            partition,
            origin: "b".into(),
        }
    }

    fn nodes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn division(members: &[String]) -> HashMap<SubLogKey, String> {
        let keys: Vec<SubLogKey> = (0..400).map(key).collect();
        divide(keys.iter().map(|k| (k, true)), "n1", members)
    }

    #[test]
    fn every_sub_log_has_one_puller_among_the_live_nodes_and_shares_are_even() {
        let members = nodes(&["n1", "n2", "n3"]);
        let division = division(&members);
        assert_eq!(division.len(), 400);
        let mut shares: HashMap<&str, usize> = HashMap::new();
        for node in division.values() {
            assert!(members.contains(node), "{node} is not alive");
            *shares.entry(node).or_default() += 1;
        }
        for (node, share) in shares {
            assert!((90..=180).contains(&share), "{node} pulls {share} of 400");
        }
    }

    #[test]
    fn only_a_dead_nodes_sub_logs_move_and_a_new_node_takes_only_from_others() {
        let three = division(&nodes(&["n1", "n2", "n3"]));
        let two = division(&nodes(&["n1", "n2"]));
        for (key, node) in &three {
            if node != "n3" {
                assert_eq!(&two[key], node, "{key:?} moved though its node lives");
            } else {
                assert_ne!(&two[key], "n3");
            }
        }
        let four = division(&nodes(&["n1", "n2", "n3", "n4"]));
        for (key, node) in &four {
            if node != "n4" {
                assert_eq!(&three[key], node, "{key:?} moved between staying nodes");
            }
        }
        assert!(
            four.values().any(|n| n == "n4"),
            "the new node takes a share"
        );
    }

    #[test]
    fn the_planning_node_pulls_alone_without_members_and_what_it_may_not_give_away() {
        let keys: Vec<SubLogKey> = (0..50).map(key).collect();
        let alone = divide(keys.iter().map(|k| (k, true)), "n1", &[]);
        assert!(alone.values().all(|n| n == "n1"));
        let members = nodes(&["n1", "n2", "n3"]);
        let kept = divide(keys.iter().map(|k| (k, false)), "n1", &members);
        assert!(kept.values().all(|n| n == "n1"));
        assert!(may_give_away("b", "b", true, true));
        assert!(
            !may_give_away("b", "vpc", true, true),
            "pulled through a relay"
        );
        assert!(
            !may_give_away("b", "b", false, true),
            "relayed by this region"
        );
        assert!(
            !may_give_away("vpc", "vpc", true, false),
            "a neighbour that dials in"
        );
    }

    #[test]
    fn a_node_follows_only_the_division_of_the_lease_holder() {
        let pull = |node: &str, partition| Assigned {
            node: node.into(),
            peer: "b".into(),
            task: "t".into(),
            source_topic: "orders".into(),
            topic: "orders".into(),
            partition,
            origin: "b".into(),
        };
        let linked: BTreeMap<String, SocketAddr> =
            [("b".to_string(), "127.0.0.1:7001".parse().unwrap())].into();
        let assignment = Assignment {
            holder: "n1".into(),
            pulls: vec![pull("n2", 0), pull("n3", 1), pull("n2", 2)],
            linked: linked.clone(),
        };
        let got = mine(&assignment, Some("n1"), "n2");
        assert_eq!(got.pulls, vec![pull("n2", 0), pull("n2", 2)]);
        assert_eq!(got.linked, linked);
        assert_eq!(
            mine(&assignment, Some("n3"), "n2"),
            Share::default(),
            "n1 no longer plans"
        );
        assert_eq!(
            mine(&assignment, None, "n2"),
            Share::default(),
            "nobody plans"
        );
        assert_eq!(
            mine(&assignment, Some("n1"), "n1"),
            Share::default(),
            "the holder pulls its own share from its plan, not from what it stored"
        );
    }

    #[test]
    fn a_division_of_a_hundred_thousand_pulls_is_stored_in_one_default_kv_value() {
        let pulls: Vec<Assigned> = (0..100_000u32)
            .map(|i| Assigned {
                node: format!("{:016x}", 0x5eed_0000_u64 + u64::from(i % 7)),
                peer: ["eu-west", "us-east"][i as usize % 2].into(),
                task: format!("orders-mirror-{}", i % 3),
                source_topic: format!("orders-{}", i / 4_000),
                topic: format!("orders-{}", i / 4_000),
                partition: i % 4_000,
                origin: ["eu-west", "us-east"][i as usize % 2].into(),
            })
            .collect();
        let division = Assignment {
            holder: "0000000000c0ffee".into(),
            pulls,
            linked: [("eu-west".to_string(), "10.0.0.1:7000".parse().unwrap())].into(),
        };
        let json = serde_json::to_vec(&division).unwrap().len();
        let stored = division.encode();
        eprintln!("{json} bytes of JSON stored in {}", stored.len());
        assert!(stored.len() < 1 << 20, "{} bytes", stored.len());
        assert_eq!(Assignment::decode(&stored).unwrap(), division);
        assert!(matches!(
            Assignment::decode(b"{\"holder\":\"n1\"}"),
            Err(DivisionError::Unpack(_))
        ));
    }

    #[test]
    fn nodes_dial_a_neighbours_other_nodes_spread_the_planning_node_and_a_lost_one_last() {
        let addresses: Vec<SocketAddr> = (1..=4)
            .map(|p| format!("127.0.0.1:700{p}").parse().unwrap())
            .collect();
        let linked = addresses[2];
        let mut first: HashMap<SocketAddr, usize> = HashMap::new();
        for n in 0..300 {
            let order = dial_order(&format!("node-{n}"), &addresses, Some(linked), None);
            assert_eq!(order.len(), 4);
            assert_eq!(order[3], linked, "the planning node is dialled last");
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, addresses, "every address once");
            *first.entry(order[0]).or_default() += 1;
        }
        assert_eq!(first.len(), 3, "every other node is some node's first");
        for (address, count) in first {
            assert!(
                (60..=140).contains(&count),
                "{address} first for {count} of 300"
            );
        }
        assert_eq!(
            dial_order("node-1", &addresses, None, None),
            dial_order("node-1", &addresses, None, None),
            "the same order every time"
        );
        let unknown: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(
            dial_order("node-1", &addresses, Some(unknown), Some(unknown)).len(),
            4
        );
        let first = dial_order("node-1", &addresses, Some(linked), None)[0];
        let order = dial_order("node-1", &addresses, Some(linked), Some(first));
        assert_eq!(
            (order[2], order[3]),
            (linked, first),
            "a node whose connection just ended goes after the planning node"
        );
    }
}
