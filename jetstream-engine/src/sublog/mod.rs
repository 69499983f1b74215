//! Origin sub-logs in JetStream. A region's copy of one creation of a topic is one stream
//! (`crate::names::topic_stream`, replicated by the cluster); each origin sub-log of each
//! partition is one subject of it (`crate::names::sub_log_subject`); each batch is one
//! message whose payload is the batch's bytes exactly as the embedded engine stores them
//! (`broker::batch`: the header carries the origin offsets, so nothing is re-encoded and a
//! batch read back is the batch written). The stream's sequence is the region's arrival
//! order: a partition's merged read is its messages in sequence order.
//!
//! Every append says which message it expects to be the sub-log's last
//! (`Nats-Expected-Last-Subject-Sequence`), so two nodes can never both place a batch at
//! one offset: the loser re-reads the end and places the batch again by the broker's one
//! rule (`broker::storage::partition::place`). A replicated batch someone else applied is
//! found held, not written twice; a local batch takes the next free offsets and carries a
//! message id, so that an append retried after a lost acknowledgement is recognised by the
//! stream's duplicate window instead of stored twice. Each message carries the incarnation
//! of the origin's topic its records are of (header `Georouter-Incarnation`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use broker::batch::{self, Batch, BatchFormatError, BatchHeader, MAX_BATCH_ON_DISK};
use broker::storage::GapPolicy;
use broker::storage::partition::{Placement, place};
use bytes::Bytes;

use crate::engine::{Engine, EngineError};

mod read;
pub mod retention;
mod topics;
use crate::names;

/// How long the stream remembers a local append's message id: an append retried within it
/// after its acknowledgement was lost is recognised, not stored again.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// One origin sub-log of one partition of one creation of a topic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubLogId {
    pub topic: String,
    pub incarnation: u64,
    pub partition: u32,
    pub origin: String,
}

impl std::fmt::Display for SubLogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}@{} (incarnation {})",
            self.topic, self.partition, self.origin, self.incarnation
        )
    }
}

/// The header naming the incarnation of the origin's topic a batch's records are of.
pub const INCARNATION_HEADER: &str = "Georouter-Incarnation";
/// The header naming the offset after a batch: what a node following the stream's
/// headers learns of a sub-log's end without reading the batch.
pub const END_HEADER: &str = "Georouter-End";

/// The header naming a batch's base offset.
pub const BASE_HEADER: &str = "Georouter-Base";
/// The newest record's time in a batch (ms), for retention by age (`retention.rs`).
pub const TIME_HEADER: &str = "Georouter-Time";

/// A batch some node stored, as a follower of the stream sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub partition: u32,
    pub origin: String,
    pub base: u64,
    pub tail: Tail,
    /// The batch's stored size (the server's `Nats-Msg-Size` on a headers-only delivery).
    pub bytes: u64,
}

/// Where a sub-log ends: the offset after its last batch, that batch's stream sequence and
/// the incarnation it carries (all 0: empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tail {
    pub end: u64,
    pub last_sequence: u64,
    pub incarnation: u64,
}

/// A batch as stored: its stream sequence (its place in the arrival order) and the batch.
#[derive(Clone, Debug)]
pub struct Stored {
    pub sequence: u64,
    pub batch: Batch,
}

/// What a replicated append did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    Stored {
        sequence: u64,
    },
    /// Every offset of the batch was in the sub-log already (applied by another node).
    AlreadyHeld,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    #[error("sub-log {sub_log}: a batch of offsets {base}..{next} cannot follow its end at {end}")]
    Misplaced {
        sub_log: String,
        base: u64,
        next: u64,
        end: u64,
    },
    #[error("sub-log {sub_log}: {source}")]
    Format {
        sub_log: String,
        #[source]
        source: BatchFormatError,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The sub-logs of one region.
pub struct SubLogs {
    engine: Arc<Engine>,
    region: String,
}

impl SubLogs {
    pub fn new(engine: Arc<Engine>, region: &str) -> Self {
        SubLogs {
            engine,
            region: region.to_string(),
        }
    }

    fn stream_name(&self, topic: &str, incarnation: u64) -> String {
        names::topic_stream(&self.region, topic, incarnation)
    }

    fn subject(&self, id: &SubLogId) -> String {
        names::sub_log_subject(
            &self.region,
            &id.topic,
            id.incarnation,
            id.partition,
            &id.origin,
        )
    }

    /// The stream of `id`'s topic, without asking the server about it.
    async fn stream(
        &self,
        topic: &str,
        incarnation: u64,
    ) -> Result<jetstream::stream::Stream<()>, EngineError> {
        let name = self.stream_name(topic, incarnation);
        // A handle made here, without a request.
        self.engine
            .context()
            .get_stream_no_info(&name)
            .await
            .map_err(|e| EngineError::Invalid {
                what: format!("stream {name}"),
                reason: e.to_string(),
            })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Where `id` ends now, read from the stream's leader.
    pub async fn tail(&self, id: &SubLogId) -> Result<Tail, EngineError> {
        let stream = self.stream(&id.topic, id.incarnation).await?;
        let subject = self.subject(id);
        let what = format!("the end of sub-log {id}");
        self.engine
            .spawn_retrying(move || {
                let (stream, subject, what) = (stream.clone(), subject.clone(), what.clone());
                async move {
                    match stream.get_last_raw_message_by_subject(&subject).await {
                        Ok(message) => {
                            let header = header_of(&message.payload).map_err(|reason| {
                                EngineError::Invalid {
                                    what: what.clone(),
                                    reason,
                                }
                            })?;
                            Ok(Tail {
                                end: header.last_offset() + 1,
                                last_sequence: message.sequence,
                                incarnation: incarnation_of(&message.headers),
                            })
                        }
                        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                            Ok(Tail::default())
                        }
                        Err(e) => Err(EngineError::request(what, e)),
                    }
                }
            })
            .await
    }

    /// Appends a batch at its origin offsets, placed after `tail.end` by the broker's rule
    /// (`gap` says whether it may start past the end); a batch another node applied first
    /// is found held. `tail` follows the sub-log's end. The records are of `incarnation`
    /// of the origin's topic.
    pub async fn append_replicated(
        &self,
        id: &SubLogId,
        tail: &mut Tail,
        bytes: Bytes,
        gap: GapPolicy,
        incarnation: u64,
    ) -> Result<Appended, AppendError> {
        let header = self.check(id, &bytes)?;
        loop {
            match place(tail.end, &header, gap) {
                Placement::AlreadyHeld => return Ok(Appended::AlreadyHeld),
                Placement::Append => {}
                Placement::Refused => {
                    return Err(AppendError::Misplaced {
                        sub_log: id.to_string(),
                        base: header.base_offset,
                        next: header.last_offset() + 1,
                        end: tail.end,
                    });
                }
            }
            let published = self
                .publish(id, tail.last_sequence, bytes.clone(), None, incarnation)
                .await?;
            match published {
                Some(sequence) => {
                    *tail = Tail {
                        end: header.last_offset() + 1,
                        last_sequence: sequence,
                        incarnation,
                    };
                    return Ok(Appended::Stored { sequence });
                }
                None => *tail = self.tail(id).await?,
            }
        }
    }

    /// Appends a batch produced in this region at the sub-log's end, whatever other nodes
    /// appended meanwhile: `sealed` (sealed at any offset) is moved to the end it finds.
    /// `message_id` names this append uniquely; giving it again for the same records after
    /// an error stores them at most once. Returns the batch as stored.
    pub async fn append_local(
        &self,
        id: &SubLogId,
        tail: &mut Tail,
        sealed: Bytes,
        message_id: &str,
    ) -> Result<Stored, AppendError> {
        let incarnation = id.incarnation;
        let mut bytes = sealed;
        loop {
            if self.check(id, &bytes)?.base_offset != tail.end {
                bytes = batch::rebase(&bytes, tail.end);
            }
            let stored = self
                .publish(
                    id,
                    tail.last_sequence,
                    bytes.clone(),
                    Some(message_id),
                    incarnation,
                )
                .await?;
            let Some(sequence) = stored else {
                *tail = self.tail(id).await?;
                continue;
            };
            // A duplicate answer names the first copy, which may sit at other offsets.
            let batch = self.read_at(id, sequence).await?;
            if batch.header().last_offset() + 1 > tail.end {
                *tail = Tail {
                    end: batch.header().last_offset() + 1,
                    last_sequence: sequence,
                    incarnation,
                };
            }
            return Ok(Stored { sequence, batch });
        }
    }

    fn check(&self, id: &SubLogId, bytes: &Bytes) -> Result<BatchHeader, AppendError> {
        Batch::from_bytes(bytes.clone(), MAX_BATCH_ON_DISK)
            .map(|b| *b.header())
            .map_err(|source| AppendError::Format {
                sub_log: id.to_string(),
                source,
            })
    }

    /// Publishes one batch expecting `last_sequence` to be the sub-log's last message:
    /// `Some(sequence)` where it is stored, `None` when another writer came first.
    async fn publish(
        &self,
        id: &SubLogId,
        last_sequence: u64,
        bytes: Bytes,
        message_id: Option<&str>,
        incarnation: u64,
    ) -> Result<Option<u64>, EngineError> {
        let subject = self.subject(id);
        let (base, end, time) = header_of(&bytes).map_or((0, 0, 0), |h| {
            (h.base_offset, h.last_offset() + 1, h.max_timestamp_ms)
        });
        let mut message = PublishMessage::build()
            .payload(bytes)
            .header(INCARNATION_HEADER, incarnation.to_string().as_str())
            .header(BASE_HEADER, base.to_string().as_str())
            .header(END_HEADER, end.to_string().as_str())
            .header(TIME_HEADER, time.to_string().as_str())
            .expected_last_subject_sequence(last_sequence);
        if let Some(message_id) = message_id {
            message = message.message_id(message_id);
        }
        let context = self.engine.context().clone();
        let what = format!("appending to sub-log {id}");
        // Trying again is safe: a first attempt that was stored makes the next one meet
        // its own message as the last (a conflict, resolved by the caller) or, with a
        // message id, the stream's duplicate window.
        self.engine
            .spawn_retrying(move || {
                let (context, subject, what) = (context.clone(), subject.clone(), what.clone());
                let message = message.clone();
                async move {
                    let ack = match context.send_publish(subject, message).await {
                        Ok(ack) => ack.await,
                        Err(e) => return Err(EngineError::request(what, e)),
                    };
                    match ack {
                        Ok(ack) => Ok(Some(ack.sequence)),
                        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
                        Err(e) => Err(EngineError::request(what, e)),
                    }
                }
            })
            .await
    }
}

/// The incarnation a message's header names (0: none).
fn incarnation_of(headers: &async_nats::HeaderMap) -> u64 {
    headers
        .get(INCARNATION_HEADER)
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or(0)
}

fn header_of(payload: &[u8]) -> Result<BatchHeader, String> {
    BatchHeader::parse(payload, MAX_BATCH_ON_DISK).map_err(|e| e.to_string())
}

fn decode(what: &str, payload: Bytes) -> Result<Batch, EngineError> {
    Batch::from_bytes(payload, MAX_BATCH_ON_DISK).map_err(|e| EngineError::Invalid {
        what: what.to_string(),
        reason: format!("a stored batch is unreadable: {e}"),
    })
}
