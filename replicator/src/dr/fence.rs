//! The produce fence of DR tasks, installed as the broker's write gate.

use std::sync::Weak;

use crate::node::Node;

/// Refuses produce where a DR task says this region may not write. It reads the published
/// task set only (no lock), since it runs on every produce.
pub(crate) struct Gate(pub Weak<Node>);

impl broker::broker::WriteGate for Gate {
    fn refuses(&self, topic: &str) -> Option<String> {
        let node = self.0.upgrade()?;
        node.active_tasks()
            .iter()
            .find_map(|t| t.refuses_produce(&node.region, topic))
    }
}
