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

/// What names (tasks, groups, topics) may be: 1 to `max` of ASCII letters, digits, '.',
/// '_', '-' and '%', but not "." or ".." (`broker::names`).
pub fn name_pattern(max: usize) -> String {
    let c = "[A-Za-z0-9._%-]";
    let first = "[A-Za-z0-9_%-]";
    format!(
        r"^({first}{c}{{0,{}}}|\.{first}{c}{{0,{}}}|\.\.{c}{{1,{}}})$",
        max - 1,
        max - 2,
        max - 2
    )
}

/// Region names and principals' names and access keys: ASCII letters, digits, '.', '_'
/// and '-'.
pub const WORD_PATTERN: &str = r"^[A-Za-z0-9._-]+$";

/// A message identity: origin-partition-offset.
pub const IDENTITY_PATTERN: &str = r"^[A-Za-z0-9._-]+-[0-9]{1,9}-[0-9]{1,18}$";

/// An operation's id: its method and path, as `put_tasks_name`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .trim_start_matches("/api/v1/")
        .split('/')
        .map(|w| w.trim_matches(|c| c == '{' || c == '}'))
        .collect();
    format!("{method}_{}", words.join("_")).replace(['.', '-'], "_")
}

/// The status codes `method` on `path` answers, besides 401 and 403, with the body
/// schema `body`.
fn responses(method: &str, path: &str, body: Option<&str>, versioned: bool) -> serde_json::Value {
    let ok = |d: &str| serde_json::json!({"description": d, "content": {"application/json": {}}});
    let mut r = serde_json::Map::new();
    r.insert("401".into(), error_response("No valid bearer token"));
    r.insert(
        "403".into(),
        error_response("Not allowed to this principal"),
    );
    let named = path.contains('{');
    if named {
        r.insert(
            "400".into(),
            error_response("A name or identity in the path that is not valid"),
        );
        r.insert(
            "404".into(),
            error_response("No such task, group, principal, topic or message"),
        );
    }
    let collection_create = method == "post" && body.is_some() && !named;
    match method {
        "get" => {
            r.insert("200".into(), ok("OK"));
            if path.contains("/messages") {
                r.insert(
                    "400".into(),
                    error_response("A query parameter that is not valid (named)"),
                );
            }
        }
        "delete" => {
            r.insert("204".into(), serde_json::json!({"description": "Deleted"}));
        }
        "put" => {
            r.insert("200".into(), ok("Replaced (or the same again)"));
            r.insert("201".into(), ok("Created"));
        }
        _ if collection_create => {
            r.insert("201".into(), ok("Created"));
            r.insert("409".into(), error_response("One with this name exists"));
        }
        _ if path.ends_with("/redeliver") => {
            r.insert("202".into(), ok("Handed to the group at its next receive"));
        }
        _ => {
            r.insert("200".into(), ok("OK"));
        }
    }
    if body.is_some() || path.ends_with("/failover") || path.ends_with("/failback") {
        r.insert(
            "400".into(),
            error_response("Malformed JSON or invalid settings (field named)"),
        );
        r.insert("413".into(), error_response("Body too large"));
        r.insert("415".into(), error_response("Not application/json"));
    }
    if versioned {
        r.insert(
            "409".into(),
            error_response("Stale version, or a conflict with the current state"),
        );
        r.insert("428".into(), error_response("If-Match missing"));
    }
    if path.ends_with("/failover") || path.ends_with("/failback") || path.ends_with("/rewind") {
        r.insert("409".into(), error_response("Not a DR task, already primary, a planned failover timed out, or past the end held"));
    }
    serde_json::Value::Object(r)
}

/// The request bodies' schemas, generated from the types the handlers deserialize
/// (schemars: fields, types, which are required, unknown fields refused, defaults, doc
/// comments), then given the constraints their validators enforce that a type does not
/// carry (`constrain`), and the error body.
fn schemas(regions: &[String]) -> serde_json::Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas/".into();
    let mut generator = settings.into_generator();
    generator.subschema_for::<replicator::TaskSpec>();
    generator.subschema_for::<broker::catalog::groups::GroupSpec>();
    generator.subschema_for::<auth::PrincipalSpec>();
    generator.subschema_for::<super::redeliver::RedeliverRequest>();
    generator.subschema_for::<super::rewind::RewindRequest>();
    generator.subschema_for::<super::failover::FailoverRequest>();
    generator.subschema_for::<super::failover::FailbackRequest>();
    let mut defs = serde_json::Value::Object(generator.take_definitions(true));
    bound_integers(&mut defs);
    constrain(&mut defs, regions);
    defs["Error"] = serde_json::json!({
        "type": "object",
        "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}
        }, "required": ["code", "message"]}}
    });
    defs
}

/// Every unsigned integer's largest value, from its format.
fn bound_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            let max = match map.get("format").and_then(|f| f.as_str()) {
                Some("uint8") => Some(u64::from(u8::MAX)),
                Some("uint16") => Some(u64::from(u16::MAX)),
                Some("uint32") => Some(u64::from(u32::MAX)),
                Some("uint64") | Some("uint") => Some(u64::MAX),
                _ => None,
            };
            if let Some(max) = max {
                map.entry("maximum").or_insert(max.into());
            }
            map.values_mut().for_each(bound_integers);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// The validators' rules a type does not carry: name patterns (`broker::names`, the
/// principals' words), identities, the deployment's regions, lengths and ranges.
fn constrain(defs: &mut serde_json::Value, regions: &[String]) {
    let name = name_pattern(broker::names::MAX_NAME_LEN);
    let regions = serde_json::json!(regions);
    let rules: &[(&str, &str, serde_json::Value)] = &[
        ("TaskSpec", "name", serde_json::json!({"pattern": name})),
        (
            "TaskSpec",
            "sources",
            serde_json::json!({"minItems": 1, "items": {"type": "string", "enum": regions}}),
        ),
        (
            "TaskSpec",
            "targets",
            serde_json::json!({"minItems": 1, "items": {"type": "string", "enum": regions}}),
        ),
        ("TaskSpec", "topics", serde_json::json!({"pattern": r"\S"})),
        (
            "TaskSpec",
            "tags",
            serde_json::json!({"items": {"type": "string", "minLength": 1}}),
        ),
        (
            "TaskSpec",
            "sql",
            serde_json::json!({"maxLength": broker::sql::MAX_EXPRESSION}),
        ),
        (
            "TaskSpec",
            "max_records_per_s",
            serde_json::json!({"minimum": 1}),
        ),
        (
            "TaskSpec",
            "max_bytes_per_s",
            serde_json::json!({"minimum": 1}),
        ),
        ("Dr", "primary", serde_json::json!({"enum": regions})),
        (
            "Dr",
            "promoting",
            serde_json::json!({"enum": regions.as_array().unwrap().iter().cloned().chain([serde_json::Value::Null]).collect::<Vec<_>>()}),
        ),
        (
            "GroupSpec",
            "name",
            serde_json::json!({"pattern": name_pattern(broker::catalog::groups::MAX_GROUP_NAME)}),
        ),
        (
            "GroupSpec",
            "max_attempts",
            serde_json::json!({"minimum": 1, "maximum": broker::catalog::groups::MAX_MAX_ATTEMPTS}),
        ),
        (
            "PrincipalSpec",
            "name",
            serde_json::json!({"pattern": WORD_PATTERN}),
        ),
        (
            "PrincipalSpec",
            "access_key",
            serde_json::json!({"pattern": WORD_PATTERN}),
        ),
        (
            "PrincipalSpec",
            "secret",
            serde_json::json!({"pattern": format!(r"^[\x21-\x7e][\x20-\x7e]{{{},}}[\x21-\x7e]$", auth::principal::MIN_SECRET_LEN - 2)}),
        ),
        (
            "GrantSpec",
            "resource",
            serde_json::json!({"pattern": r"^((topic|group|task):\s*\S[\s\S]*|cluster(:\s*\S[\s\S]*)?)$"}),
        ),
        ("GrantSpec", "actions", serde_json::json!({"minItems": 1})),
        (
            "RedeliverRequest",
            "topic",
            serde_json::json!({"pattern": name}),
        ),
        (
            "RedeliverRequest",
            "id",
            serde_json::json!({"pattern": IDENTITY_PATTERN}),
        ),
        (
            "RewindRequest",
            "topic",
            serde_json::json!({"pattern": name}),
        ),
        (
            "RewindRequest",
            "next",
            serde_json::json!({"propertyNames": {"pattern": WORD_PATTERN}}),
        ),
        (
            "FailoverRequest",
            "timeout_s",
            serde_json::json!({"exclusiveMinimum": 0, "maximum": 3600}),
        ),
        (
            "FailbackRequest",
            "timeout_s",
            serde_json::json!({"exclusiveMinimum": 0, "maximum": 3600}),
        ),
    ];
    for (schema, field, extra) in rules {
        let property = defs
            .pointer_mut(&format!("/{schema}/properties/{field}"))
            .and_then(|p| p.as_object_mut())
            .unwrap_or_else(|| panic!("{schema} has no property {field}"));
        for (k, v) in extra.as_object().expect("rules are objects") {
            property.insert(k.clone(), v.clone());
        }
    }
}

/// The document as region `regions[0]`'s console serves it: `regions` are the regions a
/// task may name.
pub fn document_value(regions: &[String]) -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, body, versioned) in OPERATIONS {
        let mut op = serde_json::json!({
            "operationId": operation_id(method, path),
            "summary": summary,
            "responses": responses(method, path, *body, *versioned),
        });
        // What a create makes, the operations on it take by name (for tools that chain
        // calls, as schemathesis's stateful phase does).
        if *method == "post" && body.is_some() && !path.contains('{') {
            let links: serde_json::Map<String, serde_json::Value> = OPERATIONS
                .iter()
                .filter(|(_, p, ..)| {
                    let own = format!("{path}/{{name}}");
                    *p == own
                        || ["/status", "/pause", "/resume"]
                            .iter()
                            .any(|tail| *p == format!("{own}{tail}"))
                })
                .map(|(m, p, ..)| {
                    (
                        operation_id(m, p),
                        serde_json::json!({
                            "operationId": operation_id(m, p),
                            "parameters": {"name": "$response.body#/name"}
                        }),
                    )
                })
                .collect();
            op["responses"]["201"]["links"] = links.into();
        }
        let mut parameters = Vec::new();
        if path.contains("{name}") {
            parameters.push(serde_json::json!({
                "name": "name", "in": "path", "required": true,
                "schema": {"type": "string", "pattern": name_pattern(broker::names::MAX_NAME_LEN)}
            }));
        }
        if path.contains("{id}") {
            parameters.push(serde_json::json!({
                "name": "id", "in": "path", "required": true,
                "description": "a message identity: origin-partition-offset",
                "schema": {"type": "string", "pattern": IDENTITY_PATTERN}
            }));
        }
        if *versioned {
            parameters.push(serde_json::json!({
                "name": "If-Match", "in": "header", "required": false,
                "description": "The version the change applies to (required when the task or group exists)",
                "schema": {"type": "string", "pattern": r#"^(W/)?"?[0-9]{1,19}"?$"#}
            }));
        }
        if let Some(schema) = body {
            op["requestBody"] = serde_json::json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
            });
        }
        if path.ends_with("/failover") || path.ends_with("/failback") {
            let schema = if path.ends_with("/failover") {
                "FailoverRequest"
            } else {
                "FailbackRequest"
            };
            op["requestBody"] = serde_json::json!({
                "required": false,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
            });
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
        "openapi": "3.1.0",
        "info": {"title": "georouter console API", "version": "1"},
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(regions),
        }
    })
}

pub async fn document(
    axum::extract::State(api): axum::extract::State<super::Api>,
) -> Json<serde_json::Value> {
    let regions: Vec<String> = match api.replicator.get() {
        Some(r) => r
            .topology_view()
            .regions
            .into_iter()
            .map(|g| g.name)
            .collect(),
        None => vec![api.region.clone()],
    };
    Json(document_value(&regions))
}
