//! A topic's partitions on disk: opened (and recovered) when the broker starts, created
//! when the topic is.

use std::path::PathBuf;
use std::sync::Arc;

use super::{BrokerConfig, Topic};
use crate::error::Result;
use crate::meta::TopicConfig;
use crate::storage::{Partition, StorageConfig, Truncation};

/// Has every partition of `topic` ring `bell` when a new sub-log appears in it.
pub(super) fn ring_on_new_sub_logs(topic: &Topic, bell: &Arc<tokio::sync::watch::Sender<u64>>) {
    for partition in &topic.partitions {
        partition.set_bell(bell.clone());
    }
}

/// Opens (and recovers) the partitions of `topic`; with `fsyncs` false, fsyncs nothing
/// (see [`create_topic_files`]).
pub(super) fn open_topic(
    config: &BrokerConfig,
    storage: &Arc<StorageConfig>,
    topic: TopicConfig,
    fsyncs: bool,
) -> Result<(Topic, Vec<Truncation>)> {
    let dir = topic_dir(config, &topic);
    let mut partitions = Vec::with_capacity(topic.partitions as usize);
    let mut cut = Vec::new();
    for p in 0..topic.partitions {
        let (partition, truncations) = Partition::open_with_fsyncs(
            dir.join(p.to_string()),
            &topic.name,
            topic.incarnation,
            p,
            &config.region,
            storage.clone(),
            fsyncs,
        )?;
        cut.extend(truncations);
        partitions.push(Arc::new(partition));
    }
    Ok((
        Topic {
            config: topic,
            partitions,
        },
        cut,
    ))
}

fn topic_dir(config: &BrokerConfig, topic: &TopicConfig) -> PathBuf {
    config.data_dir.join("topics").join(&topic.name)
}

/// Up to this many partitions a new topic is made durable file by file (two fsyncs per
/// partition); past it by one sync of the file system, which also flushes whatever else
/// was written there and not yet fsynced.
const SYNC_EACH_UP_TO: u32 = 16;

/// Creates a new topic's partitions (its directory is not there) and makes them durable:
/// a large topic with one sync of the file system.
pub(super) fn create_topic_files(
    config: &BrokerConfig,
    storage: &Arc<StorageConfig>,
    topic: TopicConfig,
) -> Result<Topic> {
    let dir = topic_dir(config, &topic);
    let fsync_each = topic.partitions <= SYNC_EACH_UP_TO;
    let (topic, _) = open_topic(config, storage, topic, fsync_each)?;
    if !fsync_each {
        crate::storage::sublog::sync_file_system(&dir)?;
    }
    Ok(topic)
}
