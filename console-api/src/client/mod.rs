//! The one HTTP client of the console API (`/healthz`, `/readyz`, `/metrics`,
//! `/api/v1/...`), shared by the `georouter task|failover|failback` commands, the scenario
//! harness and the tests. [`ConsoleClient`] has a typed method per route the callers use,
//! answering the types of [`types`]; [`ConsoleClient::raw`] sends any request and returns
//! status, headers and body as they came, for tests of refusals. A refusal of a typed call
//! is [`ClientError::Status`] with the code and message of the console's error body.

pub mod types;

use std::time::Duration;

use broker::catalog::GroupSpec;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH};
pub use hyper::{HeaderMap, Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use replicator::{FailoverMode, FailoverReport, TaskSpec};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use types::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request did not get an answer: the console is not reachable, the connection
    /// broke, or the request could not be built.
    #[error("{method} {path} at the console {address}: no answer")]
    Transport {
        address: String,
        method: Method,
        path: String,
        #[source]
        source: BoxError,
    },
    /// The console refused: its status, and the code, message and field of its error body
    /// (code `ERROR` and the body as text when it sent no error body).
    #[error("{status} {code}: {message}{}", field.as_ref().map(|f| format!(" (field {f})")).unwrap_or_default())]
    Status {
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
    },
    /// The answer is not what the route returns.
    #[error("{method} {path}: the console's answer does not decode")]
    Decode {
        method: Method,
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The console's error code of a refusal (`NOT_FOUND`, `VERSION_CONFLICT`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Status { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// An answer as it came.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `ETag` header: a task's version, quoted.
    pub fn etag(&self) -> Option<&str> {
        self.headers.get(ETAG).and_then(|v| v.to_str().ok())
    }

    /// The console's error body, when the body is one.
    pub fn error(&self) -> Option<ApiError> {
        serde_json::from_slice::<ErrorBody>(&self.body)
            .ok()
            .map(|b| b.error)
    }

    /// A refusal as an error: the error body's code, message and field.
    pub fn into_error(self) -> ClientError {
        let (code, message, field) = match self.error() {
            Some(e) => (e.code, e.message, e.field),
            None => {
                let text = self.text();
                let message = if text.trim().is_empty() {
                    "request failed".to_string()
                } else {
                    text.trim().to_string()
                };
                ("ERROR".to_string(), message, None)
            }
        };
        ClientError::Status {
            status: self.status,
            code,
            message,
            field,
        }
    }
}

/// A region's console at `address` (`host:port`), with an optional bearer token.
#[derive(Clone)]
pub struct ConsoleClient {
    address: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ConsoleClient {
    pub fn new(address: impl ToString, token: Option<&str>) -> Self {
        ConsoleClient {
            address: address.to_string(),
            token: token.map(str::to_string),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The same console with another token (or none); the connections are shared.
    pub fn with_token(&self, token: Option<&str>) -> Self {
        ConsoleClient {
            token: token.map(str::to_string),
            ..self.clone()
        }
    }

    /// Sends `method path` with the client's token (unless `headers` name an
    /// `Authorization`), `headers`, and `body` as JSON; returns whatever came back.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let transport = |source: BoxError| ClientError::Transport {
            address: self.address.clone(),
            method: method.clone(),
            path: path.to_string(),
            source,
        };
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(format!("http://{}{path}", self.address));
        let authorizes = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(AUTHORIZATION.as_str()));
        if let (Some(token), false) = (&self.token, authorizes) {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| transport(e.into()))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| transport(e.into()))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(e.into()))?
            .to_bytes();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// A call that must succeed: a refusal becomes [`ClientError::Status`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        version: Option<u64>,
        body: Option<&impl Serialize>,
    ) -> Result<Response, ClientError> {
        let if_match = version.map(|v| format!("\"{v}\""));
        let headers: Vec<(&str, &str)> = if_match
            .as_deref()
            .map(|v| (IF_MATCH.as_str(), v))
            .into_iter()
            .collect();
        let body = body.map(|b| serde_json::to_vec(b).expect("request bodies serialize"));
        let response = self.raw(method, path, &headers, body).await?;
        if response.is_success() {
            Ok(response)
        } else {
            Err(response.into_error())
        }
    }

    /// A successful call's JSON answer as `T`.
    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        version: Option<u64>,
        body: Option<&impl Serialize>,
    ) -> Result<T, ClientError> {
        let response = self.call(method.clone(), path, version, body).await?;
        serde_json::from_slice(&response.body).map_err(|source| ClientError::Decode {
            method,
            path: path.to_string(),
            source,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(Method::GET, path, None, None::<&()>).await
    }

    /// `/healthz`: whether the process serves (it answers at all).
    pub async fn healthy(&self) -> Result<bool, ClientError> {
        let response = self.raw(Method::GET, "/healthz", &[], None).await?;
        Ok(response.is_success())
    }

    /// `/readyz`: whether the node finished recovery and its listeners are up.
    pub async fn ready(&self) -> Result<bool, ClientError> {
        let response = self.raw(Method::GET, "/readyz", &[], None).await?;
        match response.status {
            200 => Ok(true),
            503 => Ok(false),
            _ => Err(response.into_error()),
        }
    }

    /// `/metrics` in the Prometheus text format.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self
            .call(Method::GET, "/metrics", None, None::<&()>)
            .await?;
        Ok(response.text())
    }

    pub async fn links(&self) -> Result<Vec<Link>, ClientError> {
        Ok(self.get::<LinkList>("/api/v1/links").await?.links)
    }

    pub async fn regions(&self) -> Result<Regions, ClientError> {
        self.get("/api/v1/regions").await
    }

    pub async fn topics(&self) -> Result<Vec<Topic>, ClientError> {
        Ok(self.get::<TopicList>("/api/v1/topics").await?.topics)
    }

    /// `/api/v1/replication`: links, routes, sub-logs and RPO.
    pub async fn replication(&self) -> Result<Replication, ClientError> {
        self.get("/api/v1/replication").await
    }

    /// The API's OpenAPI 3 document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/api/v1/openapi.json").await
    }

    pub async fn tasks(&self) -> Result<Vec<Task>, ClientError> {
        Ok(self.get::<TaskList>("/api/v1/tasks").await?.tasks)
    }

    pub async fn task(&self, name: &str) -> Result<Task, ClientError> {
        self.get(&format!("/api/v1/tasks/{name}")).await
    }

    pub async fn task_status(&self, name: &str) -> Result<TaskStatus, ClientError> {
        self.get(&format!("/api/v1/tasks/{name}/status")).await
    }

    /// Creates a task (`409 TASK_EXISTS` if the name is taken).
    pub async fn create_task(&self, spec: &TaskSpec) -> Result<Task, ClientError> {
        self.json(Method::POST, "/api/v1/tasks", None, Some(spec))
            .await
    }

    /// Creates or replaces task `spec.name`; replacing needs the `version` read.
    pub async fn put_task(
        &self,
        spec: &TaskSpec,
        version: Option<u64>,
    ) -> Result<Task, ClientError> {
        let path = format!("/api/v1/tasks/{}", spec.name);
        self.json(Method::PUT, &path, version, Some(spec)).await
    }

    pub async fn delete_task(&self, name: &str, version: u64) -> Result<(), ClientError> {
        let path = format!("/api/v1/tasks/{name}");
        self.call(Method::DELETE, &path, Some(version), None::<&()>)
            .await
            .map(|_| ())
    }

    pub async fn pause_task(&self, name: &str, version: u64) -> Result<Task, ClientError> {
        let path = format!("/api/v1/tasks/{name}/pause");
        self.json(Method::POST, &path, Some(version), None::<&()>)
            .await
    }

    pub async fn resume_task(&self, name: &str, version: u64) -> Result<Task, ClientError> {
        let path = format!("/api/v1/tasks/{name}/resume");
        self.json(Method::POST, &path, Some(version), None::<&()>)
            .await
    }

    pub async fn groups(&self) -> Result<Vec<Group>, ClientError> {
        Ok(self.get::<GroupList>("/api/v1/groups").await?.groups)
    }

    pub async fn group(&self, name: &str) -> Result<Group, ClientError> {
        self.get(&format!("/api/v1/groups/{name}")).await
    }

    /// Moves group `group`'s cursor of `topic`'s `partition` to `next` (origin -> next
    /// offset) under a new epoch, in every region it is synced to (cluster admin).
    pub async fn rewind_group(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next: &std::collections::BTreeMap<String, u64>,
    ) -> Result<Rewound, ClientError> {
        let body = serde_json::json!({"topic": topic, "partition": partition, "next": next});
        let path = format!("/api/v1/groups/{group}/rewind");
        self.json(Method::POST, &path, None, Some(&body)).await
    }

    /// Messages of `topic` matching `query` (`id`, `key`, `from`, `to`, `limit`): the
    /// answer of `GET /api/v1/topics/{topic}/messages` as it is.
    pub async fn messages(
        &self,
        topic: &str,
        query: &[(&str, &str)],
    ) -> Result<serde_json::Value, ClientError> {
        let query = serde_urlencoded::to_string(query).expect("pairs of text encode");
        self.get(&format!("/api/v1/topics/{topic}/messages?{query}"))
            .await
    }

    /// The trace of the message of identity `id` (`origin-partition-offset`) of `topic`.
    pub async fn trace(&self, topic: &str, id: &str) -> Result<serde_json::Value, ClientError> {
        self.get(&format!("/api/v1/topics/{topic}/messages/{id}/trace"))
            .await
    }

    /// Creates a consumer group (`409 GROUP_EXISTS` if the name is taken).
    pub async fn create_group(&self, spec: &GroupSpec) -> Result<Group, ClientError> {
        self.json(Method::POST, "/api/v1/groups", None, Some(spec))
            .await
    }

    /// Creates or replaces group `spec.name`; replacing needs the `version` read.
    pub async fn put_group(
        &self,
        spec: &GroupSpec,
        version: Option<u64>,
    ) -> Result<Group, ClientError> {
        let path = format!("/api/v1/groups/{}", spec.name);
        self.json(Method::PUT, &path, version, Some(spec)).await
    }

    pub async fn delete_group(&self, name: &str, version: u64) -> Result<(), ClientError> {
        let path = format!("/api/v1/groups/{name}");
        self.call(Method::DELETE, &path, Some(version), None::<&()>)
            .await
            .map(|_| ())
    }

    /// Promotes this console's region to primary of DR task `name`; a planned failover
    /// waits up to `timeout` for the region to catch up.
    pub async fn failover(
        &self,
        name: &str,
        mode: FailoverMode,
        timeout: Duration,
    ) -> Result<FailoverReport, ClientError> {
        #[derive(Serialize)]
        struct Request {
            mode: FailoverMode,
            timeout_s: f64,
        }
        let body = Request {
            mode,
            timeout_s: timeout.as_secs_f64(),
        };
        let path = format!("/api/v1/tasks/{name}/failover");
        self.json(Method::POST, &path, None, Some(&body)).await
    }

    /// Returns DR task `name` to its first source, this console's region.
    pub async fn failback(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<FailoverReport, ClientError> {
        #[derive(Serialize)]
        struct Request {
            timeout_s: f64,
        }
        let body = Request {
            timeout_s: timeout.as_secs_f64(),
        };
        let path = format!("/api/v1/tasks/{name}/failback");
        self.json(Method::POST, &path, None, Some(&body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn a_refusal_carries_the_error_body() {
        let body = r#"{"error":{"code":"INVALID_TASK","message":"unknown region mars","field":"targets"}}"#;
        let error = response(400, body).into_error();
        assert_eq!(
            (error.status(), error.code()),
            (Some(400), Some("INVALID_TASK"))
        );
        assert_eq!(
            error.to_string(),
            "400 INVALID_TASK: unknown region mars (field targets)"
        );
    }

    #[test]
    fn a_refusal_without_an_error_body_keeps_its_text() {
        let error = response(503, "not ready\n").into_error();
        assert_eq!(error.to_string(), "503 ERROR: not ready");
        let error = response(404, "").into_error();
        assert_eq!(error.to_string(), "404 ERROR: request failed");
    }
}
