//! Replication between regions: QUIC links with mutual TLS, the versioned link protocol,
//! pulling and applying origin sub-logs, replication tasks, checkpoints, lag and metrics.
//! ARCHITECTURE.md maps the folders; docs/replication.md describes the whole.
//!
//! Layers, each depending only on those before it in this list (`tests/layers.rs` checks):
//! `budget`, `inbox`, `published` → `wire` (no replication state) → `settings`, `identity`, `tasks`,
//! `observe` → `routing`, `compression` (decisions) → `node` (the context every running part
//! shares) → `dr`, `groups`, `pull`, `serve` → `link` (a link's life, dispatching to them)
//! → `replicator` (the facade) → `running`, `crew_worker` (the facade of a node that pulls
//! its share of a region's sub-logs without planning). `crew` (how a region's pulls are
//! divided among its nodes) sits with the decisions.

mod budget;
mod compression;
pub mod crew;
mod crew_worker;
pub mod dr;
mod groups;
pub mod identity;
mod inbox;
mod link;
mod node;
pub mod observe;
mod published;
mod pull;
mod replicator;
mod routing;
mod running;
mod scan_pace;
mod serve;
pub mod settings;
pub mod tasks;
pub mod wire;

pub use crew_worker::CrewWorker;
pub use dr::{FailoverError, FailoverMode, FailoverReport, OriginRpo};
pub use identity::{certs, tls};
pub use node::{Authorship, Carried};
pub use observe::topology::{LinkEdge, RegionNode};
pub use observe::{SubLogKey, SubLogStatus, TopologyView};
pub use replicator::{LinkStatus, Replicator, ReplicatorConfig, RouteStatus, StartError};
pub use running::Running;
pub use settings::LinkSettings;
/// Task specs and their validation (`task::validate`), under their former path.
pub use tasks::spec as task;
pub use tasks::{ChangeError, Direction, Dr, TaskRecord, TaskSpec, TaskState};
pub use wire::CompressionSetting;
