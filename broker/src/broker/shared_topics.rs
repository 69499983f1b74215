//! Topics on storage several nodes of a region share (`StorageEngine::shared`): a topic
//! another node created or deleted is taken up or let go here, from the metadata the nodes
//! share — at once when a request names a topic this node does not know, and on every
//! [`Broker::refresh_topics`] (the node runs it periodically).

use std::sync::Arc;

use super::topic_files::{open_topic, ring_on_new_sub_logs};
use super::{Broker, Topic};
use crate::error::{BrokerError, Result};

impl Broker {
    /// A topic another node of the region created, opened here; `UnknownTopic` when the
    /// metadata does not hold it either (or the storage is this node's alone).
    pub(super) fn adopt_topic(&self, name: &str) -> Result<Arc<Topic>> {
        let unknown = || BrokerError::UnknownTopic {
            topic: name.to_string(),
        };
        if !self.engine.shared() {
            return Err(unknown());
        }
        let _creating = self
            .topic_creation
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(t) = self.topics.read().expect("topics lock").get(name) {
            return Ok(t.clone());
        }
        let config = self
            .meta
            .topics()?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(unknown)?;
        Ok(self.insert_opened(open_topic(self.engine.as_ref(), config)?.0))
    }

    fn insert_opened(&self, topic: Topic) -> Arc<Topic> {
        ring_on_new_sub_logs(&topic, &self.sub_logs_changed);
        let topic = Arc::new(topic);
        self.topics
            .write()
            .expect("topics lock")
            .insert(topic.config.name.clone(), topic.clone());
        self.ring();
        tracing::info!(topic = %topic.config.name, incarnation = topic.config.incarnation, "topic taken up from the region's shared metadata");
        topic
    }

    /// Takes up the topics other nodes of the region created and lets go of those they
    /// deleted (or deleted and created again: another incarnation); nothing to do on
    /// storage this node has alone. Returns whether anything changed.
    pub fn refresh_topics(&self) -> Result<bool> {
        if !self.engine.shared() {
            return Ok(false);
        }
        let _creating = self
            .topic_creation
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let stored = self.meta.topics()?;
        let held = self.open_topics();
        let mut changed = false;
        let mut missing = self.missing_once.lock().unwrap_or_else(|p| p.into_inner());
        let mut missing_now = std::collections::BTreeSet::new();
        for topic in &held {
            let current = stored.iter().find(|t| t.name == topic.config.name);
            if current.is_none_or(|c| c.incarnation != topic.config.incarnation) {
                // Let go only of what two listings in a row did not find: a listing made
                // while the cluster changes leaders must not close a topic in use.
                if !missing.contains(&topic.config.name) {
                    missing_now.insert(topic.config.name.clone());
                    continue;
                }
                self.topics
                    .write()
                    .expect("topics lock")
                    .remove(&topic.config.name);
                for partition in &topic.partitions {
                    partition.mark_deleted();
                }
                changed = true;
            }
        }
        for config in stored {
            if !self
                .topics
                .read()
                .expect("topics lock")
                .contains_key(&config.name)
            {
                self.insert_opened(open_topic(self.engine.as_ref(), config)?.0);
                changed = true;
            }
        }
        *missing = missing_now;
        if changed {
            self.ring();
        }
        Ok(changed)
    }
}
