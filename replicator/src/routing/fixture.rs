//! Test fixtures for the pure decisions: a triangle of regions and the route view over it.

use std::sync::Arc;

use topology::{LinkStates, ResidencySpec, Topology, TopologySpec};

use super::RouteView;
use crate::tasks::{Task, TaskSpec, spec};

/// a - b (10), b - c (10), a - c (30): c reaches a cheaper through b.
pub(crate) fn triangle(me: &str) -> Topology {
    let mut spec = TopologySpec::mesh(&["a", "b", "c"]);
    spec.links[1].cost = 30; // a - c
    for r in ["a", "b", "c"] {
        spec.set_address(r, "127.0.0.1:1".parse().unwrap());
    }
    Topology::new(&spec, &ResidencySpec::default(), me).unwrap()
}

/// Every link up, as every region reports it.
pub(crate) fn all_up(topology: &Topology) -> LinkStates {
    LinkStates::all_up(topology)
}

/// The tasks, validated as one set.
pub(crate) fn tasks(topology: &Topology, specs: &[TaskSpec]) -> Vec<Arc<Task>> {
    spec::validate(specs, topology).unwrap()
}

/// The route view with every link up.
pub(crate) fn view(topology: &Topology, tasks: &[Arc<Task>]) -> RouteView {
    RouteView::compute(topology, tasks, &all_up(topology))
}
