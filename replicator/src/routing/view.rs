//! The route view: the routes computed from the link states (topology crate) and what
//! they mean for the running tasks: which region must hold which origin's data of which
//! task, as a target (it stores it for its consumers) or as a relay on a route between an
//! origin and a target. Pure; the node swaps in a new view whenever links or tasks change.

use std::collections::BTreeSet;
use std::sync::Arc;

use topology::{LinkStates, Routes, Topology};

use crate::tasks::Task;

/// Why a region should hold an origin's sub-logs of a task's topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// The region is a target of the task for that origin.
    Store,
    /// The region is on the route from the origin to a target.
    Relay,
}

/// The routes and what follows from them, swapped whole on every change.
#[derive(Default, PartialEq, Eq)]
pub(crate) struct RouteView {
    pub routes: Routes,
    /// (task, origin, region): `region` relays `origin`'s data of `task`.
    duties: BTreeSet<(String, String, String)>,
}

impl RouteView {
    /// The routes over `states`, and the relay duties they give the running `tasks`.
    pub fn compute(topology: &Topology, tasks: &[Arc<Task>], states: &LinkStates) -> Self {
        let routes = Routes::compute(topology, states);
        let regions: Vec<&str> = topology.regions().collect();
        let mut duties = BTreeSet::new();
        for task in tasks.iter().filter(|t| t.running()) {
            for &origin in &regions {
                for &target in &regions {
                    if !task.flows(origin, target) {
                        continue;
                    }
                    let Some(path) = routes.path(origin, target) else {
                        continue;
                    };
                    for relay in &path[1..path.len() - 1] {
                        duties.insert((task.name().to_string(), origin.to_string(), relay.clone()));
                    }
                }
            }
        }
        RouteView { routes, duties }
    }

    /// Whether `region` takes part in `task`: one of its regions, or a relay on a route
    /// between two of them.
    pub fn takes_part(&self, task: &Task, region: &str) -> bool {
        task.spec.involves(region)
            || self
                .duties
                .iter()
                .any(|(t, _, r)| t == task.name() && r == region)
    }

    /// Whether and why `region` should hold `origin`'s sub-logs of `task`'s topics.
    pub fn need(&self, task: &Task, origin: &str, region: &str) -> Option<Need> {
        if origin == region || !task.running() {
            return None;
        }
        if task.flows(origin, region) {
            return Some(Need::Store);
        }
        self.duties
            .contains(&(
                task.name().to_string(),
                origin.to_string(),
                region.to_string(),
            ))
            .then_some(Need::Relay)
    }

    /// Where `region` pulls `origin`'s data from, cheapest first.
    pub fn candidates(&self, region: &str, origin: &str) -> &[(String, u64)] {
        self.routes.candidates(region, origin)
    }

    /// The neighbour a pass-through relay in `region` fetches `origin`'s data from for
    /// `downstream`: the cheapest route towards the origin that does not go back through
    /// `downstream`.
    pub fn upstream_for(&self, region: &str, origin: &str, downstream: &str) -> Option<&str> {
        self.candidates(region, origin)
            .iter()
            .find(|(n, _)| n != downstream)
            .map(|(n, _)| n.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::fixture::{all_up, tasks, triangle, view};
    use crate::tasks::TaskSpec;

    #[test]
    fn a_region_on_the_route_relays_and_the_target_stores() {
        let topology = triangle("a");
        let tasks = tasks(&topology, &[TaskSpec::new("t", &["a"], &["c"], "orders")]);
        let view = view(&topology, &tasks);
        let task = &tasks[0];
        assert_eq!(view.need(task, "a", "c"), Some(Need::Store));
        assert_eq!(
            view.need(task, "a", "b"),
            Some(Need::Relay),
            "a - b - c is cheapest"
        );
        assert_eq!(
            view.need(task, "a", "a"),
            None,
            "an origin never needs its own data"
        );
        assert_eq!(view.need(task, "c", "a"), None, "one way");
        assert!(view.takes_part(task, "b") && view.takes_part(task, "c"));
    }

    #[test]
    fn a_relay_fetches_upstream_but_never_back_through_its_downstream() {
        let topology = triangle("b");
        let view = view(&topology, &[]);
        assert_eq!(view.upstream_for("b", "a", "c"), Some("a"));
        assert_eq!(
            view.upstream_for("c", "a", "b"),
            Some("a"),
            "b is excluded: the direct link"
        );
        assert_eq!(view.upstream_for("b", "a", "a"), Some("c"));
    }

    #[test]
    fn a_cut_link_moves_the_relay_duty() {
        let topology = triangle("a");
        let tasks = tasks(&topology, &[TaskSpec::new("t", &["a"], &["c"], "orders")]);
        let mut states = all_up(&topology);
        for (region, peer) in [("a", "b"), ("b", "a")] {
            let mut state = states.get(region).cloned().unwrap();
            state.seq += 1;
            state.links.insert(peer.to_string(), (false, 0));
            states.update(region, state);
        }
        let view = RouteView::compute(&topology, &tasks, &states);
        assert_eq!(view.need(&tasks[0], "a", "b"), None, "a - c direct now");
        assert_eq!(view.need(&tasks[0], "a", "c"), Some(Need::Store));
    }
}
