//! [`Running`]: the replicator a node runs now, as the console and status read it.

use std::sync::{Arc, RwLock};

use crate::replicator::Replicator;

/// The replicator a node runs now, if any, for those that read it (the console, status):
/// fixed on a node that replicates from start to stop (or never); changing on a node of a
/// region of several, which replicates while it holds the region's replication lease.
#[derive(Clone, Default)]
pub struct Running {
    now: Arc<RwLock<Option<Arc<Replicator>>>>,
    /// Whether replication runs on whichever node of the region holds its lease (so, when
    /// not here, on another node).
    leased: bool,
}

impl Running {
    /// A node that runs `replicator` (or none) for its whole life.
    pub fn fixed(replicator: Option<Arc<Replicator>>) -> Self {
        Running {
            now: Arc::new(RwLock::new(replicator)),
            leased: false,
        }
    }

    /// A node of a region of several, replicating while it holds the lease.
    pub fn leased() -> Self {
        Running {
            now: Arc::default(),
            leased: true,
        }
    }

    pub fn get(&self) -> Option<Arc<Replicator>> {
        self.now.read().expect("running replicator lock").clone()
    }

    pub fn set(&self, replicator: Option<Arc<Replicator>>) {
        *self.now.write().expect("running replicator lock") = replicator;
    }

    /// Whether replication runs on another node of the region when not here.
    pub fn leased_elsewhere(&self) -> bool {
        self.leased && self.get().is_none()
    }
}
