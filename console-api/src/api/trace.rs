//! `GET /api/v1/topics/{name}/messages/{id}/trace`: the life of the message of identity
//! `id` (`origin-partition-offset`) as this region's trace topic holds it: the events of
//! every region whose trace reaches this one, in time order. `tracing` says whether this
//! region records events itself (`[telemetry] trace`). Needs `consume` on the topic.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use broker::broker::query::parse_identity;

use super::Api;
use super::error::{ApiError, ConsoleCode};

/// Bytes of the trace topic one trace reads at most.
const BUDGET_BYTES: u64 = 256 << 20;

pub async fn trace(
    State(api): State<Api>,
    Path((topic, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some((origin, partition, offset)) = parse_identity(&id) else {
        return Err(ApiError {
            field: Some("id".into()),
            ..ApiError::bad_request(format!(
                "message identity {id:?}: expected origin-partition-offset, as eu-0-42"
            ))
        });
    };
    let broker = api.broker.clone();
    broker
        .topic(&topic)
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let tracing = broker.tracer().enabled();
    let found = tokio::task::spawn_blocking(move || {
        broker.trace(&topic, &origin, partition, offset, BUDGET_BYTES)
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the trace did not finish: {e}")))?
    .map_err(|e| ApiError::new(ConsoleCode::Internal, e.to_string()))?;
    Ok(Json(serde_json::json!({
        "id": id,
        "events": found.events,
        "complete": found.complete,
        "tracing": tracing,
    }))
    .into_response())
}
