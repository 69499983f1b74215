//! The API's one error shape and its mapping to HTTP: `{"error": {"code", "message",
//! "field"?}}` with a stable code a user can search for.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use replicator::ChangeError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", what)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = field.into();
        }
        (self.status, Json(serde_json::json!({ "error": error }))).into_response()
    }
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "VERSION_CONFLICT", e.to_string())
            }
            ChangeError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "TASK_EXISTS", e.to_string())
            }
            ChangeError::NotFound(_) => ApiError::not_found(e.to_string()),
            ChangeError::Invalid(t) => ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "INVALID_TASK",
                field: Some(t.field.to_string()),
                message: t.to_string(),
            },
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                other.to_string(),
            ),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // Syntax and data errors (unknown or missing fields, wrong types) are both 400.
        let (status, code) = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
            }
            _ => (StatusCode::BAD_REQUEST, "MALFORMED_JSON"),
        };
        ApiError::new(status, code, r.body_text())
    }
}
