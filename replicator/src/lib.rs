//! Replication between regions: QUIC links with mutual TLS, the versioned link protocol,
//! pulling and applying origin sub-logs, replication tasks, checkpoints, lag and metrics.
//! ARCHITECTURE.md ("Replication", "Link protocol") describes the whole.

pub mod certs;
pub mod io;
mod link;
pub mod metrics;
pub mod protocol;
mod pull;
mod serve;
pub mod service;
pub mod settings;
pub mod status;
pub mod task;
pub mod tls;

pub use service::{LinkStatus, PeerSpec, Replicator, ReplicatorConfig, StartError};
pub use settings::LinkSettings;
pub use status::{SubLogKey, SubLogStatus};
pub use task::{Direction, TaskSpec, TaskState};
