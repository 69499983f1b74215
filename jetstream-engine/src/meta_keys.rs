//! The keys of a region's metadata bucket (`georouter-meta-<region>`), one family per
//! kind of entry, every name a token (`crate::names`):
//!
//! ```text
//! topic.<topic>                                  JSON TopicConfig
//! cursor.<group>.<topic>.<partition>             JSON Cursor
//! checkpoint.<task>.<topic>.<partition>.<origin> JSON TaskCheckpoint
//! task-start.<task>                              ms since the epoch, decimal (created once)
//! task.<task>                                    the replicator's task record
//! group_records.<name> / principal_records.<name> JSON of a shared record
//! pop.<group>.<topic>.<partition>                the access point's PoP state
//! timer.<32 hex digits>                          a delayed message; the digits are the
//!                                                16-byte timer key, so keys sort as timers do
//! lease.<duty>                                   JSON LeaseRecord (`crate::lease`)
//! replication-division                           JSON of the division of the region's pulls
//!                                                among its nodes (written by the lease holder)
//! ```

use broker::meta::{SharedKind, TimerKey};

use crate::names::{name, token};

pub const LEASES: &str = "lease.*";

pub const REPLICATION_DIVISION: &str = "replication-division";

pub fn topic(topic: &str) -> String {
    format!("topic.{}", token(topic))
}

pub const TOPICS: &str = "topic.*";

pub fn cursor(group: &str, topic: &str, partition: u32) -> String {
    format!("cursor.{}.{}.{partition}", token(group), token(topic))
}

/// Every cursor of one group in one topic.
pub fn cursors_of(group: &str, topic: &str) -> String {
    format!("cursor.{}.{}.*", token(group), token(topic))
}

pub const CURSORS: &str = "cursor.*.*.*";

/// Every cursor of `topic`, whatever the group.
pub fn cursors_of_topic(topic: &str) -> String {
    format!("cursor.*.{}.*", token(topic))
}

pub fn checkpoint(task: &str, topic: &str, partition: u32, origin: &str) -> String {
    format!(
        "checkpoint.{}.{}.{partition}.{}",
        token(task),
        token(topic),
        token(origin)
    )
}

pub fn checkpoints_of(task: &str) -> String {
    format!("checkpoint.{}.*.*.*", token(task))
}

pub fn task_start(task: &str) -> String {
    format!("task-start.{}", token(task))
}

pub fn task_record(task: &str) -> String {
    format!("task.{}", token(task))
}

pub const TASK_RECORDS: &str = "task.*";

pub fn shared(kind: SharedKind, record: &str) -> String {
    format!("{}.{}", kind.tree(), token(record))
}

pub fn shared_all(kind: SharedKind) -> String {
    format!("{}.*", kind.tree())
}

pub fn pop(group: &str, topic: &str, partition: u32) -> String {
    format!("pop.{}.{}.{partition}", token(group), token(topic))
}

pub fn pops_of(group: &str, topic: &str) -> String {
    format!("pop.{}.{}.*", token(group), token(topic))
}

pub fn pops_of_topic(topic: &str) -> String {
    format!("pop.*.{}.*", token(topic))
}

pub fn timer(key: &TimerKey) -> String {
    let mut out = String::with_capacity(6 + 32);
    out.push_str("timer.");
    for b in key {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub const TIMERS: &str = "timer.*";

/// The timer key of a `timer.` key.
pub fn parse_timer(key: &str) -> Option<TimerKey> {
    let hex = key.strip_prefix("timer.")?;
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The tokens of `key` after its family, decoded to names.
pub fn parts(key: &str) -> Option<Vec<String>> {
    key.split('.').skip(1).map(name).collect()
}

/// The partition a key's `index`-th part holds.
pub fn partition_at(parts: &[String], index: usize) -> Option<u32> {
    parts.get(index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_keys_decode_to_their_names() {
        let key = cursor("g.1", "%DLQ%g", 7);
        let parts = parts(&key).unwrap();
        assert_eq!(parts, vec!["g.1", "%DLQ%g", "7"]);
        assert_eq!(partition_at(&parts, 2), Some(7));
    }

    #[test]
    fn timer_keys_round_trip_and_sort_as_timer_keys() {
        let a: TimerKey = [0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let b: TimerKey = [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_timer(&timer(&a)), Some(a));
        assert!(timer(&a) < timer(&b));
        assert_eq!(parse_timer("timer.00"), None);
        assert_eq!(parse_timer("topic.x"), None);
    }

    #[test]
    fn one_topic_s_filters_do_not_reach_a_topic_whose_name_it_begins() {
        // Subject filters match whole tokens: `orders` does not match `orders-x`.
        let filter = cursors_of("g", "orders");
        assert!(!cursor("g", "orders-x", 1).starts_with(filter.trim_end_matches('*')));
        assert!(cursor("g", "orders", 1).starts_with(filter.trim_end_matches('*')));
    }
}
