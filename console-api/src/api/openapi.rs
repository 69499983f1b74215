//! The OpenAPI 3 document of the API, served at `/api/v1/openapi.json`. `OPERATIONS` is
//! the list the document is made from; a test checks it against the routes the router
//! serves, both ways.

use axum::Json;

/// (method, path, summary, the schema of its body, changes a versioned record (If-Match)).
pub const OPERATIONS: &[(&str, &str, &str, Option<&str>, bool)] = &[
    (
        "get",
        "/api/v1/tasks",
        "List tasks with their status",
        None,
        false,
    ),
    (
        "post",
        "/api/v1/tasks",
        "Create a task",
        Some("TaskSpec"),
        false,
    ),
    (
        "get",
        "/api/v1/tasks/{name}",
        "Read a task (ETag: its version)",
        None,
        false,
    ),
    (
        "put",
        "/api/v1/tasks/{name}",
        "Create or replace a task (idempotent)",
        Some("TaskSpec"),
        true,
    ),
    (
        "delete",
        "/api/v1/tasks/{name}",
        "Delete a task",
        None,
        true,
    ),
    (
        "get",
        "/api/v1/tasks/{name}/status",
        "A task's lag, throughput, checkpoints and last error per sub-log",
        None,
        false,
    ),
    (
        "post",
        "/api/v1/tasks/{name}/pause",
        "Pause a task",
        None,
        true,
    ),
    (
        "post",
        "/api/v1/tasks/{name}/resume",
        "Resume a task",
        None,
        true,
    ),
    (
        "post",
        "/api/v1/tasks/{name}/failover",
        "Promote this region to primary of a DR task: body {\"mode\": \"planned\"|\"forced\", \"timeout_s\": 30}; returns the report with the RPO per origin",
        None,
        false,
    ),
    (
        "post",
        "/api/v1/tasks/{name}/failback",
        "Return a DR task to this region, its first source, by a planned failover: body {\"timeout_s\": 30}",
        None,
        false,
    ),
    (
        "get",
        "/api/v1/regions",
        "Regions and how this one reaches them",
        None,
        false,
    ),
    (
        "get",
        "/api/v1/links",
        "This region's links: state, RTT, bytes",
        None,
        false,
    ),
    (
        "get",
        "/api/v1/history",
        "Lag (records, bytes, seconds) and throughput per task and origin, and the RPO per origin, sampled over the last hour (interval_ms apart)",
        None,
        false,
    ),
    (
        "get",
        "/api/v1/topology",
        "The deployment as this region sees it: regions (this one, pass-through relays, reachable) and every link with its kind, dialler, cost, state and RTT",
        None,
        false,
    ),
    (
        "get",
        "/api/v1/topics",
        "Topics: partitions, per origin offsets and bytes",
        None,
        false,
    ),
    ("get", "/api/v1/openapi.json", "This document", None, false),
    (
        "get",
        "/api/v1/certificates",
        "The node's certificates (replication, TLS) with their expiry, and whether it is within 30 days",
        None,
        false,
    ),
    (
        "get",
        "/api/v1/audit",
        "The last 1000 changes asked of this console: principal, method, path, status, time, address (cluster admin)",
        None,
        false,
    ),
    (
        "get",
        "/api/v1/principals",
        "List principals (without secrets; cluster admin)",
        None,
        false,
    ),
    (
        "post",
        "/api/v1/principals",
        "Create a principal, shared with every region",
        Some("PrincipalSpec"),
        false,
    ),
    (
        "get",
        "/api/v1/principals/{name}",
        "Read a principal (ETag: its version)",
        None,
        false,
    ),
    (
        "put",
        "/api/v1/principals/{name}",
        "Create or replace a principal (idempotent)",
        Some("PrincipalSpec"),
        true,
    ),
    (
        "delete",
        "/api/v1/principals/{name}",
        "Delete a principal",
        None,
        true,
    ),
    (
        "get",
        "/api/v1/groups",
        "List consumer groups' settings",
        None,
        false,
    ),
    (
        "post",
        "/api/v1/groups",
        "Create a consumer group",
        Some("GroupSpec"),
        false,
    ),
    (
        "get",
        "/api/v1/groups/{name}",
        "Read a consumer group (ETag: its version)",
        None,
        false,
    ),
    (
        "put",
        "/api/v1/groups/{name}",
        "Create or replace a consumer group (idempotent)",
        Some("GroupSpec"),
        true,
    ),
    (
        "delete",
        "/api/v1/groups/{name}",
        "Delete a consumer group's settings (it consumes with the defaults again)",
        None,
        true,
    ),
    (
        "get",
        "/api/v1/topics/{name}/messages",
        "Look messages of a topic up by id (identity or message id), key and store time (query: id, key, from, to, limit; needs consume on the topic)",
        None,
        false,
    ),
    (
        "get",
        "/api/v1/topics/{name}/messages/{id}/trace",
        "The life of one message (identity origin-partition-offset) across the regions whose trace reaches this one: produced, replicated, delivered, acknowledged, dead-lettered (needs consume on the topic)",
        None,
        false,
    ),
    (
        "post",
        "/api/v1/groups/{name}/redeliver",
        "Hand one message (its identity) to a RocketMQ consumer group again at its next receive in this region (change on the group)",
        Some("RedeliverRequest"),
        false,
    ),
    (
        "post",
        "/api/v1/groups/{name}/rewind",
        "Move a group's cursor of one partition under a new epoch, in every region it is synced to (cluster admin)",
        Some("RewindRequest"),
        false,
    ),
];

fn error_response(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

pub fn document_value() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, body, versioned) in OPERATIONS {
        let mut op = serde_json::json!({
            "summary": summary,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "401": error_response("No valid bearer token"),
                "403": error_response("A read-only token on a change"),
                "404": error_response("Unknown task or group"),
            },
        });
        let mut parameters = Vec::new();
        if path.contains("{name}") {
            parameters.push(serde_json::json!({
                "name": "name", "in": "path", "required": true, "schema": {"type": "string"}
            }));
        }
        if *versioned {
            parameters.push(serde_json::json!({
                "name": "If-Match", "in": "header", "required": false,
                "description": "The version the change applies to (required when the task or group exists)",
                "schema": {"type": "string"}
            }));
            op["responses"]["409"] = error_response("Stale version");
            op["responses"]["428"] = error_response("If-Match missing");
        }
        if let Some(schema) = body {
            op["requestBody"] = serde_json::json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
            });
            op["responses"]["201"] = serde_json::json!({"description": "Created"});
            op["responses"]["400"] =
                error_response("Malformed JSON or invalid settings (field named)");
            op["responses"]["413"] = error_response("Body too large");
        }
        if path.ends_with("/failover") || path.ends_with("/failback") {
            op["responses"]["409"] =
                error_response("Not a DR task, already primary, or a planned failover timed out");
        }
        if *method == "delete" {
            op["responses"]["204"] = serde_json::json!({"description": "Deleted"});
        }
        if !parameters.is_empty() {
            op["parameters"] = parameters.into();
        }
        let entry = paths
            .entry(path.to_string())
            .or_insert_with(|| serde_json::json!({}));
        entry[*method] = op;
    }
    serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": "georouter console API", "version": "1"},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "object", "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}
                    }, "required": ["code", "message"]}}
                },
                "PrincipalSpec": {
                    "type": "object",
                    "required": ["name", "access_key", "secret"],
                    "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string"},
                        "access_key": {"type": "string"},
                        "secret": {"type": "string", "minLength": auth::principal::MIN_SECRET_LEN, "description": "never shown again"},
                        "grants": {"type": "array", "items": {"type": "object", "required": ["resource", "actions"], "properties": {
                            "resource": {"type": "string", "description": "topic:<glob>, group:<glob>, task:<glob> or cluster"},
                            "actions": {"type": "array", "items": {"type": "string"}}
                        }}}
                    }
                },
                "GroupSpec": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string", "maxLength": broker::catalog::groups::MAX_GROUP_NAME},
                        "fifo": {"type": "boolean", "description": "consume each message group of a FIFO topic in order"},
                        "max_attempts": {"type": "integer", "minimum": 1, "maximum": broker::catalog::groups::MAX_MAX_ATTEMPTS, "description": "deliveries before the dead-letter topic %DLQ%<group>"}
                    }
                },
                "RedeliverRequest": {
                    "type": "object",
                    "required": ["topic", "id"],
                    "additionalProperties": false,
                    "properties": {
                        "topic": {"type": "string"},
                        "id": {"type": "string", "description": "the message's identity, origin-partition-offset"}
                    }
                },
                "RewindRequest": {
                    "type": "object",
                    "required": ["topic", "partition", "next"],
                    "additionalProperties": false,
                    "properties": {
                        "topic": {"type": "string"},
                        "partition": {"type": "integer", "minimum": 0},
                        "next": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}, "description": "origin region -> next offset to read"}
                    }
                },
                "TaskSpec": {
                    "type": "object",
                    "required": ["name", "sources", "targets", "topics"],
                    "additionalProperties": false,
                    "properties": {
                        "name": {"type": "string"},
                        "sources": {"type": "array", "items": {"type": "string"}},
                        "targets": {"type": "array", "items": {"type": "string"}},
                        "topics": {"type": "string", "description": "glob over topic names"},
                        "direction": {"type": "string", "enum": ["one-way", "two-way"]},
                        "rename": {"type": "string", "description": "{topic} is the source name"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "sql": {"type": "string", "maxLength": broker::sql::MAX_EXPRESSION, "description": "a SQL92 filter over the records' properties and tag (with tags: both apply)"},
                        "start": {"type": "string", "description": "earliest, latest or an RFC 3339 time"},
                        "max_records_per_s": {"type": "integer", "minimum": 1},
                        "max_bytes_per_s": {"type": "integer", "minimum": 1},
                        "state": {"type": "string", "enum": ["running", "paused"]},
                        "dr": {
                            "type": "object",
                            "description": "a DR task: only the primary accepts produce; changed by failover",
                            "required": ["primary"],
                            "properties": {
                                "primary": {"type": "string"},
                                "epoch": {"type": "integer", "minimum": 0},
                                "promoting": {"type": "string"}
                            }
                        },
                        "groups": {"type": "string", "description": "glob over consumer groups whose cursors sync among the task's regions"}
                    }
                }
            }
        }
    })
}

pub async fn document() -> Json<serde_json::Value> {
    Json(document_value())
}
