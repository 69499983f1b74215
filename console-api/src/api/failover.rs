//! `POST /api/v1/tasks/{name}/failover` and `/failback`: promote the region whose console
//! is called to primary of a DR task (replicator `dr`). The answer is the failover report:
//! who was promoted, the new epoch and, per origin, what had not arrived (the RPO).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use replicator::{FailoverError, FailoverMode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Api;
use super::error::{ApiError, ConsoleCode};

/// Longest wait a planned failover may ask for.
const MAX_TIMEOUT_S: f64 = 3600.0;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    #[serde(default)]
    mode: FailoverMode,
    /// How long a planned failover waits for this region to catch up.
    #[serde(default = "default_timeout")]
    timeout_s: f64,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailbackRequest {
    #[serde(default = "default_timeout")]
    timeout_s: f64,
}

fn default_timeout() -> f64 {
    30.0
}

impl Default for FailoverRequest {
    fn default() -> Self {
        FailoverRequest {
            mode: FailoverMode::default(),
            timeout_s: default_timeout(),
        }
    }
}

impl Default for FailbackRequest {
    fn default() -> Self {
        FailbackRequest {
            timeout_s: default_timeout(),
        }
    }
}

/// A body that may be left out (then the defaults apply); one that is given must be JSON.
fn optional_body<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| {
        let code = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ConsoleCode::BodyTooLarge
        } else {
            ConsoleCode::BadRequest
        };
        ApiError::new(code, r.body_text())
    })?;
    if body.is_empty() {
        return Ok(T::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
    if !json {
        return Err(ApiError::new(
            ConsoleCode::UnsupportedMediaType,
            "Expected request with `Content-Type: application/json`",
        ));
    }
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ConsoleCode::MalformedJson,
            format!("Failed to deserialize the JSON body: {e}"),
        )
    })
}

fn timeout(seconds: f64) -> Result<Duration, ApiError> {
    if !(seconds > 0.0 && seconds <= MAX_TIMEOUT_S) {
        return Err(ApiError {
            code: ConsoleCode::BadRequest,
            field: Some("timeout_s".into()),
            message: format!("timeout_s must be more than 0 and at most {MAX_TIMEOUT_S}"),
        });
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub async fn failover(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: FailoverRequest = optional_body(&headers, body)?;
    let replicator = super::tasks::replicator(&api)?;
    let report = replicator
        .failover(&name, request.mode, timeout(request.timeout_s)?)
        .await?;
    Ok((StatusCode::OK, Json(report)).into_response())
}

pub async fn failback(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: FailbackRequest = optional_body(&headers, body)?;
    let replicator = super::tasks::replicator(&api)?;
    let report = replicator
        .failback(&name, timeout(request.timeout_s)?)
        .await?;
    Ok((StatusCode::OK, Json(report)).into_response())
}

impl From<FailoverError> for ApiError {
    fn from(e: FailoverError) -> Self {
        match e {
            FailoverError::NotFound(_) => ApiError::not_found(e.to_string()),
            FailoverError::Change(c) => c.into(),
            FailoverError::TimedOut { .. } => {
                ApiError::new(ConsoleCode::FailoverTimedOut, e.to_string())
            }
            _ => ApiError::new(ConsoleCode::FailoverRefused, e.to_string()),
        }
    }
}
