//! What a node reports about replication: per task and sub-log status and lag
//! (`status`), the RPO (`rpo`), the topology picture's data (`topology`), and the
//! Prometheus metrics (`metrics`).

pub mod history;
pub mod metrics;
pub mod rpo;
pub mod status;
pub mod topology;

pub use metrics::Metrics;
pub use rpo::{OriginRpo, rpo_by_origin};
pub use status::{StatusBoard, SubLogKey, SubLogStatus};
pub use topology::TopologyView;
