//! One client's Telemetry stream: each `Settings` the client sends is answered with the
//! server's values (for a consumer, its group's settings and whether it reads a FIFO
//! topic), a producer's published topics are registered so that orphaned half messages of
//! those topics can be checked with it (`transactions`), and the client is kept alive for
//! invisibility renewal (`renew`).

use std::sync::Arc;

use broker::Broker;
use proto::rocketmq::v2 as pb;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use crate::names::ClientMeta;
use crate::renew::Clients;
use crate::service::group_settings;
use crate::settings::{self, GroupSettings, Limits};
use crate::status::ok;
use crate::transactions::Producers;

pub(crate) struct Client {
    pub broker: Arc<Broker>,
    pub meta: ClientMeta,
    pub clients: Arc<Clients>,
    pub producers: Arc<Producers>,
    /// This stream's id among the producers'.
    pub stream: u64,
    pub limits: Limits,
    pub stop: CancellationToken,
}

impl Client {
    /// Serves the stream until the client or the server ends it.
    pub async fn serve(
        self,
        incoming: Streaming<pb::TelemetryCommand>,
        tx: mpsc::Sender<Result<pb::TelemetryCommand, Status>>,
    ) {
        self.answer(incoming, &tx).await;
        self.producers.leave(self.stream);
    }

    async fn answer(
        &self,
        mut incoming: Streaming<pb::TelemetryCommand>,
        tx: &mpsc::Sender<Result<pb::TelemetryCommand, Status>>,
    ) {
        loop {
            let command = tokio::select! {
                c = incoming.next() => c,
                () = self.stop.cancelled() => return,
            };
            let command = match command {
                Some(Ok(command)) => command,
                Some(Err(error)) => {
                    tracing::debug!(client = ?self.meta.client_id, %error, "telemetry stream ended");
                    return;
                }
                None => return,
            };
            self.clients.touch(self.meta.client_id.as_deref());
            let Some(pb::telemetry_command::Command::Settings(settings)) = command.command else {
                // Answers to server commands, and anything else.
                continue;
            };
            if let Some(pb::settings::PubSub::Publishing(publishing)) = &settings.pub_sub {
                let topics = publishing
                    .topics
                    .iter()
                    .filter_map(|r| {
                        let name = self.meta.name_of(Some(r), "topic").ok()?;
                        Some((name, r.clone()))
                    })
                    .collect();
                self.producers.register(self.stream, topics, tx);
            }
            let (group, fifo_topic) = self.subscription_of(&settings);
            let answer = pb::TelemetryCommand {
                status: Some(ok()),
                command: Some(pb::telemetry_command::Command::Settings(settings::answer(
                    settings,
                    self.limits,
                    group,
                    fifo_topic,
                ))),
            };
            if tx.send(Ok(answer)).await.is_err() {
                return;
            }
        }
    }

    /// A consumer's group settings, and whether its subscription names a FIFO topic.
    fn subscription_of(&self, settings: &pb::Settings) -> (GroupSettings, bool) {
        let (broker, meta, limits) = (&self.broker, &self.meta, &self.limits);
        let Some(pb::settings::PubSub::Subscription(subscription)) = &settings.pub_sub else {
            return (GroupSettings::of(None, limits), false);
        };
        let group = meta
            .name_of(subscription.group.as_ref(), "consumer group")
            .map(|g| group_settings(broker, &g, limits))
            .unwrap_or_else(|_| GroupSettings::of(None, limits));
        let fifo_topic = subscription.subscriptions.iter().any(|entry| {
            meta.name_of(entry.topic.as_ref(), "topic")
                .ok()
                .and_then(|name| broker.topic(&name).ok())
                .is_some_and(|t| t.config.message_type == broker::meta::MessageType::Fifo)
        });
        (group, fifo_topic)
    }
}
