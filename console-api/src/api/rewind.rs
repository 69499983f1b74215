//! `POST /api/v1/groups/{name}/rewind`: a cluster administrator moves a consumer group's
//! cursor of one partition, usually back, to undo a bad commit. The cursor is stored under
//! a new epoch (`broker::Cursor`), so it replaces the group's cursor in every region a task
//! syncs the group to, where a plain commit of a lower position would lose to the larger
//! one everywhere. Positions past the end this region holds are refused. Rewind while the
//! group's consumers are stopped: a consumer still running commits its own position after.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use broker::BrokerError;
use serde::Deserialize;

use super::Api;
use super::error::{ApiError, ConsoleCode};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RewindRequest {
    topic: String,
    #[serde(deserialize_with = "broker::json::integer")]
    partition: u32,
    /// origin region -> the next offset the group reads.
    #[serde(deserialize_with = "broker::json::integer_map")]
    next: BTreeMap<String, u64>,
}

pub async fn rewind(
    State(api): State<Api>,
    Path(group): Path<String>,
    request: Result<Json<RewindRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let RewindRequest {
        topic,
        partition,
        next,
    } = request?.0;
    let broker = api.broker.clone();
    let (g, t) = (group.clone(), topic.clone());
    let cursor = tokio::task::spawn_blocking(move || broker.rewind_cursor(&g, &t, partition, next))
        .await
        .map_err(|e| ApiError::internal(format!("the rewind did not finish: {e}")))?
        .map_err(refused)?;
    tracing::info!(%group, %topic, partition, epoch = cursor.epoch, next = ?cursor.next, "group cursor rewound");
    Ok(Json(serde_json::json!({
        "group": group,
        "topic": topic,
        "partition": partition,
        "next": cursor.next,
        "epoch": cursor.epoch,
    }))
    .into_response())
}

fn refused(e: BrokerError) -> ApiError {
    match e {
        BrokerError::UnknownTopic { .. } | BrokerError::UnknownPartition { .. } => {
            ApiError::not_found(e.to_string())
        }
        BrokerError::InvalidCursor { .. } => ApiError::new(ConsoleCode::Conflict, e.to_string()),
        BrokerError::InvalidName { .. } => ApiError::new(ConsoleCode::BadRequest, e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}
