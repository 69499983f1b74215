//! The deployment's shape and how data moves through it, as pure logic: regions and the
//! links between them (`spec`), the residency policy (`residency`), the health of one link
//! from its heartbeats (`health`), and the link-state database with the routes every
//! region computes from it (`routes`). The replicator feeds it time and events; nothing
//! here does I/O.

pub mod health;
pub mod residency;
pub mod routes;
pub mod spec;

pub use health::{HealthSettings, LinkHealth, Transition};
pub use residency::{Residency, ResidencyRule, ResidencySpec};
pub use routes::{LinkState, LinkStates, Routes};
pub use spec::{LinkKind, LinkSpec, Neighbour, RegionSpec, Topology, TopologyError, TopologySpec};
