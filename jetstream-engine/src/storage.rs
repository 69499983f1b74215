//! The JetStream engine behind the broker's seam (`broker::storage::StorageEngine`): a
//! topic is one stream per creation, its partitions opened from what the cluster holds.
//! Retention is not applied on this engine yet (see `partitions`).

use std::path::PathBuf;
use std::sync::{Arc, Weak};

use broker::error::Result;
use broker::meta::TopicConfig;
use broker::storage::store::{OpenedTopic, PartitionStore, StorageEngine};

use crate::engine::{Engine, EngineError};
use crate::partition::JetStreamPartition;
use crate::sublog::SubLogs;

pub struct JetStreamStorage {
    logs: Arc<SubLogs>,
    region: String,
    /// Names this process's appends (message ids).
    node: String,
}

impl JetStreamStorage {
    pub fn new(engine: Arc<Engine>, region: &str) -> Self {
        let node = format!(
            "{}-{}",
            std::process::id(),
            broker::incarnation::new_incarnation()
        );
        JetStreamStorage {
            logs: Arc::new(SubLogs::new(engine, region)),
            region: region.to_string(),
            node,
        }
    }

    fn run<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = std::result::Result<T, EngineError>> + Send + 'static,
    ) -> Result<T> {
        Ok(self.logs.engine().run_fallible(work)?)
    }

    /// Deletes the streams of topic `name` (of any incarnation) that `doomed` picks.
    fn remove_streams(
        &self,
        name: &str,
        doomed: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<()> {
        let logs = self.logs.clone();
        let name = name.to_string();
        self.run(async move {
            for stream in logs.topic_streams(&name).await? {
                if doomed(&stream) {
                    logs.delete_stream(&stream).await?;
                }
            }
            Ok(())
        })
    }

    fn partitions(&self, topic: &TopicConfig) -> Result<Vec<Arc<dyn PartitionStore>>> {
        // No limits on the stream itself: one that dropped every batch of a sub-log would
        // leave nothing to tell where it ended, and the next append would start it at 0
        // again. Retention purges by subject instead, keeping each sub-log's last batch
        // (`sublog::retention`).
        let logs = self.logs.clone();
        let (name, incarnation) = (topic.name.clone(), topic.incarnation);
        self.run(async move { logs.create_topic(&name, incarnation).await })?;
        let mut partitions = Vec::new();
        for index in 0..topic.partitions {
            let logs = self.logs.clone();
            let (name, region, node) = (topic.name.clone(), self.region.clone(), self.node.clone());
            let partition = self.run(async move {
                JetStreamPartition::open(logs, &name, incarnation, index, &region, &node).await
            })?;
            partitions.push(Arc::new(partition));
        }
        self.follow(topic, &partitions)?;
        Ok(partitions
            .into_iter()
            .map(|p| p as Arc<dyn PartitionStore>)
            .collect())
    }

    /// Has `partitions` learn of every batch another node of the region stores in them,
    /// from the stream's headers, for as long as any of them is in use.
    fn follow(&self, topic: &TopicConfig, partitions: &[Arc<JetStreamPartition>]) -> Result<()> {
        let after = partitions
            .iter()
            .map(|p| *p.subscribe_durable().borrow())
            .min()
            .unwrap_or(0);
        let logs = self.logs.clone();
        let (name, incarnation) = (topic.name.clone(), topic.incarnation);
        let mut arrivals = self.run(async move { logs.follow(&name, incarnation, after).await })?;
        let weak: Vec<Weak<JetStreamPartition>> = partitions.iter().map(Arc::downgrade).collect();
        self.logs.engine().detach(async move {
            while let Some(arrival) = arrivals.recv().await {
                let Some(partition) = weak.get(arrival.partition as usize).and_then(Weak::upgrade)
                else {
                    if weak.iter().all(|w| w.strong_count() == 0) {
                        return;
                    }
                    continue;
                };
                partition.appended_to(&arrival.origin, arrival.base, arrival.tail, arrival.bytes);
            }
        });
        Ok(())
    }
}

impl StorageEngine for JetStreamStorage {
    fn open_topic(&self, topic: &TopicConfig) -> Result<OpenedTopic> {
        Ok((self.partitions(topic)?, Vec::new()))
    }

    fn create_topic(&self, topic: &TopicConfig) -> Result<Vec<Arc<dyn PartitionStore>>> {
        self.partitions(topic)
    }

    fn remove_topic(&self, name: &str) -> Result<()> {
        self.remove_streams(name, |_| true)
    }

    fn remove_other_incarnations(&self, name: &str, keep: u64) -> Result<()> {
        let kept = crate::names::topic_stream(&self.region, name, keep);
        self.remove_streams(name, move |stream| stream != kept)
    }

    fn remove_incarnation(&self, name: &str, incarnation: u64) -> Result<()> {
        let doomed = crate::names::topic_stream(&self.region, name, incarnation);
        self.remove_streams(name, move |stream| stream == doomed)
    }

    fn data_dir(&self) -> Option<PathBuf> {
        None
    }

    fn shared(&self) -> bool {
        true
    }
}
