//! The RocketMQ access point's answers on the wire, from a client of the protocol: routes
//! name this region's origin as a writable broker, bad sends are refused with the
//! protocol's codes and a message saying what was wrong, receipt handles are checked (a
//! changed invisibility makes the old one stale), bad receives are refused, and RPCs not
//! served yet answer `NOT_IMPLEMENTED` at once.

mod support;

use proto::rocketmq::v2 as pb;
use proto::rocketmq::v2::messaging_service_client::MessagingServiceClient;

type Client = MessagingServiceClient<tonic::transport::Channel>;

fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

fn code(status: &Option<pb::Status>) -> pb::Code {
    pb::Code::try_from(status.as_ref().expect("a status").code).expect("a known code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_refusals_and_rpcs_not_served_yet() {
    let node = support::start("eu").await;
    node.client.create_topic("orders", 2, None).await.unwrap();
    let mut client = access_point(&node).await;

    let route = client
        .query_route(pb::QueryRouteRequest {
            topic: resource("orders"),
            endpoints: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&route.status), pb::Code::Ok);
    assert_eq!(route.message_queues.len(), 2);
    for queue in &route.message_queues {
        let broker = queue.broker.as_ref().unwrap();
        assert_eq!(broker.name, "eu");
        assert_eq!(queue.permission, pb::Permission::ReadWrite as i32);
        let address = &broker.endpoints.as_ref().unwrap().addresses[0];
        assert_eq!(address.port, i32::from(node.node.bound.rocketmq.port()));
    }

    let missing = client
        .query_route(pb::QueryRouteRequest {
            topic: resource("nope"),
            endpoints: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&missing.status), pb::Code::TopicNotFound);
    assert!(missing.status.unwrap().message.contains("nope"));

    let forged = pb::Message {
        topic: resource("orders"),
        user_properties: [("mq:message_id".to_string(), "x".to_string())].into(),
        system_properties: Some(pb::SystemProperties {
            message_id: "01AA".into(),
            message_type: pb::MessageType::Normal as i32,
            ..Default::default()
        }),
        body: b"body".to_vec(),
    };
    let refused = client
        .send_message(pb::SendMessageRequest {
            messages: vec![forged],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&refused.status), pb::Code::IllegalMessagePropertyKey);
    assert!(refused.status.unwrap().message.contains("mq:message_id"));
    let stored = node
        .client
        .fetch_all("orders", client::earliest(), vec![])
        .await
        .unwrap();
    assert!(stored.records.is_empty(), "a refused send stores nothing");

    // A message to consume: receive it, change its invisibility, and the old handle is
    // stale while the new one acknowledges it.
    node.client
        .produce(
            "orders",
            vec![support::record("one")],
            client::Partitioning::Partition(1),
        )
        .await
        .unwrap();
    let group = resource("billing");
    let queue = pb::MessageQueue {
        topic: resource("orders"),
        id: 1,
        ..Default::default()
    };
    let receive = |filter: pb::FilterExpression, invisible: i64| pb::ReceiveMessageRequest {
        group: group.clone(),
        message_queue: Some(queue.clone()),
        filter_expression: Some(filter),
        batch_size: 8,
        invisible_duration: Some(prost_types::Duration {
            seconds: invisible,
            nanos: 0,
        }),
        ..Default::default()
    };
    let all = pb::FilterExpression {
        r#type: pb::FilterType::Tag as i32,
        expression: "*".into(),
    };
    let answers = receive_all(&mut client, receive(all.clone(), 30)).await;
    assert_eq!(answer_status(&answers[0]), pb::Code::Ok);
    assert!(
        matches!(
            answers[1].content,
            Some(pb::receive_message_response::Content::DeliveryTimestamp(_))
        ),
        "when it was handed out, before the messages"
    );
    let message = messages(&answers).remove(0);
    assert_eq!(message.body, b"one");
    let system = message.system_properties.unwrap();
    assert_eq!((system.queue_id, system.queue_offset), (1, Some(0)));
    let old = system.receipt_handle.unwrap();
    let changed = client
        .change_invisible_duration(pb::ChangeInvisibleDurationRequest {
            group: group.clone(),
            topic: resource("orders"),
            receipt_handle: old.clone(),
            invisible_duration: Some(prost_types::Duration {
                seconds: 60,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&changed.status), pb::Code::Ok);
    assert_ne!(changed.receipt_handle, old);
    let ack = |handle: &str| pb::AckMessageRequest {
        group: group.clone(),
        topic: resource("orders"),
        entries: vec![pb::AckMessageEntry {
            message_id: system.message_id.clone(),
            receipt_handle: handle.into(),
            lite_topic: None,
        }],
    };
    let stale = client.ack_message(ack(&old)).await.unwrap().into_inner();
    assert_eq!(code(&stale.status), pb::Code::InvalidReceiptHandle);
    assert!(stale.status.unwrap().message.contains("stale"));
    let garbage = client
        .ack_message(ack("nonsense"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&garbage.status), pb::Code::InvalidReceiptHandle);
    let acked = client
        .ack_message(ack(&changed.receipt_handle))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&acked.status), pb::Code::Ok);
    let nothing = receive_all(&mut client, receive(all.clone(), 30)).await;
    assert_eq!(answer_status(&nothing[0]), pb::Code::MessageNotFound);

    let sql = pb::FilterExpression {
        r#type: pb::FilterType::Sql as i32,
        expression: "a > 'x'".into(),
    };
    let refused = receive_all(&mut client, receive(sql, 30)).await;
    assert_eq!(
        answer_status(&refused[0]),
        pb::Code::IllegalFilterExpression
    );
    let refused = receive_all(&mut client, receive(all, 0)).await;
    assert_eq!(answer_status(&refused[0]), pb::Code::IllegalInvisibleTime);

    let assignment = client
        .query_assignment(pb::QueryAssignmentRequest {
            topic: resource("orders"),
            group: group.clone(),
            endpoints: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&assignment.status), pb::Code::Ok);
    assert_eq!(
        assignment.assignments.len(),
        2,
        "every queue to every consumer"
    );
    // An unknown transaction id is refused, naming it.
    let transaction = client
        .end_transaction(pb::EndTransactionRequest {
            topic: resource("orders"),
            transaction_id: "nonsense".into(),
            resolution: pb::TransactionResolution::Commit as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&transaction.status), pb::Code::InvalidTransactionId);
    assert!(transaction.status.unwrap().message.contains("\"nonsense\""));
    let mut pull = client
        .pull_message(pb::PullMessageRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = pull.message().await.unwrap().expect("one answer");
    let Some(pb::pull_message_response::Content::Status(status)) = first.content else {
        panic!("a status")
    };
    assert_eq!(status.code, pb::Code::NotImplemented as i32);
    assert!(
        pull.message().await.unwrap().is_none(),
        "and the stream ends"
    );
}

async fn receive_all(
    client: &mut MessagingServiceClient<tonic::transport::Channel>,
    request: impl tonic::IntoRequest<pb::ReceiveMessageRequest>,
) -> Vec<pb::ReceiveMessageResponse> {
    let mut stream = client.receive_message(request).await.unwrap().into_inner();
    let mut answers = Vec::new();
    while let Some(answer) = stream.message().await.unwrap() {
        answers.push(answer);
    }
    answers
}

fn answer_status(answer: &pb::ReceiveMessageResponse) -> pb::Code {
    match &answer.content {
        Some(pb::receive_message_response::Content::Status(s)) => {
            pb::Code::try_from(s.code).expect("a known code")
        }
        other => panic!("expected a status, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_never_acknowledged_moves_to_the_dead_letter_topic_after_the_last_attempt() {
    // The region's default is 16 attempts; the group was created with 2.
    let (node, mut client) = one_message(16, "poison").await;
    support::create_group(&node, "billing", false, 2).await;
    let receive = pb::ReceiveMessageRequest {
        group: resource("billing"),
        message_queue: Some(pb::MessageQueue {
            topic: resource("orders"),
            ..Default::default()
        }),
        batch_size: 1,
        invisible_duration: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        // Long enough to see the invisibility end.
        long_polling_timeout: Some(prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        ..Default::default()
    };
    for attempt in 1..=2 {
        let answers = receive_all(&mut client, receive.clone()).await;
        let m = messages(&answers).remove(0);
        assert_eq!(m.system_properties.unwrap().delivery_attempt, Some(attempt));
    }
    let mut last = receive;
    last.long_polling_timeout = Some(prost_types::Duration {
        seconds: 3,
        nanos: 0,
    });
    let answers = receive_all(&mut client, last).await;
    assert_eq!(
        answer_status(&answers[0]),
        pb::Code::MessageNotFound,
        "{answers:?}"
    );
    let dead = node
        .client
        .fetch_all("%DLQ%billing", client::earliest(), vec![])
        .await
        .unwrap();
    assert_eq!(support::bodies(&dead.records), ["poison"]);
}

fn messages(answers: &[pb::ReceiveMessageResponse]) -> Vec<pb::Message> {
    answers
        .iter()
        .filter_map(|a| match &a.content {
            Some(pb::receive_message_response::Content::Message(m)) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_group_receives_each_message_group_of_a_fifo_topic_in_order_one_at_a_time() {
    let node = support::start("eu").await;
    node.client
        .create_topic_of("ledger", 1, None, "fifo")
        .await
        .unwrap();
    let mut client = access_point(&node).await;
    let route = client
        .query_route(pb::QueryRouteRequest {
            topic: resource("ledger"),
            endpoints: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        route.message_queues[0].accept_message_types,
        [pb::MessageType::Fifo as i32]
    );
    for (i, (body, group)) in [("a1", "g1"), ("b1", "g2"), ("a2", "g1")]
        .iter()
        .enumerate()
    {
        let message = pb::Message {
            topic: resource("ledger"),
            user_properties: Default::default(),
            system_properties: Some(pb::SystemProperties {
                message_id: format!("{i:034X}"),
                message_type: pb::MessageType::Fifo as i32,
                message_group: Some(group.to_string()),
                ..Default::default()
            }),
            body: body.as_bytes().to_vec(),
        };
        let sent = client
            .send_message(pb::SendMessageRequest {
                messages: vec![message],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&sent.status), pb::Code::Ok);
    }
    let receive = pb::ReceiveMessageRequest {
        group: resource("posting"),
        message_queue: Some(pb::MessageQueue {
            topic: resource("ledger"),
            ..Default::default()
        }),
        batch_size: 10,
        invisible_duration: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        ..Default::default()
    };
    let bodies = |answers: &[pb::ReceiveMessageResponse]| -> Vec<String> {
        messages(answers)
            .into_iter()
            .map(|m| String::from_utf8(m.body).unwrap())
            .collect()
    };
    // A group that is not FIFO consumes the same messages concurrently.
    let concurrent = pb::ReceiveMessageRequest {
        group: resource("audit"),
        ..receive.clone()
    };
    assert_eq!(
        bodies(&receive_all(&mut client, concurrent).await),
        ["a1", "b1", "a2"]
    );
    support::create_group(&node, "posting", true, 16).await;
    let first = receive_all(&mut client, receive.clone()).await;
    assert_eq!(
        bodies(&first),
        ["a1", "b1"],
        "one message per group at a time"
    );
    let a1 = messages(&first).remove(0).system_properties.unwrap();
    assert_eq!(a1.message_group.as_deref(), Some("g1"));
    assert_eq!(a1.message_type, pb::MessageType::Fifo as i32);
    let waiting = receive_all(&mut client, receive.clone()).await;
    assert_eq!(
        answer_status(&waiting[0]),
        pb::Code::MessageNotFound,
        "a2 waits for a1"
    );
    let acked = client
        .ack_message(pb::AckMessageRequest {
            group: resource("posting"),
            topic: resource("ledger"),
            entries: vec![pb::AckMessageEntry {
                message_id: a1.message_id,
                receipt_handle: a1.receipt_handle.unwrap(),
                lite_topic: None,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&acked.status), pb::Code::Ok);
    let next = receive_all(&mut client, receive).await;
    assert_eq!(bodies(&next), ["a2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_forwards_a_message_to_the_dead_letter_topic() {
    let (node, mut client) = one_message(16, "hopeless").await;
    let receive = pb::ReceiveMessageRequest {
        group: resource("billing"),
        message_queue: Some(pb::MessageQueue {
            topic: resource("orders"),
            ..Default::default()
        }),
        batch_size: 1,
        invisible_duration: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let answers = receive_all(&mut client, receive.clone()).await;
    let handle = messages(&answers)
        .remove(0)
        .system_properties
        .unwrap()
        .receipt_handle
        .unwrap();
    let forward = |handle: &str| pb::ForwardMessageToDeadLetterQueueRequest {
        group: resource("billing"),
        topic: resource("orders"),
        receipt_handle: handle.into(),
        ..Default::default()
    };
    let forwarded = client
        .forward_message_to_dead_letter_queue(forward(&handle))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&forwarded.status), pb::Code::Ok);
    let again = client
        .forward_message_to_dead_letter_queue(forward(&handle))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        code(&again.status),
        pb::Code::InvalidReceiptHandle,
        "done already"
    );
    let dead = node
        .client
        .fetch_all("%DLQ%billing", client::earliest(), vec![])
        .await
        .unwrap();
    assert_eq!(support::bodies(&dead.records), ["hopeless"]);
    // The group is done with it: it does not come back after its invisibility.
    let mut later = receive;
    later.long_polling_timeout = Some(prost_types::Duration {
        seconds: 2,
        nanos: 0,
    });
    let answers = receive_all(&mut client, later).await;
    assert_eq!(answer_status(&answers[0]), pb::Code::MessageNotFound);
}

/// A region whose groups get `max_attempts` deliveries, with one message (`body`) in
/// partition 0 of topic `orders`, and a client of its access point.
async fn one_message(max_attempts: u32, body: &str) -> (support::TestNode, Client) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::node_config("eu", dir.path());
    config.rocketmq.max_attempts = max_attempts;
    let node = support::start_with(config, dir).await;
    node.client.create_topic("orders", 1, None).await.unwrap();
    node.client
        .produce(
            "orders",
            vec![support::record(body)],
            client::Partitioning::Partition(0),
        )
        .await
        .unwrap();
    let client = access_point(&node).await;
    (node, client)
}

/// A client of `node`'s RocketMQ access point.
async fn access_point(node: &support::TestNode) -> Client {
    Client::connect(format!("http://{}", node.node.bound.rocketmq))
        .await
        .unwrap()
}

/// `body` as a request from client instance `client_id`.
fn from_client<T>(client_id: &str, body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("x-mq-client-id", client_id.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_renews_a_push_consumers_invisibility_until_the_client_leaves() {
    let (_node, mut client) = one_message(16, "held").await;
    let seconds = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
    let push = pb::ReceiveMessageRequest {
        group: resource("billing"),
        message_queue: Some(pb::MessageQueue {
            topic: resource("orders"),
            ..Default::default()
        }),
        batch_size: 1,
        invisible_duration: seconds(1),
        auto_renew: true,
        ..Default::default()
    };
    let first = receive_all(&mut client, from_client("push-1", push.clone())).await;
    let held = messages(&first).remove(0).system_properties.unwrap();
    assert_eq!(held.delivery_attempt, Some(1));

    // Another consumer of the group looks for 3 s, three times the invisible duration:
    // the server keeps renewing it while its client lives.
    let other = pb::ReceiveMessageRequest {
        auto_renew: false,
        long_polling_timeout: seconds(3),
        ..push
    };
    let meanwhile = receive_all(&mut client, other.clone()).await;
    assert_eq!(
        answer_status(&meanwhile[0]),
        pb::Code::MessageNotFound,
        "{meanwhile:?}"
    );

    // The client leaves: the message comes back once its invisibility ends.
    let left = client
        .notify_client_termination(from_client(
            "push-1",
            pb::NotifyClientTerminationRequest {
                group: resource("billing"),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&left.status), pb::Code::Ok);
    let again = receive_all(
        &mut client,
        pb::ReceiveMessageRequest {
            long_polling_timeout: seconds(5),
            ..other
        },
    )
    .await;
    let back = messages(&again).remove(0).system_properties.unwrap();
    assert_eq!(back.delivery_attempt, Some(2));
    assert_eq!(back.message_id, held.message_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_send_of_several_messages_answers_each_with_its_queue_offset() {
    let node = support::start("eu").await;
    node.client.create_topic("orders", 2, None).await.unwrap();
    let mut client = access_point(&node).await;
    let message = |i: usize, queue: i32| pb::Message {
        topic: resource("orders"),
        user_properties: Default::default(),
        system_properties: Some(pb::SystemProperties {
            message_id: format!("{i:034X}"),
            message_type: pb::MessageType::Normal as i32,
            queue_id: queue,
            ..Default::default()
        }),
        body: format!("m{i}").into_bytes(),
    };
    let sent = client
        .send_message(pb::SendMessageRequest {
            messages: vec![message(0, 0), message(1, 1), message(2, 0), message(3, 0)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&sent.status), pb::Code::Ok);
    let answered: Vec<(String, i64)> = sent
        .entries
        .iter()
        .map(|e| (e.message_id.clone(), e.offset))
        .collect();
    let id = |i: usize| format!("{i:034X}");
    assert_eq!(
        answered,
        [(id(0), 0), (id(1), 0), (id(2), 1), (id(3), 2)],
        "in request order, each with its offset in its queue"
    );
    let stored = support::all_records(&node.client, "orders").await;
    let mut bodies: Vec<(u32, u64, &str)> = stored
        .iter()
        .map(|(p, _, offset, body)| (*p, *offset, body.as_str()))
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [(0, 0, "m0"), (0, 1, "m2"), (0, 2, "m3"), (1, 0, "m1")]
    );
}
