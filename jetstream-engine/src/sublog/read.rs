//! Reading sub-logs: by offset (a binary search over stream sequences, then the batches in
//! order) and a partition in arrival order (the stream's sequence). Every read is served
//! by the stream's leader: a replica may lag, and a search that met a lagging replica's
//! "nothing there" would take a sub-log's start or a reader's next record for its end.

use async_nats::jetstream;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use broker::batch::Batch;

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
        self.engine
            .spawn_retrying(move || {
                let (stream, subject, what) = (stream.clone(), subject.clone(), what.clone());
                async move {
                    let span = (1, tail.last_sequence);
                    let Some(mut sequence) =
                        first_holding(&stream, &subject, from, span, &what).await?
                    else {
                        return Ok(Vec::new());
                    };
                    let mut out = Vec::new();
                    while out.len() < max {
                        let Some((at, batch)) =
                            next_batch(&stream, &subject, sequence, &what).await?
                        else {
                            break;
                        };
                        out.push(Stored {
                            sequence: at,
                            batch,
                        });
                        sequence = at + 1;
                    }
                    Ok(out)
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
        self.engine
            .spawn_retrying(move || {
                let (stream, subjects, what) = (stream.clone(), subjects.clone(), what.clone());
                async move {
                    let mut out = Vec::new();
                    let mut sequence = from_sequence.max(1);
                    while out.len() < max {
                        let message = match stream
                            .get_first_raw_message_by_subject(subjects.as_str(), sequence)
                            .await
                        {
                            Ok(m) => m,
                            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => break,
                            Err(e) => return Err(EngineError::request(what, e)),
                        };
                        let origin = message
                            .subject
                            .rsplit('.')
                            .next()
                            .and_then(names::name)
                            .ok_or_else(|| EngineError::Invalid {
                                what: what.clone(),
                                reason: format!("subject {} names no origin", message.subject),
                            })?;
                        sequence = message.sequence + 1;
                        out.push((
                            origin,
                            Stored {
                                sequence: message.sequence,
                                batch: decode(&what, message.payload)?,
                            },
                        ));
                    }
                    Ok(out)
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
