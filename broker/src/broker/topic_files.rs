//! A topic's partitions as the storage engine holds them: opened (and recovered) when the
//! broker starts, created when the topic is.

use std::sync::Arc;

use super::Topic;
use crate::error::Result;
use crate::meta::TopicConfig;
use crate::storage::{StorageEngine, Truncation};

/// Has every partition of `topic` ring `bell` when a new sub-log appears in it.
pub(super) fn ring_on_new_sub_logs(topic: &Topic, bell: &Arc<tokio::sync::watch::Sender<u64>>) {
    for partition in &topic.partitions {
        partition.set_bell(bell.clone());
    }
}

/// Opens (and recovers) the partitions of `topic`.
pub(super) fn open_topic(
    engine: &dyn StorageEngine,
    topic: TopicConfig,
) -> Result<(Topic, Vec<Truncation>)> {
    let (partitions, cut) = engine.open_topic(&topic)?;
    Ok((
        Topic {
            config: topic,
            partitions,
        },
        cut,
    ))
}

/// Creates a new topic's partitions (nothing of it is stored) durably.
pub(super) fn create_topic_files(engine: &dyn StorageEngine, topic: TopicConfig) -> Result<Topic> {
    let partitions = engine.create_topic(&topic)?;
    Ok(Topic {
        config: topic,
        partitions,
    })
}
