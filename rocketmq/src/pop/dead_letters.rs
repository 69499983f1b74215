//! Dead letters: a message given up on moves to its group's dead-letter topic
//! `%DLQ%<group>`, an ordinary topic; and the trace events of a group's messages.

use broker::Partitioning;
use broker::trace::{TraceEvent, TraceKind};
use proto::rocketmq::v2::Code;

use super::handle::Handle;
use super::{Consumption, read_one, storage};
use crate::status::Refusal;
use broker::Record;

/// The dead-letter topic of `group`.
pub fn dead_letter_topic(group: &str) -> String {
    format!("%DLQ%{group}")
}

impl Consumption {
    /// Moves the in-flight message of `handle` to the group's dead-letter topic now (a
    /// client that gave up on it, as FIFO push consumers do after their last attempt).
    pub fn forward_to_dead_letters(
        &self,
        group: &str,
        topic: &str,
        handle: &str,
    ) -> Result<(), Refusal> {
        let handle =
            Handle::parse(handle).map_err(|m| Refusal::new(Code::InvalidReceiptHandle, m))?;
        let part = Self::partition_state(&*self.group(group, topic)?, handle.partition);
        let mut current = part.lock().expect("partition state lock");
        current
            .check(&handle.origin, handle.offset, handle.nonce)
            .map_err(|e| Refusal::new(Code::InvalidReceiptHandle, e.to_string()))?;
        let p = self
            .broker
            .partition(topic, handle.partition)
            .map_err(storage)?;
        if let Some(record) = read_one(&p, &handle.origin, handle.offset)? {
            self.dead_letter(group, topic, &handle, record)?;
        }
        // In effect only once stored, like every other change.
        let mut copy = current.clone();
        copy.finish(&handle.origin, handle.offset);
        self.persist(group, topic, [(handle.partition, &copy)])?;
        *current = copy;
        Ok(())
    }

    /// Stores `record` (the message of `handle` in `topic`) in the group's dead-letter
    /// topic, which is an ordinary topic.
    pub(super) fn dead_letter(
        &self,
        group: &str,
        topic: &str,
        handle: &Handle,
        record: Record,
    ) -> Result<(), Refusal> {
        let letters = dead_letter_topic(group);
        self.broker.ensure_topic(&letters, 1).map_err(storage)?;
        let runtime = tokio::runtime::Handle::current();
        runtime
            .block_on(
                self.broker
                    .produce(&letters, vec![record], Partitioning::Explicit(0)),
            )
            .map_err(storage)?;
        self.trace(TraceKind::DeadLettered, group, topic, [handle]);
        Ok(())
    }

    /// Traces an event of `kind` of `group` for the message of each handle.
    pub(super) fn trace<'h>(
        &self,
        kind: TraceKind,
        group: &str,
        topic: &str,
        handles: impl IntoIterator<Item = &'h Handle>,
    ) {
        let tracer = self.broker.tracer();
        let Some(region) = tracer.region() else {
            return;
        };
        for h in handles {
            let id = broker::RecordId {
                partition: h.partition,
                origin: h.origin.clone(),
                offset: h.offset,
            };
            tracer.record(TraceEvent::one(kind, region, topic, &id).with("group", group));
        }
    }
}
