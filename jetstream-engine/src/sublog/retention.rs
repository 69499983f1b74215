//! Retention on the JetStream engine. A sub-log's oldest batches go by the broker's rule
//! (`broker::storage::retention::removes_oldest`), weighed by their stored size and their
//! newest record's time (the `Georouter-Time` header, never later than the time the
//! cluster stored the batch, which stands in for a batch stored without the header), and
//! are purged from the stream by subject up to a
//! sequence. The sub-log's last batch always stays, however old: its headers are where
//! the sub-log ends, so a sub-log whose batches all expired goes on at its end offset, not
//! at 0.

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use futures_util::StreamExt;

use super::{BASE_HEADER, SubLogId, SubLogs, TIME_HEADER};
use crate::engine::EngineError;

/// The header a headers-only delivery carries the message's payload size in.
pub(super) const SIZE_HEADER: &str = "Nats-Msg-Size";

/// How long weighing one sub-log may take before this round of retention gives up on it.
const WEIGH_WITHIN: Duration = Duration::from_secs(60);

/// One stored batch as retention weighs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weighed {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its first offset.
    pub base: u64,
    pub bytes: u64,
    /// Its newest record's time.
    pub time_ms: i64,
}

/// How many of a sub-log's batches (oldest first) retention removes: the broker's rule,
/// batch by batch, never the last.
pub fn expired(batches: &[Weighed], max_bytes: u64, max_age_ms: u64, now_ms: i64) -> usize {
    let mut held: u64 = batches.iter().map(|b| b.bytes).sum();
    let mut gone = 0;
    while batches.len() - gone > 1 {
        let oldest = &batches[gone];
        if !broker::storage::retention::removes_oldest(
            held,
            oldest.time_ms,
            max_bytes,
            max_age_ms,
            now_ms,
        ) {
            break;
        }
        held -= oldest.bytes;
        gone += 1;
    }
    gone
}

impl SubLogs {
    /// Every batch of `id` up to stream sequence `last` (its last batch), oldest first, as
    /// retention weighs it: read as headers only, the batches stay in the cluster.
    pub async fn weigh(&self, id: &SubLogId, last: u64) -> Result<Vec<Weighed>, EngineError> {
        if last == 0 {
            return Ok(Vec::new());
        }
        let stream = self.stream(&id.topic, id.incarnation).await?;
        let what = format!("weighing sub-log {id} for retention");
        let consumer = self
            .headers_only(
                stream,
                self.subject(id),
                DeliverPolicy::All,
                "georouter retention",
                what.clone(),
            )
            .await?;
        let read = async {
            let mut messages = consumer
                .messages()
                .await
                .map_err(|e| EngineError::request(what.clone(), e))?;
            let mut batches = Vec::new();
            while let Some(message) = messages.next().await {
                let message = message.map_err(|e| EngineError::request(what.clone(), e))?;
                let info = message.info().map_err(|e| EngineError::Invalid {
                    what: what.clone(),
                    reason: e.to_string(),
                })?;
                let (sequence, stored_at) = (info.stream_sequence, info.published);
                let header = |name: &str| {
                    message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(name))
                        .and_then(|v| v.as_str().parse::<i64>().ok())
                };
                let stored_ms =
                    i64::try_from(stored_at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
                batches.push(Weighed {
                    sequence,
                    base: header(BASE_HEADER).unwrap_or(0).max(0) as u64,
                    bytes: header(SIZE_HEADER).unwrap_or(0).max(0) as u64,
                    // A record stamped in the future does not pin the batch: no batch is
                    // newer than when the cluster stored it.
                    time_ms: header(TIME_HEADER).unwrap_or(stored_ms).min(stored_ms),
                });
                if sequence >= last {
                    break;
                }
            }
            Ok(batches)
        };
        tokio::time::timeout(WEIGH_WITHIN, read)
            .await
            .map_err(|late| EngineError::request(what.clone(), late))?
    }

    /// Removes `id`'s batches stored before stream sequence `sequence`.
    pub async fn purge_before(&self, id: &SubLogId, sequence: u64) -> Result<(), EngineError> {
        self.purge_subject(id, Some(sequence)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batches(sizes_and_times: &[(u64, i64)]) -> Vec<Weighed> {
        sizes_and_times
            .iter()
            .enumerate()
            .map(|(i, &(bytes, time_ms))| Weighed {
                sequence: i as u64 + 1,
                base: i as u64 * 10,
                bytes,
                time_ms,
            })
            .collect()
    }

    #[test]
    fn the_oldest_batches_go_by_size_and_age_but_never_the_last() {
        let held = batches(&[(100, 10), (100, 20), (100, 30)]);
        assert_eq!(expired(&held, 0, 0, 1_000), 0, "no limits");
        assert_eq!(expired(&held, 250, 0, 1_000), 1, "over size by one batch");
        assert_eq!(expired(&held, 100, 0, 1_000), 2);
        assert_eq!(expired(&held, 1, 0, 1_000), 2, "the last batch stays");
        assert_eq!(expired(&held, 0, 975, 1_000), 2, "older than 975 ms");
        assert_eq!(
            expired(&held, 0, 10, 1_000_000),
            2,
            "all expired: the last stays"
        );
        assert_eq!(expired(&[], 1, 1, 1_000), 0);
    }
}
