//! Bounds on how long a request may take, so that a slow or stalled client cannot hold a
//! connection and a worker (slowloris): its head must arrive within `request_timeout`
//! (hyper's header read timeout, `serve`), its body too (read here whole, at most
//! `MAX_BODY_BYTES`: 408 `REQUEST_TIMEOUT`, 413 `BODY_TOO_LARGE`), and the handler must
//! answer within it (503 `TIMED_OUT`; a change already being stored may still take effect:
//! read it back). Failover and failback are exempt from the last bound: they wait for the
//! region to catch up for up to their own `timeout_s`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::api::MAX_BODY_BYTES;
use crate::api::error::{ApiError, ConsoleCode};

/// Requests that take as long as their body says (`timeout_s`).
fn waits_by_itself(path: &str) -> bool {
    path.starts_with("/api/v1/tasks/")
        && (path.ends_with("/failover") || path.ends_with("/failback"))
}

pub async fn deadline(
    State(bound): State<Arc<Duration>>,
    request: Request,
    next: Next,
) -> Response {
    let bound = *bound;
    let ms = bound.as_millis();
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(bound, Limited::new(body, MAX_BODY_BYTES).collect()).await
    {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return ApiError::new(
                ConsoleCode::BodyTooLarge,
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
            .into_response();
        }
        Ok(Err(e)) => {
            return ApiError::bad_request(format!("reading the request body: {e}")).into_response();
        }
        Err(_) => {
            return ApiError::new(
                ConsoleCode::RequestTimeout,
                format!("the request body did not arrive within {ms} ms"),
            )
            .into_response();
        }
    };
    let request = Request::from_parts(parts, Body::from(body));
    if waits_by_itself(request.uri().path()) {
        return next.run(request).await;
    }
    match tokio::time::timeout(bound, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ConsoleCode::TimedOut,
            format!("no answer within {ms} ms; a change may still take effect: read it back"),
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_failover_and_failback_wait_by_themselves() {
        assert!(super::waits_by_itself("/api/v1/tasks/dr/failover"));
        assert!(super::waits_by_itself("/api/v1/tasks/dr/failback"));
        assert!(!super::waits_by_itself("/api/v1/tasks/dr"));
        assert!(!super::waits_by_itself("/api/v1/groups/failover"));
    }
}
