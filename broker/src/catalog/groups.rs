//! Consumer groups' settings: whether a group consumes FIFO topics in order, and how many
//! deliveries a message gets before it moves to the group's dead-letter topic. A group
//! nobody created has no record and consumes with the region's defaults; a created one
//! has a [`GroupRecord`] in the [`GroupBook`], stored in the region's metadata and shared
//! with every other region (the replicator carries the records beside the task records).
//!
//! Readers (every receive of the RocketMQ access point) take the published map without
//! waiting on a change being stored; changes are serialized by the book's writer lock,
//! held across the store (an fsync), so a change is visible only once it is durable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::record::{self, Change, Record, Spec, VersionError};
use crate::meta::{MetaError, MetaStore};
use crate::names;

/// Deliveries of a message before it is dead-lettered, unless a group says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;
/// The most deliveries a group may ask for.
pub const MAX_MAX_ATTEMPTS: u32 = 1000;
/// The prefix of a group's dead-letter topic: `%DLQ%<group>`.
pub const DEAD_LETTER_PREFIX: &str = "%DLQ%";
/// The longest group name: its dead-letter topic's name must be valid too.
pub const MAX_GROUP_NAME: usize = names::MAX_NAME_LEN - DEAD_LETTER_PREFIX.len();

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    /// Within each message group of a FIFO topic, the next message is delivered only once
    /// the one before it is acknowledged or dead-lettered.
    #[serde(default)]
    pub fifo: bool,
    /// Deliveries of a message before it moves to the dead-letter topic.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_max_attempts() -> u32 {
    DEFAULT_MAX_ATTEMPTS
}

impl Spec for GroupSpec {
    fn name(&self) -> &str {
        &self.name
    }
}

pub type GroupRecord = Record<GroupSpec>;

/// What is wrong with a group name, or `None`.
pub fn check_name(name: &str) -> Result<(), String> {
    names::validate("group", name).map_err(|e| e.to_string())?;
    if name.len() > MAX_GROUP_NAME {
        return Err(format!(
            "group name of {} bytes: at most {MAX_GROUP_NAME}, so that its dead-letter topic's name fits",
            name.len()
        ));
    }
    Ok(())
}

impl GroupSpec {
    /// The field that is wrong and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        check_name(&self.name).map_err(|reason| ("name", reason))?;
        if !(1..=MAX_MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err((
                "max_attempts",
                format!(
                    "max_attempts {} is out of range: 1 to {MAX_MAX_ATTEMPTS}",
                    self.max_attempts
                ),
            ));
        }
        Ok(())
    }
}

/// Why a change of a group was refused. Only `Meta` is transient.
#[derive(Debug, thiserror::Error)]
pub enum GroupChangeError {
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("{reason}")]
    Invalid { field: &'static str, reason: String },
    /// Storing the record failed: the change was not made; retry.
    #[error("storing the group record: {0}")]
    Meta(#[from] MetaError),
}

type Records = BTreeMap<String, GroupRecord>;

pub struct GroupBook {
    /// The writer lock (see the module documentation).
    writer: Mutex<()>,
    published: RwLock<Arc<Records>>,
    meta: Arc<dyn MetaStore>,
}

impl GroupBook {
    /// The records stored in `meta`.
    pub fn load(meta: Arc<dyn MetaStore>) -> Result<Self, MetaError> {
        let mut records = Records::new();
        for (name, bytes) in meta.group_records()? {
            let record: GroupRecord =
                serde_json::from_slice(&bytes).map_err(|source| MetaError::Decode {
                    key: format!("group_records/{name}"),
                    source,
                })?;
            records.insert(name, record);
        }
        Ok(GroupBook {
            writer: Mutex::new(()),
            published: RwLock::new(Arc::new(records)),
            meta,
        })
    }

    fn load_published(&self) -> Arc<Records> {
        self.published.read().expect("group book").clone()
    }

    /// The settings of group `name`, if it was created.
    pub fn get(&self, name: &str) -> Option<GroupSpec> {
        self.record(name).map(|r| r.spec)
    }

    /// The live record of group `name`.
    pub fn record(&self, name: &str) -> Option<GroupRecord> {
        self.load_published()
            .get(name)
            .filter(|r| !r.deleted)
            .cloned()
    }

    /// Every record, deletions included (what is sent to other regions).
    pub fn records(&self) -> Vec<GroupRecord> {
        self.load_published().values().cloned().collect()
    }

    /// The live groups, by name.
    pub fn live(&self) -> Vec<GroupRecord> {
        self.load_published()
            .values()
            .filter(|r| !r.deleted)
            .cloned()
            .collect()
    }

    /// A change made in `region`: checked, stored (an fsync: call it where blocking is
    /// allowed), then published.
    pub fn change(
        &self,
        change: Change<'_, GroupSpec>,
        region: &str,
    ) -> Result<GroupRecord, GroupChangeError> {
        if let Some(spec) = &change.spec {
            spec.validate()
                .map_err(|(field, reason)| GroupChangeError::Invalid { field, reason })?;
            if spec.name != change.name {
                return Err(GroupChangeError::Invalid {
                    field: "name",
                    reason: format!(
                        "the body names group \"{}\", the path \"{}\"",
                        spec.name, change.name
                    ),
                });
            }
        }
        let _writer = self.writer.lock().expect("group book writer");
        let held = self.load_published();
        let record = record::prepare(&held, change, "group", region)?;
        self.store(&record)?;
        let mut records = (*held).clone();
        records.insert(record.spec.name.clone(), record.clone());
        *self.published.write().expect("group book") = Arc::new(records);
        Ok(record)
    }

    /// Records from another region: those newer than what is held are stored, published
    /// and returned (to be passed on). A record that cannot be stored is still taken (it is
    /// sent again by the periodic resend).
    pub fn merge(&self, incoming: Vec<GroupRecord>) -> Vec<GroupRecord> {
        let _writer = self.writer.lock().expect("group book writer");
        let mut records = (*self.load_published()).clone();
        let taken = record::merge(&mut records, incoming);
        for record in &taken {
            if let Err(e) = self.store(record) {
                tracing::error!(group = %record.spec.name, error = %e, "storing a group record failed");
            }
        }
        if !taken.is_empty() {
            *self.published.write().expect("group book") = Arc::new(records);
        }
        taken
    }

    fn store(&self, record: &GroupRecord) -> Result<(), MetaError> {
        let bytes = serde_json::to_vec(record).expect("a group record encodes");
        self.meta.put_group_record(&record.spec.name, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::MemoryMetaStore;

    fn spec(name: &str, max_attempts: u32) -> GroupSpec {
        GroupSpec {
            name: name.into(),
            fifo: true,
            max_attempts,
        }
    }

    fn create(name: &str, max_attempts: u32) -> Change<'_, GroupSpec> {
        Change {
            name,
            spec: Some(spec(name, max_attempts)),
            if_version: None,
            create_only: true,
        }
    }

    #[test]
    fn a_created_group_is_stored_and_survives_a_reload() {
        let meta: Arc<dyn MetaStore> = Arc::new(MemoryMetaStore::default());
        let book = GroupBook::load(meta.clone()).unwrap();
        let record = book.change(create("orders", 3), "a").unwrap();
        assert_eq!((record.version, record.changed_by.as_str()), (1, "a"));
        let again = GroupBook::load(meta).unwrap();
        assert_eq!(again.get("orders"), Some(spec("orders", 3)));
        assert!(matches!(
            again.change(create("orders", 3), "a"),
            Err(GroupChangeError::Version(VersionError::Exists { .. }))
        ));
    }

    #[test]
    fn bad_settings_name_the_field() {
        let book = GroupBook::load(Arc::new(MemoryMetaStore::default())).unwrap();
        for (change, field) in [
            (create("g", 0), "max_attempts"),
            (create("g", MAX_MAX_ATTEMPTS + 1), "max_attempts"),
            (create("a/b", 3), "name"),
        ] {
            match book.change(change, "a") {
                Err(GroupChangeError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
        let long = "g".repeat(MAX_GROUP_NAME + 1);
        assert!(matches!(
            book.change(create(&long, 3), "a"),
            Err(GroupChangeError::Invalid { field: "name", .. })
        ));
        assert!(book.live().is_empty(), "nothing was made");
    }

    #[test]
    fn a_deletion_in_another_region_wins_over_an_older_change_and_is_passed_on_once() {
        let here = GroupBook::load(Arc::new(MemoryMetaStore::default())).unwrap();
        let there = GroupBook::load(Arc::new(MemoryMetaStore::default())).unwrap();
        let made = here.change(create("g", 3), "a").unwrap();
        assert_eq!(there.merge(vec![made.clone()]), vec![made.clone()]);
        let deleted = there
            .change(
                Change {
                    name: "g",
                    spec: None,
                    if_version: Some(1),
                    create_only: false,
                },
                "b",
            )
            .unwrap();
        assert!(deleted.deleted && deleted.version == 2);
        assert_eq!(
            here.merge(vec![deleted.clone(), made]),
            vec![deleted.clone()]
        );
        assert_eq!(here.get("g"), None);
        assert!(
            here.merge(vec![deleted]).is_empty(),
            "nothing new: not passed on"
        );
    }

    #[test]
    fn a_stale_version_is_a_conflict() {
        let book = GroupBook::load(Arc::new(MemoryMetaStore::default())).unwrap();
        book.change(create("g", 3), "a").unwrap();
        let stale = Change {
            name: "g",
            spec: Some(spec("g", 5)),
            if_version: Some(7),
            create_only: false,
        };
        assert!(matches!(
            book.change(stale, "a"),
            Err(GroupChangeError::Version(VersionError::Conflict {
                current: 1,
                given: 7,
                ..
            }))
        ));
    }
}
