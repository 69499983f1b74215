//! Exports trace events as OpenTelemetry spans over OTLP/gRPC to the collector named by
//! `[telemetry] otlp_endpoint`.
//!
//! The tracer's loop hands every stored batch of events over; they wait in a bounded queue
//! and go out as one `ExportTraceServiceRequest` per round. A collector that is away or
//! slow costs spans (dropped and counted when the queue is full), never the message path.

pub mod spans;

use std::sync::Arc;
use std::time::Duration;

use broker::Broker;
use broker::trace::{TraceEvent, TraceExport, Tracer};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Batches of spans waiting for the collector before more are dropped.
const QUEUE: usize = 1_024;
/// A request waits this long for the collector at most.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct OtlpExporter {
    queue: mpsc::Sender<Vec<Span>>,
    counts: Arc<Counts>,
}

/// Spans exported and dropped so far.
#[derive(Default)]
pub struct Counts {
    pub exported: Counter,
    pub dropped: Counter,
}

/// Turns message trace on when `[telemetry]` asks for it: the broker's tracer, its
/// metrics, and the loop that stores (and exports) the events, to run until `stop`.
pub fn start_tracing(
    config: &crate::config::TelemetrySection,
    broker: &Arc<Broker>,
    registry: &mut Registry,
    stop: CancellationToken,
) -> anyhow::Result<Option<impl std::future::Future<Output = ()> + Send + 'static>> {
    if !config.trace && config.otlp_endpoint.is_none() {
        return Ok(None);
    }
    let (tracer, feed) = Tracer::new(broker.region());
    tracer.register(registry);
    let export: Option<Arc<dyn TraceExport>> = match &config.otlp_endpoint {
        Some(endpoint) => {
            let (exporter, counts) = OtlpExporter::start(endpoint, broker.region(), stop.clone())?;
            registry.register(
                "georouter_otlp_spans_exported",
                "Spans the OTLP collector accepted",
                counts.exported.clone(),
            );
            registry.register(
                "georouter_otlp_spans_dropped",
                "Spans not exported: the queue was full or the collector refused or was away",
                counts.dropped.clone(),
            );
            Some(exporter)
        }
        None => None,
    };
    broker.set_tracer(tracer);
    Ok(Some(broker::trace::run(broker.clone(), feed, export, stop)))
}

impl OtlpExporter {
    /// Starts exporting to `endpoint` (`http://host:port`) as `region`, until `stop`.
    pub fn start(
        endpoint: &str,
        region: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<(Arc<OtlpExporter>, Arc<Counts>)> {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| anyhow::anyhow!("[telemetry] otlp_endpoint {endpoint:?}: {e}"))?
            .timeout(EXPORT_TIMEOUT)
            .connect_lazy();
        let (queue, feed) = mpsc::channel(QUEUE);
        let counts = Arc::new(Counts::default());
        tokio::spawn(export_loop(
            TraceServiceClient::new(channel),
            resource(region),
            feed,
            counts.clone(),
            stop,
        ));
        let exporter = OtlpExporter {
            queue,
            counts: counts.clone(),
        };
        Ok((Arc::new(exporter), counts))
    }
}

impl TraceExport for OtlpExporter {
    fn export(&self, events: &[TraceEvent]) {
        let spans: Vec<Span> = events.iter().flat_map(spans::spans_of).collect();
        let n = spans.len() as u64;
        if self.queue.try_send(spans).is_err() {
            self.counts.dropped.inc_by(n);
        }
    }
}

fn resource(region: &str) -> Resource {
    Resource {
        attributes: vec![
            spans::text("service.name", "georouter"),
            spans::text("georouter.region", region),
        ],
        ..Resource::default()
    }
}

async fn export_loop(
    mut client: TraceServiceClient<tonic::transport::Channel>,
    resource: Resource,
    mut feed: mpsc::Receiver<Vec<Span>>,
    counts: Arc<Counts>,
    stop: CancellationToken,
) {
    let mut batches = Vec::new();
    let mut failing = false;
    loop {
        let n = tokio::select! {
            n = feed.recv_many(&mut batches, 64) => n,
            () = stop.cancelled() => return,
        };
        if n == 0 {
            return;
        }
        let spans: Vec<Span> = batches.drain(..).flatten().collect();
        let count = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "georouter".to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..InstrumentationScope::default()
                    }),
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        };
        match client.export(request).await {
            Ok(_) => {
                counts.exported.inc_by(count);
                if failing {
                    failing = false;
                    tracing::info!(
                        event = "otlp_export_recovered",
                        "the OTLP collector takes spans again"
                    );
                }
            }
            Err(status) => {
                counts.dropped.inc_by(count);
                if !failing {
                    failing = true;
                    tracing::warn!(event = "otlp_export_failed", code = ?status.code(), error = %status.message(), spans = count, "exporting spans to the OTLP collector failed; spans are dropped until it answers");
                }
            }
        }
    }
}
