//! The RocketMQ access point's answers on the wire, from a client of the protocol: routes
//! name this region's origin as a writable broker, bad sends are refused with the
//! protocol's codes and a message saying what was wrong, and RPCs not served yet answer
//! `NOT_IMPLEMENTED` at once.

mod support;

use proto::rocketmq::v2 as pb;
use proto::rocketmq::v2::messaging_service_client::MessagingServiceClient;

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
    let mut client =
        MessagingServiceClient::connect(format!("http://{}", node.node.bound.rocketmq))
            .await
            .unwrap();

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

    let ack = client
        .ack_message(pb::AckMessageRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&ack.status), pb::Code::NotImplemented);
    assert!(ack.status.unwrap().message.contains("AckMessage"));
    let mut receive = client
        .receive_message(pb::ReceiveMessageRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = receive.message().await.unwrap().expect("one answer");
    let Some(pb::receive_message_response::Content::Status(status)) = first.content else {
        panic!("a status")
    };
    assert_eq!(status.code, pb::Code::NotImplemented as i32);
    assert!(
        receive.message().await.unwrap().is_none(),
        "and the stream ends"
    );
}
