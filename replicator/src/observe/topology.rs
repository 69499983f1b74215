//! The deployment as one region sees it, for the console's topology picture: every region
//! (pass-through relays and this region marked, reachability), every configured link (its
//! kind, dialling side and cost) with the state and RTT its ends last flooded, and for this
//! region's own links the bytes sent and received. Built by a pure function from the
//! configuration, the link-state database and the local link table.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use topology::{LinkKind, LinkStates, Topology};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopologyView {
    pub this: String,
    pub regions: Vec<RegionNode>,
    pub links: Vec<LinkEdge>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionNode {
    pub name: String,
    pub this: bool,
    /// Relays without storing (`[residency] pass_through`).
    pub pass_through: bool,
    /// This region has a route to it (itself: true).
    pub reachable: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkEdge {
    pub between: [String; 2],
    pub kind: LinkKind,
    /// The region that opens the connection (a vpc link's private side).
    pub dialer: String,
    pub cost: u32,
    /// Up as both ends last flooded it; `None`: neither end has said.
    pub up: Option<bool>,
    /// Smoothed RTT as an end last flooded it.
    pub rtt_ms: Option<f64>,
    /// This region's own links: bytes on the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_bytes: Option<u64>,
}

/// The view of region `me`: `reachable` tells which regions it has a route to, `local`
/// the bytes of its own links by neighbour.
pub fn view(
    me: &str,
    topology: &Topology,
    states: &LinkStates,
    reachable: impl Fn(&str) -> bool,
    local: &BTreeMap<String, (u64, u64)>,
) -> TopologyView {
    let regions = topology
        .regions()
        .map(|r| RegionNode {
            name: r.to_string(),
            this: r == me,
            pass_through: topology.residency.pass_through(r),
            reachable: r == me || reachable(r),
        })
        .collect();
    let said = |a: &str, b: &str| states.get(a).and_then(|s| s.links.get(b)).copied();
    let links = topology
        .links()
        .iter()
        .map(|l| {
            let [a, b] = &l.between;
            let (from_a, from_b) = (said(a, b), said(b, a));
            let up = match (from_a, from_b) {
                (None, None) => None,
                (x, y) => Some(x.is_none_or(|s| s.0) && y.is_none_or(|s| s.0)),
            };
            let rtt_us = [from_a, from_b]
                .into_iter()
                .flatten()
                .map(|s| s.1)
                .filter(|us| *us > 0)
                .min();
            let mine = if a == me {
                local.get(b)
            } else if b == me {
                local.get(a)
            } else {
                None
            };
            LinkEdge {
                between: l.between.clone(),
                kind: l.kind,
                dialer: l.dialer().to_string(),
                cost: l.cost,
                up,
                rtt_ms: rtt_us.map(|us| us as f64 / 1000.0),
                sent_bytes: mine.map(|m| m.0),
                received_bytes: mine.map(|m| m.1),
            }
        })
        .collect();
    TopologyView {
        this: me.to_string(),
        regions,
        links,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topology::{LinkSpec, LinkState, TopologySpec};

    #[test]
    fn links_carry_what_their_ends_flooded_and_relays_are_marked() {
        let mut spec = TopologySpec::mesh(&["ap", "eu", "us"]);
        spec.links
            .retain(|l| l.between != ["ap".to_string(), "us".to_string()]);
        let mut vpc = LinkSpec::new("ap", "us", 20);
        vpc.kind = LinkKind::Vpc;
        vpc.dial = Some("us".into());
        spec.links.push(vpc);
        let residency = topology::ResidencySpec {
            pass_through: vec!["eu".into()],
            ..Default::default()
        };
        for region in ["ap", "eu", "us"] {
            spec.set_address(region, "127.0.0.1:1".parse().unwrap());
        }
        let topology = Topology::new(&spec, &residency, "ap").unwrap();
        let mut states = LinkStates::default();
        states.update(
            "ap",
            LinkState {
                seq: 1,
                links: [
                    ("eu".to_string(), (true, 2_000)),
                    ("us".to_string(), (false, 0)),
                ]
                .into(),
            },
        );
        let local = [("eu".to_string(), (100, 200))].into();
        let v = view("ap", &topology, &states, |r| r == "eu", &local);
        let eu = v.regions.iter().find(|r| r.name == "eu").unwrap();
        assert!(eu.pass_through && eu.reachable && !eu.this);
        assert!(!v.regions.iter().find(|r| r.name == "us").unwrap().reachable);
        let link = |a: &str, b: &str| {
            v.links
                .iter()
                .find(|l| l.between.contains(&a.to_string()) && l.between.contains(&b.to_string()))
                .unwrap()
        };
        let ap_eu = link("ap", "eu");
        assert_eq!(
            (ap_eu.up, ap_eu.rtt_ms, ap_eu.sent_bytes),
            (Some(true), Some(2.0), Some(100))
        );
        let ap_us = link("ap", "us");
        assert_eq!(
            (ap_us.up, ap_us.kind, ap_us.dialer.as_str()),
            (Some(false), LinkKind::Vpc, "us")
        );
        let eu_us = link("eu", "us");
        assert_eq!(
            (eu_us.up, eu_us.sent_bytes),
            (None, None),
            "no one said; not ours"
        );
    }
}
