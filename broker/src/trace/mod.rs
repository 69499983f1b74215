//! Message trace: each region records the steps of a message's life it sees (produced,
//! fired, committed, replicated, delivered, acknowledged, dead-lettered) in its own
//! sub-log of the trace topic. A task that carries the trace topic between regions brings
//! every region's steps together, so any region can show a message's whole life; an
//! exporter turns the same events into OpenTelemetry spans.

mod event;
mod tracer;

pub use event::{TraceEvent, TraceKind, runs, sub_log_key};
pub use tracer::{QUEUE, TRACE_TOPIC, TraceExport, TraceFeed, Tracer, run};

use crate::broker::Broker;
use crate::broker::query::Scan;
use crate::error::Result;

/// A message's trace as this region holds it.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// In time order (each by its own region's clock).
    pub events: Vec<TraceEvent>,
    /// False when the byte budget stopped the search first.
    pub complete: bool,
}

/// Events read at most for one trace.
const MAX_EVENTS: usize = 10_000;

impl Broker {
    /// The trace of the message at `offset` of `origin`'s sub-log of `topic`'s
    /// `partition`: every event of the trace topic about it, reading at most
    /// `budget_bytes` (blocking file I/O). Empty when nothing was traced.
    pub fn trace(
        &self,
        topic: &str,
        origin: &str,
        partition: u32,
        offset: u64,
        budget_bytes: u64,
    ) -> Result<Trace> {
        if self.topic(TRACE_TOPIC).is_err() {
            return Ok(Trace {
                events: Vec::new(),
                complete: true,
            });
        }
        let key = sub_log_key(topic, origin, partition);
        let scan = Scan {
            from_ms: None,
            to_ms: None,
            exact: None,
            limit: MAX_EVENTS,
            budget_bytes,
        };
        let mut events = Vec::new();
        let found = self.scan(TRACE_TOPIC, &scan, |_, stored| {
            if stored.record.key.as_deref() != Some(key.as_bytes()) {
                return false;
            }
            match TraceEvent::from_record(&stored.record) {
                Some(event) if event.covers(&key, offset) => {
                    events.push(event);
                    true
                }
                _ => false,
            }
        })?;
        events.sort_by_key(|e| (e.at_ms, e.kind));
        Ok(Trace {
            events,
            complete: found.complete,
        })
    }
}
