//! The REST API under `/api/v1`: tasks (`tasks`), consumer groups and principals (`shared`), DR failover and
//! failback (`failover`), regions, links and topics
//! (`resources`), its OpenAPI 3 document (`openapi`), bearer-token auth (`auth`) and the
//! one error shape (`error`). Bodies are JSON, at most `MAX_BODY_BYTES`.

pub mod auth;
pub mod certificates;
pub mod error;
pub mod failover;
pub mod messages;
pub mod openapi;
pub mod redeliver;
pub mod resources;
pub mod rewind;
pub mod shared;
pub mod tasks;
pub mod trace;

use std::sync::Arc;

use ::auth::PrincipalSpec;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use broker::Broker;
use broker::catalog::GroupSpec;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 << 10;

#[derive(Clone)]
pub struct Api {
    pub region: String,
    pub broker: Arc<Broker>,
    /// The replicator this node runs now, if any.
    pub replicator: replicator::Running,
    pub authority: Arc<::auth::Authority>,
    pub audit: Arc<crate::audit::Audit>,
    /// The node's certificate files, with their expiry.
    pub certificates: Arc<Vec<certificates::CertificateFile>>,
    /// The RocketMQ access point's consumer groups (redelivery), when it runs.
    pub consumption: Option<Arc<rocketmq::pop::Consumption>>,
}

impl Api {
    /// Who asks for a change, as its record carries it: the principal, and whether they
    /// are a cluster administrator (open mode's anonymous caller is one).
    pub(crate) fn authorship(&self, caller: &::auth::Caller) -> replicator::Authorship {
        replicator::Authorship {
            principal: match caller {
                ::auth::Caller::Principal(p) => Some(p.name.clone()),
                ::auth::Caller::Anonymous => None,
            },
            admin: self
                .authority
                .authorize(caller, ::auth::Action::Admin, &::auth::Resource::Cluster)
                .is_ok(),
        }
    }

    /// Whether `caller` (set by `auth::require`) may do `action` on `resource`: for the
    /// creates, whose resource is named in the body.
    pub(crate) fn authorize(
        &self,
        caller: &::auth::Caller,
        action: ::auth::Action,
        resource: ::auth::Resource<'_>,
    ) -> Result<(), error::ApiError> {
        // The caller was authenticated by the auth layer: only a refusal of the grant is left.
        self.authority
            .authorize(caller, action, &resource)
            .map_err(|denial| {
                self.authority.refused("console", &denial);
                error::ApiError::new(error::ConsoleCode::Forbidden, denial.to_string())
            })
    }
}

/// The API's routes, behind auth.
pub fn router(api: Api, auth: auth::ConsoleAuth) -> Router {
    let auth = Arc::new(auth);
    Router::new()
        .route("/api/v1/tasks", get(tasks::list).post(tasks::create))
        .route(
            "/api/v1/tasks/{name}",
            get(tasks::read).put(tasks::replace).delete(tasks::delete),
        )
        .route("/api/v1/tasks/{name}/status", get(tasks::status))
        .route("/api/v1/tasks/{name}/pause", post(tasks::pause))
        .route("/api/v1/tasks/{name}/resume", post(tasks::resume))
        .route("/api/v1/tasks/{name}/failover", post(failover::failover))
        .route("/api/v1/tasks/{name}/failback", post(failover::failback))
        .route(
            "/api/v1/groups",
            get(shared::list::<GroupSpec>).post(shared::create::<GroupSpec>),
        )
        .route(
            "/api/v1/groups/{name}",
            get(shared::read::<GroupSpec>)
                .put(shared::replace::<GroupSpec>)
                .delete(shared::delete::<GroupSpec>),
        )
        .route("/api/v1/groups/{name}/rewind", post(rewind::rewind))
        .route(
            "/api/v1/groups/{name}/redeliver",
            post(redeliver::redeliver),
        )
        .route(
            "/api/v1/principals",
            get(shared::list::<PrincipalSpec>).post(shared::create::<PrincipalSpec>),
        )
        .route(
            "/api/v1/principals/{name}",
            get(shared::read::<PrincipalSpec>)
                .put(shared::replace::<PrincipalSpec>)
                .delete(shared::delete::<PrincipalSpec>),
        )
        .route("/api/v1/regions", get(resources::regions))
        .route("/api/v1/links", get(resources::links))
        .route("/api/v1/topology", get(resources::topology))
        .route("/api/v1/history", get(resources::history))
        .route("/api/v1/topics", get(resources::topics))
        .route("/api/v1/topics/{name}/messages", get(messages::query))
        .route(
            "/api/v1/topics/{name}/messages/{id}/trace",
            get(trace::trace),
        )
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/audit", get(crate::audit::read))
        .route("/api/v1/certificates", get(certificates::list))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside the auth layer: it records who made each change.
        .route_layer(axum::middleware::from_fn_with_state(
            api.audit.clone(),
            crate::audit::audit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(auth, auth::require))
        .with_state(api)
}
