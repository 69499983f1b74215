//! `/api/v1/tasks`: list, create, read, replace (idempotent PUT), delete, pause, resume and
//! status of replication tasks. A change to an existing task must carry the version it
//! read in `If-Match` (the `ETag` of a read); a stale one gets 409, a missing one 428.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use replicator::{Replicator, TaskRecord, TaskSpec, TaskState};

use super::Api;
use super::error::{ApiError, ConsoleCode};

pub(crate) fn replicator(api: &Api) -> Result<Arc<Replicator>, ApiError> {
    api.replicator.get().ok_or_else(|| {
        if api.replicator.leased_elsewhere() {
            ApiError::replication_elsewhere()
        } else {
            ApiError::replication_disabled()
        }
    })
}

/// The replicator, to read task `name`: a region without replication holds no task (404).
fn reading(api: &Api, name: &str) -> Result<Arc<Replicator>, ApiError> {
    if api.replicator.leased_elsewhere() {
        return Err(ApiError::replication_elsewhere());
    }
    api.replicator.get().ok_or_else(|| {
        ApiError::not_found(format!(
            "no task \"{name}\" (replication is not configured in this region)"
        ))
    })
}

/// Task `name`, or 404.
fn existing(replicator: &Replicator, name: &str) -> Result<TaskRecord, ApiError> {
    replicator
        .task(name)
        .ok_or_else(|| ApiError::not_found(format!("no task \"{name}\"")))
}

/// A task as the API shows it: its record and its status per sub-log.
fn view(replicator: &Replicator, record: &TaskRecord) -> serde_json::Value {
    let sub_logs: Vec<_> = replicator
        .status()
        .into_iter()
        .filter(|s| s.task == record.spec.name)
        .collect();
    serde_json::json!({
        "name": record.spec.name,
        "version": record.version,
        "changed_by": record.changed_by,
        "spec": record.spec,
        "state": record.spec.state,
        "status": {
            "lag_records": sub_logs.iter().map(|s| s.lag_records).sum::<u64>(),
            "lag_bytes": sub_logs.iter().map(|s| s.lag_bytes).sum::<u64>(),
            "lag_seconds": sub_logs.iter().map(|s| s.lag_seconds).fold(0.0, f64::max),
            // + 0.0: an empty sum is -0.0.
            "records_per_s": sub_logs.iter().map(|s| s.records_per_s).sum::<f64>() + 0.0,
            "last_error": sub_logs.iter().find_map(|s| s.last_error.clone()),
            "sub_logs": sub_logs,
        },
    })
}

fn with_etag(status: StatusCode, replicator: &Replicator, record: &TaskRecord) -> Response {
    let mut response = (status, Json(view(replicator, record))).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The version in `If-Match` (`"3"`, `3` or `W/"3"`), if any.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "If-Match must be a version (a number), not {text:?}"
        ))
    })
}

pub(crate) fn required(version: Option<u64>) -> Result<u64, ApiError> {
    version.ok_or_else(|| {
        ApiError::new(
            ConsoleCode::VersionRequired,
            "a change to an existing task or group needs the version it applies to: If-Match: \"<version>\"",
        )
    })
}

fn body(spec: Result<Json<TaskSpec>, JsonRejection>) -> Result<TaskSpec, ApiError> {
    Ok(spec?.0)
}

pub async fn list(State(api): State<Api>) -> Result<Response, ApiError> {
    // A region without replication has no tasks: an empty list, not an error.
    let Some(r) = api.replicator.get() else {
        return Ok(Json(serde_json::json!({ "tasks": [] })).into_response());
    };
    let tasks: Vec<_> = r.tasks().iter().map(|t| view(&r, t)).collect();
    Ok(Json(serde_json::json!({ "tasks": tasks })).into_response())
}

pub async fn create(
    State(api): State<Api>,
    Extension(caller): Extension<auth::Caller>,
    spec: Result<Json<TaskSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let r = &*replicator(&api)?;
    let spec = body(spec)?;
    api.authorize(
        &caller,
        auth::Action::Change,
        auth::Resource::Task(&spec.name),
    )?;
    let record = r.create_task(spec, &api.authorship(&caller))?;
    Ok(with_etag(StatusCode::CREATED, r, &record))
}

pub async fn read(State(api): State<Api>, Path(name): Path<String>) -> Result<Response, ApiError> {
    let r = &*reading(&api, &name)?;
    let record = existing(r, &name)?;
    Ok(with_etag(StatusCode::OK, r, &record))
}

pub async fn status(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let r = &*reading(&api, &name)?;
    let record = existing(r, &name)?;
    Ok(Json(view(r, &record)["status"].clone()).into_response())
}

pub async fn replace(
    State(api): State<Api>,
    Extension(caller): Extension<auth::Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    spec: Result<Json<TaskSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let r = &*replicator(&api)?;
    let spec = body(spec)?;
    if spec.name != name {
        return Err(ApiError {
            field: Some("name".into()),
            ..ApiError::bad_request(format!(
                "the body names task \"{}\" but the path names \"{name}\"",
                spec.name
            ))
        });
    }
    let version = if_match(&headers)?;
    let by = api.authorship(&caller);
    let (status, record) = match r.task(&name) {
        Some(current) if version.is_some_and(|v| v != current.version) => {
            return Err(replicator::ChangeError::Conflict {
                name,
                current: current.version,
                given: version.unwrap_or_default(),
            }
            .into());
        }
        // The same spec again: nothing to change (PUT is idempotent).
        Some(current) if current.spec == spec => (StatusCode::OK, current),
        Some(_) => (
            StatusCode::OK,
            r.put_task(spec, Some(required(version)?), &by)?,
        ),
        None => (
            StatusCode::CREATED,
            r.put_task(spec, Some(version.unwrap_or(0)), &by)?,
        ),
    };
    Ok(with_etag(status, r, &record))
}

pub async fn delete(
    State(api): State<Api>,
    Extension(caller): Extension<auth::Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let r = &*replicator(&api)?;
    existing(r, &name)?;
    r.delete_task(
        &name,
        Some(required(if_match(&headers)?)?),
        &api.authorship(&caller),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_state(
    api: Api,
    caller: auth::Caller,
    name: String,
    headers: HeaderMap,
    state: TaskState,
) -> Result<Response, ApiError> {
    let r = &*replicator(&api)?;
    let current = existing(r, &name)?;
    let version = required(if_match(&headers)?)?;
    // Already in that state: nothing changes, whatever version was read (a retried pause
    // succeeds).
    let record = if current.spec.state == state {
        current
    } else {
        r.set_task_state(&name, state, Some(version), &api.authorship(&caller))?
    };
    Ok(with_etag(StatusCode::OK, r, &record))
}

pub async fn pause(
    State(api): State<Api>,
    Extension(caller): Extension<auth::Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    set_state(api, caller, name, headers, TaskState::Paused).await
}

pub async fn resume(
    State(api): State<Api>,
    Extension(caller): Extension<auth::Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    set_state(api, caller, name, headers, TaskState::Running).await
}
