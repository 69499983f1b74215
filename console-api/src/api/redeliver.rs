//! `POST /api/v1/groups/{name}/redeliver` `{"topic", "id": "origin-partition-offset"}`:
//! one message handed to a RocketMQ consumer group again at its next receive in this
//! region, whether the group acknowledged it or not (`rocketmq::pop::redeliver`). Needs
//! `change` on the group.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use broker::broker::query::parse_identity;
use proto::rocketmq::v2::Code;
use serde::Deserialize;

use super::Api;
use super::error::{ApiError, ConsoleCode};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRequest {
    topic: String,
    /// The message's identity, `origin-partition-offset`.
    id: String,
}

pub async fn redeliver(
    State(api): State<Api>,
    Path(group): Path<String>,
    request: Result<Json<RedeliverRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let RedeliverRequest { topic, id } = request?.0;
    let Some((origin, partition, offset)) = parse_identity(&id) else {
        return Err(ApiError {
            field: Some("id".into()),
            ..ApiError::bad_request(format!(
                "id {id:?} is not a message identity origin-partition-offset (find it with GET /api/v1/topics/{{name}}/messages)"
            ))
        });
    };
    let Some(consumption) = api.consumption.clone() else {
        return Err(ApiError::not_found(
            "this node serves no RocketMQ access point",
        ));
    };
    let g = group.clone();
    tokio::task::spawn_blocking(move || {
        consumption.redeliver(&g, &topic, partition, &origin, offset)
    })
    .await
    .map_err(|e| ApiError::internal(format!("the redelivery did not finish: {e}")))?
    .map_err(|refusal| match refusal.code {
        Code::MessageNotFound | Code::TopicNotFound => ApiError::not_found(refusal.message),
        Code::BadRequest => ApiError::new(ConsoleCode::BadRequest, refusal.message),
        _ => ApiError::internal(refusal.message),
    })?;
    tracing::info!(%group, %id, "message redelivered to the group");
    Ok(StatusCode::ACCEPTED.into_response())
}
