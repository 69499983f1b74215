//! The console's REST API on two running regions: every route, every error class, auth,
//! versions, and the live effect of pause and resume on replication.

mod support;

use std::time::Duration;

use console_api::client::{ConsoleClient, Method, Response};
use support::*;

const ADMIN: &str = "admin-secret";
const READER: &str = "read-only";

/// Two regions; clients of their consoles with the admin token.
async fn regions() -> (Vec<TestNode>, ConsoleClient, ConsoleClient, Deployment) {
    let deployment = Deployment::new(&["eu", "us"]);
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu", "us"]), &[], |config| {
            config.console.admin_tokens = vec![ADMIN.into()];
            config.console.read_tokens = vec![READER.into()];
        })
        .await;
    let eu = ConsoleClient::new(nodes[0].node.bound.console, Some(ADMIN));
    let us = ConsoleClient::new(nodes[1].node.bound.console, Some(ADMIN));
    (nodes, eu, us, deployment)
}

fn task_json(name: &str, targets: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "name": name, "sources": ["eu"], "targets": targets, "topics": "orders"
    }))
    .unwrap()
}

fn task_spec(name: &str, targets: &[&str]) -> replicator::TaskSpec {
    task(name, &["eu"], targets, "orders")
}

fn json(reply: &Response) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", reply.text()))
}

fn error_code(reply: &Response) -> String {
    json(reply)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `method path` as `token` (none: no Authorization header), with `headers` and `body`.
async fn send(
    console: &ConsoleClient,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Response {
    console
        .with_token(token)
        .raw(method, path, headers, body)
        .await
        .unwrap()
}

async fn get(console: &ConsoleClient, path: &str, token: Option<&str>) -> Response {
    send(console, Method::GET, path, token, &[], None).await
}

async fn post(
    console: &ConsoleClient,
    path: &str,
    version: Option<&str>,
    body: Option<Vec<u8>>,
) -> Response {
    let headers: Vec<(&str, &str)> = version.map(|v| ("if-match", v)).into_iter().collect();
    send(console, Method::POST, path, Some(ADMIN), &headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tokens_guard_the_api_but_not_health_or_metrics() {
    let (nodes, eu, _, _certs) = regions().await;
    let anonymous = eu.with_token(None);
    assert_eq!(anonymous.tasks().await.unwrap_err().status(), Some(401));
    let wrong = eu.with_token(Some("wrong"));
    assert_eq!(wrong.tasks().await.unwrap_err().status(), Some(401));
    assert_eq!(
        anonymous.replication().await.unwrap_err().status(),
        Some(401)
    );
    assert_eq!(get(&eu, "/api/v1/tasks", Some(READER)).await.status, 200);
    let refused = eu
        .with_token(Some(READER))
        .create_task(&task_spec("t", &["us"]))
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(403), Some("FORBIDDEN"))
    );
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(&eu, open, None).await.status, 200, "{open}");
    }
    assert!(anonymous.healthy().await.unwrap());
    assert!(anonymous.ready().await.unwrap());
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_managed_with_versions_and_errors_name_the_problem() {
    let (nodes, eu, us, _certs) = regions().await;
    let created = post(
        &eu,
        "/api/v1/tasks",
        None,
        Some(task_json("orders-dr", &["us"])),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.etag(), Some("\"1\""));
    assert_eq!(json(&created)["spec"]["targets"], serde_json::json!(["us"]));

    let again = post(
        &eu,
        "/api/v1/tasks",
        None,
        Some(task_json("orders-dr", &["us"])),
    )
    .await;
    assert_eq!(
        (again.status, error_code(&again).as_str()),
        (409, "TASK_EXISTS")
    );
    let invalid = post(
        &eu,
        "/api/v1/tasks",
        None,
        Some(task_json("bad", &["mars"])),
    )
    .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(json(&invalid)["error"]["field"], "targets");
    assert!(
        invalid.text().contains("unknown region"),
        "{}",
        invalid.text()
    );
    let malformed = post(&eu, "/api/v1/tasks", None, Some(b"{\"name\": ".to_vec())).await;
    assert_eq!(
        (malformed.status, error_code(&malformed).as_str()),
        (400, "MALFORMED_JSON")
    );
    let unknown_field = post(
        &eu,
        "/api/v1/tasks",
        None,
        Some(
            br#"{"name":"x","sources":["eu"],"targets":["us"],"topics":"o","colour":"red"}"#
                .to_vec(),
        ),
    )
    .await;
    assert_eq!(unknown_field.status, 400, "{}", unknown_field.text());
    let huge = post(&eu, "/api/v1/tasks", None, Some(vec![b' '; 100 << 10])).await;
    assert_eq!(
        (huge.status, error_code(&huge).as_str()),
        (413, "BODY_TOO_LARGE")
    );
    let missing = get(&eu, "/api/v1/tasks/nope", Some(READER)).await;
    assert_eq!(
        (missing.status, error_code(&missing).as_str()),
        (404, "NOT_FOUND")
    );

    // Replace: the version is required and checked; the same spec again changes nothing.
    let mut spec: serde_json::Value =
        serde_json::from_slice(&task_json("orders-dr", &["us"])).unwrap();
    spec["max_records_per_s"] = 1000.into();
    let body = serde_json::to_vec(&spec).unwrap();
    let put = |version: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = version.map(|v| ("if-match", v)).into_iter().collect();
        let body = body.clone();
        let eu = &eu;
        async move {
            send(
                eu,
                Method::PUT,
                "/api/v1/tasks/orders-dr",
                Some(ADMIN),
                &headers,
                Some(body),
            )
            .await
        }
    };
    let no_version = put(None).await;
    assert_eq!(
        (no_version.status, error_code(&no_version).as_str()),
        (428, "VERSION_REQUIRED")
    );
    let stale = put(Some("\"7\"")).await;
    assert_eq!(
        (stale.status, error_code(&stale).as_str()),
        (409, "VERSION_CONFLICT")
    );
    let replaced = put(Some("\"1\"")).await;
    assert_eq!((replaced.status, replaced.etag()), (200, Some("\"2\"")));
    let same = put(Some("\"2\"")).await;
    assert_eq!(
        (same.status, same.etag()),
        (200, Some("\"2\"")),
        "idempotent"
    );
    let replayed = put(Some("\"1\"")).await;
    assert_eq!(
        replayed.status, 409,
        "a stale version is refused even for the same spec"
    );
    let renamed = send(
        &eu,
        Method::PUT,
        "/api/v1/tasks/other",
        Some(ADMIN),
        &[],
        Some(task_json("orders-dr", &["us"])),
    )
    .await;
    assert_eq!(json(&renamed)["error"]["field"], "name");

    // Known in the other region, with its status.
    let us_reader = us.with_token(Some(READER));
    eventually("us to list the task at version 2", || async {
        let listed = us_reader.tasks().await.unwrap();
        listed.len() == 1 && listed[0].version == 2
    })
    .await;
    let status = get(&us, "/api/v1/tasks/orders-dr/status", Some(READER)).await;
    assert_eq!(status.status, 200);
    assert!(json(&status)["sub_logs"].is_array());
    // The same, typed.
    us_reader.task_status("orders-dr").await.unwrap();

    // Pause and resume need the version too.
    let unversioned = post(&eu, "/api/v1/tasks/orders-dr/pause", None, None).await;
    assert_eq!(unversioned.status, 428);
    let paused = post(&eu, "/api/v1/tasks/orders-dr/pause", Some("\"2\""), None).await;
    assert_eq!(
        (paused.status, json(&paused)["state"].as_str()),
        (200, Some("paused"))
    );
    let retried = post(&eu, "/api/v1/tasks/orders-dr/pause", Some("\"2\""), None).await;
    assert_eq!(
        (retried.status, retried.etag()),
        (200, Some("\"3\"")),
        "a retried pause changes nothing"
    );
    eventually("us to see the pause", || async {
        get(&us, "/api/v1/tasks/orders-dr", Some(READER))
            .await
            .etag()
            == Some("\"3\"")
    })
    .await;
    let stale = post(&us, "/api/v1/tasks/orders-dr/resume", Some("\"2\""), None).await;
    assert_eq!(stale.status, 409, "a stale version from the other console");
    let resumed = post(&us, "/api/v1/tasks/orders-dr/resume", Some("\"3\""), None).await;
    assert_eq!(
        (resumed.status, json(&resumed)["state"].as_str()),
        (200, Some("running"))
    );
    eventually("eu to see the resume", || async {
        get(&eu, "/api/v1/tasks/orders-dr", Some(READER))
            .await
            .etag()
            == Some("\"4\"")
    })
    .await;

    // Delete.
    let deleted = send(
        &eu,
        Method::DELETE,
        "/api/v1/tasks/orders-dr",
        Some(ADMIN),
        &[("if-match", "\"4\"")],
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(
        get(&eu, "/api/v1/tasks/orders-dr", Some(READER))
            .await
            .status,
        404
    );
    let gone = eu.task("orders-dr").await.unwrap_err();
    assert_eq!((gone.status(), gone.code()), (Some(404), Some("NOT_FOUND")));
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_shipping_and_resume_catches_up_exactly() {
    let (nodes, eu_http, _, _certs) = regions().await;
    let (eu, us) = (&nodes[0], &nodes[1]);
    create_if_missing(eu, "orders", 1).await;
    produce(eu, "orders", 0, "eu", 100, 10).await;
    let created = post(
        &eu_http,
        "/api/v1/tasks",
        None,
        Some(task_json("dr", &["us"])),
    )
    .await;
    assert_eq!(created.status, 201);
    eventually("us to catch up", || async {
        held_end(&us.node, "orders", 0, "eu") == 100
    })
    .await;

    let paused = post(&eu_http, "/api/v1/tasks/dr/pause", Some("\"1\""), None).await;
    assert_eq!(paused.status, 200);
    produce(eu, "orders", 0, "eu", 60, 10).await;
    // A pause holds: nothing more arrives over a window longer than the one second a
    // pause may take to reach the source.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        held_end(&us.node, "orders", 0, "eu"),
        100,
        "shipped while paused"
    );

    let resumed = post(&eu_http, "/api/v1/tasks/dr/resume", Some("\"2\""), None).await;
    assert_eq!(resumed.status, 200);
    eventually("us to catch up after the resume", || async {
        held_end(&us.node, "orders", 0, "eu") == 160
    })
    .await;
    let records = all_records(&us.client, "orders").await;
    let offsets: Vec<u64> = records.iter().map(|r| r.2).collect();
    assert_eq!(
        offsets,
        (0..160).collect::<Vec<u64>>(),
        "0 lost, 0 duplicated"
    );
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_links_topics_and_the_openapi_document_match_the_routes() {
    let (nodes, eu, _, _certs) = regions().await;
    create_if_missing(&nodes[0], "orders", 2).await;
    produce(&nodes[0], "orders", 1, "eu", 5, 5).await;
    let reader = eu.with_token(Some(READER));
    eventually("the link to be up", || async {
        reader.links().await.unwrap().first().is_some_and(|l| l.up)
    })
    .await;
    let regions = reader.regions().await.unwrap();
    assert_eq!(regions.this, "eu");
    assert_eq!(regions.regions[1].name, "us");
    let topics = reader.topics().await.unwrap();
    assert_eq!(topics[0].partitions, 2);
    assert_eq!(topics[0].by_partition[1].origins[0].end_offset, 5);
    let replication = reader.replication().await.unwrap();
    assert_eq!(replication.links[0].peer, "us");
    // The test deployment's certificates are valid for 30 days.
    let certificates = json(&get(&eu, "/api/v1/certificates", Some(READER)).await);
    let replication_cert = &certificates["certificates"][0];
    assert_eq!(replication_cert["name"], "replication");
    assert!(
        (29..=30).contains(&replication_cert["expires_in_days"].as_i64().unwrap()),
        "{certificates}"
    );
    let metrics = reader.metrics().await.unwrap();
    assert!(
        metrics.contains("georouter_certificate_expiry_seconds{certificate=\"replication\"}"),
        "{metrics}"
    );

    // Every documented operation is served (an unknown route would be a bare 404, a
    // wrong method 405), and the document lists exactly the API's routes.
    let document = reader.openapi().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let mut documented = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path.replace("{name}", "no-such-task");
            let method: Method = method.to_uppercase().parse().unwrap();
            let reply = send(&eu, method.clone(), &concrete, Some(ADMIN), &[], None).await;
            assert_ne!(reply.status, 405, "{method} {path}");
            assert!(
                reply.status != 404 || reply.text().contains("\"error\""),
                "{method} {path} is documented but not routed"
            );
        }
    }
    documented.sort();
    let mut routes = vec![
        "GET /api/v1/tasks",
        "POST /api/v1/tasks",
        "GET /api/v1/tasks/{name}",
        "PUT /api/v1/tasks/{name}",
        "DELETE /api/v1/tasks/{name}",
        "GET /api/v1/tasks/{name}/status",
        "POST /api/v1/tasks/{name}/pause",
        "POST /api/v1/tasks/{name}/resume",
        "POST /api/v1/tasks/{name}/failover",
        "POST /api/v1/tasks/{name}/failback",
        "GET /api/v1/regions",
        "GET /api/v1/links",
        "GET /api/v1/topology",
        "GET /api/v1/history",
        "GET /api/v1/topics",
        "GET /api/v1/topics/{name}/messages",
        "GET /api/v1/topics/{name}/messages/{id}/trace",
        "GET /api/v1/openapi.json",
        "GET /api/v1/groups",
        "POST /api/v1/groups",
        "GET /api/v1/groups/{name}",
        "PUT /api/v1/groups/{name}",
        "DELETE /api/v1/groups/{name}",
        "POST /api/v1/groups/{name}/rewind",
        "POST /api/v1/groups/{name}/redeliver",
        "GET /api/v1/audit",
        "GET /api/v1/certificates",
        "GET /api/v1/principals",
        "POST /api/v1/principals",
        "GET /api/v1/principals/{name}",
        "PUT /api/v1/principals/{name}",
        "DELETE /api/v1/principals/{name}",
    ];
    routes.sort();
    assert_eq!(documented, routes);
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_are_versioned_like_tasks_and_spread_to_every_region() {
    use broker::catalog::GroupSpec;
    let (nodes, eu, us, _certs) = regions().await;
    let spec = |max_attempts| GroupSpec {
        name: "billing".into(),
        fifo: true,
        max_attempts,
    };
    let made = eu.create_group(&spec(5)).await.unwrap();
    assert_eq!((made.version, made.changed_by.as_str()), (1, "eu"));
    let again = eu.create_group(&spec(5)).await.unwrap_err();
    assert_eq!(again.code(), Some("GROUP_EXISTS"));
    let body = br#"{"name": "audit", "max_attempts": 0}"#.to_vec();
    let invalid = post(&eu, "/api/v1/groups", None, Some(body)).await;
    assert_eq!(invalid.status, 400);
    assert_eq!(error_code(&invalid), "INVALID_GROUP");
    assert_eq!(json(&invalid)["error"]["field"], "max_attempts");
    let unknown = post(
        &eu,
        "/api/v1/groups",
        None,
        Some(br#"{"name": "x", "colour": 1}"#.to_vec()),
    )
    .await;
    assert_eq!(error_code(&unknown), "MALFORMED_JSON", "{}", unknown.text());

    eventually("us to hold eu's group", || async {
        us.group("billing").await.is_ok_and(|g| g == made)
    })
    .await;
    // A change in us needs the version it read, and comes back to eu.
    let unversioned = us.put_group(&spec(7), None).await.unwrap_err();
    assert_eq!(unversioned.code(), Some("VERSION_REQUIRED"));
    let stale = us.put_group(&spec(7), Some(9)).await.unwrap_err();
    assert_eq!(stale.code(), Some("VERSION_CONFLICT"));
    let changed = us.put_group(&spec(7), Some(1)).await.unwrap();
    assert_eq!((changed.version, changed.changed_by.as_str()), (2, "us"));
    eventually("eu to hold us's change", || async {
        eu.group("billing").await.is_ok_and(|g| g.max_attempts == 7)
    })
    .await;
    eu.delete_group("billing", 2).await.unwrap();
    eventually("the deletion to reach us", || async {
        us.group("billing")
            .await
            .is_err_and(|e| e.status() == Some(404))
    })
    .await;
    assert!(us.groups().await.unwrap().is_empty());
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_use_the_console_within_their_grants() {
    use auth::{Action, GrantSpec, PrincipalSpec};
    let deployment = Deployment::new(&["eu"]);
    let grant = |resource: &str, actions: &[Action]| GrantSpec {
        resource: resource.into(),
        actions: actions.to_vec(),
    };
    let nodes = deployment
        .start_topology(TopologySpec::mesh(&["eu"]), &[], |config| {
            config.console.admin_tokens = vec![ADMIN.into()];
            config.auth.principals = vec![PrincipalSpec {
                name: "groups-operator".into(),
                access_key: "ops".into(),
                secret: "ops-secret-1234".into(),
                grants: vec![
                    grant("task:*", &[Action::Read]),
                    grant("group:billing*", &[Action::Read, Action::Change]),
                ],
            }];
        })
        .await;
    let ops = ConsoleClient::new(nodes[0].node.bound.console, Some("ops:ops-secret-1234"));
    assert!(
        ops.tasks().await.unwrap().is_empty(),
        "reads with its grant"
    );
    let group = |name: &str| broker::catalog::GroupSpec {
        name: name.into(),
        fifo: false,
        max_attempts: 3,
    };
    ops.create_group(&group("billing")).await.unwrap();
    let other = ops.create_group(&group("audit")).await.unwrap_err();
    assert_eq!(other.code(), Some("FORBIDDEN"));
    assert!(
        other
            .to_string()
            .contains("groups-operator may not change group:audit"),
        "{other}"
    );
    let task = ops.create_task(&task_spec("t", &["eu"])).await.unwrap_err();
    assert_eq!(task.code(), Some("FORBIDDEN"));
    let wrong = ConsoleClient::new(nodes[0].node.bound.console, Some("ops:wrong-secret"));
    assert_eq!(wrong.tasks().await.unwrap_err().status(), Some(401));
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_name_is_refused_and_every_answer_carries_security_headers() {
    let (nodes, eu, _, _certs) = regions().await;
    let rebound = send(
        &eu,
        Method::GET,
        "/api/v1/tasks",
        Some(ADMIN),
        &[("host", "attacker.example:7300")],
        None,
    )
    .await;
    assert_eq!(rebound.status, 421, "{}", rebound.text());
    assert_eq!(error_code(&rebound), "HOST_NOT_ALLOWED");
    let probe = send(
        &eu,
        Method::GET,
        "/healthz",
        None,
        &[("host", "lb.internal")],
        None,
    )
    .await;
    assert_eq!(probe.status, 200, "probes answer any Host");

    let page = send(&eu, Method::GET, "/", None, &[], None).await;
    let api = get(&eu, "/api/v1/tasks", Some(ADMIN)).await;
    for reply in [&page, &api] {
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        assert_eq!(reply.headers["x-frame-options"], "DENY");
        assert!(reply.headers.contains_key("content-security-policy"));
        assert!(!reply.headers.contains_key("access-control-allow-origin"));
    }
    assert_eq!(api.headers["cache-control"], "no-store");
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_made_in_one_region_signs_in_everywhere_until_deleted() {
    let (nodes, eu, us, _certs) = regions().await;
    let body = serde_json::json!({
        "name": "shop", "access_key": "shop-ak", "secret": "shop-secret-123",
        "grants": [{"resource": "topic:shop.*", "actions": ["produce", "describe"]}]
    });
    let made = post(
        &eu,
        "/api/v1/principals",
        None,
        Some(serde_json::to_vec(&body).unwrap()),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.text());
    assert!(!made.text().contains("shop-secret-123"), "never shown");
    let reader = get(&eu, "/api/v1/principals", Some(READER)).await;
    assert_eq!(reader.status, 403, "principals are the cluster admin's");

    // us learns it from eu and lets it sign in: its gRPC API checks presented credentials.
    let us_grpc = nodes[1].node.bound.grpc.to_string();
    let signs_in = |secret: &'static str| {
        let address = us_grpc.clone();
        async move {
            let credential = format!("shop-ak:{secret}");
            let client = client::Client::connect_as(&address, Some(&credential))
                .await
                .unwrap();
            client.describe_topic("shop.orders").await
        }
    };
    eventually("us to know the principal", || async {
        !matches!(signs_in("shop-secret-123").await, Err(e) if e.code() == Some("unauthenticated"))
    })
    .await;
    let listed = json(&get(&us, "/api/v1/principals", Some(ADMIN)).await);
    assert_eq!(listed["principals"][0]["access_key"], "shop-ak");
    let wrong = signs_in("wrong-secret-12").await.unwrap_err();
    assert_eq!(wrong.code(), Some("unauthenticated"));

    let deleted = send(
        &eu,
        Method::DELETE,
        "/api/v1/principals/shop",
        Some(ADMIN),
        &[("if-match", "\"1\"")],
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());

    // eu's audit log holds both changes: who, what, the answer and from where.
    let audit = json(&get(&eu, "/api/v1/audit", Some(ADMIN)).await);
    let entries: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}",
                e["principal"], e["method"], e["path"], e["status"]
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            r#""console-admin-0" "POST" "/api/v1/principals" 201"#,
            r#""console-admin-0" "DELETE" "/api/v1/principals/shop" 204"#,
        ]
    );
    assert!(
        audit["entries"][0]["from"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let file = nodes[0].node.config.region.data_dir.join("audit.log");
    assert_eq!(
        std::fs::read_to_string(file).unwrap().lines().count(),
        2,
        "kept on disk"
    );
    assert_eq!(get(&eu, "/api/v1/audit", Some(READER)).await.status, 403);

    eventually("us to forget the principal", || async {
        matches!(signs_in("shop-secret-123").await, Err(e) if e.code() == Some("unauthenticated"))
    })
    .await;
    for node in nodes {
        node.node.shut_down().await.unwrap();
    }
}
