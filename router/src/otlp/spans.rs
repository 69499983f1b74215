//! Trace events as OpenTelemetry spans.
//!
//! Every span of one message shares a trace id derived from its identity (SHA-256 of
//! `topic/origin/partition/offset`, first 16 bytes), so the spans that every region exports
//! for it meet in one trace at the collector without any region telling another. The
//! message's storage in its origin (produced, or fired when held) is the root span; every
//! later step is its child. A replication span runs from the record's produce time to its
//! arrival, so its length is the replication lag of that hop.

use broker::trace::{TraceEvent, TraceKind};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use ring::digest::{SHA256, digest};

/// Spans exported for one event at most (a batch holds fewer records than this).
const MAX_SPANS_PER_EVENT: u64 = 100_000;

/// The trace id of the message at `offset` of a sub-log.
pub fn trace_id(topic: &str, origin: &str, partition: u32, offset: u64) -> [u8; 16] {
    let d = digest(
        &SHA256,
        format!("{topic}/{origin}/{partition}/{offset}").as_bytes(),
    );
    d.as_ref()[..16].try_into().expect("16 bytes")
}

fn span_id(parts: &[&[u8]]) -> [u8; 8] {
    let mut ctx = ring::digest::Context::new(&SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    ctx.finish().as_ref()[..8].try_into().expect("8 bytes")
}

fn root_span_id(trace: &[u8; 16]) -> [u8; 8] {
    span_id(&[trace, b"root"])
}

pub(crate) fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

/// The span name's operation and the span kind of `kind`.
fn operation(kind: TraceKind) -> (&'static str, SpanKind) {
    match kind {
        TraceKind::Produced => ("publish", SpanKind::Producer),
        TraceKind::Fired => ("fire", SpanKind::Producer),
        TraceKind::Replicated => ("replicate", SpanKind::Internal),
        TraceKind::Delivered => ("deliver", SpanKind::Consumer),
        TraceKind::Acked => ("ack", SpanKind::Consumer),
        TraceKind::DeadLettered => ("dead-letter", SpanKind::Consumer),
    }
}

/// One span per message the event is about.
pub fn spans_of(event: &TraceEvent) -> Vec<Span> {
    let (op, kind) = operation(event.kind);
    let end = nanos(event.at_ms);
    let start = match event.kind {
        TraceKind::Replicated => event
            .detail
            .get("produced_ms")
            .and_then(|ms| ms.parse::<i64>().ok())
            .map_or(end, nanos)
            .min(end),
        _ => end,
    };
    let root = matches!(event.kind, TraceKind::Produced | TraceKind::Fired);
    let last = event
        .last
        .min(event.first.saturating_add(MAX_SPANS_PER_EVENT - 1));
    (event.first..=last)
        .map(|offset| {
            let trace = trace_id(&event.topic, &event.origin, event.partition, offset);
            let parent = root_span_id(&trace);
            let id = if root {
                parent
            } else {
                let detail = serde_json::to_vec(&event.detail).unwrap_or_default();
                span_id(&[
                    &trace,
                    event.kind.as_str().as_bytes(),
                    event.region.as_bytes(),
                    &event.at_ms.to_be_bytes(),
                    &detail,
                ])
            };
            let identity = format!("{}-{}-{offset}", event.origin, event.partition);
            let mut attributes = vec![
                text("messaging.system", "georouter"),
                text("messaging.operation.name", op),
                text("messaging.destination.name", event.topic.clone()),
                text("messaging.message.id", identity.clone()),
                text("georouter.identity", identity),
                text("georouter.event", event.kind.as_str()),
                text("georouter.region", event.region.clone()),
                text("georouter.origin", event.origin.clone()),
                int("georouter.partition", i64::from(event.partition)),
                int(
                    "georouter.offset",
                    i64::try_from(offset).unwrap_or(i64::MAX),
                ),
            ];
            for (key, value) in &event.detail {
                let key = match key.as_str() {
                    "group" => "messaging.consumer.group.name".to_string(),
                    other => format!("georouter.{other}"),
                };
                attributes.push(text(&key, value.clone()));
            }
            Span {
                trace_id: trace.to_vec(),
                span_id: id.to_vec(),
                parent_span_id: if root { Vec::new() } else { parent.to_vec() },
                name: format!("{op} {}", event.topic),
                kind: kind as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                ..Span::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: TraceKind, region: &str, first: u64, last: u64) -> TraceEvent {
        TraceEvent {
            kind,
            region: region.into(),
            at_ms: 1_700_000_000_500,
            topic: "orders".into(),
            origin: "eu".into(),
            partition: 1,
            first,
            last,
            detail: [("produced_ms".to_string(), "1700000000000".to_string())].into(),
        }
    }

    #[test]
    fn the_spans_of_one_message_share_its_trace_under_its_root() {
        let produced = spans_of(&event(TraceKind::Produced, "eu", 4, 6));
        assert_eq!(produced.len(), 3);
        let replicated = spans_of(&event(TraceKind::Replicated, "us", 5, 5));
        assert_eq!(replicated.len(), 1);
        let (root, hop) = (&produced[1], &replicated[0]);
        assert_eq!(root.trace_id, hop.trace_id);
        assert_eq!(root.trace_id, trace_id("orders", "eu", 1, 5));
        assert!(root.parent_span_id.is_empty());
        assert_eq!(hop.parent_span_id, root.span_id);
        assert_ne!(hop.span_id, root.span_id);
        assert_ne!(produced[0].trace_id, produced[1].trace_id);
    }

    #[test]
    fn a_replication_span_lasts_from_produce_to_arrival() {
        let hop = &spans_of(&event(TraceKind::Replicated, "us", 5, 5))[0];
        assert_eq!(
            hop.end_time_unix_nano - hop.start_time_unix_nano,
            500_000_000
        );
        let attribute = |k: &str| {
            hop.attributes
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
        };
        assert_eq!(
            attribute("georouter.identity").and_then(|v| v.value),
            Some(any_value::Value::StringValue("eu-1-5".into()))
        );
        assert_eq!(hop.name, "replicate orders");
    }
}
