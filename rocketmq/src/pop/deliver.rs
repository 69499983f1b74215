//! A stored record as the protocol's `Message` handed to a consumer, pure: what the
//! producer sent (body, tag, keys, user properties, message id, born host and time), the
//! store time, the queue and offset, the receipt handle and the delivery attempt.

use std::collections::HashMap;
use std::time::Duration;

use broker::Record;
use proto::rocketmq::v2::{
    Digest, DigestType, Encoding, Message, MessageType, Resource, SystemProperties,
};

use crate::send::{BORN_HOST, BORN_MS, ENCODING, KEYS, MESSAGE_GROUP, MESSAGE_ID, RESERVED};

/// One message handed out.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub partition: u32,
    pub origin: String,
    pub offset: u64,
    pub record: Record,
    pub attempt: u32,
    pub handle: String,
    pub invisible: Duration,
}

/// Milliseconds since the epoch as the protocol's timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// The message for `delivery` of topic `topic` (as the client named it), a topic of
/// `message_type` messages.
pub fn message(topic: &Resource, message_type: MessageType, delivery: Delivery) -> Message {
    let record = delivery.record;
    let property = |key: &str| record.properties.get(key).cloned();
    let message_id = property(MESSAGE_ID)
        // A record produced through georouter's own API: its identity is its id.
        .unwrap_or_else(|| {
            format!(
                "{}-{}-{}",
                delivery.origin, delivery.partition, delivery.offset
            )
        });
    let user_properties: HashMap<String, String> = record
        .properties
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let encoding = if property(ENCODING).as_deref() == Some("GZIP") {
        Encoding::Gzip
    } else {
        Encoding::Identity
    };
    let born_ms = property(BORN_MS)
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(record.timestamp_ms);
    Message {
        topic: Some(topic.clone()),
        user_properties,
        system_properties: Some(SystemProperties {
            tag: record.tag.clone(),
            keys: property(KEYS)
                .map(|k| k.split(' ').map(str::to_string).collect())
                .unwrap_or_default(),
            message_id,
            body_digest: Some(Digest {
                r#type: DigestType::Crc32 as i32,
                checksum: format!("{:08X}", crc32fast::hash(&record.body)),
            }),
            body_encoding: encoding as i32,
            message_type: message_type as i32,
            message_group: property(MESSAGE_GROUP),
            born_timestamp: Some(timestamp(born_ms)),
            born_host: property(BORN_HOST).unwrap_or_default(),
            store_timestamp: Some(timestamp(record.timestamp_ms)),
            store_host: delivery.origin.clone(),
            receipt_handle: Some(delivery.handle),
            queue_id: delivery.partition as i32,
            queue_offset: Some(i64::try_from(delivery.offset).unwrap_or(i64::MAX)),
            invisible_duration: Some(prost_types::Duration {
                seconds: delivery.invisible.as_secs() as i64,
                nanos: delivery.invisible.subsec_nanos() as i32,
            }),
            delivery_attempt: Some(i32::try_from(delivery.attempt).unwrap_or(i32::MAX)),
            ..Default::default()
        }),
        body: record.body.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_message_carries_what_was_sent_and_where_it_is() {
        let record = Record {
            key: None,
            tag: Some("TagA".into()),
            properties: [
                (MESSAGE_ID.to_string(), "01AB".to_string()),
                (KEYS.to_string(), "k1 k2".to_string()),
                (BORN_MS.to_string(), "1500".to_string()),
                ("color".to_string(), "red".to_string()),
            ]
            .into(),
            body: bytes::Bytes::from_static(b"hello"),
            timestamp_ms: 2_000,
        };
        let topic = Resource {
            resource_namespace: String::new(),
            name: "orders".into(),
        };
        let m = message(
            &topic,
            MessageType::Normal,
            Delivery {
                partition: 2,
                origin: "eu".into(),
                offset: 9,
                record,
                attempt: 3,
                handle: "h".into(),
                invisible: Duration::from_secs(30),
            },
        );
        let s = m.system_properties.unwrap();
        assert_eq!(
            (s.message_id.as_str(), s.tag.as_deref()),
            ("01AB", Some("TagA"))
        );
        assert_eq!(s.keys, ["k1", "k2"]);
        assert_eq!(
            m.user_properties.len(),
            1,
            "reserved properties stay inside"
        );
        assert_eq!(
            (s.queue_id, s.queue_offset, s.delivery_attempt),
            (2, Some(9), Some(3))
        );
        assert_eq!(s.born_timestamp.unwrap().nanos, 500_000_000);
        assert_eq!(s.receipt_handle.as_deref(), Some("h"));
        assert_eq!(
            s.body_digest.unwrap().checksum,
            format!("{:08X}", crc32fast::hash(b"hello"))
        );
        assert_eq!(s.body_encoding, Encoding::Identity as i32);
    }
}
