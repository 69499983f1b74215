//! Consumer groups' cursors: commits by clients, merges of cursors synced from other
//! regions (per origin the larger next offset wins), and the bound both obey: a cursor may
//! not name a position past the end the region knows exists, so one bad commit cannot make
//! a group skip the records that come later. An administrator undoes a bad position with a
//! rewind: a cursor of a new epoch, which replaces the old one in every region it reaches
//! (`crate::cursor`).

use std::collections::BTreeMap;

use super::{Broker, CursorChange};
use crate::cursor::Cursor;
use crate::error::{BrokerError, Result};
use crate::names;

impl Broker {
    /// Checks a cursor that came from a client.
    pub fn validate_cursor(cursor: &Cursor) -> Result<()> {
        for origin in cursor.next.keys() {
            names::validate("region", origin).map_err(|e| BrokerError::InvalidCursor {
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// The durable end of `origin`'s sub-log in `topic`'s `partition` held here (0: none).
    pub fn held_end(&self, topic: &str, partition: u32, origin: &str) -> u64 {
        self.partition(topic, partition)
            .ok()
            .and_then(|p| p.sub_log(origin))
            .map_or(0, |s| s.durable_end)
    }

    /// Refuses `cursor` of `partition` if it runs past `known_end(origin)` for an origin: a
    /// position past what exists would make the group skip records that come later.
    pub fn check_cursor_bound(
        cursor: &Cursor,
        partition: u32,
        known_end: impl Fn(&str) -> u64,
    ) -> Result<()> {
        for (origin, next) in &cursor.next {
            let end = known_end(origin);
            if *next > end {
                return Err(BrokerError::InvalidCursor {
                    reason: format!(
                        "partition {partition}, origin {origin}: next offset {next} is past the end known here ({end})"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Commits a consumer group's cursors (durable when this returns). A cursor past the
    /// end held here for an origin is refused. A commit is made in the epoch of the cursor
    /// held (a client never starts one).
    pub fn commit(&self, group: &str, topic: &str, cursors: &[(u32, Cursor)]) -> Result<()> {
        self.store_cursors(group, topic, cursors, false)
    }

    /// An administrator's rewind (or move) of the group's cursor of `partition` to `next`:
    /// stored under a new epoch, larger than the one held and than the clock in
    /// milliseconds, so it replaces the cursor wherever it is synced to, where a plain
    /// commit of a lower position would lose to the larger one. Positions past the end held
    /// here are refused. Returns the cursor stored.
    pub fn rewind_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next: BTreeMap<String, u64>,
    ) -> Result<Cursor> {
        let cursor = Cursor {
            next,
            ..Cursor::default()
        };
        self.store_cursors(group, topic, &[(partition, cursor)], true)?;
        Ok(self
            .meta
            .cursors(group, topic)?
            .into_iter()
            .find(|(p, _)| *p == partition)
            .map(|(_, c)| c)
            .unwrap_or_default())
    }

    fn store_cursors(
        &self,
        group: &str,
        topic: &str,
        cursors: &[(u32, Cursor)],
        rewind: bool,
    ) -> Result<()> {
        names::validate("group", group)?;
        let t = self.topic(topic)?;
        for (partition, cursor) in cursors {
            if *partition >= t.config.partitions {
                return Err(BrokerError::UnknownPartition {
                    topic: topic.to_string(),
                    partition: *partition,
                    partitions: t.config.partitions,
                });
            }
            Self::validate_cursor(cursor)?;
        }
        let mut stored = Vec::with_capacity(cursors.len());
        {
            let _writing = self.cursor_writes.lock().expect("cursor lock");
            let held: BTreeMap<u32, Cursor> =
                self.meta.cursors(group, topic)?.into_iter().collect();
            // Known to exist: what is held here, or the group's position already (a synced
            // cursor may name records a lost origin wrote that never arrived here: the
            // group may keep its place past them after a failover).
            for (partition, cursor) in cursors {
                let position = held.get(partition);
                Self::check_cursor_bound(cursor, *partition, |origin| {
                    self.held_end(topic, *partition, origin)
                        .max(position.map_or(0, |h| h.next_offset(origin)))
                })?;
            }
            for (partition, cursor) in cursors {
                let held = held.get(partition);
                let mut cursor = cursor.clone();
                cursor.epoch = held.map_or(0, |c| c.epoch);
                if rewind {
                    let now = u64::try_from(crate::record::now_ms()).unwrap_or(0);
                    cursor.epoch = (cursor.epoch + 1).max(now);
                    // The incarnations the positions are of stay those held.
                    cursor.incarnations = held
                        .map(|h| h.incarnations.clone())
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|(origin, _)| cursor.next.contains_key(origin))
                        .collect();
                }
                self.meta.put_cursor(group, topic, *partition, &cursor)?;
                stored.push((*partition, cursor));
            }
            self.meta.flush()?;
        }
        for (partition, cursor) in &stored {
            self.cursor_changed(group, topic, *partition, cursor);
        }
        Ok(())
    }

    /// Merges cursors another region synced into the group's: per origin the larger next
    /// offset wins, so a merge never moves a cursor back and never loses a commit made on
    /// either side (merges and commits are serialized). Stored (durably) even when the
    /// topic does not exist here yet. A cursor past `known_end(partition, origin)` (what
    /// this region knows exists) is refused, so one bad commit cannot make every region
    /// skip records. Returns the partitions whose cursor changed.
    pub fn merge_cursors(
        &self,
        group: &str,
        topic: &str,
        cursors: &[(u32, Cursor)],
        known_end: &dyn Fn(u32, &str) -> u64,
    ) -> Result<Vec<u32>> {
        names::validate("group", group)?;
        names::validate("topic", topic)?;
        for (partition, cursor) in cursors {
            Self::validate_cursor(cursor)?;
            Self::check_cursor_bound(cursor, *partition, |origin| known_end(*partition, origin))?;
        }
        let mut changed = Vec::new();
        {
            let _writing = self.cursor_writes.lock().expect("cursor lock");
            let held: BTreeMap<u32, Cursor> =
                self.meta.cursors(group, topic)?.into_iter().collect();
            for (partition, theirs) in cursors {
                let mut merged = held.get(partition).cloned().unwrap_or_default();
                if merged.merge(theirs) {
                    self.meta.put_cursor(group, topic, *partition, &merged)?;
                    changed.push((*partition, merged));
                }
            }
            if !changed.is_empty() {
                self.meta.flush()?;
            }
        }
        for (partition, cursor) in &changed {
            self.cursor_changed(group, topic, *partition, cursor);
        }
        Ok(changed.into_iter().map(|(p, _)| p).collect())
    }

    /// Every group cursor held: `(group, topic, partition, cursor)`.
    pub fn all_group_cursors(&self) -> Result<Vec<(String, String, u32, Cursor)>> {
        Ok(self.meta.all_cursors()?)
    }

    fn cursor_changed(&self, group: &str, topic: &str, partition: u32, cursor: &Cursor) {
        // No listener (replication off) is not an error.
        let _ = self.cursor_changes.send(CursorChange {
            group: group.to_string(),
            topic: topic.to_string(),
            partition,
            cursor: cursor.clone(),
        });
    }

    pub fn group_cursors(&self, group: &str, topic: &str) -> Result<Vec<(u32, Cursor)>> {
        names::validate("group", group)?;
        self.topic(topic)?;
        Ok(self.meta.cursors(group, topic)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::meta::{MemoryMetaStore, Retention};
    use crate::storage::StorageConfig;
    use crate::{Broker, BrokerConfig, BrokerError, Cursor};

    /// A broker of region `b` on a temporary directory.
    fn region_b() -> (tempfile::TempDir, Broker) {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            region: "b".into(),
            data_dir: dir.path().to_path_buf(),
            storage: StorageConfig::default(),
            default_retention: Retention::default(),
        };
        let broker = Broker::open(config, Arc::new(MemoryMetaStore::default())).unwrap();
        (dir, broker)
    }

    #[test]
    fn a_commit_may_keep_a_synced_position_past_what_is_held_but_not_go_further() {
        let (_dir, broker) = region_b();
        broker.create_topic("orders", 1, None).unwrap();
        let cursor = |next| Cursor {
            next: [("a".to_string(), next)].into(),
            incarnations: Default::default(),
            epoch: 0,
        };
        // Region a advertised 200 before it was lost; b holds none of it.
        let known = |_: u32, origin: &str| if origin == "a" { 200 } else { 0 };
        broker
            .merge_cursors("billing", "orders", &[(0, cursor(180))], &known)
            .unwrap();
        broker
            .commit("billing", "orders", &[(0, cursor(180))])
            .expect("the group keeps its place");
        assert!(matches!(
            broker.commit("billing", "orders", &[(0, cursor(181))]),
            Err(BrokerError::InvalidCursor { .. })
        ));
    }

    #[test]
    fn a_synced_cursor_past_the_known_end_is_refused() {
        let (_dir, broker) = region_b();
        let cursor = |next| Cursor {
            next: [("a".to_string(), next)].into(),
            incarnations: Default::default(),
            epoch: 0,
        };
        let known = |_: u32, origin: &str| if origin == "a" { 10 } else { 0 };
        let past = broker
            .merge_cursors("billing", "orders", &[(0, cursor(11))], &known)
            .unwrap_err();
        assert!(matches!(past, BrokerError::InvalidCursor { .. }), "{past}");
        assert_eq!(
            broker
                .merge_cursors("billing", "orders", &[(0, cursor(10))], &known)
                .unwrap(),
            [0]
        );
    }
}
