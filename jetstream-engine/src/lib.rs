//! georouter's storage on a NATS JetStream cluster (`[storage] engine = "jetstream"`):
//! a region's metadata in a KV bucket (`meta`), its origin sub-logs as streams of stored
//! batches (`sublog`), both replicated by the cluster's RAFT groups, so that the region's
//! state outlives any one machine and several georouter nodes can share it.
//!
//! - `names`: how georouter's names become subjects, keys, buckets and streams.
//! - `engine`: the connection, on a runtime of its own, and its errors.
//! - `settings`: `[storage.jetstream]`.
//! - `meta` (with `meta_keys` and `listing`): the `broker::meta::MetaStore` on KV.
//! - `sublog`: appends that two nodes cannot both make, reads by offset and in arrival
//!   order.
//! - `partition` (with `readers`) and `storage`: the broker's storage seam on those
//!   sub-logs, so that a broker runs on the cluster (`[storage] engine = "jetstream"`).
//! - `local_cluster`: nats-server processes on loopback for tests, benchmarks and the
//!   scenario harness.

pub mod engine;
pub mod lease;
mod listing;
pub mod local_cluster;
pub mod meta;
mod meta_keys;
pub mod names;
pub mod partition;
mod readers;
pub mod settings;
pub mod storage;
pub mod sublog;

pub use engine::{Engine, EngineError};
pub use meta::JetStreamMetaStore;
pub use partition::JetStreamPartition;
pub use settings::JetStreamSettings;
pub use storage::JetStreamStorage;
pub use sublog::{AppendError, Appended, Stored, SubLogId, SubLogs, Tail};
