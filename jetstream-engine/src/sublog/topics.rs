//! A topic's streams: made, listed, deleted; the origins a partition holds; a sub-log
//! purged; and the follower through which a node learns of every batch any node stores.

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;

use super::retention::SIZE_HEADER;
use super::{Arrival, DUPLICATE_WINDOW, SubLogId, SubLogs, Tail, incarnation_of};
use super::{BASE_HEADER, END_HEADER};
use crate::engine::EngineError;
use crate::names;

impl SubLogs {
    /// Makes the stream of one creation of a topic, if no node made it yet. It has no age
    /// or size limit of its own: retention purges sub-logs by subject (`retention.rs`).
    pub async fn create_topic(&self, topic: &str, incarnation: u64) -> Result<(), EngineError> {
        let config = stream::Config {
            max_bytes: -1,
            name: self.stream_name(topic, incarnation),
            description: Some(format!("georouter: region {}, topic {topic}", self.region)),
            subjects: vec![names::topic_subjects(&self.region, topic, incarnation)],
            num_replicas: self.engine.settings().replicas,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            // Every read goes to the leader (`read.rs`).
            allow_direct: false,
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

    /// The sequence of the last message of one creation of `topic`'s stream (0: none).
    pub async fn last_sequence(&self, topic: &str, incarnation: u64) -> Result<u64, EngineError> {
        let stream = self.stream(topic, incarnation).await?;
        let what = format!("the last sequence of topic {topic}");
        self.engine
            .spawn_retrying(move || {
                let (stream, what) = (stream.clone(), what.clone());
                async move {
                    stream
                        .get_info()
                        .await
                        .map(|info| info.state.last_sequence)
                        .map_err(|e| EngineError::request(what, e))
                }
            })
            .await
    }

    /// Removes every batch of `id` (its origin re-created the topic: the copy held of the
    /// old creation goes).
    pub async fn purge(&self, id: &SubLogId) -> Result<(), EngineError> {
        self.purge_subject(id, None).await
    }

    /// Removes `id`'s batches, all of them or those stored before stream sequence
    /// `before`.
    pub(super) async fn purge_subject(
        &self,
        id: &SubLogId,
        before: Option<u64>,
    ) -> Result<(), EngineError> {
        let stream = self.stream(&id.topic, id.incarnation).await?;
        let subject = self.subject(id);
        let what = match before {
            None => format!("purging sub-log {id}"),
            Some(_) => format!("removing the oldest batches of sub-log {id}"),
        };
        self.engine
            .spawn_retrying(move || {
                let (stream, subject, what) = (stream.clone(), subject.clone(), what.clone());
                async move {
                    let purge = stream.purge().filter(subject);
                    let purged = match before {
                        Some(sequence) => purge.sequence(sequence).await,
                        None => purge.await,
                    };
                    purged.map(drop).map_err(|e| EngineError::request(what, e))
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

    /// An ordered consumer of `stream`'s messages on `filter` from `from`, delivering their
    /// headers only (the batches stay in the cluster); made again while the cluster does
    /// not answer.
    pub(super) async fn headers_only(
        &self,
        stream: jetstream::stream::Stream<()>,
        filter: String,
        from: DeliverPolicy,
        description: &'static str,
        what: String,
    ) -> Result<jetstream::consumer::Consumer<push::OrderedConfig>, EngineError> {
        let client = self.engine.client().clone();
        self.engine
            .spawn_retrying(move || {
                let (stream, filter, what) = (stream.clone(), filter.clone(), what.clone());
                let client = client.clone();
                async move {
                    stream
                        .create_consumer(push::OrderedConfig {
                            deliver_subject: client.new_inbox(),
                            description: Some(description.to_string()),
                            filter_subject: filter,
                            deliver_policy: from,
                            headers_only: true,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| EngineError::request(what, e))
                }
            })
            .await
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
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let consumer = self
            .headers_only(
                stream,
                filter,
                DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                "georouter follower",
                format!("following topic {topic}"),
            )
            .await?;
        let region = self.region.clone();
        self.engine.detach(async move {
            let Ok(mut messages) = consumer.messages().await else {
                return;
            };
            // An error here is passing (a missed heartbeat: the ordered consumer makes
            // itself again and goes on); only the end of the messages ends the follower.
            while let Some(message) = messages.next().await {
                let Ok(message) = message else {
                    continue;
                };
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
}

/// What a follower learns from one stored message's subject and headers.
fn arrival_of(region: &str, message: &jetstream::Message) -> Option<Arrival> {
    let headers = message.headers.as_ref()?;
    let sequence = message.info().ok()?.stream_sequence;
    let (partition, origin) = names::parse_sub_log_subject(region, &message.subject)?;
    let end = headers.get(END_HEADER)?.as_str().parse().ok()?;
    let base = headers.get(BASE_HEADER)?.as_str().parse().ok()?;
    let bytes = headers
        .get(SIZE_HEADER)
        .and_then(|size| size.as_str().parse().ok())
        .unwrap_or(0);
    Some(Arrival {
        partition,
        origin,
        base,
        bytes,
        tail: Tail {
            end,
            last_sequence: sequence,
            incarnation: incarnation_of(headers),
        },
    })
}
