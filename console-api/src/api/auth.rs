//! Bearer-token auth (`[console] admin_tokens`, `read_tokens`): reads need a read or an
//! admin token, changes an admin token; 401 without a known token, 403 for a read-only
//! token on a change. With no token configured at all the API is open (a warning is
//! logged at start). `/healthz`, `/readyz` and `/metrics` need none.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ConsoleCode};

#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub admin: Vec<String>,
    pub read: Vec<String>,
}

impl Tokens {
    pub fn open(&self) -> bool {
        self.admin.is_empty() && self.read.is_empty()
    }
}

/// Compares a token in time that depends on the lengths only, not on where the first
/// difference is.
fn same(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(PartialEq, Eq)]
enum Grant {
    Admin,
    Read,
}

pub async fn require(State(tokens): State<Arc<Tokens>>, request: Request, next: Next) -> Response {
    if tokens.open() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let grant = match presented {
        Some(t) if tokens.admin.iter().any(|a| same(a, t)) => Grant::Admin,
        Some(t) if tokens.read.iter().any(|r| same(r, t)) => Grant::Read,
        _ => {
            let mut response = ApiError::new(
                ConsoleCode::Unauthorized,
                "a valid bearer token is required (Authorization: Bearer <token>)",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    };
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reads && grant != Grant::Admin {
        return ApiError::new(
            ConsoleCode::Forbidden,
            "this token may read but not change anything",
        )
        .into_response();
    }
    next.run(request).await
}
