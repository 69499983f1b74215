//! `apache.rocketmq.v2.MessagingService` over the region's broker: routes, the Telemetry
//! settings stream, heartbeats, and sending. RPCs not served yet answer with the
//! protocol's `NOT_IMPLEMENTED` status at once, never a hang.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use broker::{Broker, Partitioning};
use proto::rocketmq::v2 as pb;
use proto::rocketmq::v2::messaging_service_server::MessagingService;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::names::ClientMeta;
use crate::pop::Consumption;
use crate::renew::{Clients, Leases};
use crate::settings::{GroupSettings, Limits};
use crate::status::{Refusal, ok};
use crate::transactions::Producers;
use crate::{route, send, telemetry};
use auth::{Action, Resource};

type Answer<T> = Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Telemetry answers queued per client stream; a client that does not read them waits.
const TELEMETRY_QUEUE: usize = 16;

/// The access point of one region.
pub struct AccessPoint {
    pub(crate) broker: Arc<Broker>,
    region: String,
    /// The address clients reach this access point at, when a request does not say.
    address: SocketAddr,
    pub(crate) limits: Limits,
    pub(crate) consumption: Arc<Consumption>,
    /// Push consumers' messages whose invisibility the server renews, and the clients
    /// seen lately (`renew`).
    pub(crate) leases: Arc<Leases>,
    pub(crate) clients: Arc<Clients>,
    /// Producers' Telemetry streams, asked about orphaned half messages (`transactions`).
    producers: Arc<Producers>,
    pub(crate) authority: Arc<auth::Authority>,
    pub(crate) stop: CancellationToken,
}

impl AccessPoint {
    /// The consumer groups' state (the console's redelivery uses it).
    pub fn consumption(&self) -> Arc<Consumption> {
        self.consumption.clone()
    }

    pub fn new(
        broker: Arc<Broker>,
        region: String,
        address: SocketAddr,
        limits: Limits,
        authority: Arc<auth::Authority>,
        stop: CancellationToken,
    ) -> Self {
        let consumption = Arc::new(Consumption::new(broker.clone()));
        let (leases, clients) = (Arc::default(), Arc::<Clients>::default());
        tokio::spawn(crate::pop::shared::run(consumption.clone(), stop.clone()));
        let producers = Arc::new(Producers::default());
        let asked = producers.clone();
        broker.set_orphan_checker(Arc::new(move |check| asked.check(check)));
        tokio::spawn(crate::renew::run(
            Arc::clone(&leases),
            clients.clone(),
            consumption.clone(),
            stop.clone(),
        ));
        AccessPoint {
            consumption,
            leases,
            clients,
            producers,
            authority,
            broker,
            region,
            address,
            limits,
            stop,
        }
    }

    /// Consumer group `group`'s settings here.
    pub(crate) fn group_settings(&self, group: &str) -> crate::settings::GroupSettings {
        group_settings(&self.broker, group, &self.limits)
    }

    /// The endpoints a route names: those the client reached this access point at, else
    /// the bound address.
    fn endpoints(&self, asked: Option<pb::Endpoints>) -> pb::Endpoints {
        asked
            .filter(|e| !e.addresses.is_empty())
            .map(|mut e| {
                if e.scheme == pb::AddressScheme::Unspecified as i32 {
                    e.scheme = pb::AddressScheme::IPv4 as i32;
                }
                e
            })
            .unwrap_or_else(|| pb::Endpoints {
                scheme: if self.address.is_ipv6() {
                    pb::AddressScheme::IPv6
                } else {
                    pb::AddressScheme::IPv4
                } as i32,
                addresses: vec![pb::Address {
                    host: self.address.ip().to_string(),
                    port: i32::from(self.address.port()),
                }],
            })
    }

    fn query_route(
        &self,
        meta: &ClientMeta,
        request: pb::QueryRouteRequest,
    ) -> Result<Vec<pb::MessageQueue>, Refusal> {
        let name = meta.name_of(request.topic.as_ref(), "topic")?;
        self.allow(meta, &[(Action::Describe, Resource::Topic(&name))])?;
        let topic = self.broker.topic(&name)?;
        let mut origins: Vec<String> = topic
            .partitions
            .iter()
            .flat_map(|p| p.sub_logs().into_iter().map(|s| s.origin))
            .collect();
        origins.sort();
        origins.dedup();
        let resource = request.topic.unwrap_or_default();
        Ok(route::queues(
            &resource,
            &self.region,
            &origins,
            topic.config.partitions,
            &self.endpoints(request.endpoints),
            route::wire_type(topic.config.message_type),
        ))
    }

    async fn send(
        &self,
        meta: &ClientMeta,
        request: pb::SendMessageRequest,
    ) -> Result<Vec<pb::SendResultEntry>, Refusal> {
        let Some(first) = request.messages.first() else {
            return Err(Refusal::new(
                pb::Code::BadRequest,
                "the request holds no message",
            ));
        };
        let name = meta.name_of(first.topic.as_ref(), "topic")?;
        self.allow(meta, &[(Action::Produce, Resource::Topic(&name))])?;
        let topic = self.broker.topic(&name)?;
        let partitions = topic.config.partitions;
        let mut outgoing = Vec::with_capacity(request.messages.len());
        for (index, message) in request.messages.into_iter().enumerate() {
            let this = meta.name_of(message.topic.as_ref(), "topic")?;
            if this != name {
                return Err(Refusal::new(
                    pb::Code::BadRequest,
                    format!(
                        "message {index} is for topic {this}, message 0 for {name}: one topic per request"
                    ),
                ));
            }
            outgoing.push(send::record_of(
                message,
                index,
                partitions,
                topic.config.message_type,
                self.limits.max_body,
            )?);
        }
        if outgoing
            .iter()
            .any(|o| o.deliver_at.is_some() || o.transaction)
        {
            return self.schedule(&name, outgoing).await;
        }
        // One produce per queue (the messages of a queue in one batch, in request order),
        // the queues at once; each message answered with its own offset.
        let mut by_queue: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (index, out) in outgoing.iter().enumerate() {
            by_queue.entry(out.queue).or_default().push(index);
        }
        let produces = by_queue.iter().map(|(queue, indexes)| {
            let records = indexes
                .iter()
                .map(|i| outgoing[*i].record.clone())
                .collect();
            self.broker
                .produce(&name, records, Partitioning::Explicit(*queue))
        });
        let produced = futures_util::future::try_join_all(produces).await?;
        self.trace_produced(meta, &name, produced.iter().flatten());
        let mut offsets = vec![0; outgoing.len()];
        for (indexes, ids) in by_queue.values().zip(produced) {
            for (index, id) in indexes.iter().zip(ids) {
                offsets[*index] = id.offset;
            }
        }
        let entries = outgoing
            .into_iter()
            .zip(offsets)
            .map(|(out, offset)| pb::SendResultEntry {
                status: Some(ok()),
                message_id: out.message_id,
                transaction_id: String::new(),
                offset: i64::try_from(offset).unwrap_or(i64::MAX),
                recall_handle: String::new(),
            })
            .collect();
        Ok(entries)
    }
}

impl AccessPoint {
    /// Traces the messages of `ids` as produced here by the client of `meta`.
    fn trace_produced<'a>(
        &self,
        meta: &ClientMeta,
        topic: &str,
        ids: impl Iterator<Item = &'a broker::RecordId>,
    ) {
        let tracer = self.broker.tracer();
        if !tracer.enabled() {
            return;
        }
        let ids: Vec<broker::RecordId> = ids.cloned().collect();
        let by = meta
            .credential
            .as_ref()
            .map_or("", |c| c.access_key.as_str());
        let client = meta.client_id.as_deref().unwrap_or("");
        tracer.stored(
            broker::trace::TraceKind::Produced,
            topic,
            &ids,
            &[("by", by), ("via", "rocketmq"), ("client", client)],
        );
    }

    /// Delay messages: held by the broker until their delivery time, each answered with a
    /// recall handle; half messages of transactions: held until their transaction ends,
    /// each answered with its transaction id. Durable when this returns.
    async fn schedule(
        &self,
        topic: &str,
        outgoing: Vec<send::Outgoing>,
    ) -> Result<Vec<pb::SendResultEntry>, Refusal> {
        let half = outgoing.iter().any(|o| o.transaction);
        let ids: Vec<String> = outgoing.iter().map(|o| o.message_id.clone()).collect();
        let held = outgoing
            .into_iter()
            .map(|o| broker::Scheduled {
                partition: o.queue,
                message_id: o.message_id,
                due_ms: o.deliver_at.unwrap_or(0),
                record: o.record,
            })
            .collect();
        let handles = if half {
            tokio::task::block_in_place(|| self.broker.hold_half(topic, held))?
        } else {
            self.broker.schedule(topic, held).await?
        };
        Ok(ids
            .into_iter()
            .zip(handles)
            .map(|(message_id, handle)| {
                let (transaction_id, recall_handle) = if half {
                    (handle, String::new())
                } else {
                    (String::new(), handle)
                };
                pb::SendResultEntry {
                    status: Some(ok()),
                    message_id,
                    transaction_id,
                    offset: 0,
                    recall_handle,
                }
            })
            .collect())
    }

    fn end(&self, meta: &ClientMeta, request: pb::EndTransactionRequest) -> Result<(), Refusal> {
        let name = meta.name_of(request.topic.as_ref(), "topic")?;
        self.allow(meta, &[(Action::Produce, Resource::Topic(&name))])?;
        self.broker.topic(&name)?;
        let commit = match pb::TransactionResolution::try_from(request.resolution) {
            Ok(pb::TransactionResolution::Commit) => true,
            Ok(pb::TransactionResolution::Rollback) => false,
            _ => {
                return Err(Refusal::new(
                    pb::Code::BadRequest,
                    format!(
                        "transaction {}: the resolution must be COMMIT or ROLLBACK, not {}",
                        request.transaction_id, request.resolution
                    ),
                ));
            }
        };
        let ended = tokio::task::block_in_place(|| {
            self.broker
                .end_transaction(&name, &request.transaction_id, commit)
        })?;
        match ended {
            Some(_) => Ok(()),
            None => Err(Refusal::new(
                pb::Code::InvalidTransactionId,
                format!(
                    "no half message of topic {name} is held under transaction id \"{}\" (its transaction ended, was rolled back after {} unanswered checks, or never existed)",
                    request.transaction_id,
                    broker::timer::MAX_CHECKS
                ),
            )),
        }
    }

    async fn recall(
        &self,
        meta: &ClientMeta,
        request: pb::RecallMessageRequest,
    ) -> Result<String, Refusal> {
        let name = meta.name_of(request.topic.as_ref(), "topic")?;
        self.allow(meta, &[(Action::Produce, Resource::Topic(&name))])?;
        self.broker.topic(&name)?;
        self.broker
            .recall(&name, &request.recall_handle)
            .await?
            .ok_or_else(|| {
                Refusal::new(
                    pb::Code::NotFound,
                    format!(
                        "no delayed message of topic {name} is held under recall handle \"{}\" (it fired, was recalled, or never existed)",
                        request.recall_handle
                    ),
                )
            })
    }
}

/// A unary RPC not served yet: `NOT_IMPLEMENTED` in its response's status.
fn not_served<T: FromStatus>(rpc: &str) -> Answer<T> {
    Ok(Response::new(T::from_status(
        Refusal::not_implemented(rpc).status(),
    )))
}

/// A response made of its status alone.
trait FromStatus {
    fn from_status(status: pb::Status) -> Self;
}

macro_rules! from_status {
    ($($response:ty),* $(,)?) => {
        $(impl FromStatus for $response {
            // One body for responses with and without fields besides the status.
            #[allow(clippy::needless_update)]
            fn from_status(status: pb::Status) -> Self {
                Self { status: Some(status), ..Default::default() }
            }
        })*
    };
}

from_status!(
    pb::UpdateOffsetResponse,
    pb::GetOffsetResponse,
    pb::QueryOffsetResponse,
    pb::EndTransactionResponse,
    pb::RecallMessageResponse,
    pb::SyncLiteSubscriptionResponse,
);

pub(crate) fn group_settings(broker: &Broker, group: &str, limits: &Limits) -> GroupSettings {
    GroupSettings::of(broker.groups().get(group).as_ref(), limits)
}

/// A server stream of one status.
fn status_stream<T: Send + 'static>(item: T) -> BoxStream<T> {
    Box::pin(tokio_stream::once(Ok(item)))
}

#[tonic::async_trait]
impl MessagingService for AccessPoint {
    async fn query_route(
        &self,
        request: Request<pb::QueryRouteRequest>,
    ) -> Answer<pb::QueryRouteResponse> {
        let meta = ClientMeta::from_metadata(request.metadata());
        let answer = match self.query_route(&meta, request.into_inner()) {
            Ok(message_queues) => pb::QueryRouteResponse {
                status: Some(ok()),
                message_queues,
            },
            Err(refusal) => pb::QueryRouteResponse {
                status: Some(refusal.status()),
                message_queues: Vec::new(),
            },
        };
        Ok(Response::new(answer))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Answer<pb::HeartbeatResponse> {
        let meta = ClientMeta::from_metadata(request.metadata());
        let status = self.signed(&meta, || self.clients.touch(meta.client_id.as_deref()));
        Ok(Response::new(pb::HeartbeatResponse {
            status: Some(status),
        }))
    }

    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Answer<pb::SendMessageResponse> {
        let meta = ClientMeta::from_metadata(request.metadata());
        let answer = match self.send(&meta, request.into_inner()).await {
            Ok(entries) => pb::SendMessageResponse {
                status: Some(ok()),
                entries,
            },
            Err(refusal) => {
                tracing::debug!(client = ?meta.client_id, %refusal, "send refused");
                pb::SendMessageResponse {
                    status: Some(refusal.status()),
                    entries: Vec::new(),
                }
            }
        };
        Ok(Response::new(answer))
    }

    type ReceiveMessageStream = BoxStream<pb::ReceiveMessageResponse>;

    async fn receive_message(
        &self,
        request: Request<pb::ReceiveMessageRequest>,
    ) -> Answer<Self::ReceiveMessageStream> {
        let meta = ClientMeta::from_metadata(request.metadata());
        let answers = self.receive(&meta, request.into_inner()).await;
        Ok(Response::new(Box::pin(tokio_stream::iter(
            answers.into_iter().map(Ok),
        ))))
    }

    type PullMessageStream = BoxStream<pb::PullMessageResponse>;

    async fn pull_message(
        &self,
        _request: Request<pb::PullMessageRequest>,
    ) -> Answer<Self::PullMessageStream> {
        let status = Refusal::not_implemented("PullMessage").status();
        Ok(Response::new(status_stream(pb::PullMessageResponse {
            content: Some(pb::pull_message_response::Content::Status(status)),
        })))
    }

    type TelemetryStream = BoxStream<pb::TelemetryCommand>;

    async fn telemetry(
        &self,
        request: Request<Streaming<pb::TelemetryCommand>>,
    ) -> Answer<Self::TelemetryStream> {
        let meta = ClientMeta::from_metadata(request.metadata());
        if let Err(refusal) = self.allow(&meta, &[]) {
            return Ok(Response::new(status_stream(pb::TelemetryCommand {
                status: Some(refusal.status()),
                command: None,
            })));
        }
        let incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(TELEMETRY_QUEUE);
        let client = telemetry::Client {
            broker: self.broker.clone(),
            meta,
            clients: self.clients.clone(),
            producers: self.producers.clone(),
            stream: self.producers.stream_id(),
            limits: self.limits,
            stop: self.stop.clone(),
        };
        tokio::spawn(client.serve(incoming, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn notify_client_termination(
        &self,
        request: Request<pb::NotifyClientTerminationRequest>,
    ) -> Answer<pb::NotifyClientTerminationResponse> {
        // Its messages' invisibility is renewed no more.
        let meta = ClientMeta::from_metadata(request.metadata());
        let status = self.signed(&meta, || self.clients.leave(meta.client_id.as_deref()));
        Ok(Response::new(pb::NotifyClientTerminationResponse {
            status: Some(status),
        }))
    }

    async fn query_assignment(
        &self,
        request: Request<pb::QueryAssignmentRequest>,
    ) -> Answer<pb::QueryAssignmentResponse> {
        let meta = ClientMeta::from_metadata(request.metadata());
        let request = request.into_inner();
        // Every readable queue goes to every consumer of the group: PoP hands each message
        // to one of them at a time, so no rebalancing is needed.
        let route = pb::QueryRouteRequest {
            topic: request.topic,
            endpoints: request.endpoints,
        };
        let answer = match self.query_route(&meta, route) {
            Ok(queues) => pb::QueryAssignmentResponse {
                status: Some(ok()),
                assignments: queues
                    .into_iter()
                    .map(|q| pb::Assignment {
                        message_queue: Some(q),
                    })
                    .collect(),
            },
            Err(refusal) => pb::QueryAssignmentResponse {
                status: Some(refusal.status()),
                assignments: Vec::new(),
            },
        };
        Ok(Response::new(answer))
    }

    async fn ack_message(
        &self,
        request: Request<pb::AckMessageRequest>,
    ) -> Answer<pb::AckMessageResponse> {
        let meta = ClientMeta::from_metadata(request.metadata());
        Ok(Response::new(self.ack(&meta, request.into_inner()).await))
    }

    async fn forward_message_to_dead_letter_queue(
        &self,
        request: Request<pb::ForwardMessageToDeadLetterQueueRequest>,
    ) -> Answer<pb::ForwardMessageToDeadLetterQueueResponse> {
        let meta = ClientMeta::from_metadata(request.metadata());
        let status = match self.forward(&meta, request.into_inner()).await {
            Ok(()) => ok(),
            Err(refusal) => refusal.status(),
        };
        Ok(Response::new(pb::ForwardMessageToDeadLetterQueueResponse {
            status: Some(status),
        }))
    }

    async fn update_offset(
        &self,
        _request: Request<pb::UpdateOffsetRequest>,
    ) -> Answer<pb::UpdateOffsetResponse> {
        not_served("UpdateOffset")
    }

    async fn get_offset(
        &self,
        _request: Request<pb::GetOffsetRequest>,
    ) -> Answer<pb::GetOffsetResponse> {
        not_served("GetOffset")
    }

    async fn query_offset(
        &self,
        _request: Request<pb::QueryOffsetRequest>,
    ) -> Answer<pb::QueryOffsetResponse> {
        not_served("QueryOffset")
    }

    async fn end_transaction(
        &self,
        request: Request<pb::EndTransactionRequest>,
    ) -> Answer<pb::EndTransactionResponse> {
        let meta = ClientMeta::from_metadata(request.metadata());
        let status = match self.end(&meta, request.into_inner()) {
            Ok(()) => ok(),
            Err(refusal) => refusal.status(),
        };
        Ok(Response::new(pb::EndTransactionResponse {
            status: Some(status),
        }))
    }

    async fn change_invisible_duration(
        &self,
        request: Request<pb::ChangeInvisibleDurationRequest>,
    ) -> Answer<pb::ChangeInvisibleDurationResponse> {
        let meta = ClientMeta::from_metadata(request.metadata());
        Ok(Response::new(
            self.change_invisible(&meta, request.into_inner()).await,
        ))
    }

    async fn recall_message(
        &self,
        request: Request<pb::RecallMessageRequest>,
    ) -> Answer<pb::RecallMessageResponse> {
        let meta = ClientMeta::from_metadata(request.metadata());
        let answer = match self.recall(&meta, request.into_inner()).await {
            Ok(message_id) => pb::RecallMessageResponse {
                status: Some(ok()),
                message_id,
            },
            Err(refusal) => pb::RecallMessageResponse {
                status: Some(refusal.status()),
                message_id: String::new(),
            },
        };
        Ok(Response::new(answer))
    }

    async fn sync_lite_subscription(
        &self,
        _request: Request<pb::SyncLiteSubscriptionRequest>,
    ) -> Answer<pb::SyncLiteSubscriptionResponse> {
        not_served("SyncLiteSubscription")
    }
}
