//! The broker's error type. Each variant says whether it is the caller's fault (fatal for
//! that request: fix the input), transient (retry with backoff) or fatal for the partition.

use proto::error_code::ErrorCode;
use std::path::PathBuf;

use crate::batch::BatchFormatError;
use crate::meta::MetaError;

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Caller: no topic of that name in this region.
    #[error("unknown topic '{topic}'")]
    UnknownTopic { topic: String },
    /// Caller: create of a topic that exists.
    #[error("topic '{topic}' already exists")]
    TopicExists { topic: String },
    /// Caller: a name (topic, region, group) that breaks the naming rules.
    #[error("invalid {what} name '{name}': {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// Caller: a topic with no partitions or too many.
    #[error("invalid partition count {count}: must be between 1 and {max}")]
    InvalidPartitionCount { count: u32, max: u32 },
    /// Caller: a message type that does not exist.
    #[error("invalid message type \"{given}\": expected normal, fifo, delay or transaction")]
    InvalidMessageType { given: String },
    /// Caller: a partition index out of range.
    #[error("topic '{topic}' has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        topic: String,
        partition: u32,
        partitions: u32,
    },
    /// Caller: one record over `storage.max_record_bytes`.
    #[error(
        "record {index} is {size} bytes encoded, over the limit of {limit} bytes (storage.max_record_bytes)"
    )]
    RecordTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    /// Caller: a record stamped before the epoch or too far ahead of this region's clock.
    #[error(
        "record {index} has timestamp {timestamp_ms} ms: {reason} (this region's clock: {now_ms} ms; storage.max_timestamp_skew_ms = {skew_ms})"
    )]
    InvalidTimestamp {
        index: usize,
        timestamp_ms: i64,
        now_ms: i64,
        skew_ms: u64,
        reason: &'static str,
    },
    /// Caller (replication): records of an older incarnation of an origin's topic than the
    /// one this region holds (see `crate::incarnation`). Never merged.
    #[error(
        "refused records of incarnation {offered} of topic '{topic}' partition {partition} origin '{origin}': this region holds the newer incarnation {held} (the origin deleted and re-created the topic)"
    )]
    StaleIncarnation {
        topic: String,
        partition: u32,
        origin: String,
        held: u64,
        offered: u64,
    },
    /// Caller (operator): a repair that cannot be done as asked.
    #[error("repair refused: {reason}")]
    RepairRefused { reason: String },
    /// Caller: a produce request over `storage.max_batch_bytes`.
    #[error(
        "batch is {size} bytes encoded, over the limit of {limit} bytes (storage.max_batch_bytes)"
    )]
    BatchTooLarge { size: usize, limit: usize },
    /// Caller: a produce with no records.
    #[error("produce request for topic '{topic}' holds no records")]
    EmptyProduce { topic: String },
    /// Caller: a cursor or start position that cannot be used.
    #[error("invalid cursor: {reason}")]
    InvalidCursor { reason: String },
    /// Caller: a filter expression that does not parse.
    #[error("invalid filter \"{expression}\": {reason}")]
    InvalidFilter { expression: String, reason: String },
    /// Caller: records that cannot be held (a delivery time too far ahead, a delay and a
    /// transaction at once).
    #[error("cannot hold these records: {reason}")]
    InvalidHold { reason: String },
    /// Caller (replication): a batch of this region's own origin offered back to it.
    #[error("refused a replicated batch of origin '{origin}': it is this region's own origin")]
    OwnOrigin { origin: String },
    /// Caller (replication): a batch that would leave a gap that was not declared intended.
    #[error(
        "offset gap in {topic}/{partition}@{origin}: next offset is {expected}, batch starts at {base}"
    )]
    OffsetGap {
        topic: String,
        partition: u32,
        origin: String,
        expected: u64,
        base: u64,
    },
    /// Caller (replication): a batch that overlaps held offsets without being contained in them.
    #[error(
        "batch [{base}, {last}] overlaps {topic}/{partition}@{origin} whose next offset is {expected}"
    )]
    OverlappingBatch {
        topic: String,
        partition: u32,
        origin: String,
        expected: u64,
        base: u64,
        last: u64,
    },
    /// Caller (replication): bytes that are not a valid batch.
    #[error("malformed batch: {0}")]
    MalformedBatch(#[source] BatchFormatError),
    /// Fatal for the data read: a stored batch failed its checks; it is never served.
    #[error("corrupt batch in {path} at byte {position}: {source}")]
    CorruptBatch {
        path: PathBuf,
        position: u64,
        #[source]
        source: BatchFormatError,
    },
    /// Fatal for the partition: a write or fsync failed, so nothing more is accepted until
    /// the node restarts and recovers the partition from disk.
    #[error("partition {topic}/{partition} is fenced after a storage failure: {reason}")]
    Fenced {
        topic: String,
        partition: u32,
        reason: String,
    },
    /// Caller: a produce to a topic this region holds only a read-only copy of (a DR
    /// task's standby, or any region while a planned failover switches the primary).
    #[error("produce to '{topic}' refused: {reason}")]
    ReadOnly { topic: String, reason: String },
    /// Transient: the topic was deleted while the request ran.
    #[error("topic '{topic}' was deleted")]
    TopicDeleted { topic: String },
    /// Transient: the broker is shutting down.
    #[error("the broker is shutting down")]
    ShuttingDown,
    /// Fatal for the request; the partition is fenced if it was a write.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// The storage engine (a JetStream cluster) failed or could not be reached.
    #[error("storage engine: {reason}")]
    Engine { reason: String },
}

impl BrokerError {
    /// The stable error code users can search for (carried in gRPC metadata
    /// `georouter-error-code`, listed in docs/errors.md).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BrokerError::UnknownTopic { .. } => ErrorCode::UnknownTopic,
            BrokerError::TopicExists { .. } => ErrorCode::TopicExists,
            BrokerError::ReadOnly { .. } => ErrorCode::ReadOnly,
            BrokerError::InvalidName { .. } => ErrorCode::InvalidName,
            BrokerError::InvalidPartitionCount { .. } => ErrorCode::InvalidPartitionCount,
            BrokerError::InvalidMessageType { .. } => ErrorCode::InvalidMessageType,
            BrokerError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
            BrokerError::RecordTooLarge { .. } => ErrorCode::RecordTooLarge,
            BrokerError::InvalidTimestamp { .. } => ErrorCode::InvalidTimestamp,
            BrokerError::RepairRefused { .. } => ErrorCode::RepairRefused,
            BrokerError::StaleIncarnation { .. } => ErrorCode::StaleIncarnation,
            BrokerError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            BrokerError::EmptyProduce { .. } => ErrorCode::EmptyProduce,
            BrokerError::InvalidCursor { .. } => ErrorCode::InvalidCursor,
            BrokerError::InvalidFilter { .. } => ErrorCode::InvalidFilter,
            BrokerError::InvalidHold { .. } => ErrorCode::InvalidHold,
            BrokerError::OwnOrigin { .. } => ErrorCode::OwnOrigin,
            BrokerError::OffsetGap { .. } => ErrorCode::OffsetGap,
            BrokerError::OverlappingBatch { .. } => ErrorCode::OverlappingBatch,
            BrokerError::MalformedBatch(_) => ErrorCode::MalformedBatch,
            BrokerError::CorruptBatch { .. } => ErrorCode::CorruptBatch,
            BrokerError::Fenced { .. } => ErrorCode::PartitionFenced,
            BrokerError::TopicDeleted { .. } => ErrorCode::TopicDeleted,
            BrokerError::ShuttingDown => ErrorCode::ShuttingDown,
            BrokerError::Io { .. } => ErrorCode::Io,
            BrokerError::Meta(_) => ErrorCode::Metadata,
            BrokerError::Engine { .. } => ErrorCode::StorageEngine,
        }
    }

    /// [`BrokerError::error_code`] as text.
    pub fn code(&self) -> &'static str {
        self.error_code().as_str()
    }

    /// A file that is not there (a sealed segment that retention removed, say).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, BrokerError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BrokerError::Io {
            action,
            path,
            source,
        }
    }
}
