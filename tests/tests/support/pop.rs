//! A client of the RocketMQ access point's PoP consumption, from the protocol: receive
//! and acknowledge.

use proto::rocketmq::v2 as pb;
use proto::rocketmq::v2::messaging_service_client::MessagingServiceClient;

pub fn resource(name: &str) -> Option<pb::Resource> {
    Some(pb::Resource {
        resource_namespace: String::new(),
        name: name.into(),
    })
}

/// One ReceiveMessage of up to 32 messages of `topic` for `group` at `address`, as client
/// instance `client_id`, waiting at most `long_poll_ms` for messages to come.
pub async fn receive(
    address: std::net::SocketAddr,
    group: &str,
    topic: &str,
    client_id: &str,
    long_poll_ms: i32,
) -> Vec<pb::Message> {
    let mut client = MessagingServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::ReceiveMessageRequest {
        group: resource(group),
        message_queue: Some(pb::MessageQueue {
            topic: resource(topic),
            ..Default::default()
        }),
        batch_size: 32,
        invisible_duration: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        long_polling_timeout: Some(prost_types::Duration {
            seconds: i64::from(long_poll_ms / 1000),
            nanos: (long_poll_ms % 1000) * 1_000_000,
        }),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-mq-client-id", client_id.parse().unwrap());
    let mut stream = client.receive_message(request).await.unwrap().into_inner();
    let mut received = Vec::new();
    while let Some(answer) = stream.message().await.unwrap() {
        if let Some(pb::receive_message_response::Content::Message(m)) = answer.content {
            received.push(m);
        }
    }
    received
}

/// Acknowledges `messages` (received for `group` from `topic`); panics unless all are.
pub async fn ack(
    address: std::net::SocketAddr,
    group: &str,
    topic: &str,
    messages: &[pb::Message],
) {
    let mut client = MessagingServiceClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let entries = messages
        .iter()
        .map(|m| pb::AckMessageEntry {
            receipt_handle: m
                .system_properties
                .as_ref()
                .unwrap()
                .receipt_handle
                .clone()
                .unwrap(),
            ..Default::default()
        })
        .collect();
    let answer = client
        .ack_message(pb::AckMessageRequest {
            group: resource(group),
            topic: resource(topic),
            entries,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.status.as_ref().unwrap().code,
        pb::Code::Ok as i32,
        "{answer:?}"
    );
}

/// The bodies of `messages`, as text, sorted.
pub fn texts(messages: &[pb::Message]) -> Vec<String> {
    let mut out: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8(m.body.clone()).unwrap())
        .collect();
    out.sort();
    out
}
