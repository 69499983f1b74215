//! Link-state routing. Every region floods the state of its own links (up or down, RTT)
//! to its neighbours, who pass on what is newer; so every region holds the same
//! [`LinkStates`] and computes the same [`Routes`] from it.
//!
//! The route of an origin's data to a target is a chain of "next hops": the target pulls
//! from the neighbour through which the origin is cheapest, not counting paths back
//! through the target itself; that neighbour, unless it is the origin, pulls the same way,
//! and so on. Because the rule is deterministic (ties go to the lower name), every region
//! knows whether it is a relay on a route, which is what lets a region that is not a
//! task's target carry the task's data. A link counts only when no end of it says it is
//! down.

use std::collections::{BTreeMap, BTreeSet};

use crate::spec::Topology;

/// What one region says about its own links.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    /// Higher is newer; a region's sequence only grows (across restarts too: it starts
    /// from the wall clock).
    pub seq: u64,
    /// Per neighbour: whether the link is up, and its smoothed RTT in microseconds.
    pub links: BTreeMap<String, (bool, u64)>,
}

/// The latest [`LinkState`] of every region heard from.
#[derive(Clone, Debug, Default)]
pub struct LinkStates {
    states: BTreeMap<String, LinkState>,
}

impl LinkStates {
    /// Stores `state` of `region` if it is newer than what is held; returns whether it was.
    /// Every link of `topology` up, as each of its regions reports it (sequence 1): the
    /// states of a healthy deployment, for tests and what-if planning.
    pub fn all_up(topology: &Topology) -> Self {
        let mut states = LinkStates::default();
        for r in topology.regions() {
            let links = topology
                .neighbours(r)
                .into_iter()
                .map(|n| (n.region, (true, 0)))
                .collect();
            states.update(r, LinkState { seq: 1, links });
        }
        states
    }

    pub fn update(&mut self, region: &str, state: LinkState) -> bool {
        match self.states.get(region) {
            Some(held) if held.seq >= state.seq => false,
            _ => {
                self.states.insert(region.to_string(), state);
                true
            }
        }
    }

    pub fn get(&self, region: &str) -> Option<&LinkState> {
        self.states.get(region)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &LinkState)> {
        self.states.iter()
    }

    /// Whether the link between `a` and `b` is up: every end that has reported on it says
    /// so, and at least one has (a peer that does not flood link states, or whose state
    /// has not arrived yet, leaves the decision to the other end).
    pub fn link_up(&self, a: &str, b: &str) -> bool {
        let says = |x: &str, y: &str| {
            self.states
                .get(x)
                .and_then(|s| s.links.get(y))
                .map(|(up, _)| *up)
        };
        match (says(a, b), says(b, a)) {
            (Some(x), Some(y)) => x && y,
            (Some(x), None) | (None, Some(x)) => x,
            (None, None) => false,
        }
    }
}

/// Routes computed from a topology and the link states, for every region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// (region, origin) -> the neighbours of region to pull origin's data from, cheapest
    /// first, with the cost of the path through each.
    candidates: BTreeMap<(String, String), Vec<(String, u64)>>,
}

impl Routes {
    pub fn compute(topology: &Topology, states: &LinkStates) -> Self {
        let regions: Vec<&str> = topology.regions().collect();
        let mut edges: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for link in topology.links() {
            let [a, b] = &link.between;
            if states.link_up(a, b) {
                edges.entry(a).or_default().push((b, u64::from(link.cost)));
                edges.entry(b).or_default().push((a, u64::from(link.cost)));
            }
        }
        let mut candidates = BTreeMap::new();
        for &x in &regions {
            let Some(neighbours) = edges.get(x) else {
                continue;
            };
            for &origin in &regions {
                if origin == x {
                    continue;
                }
                // Distances to `origin` in the graph without `x`: a path through a
                // neighbour must not come back through this region.
                let dist = dijkstra(&edges, origin, x);
                let mut via: Vec<(String, u64)> = neighbours
                    .iter()
                    .filter_map(|&(n, cost)| dist.get(n).map(|d| (n.to_string(), cost + d)))
                    .collect();
                via.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
                if !via.is_empty() {
                    candidates.insert((x.to_string(), origin.to_string()), via);
                }
            }
        }
        Routes { candidates }
    }

    /// Where `region` can pull `origin`'s data from, cheapest first.
    pub fn candidates(&self, region: &str, origin: &str) -> &[(String, u64)] {
        self.candidates
            .get(&(region.to_string(), origin.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// The neighbour `region` pulls `origin`'s data from.
    pub fn next_hop(&self, region: &str, origin: &str) -> Option<&str> {
        self.candidates(region, origin)
            .first()
            .map(|(n, _)| n.as_str())
    }

    /// The cost of the best path from `region` to `origin`.
    pub fn cost(&self, region: &str, origin: &str) -> Option<u64> {
        self.candidates(region, origin).first().map(|(_, c)| *c)
    }

    /// The route of `origin`'s data to `target`, origin first, or `None` when there is
    /// none over links that are up.
    pub fn path(&self, origin: &str, target: &str) -> Option<Vec<String>> {
        let mut path = vec![target.to_string()];
        let mut seen = BTreeSet::from([target.to_string()]);
        let mut at = target.to_string();
        while at != origin {
            let next = self.next_hop(&at, origin)?.to_string();
            if !seen.insert(next.clone()) {
                return None;
            }
            path.push(next.clone());
            at = next;
        }
        path.reverse();
        Some(path)
    }
}

/// Shortest distances from `from` to every region reachable without passing `without`.
fn dijkstra<'a>(
    edges: &BTreeMap<&'a str, Vec<(&'a str, u64)>>,
    from: &'a str,
    without: &str,
) -> BTreeMap<&'a str, u64> {
    let mut done: BTreeMap<&str, u64> = BTreeMap::new();
    let mut open: BTreeMap<&str, u64> = BTreeMap::from([(from, 0)]);
    while let Some((&at, &d)) = open.iter().min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(b.0))) {
        open.remove(at);
        done.insert(at, d);
        for &(next, cost) in edges.get(at).into_iter().flatten() {
            if next == without || done.contains_key(next) {
                continue;
            }
            let nd = d + cost;
            let slot = open.entry(next).or_insert(u64::MAX);
            *slot = (*slot).min(nd);
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::residency::ResidencySpec;
    use crate::spec::{LinkSpec, TopologySpec};

    fn triangle() -> Topology {
        let mut spec = TopologySpec::mesh(&["a", "b", "c"]);
        spec.links[1].cost = 30; // a - c
        for r in ["a", "b", "c"] {
            spec.set_address(r, "127.0.0.1:1".parse().unwrap());
        }
        Topology::new(&spec, &ResidencySpec::default(), "a").unwrap()
    }

    fn all_up(t: &Topology) -> LinkStates {
        LinkStates::all_up(t)
    }

    fn report(states: &mut LinkStates, region: &str, peer: &str, up: bool) {
        let mut s = states.get(region).cloned().unwrap();
        s.seq += 1;
        s.links.insert(peer.to_string(), (up, 0));
        assert!(states.update(region, s));
    }

    #[test]
    fn cheapest_path_first_and_reroute_when_a_link_is_down() {
        let t = triangle();
        let mut states = all_up(&t);
        let routes = Routes::compute(&t, &states);
        // a - b 10, b - c 10, a - c 30: c reaches a cheaper through b.
        assert_eq!(
            routes.candidates("c", "a"),
            [("b".into(), 20), ("a".into(), 30)]
        );
        assert_eq!(routes.path("a", "c").unwrap(), ["a", "b", "c"]);
        assert_eq!(routes.path("b", "c").unwrap(), ["b", "c"]);

        // One end saying down is enough.
        report(&mut states, "b", "c", false);
        let routes = Routes::compute(&t, &states);
        assert_eq!(routes.path("a", "c").unwrap(), ["a", "c"]);
        assert_eq!(routes.path("b", "c").unwrap(), ["b", "a", "c"]);

        report(&mut states, "a", "c", false);
        let routes = Routes::compute(&t, &states);
        assert_eq!(routes.path("a", "c"), None);
        assert_eq!(routes.candidates("c", "a"), []);
    }

    #[test]
    fn a_neighbour_whose_only_path_comes_back_is_no_candidate() {
        let spec = TopologySpec {
            regions: TopologySpec::mesh(&["a", "b", "c"]).regions,
            links: vec![LinkSpec::new("a", "b", 10), LinkSpec::new("b", "c", 10)],
        };
        let mut spec = spec;
        spec.set_address("b", "127.0.0.1:1".parse().unwrap());
        spec.set_address("c", "127.0.0.1:1".parse().unwrap());
        let t = Topology::new(&spec, &ResidencySpec::default(), "a").unwrap();
        let routes = Routes::compute(&t, &all_up(&t));
        assert_eq!(routes.candidates("b", "a"), [("a".into(), 10)]);
        assert_eq!(routes.candidates("c", "a"), [("b".into(), 20)]);
        assert_eq!(routes.path("c", "a").unwrap(), ["c", "b", "a"]);
    }

    #[test]
    fn an_end_that_has_not_reported_leaves_the_link_to_the_other() {
        let mut states = LinkStates::default();
        let says = |peer: &str, up| LinkState {
            seq: 1,
            links: BTreeMap::from([(peer.to_string(), (up, 0))]),
        };
        assert!(!states.link_up("a", "b"));
        states.update("a", says("b", true));
        assert!(states.link_up("a", "b") && states.link_up("b", "a"));
        states.update("b", says("a", false));
        assert!(!states.link_up("a", "b"));
    }

    #[test]
    fn older_states_are_ignored() {
        let mut states = LinkStates::default();
        let s = |seq| LinkState {
            seq,
            links: BTreeMap::new(),
        };
        assert!(states.update("a", s(5)));
        assert!(!states.update("a", s(5)));
        assert!(!states.update("a", s(4)));
        assert!(states.update("a", s(6)));
    }
}
