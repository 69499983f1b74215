//! `/api/v1/groups` and `/api/v1/principals`: list, create, read, replace (idempotent PUT)
//! and delete records every region shares (consumer groups' settings; principals). A
//! change to an existing record carries the version it read in `If-Match`, as for tasks.
//! Changes are shared with every region (by the replicator, when replication runs). A
//! principal is shown without its secret.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use broker::catalog::{Change, GroupSpec, Record};
use replicator::Carried;

use super::Api;
use super::error::ApiError;
use super::tasks::{if_match, required};

/// A kind of shared record the API serves.
pub trait Served: Carried {
    /// The record as the API shows it.
    fn view(record: &Record<Self>) -> serde_json::Value;
    /// What changing the record named `name` needs.
    fn resource(name: &str) -> auth::Resource<'_>;
}

impl Served for GroupSpec {
    fn view(record: &Record<Self>) -> serde_json::Value {
        serde_json::json!({
            "name": record.spec.name,
            "fifo": record.spec.fifo,
            "max_attempts": record.spec.max_attempts,
            "version": record.version,
            "changed_by": record.changed_by,
        })
    }

    fn resource(name: &str) -> auth::Resource<'_> {
        auth::Resource::Group(name)
    }
}

impl Served for auth::PrincipalSpec {
    fn view(record: &Record<Self>) -> serde_json::Value {
        serde_json::json!({
            "name": record.spec.name,
            "access_key": record.spec.access_key,
            "grants": record.spec.grants,
            "version": record.version,
            "changed_by": record.changed_by,
        })
    }

    fn resource(_: &str) -> auth::Resource<'_> {
        auth::Resource::Cluster
    }
}

fn with_etag<S: Served>(status: StatusCode, record: &Record<S>) -> Response {
    let mut response = (status, Json(S::view(record))).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", record.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

fn existing<S: Served>(api: &Api, name: &str) -> Result<Record<S>, ApiError> {
    S::book(&api.broker)
        .record(name)
        .ok_or_else(|| ApiError::not_found(format!("no {} \"{name}\"", S::NOUN)))
}

/// Makes a change here (storing it is an fsync, so it runs on the blocking pool) and, when
/// replication runs, passes it on to the other regions.
async fn change<S: Served>(
    api: &Api,
    caller: &auth::Caller,
    name: String,
    spec: Option<S>,
    if_version: Option<u64>,
    create_only: bool,
) -> Result<Record<S>, ApiError> {
    let api = api.clone();
    let by = api.authorship(caller);
    let made = tokio::task::spawn_blocking(move || {
        let change = Change {
            name: &name,
            spec,
            if_version,
            create_only,
        };
        match api.replicator.get() {
            Some(r) => r.change_shared(change, &by),
            None => S::book(&api.broker).change(
                change,
                &broker::catalog::Author {
                    principal: by.principal.as_deref(),
                    admin: by.admin,
                    ..broker::catalog::Author::region(&api.region)
                },
            ),
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("the change did not finish: {e}")))?;
    Ok(made?)
}

pub async fn list<S: Served>(State(api): State<Api>) -> Response {
    let records: Vec<_> = S::book(&api.broker).live().iter().map(S::view).collect();
    let key = format!("{}s", S::NOUN);
    Json(serde_json::json!({ key: records })).into_response()
}

pub async fn create<S: Served>(
    State(api): State<Api>,
    Extension(caller): Extension<auth::Caller>,
    spec: Result<Json<S>, JsonRejection>,
) -> Result<Response, ApiError> {
    let spec = spec?.0;
    api.authorize(&caller, auth::Action::Change, S::resource(spec.name()))?;
    let record = change(
        &api,
        &caller,
        spec.name().to_string(),
        Some(spec),
        None,
        true,
    )
    .await?;
    Ok(with_etag(StatusCode::CREATED, &record))
}

pub async fn read<S: Served>(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, &existing::<S>(&api, &name)?))
}

pub async fn replace<S: Served>(
    State(api): State<Api>,
    Extension(caller): Extension<auth::Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    spec: Result<Json<S>, JsonRejection>,
) -> Result<Response, ApiError> {
    let spec = spec?.0;
    let version = if_match(&headers)?;
    let (status, record) = match S::book(&api.broker).record(&name) {
        // The same record again at the version read: nothing to change (PUT is idempotent).
        Some(current) if current.spec == spec && version.is_none_or(|v| v == current.version) => {
            (StatusCode::OK, current)
        }
        Some(_) => (
            StatusCode::OK,
            change(
                &api,
                &caller,
                name,
                Some(spec),
                Some(required(version)?),
                false,
            )
            .await?,
        ),
        None => (
            StatusCode::CREATED,
            change(
                &api,
                &caller,
                name,
                Some(spec),
                Some(version.unwrap_or(0)),
                false,
            )
            .await?,
        ),
    };
    Ok(with_etag(status, &record))
}

pub async fn delete<S: Served>(
    State(api): State<Api>,
    Extension(caller): Extension<auth::Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    existing::<S>(&api, &name)?;
    let version = required(if_match(&headers)?)?;
    change::<S>(&api, &caller, name, None, Some(version), false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
