//! `GET /api/v1/topics/{name}/messages`: messages of a topic by identity or message id
//! (`id`), by key (`key`), by store time (`from`, `to`: RFC 3339), at most `limit` (default
//! 20, at most 1000), each with its identity, store time, tag, key, properties and body
//! (text when it is UTF-8, else base64). A lookup other than by identity reads the topic
//! forward from `from` (or from the start of what is held) within a budget of 256 MiB;
//! `complete` says whether it read everything it had to. Needs `consume` on the topic.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use broker::BrokerError;
use broker::broker::query::{Found, Lookup, MESSAGE_ID_PROPERTY};
use serde::Deserialize;

use super::Api;
use super::error::{ApiError, ConsoleCode};

/// Bytes of batches one lookup reads at most.
const BUDGET_BYTES: u64 = 256 << 20;
const MAX_LIMIT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageQuery {
    id: Option<String>,
    key: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

fn time(field: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let parsed = humantime::parse_rfc3339_weak(text).map_err(|e| ApiError {
        field: Some(field.into()),
        ..ApiError::bad_request(format!("{field} {text:?} is not an RFC 3339 time: {e}"))
    })?;
    let ms = parsed
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(Some(ms))
}

fn view(found: Found) -> serde_json::Value {
    let r = found.record;
    let text = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(s) => serde_json::json!({ "text": s }),
        Err(_) => {
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) })
        }
    };
    serde_json::json!({
        "id": format!("{}-{}-{}", found.origin, found.partition, found.offset),
        "message_id": r.properties.get(MESSAGE_ID_PROPERTY),
        "partition": found.partition,
        "origin": found.origin,
        "offset": found.offset,
        "timestamp_ms": r.timestamp_ms,
        "tag": r.tag,
        "key": r.key.as_deref().map(text),
        "properties": r.properties,
        "body": text(&r.body),
    })
}

pub async fn query(
    State(api): State<Api>,
    Path(topic): Path<String>,
    Query(q): Query<MessageQuery>,
) -> Result<Response, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError {
            field: Some("limit".into()),
            ..ApiError::bad_request(format!("limit {limit}: must be between 1 and {MAX_LIMIT}"))
        });
    }
    let lookup = Lookup {
        id: q.id,
        key: q.key,
        from_ms: time("from", q.from.as_deref())?,
        to_ms: time("to", q.to.as_deref())?,
    };
    let broker = api.broker.clone();
    let findings =
        tokio::task::spawn_blocking(move || broker.query(&topic, &lookup, limit, BUDGET_BYTES))
            .await
            .map_err(|e| ApiError::internal(format!("the lookup did not finish: {e}")))?
            .map_err(|e| match e {
                BrokerError::UnknownTopic { .. } => ApiError::not_found(e.to_string()),
                other => ApiError::new(ConsoleCode::Internal, other.to_string()),
            })?;
    Ok(Json(serde_json::json!({
        "messages": findings.messages.into_iter().map(view).collect::<Vec<_>>(),
        "scanned_bytes": findings.scanned_bytes,
        "complete": findings.complete,
    }))
    .into_response())
}
