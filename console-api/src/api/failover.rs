//! `POST /api/v1/tasks/{name}/failover` and `/failback`: promote the region whose console
//! is called to primary of a DR task (replicator `dr`). The answer is the failover report:
//! who was promoted, the new epoch and, per origin, what had not arrived (the RPO).

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use replicator::{FailoverError, FailoverMode};
use serde::Deserialize;

use super::Api;
use super::error::{ApiError, ConsoleCode};

/// Longest wait a planned failover may ask for.
const MAX_TIMEOUT_S: f64 = 3600.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    #[serde(default)]
    mode: FailoverMode,
    /// How long a planned failover waits for this region to catch up.
    #[serde(default = "default_timeout")]
    timeout_s: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailbackRequest {
    #[serde(default = "default_timeout")]
    timeout_s: f64,
}

fn default_timeout() -> f64 {
    30.0
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
    body: Result<Json<FailoverRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let replicator = super::tasks::replicator(&api)?;
    let report = replicator
        .failover(&name, request.mode, timeout(request.timeout_s)?)
        .await?;
    Ok((StatusCode::OK, Json(report)).into_response())
}

pub async fn failback(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Result<Json<FailbackRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
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
