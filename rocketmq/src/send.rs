//! A sent message as a georouter record, decided without I/O. The body is stored byte for
//! byte; the tag is the record's tag; user properties are kept as they are; what the
//! protocol carries besides (message id, keys, born host and time, encoding, type) is kept
//! in properties under the reserved `mq:` prefix, so that it travels with the record
//! through replication unchanged and can be given back to consumers in every region.

use std::collections::BTreeMap;

use bytes::Bytes;
use proto::rocketmq::v2::{Code, Encoding, Message, MessageType};

use crate::status::Refusal;
use broker::meta::MessageType as TopicType;

/// Prefix of the properties the access point keeps for the protocol.
pub const RESERVED: &str = "mq:";
pub const MESSAGE_ID: &str = "mq:message_id";
pub const KEYS: &str = "mq:keys";
pub const BORN_HOST: &str = "mq:born_host";
pub const BORN_MS: &str = "mq:born_ms";
pub const ENCODING: &str = "mq:body_encoding";
pub const MESSAGE_GROUP: &str = "mq:message_group";

/// One message to store: the record and the queue (partition) the producer chose, for a
/// delay message when it is delivered (ms since the epoch), and whether it is a half
/// message of a transaction.
#[derive(Debug)]
pub struct Outgoing {
    pub record: broker::Record,
    pub queue: u32,
    pub message_id: String,
    pub deliver_at: Option<u64>,
    pub transaction: bool,
}

/// The record for `message`, sent to a topic of `partitions` queues that carries
/// `topic_type` messages whose bodies may be at most `max_body` bytes. `index` names the
/// message in errors.
pub fn record_of(
    message: Message,
    index: usize,
    partitions: u32,
    topic_type: TopicType,
    max_body: usize,
) -> Result<Outgoing, Refusal> {
    let at = |what: String| format!("message {index}: {what}");
    let system = message.system_properties.unwrap_or_default();
    if system.message_id.is_empty() {
        return Err(Refusal::new(
            Code::IllegalMessageId,
            at("no message id (the SDK sets system_properties.message_id)".into()),
        ));
    }
    let sent_type = match MessageType::try_from(system.message_type) {
        Ok(MessageType::Unspecified) => MessageType::Normal,
        Ok(t) => t,
        Err(_) => {
            return Err(Refusal::new(
                Code::BadRequest,
                at(format!("unknown message type {}", system.message_type)),
            ));
        }
    };
    let expected = crate::route::wire_type(topic_type);
    if sent_type != expected {
        return Err(Refusal::new(
            Code::MessagePropertyConflictWithType,
            at(format!(
                "a {} message to a topic of {} messages",
                sent_type.as_str_name(),
                expected.as_str_name()
            )),
        ));
    }
    let group = system.message_group.clone().filter(|g| !g.is_empty());
    match (topic_type, &group) {
        (TopicType::Fifo, None) => {
            return Err(Refusal::new(
                Code::IllegalMessageGroup,
                at("a FIFO message without a message group".into()),
            ));
        }
        (TopicType::Normal, Some(_)) => {
            return Err(Refusal::new(
                Code::MessagePropertyConflictWithType,
                at("a message group on a normal message".into()),
            ));
        }
        _ => {}
    }
    let deliver_at = match (topic_type, system.delivery_timestamp) {
        (TopicType::Delay, Some(t)) => Some(
            delivery_ms(t.seconds, t.nanos)
                .map_err(|e| Refusal::new(Code::IllegalDeliveryTime, at(e)))?,
        ),
        (TopicType::Delay, None) => {
            return Err(Refusal::new(
                Code::IllegalDeliveryTime,
                at("a delay message without a delivery time".into()),
            ));
        }
        (_, Some(_)) => {
            return Err(Refusal::new(
                Code::MessagePropertyConflictWithType,
                at("a delivery time on a message to a topic that is not a delay topic".into()),
            ));
        }
        (_, None) => None,
    };
    if message.body.is_empty() {
        return Err(Refusal::new(
            Code::MessageBodyEmpty,
            at("an empty body".into()),
        ));
    }
    if message.body.len() > max_body {
        return Err(Refusal::new(
            Code::MessageBodyTooLarge,
            at(format!(
                "a body of {} bytes; the limit is {max_body}",
                message.body.len()
            )),
        ));
    }
    let queue = u32::try_from(system.queue_id)
        .ok()
        .filter(|q| *q < partitions)
        .ok_or_else(|| {
            Refusal::new(
                Code::BadRequest,
                at(format!(
                    "queue {} does not exist; the topic has queues 0..{partitions}",
                    system.queue_id
                )),
            )
        })?;
    let mut properties = BTreeMap::new();
    for (key, value) in message.user_properties {
        if key.starts_with(RESERVED) {
            return Err(Refusal::new(
                Code::IllegalMessagePropertyKey,
                at(format!(
                    "user property \"{key}\": the prefix {RESERVED} is reserved"
                )),
            ));
        }
        properties.insert(key, value);
    }
    properties.insert(MESSAGE_ID.into(), system.message_id.clone());
    if !system.keys.is_empty() {
        if let Some(bad) = system.keys.iter().find(|k| k.contains(' ') || k.is_empty()) {
            return Err(Refusal::new(
                Code::IllegalMessageKey,
                at(format!("key \"{bad}\" is empty or holds a space")),
            ));
        }
        properties.insert(KEYS.into(), system.keys.join(" "));
    }
    if !system.born_host.is_empty() {
        properties.insert(BORN_HOST.into(), system.born_host);
    }
    if let Some(born) = system.born_timestamp {
        let ms = born.seconds * 1000 + i64::from(born.nanos) / 1_000_000;
        properties.insert(BORN_MS.into(), ms.to_string());
    }
    if let Some(group) = group {
        properties.insert(MESSAGE_GROUP.into(), group);
    }
    if Encoding::try_from(system.body_encoding) == Ok(Encoding::Gzip) {
        properties.insert(ENCODING.into(), "GZIP".into());
    }
    Ok(Outgoing {
        record: broker::Record {
            key: None,
            tag: system.tag.filter(|t| !t.is_empty()),
            properties,
            body: Bytes::from(message.body),
            // Stamped by the broker: the store time (the born time is kept above).
            timestamp_ms: 0,
        },
        queue,
        message_id: system.message_id,
        deliver_at,
        transaction: topic_type == TopicType::Transaction,
    })
}

/// `seconds` values from here on are milliseconds: the year 5138 in seconds.
/// rocketmq-python-client 5.1.x puts a delivery time's milliseconds in the timestamp's
/// `seconds` field; no delay this access point takes (90 days) comes near it in seconds.
const MILLISECONDS_IN_SECONDS: i64 = 100_000_000_000;

/// A delivery time as ms since the epoch: at most `broker::timer::MAX_DELAY_MS` from now
/// (one in the past is delivered at once).
fn delivery_ms(seconds: i64, nanos: i32) -> Result<u64, String> {
    if seconds >= MILLISECONDS_IN_SECONDS && nanos == 0 {
        return delivery_ms(seconds / 1000, ((seconds % 1000) * 1_000_000) as i32);
    }
    let ms = seconds
        .checked_mul(1000)
        .and_then(|s| s.checked_add(i64::from(nanos) / 1_000_000))
        .and_then(|ms| u64::try_from(ms).ok())
        .ok_or_else(|| format!("delivery time {seconds} s is not a time after 1970"))?;
    let now = u64::try_from(broker::record::now_ms()).unwrap_or(0);
    let latest = now + broker::timer::MAX_DELAY_MS;
    if ms > latest {
        return Err(format!(
            "delivery time {ms} ms is more than {} days away (the longest delay)",
            broker::timer::MAX_DELAY_MS / 86_400_000
        ));
    }
    Ok(ms.max(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::rocketmq::v2::SystemProperties;

    fn message(body: &[u8], queue: i32) -> Message {
        Message {
            topic: None,
            user_properties: [("color".to_string(), "red".to_string())].into(),
            system_properties: Some(SystemProperties {
                tag: Some("TagA".into()),
                keys: vec!["k1".into(), "k2".into()],
                message_id: "01ABC".into(),
                message_type: MessageType::Normal as i32,
                born_host: "host-1".into(),
                born_timestamp: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 5_000_000,
                }),
                body_encoding: Encoding::Identity as i32,
                queue_id: queue,
                ..Default::default()
            }),
            body: body.to_vec(),
        }
    }

    #[test]
    fn a_normal_message_keeps_everything_it_carries() {
        let out = record_of(message(b"hello", 1), 0, 4, TopicType::Normal, 1024).unwrap();
        assert_eq!(out.queue, 1);
        assert_eq!(out.message_id, "01ABC");
        let r = &out.record;
        assert_eq!(
            (r.body.as_ref(), r.tag.as_deref()),
            (&b"hello"[..], Some("TagA"))
        );
        let p = &r.properties;
        assert_eq!(p["color"], "red");
        assert_eq!(p[MESSAGE_ID], "01ABC");
        assert_eq!(p[KEYS], "k1 k2");
        assert_eq!(p[BORN_HOST], "host-1");
        assert_eq!(p[BORN_MS], "1700000000005");
        assert!(!p.contains_key(ENCODING));
    }

    #[test]
    fn a_fifo_topic_takes_fifo_messages_with_a_group_and_keeps_the_group() {
        let mut fifo = message(b"x", 0);
        let system = fifo.system_properties.as_mut().unwrap();
        system.message_type = MessageType::Fifo as i32;
        system.message_group = Some("order-7".into());
        let out = record_of(fifo.clone(), 0, 4, TopicType::Fifo, 8).unwrap();
        assert_eq!(out.record.properties[MESSAGE_GROUP], "order-7");
        let refused = record_of(message(b"x", 0), 0, 4, TopicType::Fifo, 8).unwrap_err();
        assert_eq!(refused.code, Code::MessagePropertyConflictWithType);
        assert!(
            refused
                .message
                .contains("a NORMAL message to a topic of FIFO messages")
        );
        fifo.system_properties.as_mut().unwrap().message_group = None;
        let no_group = record_of(fifo, 0, 4, TopicType::Fifo, 8).unwrap_err();
        assert_eq!(no_group.code, Code::IllegalMessageGroup);
        let delay = record_of(message(b"x", 0), 0, 4, TopicType::Delay, 8).unwrap_err();
        assert_eq!(delay.code, Code::MessagePropertyConflictWithType);
    }

    #[test]
    fn a_delay_topic_takes_delay_messages_with_a_delivery_time_up_to_the_longest_delay() {
        let delayed = |seconds: i64| {
            let mut m = message(b"x", 0);
            let system = m.system_properties.as_mut().unwrap();
            system.message_type = MessageType::Delay as i32;
            system.delivery_timestamp = Some(prost_types::Timestamp { seconds, nanos: 0 });
            record_of(m, 0, 4, TopicType::Delay, 8)
        };
        let now_s = broker::record::now_ms() / 1000;
        let in_a_minute = delayed(now_s + 60).unwrap();
        assert_eq!(in_a_minute.deliver_at, Some((now_s as u64 + 60) * 1000));
        let past = delayed(now_s - 60).unwrap().deliver_at.unwrap();
        assert!(
            past >= now_s as u64 * 1000,
            "a time in the past is delivered at once"
        );
        let forty_days = delayed(now_s + 40 * 86_400).unwrap();
        assert!(forty_days.deliver_at.is_some());
        let in_ms = delayed((now_s + 60) * 1000 + 5).unwrap();
        assert_eq!(
            in_ms.deliver_at,
            Some((now_s as u64 + 60) * 1000 + 5),
            "milliseconds in `seconds` (rocketmq-python-client 5.1.x) are read as such"
        );
        let too_far = delayed(now_s + 91 * 86_400).unwrap_err();
        assert_eq!(too_far.code, Code::IllegalDeliveryTime);
        assert!(too_far.message.contains("90 days"), "{}", too_far.message);
        let mut untimed = message(b"x", 0);
        untimed.system_properties.as_mut().unwrap().message_type = MessageType::Delay as i32;
        let untimed = record_of(untimed, 0, 4, TopicType::Delay, 8).unwrap_err();
        assert_eq!(untimed.code, Code::IllegalDeliveryTime);
    }

    #[test]
    fn bad_messages_are_refused_with_the_code_and_what_was_wrong() {
        let code = |m: Message| record_of(m, 3, 4, TopicType::Normal, 8).unwrap_err();
        let large = code(message(b"123456789", 0));
        assert_eq!(large.code, Code::MessageBodyTooLarge);
        assert!(large.message.starts_with("message 3:"), "{}", large.message);
        assert_eq!(code(message(b"", 0)).code, Code::MessageBodyEmpty);
        assert_eq!(code(message(b"x", 4)).code, Code::BadRequest);
        let mut reserved = message(b"x", 0);
        reserved
            .user_properties
            .insert("mq:message_id".into(), "forged".into());
        assert_eq!(code(reserved).code, Code::IllegalMessagePropertyKey);
        let mut fifo = message(b"x", 0);
        fifo.system_properties.as_mut().unwrap().message_type = MessageType::Fifo as i32;
        assert_eq!(code(fifo).code, Code::MessagePropertyConflictWithType);
        let mut grouped = message(b"x", 0);
        grouped.system_properties.as_mut().unwrap().message_group = Some("g".into());
        assert_eq!(code(grouped).code, Code::MessagePropertyConflictWithType);
        let mut no_id = message(b"x", 0);
        no_id.system_properties.as_mut().unwrap().message_id.clear();
        assert_eq!(code(no_id).code, Code::IllegalMessageId);
    }
}
