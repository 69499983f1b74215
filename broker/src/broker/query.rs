//! Looking messages up in a topic: by identity (`origin-partition-offset`, read at once),
//! by message id (the `mq:message_id` property the RocketMQ access point keeps), by key
//! (the record's key, or one of the `mq:keys`), by time range, or by several at once. A
//! lookup other than by identity reads the partitions from the start of the range (or of
//! what is held) forward, within a byte budget, and says whether it read everything.

use crate::broker::{Broker, StartPosition};
use crate::error::Result;
use crate::record::{Record, StoredRecord};
use crate::storage::RecordFilter;

/// The property holding a RocketMQ message id.
pub const MESSAGE_ID_PROPERTY: &str = "mq:message_id";
/// The property holding a RocketMQ message's keys, space-separated.
pub const KEYS_PROPERTY: &str = "mq:keys";

/// What to look for; every criterion given must hold.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    pub id: Option<String>,
    pub key: Option<String>,
    /// Stored at or after (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Stored before.
    pub to_ms: Option<i64>,
}

/// One message found.
#[derive(Clone, Debug)]
pub struct Found {
    pub partition: u32,
    pub origin: String,
    pub offset: u64,
    pub record: Record,
}

/// What a lookup found, and whether it read everything it had to.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub messages: Vec<Found>,
    pub scanned_bytes: u64,
    /// False when the byte budget or the limit stopped it first.
    pub complete: bool,
}

/// An identity written as `origin-partition-offset`.
pub fn parse_identity(id: &str) -> Option<(String, u32, u64)> {
    let (rest, offset) = id.rsplit_once('-')?;
    let (origin, partition) = rest.rsplit_once('-')?;
    Some((
        origin.to_string(),
        partition.parse().ok()?,
        offset.parse().ok()?,
    ))
}

impl Lookup {
    /// Whether `stored` is one of the messages looked for.
    pub fn matches(&self, partition: u32, stored: &StoredRecord) -> bool {
        let r = &stored.record;
        let id = self.id.as_deref().is_none_or(|id| {
            r.properties.get(MESSAGE_ID_PROPERTY).map(String::as_str) == Some(id)
                || format!("{}-{partition}-{}", stored.origin, stored.offset) == id
        });
        let key = self.key.as_deref().is_none_or(|key| {
            r.key.as_deref() == Some(key.as_bytes())
                || r.properties
                    .get(KEYS_PROPERTY)
                    .is_some_and(|keys| keys.split(' ').any(|k| k == key))
        });
        let from = self.from_ms.is_none_or(|t| r.timestamp_ms >= t);
        let to = self.to_ms.is_none_or(|t| r.timestamp_ms < t);
        id && key && from && to
    }
}

impl Broker {
    /// Messages of `topic` matching `lookup`, at most `limit`, reading at most
    /// `budget_bytes` of batches (blocking file I/O).
    pub fn query(
        &self,
        topic: &str,
        lookup: &Lookup,
        limit: usize,
        budget_bytes: u64,
    ) -> Result<Findings> {
        let exact = lookup.id.as_deref().and_then(parse_identity);
        let scan = Scan {
            from_ms: lookup.from_ms,
            to_ms: lookup.to_ms,
            exact,
            limit,
            budget_bytes,
        };
        self.scan(topic, &scan, |partition, stored| {
            lookup.matches(partition, stored)
        })
    }

    /// The records of `topic` within `scan` for which `wanted` holds.
    pub(crate) fn scan(
        &self,
        topic: &str,
        scan: &Scan,
        mut wanted: impl FnMut(u32, &StoredRecord) -> bool,
    ) -> Result<Findings> {
        let t = self.topic(topic)?;
        let mut findings = Findings {
            complete: true,
            ..Findings::default()
        };
        for (index, partition) in t.partitions.iter().enumerate() {
            let index = index as u32;
            let mut cursor = match scan.from_ms {
                Some(ms) => self.start_cursor(partition.as_ref(), StartPosition::Timestamp(ms))?,
                None => self.start_cursor(partition.as_ref(), StartPosition::Earliest)?,
            };
            // An identity names its position: read from there.
            if let Some((origin, p, offset)) = &scan.exact {
                if *p != index {
                    continue;
                }
                cursor = partition.latest_cursor();
                cursor.next.insert(origin.clone(), *offset);
            }
            let mut reader = partition.clone().reader(cursor, RecordFilter::default());
            loop {
                if findings.scanned_bytes >= scan.budget_bytes {
                    findings.complete = false;
                    return Ok(findings);
                }
                let read = reader.read(1 << 20)?;
                let empty = read.records.is_empty();
                for stored in read.records {
                    findings.scanned_bytes += stored.record.body.len() as u64;
                    if scan
                        .to_ms
                        .is_some_and(|to| stored.record.timestamp_ms >= to)
                    {
                        continue;
                    }
                    if wanted(index, &stored) {
                        if findings.messages.len() == scan.limit {
                            findings.complete = false;
                            return Ok(findings);
                        }
                        findings.messages.push(Found {
                            partition: index,
                            origin: stored.origin,
                            offset: stored.offset,
                            record: stored.record,
                        });
                    }
                }
                if read.caught_up || empty || scan.exact.is_some() {
                    break;
                }
            }
        }
        Ok(findings)
    }
}

/// Where a scan reads, and how much it may read and find.
pub(crate) struct Scan {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Only this record (`origin`, partition, offset).
    pub exact: Option<(String, u32, u64)>,
    pub limit: usize,
    pub budget_bytes: u64,
}
