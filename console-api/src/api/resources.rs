//! Read-only views: `/api/v1/regions`, `/api/v1/links`, `/api/v1/topology`, `/api/v1/history`,
//! `/api/v1/topics`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::Api;
use super::error::ApiError;

pub async fn regions(State(api): State<Api>) -> Result<Response, ApiError> {
    let Some(r) = api.replicator.get() else {
        return Ok(Json(serde_json::json!({
            "this": api.region, "regions": [{"name": api.region, "this": true}]
        }))
        .into_response());
    };
    let mut regions = vec![serde_json::json!({"name": api.region, "this": true})];
    regions.extend(r.routes().into_iter().map(|route| {
        serde_json::json!({
            "name": route.region,
            "this": false,
            "reachable": !route.via.is_empty(),
            "via": route.via.first().map(|(n, _)| n),
            "cost": route.via.first().map(|(_, c)| c),
        })
    }));
    Ok(Json(serde_json::json!({ "this": api.region, "regions": regions })).into_response())
}

pub async fn links(State(api): State<Api>) -> Result<Response, ApiError> {
    let links = api.replicator.get().map(|r| r.links()).unwrap_or_default();
    Ok(Json(serde_json::json!({ "links": links })).into_response())
}

/// The deployment as this region sees it (regions, links with state and RTT): the web
/// console's topology picture. A region without replication is alone in it.
pub async fn topology(State(api): State<Api>) -> Result<Response, ApiError> {
    let view = match api.replicator.get() {
        Some(r) => r.topology_view(),
        None => replicator::TopologyView {
            this: api.region.clone(),
            regions: vec![replicator::RegionNode {
                name: api.region.clone(),
                this: true,
                pass_through: false,
                reachable: true,
            }],
            links: Vec::new(),
        },
    };
    Ok(Json(view).into_response())
}

/// Lag, throughput (per task and origin) and RPO sampled over the last hour: the web
/// console's charts. Empty without replication.
pub async fn history(State(api): State<Api>) -> Result<Response, ApiError> {
    let (interval, samples) = match api.replicator.get() {
        Some(r) => {
            let (interval, samples) = r.history();
            (Some(interval.as_millis() as u64), samples)
        }
        None => (None, Vec::new()),
    };
    Ok(Json(serde_json::json!({ "interval_ms": interval, "samples": samples })).into_response())
}

pub async fn topics(State(api): State<Api>) -> Result<Response, ApiError> {
    let mut topics = Vec::new();
    let mut configs = api.broker.topics();
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    for config in configs {
        let Ok((config, partitions)) = api.broker.describe(&config.name) else {
            continue;
        };
        let partitions: Vec<_> = partitions
            .iter()
            .enumerate()
            .map(|(index, sub_logs)| {
                let origins: Vec<_> = sub_logs
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "origin": s.origin,
                            "start_offset": s.start_offset,
                            "end_offset": s.durable_end,
                            "bytes": s.bytes,
                        })
                    })
                    .collect();
                serde_json::json!({"partition": index, "origins": origins})
            })
            .collect();
        topics.push(serde_json::json!({
            "name": config.name,
            "partitions": config.partitions,
            "retention": {"max_bytes": config.retention.max_bytes, "max_age_ms": config.retention.max_age_ms},
            "by_partition": partitions,
        }));
    }
    Ok(Json(serde_json::json!({ "topics": topics })).into_response())
}
