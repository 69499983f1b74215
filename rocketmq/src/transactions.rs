//! Transaction messages on the access point. A send to a transaction topic holds the
//! message as a half message in the broker (`broker::timer`: invisible, never replicated)
//! and answers with its transaction id; `EndTransaction` commits (the message is appended
//! in this region, exactly once) or rolls back. A half message whose transaction does not
//! end is checked: the broker hands it to `Producers::check`, which sends a
//! `RecoverOrphanedTransactionCommand` on the Telemetry stream of a producer that publishes
//! its topic; the producer's checker answers with `EndTransaction`. After
//! `broker::timer::MAX_CHECKS` checks the half message is rolled back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use broker::OrphanCheck;
use proto::rocketmq::v2 as pb;
use tokio::sync::mpsc;
use tonic::Status;

use crate::pop::deliver::{Delivery, message};
use crate::status::ok;

type Telemetry = mpsc::Sender<Result<pb::TelemetryCommand, Status>>;

/// One producer's Telemetry stream, publishing a topic under the name it uses for it.
struct Stream {
    id: u64,
    resource: pb::Resource,
    sender: Telemetry,
}

/// Removes stream `id` from every topic.
fn forget(by_topic: &mut HashMap<String, Vec<Stream>>, id: u64) {
    for streams in by_topic.values_mut() {
        streams.retain(|s| s.id != id);
    }
    by_topic.retain(|_, streams| !streams.is_empty());
}

/// The Telemetry streams of producers, by the topic (broker name) they publish.
#[derive(Default)]
pub struct Producers {
    by_topic: Mutex<HashMap<String, Vec<Stream>>>,
    next: AtomicU64,
    /// Which producer was asked last, per topic, so that checks spread over them.
    turn: AtomicU64,
}

impl Producers {
    /// A stream's id, for `register` and `leave`.
    pub fn stream_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Stream `id` publishes `topics` (broker name, and the resource as the client names
    /// it), replacing what it said before.
    pub fn register(&self, id: u64, topics: Vec<(String, pb::Resource)>, sender: &Telemetry) {
        let mut by_topic = self.by_topic.lock().expect("producers lock");
        forget(&mut by_topic, id);
        for (topic, resource) in topics {
            by_topic.entry(topic).or_default().push(Stream {
                id,
                resource,
                sender: sender.clone(),
            });
        }
    }

    /// Stream `id` ended.
    pub fn leave(&self, id: u64) {
        forget(&mut self.by_topic.lock().expect("producers lock"), id);
    }

    /// Asks a producer of the half message's topic whether to commit it; logged when none
    /// is connected (the broker checks again later).
    pub fn check(&self, check: OrphanCheck) {
        let by_topic = self.by_topic.lock().expect("producers lock");
        let streams = by_topic.get(&check.topic).map_or(&[][..], Vec::as_slice);
        let open: Vec<&Stream> = streams.iter().filter(|s| !s.sender.is_closed()).collect();
        if open.is_empty() {
            tracing::info!(topic = %check.topic, message_id = %check.message_id, "an orphaned half message: no producer of its topic is connected to ask");
            return;
        }
        let stream = open[self.turn.fetch_add(1, Ordering::Relaxed) as usize % open.len()];
        let delivery = Delivery {
            partition: check.partition,
            origin: String::new(),
            offset: 0,
            record: check.record,
            attempt: 0,
            handle: String::new(),
            invisible: std::time::Duration::ZERO,
        };
        let command = pb::TelemetryCommand {
            status: Some(ok()),
            command: Some(
                pb::telemetry_command::Command::RecoverOrphanedTransactionCommand(
                    pb::RecoverOrphanedTransactionCommand {
                        message: Some(message(
                            &stream.resource,
                            pb::MessageType::Transaction,
                            delivery,
                        )),
                        transaction_id: check.transaction_id,
                    },
                ),
            ),
        };
        if stream.sender.try_send(Ok(command)).is_err() {
            tracing::info!(topic = %check.topic, "a producer's Telemetry stream is full; the half message is checked again later");
        }
    }
}
