//! The audit log: every change asked of the console (a request other than GET and HEAD
//! past authentication) is recorded with who asked (the principal), what (method and
//! path), the answer's status, when, and from which address. Entries are appended to
//! `<data_dir>/audit.log` (JSON lines, fsynced) and the last [`KEPT`] are readable at
//! `GET /api/v1/audit` (cluster admin). Secrets are never part of an entry: bodies are not
//! recorded.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Entries kept in memory (and read back from the file at start).
pub const KEPT: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    pub principal: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The client's address, when known.
    pub from: Option<String>,
}

pub struct Audit {
    file: Option<PathBuf>,
    recent: Mutex<VecDeque<Entry>>,
    /// Serializes appends to the file.
    writer: tokio::sync::Mutex<()>,
}

impl Audit {
    /// An audit log kept in `file` (its last entries read back), or in memory only.
    pub fn open(file: Option<PathBuf>) -> std::io::Result<Self> {
        let mut recent = VecDeque::new();
        if let Some(path) = &file
            && path.exists()
        {
            for line in std::io::BufReader::new(std::fs::File::open(path)?).lines() {
                if let Ok(entry) = serde_json::from_str::<Entry>(&line?) {
                    if recent.len() == KEPT {
                        recent.pop_front();
                    }
                    recent.push_back(entry);
                }
            }
        }
        Ok(Audit {
            file,
            recent: Mutex::new(recent),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    pub fn recent(&self) -> Vec<Entry> {
        self.recent.lock().expect("audit").iter().cloned().collect()
    }

    async fn record(&self, entry: Entry) {
        {
            let mut recent = self.recent.lock().expect("audit");
            if recent.len() == KEPT {
                recent.pop_front();
            }
            recent.push_back(entry.clone());
        }
        tracing::info!(principal = %entry.principal, method = %entry.method, path = %entry.path, status = entry.status, from = ?entry.from, "console change");
        let Some(path) = self.file.clone() else {
            return;
        };
        let _writer = self.writer.lock().await;
        let line = serde_json::to_string(&entry).expect("an entry encodes") + "\n";
        let appended = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            file.write_all(line.as_bytes())?;
            file.sync_data()
        })
        .await;
        if !matches!(appended, Ok(Ok(()))) {
            tracing::error!(
                event = "audit_append_failed",
                ?appended,
                "appending to the audit log failed"
            );
        }
    }
}

/// Records the changes (runs after `auth::require`, which sets the caller).
pub async fn audit(State(audit): State<Arc<Audit>>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let principal = request
        .extensions()
        .get::<auth::Caller>()
        .map_or("unauthenticated", |c| c.name())
        .to_string();
    let from = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string());
    let (method, path) = (
        request.method().to_string(),
        request.uri().path().to_string(),
    );
    let response = next.run(request).await;
    audit
        .record(Entry {
            at_ms: broker::record::now_ms(),
            principal,
            method,
            path,
            status: response.status().as_u16(),
            from,
        })
        .await;
    response
}

/// `GET /api/v1/audit`: the last entries, oldest first.
pub async fn read(State(api): State<crate::api::Api>) -> Response {
    Json(serde_json::json!({ "entries": api.audit.recent() })).into_response()
}
