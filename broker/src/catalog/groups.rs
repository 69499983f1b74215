//! Consumer groups' settings: whether a group consumes FIFO topics in order, and how many
//! deliveries a message gets before it moves to the group's dead-letter topic. A group
//! nobody created has no record and consumes with the region's defaults; a created one
//! has a [`GroupRecord`] in the [`GroupBook`], stored in the region's metadata and shared
//! with every other region (the replicator carries the records beside the task records).

use serde::{Deserialize, Serialize};

use super::book::{Book, ChangeError, Shared};
use super::record::{Record, Spec};
use crate::meta::SharedKind;
use crate::names;

/// Deliveries of a message before it is dead-lettered, unless a group says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;
/// The most deliveries a group may ask for.
pub const MAX_MAX_ATTEMPTS: u32 = 1000;
/// The prefix of a group's dead-letter topic: `%DLQ%<group>`.
pub const DEAD_LETTER_PREFIX: &str = "%DLQ%";
/// The longest group name: its dead-letter topic's name must be valid too.
pub const MAX_GROUP_NAME: usize = names::MAX_NAME_LEN - DEAD_LETTER_PREFIX.len();

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub name: String,
    /// Within each message group of a FIFO topic, the next message is delivered only once
    /// the one before it is acknowledged or dead-lettered.
    #[serde(default)]
    pub fifo: bool,
    /// Deliveries of a message before it moves to the dead-letter topic.
    #[serde(
        default = "default_max_attempts",
        deserialize_with = "crate::json::integer"
    )]
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

impl Shared for GroupSpec {
    const KIND: SharedKind = SharedKind::Groups;
    const NOUN: &'static str = "group";

    fn validate(&self) -> Result<(), (&'static str, String)> {
        GroupSpec::validate(self)
    }
}

/// Why a change of a group was refused.
pub type GroupChangeError = ChangeError;

/// The consumer groups' settings of a region.
pub type GroupBook = Book<GroupSpec>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::record::{Author, Change, VersionError};
    use crate::meta::{MemoryMetaStore, MetaStore};
    use std::sync::Arc;

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
        let record = book
            .change(create("orders", 3), &Author::region("a"))
            .unwrap();
        assert_eq!((record.version, record.changed_by.as_str()), (1, "a"));
        let again = GroupBook::load(meta).unwrap();
        assert_eq!(again.get("orders"), Some(spec("orders", 3)));
        assert!(matches!(
            again.change(create("orders", 3), &Author::region("a")),
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
            match book.change(change, &Author::region("a")) {
                Err(GroupChangeError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{other:?}"),
            }
        }
        let long = "g".repeat(MAX_GROUP_NAME + 1);
        assert!(matches!(
            book.change(create(&long, 3), &Author::region("a")),
            Err(GroupChangeError::Invalid { field: "name", .. })
        ));
        assert!(book.live().is_empty(), "nothing was made");
    }

    #[test]
    fn a_deletion_in_another_region_wins_over_an_older_change_and_is_passed_on_once() {
        let here = GroupBook::load(Arc::new(MemoryMetaStore::default())).unwrap();
        let there = GroupBook::load(Arc::new(MemoryMetaStore::default())).unwrap();
        let made = here.change(create("g", 3), &Author::region("a")).unwrap();
        assert_eq!(there.merge(vec![made.clone()]), vec![made.clone()]);
        let deleted = there
            .change(
                Change {
                    name: "g",
                    spec: None,
                    if_version: Some(1),
                    create_only: false,
                },
                &Author::region("b"),
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
        book.change(create("g", 3), &Author::region("a")).unwrap();
        let stale = Change {
            name: "g",
            spec: Some(spec("g", 5)),
            if_version: Some(7),
            create_only: false,
        };
        assert!(matches!(
            book.change(stale, &Author::region("a")),
            Err(GroupChangeError::Version(VersionError::Conflict {
                current: 1,
                given: 7,
                ..
            }))
        ));
    }
}
