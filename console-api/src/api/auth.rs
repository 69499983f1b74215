//! Who may use the API: every request but `/healthz`, `/readyz` and `/metrics` carries
//! `Authorization: Bearer <access key>:<secret>` (a principal) or `Bearer <token>` (the
//! console's `admin_tokens` and `read_tokens`, which are principals too), checked by the
//! region's [`Authority`]: 401 without known credentials, 403 when the principal may not do
//! what the route does (`required`). Reads need `read` on tasks (or on groups for
//! `/groups`); changes `change` on the task or group; failover and failback `failover` on
//! the task; principals need `cluster admin`. Only a node in open mode without any console token lets callers without
//! credentials in.

use std::sync::Arc;

use auth::{Action, Authority, Caller, Resource};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ConsoleCode};

/// The console's view of the region's authority.
#[derive(Clone)]
pub struct ConsoleAuth {
    pub authority: Arc<Authority>,
    /// Callers without credentials are let in (open mode, and no console token).
    pub anonymous: bool,
}

impl ConsoleAuth {
    /// Everyone may do everything (tests of other things).
    pub fn open() -> Self {
        ConsoleAuth {
            authority: Arc::new(Authority::open()),
            anonymous: true,
        }
    }
}

/// What a request to `path` with `method` needs; `None` for a create, whose handler checks
/// the name in the body.
pub fn required<'p>(method: &Method, path: &'p str) -> Option<(Action, Resource<'p>)> {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    let parts: Vec<&str> = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    if matches!(parts.first(), Some(&"principals" | &"audit")) {
        return Some((Action::Admin, Resource::Cluster));
    }
    if *method == Method::POST && parts.len() == 1 {
        return None;
    }
    let name = parts.get(1).copied().unwrap_or("*");
    Some(match parts.first().copied() {
        Some("tasks") if reads => (Action::Read, Resource::Task(name)),
        Some("tasks") if matches!(parts.get(2), Some(&"failover" | &"failback")) => {
            (Action::Failover, Resource::Task(name))
        }
        Some("tasks") => (Action::Change, Resource::Task(name)),
        Some("groups") if reads => (Action::Read, Resource::Group(name)),
        // Message bodies: for those who may consume them.
        Some("topics") if parts.get(2) == Some(&"messages") => {
            (Action::Consume, Resource::Topic(name))
        }
        // A rewind overrides what every region's consumers committed.
        Some("groups") if parts.get(2) == Some(&"rewind") => (Action::Admin, Resource::Cluster),
        Some("groups") => (Action::Change, Resource::Group(name)),
        // Regions, links, topics, replication status, the OpenAPI document.
        _ => (Action::Read, Resource::Task("*")),
    })
}

/// The answer to a refusal (counted and logged here): 401 or 403.
pub fn denied(authority: &Authority, denial: auth::Denial) -> Response {
    authority.refused("console", &denial);
    match denial {
        auth::Denial::Unauthenticated(message) => {
            let mut response = ApiError::new(ConsoleCode::Unauthorized, message).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
        forbidden => ApiError::new(ConsoleCode::Forbidden, forbidden.to_string()).into_response(),
    }
}

/// Authenticates every request, authorizes what its route does, and hands the caller to
/// the handler (a request extension).
pub async fn require(
    State(auth): State<Arc<ConsoleAuth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match authorization {
        None if auth.anonymous => Ok(Caller::Anonymous),
        None => Err(auth::Denial::Unauthenticated(
            "a bearer credential is required (Authorization: Bearer <access key>:<secret>, or a console token)".into(),
        )),
        Some(_) => auth.authority.bearer(authorization),
    };
    let path = request.uri().path().to_string();
    let allowed = caller.and_then(|caller| {
        if let Some((action, resource)) = required(request.method(), &path) {
            auth.authority.authorize(&caller, action, &resource)?;
        }
        Ok(caller)
    });
    match allowed {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(denial) => denied(&auth.authority, denial),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_they_do() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            required(&get, "/api/v1/tasks"),
            Some((Action::Read, Resource::Task("*")))
        );
        assert_eq!(required(&post, "/api/v1/tasks"), None, "the handler checks");
        assert_eq!(
            required(&get, "/api/v1/principals"),
            Some((Action::Admin, Resource::Cluster)),
            "principals are the cluster admin's"
        );
        assert_eq!(
            required(&post, "/api/v1/tasks/dr/failover"),
            Some((Action::Failover, Resource::Task("dr")))
        );
        assert_eq!(
            required(&Method::PUT, "/api/v1/tasks/t"),
            Some((Action::Change, Resource::Task("t")))
        );
        assert_eq!(
            required(&Method::DELETE, "/api/v1/groups/g"),
            Some((Action::Change, Resource::Group("g")))
        );
        assert_eq!(
            required(&post, "/api/v1/groups/g/rewind"),
            Some((Action::Admin, Resource::Cluster)),
            "a rewind overrides every region's commits"
        );
        assert_eq!(
            required(&get, "/api/v1/topics/orders/messages"),
            Some((Action::Consume, Resource::Topic("orders"))),
            "message bodies need consume"
        );
        assert_eq!(
            required(&get, "/api/v1/replication"),
            Some((Action::Read, Resource::Task("*")))
        );
    }
}
