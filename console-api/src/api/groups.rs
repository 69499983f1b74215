//! `/api/v1/groups`: list, create, read, replace (idempotent PUT) and delete consumer
//! groups' settings (FIFO, max attempts). A change to an existing group carries the version
//! it read in `If-Match`, as for tasks. Changes are shared with every region (by the
//! replicator, when replication runs); a group nobody created consumes with the region's
//! defaults.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker::catalog::{Change, GroupRecord, GroupSpec};

use super::Api;
use super::error::ApiError;
use super::tasks::{if_match, required};

fn view(record: &GroupRecord) -> serde_json::Value {
    serde_json::json!({
        "name": record.spec.name,
        "fifo": record.spec.fifo,
        "max_attempts": record.spec.max_attempts,
        "version": record.version,
        "changed_by": record.changed_by,
    })
}

fn with_etag(status: StatusCode, record: &GroupRecord) -> Response {
    let mut response = (status, Json(view(record))).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn existing(api: &Api, name: &str) -> Result<GroupRecord, ApiError> {
    api.broker
        .groups()
        .record(name)
        .ok_or_else(|| ApiError::not_found(format!("no group \"{name}\"")))
}

/// Makes a change here (storing it is an fsync, so it runs on the blocking pool) and, when
/// replication runs, passes it on to the other regions.
async fn change(
    api: &Api,
    name: String,
    spec: Option<GroupSpec>,
    if_version: Option<u64>,
    create_only: bool,
) -> Result<GroupRecord, ApiError> {
    let api = api.clone();
    let made = tokio::task::spawn_blocking(move || {
        let change = Change {
            name: &name,
            spec,
            if_version,
            create_only,
        };
        match &api.replicator {
            Some(r) => r.change_group(change),
            None => api.broker.groups().change(change, &api.region),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("the change did not finish: {e}")))?;
    Ok(made?)
}

pub async fn list(State(api): State<Api>) -> Response {
    let groups: Vec<_> = api.broker.groups().live().iter().map(view).collect();
    Json(serde_json::json!({ "groups": groups })).into_response()
}

pub async fn create(
    State(api): State<Api>,
    Extension(caller): Extension<auth::Caller>,
    spec: Result<Json<GroupSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let spec = spec?.0;
    api.authorize(
        &caller,
        auth::Action::Change,
        auth::Resource::Group(&spec.name),
    )?;
    let record = change(&api, spec.name.clone(), Some(spec), None, true).await?;
    Ok(with_etag(StatusCode::CREATED, &record))
}

pub async fn read(State(api): State<Api>, Path(name): Path<String>) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, &existing(&api, &name)?))
}

pub async fn replace(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    spec: Result<Json<GroupSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let spec = spec?.0;
    let version = if_match(&headers)?;
    let (status, record) = match api.broker.groups().record(&name) {
        // The same settings again at the version read: nothing to change (PUT is idempotent).
        Some(current) if current.spec == spec && version.is_none_or(|v| v == current.version) => {
            (StatusCode::OK, current)
        }
        Some(_) => (
            StatusCode::OK,
            change(&api, name, Some(spec), Some(required(version)?), false).await?,
        ),
        None => (
            StatusCode::CREATED,
            change(&api, name, Some(spec), Some(version.unwrap_or(0)), false).await?,
        ),
    };
    Ok(with_etag(status, &record))
}

pub async fn delete(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    existing(&api, &name)?;
    let version = required(if_match(&headers)?)?;
    change(&api, name, None, Some(version), false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
