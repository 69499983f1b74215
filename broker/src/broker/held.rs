//! Copies of held delay messages, so that the region a DR task promotes can fire what its
//! lost origin held.
//!
//! A delay message is held in its origin's timers, which are not replicated. So that
//! another region can take it over, every delay message also gets a *held id*
//! (`mq:held_id`, kept by the message through firing and adoption) and a copy in the topic
//! `%HELD%<topic>` (same partition, `mq:due_ms` added), an ordinary topic that a DR task
//! covering `<topic>` replicates with it. A recall appends a cancel (`mq:held_cancel`).
//!
//! When a region is promoted it *adopts* what another region held: every copy whose held
//! id is neither cancelled, nor among the fired messages of the topic (any origin), nor
//! held here already (a copy in this region's own sub-log of the held topic) is held here,
//! with its held id and due time, and fires here. Adoption is idempotent: what it adopts
//! gets a copy in this region's own sub-log, so a second run finds it held here.
//! A region fenced by a DR task drops its due delay messages instead of retrying them:
//! the promoted region adopted them.
//!
//! Half messages of transactions get no copy: they never leave their origin before commit.

use std::collections::{BTreeMap, BTreeSet};

use super::query::Scan;
use super::{Broker, Partitioning, Scheduled, blocking_here};
use crate::error::Result;
use crate::meta::MessageType;
use crate::record::Record;

/// The prefix of the topic holding a topic's held copies.
pub const HELD_PREFIX: &str = "%HELD%";
/// A delay message's held id: the same in every copy, adoption and the fired message.
pub const HELD_ID_PROPERTY: &str = "mq:held_id";
/// When a held copy is due (ms since the epoch).
pub const DUE_PROPERTY: &str = "mq:due_ms";
/// Marks a cancel of the held id (a recall).
pub const CANCEL_PROPERTY: &str = "mq:held_cancel";

/// The held topic of `topic`.
pub fn held_topic(topic: &str) -> String {
    format!("{HELD_PREFIX}{topic}")
}

/// The topic whose copies `topic` holds, if it is a held topic.
pub fn base_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix(HELD_PREFIX)
}

/// A copy read back from a held topic.
#[derive(Clone, Debug)]
struct Copy {
    partition: u32,
    origin: String,
    stored_ms: i64,
    record: Record,
}

/// What to adopt of `copies`, given the region `here`, the held ids fired in the topic, and
/// those cancelled: each held id at most once, in the order first seen.
fn to_adopt(copies: Vec<Copy>, here: &str, fired: &BTreeSet<String>) -> Vec<Copy> {
    let id = |c: &Copy| c.record.properties.get(HELD_ID_PROPERTY).cloned();
    let cancelled: BTreeSet<String> = copies
        .iter()
        .filter(|c| c.record.properties.contains_key(CANCEL_PROPERTY))
        .filter_map(id)
        .collect();
    let mine: BTreeSet<String> = copies
        .iter()
        .filter(|c| c.origin == here)
        .filter_map(id)
        .collect();
    let mut seen = BTreeSet::new();
    copies
        .into_iter()
        .filter(|c| !c.record.properties.contains_key(CANCEL_PROPERTY))
        .filter(|c| {
            id(c).is_some_and(|h| {
                !cancelled.contains(&h)
                    && !mine.contains(&h)
                    && !fired.contains(&h)
                    && seen.insert(h)
            })
        })
        .collect()
}

impl Broker {
    /// A new held id: this region, then a number unique in it.
    pub(super) fn new_held_id(&self) -> String {
        format!(
            "{}:{:x}",
            self.region(),
            crate::incarnation::new_incarnation()
        )
    }

    /// Stores a copy of each of `held` (each with its held id) in `topic`'s held topic;
    /// durable when this returns.
    pub(super) async fn copy_held(&self, topic: &str, held: &[Scheduled]) -> Result<()> {
        let partitions = self.topic(topic)?.config.partitions;
        let name = held_topic(topic);
        self.ensure_topic_of(&name, partitions, MessageType::Normal)?;
        let mut by_partition: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for s in held {
            let mut copy = s.record.clone();
            copy.properties
                .insert(DUE_PROPERTY.to_string(), s.due_ms.to_string());
            copy.timestamp_ms = 0;
            by_partition.entry(s.partition).or_default().push(copy);
        }
        for (partition, records) in by_partition {
            self.produce(&name, records, Partitioning::Explicit(partition))
                .await?;
        }
        Ok(())
    }

    /// Stores the cancel of held id `held_id` of `topic`'s `partition`.
    pub(super) async fn cancel_held(
        &self,
        topic: &str,
        partition: u32,
        held_id: &str,
    ) -> Result<()> {
        let name = held_topic(topic);
        if self.topic(&name).is_err() {
            return Ok(());
        }
        let cancel = Record {
            key: None,
            tag: None,
            properties: [
                (HELD_ID_PROPERTY.to_string(), held_id.to_string()),
                (CANCEL_PROPERTY.to_string(), "1".to_string()),
            ]
            .into(),
            body: bytes::Bytes::new(),
            timestamp_ms: 0,
        };
        self.produce(&name, vec![cancel], Partitioning::Explicit(partition))
            .await
            .map(drop)
    }

    /// Holds here every delay message of `topic` that another region held and that is
    /// neither fired, nor cancelled, nor held here already (see the module's rules);
    /// returns how many. Reads the held topic whole and the topic from the oldest copy
    /// adopted (blocking file I/O).
    pub async fn adopt_held(&self, topic: &str) -> Result<usize> {
        let name = held_topic(topic);
        if self.topic(&name).is_err() || self.topic(topic).is_err() {
            return Ok(0);
        }
        let everything = Scan {
            from_ms: None,
            to_ms: None,
            exact: None,
            limit: usize::MAX,
            budget_bytes: u64::MAX,
        };
        let copies: Vec<Copy> = blocking_here(|| self.scan(&name, &everything, |_, _| true))?
            .messages
            .into_iter()
            .map(|f| Copy {
                partition: f.partition,
                origin: f.origin,
                stored_ms: f.record.timestamp_ms,
                record: f.record,
            })
            .collect();
        let candidates = to_adopt(copies, self.region(), &BTreeSet::new());
        let Some(from_ms) = candidates.iter().map(|c| c.stored_ms).min() else {
            return Ok(0);
        };
        let since = Scan {
            from_ms: Some(from_ms),
            ..everything
        };
        let mut fired = BTreeSet::new();
        blocking_here(|| {
            self.scan(topic, &since, |_, stored| {
                if let Some(id) = stored.record.properties.get(HELD_ID_PROPERTY) {
                    fired.insert(id.clone());
                }
                false
            })
        })?;
        let adopted: Vec<Scheduled> = candidates
            .into_iter()
            .filter(|c| !fired.contains(&c.record.properties[HELD_ID_PROPERTY]))
            .map(|c| {
                let mut record = c.record;
                let due = record
                    .properties
                    .remove(DUE_PROPERTY)
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0);
                Scheduled {
                    partition: c.partition,
                    message_id: record
                        .properties
                        .get(super::query::MESSAGE_ID_PROPERTY)
                        .cloned()
                        .unwrap_or_default(),
                    due_ms: due,
                    record,
                }
            })
            .collect();
        let n = adopted.len();
        if n > 0 {
            self.schedule(topic, adopted).await?;
            tracing::warn!(event = "delay_messages_adopted", %topic, adopted = n, "took over delay messages another region held and had not fired");
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(origin: &str, id: &str, cancel: bool) -> Copy {
        let mut properties: BTreeMap<String, String> =
            [(HELD_ID_PROPERTY.to_string(), id.to_string())].into();
        if cancel {
            properties.insert(CANCEL_PROPERTY.into(), "1".into());
        }
        Copy {
            partition: 0,
            origin: origin.into(),
            stored_ms: 0,
            record: Record {
                key: None,
                tag: None,
                properties,
                body: bytes::Bytes::new(),
                timestamp_ms: 0,
            },
        }
    }

    fn ids(copies: &[Copy]) -> Vec<&str> {
        copies
            .iter()
            .map(|c| c.record.properties[HELD_ID_PROPERTY].as_str())
            .collect()
    }

    #[test]
    fn only_what_no_one_fired_cancelled_or_holds_here_is_adopted() {
        let copies = vec![
            copy("eu", "eu:1", false),
            copy("eu", "eu:2", false),
            copy("eu", "eu:3", false),
            copy("eu", "eu:3", true),
            copy("eu", "eu:4", false),
            // us adopted eu:4 once already: it is held here.
            copy("us", "eu:4", false),
            // Held by a third region, relayed here, and cancelled there.
            copy("ap", "ap:1", false),
            copy("ap", "ap:1", true),
            copy("ap", "ap:2", false),
        ];
        let fired: BTreeSet<String> = ["eu:2".to_string()].into();
        assert_eq!(ids(&to_adopt(copies, "us", &fired)), ["eu:1", "ap:2"]);
    }

    #[test]
    fn a_held_id_is_adopted_once_even_from_two_regions() {
        // eu held it, ap adopted it in an earlier failover; us adopts it once.
        let copies = vec![copy("eu", "eu:1", false), copy("ap", "eu:1", false)];
        assert_eq!(ids(&to_adopt(copies, "us", &BTreeSet::new())), ["eu:1"]);
    }

    #[test]
    fn held_topics_name_their_topic() {
        assert_eq!(held_topic("orders"), "%HELD%orders");
        assert_eq!(base_topic("%HELD%orders"), Some("orders"));
        assert_eq!(base_topic("orders"), None);
    }
}
