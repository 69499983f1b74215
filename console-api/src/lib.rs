//! The region's HTTP console: `/healthz` (the process serves), `/readyz` (the node
//! finished recovery and its listeners are up), `/metrics` (Prometheus text),
//! `/api/v1/replication` (links, routes and per-sub-log lag, JSON) and the REST API
//! (`api`: tasks, regions, links, topics, OpenAPI), behind bearer-token auth; `/` serves
//! the web console (`web/index.html`). `client` is the client of all of it.

// The OpenAPI document is one `serde_json::json!` literal.
#![recursion_limit = "256"]

pub mod api;
pub mod audit;
pub mod client;
pub mod deadline;
pub mod guard;
mod serve;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Readiness shared between the node and the console.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Produces the replication status document on request.
pub type StatusSource = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What the console serves.
#[derive(Clone)]
pub struct Console {
    pub health: Health,
    pub metrics: Arc<Registry>,
    pub replication: Option<StatusSource>,
    pub api: api::Api,
    pub auth: api::auth::ConsoleAuth,
    /// The names the console answers to (`guard`).
    pub hosts: guard::Hosts,
    /// How long a request may take to arrive and to be answered (`deadline`).
    pub request_timeout: std::time::Duration,
}

pub fn router(console: Console) -> Router {
    let status = Router::new()
        .route("/api/v1/replication", get(replication))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(console.auth.clone()),
            api::auth::require,
        ));
    Router::new()
        .route("/", get(web_console))
        .route("/pictures.js", get(web_pictures))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(status)
        .with_state(console.clone())
        .merge(api::router(console.api, console.auth))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(console.request_timeout),
            deadline::deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(console.hosts),
            guard::guard,
        ))
}

/// `/metrics`: OpenMetrics text when the scraper asks for it (`Accept:
/// application/openmetrics-text`), else the classic Prometheus text format 0.0.4.
async fn metrics(State(console): State<Console>, headers: axum::http::HeaderMap) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &console.metrics) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response();
    }
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            prometheus_text(&text),
        )
            .into_response()
    }
}

/// OpenMetrics text as Prometheus text 0.0.4: a counter's HELP and TYPE name its `_total`
/// samples, and the `# UNIT` and `# EOF` lines go.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| line.starts_with(p));
        match meta {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let name = rest.split(' ').next().unwrap_or_default();
                if counters.contains(name) {
                    out.push_str(prefix);
                    out.push_str(name);
                    out.push_str("_total");
                    out.push_str(&rest[name.len()..]);
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

async fn replication(State(console): State<Console>) -> Response {
    match &console.replication {
        Some(source) => Json(source()).into_response(),
        None => api::error::ApiError::replication_disabled().into_response(),
    }
}

/// The web console: one self-contained page (no CDN, no build step) that drives the API
/// with the token the operator enters.
async fn web_console() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("web/index.html"),
    )
        .into_response()
}

/// The web console's drawing code (topology, charts, timeline).
async fn web_pictures() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("web/pictures.js"),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(console): State<Console>) -> (StatusCode, &'static str) {
    if console.health.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Serves `console` on an already-bound `listener` until `shutdown`: over TLS with `tls`,
/// else plaintext.
pub async fn serve(
    listener: TcpListener,
    console: Console,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let bound = console.request_timeout;
    serve::serve(listener, router(console), tls, bound, shutdown).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_are_named_by_their_samples() {
        let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total 3\n# HELP g G.\n# TYPE g gauge\n# UNIT g seconds\ng 1\n# EOF\n";
        assert_eq!(
            super::prometheus_text(om),
            "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
