//! Reads a region's console API (JSON over HTTP with a bearer token).

use std::net::SocketAddr;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// `GET http://{console}{path}` as JSON.
pub async fn get_json(console: SocketAddr, path: &str, token: &str) -> Result<serde_json::Value> {
    call(console, "GET", path, token, None).await
}

/// `POST http://{console}{path}` with a JSON body; the answer as JSON.
pub async fn post_json(
    console: SocketAddr,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value> {
    call(console, "POST", path, token, Some(body)).await
}

async fn call(
    console: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{console}{path}"))
        .header("authorization", format!("Bearer {token}"));
    let bytes = match body {
        Some(b) => {
            request = request.header("content-type", "application/json");
            serde_json::to_vec(b)?
        }
        None => Vec::new(),
    };
    let request = request
        .body(Full::new(Bytes::from(bytes)))
        .context("building the request")?;
    let response = client
        .request(request)
        .await
        .with_context(|| format!("{method} {path} at the console {console}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    ensure!(
        status.is_success(),
        "{method} {path} at {console}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).with_context(|| format!("{method} {path} at {console}: not JSON"))
}

/// The peers whose links a region reports up.
pub async fn links_up(console: SocketAddr, token: &str) -> Result<Vec<String>> {
    let links = get_json(console, "/api/v1/links", token).await?;
    Ok(links["links"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["up"].as_bool() == Some(true))
        .filter_map(|l| l["peer"].as_str().map(str::to_string))
        .collect())
}
