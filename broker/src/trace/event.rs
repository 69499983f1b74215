//! One step of a message's life, as the region where it happened saw it, and its form as a
//! record of the trace topic.
//!
//! A trace record's key is `topic/origin/partition` of the messages it is about (topic,
//! origin and region names cannot hold a `/`), its body the event as JSON, so a trace is
//! found with the message query's key lookup and read by any tool that reads JSON. One
//! event may cover a run of offsets (a produced or replicated batch): `first..=last`.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::record::Record;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceKind {
    /// Accepted from a producer and durable in its origin region.
    Produced,
    /// A held message (a delay message come due, or a committed transaction's half
    /// message) was stored for its consumers in its origin region.
    Fired,
    /// Received over a replication link and durable in this region.
    Replicated,
    /// Handed to a consumer of a group (an attempt).
    Delivered,
    /// Acknowledged by a consumer of a group: done for that group.
    Acked,
    /// Given up on after the group's last attempt, and stored in its dead-letter topic.
    DeadLettered,
}

impl TraceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceKind::Produced => "produced",
            TraceKind::Fired => "fired",
            TraceKind::Replicated => "replicated",
            TraceKind::Delivered => "delivered",
            TraceKind::Acked => "acked",
            TraceKind::DeadLettered => "dead_lettered",
        }
    }
}

/// One event about the messages `first..=last` of one sub-log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub kind: TraceKind,
    /// The region where it happened.
    pub region: String,
    /// When (ms since the epoch, that region's clock).
    pub at_ms: i64,
    pub topic: String,
    pub origin: String,
    pub partition: u32,
    pub first: u64,
    pub last: u64,
    /// What else is known: `by` (principal), `via` (API), `client`, `from` (the link's
    /// far end), `path` (hops, origin first), `produced_ms`, `group`, `consumer`,
    /// `attempt`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
}

impl TraceEvent {
    /// An event about one message.
    pub fn one(kind: TraceKind, region: &str, topic: &str, id: &crate::RecordId) -> Self {
        TraceEvent {
            kind,
            region: region.to_string(),
            at_ms: crate::record::now_ms(),
            topic: topic.to_string(),
            origin: id.origin.clone(),
            partition: id.partition,
            first: id.offset,
            last: id.offset,
            detail: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.detail.insert(key.to_string(), value.to_string());
        self
    }

    /// Whether this event is about the message at `offset` of the sub-log `key`.
    pub fn covers(&self, key: &str, offset: u64) -> bool {
        self.key() == key && (self.first..=self.last).contains(&offset)
    }

    /// The key of the sub-log it is about: `topic/origin/partition`.
    pub fn key(&self) -> String {
        sub_log_key(&self.topic, &self.origin, self.partition)
    }

    /// The event as a record of the trace topic.
    pub fn to_record(&self) -> Record {
        Record {
            key: Some(Bytes::from(self.key())),
            tag: Some(self.kind.as_str().to_string()),
            properties: BTreeMap::new(),
            body: Bytes::from(serde_json::to_vec(self).expect("a trace event serializes")),
            timestamp_ms: self.at_ms,
        }
    }

    /// The event a trace record holds; `None` for a record that is not one (the trace
    /// topic is an ordinary topic that anyone allowed may write to).
    pub fn from_record(record: &Record) -> Option<Self> {
        serde_json::from_slice(&record.body).ok()
    }
}

/// `ids` (in any order) as runs of consecutive offsets of one sub-log each:
/// `(partition, origin, first, last)`, in the order each run first appears.
pub fn runs(ids: &[crate::RecordId]) -> Vec<(u32, String, u64, u64)> {
    let mut sorted: Vec<&crate::RecordId> = ids.iter().collect();
    sorted.sort();
    let mut runs: Vec<(u32, String, u64, u64)> = Vec::new();
    for id in sorted {
        match runs.last_mut() {
            Some((p, o, _, last))
                if *p == id.partition && *o == id.origin && *last + 1 == id.offset =>
            {
                *last = id.offset
            }
            _ => runs.push((id.partition, id.origin.clone(), id.offset, id.offset)),
        }
    }
    runs
}

/// The trace record key of a sub-log.
pub fn sub_log_key(topic: &str, origin: &str, partition: u32) -> String {
    format!("{topic}/{origin}/{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> TraceEvent {
        TraceEvent {
            kind: TraceKind::Replicated,
            region: "us".into(),
            at_ms: 1_700_000_000_000,
            topic: "orders".into(),
            origin: "eu".into(),
            partition: 2,
            first: 10,
            last: 14,
            detail: [("from".to_string(), "eu".to_string())].into(),
        }
    }

    #[test]
    fn an_event_survives_its_record() {
        let record = event().to_record();
        assert_eq!(record.key.as_deref(), Some(&b"orders/eu/2"[..]));
        assert_eq!(record.tag.as_deref(), Some("replicated"));
        assert_eq!(TraceEvent::from_record(&record), Some(event()));
    }

    #[test]
    fn an_event_covers_its_run_of_one_sub_log() {
        let e = event();
        assert!(e.covers("orders/eu/2", 10));
        assert!(e.covers("orders/eu/2", 14));
        assert!(!e.covers("orders/eu/2", 15));
        assert!(!e.covers("orders/eu/1", 12));
        assert!(!e.covers("orders/us/2", 12));
    }

    #[test]
    fn ids_fold_into_runs_of_one_sub_log() {
        let id = |partition, origin: &str, offset| crate::RecordId {
            partition,
            origin: origin.to_string(),
            offset,
        };
        let ids = [
            id(1, "eu", 5),
            id(0, "eu", 7),
            id(0, "eu", 8),
            id(1, "eu", 6),
            id(0, "eu", 10),
            id(0, "us", 11),
        ];
        assert_eq!(
            runs(&ids),
            [
                (0, "eu".to_string(), 7, 8),
                (0, "eu".to_string(), 10, 10),
                (0, "us".to_string(), 11, 11),
                (1, "eu".to_string(), 5, 6),
            ]
        );
    }

    #[test]
    fn a_record_that_is_not_an_event_is_none() {
        let mut record = event().to_record();
        record.body = Bytes::from_static(b"{\"kind\":\"lost\"}");
        assert_eq!(TraceEvent::from_record(&record), None);
    }
}
