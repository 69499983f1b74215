//! Reading sub-logs: by offset (a binary search over stream sequences, then the batches in
//! order) and a partition in arrival order (the stream's sequence). Every read is served
//! by the stream's leader: a replica may lag, and a search that met a lagging replica's
//! "nothing there" would take a sub-log's start or a reader's next record for its end.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use broker::batch::Batch;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{Stored, SubLogId, SubLogs, decode};
use crate::engine::EngineError;
use crate::names;

impl SubLogs {
    /// The first offset `id` holds (its first batch's base), or `None` when it is empty.
    pub async fn start(&self, id: &SubLogId) -> Result<Option<u64>, EngineError> {
        let stream = self.stream(&id.topic, id.incarnation).await?;
        let subject = self.subject(id);
        let what = format!("the start of sub-log {id}");
        self.engine
            .spawn_retrying(move || {
                let (stream, subject, what) = (stream.clone(), subject.clone(), what.clone());
                async move {
                    Ok(next_batch(&stream, &subject, 1, &what)
                        .await?
                        .map(|(_, b)| b.header().base_offset))
                }
            })
            .await
    }

    /// The batch stored at stream sequence `sequence`, read from the leader.
    pub(super) async fn read_at(&self, id: &SubLogId, sequence: u64) -> Result<Batch, EngineError> {
        let stream = self.stream(&id.topic, id.incarnation).await?;
        let what = format!("reading sub-log {id} at sequence {sequence}");
        self.engine
            .spawn_retrying(move || {
                let (stream, what) = (stream.clone(), what.clone());
                async move {
                    let message = stream
                        .get_raw_message(sequence)
                        .await
                        .map_err(|e| EngineError::request(what.clone(), e))?;
                    decode(&what, message.payload)
                }
            })
            .await
    }

    /// Up to `max` batches of `id` from the one holding offset `from` on, in offset order.
    pub async fn read(
        &self,
        id: &SubLogId,
        from: u64,
        max: usize,
    ) -> Result<Vec<Stored>, EngineError> {
        let tail = self.tail(id).await?;
        if tail.end <= from {
            return Ok(Vec::new());
        }
        let stream = self.stream(&id.topic, id.incarnation).await?;
        let subject = self.subject(id);
        let what = format!("reading sub-log {id} from offset {from}");
        let client = self.engine.client().clone();
        let timeout = self.engine.settings().request_timeout;
        self.engine
            .spawn_retrying(move || {
                let (stream, subject, what) = (stream.clone(), subject.clone(), what.clone());
                let client = client.clone();
                async move {
                    let span = (1, tail.last_sequence);
                    let Some(sequence) =
                        first_holding(&stream, &subject, from, span, &what).await?
                    else {
                        return Ok(Vec::new());
                    };
                    scan(&client, &stream, &subject, sequence, max, timeout, &what)
                        .await?
                        .into_iter()
                        .map(|(_, sequence, payload)| {
                            Ok(Stored {
                                sequence,
                                batch: decode(&what, payload)?,
                            })
                        })
                        .collect()
                }
            })
            .await
    }

    /// Up to `max` batches of partition `partition`, every origin, in arrival order from
    /// stream sequence `from_sequence` on, each with its origin.
    pub async fn arrivals(
        &self,
        topic: &str,
        incarnation: u64,
        partition: u32,
        from_sequence: u64,
        max: usize,
    ) -> Result<Vec<(String, Stored)>, EngineError> {
        let stream = self.stream(topic, incarnation).await?;
        let subjects = names::partition_subjects(&self.region, topic, incarnation, partition);
        let what = format!("reading partition {topic}/{partition} in arrival order");
        let client = self.engine.client().clone();
        let timeout = self.engine.settings().request_timeout;
        self.engine
            .spawn_retrying(move || {
                let (stream, subjects, what) = (stream.clone(), subjects.clone(), what.clone());
                let client = client.clone();
                async move {
                    let found = scan(
                        &client,
                        &stream,
                        &subjects,
                        from_sequence.max(1),
                        max,
                        timeout,
                        &what,
                    )
                    .await?;
                    found
                        .into_iter()
                        .map(|(subject, sequence, payload)| {
                            let origin = subject
                                .rsplit('.')
                                .next()
                                .and_then(names::name)
                                .ok_or_else(|| EngineError::Invalid {
                                    what: what.clone(),
                                    reason: format!("subject {subject} names no origin"),
                                })?;
                            Ok((
                                origin,
                                Stored {
                                    sequence,
                                    batch: decode(&what, payload)?,
                                },
                            ))
                        })
                        .collect()
                }
            })
            .await
    }
}

/// The first stream sequence of `subject` whose batch holds offsets at or after `from`,
/// searching `first..=last`: batches are in offset order along the subject, so the offsets
/// of the next batch at or after a sequence never fall as the sequence grows.
async fn first_holding(
    stream: &jetstream::stream::Stream<()>,
    subject: &str,
    from: u64,
    (first, last): (u64, u64),
    what: &str,
) -> Result<Option<u64>, EngineError> {
    let (mut low, mut high) = (first, last + 1);
    while low < high {
        let probe = low + (high - low) / 2;
        match next_batch(stream, subject, probe, what).await? {
            Some((at, batch)) if batch.header().last_offset() < from => low = at + 1,
            _ => high = probe,
        }
    }
    Ok(next_batch(stream, subject, low, what)
        .await?
        .filter(|(at, _)| *at <= last)
        .map(|(at, _)| at))
}

/// The first batch of `subject` at stream sequence `sequence` or later.
async fn next_batch(
    stream: &jetstream::stream::Stream<()>,
    subject: &str,
    sequence: u64,
    what: &str,
) -> Result<Option<(u64, Batch)>, EngineError> {
    match stream
        .get_first_raw_message_by_subject(subject, sequence)
        .await
    {
        Ok(message) => Ok(Some((message.sequence, decode(what, message.payload)?))),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(EngineError::request(what.to_string(), e)),
    }
}

/// Up to `max` messages of `filter` from stream sequence `from` on, in sequence order, as
/// `(subject, sequence, payload)`: streamed by an ordered consumer (a request to make it,
/// then the messages as they come), not asked for one by one. A consumer delivers only
/// what a quorum has, from the stream's leader.
async fn scan(
    client: &async_nats::Client,
    stream: &jetstream::stream::Stream<()>,
    filter: &str,
    from: u64,
    max: usize,
    timeout: Duration,
    what: &str,
) -> Result<Vec<(String, u64, Bytes)>, EngineError> {
    let consumer = stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            description: Some("georouter read".to_string()),
            filter_subject: filter.to_string(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(|e| EngineError::request(what.to_string(), e))?;
    let mut out = Vec::new();
    if consumer.cached_info().num_pending == 0 || max == 0 {
        return Ok(out);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| EngineError::request(what.to_string(), e))?;
    while out.len() < max {
        let next = tokio::time::timeout(timeout, messages.next())
            .await
            .map_err(|_| {
                let late = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no message within {timeout:?}"),
                );
                EngineError::request(what.to_string(), late)
            })?;
        let Some(message) = next else { break };
        let message = message.map_err(|e| EngineError::request(what.to_string(), e))?;
        let info = message.info().map_err(|e| EngineError::Invalid {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
        let (sequence, pending) = (info.stream_sequence, info.pending);
        out.push((
            message.subject.to_string(),
            sequence,
            message.payload.clone(),
        ));
        if pending == 0 {
            break;
        }
    }
    Ok(out)
}
