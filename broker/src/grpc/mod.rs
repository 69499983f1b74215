//! The gRPC client API (`georouter.v1.Broker`): conversions at the edge, one place that
//! maps errors to status codes, and the service.

mod convert;
pub mod metrics;
mod service;
mod status;

pub use metrics::ApiMetrics;
pub use service::BrokerService;
pub use status::{ERROR_CODE_KEY, to_status};
