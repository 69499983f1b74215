//! One region's broker: origin sub-log storage, metadata, consumer groups, and the gRPC
//! client API. See docs/storage.md for the storage format and ARCHITECTURE.md for the guarantees.

pub mod batch;
pub mod broker;
pub mod catalog;
pub mod cursor;
pub mod error;
pub mod grpc;
pub mod incarnation;
pub mod json;
pub mod meta;
pub mod names;
pub mod record;
pub mod sql;
pub mod storage;
pub mod timer;
pub mod timer_metrics;
pub mod trace;

pub use broker::{
    Broker, BrokerConfig, CursorChange, Hold, OrphanCheck, OrphanChecker, Partitioning, Scheduled,
    StartPosition, Topic, WriteGate,
};
pub use cursor::Cursor;
pub use error::{BrokerError, Result};
pub use record::{Record, RecordId, StoredRecord};
