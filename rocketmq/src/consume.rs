//! The consuming RPCs of the access point (ReceiveMessage, AckMessage,
//! ChangeInvisibleDuration) over the PoP state of `pop`: checking the request, long
//! polling, and the answers. The state work runs on the blocking pool (reads, and a
//! metadata flush before every answer that changed it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::trace::{TraceEvent, TraceKind};
use proto::rocketmq::v2 as pb;
use proto::rocketmq::v2::Code;

use crate::names::ClientMeta;
use crate::pop::filter::Filter;
use crate::pop::handle::Handle;
use crate::pop::{Consumption, Receive, Taken, deliver};
use crate::renew::Lease;
use crate::route;
use crate::service::AccessPoint;
use crate::status::{Refusal, ok};

/// Invisibility when a receive names none (push consumers).
const DEFAULT_INVISIBLE: Duration = Duration::from_secs(30);
/// The longest invisibility a receive or a change may ask for.
const MAX_INVISIBLE: Duration = Duration::from_secs(12 * 3600);
/// Messages per receive at most.
const MAX_BATCH: usize = 64;
/// While long polling, expired invisibilities are looked for at least this often.
const EXPIRY_LOOK: Duration = Duration::from_secs(1);

fn check_group(group: &str) -> Result<(), Refusal> {
    broker::catalog::groups::check_name(group)
        .map_err(|reason| Refusal::new(Code::IllegalConsumerGroup, reason))
}

fn duration_of(d: Option<&prost_types::Duration>) -> Option<Duration> {
    d.and_then(|d| {
        (d.seconds >= 0 && d.nanos >= 0).then(|| Duration::new(d.seconds as u64, d.nanos as u32))
    })
}

fn invisible_of(asked: Option<&prost_types::Duration>, given: bool) -> Result<Duration, Refusal> {
    let Some(invisible) = duration_of(asked) else {
        if asked.is_some() {
            return Err(Refusal::new(
                Code::IllegalInvisibleTime,
                "a negative invisible duration",
            ));
        }
        if given {
            return Err(Refusal::new(
                Code::IllegalInvisibleTime,
                "no invisible duration: the request must say how long",
            ));
        }
        return Ok(DEFAULT_INVISIBLE);
    };
    if invisible.is_zero() || invisible > MAX_INVISIBLE {
        return Err(Refusal::new(
            Code::IllegalInvisibleTime,
            format!(
                "invisible duration {invisible:?}: expected more than 0 and at most {MAX_INVISIBLE:?}"
            ),
        ));
    }
    Ok(invisible)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Refusal::new(
            Code::InternalError,
            format!("a consumer task failed: {e}"),
        ))
    })
}

impl AccessPoint {
    /// The answers of a ReceiveMessage: a status, then the messages handed out.
    pub(crate) async fn receive(
        &self,
        meta: &ClientMeta,
        request: pb::ReceiveMessageRequest,
    ) -> Vec<pb::ReceiveMessageResponse> {
        let status = |s: pb::Status| pb::ReceiveMessageResponse {
            content: Some(pb::receive_message_response::Content::Status(s)),
        };
        let queue = request.message_queue.clone().unwrap_or_default();
        let topic_resource = queue.topic.clone().unwrap_or_default();
        self.clients.touch(meta.client_id.as_deref());
        let renewing = request.auto_renew.then(|| meta.client_id.clone()).flatten();
        let names = (request.group.clone(), queue.topic.clone());
        let taken = self.take(meta, request).await;
        if let (Ok(taken), Some(client)) = (&taken, renewing) {
            self.lease(meta, names, taken, client);
        }
        match taken {
            Ok(taken) if taken.deliveries.is_empty() => vec![status(
                Refusal::new(Code::MessageNotFound, "no message to receive now").status(),
            )],
            // The status, when the messages were handed out (the SDKs measure delivery
            // latency from it), then the messages.
            Ok(taken) => [
                status(ok()),
                pb::ReceiveMessageResponse {
                    content: Some(pb::receive_message_response::Content::DeliveryTimestamp(
                        deliver::timestamp(broker::record::now_ms()),
                    )),
                },
            ]
            .into_iter()
            .chain(
                taken
                    .deliveries
                    .into_iter()
                    .map(|d| pb::ReceiveMessageResponse {
                        content: Some(pb::receive_message_response::Content::Message(
                            deliver::message(
                                &topic_resource,
                                route::wire_type(taken.message_type),
                                d,
                            ),
                        )),
                    }),
            )
            .collect(),
            Err(refusal) => vec![status(refusal.status())],
        }
    }

    /// Traces each message handed out: to which group and client, which attempt.
    fn trace_deliveries(&self, meta: &ClientMeta, group: &str, topic: &str, taken: &Taken) {
        let tracer = self.broker.tracer();
        let Some(region) = tracer.region() else {
            return;
        };
        for d in &taken.deliveries {
            let id = broker::RecordId {
                partition: d.partition,
                origin: d.origin.clone(),
                offset: d.offset,
            };
            let event = TraceEvent::one(TraceKind::Delivered, region, topic, &id)
                .with("group", group)
                .with("attempt", d.attempt)
                .with("client", meta.client_id.as_deref().unwrap_or(""));
            tracer.record(event);
        }
    }

    /// The server renews the invisibility of what `client` received with `auto_renew`.
    fn lease(
        &self,
        meta: &ClientMeta,
        (group, topic): (Option<pb::Resource>, Option<pb::Resource>),
        taken: &Taken,
        client: String,
    ) {
        let (Ok(group), Ok(topic)) = (
            meta.name_of(group.as_ref(), "consumer group"),
            meta.name_of(topic.as_ref(), "topic"),
        ) else {
            return;
        };
        let now = broker::record::now_ms();
        for d in &taken.deliveries {
            let Ok(handle) = Handle::parse(&d.handle) else {
                continue;
            };
            self.leases.hold(Lease {
                group: group.clone(),
                topic: topic.clone(),
                handle,
                client: client.clone(),
                slice: d.invisible,
                visible_at_ms: now + d.invisible.as_millis() as i64,
                received_ms: now,
            });
        }
    }

    async fn take(
        &self,
        meta: &ClientMeta,
        request: pb::ReceiveMessageRequest,
    ) -> Result<Taken, Refusal> {
        let group = meta.name_of(request.group.as_ref(), "consumer group")?;
        check_group(&group)?;
        let queue = request.message_queue.unwrap_or_default();
        let topic = meta.name_of(queue.topic.as_ref(), "topic")?;
        self.allow_consume(meta, &group, &topic)?;
        let filter = Filter::parse(request.filter_expression.as_ref())?;
        let invisible = invisible_of(request.invisible_duration.as_ref(), false)?;
        let batch = match request.batch_size {
            n if n <= 0 => self.limits.receive_batch.max(1) as usize,
            n => (n as usize).min(MAX_BATCH),
        };
        let polling = duration_of(request.long_polling_timeout.as_ref())
            .unwrap_or(Duration::ZERO)
            .min(self.limits.long_polling);
        let deadline = Instant::now() + polling;
        let partitions: Vec<_> = {
            let t = self.broker.topic(&topic)?;
            t.partitions.clone()
        };
        let mut durable: Vec<_> = partitions.iter().map(|p| p.subscribe_durable()).collect();
        let hint = u32::try_from(queue.id).ok();
        let settings = self.group_settings(&group);
        loop {
            let (consumption, looking_group, looking_topic, filter) = (
                self.consumption.clone(),
                group.clone(),
                topic.clone(),
                filter.clone(),
            );
            let taken = blocking(move || {
                consumption.take(&Receive {
                    group: &looking_group,
                    topic: &looking_topic,
                    filter: &filter,
                    batch,
                    invisible,
                    hint,
                    max_attempts: settings.max_attempts,
                    fifo: settings.fifo,
                })
            })
            .await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if !taken.deliveries.is_empty() || left.is_zero() {
                self.trace_deliveries(meta, &group, &topic, &taken);
                return Ok(taken);
            }
            // Wait for new data in any partition, an invisibility to end, or the deadline.
            let changes =
                futures_util::future::select_all(durable.iter_mut().map(|d| Box::pin(d.changed())));
            tokio::select! {
                _ = changes => {}
                () = tokio::time::sleep(left.min(EXPIRY_LOOK)) => {}
                () = self.stop.cancelled() => {
                    return Ok(Taken {
                        deliveries: Vec::new(),
                        message_type: Default::default(),
                    });
                }
            }
        }
    }

    pub(crate) async fn ack(
        &self,
        meta: &ClientMeta,
        request: pb::AckMessageRequest,
    ) -> pb::AckMessageResponse {
        let names = meta
            .name_of(request.group.as_ref(), "consumer group")
            .and_then(|g| Ok((g, meta.name_of(request.topic.as_ref(), "topic")?)))
            .and_then(|(g, t)| {
                self.allow_consume(meta, &g, &t)?;
                Ok((g, t))
            });
        let (group, topic) = match names {
            Ok(names) => names,
            Err(refusal) => {
                return pb::AckMessageResponse {
                    status: Some(refusal.status()),
                    entries: Vec::new(),
                };
            }
        };
        let handles: Vec<String> = request
            .entries
            .iter()
            .map(|e| e.receipt_handle.clone())
            .collect();
        for handle in &handles {
            self.leases.release(&group, &topic, handle);
        }
        let c = self.consumption.clone();
        let results = tokio::task::spawn_blocking(move || c.ack(&group, &topic, &handles))
            .await
            .unwrap_or_else(|e| {
                let refusal = Refusal::new(
                    Code::InternalError,
                    format!("an acknowledgement failed: {e}"),
                );
                vec![Err(refusal); request.entries.len()]
            });
        let mut first_failure = None;
        let entries = request
            .entries
            .into_iter()
            .zip(results)
            .map(|(entry, result)| {
                let status = match result {
                    Ok(()) => ok(),
                    Err(refusal) => {
                        let status = refusal.status();
                        first_failure.get_or_insert_with(|| status.clone());
                        status
                    }
                };
                pb::AckMessageResultEntry {
                    message_id: entry.message_id,
                    receipt_handle: entry.receipt_handle,
                    status: Some(status),
                }
            })
            .collect();
        pb::AckMessageResponse {
            status: Some(first_failure.unwrap_or_else(ok)),
            entries,
        }
    }

    pub(crate) async fn forward(
        &self,
        meta: &ClientMeta,
        request: pb::ForwardMessageToDeadLetterQueueRequest,
    ) -> Result<(), Refusal> {
        let group = meta.name_of(request.group.as_ref(), "consumer group")?;
        let topic = meta.name_of(request.topic.as_ref(), "topic")?;
        self.allow_consume(meta, &group, &topic)?;
        self.leases.release(&group, &topic, &request.receipt_handle);
        let c = self.consumption.clone();
        let handle = request.receipt_handle;
        blocking(move || c.forward_to_dead_letters(&group, &topic, &handle)).await
    }

    pub(crate) async fn change_invisible(
        &self,
        meta: &ClientMeta,
        request: pb::ChangeInvisibleDurationRequest,
    ) -> pb::ChangeInvisibleDurationResponse {
        let result = async {
            let group = meta.name_of(request.group.as_ref(), "consumer group")?;
            let topic = meta.name_of(request.topic.as_ref(), "topic")?;
            self.allow_consume(meta, &group, &topic)?;
            let invisible = invisible_of(request.invisible_duration.as_ref(), true)?;
            // The client takes over the message's invisibility.
            self.leases.release(&group, &topic, &request.receipt_handle);
            let c: Arc<Consumption> = self.consumption.clone();
            let handle = request.receipt_handle.clone();
            blocking(move || c.change_invisible(&group, &topic, &handle, invisible)).await
        }
        .await;
        match result {
            Ok(receipt_handle) => pb::ChangeInvisibleDurationResponse {
                status: Some(ok()),
                receipt_handle,
            },
            Err(refusal) => pb::ChangeInvisibleDurationResponse {
                status: Some(refusal.status()),
                // The SDKs replace their handle with this one even on failure.
                receipt_handle: request.receipt_handle,
            },
        }
    }
}
