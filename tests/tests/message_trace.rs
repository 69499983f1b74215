//! Message trace across regions: a message produced in eu, replicated to us and consumed
//! there through the RocketMQ access point shows its whole life in either region's console
//! (`georouter.trace`, carried both ways by a task), and eu exports its steps as
//! OpenTelemetry spans to an OTLP/gRPC receiver on loopback, under the trace id that every
//! region derives from the message's identity.

mod support;

use std::sync::{Arc, Mutex};

use console_api::client::ConsoleClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use support::*;

/// An OTLP trace receiver that keeps every span it is sent, with its resource's region.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let region = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "georouter.region")
                .and_then(|a| text_of(a.value.as_ref()?.value.as_ref()?))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (region.clone(), s)));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| text_of(a.value.as_ref()?.value.as_ref()?))
}

async fn start_receiver() -> (Receiver, std::net::SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let receiver = Receiver::default();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    (receiver, address)
}

fn kinds(trace: &serde_json::Value) -> Vec<(String, String)> {
    trace["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_string(),
                e["region"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_shows_its_life_across_regions_and_exports_spans_over_otlp() {
    let (receiver, otlp) = start_receiver().await;
    let deployment = Deployment::new(&["eu", "us"]);
    let tasks = [task("orders", &["eu"], &["us"], "orders"), trace_task()];
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &tasks, |config| {
            config.telemetry.trace = true;
            if config.region.id == "eu" {
                config.telemetry.otlp_endpoint = Some(format!("http://{otlp}"));
            }
        })
        .await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    create_if_missing(us, "orders", 1).await;
    produce(eu, "orders", 0, "traced", 3, 1).await;
    eventually("us to hold the message", || async {
        held_end(&us.node, "orders", 0, "eu") == 3
    })
    .await;

    // Consumed in us through the access point: received, then one acknowledged.
    let rocketmq = us.node.bound.rocketmq;
    let received = pop::receive(rocketmq, "billing", "orders", "trace-test-client", 0).await;
    assert_eq!(received.len(), 3, "the three messages are received in us");
    let second = received
        .iter()
        .find(|m| m.system_properties.as_ref().unwrap().queue_offset == Some(1))
        .expect("the message at offset 1");
    pop::ack(rocketmq, "billing", "orders", std::slice::from_ref(second)).await;

    // Both consoles come to show the whole life of eu-0-1, each region's steps
    // replicated to the other by the trace task.
    let expected = [
        ("produced", "eu"),
        ("replicated", "us"),
        ("delivered", "us"),
        ("acked", "us"),
    ];
    for node in [eu, us] {
        let console = ConsoleClient::new(node.node.bound.console, None);
        eventually("the whole trace of eu-0-1", || {
            let console = console.clone();
            async move {
                let kinds = kinds(&console.trace("orders", "eu-0-1").await.unwrap());
                expected
                    .iter()
                    .all(|(k, r)| kinds.contains(&(k.to_string(), r.to_string())))
            }
        })
        .await;
        let last = console.trace("orders", "eu-0-1").await.unwrap();
        let events = last["events"].as_array().unwrap();
        assert_eq!(last["tracing"], true);
        let of = |kind: &str| events.iter().find(|e| e["kind"] == kind).unwrap();
        assert_eq!(of("produced")["detail"]["via"], "grpc");
        assert_eq!(of("replicated")["detail"]["from"], "eu");
        assert_eq!(of("replicated")["detail"]["path"], "eu>us");
        assert_eq!(of("delivered")["detail"]["group"], "billing");
        assert_eq!(of("delivered")["detail"]["attempt"], "1");
        assert_eq!(of("delivered")["detail"]["client"], "trace-test-client");
        // Only the message at offset 1 was acknowledged.
        assert_eq!(events.iter().filter(|e| e["kind"] == "acked").count(), 1);
    }
    let other = ConsoleClient::new(us.node.bound.console, None)
        .trace("orders", "eu-0-2")
        .await
        .unwrap();
    assert!(
        !kinds(&other).contains(&("acked".to_string(), "us".to_string())),
        "eu-0-2 was not acknowledged: {other}"
    );
    let bad = ConsoleClient::new(us.node.bound.console, None)
        .trace("orders", "not-an-identity")
        .await
        .unwrap_err();
    assert_eq!(bad.status(), Some(400), "{bad}");

    // eu exported its own steps (the produce) as spans under the message's trace id;
    // us has no collector configured.
    let trace_id = router::otlp::spans::trace_id("orders", "eu", 0, 1);
    eventually("the produce span of eu-0-1 at the collector", || async {
        receiver
            .spans
            .lock()
            .unwrap()
            .iter()
            .any(|(_, s)| s.trace_id == trace_id)
    })
    .await;
    let spans = receiver.spans.lock().unwrap().clone();
    let (region, root) = spans.iter().find(|(_, s)| s.trace_id == trace_id).unwrap();
    assert_eq!(region, "eu");
    assert_eq!(root.name, "publish orders");
    assert!(root.parent_span_id.is_empty(), "the produce is the root");
    assert_eq!(
        attribute(root, "georouter.identity").as_deref(),
        Some("eu-0-1")
    );
    assert_eq!(
        attribute(root, "messaging.destination.name").as_deref(),
        Some("orders")
    );
    assert!(
        spans.iter().all(|(region, _)| region == "eu"),
        "only eu exports"
    );
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
