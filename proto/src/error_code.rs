//! The stable error codes of the client API (`georouter.v1.Broker`), carried in the gRPC
//! metadata entry `georouter-error-code` beside the status. The broker maps every error to
//! one of them (`BrokerError::code`); docs/errors.md describes each.

crate::stable_codes! {
    /// A client-API error code.
    #[non_exhaustive]
    pub enum ErrorCode {
        UnknownTopic => "unknown-topic",
        TopicExists => "topic-exists",
        ReadOnly => "read-only",
        InvalidName => "invalid-name",
        InvalidPartitionCount => "invalid-partition-count",
        InvalidMessageType => "invalid-message-type",
        UnknownPartition => "unknown-partition",
        RecordTooLarge => "record-too-large",
        InvalidTimestamp => "invalid-timestamp",
        RepairRefused => "repair-refused",
        StaleIncarnation => "stale-incarnation",
        BatchTooLarge => "batch-too-large",
        EmptyProduce => "empty-produce",
        /// A request past the codec's record or property count limits (`codec`).
        RequestTooLarge => "request-too-large",
        InvalidCursor => "invalid-cursor",
        /// A filter expression that does not parse (`sql` of a fetch).
        InvalidFilter => "invalid-filter",
        /// A delay or transaction that cannot be held (`deliver_at_ms`, `transactional`).
        InvalidHold => "invalid-hold",
        OwnOrigin => "own-origin",
        OffsetGap => "offset-gap",
        OverlappingBatch => "overlapping-batch",
        MalformedBatch => "malformed-batch",
        CorruptBatch => "corrupt-batch",
        PartitionFenced => "partition-fenced",
        TopicDeleted => "topic-deleted",
        ShuttingDown => "shutting-down",
        Io => "io",
        Metadata => "metadata",
        StorageEngine => "storage-engine",
        /// No credentials, or wrong ones (`UNAUTHENTICATED`).
        Unauthenticated => "unauthenticated",
        /// The principal may not do this (`PERMISSION_DENIED`).
        Forbidden => "forbidden",
    }
}
