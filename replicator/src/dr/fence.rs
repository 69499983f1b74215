//! The produce fence of DR tasks, installed as the broker's write gate: by the replicator
//! that runs for the node's whole life ([`Gate`]), or, on a node of a region of several
//! whose replication runs on whichever node holds the region's lease, by the node itself
//! ([`StoredTasks`] while another node replicates).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, Weak};

use broker::Broker;
use topology::Topology;

use crate::node::Node;
use crate::tasks::{Task, TaskRecord, TaskSpec, spec};

/// Refuses produce where a DR task says this region may not write. It reads the published
/// task set only (no lock), since it runs on every produce.
pub(crate) struct Gate(pub Weak<Node>);

impl broker::broker::WriteGate for Gate {
    fn refuses(&self, topic: &str) -> Option<String> {
        refusal(&*self.0.upgrade()?, topic)
    }
}

/// Why the node's region may not write `topic` now, by its active tasks.
pub(crate) fn refusal(node: &Node, topic: &str) -> Option<String> {
    refused_by(
        node.active_tasks().iter().map(|t| &**t),
        &node.region,
        topic,
    )
}

fn refused_by<'a>(
    mut tasks: impl Iterator<Item = &'a Task>,
    region: &str,
    topic: &str,
) -> Option<String> {
    tasks.find_map(|t| t.refuses_produce(region, topic))
}

/// The tasks as the records stored in the region's metadata say, for a node that does not
/// replicate while another node of its region does: its produce fence (DR tasks) and its
/// consumer groups' ownership. Its owner refreshes it from the shared metadata
/// periodically, so a change of a task (a failover) reaches it within that period.
pub struct StoredTasks {
    region: String,
    topology: Topology,
    /// The node's `[[tasks]]`: in force until the replicating node stores them (a stored
    /// record of the same name replaces one).
    config: Vec<TaskSpec>,
    tasks: RwLock<Arc<Vec<Arc<Task>>>>,
}

impl StoredTasks {
    /// The node's own `[[tasks]]` until [`refresh`](Self::refresh) reads the stored ones.
    pub fn new(region: &str, topology: Topology, config: Vec<TaskSpec>) -> Self {
        let stored = StoredTasks {
            region: region.to_string(),
            topology,
            config,
            tasks: RwLock::default(),
        };
        stored.take(Vec::new());
        stored
    }

    /// Reads the tasks again from `broker`'s metadata. A record that does not decode or is
    /// not valid here is left out (the replicating node logs it).
    pub fn refresh(&self, broker: &Broker) -> Result<(), broker::meta::MetaError> {
        self.take(broker.meta().task_records()?);
        Ok(())
    }

    /// Takes the stored records (name, bytes) over the node's own tasks.
    fn take(&self, records: Vec<(String, Vec<u8>)>) {
        let mut specs: BTreeMap<String, Option<TaskSpec>> = self
            .config
            .iter()
            .map(|spec| (spec.name.clone(), Some(spec.clone())))
            .collect();
        for (name, bytes) in records {
            let stored = serde_json::from_slice::<TaskRecord>(&bytes).ok();
            specs.insert(name, stored.filter(|r| !r.deleted).map(|r| r.spec));
        }
        let tasks: Vec<Arc<Task>> = specs
            .into_values()
            .flatten()
            .filter_map(|spec| spec::validate(&[spec], &self.topology).ok())
            .flatten()
            .collect();
        *self.tasks.write().expect("stored tasks lock") = Arc::new(tasks);
    }

    fn tasks(&self) -> Arc<Vec<Arc<Task>>> {
        self.tasks.read().expect("stored tasks lock").clone()
    }

    /// [`crate::tasks::group_regions`] of the stored tasks.
    pub fn group_regions(&self, group: &str, topic: &str) -> Vec<String> {
        crate::tasks::group_regions(&self.tasks(), group, topic)
    }

    /// [`crate::tasks::group_primary`] of the stored tasks.
    pub fn group_primary(&self, group: &str, topic: &str) -> Option<String> {
        crate::tasks::group_primary(&self.tasks(), group, topic)
    }

    /// Why this region may not write `topic`, by the stored DR tasks.
    pub fn refuses(&self, topic: &str) -> Option<String> {
        refused_by(self.tasks().iter().map(|t| &**t), &self.region, topic)
    }
}
