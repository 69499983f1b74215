//! The region's HTTP console: `/healthz` (the process serves), `/readyz` (the node
//! finished recovery and its listeners are up), `/metrics` (Prometheus text),
//! `/api/v1/replication` (links, routes and per-sub-log lag, JSON) and the REST API
//! (`api`: tasks, regions, links, topics, OpenAPI), behind bearer-token auth.

pub mod api;

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
    pub tokens: api::auth::Tokens,
}

pub fn router(console: Console) -> Router {
    let tokens = Arc::new(console.tokens.clone());
    let status = Router::new()
        .route("/api/v1/replication", get(replication))
        .route_layer(axum::middleware::from_fn_with_state(
            tokens,
            api::auth::require,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(status)
        .with_state(console.clone())
        .merge(api::router(console.api, console.tokens))
}

async fn metrics(State(console): State<Console>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &console.metrics) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn replication(State(console): State<Console>) -> Response {
    match &console.replication {
        Some(source) => Json(source()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": {"code": "REPLICATION_DISABLED", "message": "replication is not configured in this region"}})),
        )
            .into_response(),
    }
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

/// Serves the console on an already-bound listener until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    console: Console,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(console))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
