//! Conversions between the generated wire types and the broker's own types.

use proto::v1 as pb;

use crate::broker::{Partitioning, StartPosition};
use crate::cursor::Cursor;
use crate::error::{BrokerError, Result};
use crate::meta::{Retention, TopicConfig};
use crate::record::{Record, StoredRecord};

pub fn record_from_pb(r: pb::Record) -> Record {
    Record {
        key: r.key.map(Into::into),
        tag: r.tag,
        properties: r.properties.into_iter().collect(),
        body: r.body.into(),
        timestamp_ms: r.timestamp_ms,
    }
}

pub fn record_to_pb(r: Record) -> pb::Record {
    pb::Record {
        key: r.key.map(|k| k.to_vec()),
        tag: r.tag,
        properties: r.properties.into_iter().collect(),
        body: r.body.to_vec(),
        timestamp_ms: r.timestamp_ms,
    }
}

pub fn fetched_to_pb(partition: u32, r: StoredRecord) -> pb::FetchedRecord {
    pb::FetchedRecord {
        partition,
        origin: r.origin,
        offset: r.offset,
        record: Some(record_to_pb(r.record)),
    }
}

pub fn retention_from_pb(r: pb::RetentionPolicy) -> Retention {
    Retention {
        max_bytes: r.max_bytes,
        max_age_ms: r.max_age_ms,
    }
}

pub fn topic_to_pb(t: &TopicConfig) -> pb::TopicInfo {
    pb::TopicInfo {
        name: t.name.clone(),
        partitions: t.partitions,
        retention: Some(pb::RetentionPolicy {
            max_bytes: t.retention.max_bytes,
            max_age_ms: t.retention.max_age_ms,
        }),
        incarnation: t.incarnation,
        message_type: t.message_type.as_str().to_string(),
    }
}

pub fn partitioning_from_pb(p: Option<pb::produce_request::Partitioning>) -> Partitioning {
    use pb::produce_request::Partitioning as P;
    match p {
        Some(P::Partition(n)) => Partitioning::Explicit(n),
        Some(P::RoundRobin(true)) => Partitioning::RoundRobin,
        _ => Partitioning::ByKey,
    }
}

pub fn start_from_pb(s: Option<pb::StartPosition>) -> StartPosition {
    use pb::start_position::Position;
    match s.and_then(|s| s.position) {
        Some(Position::Latest(true)) => StartPosition::Latest,
        Some(Position::TimestampMs(ms)) => StartPosition::Timestamp(ms),
        _ => StartPosition::Earliest,
    }
}

pub fn cursor_from_pb(c: Option<pb::Cursor>) -> Result<Cursor> {
    let c = c.unwrap_or_default();
    let cursor = Cursor {
        next: c.next.into_iter().collect(),
        incarnations: c.incarnations.into_iter().collect(),
        // A client's cursor is of the epoch held (`Broker::commit`).
        epoch: 0,
    };
    crate::broker::Broker::validate_cursor(&cursor)?;
    Ok(cursor)
}

pub fn cursor_to_pb(partition: u32, c: &Cursor) -> pb::PartitionCursor {
    pb::PartitionCursor {
        partition,
        cursor: Some(pb::Cursor {
            next: c.next.clone().into_iter().collect(),
            incarnations: c.incarnations.clone().into_iter().collect(),
        }),
    }
}

pub fn partition_cursors_from_pb(list: Vec<pb::PartitionCursor>) -> Result<Vec<(u32, Cursor)>> {
    let mut seen = std::collections::BTreeSet::new();
    list.into_iter()
        .map(|pc| {
            if !seen.insert(pc.partition) {
                return Err(BrokerError::InvalidCursor {
                    reason: format!("partition {} appears twice", pc.partition),
                });
            }
            Ok((pc.partition, cursor_from_pb(pc.cursor)?))
        })
        .collect()
}
