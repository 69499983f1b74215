//! Replication between regions: QUIC links with mutual TLS, the versioned link protocol,
//! pulling and applying origin sub-logs, replication tasks, checkpoints, lag and metrics.
//! ARCHITECTURE.md ("Replication", "Link protocol") describes the whole.

mod advertise;
pub mod catalog;
pub mod certs;
pub mod dr;
mod groups;
mod inbox;
pub mod io;
mod link;
pub mod metrics;
pub mod protocol;
mod proxy;
mod pull;
mod routing;
mod serve;
pub mod service;
pub mod settings;
pub mod status;
pub mod task;
pub mod tls;

pub use catalog::{ChangeError, TaskRecord};
pub use dr::{FailoverError, FailoverMode, FailoverReport, OriginRpo};
pub use service::{LinkStatus, Replicator, ReplicatorConfig, RouteStatus, StartError};
pub use settings::LinkSettings;
pub use status::{SubLogKey, SubLogStatus};
pub use task::{Direction, Dr, TaskSpec, TaskState};
