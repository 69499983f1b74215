//! The tracer: where the broker, the access points and the replicator hand their trace
//! events, and the loop that stores them in the trace topic and passes them to an exporter.
//!
//! Tracing never slows or fails the path it watches: `record` only offers an event to a
//! bounded queue; when the queue is full the event is dropped and counted. The loop stores
//! what has queued up as one produce (one durable write) to partition 0 of the trace
//! topic, at this region's origin, so each region's events replicate like any other
//! records wherever a task carries the trace topic.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::event::{TraceEvent, TraceKind, runs};
use crate::broker::{Broker, Partitioning};

/// The topic each region's trace events are stored in.
pub const TRACE_TOPIC: &str = "georouter.trace";
/// Events queued for the loop before more are dropped.
pub const QUEUE: usize = 16_384;
/// Events stored by one write at most.
const WRITE_BATCH: usize = 1_024;

/// Receives every batch of events the loop has stored (an OpenTelemetry exporter).
pub trait TraceExport: Send + Sync {
    fn export(&self, events: &[TraceEvent]);
}

/// A handle to hand events to; the default one traces nothing.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    region: String,
    queue: mpsc::Sender<TraceEvent>,
    dropped: Counter,
}

/// The events handed to a tracer, for [`run`].
pub struct TraceFeed(mpsc::Receiver<TraceEvent>);

impl Tracer {
    /// A tracer for `region` and the feed its loop reads.
    pub fn new(region: &str) -> (Tracer, TraceFeed) {
        let (queue, feed) = mpsc::channel(QUEUE);
        let inner = Inner {
            region: region.to_string(),
            queue,
            dropped: Counter::default(),
        };
        (
            Tracer {
                inner: Some(Arc::new(inner)),
            },
            TraceFeed(feed),
        )
    }

    /// A tracer that traces nothing.
    pub const fn disabled() -> Tracer {
        Tracer { inner: None }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The region events are recorded in, when tracing.
    pub fn region(&self) -> Option<&str> {
        self.inner.as_deref().map(|i| i.region.as_str())
    }

    /// Offers `event`; never waits. Events about the trace topic itself are not traced.
    pub fn record(&self, event: TraceEvent) {
        let Some(inner) = &self.inner else { return };
        if event.topic == TRACE_TOPIC {
            return;
        }
        if inner.queue.try_send(event).is_err() {
            inner.dropped.inc();
        }
    }

    /// Records one event of `kind` per run of consecutive `ids` of `topic`, each with
    /// `detail`: what a produce or a commit stored.
    pub fn stored(
        &self,
        kind: TraceKind,
        topic: &str,
        ids: &[crate::RecordId],
        detail: &[(&str, &str)],
    ) {
        let Some(region) = self.region() else { return };
        let at_ms = crate::record::now_ms();
        for (partition, origin, first, last) in runs(ids) {
            self.record(TraceEvent {
                kind,
                region: region.to_string(),
                at_ms,
                topic: topic.to_string(),
                origin,
                partition,
                first,
                last,
                detail: detail
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            });
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.as_ref().map_or(0, |i| i.dropped.get())
    }

    /// Exposes the count of dropped events (when tracing).
    pub fn register(&self, registry: &mut Registry) {
        if let Some(inner) = &self.inner {
            registry.register(
                "georouter_trace_events_dropped",
                "Trace events dropped because the tracer's queue was full",
                inner.dropped.clone(),
            );
        }
    }
}

/// Stores the events of `feed` in the trace topic and hands them to `export`, until `stop`.
/// A write that fails is logged and its events given to the exporter all the same.
pub async fn run(
    broker: Arc<Broker>,
    mut feed: TraceFeed,
    export: Option<Arc<dyn TraceExport>>,
    stop: CancellationToken,
) {
    let mut events = Vec::with_capacity(WRITE_BATCH);
    loop {
        let received = tokio::select! {
            n = feed.0.recv_many(&mut events, WRITE_BATCH) => n,
            () = stop.cancelled() => return,
        };
        if received == 0 {
            return;
        }
        if let Err(e) = store(&broker, &events).await {
            tracing::warn!(event = "trace_store_failed", error = %e, events = events.len(), "storing trace events failed; they are lost to the trace topic");
        }
        if let Some(export) = &export {
            export.export(&events);
        }
        events.clear();
    }
}

async fn store(broker: &Broker, events: &[TraceEvent]) -> crate::Result<()> {
    broker.ensure_topic(TRACE_TOPIC, 1)?;
    let records = events.iter().map(TraceEvent::to_record).collect();
    broker
        .produce(TRACE_TOPIC, records, Partitioning::Explicit(0))
        .await
        .map(drop)
}
