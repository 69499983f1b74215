//! A topic's route as the SDKs see it, decided from what the region holds: each origin
//! region that writes into the topic is a broker (named by its region id, reached at this
//! access point), and each partition is one of its message queues. Queues of this region's
//! own origin are READ_WRITE; those of other origins are READ, so producers write only into
//! the local origin's sub-logs and every message keeps one (origin, queue, offset) identity
//! in every region. Pure: the service passes in the topic's origins and partition count.

use proto::rocketmq::v2::{Broker, Endpoints, MessageQueue, MessageType, Permission, Resource};

/// The protocol's name of a topic's message type.
pub fn wire_type(message_type: broker::meta::MessageType) -> MessageType {
    use broker::meta::MessageType as T;
    match message_type {
        T::Normal => MessageType::Normal,
        T::Fifo => MessageType::Fifo,
        T::Delay => MessageType::Delay,
        T::Transaction => MessageType::Transaction,
    }
}

/// The message queues of a topic with `partitions` partitions whose records come from
/// `origins` (this region's own included or not), as reached at `endpoints`; the queues
/// accept `accepts` messages.
pub fn queues(
    topic: &Resource,
    region: &str,
    origins: &[String],
    partitions: u32,
    endpoints: &Endpoints,
    accepts: MessageType,
) -> Vec<MessageQueue> {
    let mut brokers: Vec<&str> = vec![region];
    brokers.extend(origins.iter().map(String::as_str).filter(|o| *o != region));
    brokers
        .into_iter()
        .flat_map(|origin| {
            let permission = if origin == region {
                Permission::ReadWrite
            } else {
                Permission::Read
            };
            (0..partitions).map(move |id| MessageQueue {
                topic: Some(topic.clone()),
                id: id as i32,
                permission: permission as i32,
                broker: Some(Broker {
                    name: origin.to_string(),
                    id: 0,
                    endpoints: Some(endpoints.clone()),
                }),
                accept_message_types: vec![accepts as i32],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::rocketmq::v2::{Address, AddressScheme};

    #[test]
    fn the_local_origin_is_writable_and_the_others_readable() {
        let topic = Resource {
            resource_namespace: String::new(),
            name: "orders".into(),
        };
        let endpoints = Endpoints {
            scheme: AddressScheme::IPv4 as i32,
            addresses: vec![Address {
                host: "127.0.0.1".into(),
                port: 8081,
            }],
        };
        let origins = vec!["us".to_string(), "eu".to_string()];
        let queues = queues(&topic, "eu", &origins, 2, &endpoints, MessageType::Normal);
        let seen: Vec<(String, i32, i32)> = queues
            .iter()
            .map(|q| {
                let broker = q.broker.as_ref().unwrap();
                (broker.name.clone(), q.id, q.permission)
            })
            .collect();
        let (rw, r) = (Permission::ReadWrite as i32, Permission::Read as i32);
        assert_eq!(
            seen,
            [
                ("eu".into(), 0, rw),
                ("eu".into(), 1, rw),
                ("us".into(), 0, r),
                ("us".into(), 1, r),
            ]
        );
        assert!(
            queues
                .iter()
                .all(|q| q.broker.as_ref().unwrap().endpoints == Some(endpoints.clone()))
        );
        assert!(
            queues
                .iter()
                .all(|q| q.accept_message_types == [MessageType::Normal as i32])
        );
    }
}
