//! A versioned record of control state that every region shares (replication tasks,
//! consumer groups), and the one last-writer-wins rule they all follow:
//!
//! - a record is `{spec, version, changed_by, deleted}`; a change made in a region names
//!   the version it read (`if_version`; a stale one is a conflict) and gets `version + 1`;
//! - a deletion keeps a tombstone, so a later copy of the old record cannot bring it back;
//! - records from another region are taken when they are newer by `(version, deleted,
//!   changed_by)`: concurrent changes in two regions converge on the same winner everywhere
//!   (by version, then a deletion over a change, then the region name).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a record holds: something with a name.
pub trait Spec: Clone {
    fn name(&self) -> &str;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<S> {
    pub spec: S,
    pub version: u64,
    /// The region where this version was made.
    pub changed_by: String,
    #[serde(default)]
    pub deleted: bool,
}

impl<S> Record<S> {
    /// The order every region applies (see the module documentation).
    pub fn newer_than(&self, other: &Record<S>) -> bool {
        (self.version, self.deleted, &self.changed_by)
            > (other.version, other.deleted, &other.changed_by)
    }
}

/// A change asked for in this region.
pub struct Change<'a, S> {
    pub name: &'a str,
    /// The new spec; `None` deletes.
    pub spec: Option<S>,
    /// The version the caller read (0: absent); `None` changes whatever is there.
    pub if_version: Option<u64>,
    pub create_only: bool,
}

/// Why a change does not fit the records held. `kind` names what the records are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("{kind} \"{name}\" is at version {current}, not {given}")]
    Conflict {
        kind: &'static str,
        name: String,
        current: u64,
        given: u64,
    },
    #[error("no {kind} \"{name}\"")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} \"{name}\" already exists")]
    Exists { kind: &'static str, name: String },
}

/// The record `change` makes over `records` in `region`, if it fits the versions held (the
/// caller validates the spec, stores the record, then inserts it).
pub fn prepare<S: Spec>(
    records: &BTreeMap<String, Record<S>>,
    change: Change<'_, S>,
    kind: &'static str,
    region: &str,
) -> Result<Record<S>, VersionError> {
    let Change {
        name,
        spec,
        if_version,
        create_only,
    } = change;
    let current = records.get(name);
    let live = current.filter(|r| !r.deleted);
    if create_only && live.is_some() {
        return Err(VersionError::Exists {
            kind,
            name: name.to_string(),
        });
    }
    let deleted = spec.is_none();
    let Some(spec) = spec.or_else(|| live.map(|r| r.spec.clone())) else {
        return Err(VersionError::NotFound {
            kind,
            name: name.to_string(),
        });
    };
    let live_version = live.map_or(0, |r| r.version);
    if let Some(given) = if_version
        && given != live_version
    {
        return Err(VersionError::Conflict {
            kind,
            name: name.to_string(),
            current: live_version,
            given,
        });
    }
    Ok(Record {
        spec,
        version: current.map_or(0, |r| r.version) + 1,
        changed_by: region.to_string(),
        deleted,
    })
}

/// Takes from `incoming` the records newer than those held in `records`; returns them.
pub fn merge<S: Spec>(
    records: &mut BTreeMap<String, Record<S>>,
    incoming: Vec<Record<S>>,
) -> Vec<Record<S>> {
    let mut taken = Vec::new();
    for record in incoming {
        let newer = records
            .get(record.spec.name())
            .is_none_or(|held| record.newer_than(held));
        if newer {
            records.insert(record.spec.name().to_string(), record.clone());
            taken.push(record);
        }
    }
    taken
}
