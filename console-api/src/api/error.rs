//! The API's one error shape and its mapping to HTTP: `{"error": {"code", "message",
//! "field"?}}` with a stable code a user can search for.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use broker::catalog::{GroupChangeError, VersionError};
use replicator::ChangeError;

proto::stable_codes! {
    /// The console's error codes (docs/errors.md); each has one HTTP status.
    #[non_exhaustive]
    pub enum ConsoleCode {
        /// The body is not valid JSON for the request.
        MalformedJson => "MALFORMED_JSON",
        UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
        BodyTooLarge => "BODY_TOO_LARGE",
        /// The request's body did not arrive within the console's request bound.
        RequestTimeout => "REQUEST_TIMEOUT",
        BadRequest => "BAD_REQUEST",
        InvalidTask => "INVALID_TASK",
        InvalidGroup => "INVALID_GROUP",
        Unauthorized => "UNAUTHORIZED",
        Forbidden => "FORBIDDEN",
        HostNotAllowed => "HOST_NOT_ALLOWED",
        NotFound => "NOT_FOUND",
        ReplicationDisabled => "REPLICATION_DISABLED",
        TaskExists => "TASK_EXISTS",
        GroupExists => "GROUP_EXISTS",
        VersionConflict => "VERSION_CONFLICT",
        VersionRequired => "VERSION_REQUIRED",
        FailoverTimedOut => "FAILOVER_TIMED_OUT",
        FailoverRefused => "FAILOVER_REFUSED",
        /// A well-formed request the current state does not allow (a rewind past the end
        /// held).
        Conflict => "CONFLICT",
        /// No answer within the console's request bound.
        TimedOut => "TIMED_OUT",
        Internal => "INTERNAL",
    }
}

impl ConsoleCode {
    /// The HTTP status this code is answered with: the console's one mapping.
    pub fn status(self) -> StatusCode {
        match self {
            ConsoleCode::MalformedJson
            | ConsoleCode::BadRequest
            | ConsoleCode::InvalidTask
            | ConsoleCode::InvalidGroup => StatusCode::BAD_REQUEST,
            ConsoleCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ConsoleCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ConsoleCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ConsoleCode::Forbidden => StatusCode::FORBIDDEN,
            ConsoleCode::HostNotAllowed => StatusCode::MISDIRECTED_REQUEST,
            ConsoleCode::NotFound | ConsoleCode::ReplicationDisabled => StatusCode::NOT_FOUND,
            ConsoleCode::TaskExists
            | ConsoleCode::GroupExists
            | ConsoleCode::VersionConflict
            | ConsoleCode::FailoverTimedOut
            | ConsoleCode::FailoverRefused
            | ConsoleCode::Conflict => StatusCode::CONFLICT,
            ConsoleCode::VersionRequired => StatusCode::PRECONDITION_REQUIRED,
            ConsoleCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ConsoleCode::TimedOut => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ConsoleCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ConsoleCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ConsoleCode::NotFound, what)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(ConsoleCode::Internal, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ConsoleCode::BadRequest, message)
    }

    /// The error of a region without replication (tasks, failover).
    pub fn replication_disabled() -> Self {
        Self::new(
            ConsoleCode::ReplicationDisabled,
            "replication is not configured in this region",
        )
    }

    /// Replication of this region runs on another of its nodes now.
    pub fn replication_elsewhere() -> Self {
        Self::new(
            ConsoleCode::ReplicationDisabled,
            "replication of this region runs on another of its nodes now (the holder of its replication lease): ask that node's console",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code.as_str(), "message": self.message});
        if let Some(field) = self.field {
            error["field"] = field.into();
        }
        (
            self.code.status(),
            Json(serde_json::json!({ "error": error })),
        )
            .into_response()
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Conflict { .. } => {
                ApiError::new(ConsoleCode::VersionConflict, e.to_string())
            }
            ChangeError::Exists(_) => ApiError::new(ConsoleCode::TaskExists, e.to_string()),
            ChangeError::NotFound(_) => ApiError::not_found(e.to_string()),
            ChangeError::NotEntitled { .. } => ApiError::new(ConsoleCode::Forbidden, e.to_string()),
            ChangeError::Invalid(t) => ApiError {
                code: ConsoleCode::InvalidTask,
                field: Some(t.field.to_string()),
                message: t.to_string(),
            },
            other => ApiError::new(ConsoleCode::Internal, other.to_string()),
        }
    }
}

impl From<GroupChangeError> for ApiError {
    fn from(e: GroupChangeError) -> Self {
        match e {
            GroupChangeError::Version(VersionError::Conflict { .. }) => {
                ApiError::new(ConsoleCode::VersionConflict, e.to_string())
            }
            GroupChangeError::Version(VersionError::Exists { .. }) => {
                ApiError::new(ConsoleCode::GroupExists, e.to_string())
            }
            GroupChangeError::Version(VersionError::NotFound { .. }) => {
                ApiError::not_found(e.to_string())
            }
            GroupChangeError::Invalid { field, reason } => ApiError {
                code: ConsoleCode::InvalidGroup,
                field: Some(field.to_string()),
                message: reason,
            },
            GroupChangeError::Meta(_) => ApiError::new(ConsoleCode::Internal, e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // Syntax and data errors (unknown or missing fields, wrong types) are both 400.
        let code = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ConsoleCode::BodyTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ConsoleCode::UnsupportedMediaType,
            _ => ConsoleCode::MalformedJson,
        };
        ApiError::new(code, r.body_text())
    }
}
