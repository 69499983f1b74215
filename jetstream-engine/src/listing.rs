//! The newest value of every key of a KV bucket that matches a subject filter, read from
//! the stream's leader by an ordered consumer that delivers the last message per subject
//! (the client's own key listing has no filter, and its values would cost a request per
//! key). Deleted and purged keys are left out.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy, push};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::engine::EngineError;

const KV_OPERATION: &str = "KV-Operation";

/// `(key, value)` of every live key of `store` matching `filter` (a subject filter over
/// keys: `cursor.g.*`), in the order the bucket last wrote them.
pub async fn latest(
    client: &async_nats::Client,
    store: &kv::Store,
    filter: &str,
    timeout: Duration,
) -> Result<Vec<(String, Bytes)>, EngineError> {
    let what = || format!("listing {filter} in bucket {}", store.name);
    let consumer = store
        .stream
        .create_consumer(push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            description: Some("georouter key listing".to_string()),
            filter_subject: format!("{}{filter}", store.prefix),
            deliver_policy: DeliverPolicy::LastPerSubject,
            replay_policy: ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(|e| EngineError::request(what(), e))?;
    let mut out = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| EngineError::request(what(), e))?;
    loop {
        let next = tokio::time::timeout(timeout, messages.next())
            .await
            .map_err(|_| {
                let late = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no message within {timeout:?}"),
                );
                EngineError::request(what(), late)
            })?;
        let message = match next {
            Some(m) => m.map_err(|e| EngineError::request(what(), e))?,
            None => {
                let ended = std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the listing ended early",
                );
                return Err(EngineError::request(what(), ended));
            }
        };
        let pending = message
            .info()
            .map_err(|e| EngineError::Invalid {
                what: what(),
                reason: e.to_string(),
            })?
            .pending;
        let removed = message
            .headers
            .as_ref()
            .and_then(|h| h.get(KV_OPERATION))
            .is_some_and(|op| op.as_str() != "PUT");
        if !removed && let Some(key) = message.subject.strip_prefix(store.prefix.as_str()) {
            out.push((key.to_string(), message.payload.clone()));
        }
        if pending == 0 {
            return Ok(out);
        }
    }
}
