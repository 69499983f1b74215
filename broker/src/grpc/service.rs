//! The `georouter.v1.Broker` service over a [`Broker`].

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use super::metrics::{ApiMetrics, OutcomeLabels};

use proto::v1 as pb;
use proto::v1::broker_server;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::convert::*;
use crate::broker::{Broker, Hold};
use crate::error::BrokerError;
use crate::meta::MessageType;
use crate::storage::{PartitionRead, RecordFilter};
use crate::trace::TraceKind;
use auth::{Action, Resource};

/// Bytes of batches read per fetch response when the client names no limit.
const DEFAULT_FETCH_BYTES: usize = 1 << 20;
/// The most a client may ask for per fetch response: a larger `max_bytes` is lowered to it.
/// (A response still carries at least one whole batch, whatever its size.)
const MAX_FETCH_BYTES: usize = 8 << 20;
/// Responses buffered per fetch stream: a slow consumer holds back its reader, not memory.
const FETCH_BUFFER: usize = 4;

#[derive(Clone)]
pub struct BrokerService {
    broker: Arc<Broker>,
    authority: Arc<auth::Authority>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    metrics: Arc<ApiMetrics>,
}

impl BrokerService {
    /// `tracker` and `shutdown` own the fetch streams' tasks: cancelling ends every stream.
    /// Every request is checked by `authority`.
    pub fn new(
        broker: Arc<Broker>,
        authority: Arc<auth::Authority>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        BrokerService {
            broker,
            authority,
            tracker,
            shutdown,
            metrics: Arc::default(),
        }
    }

    /// The service's metrics (to register for `/metrics`).
    pub fn metrics(&self) -> &Arc<ApiMetrics> {
        &self.metrics
    }

    /// The tonic service. Requests are bounded by the largest produce this region accepts
    /// (their element counts by `proto::codec`); responses by a fetch's byte limit plus one
    /// batch, which may be as large as the format allows (a replicated batch is not bound
    /// by this region's `max_batch_bytes`).
    pub fn into_server(self) -> broker_server::BrokerServer<Self> {
        let request_limit = self.broker.storage_config().max_batch_bytes * 2 + (1 << 20);
        let response_limit = MAX_FETCH_BYTES + crate::batch::MAX_BATCH_ON_DISK + (1 << 20);
        broker_server::BrokerServer::new(self)
            .max_decoding_message_size(request_limit)
            .max_encoding_message_size(response_limit)
    }
}

impl BrokerService {
    /// Whether the caller of `request` may do `action` on `resource`; a refusal is counted
    /// and logged.
    fn check<T>(
        &self,
        request: &Request<T>,
        action: Action,
        resource: Resource<'_>,
    ) -> Result<auth::Caller, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        self.authority
            .bearer(authorization)
            .and_then(|caller| {
                self.authority
                    .authorize(&caller, action, &resource)
                    .map(|()| caller)
            })
            .map_err(|denial| {
                self.authority.refused("grpc", &denial);
                super::status::denial_status(&denial)
            })
    }
}

/// Runs blocking broker work (metadata flushes) off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("a broker task failed: {e}")))?
        .map_err(Status::from)
}

impl BrokerService {
    /// A produce of delay messages (`deliver_at_ms`) or half messages (`transactional`):
    /// held by the broker, answered with their handles once durable.
    async fn hold(&self, r: pb::ProduceRequest) -> Result<Response<pb::ProduceResponse>, Status> {
        let hold = match (r.deliver_at_ms, r.transactional) {
            (0, true) => Hold::Transaction,
            (at, false) => Hold::Until(at),
            (_, true) => {
                return Err(BrokerError::InvalidHold {
                    reason: "deliver_at_ms and transactional together: a half message is stored when its transaction commits".into(),
                }
                .into());
            }
        };
        let records = r.records.into_iter().map(record_from_pb).collect();
        let partitioning = partitioning_from_pb(r.partitioning);
        let held = self
            .broker
            .hold_records(&r.topic, records, partitioning, hold)
            .await?;
        Ok(Response::new(pb::ProduceResponse {
            ids: Vec::new(),
            held,
        }))
    }
}

type FetchStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl broker_server::Broker for BrokerService {
    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::TopicInfo>, Status> {
        self.check(
            &request,
            Action::Create,
            Resource::Topic(&request.get_ref().name),
        )?;
        let r = request.into_inner();
        let topic = self.broker.create_topic_of(
            &r.name,
            r.partitions,
            r.retention.map(retention_from_pb),
            MessageType::from_request(&r.message_type).ok_or_else(|| {
                BrokerError::InvalidMessageType {
                    given: r.message_type.clone(),
                }
            })?,
        )?;
        Ok(Response::new(topic_to_pb(&topic)))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        self.check(
            &request,
            Action::Delete,
            Resource::Topic(&request.get_ref().name),
        )?;
        self.broker.delete_topic(&request.into_inner().name)?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        self.check(&request, Action::Describe, Resource::Topic("*"))?;
        let topics = self.broker.topics().iter().map(topic_to_pb).collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        request: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::TopicDescription>, Status> {
        self.check(
            &request,
            Action::Describe,
            Resource::Topic(&request.get_ref().name),
        )?;
        let (topic, partitions) = self.broker.describe(&request.into_inner().name)?;
        let partitions = partitions
            .into_iter()
            .enumerate()
            .map(|(i, subs)| pb::PartitionInfo {
                partition: i as u32,
                sub_logs: subs
                    .into_iter()
                    .map(|s| pb::SubLogInfo {
                        origin: s.origin,
                        start_offset: s.start_offset,
                        end_offset: s.durable_end,
                        bytes: s.bytes,
                        segments: s.segments as u32,
                        incarnation: s.incarnation,
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::TopicDescription {
            topic: Some(topic_to_pb(&topic)),
            partitions,
        }))
    }

    async fn produce(
        &self,
        request: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let caller = self.check(
            &request,
            Action::Produce,
            Resource::Topic(&request.get_ref().topic),
        )?;
        let started = std::time::Instant::now();
        let r = request.into_inner();
        if r.deliver_at_ms != 0 || r.transactional {
            return self.hold(r).await;
        }
        let records = r.records.into_iter().map(record_from_pb).collect();
        let produced = self
            .broker
            .produce(&r.topic, records, partitioning_from_pb(r.partitioning))
            .await;
        let outcome = if produced.is_ok() { "ok" } else { "error" };
        self.metrics
            .produce_requests
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        let ids = produced?;
        self.broker.tracer().stored(
            TraceKind::Produced,
            &r.topic,
            &ids,
            &[("by", caller.name()), ("via", "grpc")],
        );
        self.metrics.produced_records.inc_by(ids.len() as u64);
        self.metrics
            .produce_latency
            .observe(started.elapsed().as_secs_f64());
        let ids = ids
            .into_iter()
            .map(|id| pb::RecordId {
                partition: id.partition,
                origin: id.origin,
                offset: id.offset,
            })
            .collect();
        Ok(Response::new(pb::ProduceResponse {
            ids,
            held: Vec::new(),
        }))
    }

    async fn recall(
        &self,
        request: Request<pb::RecallRequest>,
    ) -> Result<Response<pb::RecallResponse>, Status> {
        self.check(
            &request,
            Action::Produce,
            Resource::Topic(&request.get_ref().topic),
        )?;
        let r = request.into_inner();
        let recalled = self.broker.recall(&r.topic, &r.handle).await?;
        Ok(Response::new(pb::RecallResponse {
            recalled: recalled.is_some(),
        }))
    }

    async fn end_transaction(
        &self,
        request: Request<pb::EndTransactionRequest>,
    ) -> Result<Response<pb::EndTransactionResponse>, Status> {
        self.check(
            &request,
            Action::Produce,
            Resource::Topic(&request.get_ref().topic),
        )?;
        let r = request.into_inner();
        let broker = self.broker.clone();
        let ended =
            blocking(move || broker.end_transaction(&r.topic, &r.transaction_id, r.commit)).await?;
        Ok(Response::new(pb::EndTransactionResponse {
            ended: ended.is_some(),
        }))
    }

    type FetchStream = FetchStream;

    async fn fetch(
        &self,
        request: Request<pb::FetchRequest>,
    ) -> Result<Response<Self::FetchStream>, Status> {
        self.check(
            &request,
            Action::Consume,
            Resource::Topic(&request.get_ref().topic),
        )?;
        let r = request.into_inner();
        let topic = self.broker.topic(&r.topic)?;
        let n = topic.config.partitions;
        let partitions: Vec<u32> = if r.partitions.is_empty() {
            (0..n).collect()
        } else {
            // A partition named twice is read once (two readers would deliver it twice).
            let mut seen = std::collections::BTreeSet::new();
            r.partitions
                .iter()
                .copied()
                .filter(|p| seen.insert(*p))
                .collect()
        };
        let mut exact: BTreeMap<u32, _> =
            partition_cursors_from_pb(r.cursors)?.into_iter().collect();
        let start = start_from_pb(r.start);
        let sql = match &r.sql {
            Some(text) => Some(std::sync::Arc::new(
                crate::sql::SqlFilter::parse(text).map_err(|e| BrokerError::InvalidFilter {
                    expression: text.clone(),
                    reason: e.to_string(),
                })?,
            )),
            None => None,
        };
        let mut readers = Vec::with_capacity(partitions.len());
        for p in partitions {
            let partition = self.broker.partition(&r.topic, p)?;
            let cursor = match exact.remove(&p) {
                Some(cursor) => cursor,
                None => self.broker.start_cursor(partition.as_ref(), start)?,
            };
            let filter = RecordFilter {
                tag: r.tag.clone(),
                sql: sql.clone(),
            };
            readers.push(partition.reader(cursor, filter));
        }
        if let Some((p, _)) = exact.into_iter().next() {
            return Err(BrokerError::InvalidCursor {
                reason: format!("cursor for partition {p}, which this fetch does not read"),
            }
            .into());
        }
        let max_bytes = fetch_bytes(r.max_bytes);
        let (tx, rx) = mpsc::channel(FETCH_BUFFER);
        let shutdown = self.shutdown.clone();
        self.metrics.fetch_streams.inc();
        self.tracker.spawn(run_fetch(
            readers,
            tx,
            r.follow,
            max_bytes,
            shutdown,
            self.metrics.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn commit_cursor(
        &self,
        request: Request<pb::CommitCursorRequest>,
    ) -> Result<Response<pb::CommitCursorResponse>, Status> {
        self.check(
            &request,
            Action::Commit,
            Resource::Group(&request.get_ref().group),
        )?;
        let r = request.into_inner();
        let cursors = partition_cursors_from_pb(r.cursors)?;
        let broker = self.broker.clone();
        tokio::task::spawn_blocking(move || broker.commit(&r.group, &r.topic, &cursors))
            .await
            .map_err(|e| Status::internal(format!("commit task failed: {e}")))??;
        Ok(Response::new(pb::CommitCursorResponse {}))
    }

    async fn group_cursors(
        &self,
        request: Request<pb::GroupCursorsRequest>,
    ) -> Result<Response<pb::GroupCursorsResponse>, Status> {
        self.check(
            &request,
            Action::Read,
            Resource::Group(&request.get_ref().group),
        )?;
        let r = request.into_inner();
        let cursors = self.broker.group_cursors(&r.group, &r.topic)?;
        Ok(Response::new(pb::GroupCursorsResponse {
            cursors: cursors.iter().map(|(p, c)| cursor_to_pb(*p, c)).collect(),
        }))
    }
}

/// The bytes per fetch response for a client's `max_bytes` (0: the default; capped).
fn fetch_bytes(requested: u32) -> usize {
    match requested {
        0 => DEFAULT_FETCH_BYTES,
        n => (n as usize).min(MAX_FETCH_BYTES),
    }
}

/// Drives one fetch stream: reads every partition in turn, sends what it found with the
/// cursors after it, and (with `follow`) waits for new durable records when caught up.
async fn run_fetch(
    mut readers: Vec<Box<dyn PartitionRead>>,
    tx: mpsc::Sender<Result<pb::FetchResponse, Status>>,
    follow: bool,
    max_bytes: usize,
    shutdown: CancellationToken,
    metrics: Arc<ApiMetrics>,
) {
    loop {
        let started = std::time::Instant::now();
        let read = tokio::task::spawn_blocking(move || {
            let outcomes: Vec<_> = readers
                .iter_mut()
                .map(|r| (r.cursor().clone(), r.read(max_bytes)))
                .collect();
            (readers, outcomes)
        })
        .await;
        metrics
            .fetch_read_latency
            .observe(started.elapsed().as_secs_f64());
        let outcomes;
        (readers, outcomes) = match read {
            Ok(result) => result,
            Err(e) => {
                let _ = tx
                    .send(Err(Status::internal(format!("fetch task failed: {e}"))))
                    .await;
                return;
            }
        };
        let mut caught_up = true;
        for (reader, (before, outcome)) in readers.iter().zip(outcomes) {
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            };
            caught_up &= outcome.caught_up;
            if outcome.records.is_empty() && reader.cursor() == &before {
                continue;
            }
            let p = reader.partition().index();
            metrics.fetched_records.inc_by(outcome.records.len() as u64);
            let response = pb::FetchResponse {
                records: outcome
                    .records
                    .into_iter()
                    .map(|r| fetched_to_pb(p, r))
                    .collect(),
                cursors: vec![cursor_to_pb(p, reader.cursor())],
                end_of_stream: false,
            };
            if tx.send(Ok(response)).await.is_err() {
                return;
            }
        }
        if !caught_up {
            continue;
        }
        if !follow {
            let _ = tx
                .send(Ok(pb::FetchResponse {
                    end_of_stream: true,
                    ..Default::default()
                }))
                .await;
            return;
        }
        let waits = readers.iter_mut().map(|r| Box::pin(r.wait_for_data()));
        tokio::select! {
            (woken, _, _) = futures_util::future::select_all(waits) => {
                if let Err(e) = woken {
                    let _ = tx.send(Err(e.into())).await;
                    return;
                }
            }
            () = tx.closed() => return,
            () = shutdown.cancelled() => {
                let _ = tx.send(Err(BrokerError::ShuttingDown.into())).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_bytes_default_and_cap() {
        assert_eq!(fetch_bytes(0), DEFAULT_FETCH_BYTES);
        assert_eq!(fetch_bytes(4096), 4096);
        assert_eq!(fetch_bytes(u32::MAX), MAX_FETCH_BYTES);
    }
}
