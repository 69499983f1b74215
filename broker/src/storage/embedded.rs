//! The embedded engine: a region's topics as files under its data directory
//! (`topics/<topic>/<partition>/`, see docs/storage.md), one process per region. The
//! default engine.

use std::path::PathBuf;
use std::sync::Arc;

use super::StorageConfig;
use super::partition::Partition;
use super::store::{OpenedTopic, PartitionStore, StorageEngine};
use crate::error::{BrokerError, Result};
use crate::meta::TopicConfig;
use crate::record::now_ms;

/// Up to this many partitions a new topic is made durable file by file (two fsyncs per
/// partition); past it by one sync of the file system, which also flushes whatever else
/// was written there and not yet fsynced.
const SYNC_EACH_UP_TO: u32 = 16;

pub struct EmbeddedEngine {
    data_dir: PathBuf,
    region: String,
    storage: Arc<StorageConfig>,
}

impl EmbeddedEngine {
    pub fn new(data_dir: PathBuf, region: &str, storage: Arc<StorageConfig>) -> Self {
        EmbeddedEngine {
            data_dir,
            region: region.to_string(),
            storage,
        }
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join("topics").join(name)
    }

    /// Opens (and recovers) the partitions of `topic`; with `fsyncs` false, fsyncs nothing
    /// (see [`StorageEngine::create_topic`]).
    fn open_partitions(&self, topic: &TopicConfig, fsyncs: bool) -> Result<OpenedTopic> {
        let dir = self.topic_dir(&topic.name);
        let mut partitions: Vec<Arc<dyn PartitionStore>> =
            Vec::with_capacity(topic.partitions as usize);
        let mut cut = Vec::new();
        for p in 0..topic.partitions {
            let (partition, truncations) = Partition::open_with_fsyncs(
                dir.join(p.to_string()),
                &topic.name,
                topic.incarnation,
                p,
                &self.region,
                self.storage.clone(),
                fsyncs,
            )?;
            cut.extend(truncations);
            partitions.push(Arc::new(partition));
        }
        Ok((partitions, cut))
    }
}

impl StorageEngine for EmbeddedEngine {
    fn open_topic(&self, topic: &TopicConfig) -> Result<OpenedTopic> {
        self.open_partitions(topic, true)
    }

    /// A large topic is made durable with one sync of the file system: an fsync per
    /// partition made a topic of thousands of partitions take seconds.
    fn create_topic(&self, topic: &TopicConfig) -> Result<Vec<Arc<dyn PartitionStore>>> {
        let fsync_each = topic.partitions <= SYNC_EACH_UP_TO;
        let (partitions, _) = self.open_partitions(topic, fsync_each)?;
        if !fsync_each {
            super::sublog::sync_file_system(&self.topic_dir(&topic.name))?;
        }
        Ok(partitions)
    }

    /// Moves the topic's directory aside and removes it (readers holding files can finish).
    fn remove_topic(&self, name: &str) -> Result<()> {
        let dir = self.topic_dir(name);
        if !dir.exists() {
            return Ok(());
        }
        let trash = self.data_dir.join("trash");
        std::fs::create_dir_all(&trash).map_err(BrokerError::io("create", &trash))?;
        let aside = trash.join(format!("{name}-{}", now_ms()));
        std::fs::rename(&dir, &aside).map_err(BrokerError::io("move aside", &dir))?;
        std::fs::remove_dir_all(&aside).map_err(BrokerError::io("remove", &aside))
    }

    fn data_dir(&self) -> Option<PathBuf> {
        Some(self.data_dir.clone())
    }
}
