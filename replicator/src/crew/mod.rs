//! The pulling work of a region of several nodes, divided among them: the node that holds
//! the region's replication lease (links, link state, planning, serving) decides which
//! node pulls each sub-log it planned (`division`, pure), and the region's other nodes
//! (its crew) each pull theirs over data-only connections to the neighbours
//! (`link::data`, `link::worker`), and serve those the neighbours' nodes open to them. What is shared between the nodes goes through the
//! region's metadata, written and read by the embedding process: who is alive (each node
//! renews a lease of its own), and the [`Assignment`] the holder writes.

pub mod division;

pub use division::{
    Assigned, Assignment, DivisionError, Share, dial_order, divide, may_give_away, mine,
};

use tokio::sync::watch;

/// The planning node's side of a divided region, given to the replicator by the embedding
/// process: who may pull, and where the division goes.
pub struct Crew {
    /// This node's id among the region's nodes.
    pub me: String,
    /// The region's nodes alive now, by their own leases (this one may be among them).
    pub members: watch::Receiver<Vec<String>>,
    /// The latest division, for the embedding process to store.
    pub assignment: watch::Sender<Assignment>,
}
