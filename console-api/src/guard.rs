//! What the console answers and what every answer carries. A request whose `Host` is not
//! one of the console's names is refused with 421 `HOST_NOT_ALLOWED` (a page on another
//! site cannot reach the API through DNS rebinding); the names are `[console] hosts`, the
//! loopback names, and the address the console listens on. `/healthz`, `/readyz` and
//! `/metrics` answer any Host (probes and scrapers use addresses). Every response forbids
//! sniffing and framing, sends no referrer, restricts where the page may load from, and API
//! answers are not cached. No CORS header is ever sent, so browsers keep other origins out.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::error::{ApiError, ConsoleCode};

/// The names the console answers to, lowercase, without ports.
#[derive(Clone, Debug)]
pub struct Hosts {
    names: Vec<String>,
}

impl Hosts {
    /// `configured` names, the loopback names, and `listen`'s address unless it is
    /// unspecified (0.0.0.0 answers to whatever the operator configured).
    pub fn new(configured: &[String], listen: SocketAddr) -> Self {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .chain(configured.iter().map(|n| n.to_ascii_lowercase()))
            .collect();
        if !listen.ip().is_unspecified() {
            names.push(listen.ip().to_string());
        }
        Hosts { names }
    }

    /// Whether a `Host` header value names this console.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = if let Some(rest) = host.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default().to_string()
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
                _ => host,
            }
        };
        self.names.contains(&name)
    }
}

const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub async fn guard(State(hosts): State<Arc<Hosts>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let probe = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    if !probe && !host.as_deref().is_some_and(|h| hosts.allows(h)) {
        return ApiError::new(
            ConsoleCode::HostNotAllowed,
            format!(
                "Host {:?} is not one of this console's names (add it to [console] hosts)",
                host.unwrap_or_default()
            ),
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if path.starts_with("/api/") {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_matched_without_their_port() {
        let hosts = Hosts::new(
            &["Console.Example".into()],
            "10.0.0.5:7300".parse().unwrap(),
        );
        for ok in [
            "localhost:7300",
            "127.0.0.1",
            "[::1]:7300",
            "console.example:443",
            "10.0.0.5:7300",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:7300",
            "10.0.0.6:7300",
            "localhost.evil.example",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let any = Hosts::new(&[], "0.0.0.0:7300".parse().unwrap());
        assert!(!any.allows("0.0.0.0:7300"));
    }
}
