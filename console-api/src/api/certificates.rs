//! `GET /api/v1/certificates`: the certificates this node serves and links with, when each
//! stops being valid, and whether that is within [`SOON_DAYS`] days.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::Api;

/// Expiry within this many days is reported as soon.
pub const SOON_DAYS: i64 = 30;

/// A certificate file of the node.
#[derive(Clone, Debug, Serialize)]
pub struct CertificateFile {
    /// What it is for: `replication`, `tls`, `rocketmq`.
    pub name: String,
    pub path: String,
    /// Its `notAfter`, seconds since the epoch.
    pub not_after_s: i64,
}

impl CertificateFile {
    /// Seconds until it expires (negative: expired).
    pub fn expires_in_s(&self, now_s: i64) -> i64 {
        self.not_after_s - now_s
    }
}

/// How the API shows `file` at `now_s`.
pub fn describe(file: &CertificateFile, now_s: i64) -> serde_json::Value {
    let left = file.expires_in_s(now_s);
    serde_json::json!({
        "name": file.name,
        "path": file.path,
        "not_after_s": file.not_after_s,
        "expires_in_days": left.div_euclid(86_400),
        "expires_soon": left < SOON_DAYS * 86_400,
    })
}

pub async fn list(State(api): State<Api>) -> Response {
    let now = broker::record::now_ms().div_euclid(1000);
    let certificates: Vec<_> = api.certificates.iter().map(|c| describe(c, now)).collect();
    Json(serde_json::json!({ "certificates": certificates })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_within_thirty_days_is_soon() {
        let file = CertificateFile {
            name: "tls".into(),
            path: "server.pem".into(),
            not_after_s: 100 * 86_400,
        };
        let at = |day: i64| describe(&file, day * 86_400);
        assert_eq!(at(60)["expires_in_days"], 40);
        assert_eq!(at(60)["expires_soon"], false);
        assert_eq!(at(71)["expires_soon"], true);
        assert_eq!(at(101)["expires_in_days"], -1, "expired");
    }
}
