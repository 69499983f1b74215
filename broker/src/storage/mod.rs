//! Storage of one region: origin sub-logs of segmented, CRC-checked record batches, and the
//! per-partition arrival index that merges them. See docs/storage.md for the on-disk layout.

pub mod arrival;
mod commit;
pub mod config;
pub mod embedded;
pub mod index;
pub mod open_files;
pub mod partition;
pub mod reader;
pub mod repair;
pub mod retention;
pub mod segment;
pub mod store;
pub mod sublog;
pub mod sublog_reader;

pub use config::StorageConfig;
pub use embedded::EmbeddedEngine;
pub use partition::{GapPolicy, Partition, ReplicatedAppend, ReplicatedRun, SubLogInfo};
pub use reader::{PartitionReader, ReadOutcome};
pub use segment::{Damage, Truncation};
pub use store::{
    BoxFuture, OpenedTopic, PartitionRead, PartitionStore, RecordFilter, StorageEngine, SubLogRead,
};
pub use sublog_reader::SubLogReader;
