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

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DirectGetErrorKind, LastRawMessageErrorKind};
use async_nats::jetstream::{self};
use broker::batch::{self, Batch, BatchFormatError, BatchHeader, MAX_BATCH_ON_DISK};
use broker::storage::GapPolicy;
use broker::storage::partition::{Placement, place};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::engine::{Engine, EngineError};
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

/// A batch some node stored, as a follower of the stream sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub partition: u32,
    pub origin: String,
    pub base: u64,
    pub tail: Tail,
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

/// What a topic's stream keeps: records younger than `max_age` and at most `max_bytes`
/// (zero: no limit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_age: Duration,
    pub max_bytes: u64,
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

    /// Makes the stream of one creation of a topic, if no node made it yet, unbounded.
    pub async fn create_topic(&self, topic: &str, incarnation: u64) -> Result<(), EngineError> {
        self.create_topic_with(topic, incarnation, Limits::default())
            .await
    }

    /// Makes the stream of one creation of a topic, if no node made it yet, keeping what
    /// `limits` allow.
    pub async fn create_topic_with(
        &self,
        topic: &str,
        incarnation: u64,
        limits: Limits,
    ) -> Result<(), EngineError> {
        let config = stream::Config {
            max_age: limits.max_age,
            max_bytes: if limits.max_bytes == 0 {
                -1
            } else {
                i64::try_from(limits.max_bytes).unwrap_or(i64::MAX)
            },
            name: self.stream_name(topic, incarnation),
            description: Some(format!("georouter: region {}, topic {topic}", self.region)),
            subjects: vec![names::topic_subjects(&self.region, topic, incarnation)],
            num_replicas: self.engine.settings().replicas,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            // Batches may be read from any replica; ends are read from the leader.
            allow_direct: true,
            ..Default::default()
        };
        let context = self.engine.context().clone();
        self.engine
            .spawn_retrying(move || {
                let (context, config) = (context.clone(), config.clone());
                async move {
                    let name = config.name.clone();
                    context
                        .get_or_create_stream(config)
                        .await
                        .map(drop)
                        .map_err(|e| EngineError::request(format!("creating stream {name}"), e))
                }
            })
            .await
    }

    /// Removes one creation of a topic, every sub-log of it.
    pub async fn delete_topic(&self, topic: &str, incarnation: u64) -> Result<(), EngineError> {
        self.delete_stream(&self.stream_name(topic, incarnation))
            .await
    }

    /// The origins holding a sub-log in `partition` of one creation of a topic.
    pub async fn origins(
        &self,
        topic: &str,
        incarnation: u64,
        partition: u32,
    ) -> Result<Vec<String>, EngineError> {
        let stream = self.stream(topic, incarnation).await?;
        let filter = names::partition_subjects(&self.region, topic, incarnation, partition);
        let what = format!("listing the sub-logs of {topic}/{partition}");
        self.engine
            .spawn_retrying(move || {
                let (stream, filter, what) = (stream.clone(), filter.clone(), what.clone());
                async move {
                    let mut subjects = stream
                        .info_with_subjects(&filter)
                        .await
                        .map_err(|e| EngineError::request(what.clone(), e))?;
                    let mut origins = Vec::new();
                    while let Some(entry) = subjects.next().await {
                        let (subject, _) =
                            entry.map_err(|e| EngineError::request(what.clone(), e))?;
                        let origin = subject.rsplit('.').next().and_then(names::name);
                        origins.push(origin.ok_or_else(|| EngineError::Invalid {
                            what: what.clone(),
                            reason: format!("subject {subject} names no origin"),
                        })?);
                    }
                    origins.sort();
                    Ok(origins)
                }
            })
            .await
    }

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

    /// Removes every batch of `id` (its origin re-created the topic: the copy held of the
    /// old creation goes).
    pub async fn purge(&self, id: &SubLogId) -> Result<(), EngineError> {
        let stream = self.stream(&id.topic, id.incarnation).await?;
        let subject = self.subject(id);
        let what = format!("purging sub-log {id}");
        self.engine
            .spawn_retrying(move || {
                let (stream, subject, what) = (stream.clone(), subject.clone(), what.clone());
                async move {
                    stream
                        .purge()
                        .filter(subject)
                        .await
                        .map(drop)
                        .map_err(|e| EngineError::request(what, e))
                }
            })
            .await
    }

    /// The names of every stream holding a creation of `topic`.
    pub async fn topic_streams(&self, topic: &str) -> Result<Vec<String>, EngineError> {
        let prefix = names::topic_stream_prefix(&self.region, topic);
        let context = self.engine.context().clone();
        self.engine
            .spawn_retrying(move || {
                let (context, prefix) = (context.clone(), prefix.clone());
                async move {
                    let mut names = context.stream_names();
                    let mut found = Vec::new();
                    while let Some(name) = names.next().await {
                        let name = name.map_err(|e| EngineError::request("listing streams", e))?;
                        if name.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                        }) {
                            found.push(name);
                        }
                    }
                    Ok(found)
                }
            })
            .await
    }

    /// Deletes the stream `name`.
    pub async fn delete_stream(&self, name: &str) -> Result<(), EngineError> {
        let context = self.engine.context().clone();
        let name = name.to_string();
        self.engine
            .spawn(async move {
                context
                    .delete_stream(&name)
                    .await
                    .map(drop)
                    .map_err(|e| EngineError::request(format!("deleting stream {name}"), e))
            })
            .await?
    }

    /// Every batch stored in one creation of `topic` after stream sequence `after`, by any
    /// node, as it is stored (headers only: the batches stay in the cluster). Ends when
    /// the stream is deleted or the connection is given up.
    pub async fn follow(
        &self,
        topic: &str,
        incarnation: u64,
        after: u64,
    ) -> Result<tokio::sync::mpsc::Receiver<Arrival>, EngineError> {
        let stream = self.stream(topic, incarnation).await?;
        let filter = names::topic_subjects(&self.region, topic, incarnation);
        let client = self.engine.client().clone();
        let what = format!("following topic {topic}");
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let consumer = self
            .engine
            .spawn_retrying(move || {
                let (stream, filter, what) = (stream.clone(), filter.clone(), what.clone());
                let client = client.clone();
                async move {
                    stream
                        .create_consumer(push::OrderedConfig {
                            deliver_subject: client.new_inbox(),
                            description: Some("georouter follower".to_string()),
                            filter_subject: filter,
                            deliver_policy: DeliverPolicy::ByStartSequence {
                                start_sequence: after + 1,
                            },
                            headers_only: true,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| EngineError::request(what, e))
                }
            })
            .await?;
        let region = self.region.clone();
        self.engine.detach(async move {
            let Ok(mut messages) = consumer.messages().await else {
                return;
            };
            while let Some(Ok(message)) = messages.next().await {
                let Some(arrival) = arrival_of(&region, &message) else {
                    continue;
                };
                if tx.send(arrival).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
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
        let (base, end) =
            header_of(&bytes).map_or((0, 0), |h| (h.base_offset, h.last_offset() + 1));
        let mut message = PublishMessage::build()
            .payload(bytes)
            .header(INCARNATION_HEADER, incarnation.to_string().as_str())
            .header(BASE_HEADER, base.to_string().as_str())
            .header(END_HEADER, end.to_string().as_str())
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

    /// The batch stored at stream sequence `sequence`, read from the leader.
    async fn read_at(&self, id: &SubLogId, sequence: u64) -> Result<Batch, EngineError> {
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
                            .direct_get_next_for_subject(subjects.as_str(), Some(sequence))
                            .await
                        {
                            Ok(m) => m,
                            Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
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
        .direct_get_next_for_subject(subject, Some(sequence))
        .await
    {
        Ok(message) => Ok(Some((message.sequence, decode(what, message.payload)?))),
        Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::request(what.to_string(), e)),
    }
}

/// What a follower learns from one stored message's subject and headers.
fn arrival_of(region: &str, message: &jetstream::Message) -> Option<Arrival> {
    let headers = message.headers.as_ref()?;
    let sequence = message.info().ok()?.stream_sequence;
    let (partition, origin) = names::parse_sub_log_subject(region, &message.subject)?;
    let end = headers.get(END_HEADER)?.as_str().parse().ok()?;
    let base = headers.get(BASE_HEADER)?.as_str().parse().ok()?;
    Some(Arrival {
        partition,
        origin,
        base,
        tail: Tail {
            end,
            last_sequence: sequence,
            incarnation: incarnation_of(headers),
        },
    })
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
