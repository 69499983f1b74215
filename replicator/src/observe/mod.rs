//! What a node reports about replication: per task and sub-log status and lag
//! (`status`), and the Prometheus metrics (`metrics`).

pub mod metrics;
pub mod rpo;
pub mod status;

pub use metrics::Metrics;
pub use rpo::{OriginRpo, rpo_by_origin};
pub use status::{StatusBoard, SubLogKey, SubLogStatus};
